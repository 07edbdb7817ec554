import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Counter, Histogram, Registry } from 'prom-client';
import { createHttpApp, type TlsMaterial } from '../util/http.js';
import type { Logger } from '../util/log.js';
import { httpRequest, HttpClientError } from '../util/http-client.js';
import { checkAnswer } from '../api/check.js';
import { AtlasClient, AtlasError } from '../atlas/client.js';
import {
  ChoiceSchema,
  ClientQuerySchema,
  ControllerCacheSchema,
  FileParamsSchema,
  RttAnswerSchema,
  type Choice,
  type ControllerCache,
} from '../api/cdn.js';
import { Type } from '@sinclair/typebox';
import { bearerMatches } from './token.js';

/** A cache as the operator declares it: `NAME=URL`, with its PoP (`ISP/POP`) for the atlas fallback. */
export interface CacheSpec {
  name: string;
  url: string;
  pop?: string;
}

export interface ControllerOptions {
  caches: CacheSpec[];
  /** How long the caches have to answer a measurement, ms: a cache silent longer is skipped. */
  measureTimeoutMs: number;
  /** How long a failed cache is skipped before it is asked again, ms. */
  skipMs: number;
  /** The atlas, for when no cache answers: its path latency from each cache's PoP to the client. */
  atlas?: string;
  /** Sent to the caches as `Authorization: Bearer <token>` with each measurement request. */
  token?: string;
}

/** `NAME=URL` or `NAME=URL@ISP/POP`; throws a message naming what is wrong. */
export function parseCacheSpec(v: string): CacheSpec {
  const m = /^([a-z0-9][a-z0-9-]*)=(https?:\/\/[^@\s]+?)(?:@([^/\s]+\/[^/\s]+))?$/i.exec(v);
  if (!m) throw new Error(`--cache ${v}: expected NAME=http(s)://HOST:PORT[@ISP/POP]`);
  try {
    new URL(m[2]!);
  } catch (err) {
    throw new Error(`--cache ${v}: bad URL ${m[2]}: ${(err as Error).message}`, { cause: err });
  }
  return { name: m[1]!, url: m[2]!.replace(/\/+$/, ''), ...(m[3] ? { pop: m[3] } : {}) };
}

interface CacheState extends CacheSpec {
  skippedUntil: number;
  lastError: string | null;
  redirects: number;
  failures: number;
}

/**
 * The CDN's controller (ARROW paper §4.4): for each request it has every cache in use measure
 * its RTT to the client now, and sends the client to the lowest. A cache that does not answer
 * within the timeout (dead, hung, unreachable) is skipped on the next requests for `skipMs`,
 * then asked again. Pure choice logic is `pickLowest`; this class is its I/O.
 */
export class CdnController {
  private readonly caches: CacheState[];
  private readonly atlas: AtlasClient | undefined;

  constructor(
    private readonly o: ControllerOptions,
    private readonly now: () => number = Date.now,
  ) {
    const names = new Set<string>();
    for (const c of o.caches) {
      if (names.has(c.name)) throw new Error(`cache ${c.name} is declared twice`);
      names.add(c.name);
    }
    if (o.caches.length === 0) throw new Error('a CDN needs at least one cache (--cache NAME=URL)');
    this.caches = o.caches.map((c) => ({
      ...c,
      skippedUntil: 0,
      lastError: null,
      redirects: 0,
      failures: 0,
    }));
    this.atlas = o.atlas ? new AtlasClient(o.atlas, o.measureTimeoutMs) : undefined;
  }

  /** Every cache and whether it is skipped now. */
  view(): ControllerCache[] {
    const now = this.now();
    return this.caches.map((c) => ({
      name: c.name,
      url: c.url,
      skippedUntil: c.skippedUntil > now ? new Date(c.skippedUntil).toISOString() : null,
      lastError: c.lastError,
      redirects: c.redirects,
      failures: c.failures,
    }));
  }

  /** A client was sent to `name` (GET /caches counts them). */
  redirected(name: string): void {
    const c = this.caches.find((x) => x.name === name);
    if (c) c.redirects++;
  }

  /** Measures and chooses for `client` (an IP address). */
  async choose(client: string): Promise<Choice> {
    const started = performance.now();
    const now = this.now();
    let asked = this.caches.filter((c) => c.skippedUntil <= now);
    // Every cache failed lately: asking them all again beats refusing the client.
    if (asked.length === 0) asked = this.caches;
    const measurements = await Promise.all(asked.map((c) => this.measure(c, client)));
    let how: Choice['how'] = 'measured';
    let best = pickLowest(measurements.map((m) => ({ name: m.cache, value: m.rttMs })));
    if (best === undefined && this.atlas) {
      const alive = asked.filter((c) => measurements.find((m) => m.cache === c.name)?.error === null);
      best = pickLowest(await this.atlasLatencies(alive.length > 0 ? alive : asked, client));
      if (best !== undefined) how = 'atlas';
    }
    if (best === undefined) {
      // No RTT and no atlas: any cache that answered is better than none.
      best = measurements.find((m) => m.error === null)?.cache;
      how = 'none';
    }
    const cache = best === undefined ? undefined : this.caches.find((c) => c.name === best);
    return {
      client,
      cache: cache?.name ?? null,
      url: cache?.url ?? null,
      how: cache ? how : 'none',
      measurements,
      tookMs: Math.round((performance.now() - started) * 100) / 100,
    };
  }

  private async measure(c: CacheState, client: string): Promise<Choice['measurements'][0]> {
    const fail = (why: string): Choice['measurements'][0] => {
      c.failures++;
      c.lastError = why;
      c.skippedUntil = this.now() + this.o.skipMs;
      return { cache: c.name, rttMs: null, error: why };
    };
    let res;
    try {
      res = await httpRequest(`${c.url}/rtt`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(this.o.token ? { authorization: `Bearer ${this.o.token}` } : {}),
        },
        body: JSON.stringify({ address: client }),
        timeoutMs: this.o.measureTimeoutMs,
      });
    } catch (err) {
      if (err instanceof HttpClientError) return fail(err.message);
      throw err;
    }
    if (res.status !== 200) return fail(`HTTP ${res.status}: ${res.text.slice(0, 200)}`);
    let answer;
    try {
      answer = checkAnswer(RttAnswerSchema, JSON.parse(res.text) as unknown, (p) => new HttpClientError(p));
    } catch (err) {
      if (err instanceof SyntaxError || err instanceof HttpClientError)
        return fail(`malformed answer: ${err.message}`);
      throw err;
    }
    c.skippedUntil = 0;
    c.lastError = null;
    // A cache whose echoes got nothing back is alive but cannot see this client: not chosen, not skipped.
    return { cache: c.name, rttMs: answer.rttMs, error: null };
  }

  /** The atlas's best path latency (ms, one way) from each cache's PoP to the client; null where it has none. */
  private async atlasLatencies(
    caches: CacheState[],
    client: string,
  ): Promise<{ name: string; value: number | null }[]> {
    return Promise.all(
      caches.map(async (c) => {
        if (!c.pop || !this.atlas) return { name: c.name, value: null };
        try {
          const a = await this.atlas.paths({ from: c.pop, to: client, sort: 'latency', k: 1 });
          return { name: c.name, value: a.paths[0]?.latencyMs ?? null };
        } catch (err) {
          if (err instanceof AtlasError) return { name: c.name, value: null };
          throw err;
        }
      }),
    );
  }
}

/** The name with the lowest non-null value; ties go to the first (the operator's order). */
export function pickLowest(xs: { name: string; value: number | null }[]): string | undefined {
  let best: { name: string; value: number } | undefined;
  for (const x of xs)
    if (x.value !== null && (best === undefined || x.value < best.value))
      best = { name: x.name, value: x.value };
  return best?.name;
}

/** The client's address as the socket saw it: IPv4-mapped IPv6 written as IPv4. */
export function clientAddress(remote: string | undefined): string {
  const a = remote ?? '';
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}

export async function buildControllerServer(
  controller: CdnController,
  o: {
    logger: Logger | false;
    tls?: TlsMaterial | undefined;
    registry?: Registry;
    token?: string | undefined;
  },
): Promise<FastifyInstance> {
  const registry = o.registry ?? new Registry();
  const redirects = new Counter({
    name: 'arrow_cdn_redirects_total',
    help: 'clients sent to a cache, by cache and how it was chosen (measured, atlas, none)',
    labelNames: ['cache', 'how'],
    registers: [registry],
  });
  const failures = new Counter({
    name: 'arrow_cdn_cache_failures_total',
    help: 'measurements a cache did not answer (it is then skipped for a while), by cache',
    labelNames: ['cache'],
    registers: [registry],
  });
  const chooseSeconds = new Histogram({
    name: 'arrow_cdn_choose_seconds',
    help: "time to choose a cache: the slowest cache's measurement, or the timeout",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const app = await createHttpApp({
    title: 'Arrow CDN controller',
    description:
      'Redirects each request to the cache with the lowest RTT to the client, measured by the caches now. See docs/services.md.',
    logger: o.logger,
    bodyLimit: 1024,
    tls: o.tls,
  });
  app.get('/healthz', { schema: { hide: true } }, async () => ({ ok: true }));
  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) =>
    reply.type(registry.contentType).send(await registry.metrics()),
  );
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const decide = async (client: string, redirect: boolean): Promise<Choice> => {
    const c = await controller.choose(client);
    chooseSeconds.observe(c.tookMs / 1000);
    for (const m of c.measurements) if (m.error !== null) failures.inc({ cache: m.cache });
    if (c.cache && redirect) {
      controller.redirected(c.cache);
      redirects.inc({ cache: c.cache, how: c.how });
    }
    return c;
  };
  api.get(
    '/files/:name',
    {
      schema: {
        summary: 'Redirect (302) to the cache with the lowest RTT to the caller, measured now',
        tags: ['cdn'],
        params: FileParamsSchema,
      },
    },
    async (req, reply) => {
      const c = await decide(clientAddress(req.socket.remoteAddress), true);
      if (!c.url)
        return reply.code(503).send({
          statusCode: 503,
          error: 'Service Unavailable',
          message: `no cache answered: ${c.measurements.map((m) => `${m.cache}: ${m.error ?? 'no echo back'}`).join('; ')}`,
        });
      const best = c.measurements.find((m) => m.cache === c.cache);
      return reply
        .code(302)
        .header('location', `${c.url}/files/${req.params.name}`)
        .header('x-arrow-cdn-cache', c.cache)
        .header('x-arrow-cdn-how', c.how)
        .header('x-arrow-cdn-rtt-ms', String(best?.rttMs ?? ''))
        .header('x-arrow-cdn-took-ms', String(c.tookMs))
        .header(
          'x-arrow-cdn-measurements',
          c.measurements.map((m) => `${m.cache}=${m.rttMs ?? 'x'}`).join(','),
        )
        .send();
    },
  );
  api.get(
    '/choose',
    {
      schema: {
        summary: 'Which cache a client would be sent to now, and every measurement behind it (measures)',
        tags: ['cdn'],
        querystring: ClientQuerySchema,
        response: { 200: ChoiceSchema },
      },
    },
    async (req) => {
      // Choosing for another address has the caches ping it: with a token, only its holders may.
      if (
        req.query.client !== undefined &&
        o.token !== undefined &&
        !bearerMatches(req.headers.authorization, o.token)
      )
        throw Object.assign(new Error('?client= needs the token (Authorization: Bearer ...)'), {
          statusCode: 401,
        });
      return decide(req.query.client ?? clientAddress(req.socket.remoteAddress), false);
    },
  );
  api.get(
    '/caches',
    {
      schema: {
        summary: 'The caches, which are skipped after a failure, and their counts',
        tags: ['cdn'],
        response: { 200: Type.Array(ControllerCacheSchema) },
      },
    },
    async () => controller.view(),
  );
  return app;
}
