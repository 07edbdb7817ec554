import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Circuit, CircuitInput, EgressAction, PublishedCircuitCounters } from '../store/circuit.js';
import type { CircuitStore } from '../store/store.js';
import { createHash, randomBytes } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { burstBytes } from '../router/police.js';
import {
  CapacityError,
  ConflictError,
  IdempotencyMismatchError,
  InvalidRecordError,
  NotFoundError,
  UnavailableError,
} from '../store/store.js';
import { addressKey, parseAddress, parsePrefix, type IpPrefix } from '../wire/address.js';
import { newAuthenticator } from '../wire/authenticator.js';
import type { PortalConfig } from './config.js';
import rateLimit from '@fastify/rate-limit';
import { AccountKeys } from './accounts.js';
import { SlaMonitor, SlaSampler } from './sla.js';
import type { PortalMetrics } from './metrics.js';
import { checkOwnCircuit } from '../verify/own-table.js';
import type { RouterDirectory } from './routers.js';
import { prefixesOverlap, prefixWithin, TargetPolicy, type Infrastructure } from './target-policy.js';
import {
  AuthParams,
  CircuitStats,
  CircuitView,
  CreateCircuitBody,
  ErrorResponse,
  NextHop,
  type CircuitView as CircuitViewT,
} from '../api/portal.js';

declare module 'fastify' {
  interface FastifyRequest {
    account: string;
  }
}

const errors = {
  400: ErrorResponse,
  401: ErrorResponse,
  403: ErrorResponse,
  404: ErrorResponse,
  409: ErrorResponse,
  422: ErrorResponse,
  429: ErrorResponse,
  503: ErrorResponse,
};

/** `Idempotency-Key`: what a client may send (the IETF draft's key is an opaque string). */
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/** JSON with sorted keys: equal requests, however their fields were ordered, fingerprint equally. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object')
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v);
}

export function requestFingerprint(body: unknown): string {
  return createHash('sha256').update(canonicalJson(body)).digest('hex');
}

/** A 4xx/5xx with the message the client sees. */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A circuit as the API shows it. The tag key only with `withTagKey`: in the answers to the owner's
 * create and single GET, never in a list (a list is the view most likely to be logged or shared).
 */
export function toView(c: Circuit, ingress: string[], withTagKey = false): CircuitViewT {
  const view: CircuitViewT = {
    auth: c.auth,
    ingressPop: c.ingressPop,
    egressPop: c.egressPop,
    bandwidthMbps: c.bandwidthMbps,
    ingress,
    createdAt: c.createdAt,
    revision: c.revision,
  };
  if (c.burstBytes !== undefined) view.burstBytes = c.burstBytes;
  // The customer's hops in use after repairs (the internal hop is the ISP's own business).
  const active = {
    ...(c.active?.next ? { next: c.active.next } : {}),
    ...(c.active?.reply ? { reply: c.active.reply } : {}),
  };
  if (active.next !== undefined || active.reply !== undefined) view.active = active;
  if (c.tagKey) {
    view.tagsRequired = true;
    if (withTagKey) view.tagKey = c.tagKey;
  }
  const a = c.action;
  if (a.kind === 'forward') view.next = a.next;
  else if (a.kind === 'deliver-endpoint')
    view.deliver = { kind: 'endpoint', addresses: a.addresses, ...(a.auth ? { auth: a.auth } : {}) };
  else if (a.kind === 'deliver-udp')
    view.deliver = { kind: 'udp', target: a.target, ...(a.reply ? { reply: a.reply } : {}) };
  else
    view.deliver = {
      kind: 'ip',
      prefixes: a.prefixes,
      source: a.source,
      ...(a.reply ? { reply: a.reply } : {}),
    };
  return view;
}

function withoutNext(active: Circuit['active']): Circuit['active'] {
  const { next: _next, ...rest } = active ?? {};
  return rest;
}

/** Store failures become HTTP answers: nothing is acknowledged that was not committed. */
/** How many times a customer's change is retried over routers' records of their failover choices. */
const ROUTER_RECORD_RETRIES = 5;

/** Whether two revisions of a circuit differ only in the routers' failover choices (`active`). */
export function onlyActiveMoved(before: Circuit, after: Circuit): boolean {
  const rest = ({ active: _a, revision: _r, ...c }: Circuit): Omit<Circuit, 'active' | 'revision'> => c;
  return isDeepStrictEqual(rest(before), rest(after));
}

export function storeErrorToHttp(err: unknown): never {
  if (err instanceof CapacityError) throw new HttpError(409, err.message);
  if (err instanceof ConflictError) throw new HttpError(409, err.message);
  if (err instanceof NotFoundError) throw new HttpError(404, err.message);
  if (err instanceof InvalidRecordError) throw new HttpError(400, err.message);
  if (err instanceof IdempotencyMismatchError) throw new HttpError(422, err.message);
  if (err instanceof UnavailableError)
    throw new HttpError(503, `circuit store unavailable, nothing was changed: ${err.message}`);
  throw err;
}

/**
 * Customer-facing circuit API: create, chain, relinquish, list, stats. Every route
 * here requires a bearer API key, and only a circuit's owner can see or touch it;
 * to anyone else it does not exist (404), so authenticators are never confirmed to strangers.
 */
export async function circuitRoutes(
  app: FastifyInstance,
  opts: { config: PortalConfig; store: CircuitStore; routers: RouterDirectory; metrics?: PortalMetrics },
): Promise<void> {
  const { config, store, routers } = opts;
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  /** Counts an SLA report's verdict in the portal's metrics, and passes it on. */
  const verdict = <T extends { ok: boolean }>(report: T): T => {
    opts.metrics?.slaVerdict(report.ok);
    return report;
  };
  const view = async (c: Circuit, withTagKey = false): Promise<CircuitViewT> =>
    toView(c, await routers.addresses(c.ingressPop), withTagKey);
  const accounts = new AccountKeys(config.accounts);
  const pops = new Set(config.pops.map((p) => p.name));
  const offers = new Map(config.offers.map((o) => [`${o.from}->${o.to}`, o]));
  const sla = {
    windowMs: (config.sla?.windowS ?? 30) * 1000,
    minPackets: config.sla?.minPackets ?? 100,
    staleMs: config.sla?.staleMs ?? 5000,
  };
  // History a little longer than the window, so the window's start can be interpolated.
  const monitor = new SlaMonitor(sla.windowMs + 2 * sla.staleMs);
  const sampler = new SlaSampler(store, monitor, config.sla?.sampleMs ?? 1000, app.log);
  sampler.start();
  app.addHook('onClose', async () => sampler.stop());

  const policy = new TargetPolicy(config.targetPolicy);
  const storeMembers = config.store.kind === 'etcd' ? config.store.endpoints : [];

  /**
   * Every address a customer asks this ISP to send to, checked in order: the address parser
   * (400), the egress target policy (403), and loops back into this ISP's own routers (409).
   */
  async function checkHops(hops: HopToCheck[]): Promise<void> {
    const parsed = hops.map((h) =>
      h.addresses.map((text, i) => {
        const r = parseAddress(text);
        if (!r.ok) throw new HttpError(400, `${label(h, i)}: ${r.message}`);
        return r.address;
      }),
    );
    const own = await routers.everyRouter().catch(storeErrorToHttp);
    const infra: Infrastructure = {
      routers: own.map((r) => r.address),
      portal: [config.listen],
      store: storeMembers,
    };
    hops.forEach((h, hi) =>
      parsed[hi]!.forEach((a, i) => {
        const refused = policy.check(a, infra);
        if (refused)
          throw new HttpError(
            403,
            `${label(h, i)} ${h.addresses[i]} refused by this ISP's egress target policy (rule ${refused.rule}): ${refused.message}`,
          );
      }),
    );
    const ownByKey = new Map<string, string>();
    for (const r of own) {
      const p = parseAddress(r.address);
      if (p.ok) ownByKey.set(addressKey(p.address), r.pop);
    }
    hops.forEach((h, hi) => {
      if (!h.intoArrow) return;
      parsed[hi]!.forEach((a, i) => {
        const pop = ownByKey.get(addressKey(a));
        // Whatever the authenticator: one this ISP issued makes a loop (or skips the ingress PoP
        // and its accounting), any other is dropped there. Not looking it up also means the
        // answer never tells a caller whether someone else's authenticator exists.
        if (pop !== undefined)
          throw new HttpError(
            409,
            `${label(h, i)} ${h.addresses[i]} is a router of this ISP (${config.isp}/${pop}): a circuit pointed back into its own ISP loops (every packet circles until its hop limit) or bypasses the ingress PoP; point it at the next ISP's ingress routers or at your own endpoint`,
          );
      });
    });
  }

  /**
   * A deliver-ip circuit (docs/egress.md): sold only at the PoPs with an IP egress; every
   * destination prefix passes the egress target policy whole (403), and the customer's source
   * prefix lies in the ISP's customer pool and overlaps no other account's (409), since the egress
   * routes it back to its routers: one account must not take another's (or anyone's) traffic.
   */
  async function checkIpTransit(
    action: Extract<EgressAction, { kind: 'deliver-ip' }>,
    egressPop: string,
    account: string,
  ): Promise<void> {
    const transit = config.ipTransit;
    if (!transit) throw new HttpError(403, `${config.isp} sells no IP transit (deliver kind ip)`);
    if (!transit.pops.includes(egressPop))
      throw new HttpError(
        403,
        `no IP egress at PoP ${egressPop}; IP transit leaves ${config.isp} at ${transit.pops.join(', ')}`,
      );
    const own = await routers.everyRouter().catch(storeErrorToHttp);
    const infra: Infrastructure = {
      routers: own.map((r) => r.address),
      portal: [config.listen],
      store: storeMembers,
    };
    action.prefixes.forEach((text, i) => {
      const refused = policy.checkPrefix(mustParsePrefix(text, `deliver.prefixes[${i}]`), infra);
      if (refused)
        throw new HttpError(
          403,
          `deliver.prefixes[${i}] ${text} refused by this ISP's egress target policy (rule ${refused.rule}): ${refused.message}`,
        );
    });
    const source = mustParsePrefix(action.source, 'deliver.source');
    const pool = transit.customerPrefixes.map((p) => mustParsePrefix(p, 'ipTransit.customerPrefixes'));
    if (!pool.some((p) => prefixWithin(source, p)))
      throw new HttpError(
        403,
        `deliver.source ${action.source} is not inside this ISP's customer prefixes (${transit.customerPrefixes.join(', ')})`,
      );
    for (const c of await store.list().catch(storeErrorToHttp)) {
      if (c.owner === account || c.action.kind !== 'deliver-ip') continue;
      const theirs = parsePrefix(c.action.source);
      if (theirs.ok && prefixesOverlap(source, theirs.prefix))
        throw new HttpError(409, `deliver.source ${action.source} overlaps another account's tunnel prefix`);
    }
  }

  /**
   * The check of this ISP's own table (src/verify/own-table.ts) on a circuit about to be written:
   * a loop or black hole inside the ISP is refused (409) with its witness, and nothing is written.
   */
  async function checkOwnTable(c: CircuitInput): Promise<void> {
    const own = await routers.everyRouter().catch(storeErrorToHttp);
    const r = await checkOwnCircuit(config.isp, c, own, (auth) => store.get(auth)).catch(storeErrorToHttp);
    opts.metrics?.tableCheck(
      r.problems.length > 0 ? 'refused' : r.singlePoints.length > 0 ? 'single-point' : 'ok',
    );
    if (r.problems.length > 0)
      throw new HttpError(
        409,
        `the circuit would not deliver inside ${config.isp}, so it was not written: ${r.problems.join('; ')}`,
      );
  }

  app.decorateRequest('account', '');
  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    const header = req.headers.authorization;
    const m = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
    if (!m) {
      return reply.code(401).header('www-authenticate', 'Bearer').send({
        statusCode: 401,
        error: 'Unauthorized',
        message: 'missing API key: send "Authorization: Bearer KEY"',
      });
    }
    const account = await accounts.account(m[1]!);
    if (!account)
      return reply.code(401).send({ statusCode: 401, error: 'Unauthorized', message: 'unknown API key' });
    req.account = account;
  });
  // Per account, after authentication (preHandler): one customer's burst cannot starve the others.
  const limit = { max: config.rateLimit?.max ?? 100, windowMs: config.rateLimit?.windowMs ?? 1000 };
  await app.register(rateLimit, {
    hook: 'preHandler',
    max: limit.max,
    timeWindow: limit.windowMs,
    keyGenerator: (req) => `account:${req.account}`,
    errorResponseBuilder: (_req, ctx) => ({
      statusCode: 429,
      error: 'Too Many Requests',
      message: `rate limit of ${ctx.max} requests per ${limit.windowMs} ms exceeded for this account; retry in ${ctx.after}`,
    }),
  });

  async function owned(auth: string, account: string): Promise<Circuit> {
    const c = await store.get(auth).catch(storeErrorToHttp);
    if (!c || c.owner !== account) throw new HttpError(404, `no circuit ${auth} in account ${account}`);
    return c;
  }

  /**
   * A customer's compare-and-swap on a circuit (chain, relinquish). Routers record their failover
   * choices in the circuit (`active`), which moves its revision: a change of that alone is not a
   * concurrent customer change, so the operation is retried on the new revision. Any other change
   * in between is a real conflict: 409.
   */
  async function customerSwap<T>(first: Circuit, op: (cur: Circuit) => Promise<T>): Promise<T> {
    let cur = first;
    for (let attempt = 1; ; attempt++) {
      try {
        return await op(cur);
      } catch (err) {
        if (!(err instanceof ConflictError) || attempt >= ROUTER_RECORD_RETRIES) return storeErrorToHttp(err);
        const now = await owned(cur.auth, cur.owner);
        if (!onlyActiveMoved(cur, now)) return storeErrorToHttp(err);
        cur = now;
      }
    }
  }

  r.post(
    '/circuits',
    {
      schema: {
        summary: 'Buy a circuit from ingress PoP to egress PoP',
        description:
          "Give exactly one of `next` (chain to the next segment) or `deliver` (last segment). Returns the authenticator to send with and the ingress routers to send to; with `requireTags` (or on an ISP that requires tags) also the circuit's `tagKey`. With an `Idempotency-Key` header, a retry with the same key (same account) returns the circuit the key created, with `Idempotent-Replayed: true`, and creates and bills nothing; the same key with a different body is 422.",
        tags: ['circuits'],
        security: [{ bearer: [] }],
        body: CreateCircuitBody,
        headers: Type.Object({
          'idempotency-key': Type.Optional(
            Type.String({
              pattern: IDEMPOTENCY_KEY.source,
              description: 'makes retries safe: 1-255 visible ASCII characters',
            }),
          ),
        }),
        response: { 201: CircuitView, ...errors },
      },
    },
    async (req, reply) => {
      const b = req.body;
      const key = req.headers['idempotency-key'];
      if (!pops.has(b.ingressPop)) throw new HttpError(400, `unknown ingress PoP ${b.ingressPop}`);
      if (!pops.has(b.egressPop)) throw new HttpError(400, `unknown egress PoP ${b.egressPop}`);
      const offer = offers.get(`${b.ingressPop}->${b.egressPop}`);
      if (!offer)
        throw new HttpError(400, `no offer from ${b.ingressPop} to ${b.egressPop}; see GET /offers`);
      if ((b.next === undefined) === (b.deliver === undefined))
        throw new HttpError(400, 'give exactly one of `next` (chain onwards) or `deliver` (last segment)');
      let action: EgressAction;
      if (b.next) action = { kind: 'forward', next: b.next };
      else if (b.deliver!.kind === 'endpoint')
        action = {
          kind: 'deliver-endpoint',
          addresses: b.deliver!.addresses,
          ...(b.deliver!.auth ? { auth: b.deliver!.auth } : {}),
        };
      else if (b.deliver!.kind === 'udp')
        action = {
          kind: 'deliver-udp',
          target: b.deliver!.target,
          ...(b.deliver!.reply ? { reply: b.deliver!.reply } : {}),
        };
      else {
        const d = b.deliver!;
        action = {
          kind: 'deliver-ip',
          prefixes: d.prefixes,
          source: d.source,
          ...(d.reply ? { reply: d.reply } : {}),
        };
        await checkIpTransit(action, b.egressPop, req.account);
      }
      await checkHops(hopsOf(action));
      if ((await routers.addresses(b.ingressPop).catch(storeErrorToHttp)).length === 0)
        throw new HttpError(503, `no live router in ingress PoP ${b.ingressPop}; try again later`);
      const internalRouters =
        b.ingressPop === b.egressPop ? [] : await routers.addresses(b.egressPop).catch(storeErrorToHttp);
      if (b.ingressPop !== b.egressPop && internalRouters.length === 0)
        throw new HttpError(503, `no live router in egress PoP ${b.egressPop}; try again later`);
      const input: CircuitInput = {
        auth: newAuthenticator(),
        owner: req.account,
        ingressPop: b.ingressPop,
        egressPop: b.egressPop,
        bandwidthMbps: b.bandwidthMbps,
        internalAuth: b.ingressPop === b.egressPop ? '' : newAuthenticator(),
        internalRouters,
        action,
        burstBytes: burstBytes(b.bandwidthMbps, offer.burstMs),
        // From the OS CSPRNG, like the authenticator; the owner gets it once here (and on GET).
        ...(b.requireTags || config.requireTags ? { tagKey: randomBytes(16).toString('hex') } : {}),
      };
      await checkOwnTable(input);
      const created = await store
        .create(
          input,
          { capacityMbps: offer.capacityMbps },
          key === undefined ? undefined : { key, fingerprint: requestFingerprint(b) },
        )
        .catch(storeErrorToHttp);
      // The store answered with another circuit: the key's, created by an earlier try.
      if (created.auth !== input.auth) {
        req.log.info({ auth: created.auth.slice(0, 8), account: req.account }, 'idempotent create replayed');
        reply.header('idempotent-replayed', 'true');
      } else req.log.info({ auth: created.auth.slice(0, 8), account: req.account }, 'circuit created');
      return reply.code(201).send(await view(created, true));
    },
  );

  r.get(
    '/circuits',
    {
      schema: {
        summary: "List the caller's circuits",
        tags: ['circuits'],
        security: [{ bearer: [] }],
        response: { 200: Type.Object({ circuits: Type.Array(CircuitView) }), ...errors },
      },
    },
    async (req) => {
      const list = await store.list({ owner: req.account }).catch(storeErrorToHttp);
      return { circuits: await Promise.all(list.map((c) => view(c))) };
    },
  );

  r.get(
    '/circuits/:auth',
    {
      schema: {
        summary: 'One circuit',
        tags: ['circuits'],
        security: [{ bearer: [] }],
        params: AuthParams,
        response: { 200: CircuitView, ...errors },
      },
    },
    async (req) => view(await owned(req.params.auth, req.account), true),
  );

  r.post(
    '/circuits/:auth/chain',
    {
      schema: {
        summary: 'Re-point the circuit at a next hop (chain_path)',
        description:
          "The seed's chain_path(auth, nextHopAddr, nextHopAuth): the egress PoP forwards to `addresses` with `auth`.",
        tags: ['circuits'],
        security: [{ bearer: [] }],
        params: AuthParams,
        body: NextHop,
        response: { 200: CircuitView, ...errors },
      },
    },
    async (req) => {
      const first = await owned(req.params.auth, req.account);
      await checkHops([{ field: 'addresses', addresses: req.body.addresses, intoArrow: true }]);
      // Compare-and-swap on the revision we read: a concurrent chain cannot be silently overwritten.
      const next = await customerSwap(first, async (cur) => {
        // A new next-hop list starts on its first address: drop any failover choice made on the old one.
        const patch = {
          action: { kind: 'forward' as const, next: req.body },
          active: withoutNext(cur.active),
        };
        await checkOwnTable({ ...cur, ...patch });
        return store.update(cur.auth, patch, { expectRevision: cur.revision });
      });
      return view(next);
    },
  );

  r.delete(
    '/circuits/:auth',
    {
      schema: {
        summary: 'Relinquish a circuit',
        tags: ['circuits'],
        security: [{ bearer: [] }],
        params: AuthParams,
        response: { 200: CircuitView, ...errors },
      },
    },
    async (req) => {
      const gone = await customerSwap(await owned(req.params.auth, req.account), async (cur) => {
        await store.delete(cur.auth, { expectRevision: cur.revision });
        return cur;
      });
      return view(gone);
    },
  );

  r.get(
    '/circuits/:auth/stats',
    {
      schema: {
        summary: "Traffic counters and SLA verdict for a circuit, summed over the ISP's routers",
        description:
          "`in`: DATA entering the ISP at the ingress PoP; `out`: DATA leaving at the egress PoP (forwarded or delivered); `drops` by reason. `sla` judges the offer's loss and latency bounds over the recent window (docs/api.md).",
        tags: ['circuits'],
        security: [{ bearer: [] }],
        params: AuthParams,
        response: { 200: CircuitStats, ...errors },
      },
    },
    async (req) => {
      const c = await owned(req.params.auth, req.account);
      const all = await store.listRouterStats().catch(storeErrorToHttp);
      // The freshest publish goes into the history first, so the verdict is as recent as the counters.
      monitor.ingest(all);
      const routers = all
        .filter((s) => s.circuits[c.auth])
        .map((s) => ({
          router: s.router,
          pop: s.pop,
          address: s.address,
          updatedAt: s.updatedAt,
          ...counterView(s.circuits[c.auth]!),
        }));
      const sum = (f: (x: (typeof routers)[0]) => number): number => routers.reduce((t, x) => t + f(x), 0);
      const drops: Record<string, number> = {};
      for (const x of routers) for (const [k, n] of Object.entries(x.drops)) drops[k] = (drops[k] ?? 0) + n;
      const offer = offers.get(`${c.ingressPop}->${c.egressPop}`);
      // A router that could not compile the record says why; the circuit is not forwarded there.
      const rejected = all.flatMap((s) => {
        const reason = s.rejections?.[c.auth];
        return reason === undefined ? [] : [{ router: s.router, pop: s.pop, reason }];
      });
      return {
        auth: c.auth,
        packets: sum((x) => x.packets),
        bytes: sum((x) => x.bytes),
        dropped: sum((x) => x.dropped),
        in: { packets: sum((x) => x.in.packets), bytes: sum((x) => x.in.bytes) },
        out: { packets: sum((x) => x.out.packets), bytes: sum((x) => x.out.bytes) },
        drops,
        // An offer withdrawn from the config since the sale leaves no bounds to judge.
        ...(offer
          ? {
              sla: verdict(
                monitor.report(c, { latencyMs: offer.latencyMs.max, lossPct: offer.maxLossPct }, sla),
              ),
            }
          : {}),
        ...(rejected.length > 0 ? { rejected } : {}),
        routers,
      };
    },
  );
}

/** A list of addresses from a request, where it came from, and whether ARROW packets go there. */
interface HopToCheck {
  field: string;
  addresses: string[];
  /**
   * ARROW packets with an authenticator are sent here (next hops, Arrow endpoints), so this
   * ISP's own routers would take them back in. Not so for raw UDP targets, nor for reply hops,
   * which may rightly enter this ISP's own return circuit.
   */
  intoArrow: boolean;
  /** A single address field (`deliver.target`), named without an index. */
  single?: boolean;
}

/** A prefix the schema has checked already, parsed by the one parser; 400 naming the field otherwise. */
function mustParsePrefix(text: string, field: string): IpPrefix {
  const r = parsePrefix(text);
  if (!r.ok) throw new HttpError(400, `${field}: ${r.message}`);
  return r.prefix;
}

function label(h: HopToCheck, i: number): string {
  return h.single ? h.field : `${h.field}[${i}]`;
}

function hopsOf(action: EgressAction): HopToCheck[] {
  switch (action.kind) {
    case 'forward':
      return [{ field: 'next.addresses', addresses: action.next.addresses, intoArrow: true }];
    case 'deliver-endpoint':
      return [{ field: 'deliver.addresses', addresses: action.addresses, intoArrow: true }];
    case 'deliver-udp':
      return [
        { field: 'deliver.target', addresses: [action.target], intoArrow: false, single: true },
        ...(action.reply
          ? [{ field: 'deliver.reply.addresses', addresses: action.reply.addresses, intoArrow: false }]
          : []),
      ];
    case 'deliver-ip':
      return action.reply
        ? [{ field: 'deliver.reply.addresses', addresses: action.reply.addresses, intoArrow: false }]
        : [];
  }
}

/** One router's counters for the API; routers from before in/out accounting publish only the first three. */
function counterView(c: PublishedCircuitCounters): {
  packets: number;
  bytes: number;
  dropped: number;
  in: { packets: number; bytes: number };
  out: { packets: number; bytes: number };
  drops: Record<string, number>;
} {
  return {
    packets: c.packets,
    bytes: c.bytes,
    dropped: c.dropped,
    in: { packets: c.inPackets ?? 0, bytes: c.inBytes ?? 0 },
    out: { packets: c.outPackets ?? 0, bytes: c.outBytes ?? 0 },
    drops: { ...c.drops },
  };
}
