import {
  createReadStream,
  createWriteStream,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import { get as httpGet, type IncomingMessage } from 'node:http';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { bearerMatches } from './token.js';
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Counter, Registry } from 'prom-client';
import { createHttpApp, type TlsMaterial } from '../util/http.js';
import type { Logger } from '../util/log.js';
import { hasCode } from '../util/errors.js';
import {
  CacheStatusSchema,
  FileParamsSchema,
  RttAnswerSchema,
  RttRequestSchema,
  type CacheStatus,
  type RttAnswer,
} from '../api/cdn.js';
import { pingRtt, PingError, type PingOptions } from './rtt.js';

export interface CacheOptions {
  name: string;
  /** Base URL of the origin: a miss for NAME fills from `<origin>/NAME`. */
  origin: string;
  /** Directory of the file store (made if missing). */
  store: string;
  ping: PingOptions;
  logger: Logger | false;
  tls?: TlsMaterial | undefined;
  registry?: Registry;
  /** How long a fill may wait for the origin's answer, ms. */
  originTimeoutMs?: number;
  /** When set, `POST /rtt` needs `Authorization: Bearer <token>`: only the controller may have the cache ping. */
  token?: string | undefined;
}

/** The origin said no (404, 5xx) or could not be reached: the client gets 404 or 502, and nothing is stored. */
class OriginError extends Error {
  override name = 'OriginError';
  constructor(
    message: string,
    readonly statusCode: number,
  ) {
    super(message);
  }
}

/**
 * A CDN cache node (ARROW paper §4.4): an HTTP server over a directory of files. A hit is sent
 * from the store; a miss is streamed from the origin to the client and into the store at once
 * (renamed into place only when whole, so a cut fill never serves a short file). `POST /rtt` has
 * it measure its round trip to a client for the controller.
 */
export async function buildCacheServer(o: CacheOptions): Promise<FastifyInstance> {
  mkdirSync(o.store, { recursive: true });
  // Fills cut off by an earlier crash: never served, removed at start.
  for (const f of readdirSync(o.store)) if (f.startsWith('.fill-')) rmSync(join(o.store, f), { force: true });
  const origin = o.origin.replace(/\/+$/, '');
  const registry = o.registry ?? new Registry();
  const requests = new Counter({
    name: 'arrow_cdn_cache_requests_total',
    help: 'file requests answered, by result: hit, miss (filled from the origin), error',
    labelNames: ['result'],
    registers: [registry],
  });
  const measurements = new Counter({
    name: 'arrow_cdn_cache_measurements_total',
    help: 'RTT measurements the controller asked for, by result: answered, silent (no echo back), error',
    labelNames: ['result'],
    registers: [registry],
  });
  const counts = { hits: 0, misses: 0, fillErrors: 0, measurements: 0 };
  let fills = 0;

  const app = await createHttpApp({
    title: 'Arrow CDN cache',
    description:
      'A CDN cache node: files from its store, filled from the origin on a miss; RTT measurements to clients for the controller. See docs/services.md.',
    logger: o.logger,
    bodyLimit: 1024,
    tls: o.tls,
    ...(o.token ? { securitySchemes: { bearer: { type: 'http' as const, scheme: 'bearer' } } } : {}),
    clientError: (err) =>
      err instanceof OriginError ? { statusCode: err.statusCode, message: err.message } : undefined,
  });
  app.get('/healthz', { schema: { hide: true } }, async () => ({ ok: true }));
  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) =>
    reply.type(registry.contentType).send(await registry.metrics()),
  );
  const api = app.withTypeProvider<TypeBoxTypeProvider>();

  api.get(
    '/files/:name',
    {
      schema: {
        summary: 'A file: from the store (X-Cache: HIT), or streamed from the origin while stored (MISS)',
        tags: ['files'],
        params: FileParamsSchema,
      },
    },
    async (req, reply) => {
      const path = join(o.store, req.params.name);
      const size = fileSize(path);
      if (size !== undefined) {
        counts.hits++;
        requests.inc({ result: 'hit' });
        return reply
          .header('x-cache', 'HIT')
          .header('x-arrow-cdn-cache', o.name)
          .header('content-length', String(size))
          .type('application/octet-stream')
          .send(createReadStream(path));
      }
      let res: IncomingMessage;
      try {
        res = await fetchOrigin(`${origin}/${req.params.name}`, o.originTimeoutMs ?? 10_000);
      } catch (err) {
        counts.fillErrors++;
        requests.inc({ result: 'error' });
        throw err;
      }
      counts.misses++;
      requests.inc({ result: 'miss' });
      const tmp = join(o.store, `.fill-${process.pid}-${++fills}`);
      const file = createWriteStream(tmp);
      const body = new PassThrough();
      const expected = Number(res.headers['content-length'] ?? NaN);
      let got = 0;
      res.on('data', (c: Buffer) => (got += c.length));
      res.pipe(body);
      res.pipe(file);
      const drop = (why: string): void => {
        counts.fillErrors++;
        req.log.warn({ file: req.params.name, why }, 'fill from the origin not stored');
        file.destroy();
        rmSync(tmp, { force: true });
      };
      res.on('error', (err) => {
        drop(err.message);
        body.destroy(err);
      });
      res.on('end', () => {
        if (Number.isFinite(expected) && got !== expected) return drop(`got ${got} of ${expected} bytes`);
        file.end(() => {
          try {
            renameSync(tmp, path);
          } catch (err) {
            drop((err as Error).message);
          }
        });
      });
      reply.header('x-cache', 'MISS').header('x-arrow-cdn-cache', o.name).type('application/octet-stream');
      if (Number.isFinite(expected)) reply.header('content-length', String(expected));
      return reply.send(body);
    },
  );

  api.post(
    '/rtt',
    {
      schema: {
        summary: "Measure this cache's round trip to a client now (ICMP echoes); the controller calls it",
        tags: ['measure'],
        body: RttRequestSchema,
        response: { 200: RttAnswerSchema },
        ...(o.token ? { security: [{ bearer: [] }] } : {}),
      },
    },
    async (req): Promise<RttAnswer> => {
      if (o.token !== undefined && !bearerMatches(req.headers.authorization, o.token))
        throw Object.assign(new Error("POST /rtt needs the controller's token (Authorization: Bearer ...)"), {
          statusCode: 401,
        });
      const started = performance.now();
      counts.measurements++;
      try {
        const r = await pingRtt(req.body.address, o.ping);
        measurements.inc({ result: r.rttMs === null ? 'silent' : 'answered' });
        return {
          cache: o.name,
          address: req.body.address,
          ...r,
          tookMs: Math.round((performance.now() - started) * 100) / 100,
        };
      } catch (err) {
        measurements.inc({ result: 'error' });
        if (err instanceof PingError) throw Object.assign(new Error(err.message), { statusCode: 422 });
        throw err;
      }
    },
  );

  api.get(
    '/status',
    { schema: { summary: "The cache's counters", tags: ['status'], response: { 200: CacheStatusSchema } } },
    async (): Promise<CacheStatus> => ({
      cache: o.name,
      origin,
      files: readdirSync(o.store).filter((f) => !f.startsWith('.')).length,
      ...counts,
    }),
  );
  return app;
}

/** A stored file's size, or undefined when it is not in the store. */
function fileSize(path: string): number | undefined {
  try {
    const s = statSync(path);
    return s.isFile() ? s.size : undefined;
  } catch (err) {
    if (hasCode(err, 'ENOENT')) return undefined;
    throw err;
  }
}

/** GET from the origin; resolves on a 200 with its body unread, rejects with an OriginError otherwise. */
function fetchOrigin(url: string, timeoutMs: number): Promise<IncomingMessage> {
  const get = url.startsWith('https:') ? httpsGet : httpGet;
  return new Promise((resolve, reject) => {
    const req = get(url, { timeout: timeoutMs }, (res) => {
      if (res.statusCode === 200) return resolve(res);
      res.resume();
      reject(
        res.statusCode === 404
          ? new OriginError(`not at the origin: ${url}`, 404)
          : new OriginError(`the origin answered ${res.statusCode} for ${url}`, 502),
      );
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err) => reject(new OriginError(`origin unreachable (${url}): ${err.message}`, 502)));
  });
}
