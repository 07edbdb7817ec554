import { AdminConfigSchema } from '../api/admin.js';
import { Type, type Static } from '@sinclair/typebox';
import { StoreConfigSchema } from '../store/config.js';
import { AddressString, BindAddressString, PrefixString } from '../util/address-schema.js';
import { TargetPolicySchema } from './target-policy.js';
import { TlsConfigSchema } from '../util/http.js';
import { API_KEY_HASH_PATTERN } from './accounts.js';
import { DEFAULT_BURST_MS, MIN_BURST_BYTES } from '../router/police.js';

const Address = AddressString();

export const OfferConfigSchema = Type.Object(
  {
    from: Type.String({ minLength: 1, description: 'ingress PoP' }),
    to: Type.String({ minLength: 1, description: 'egress PoP' }),
    capacityMbps: Type.Number({
      exclusiveMinimum: 0,
      description: 'what may be sold on this PoP pair in total',
    }),
    latencyMs: Type.Object({ min: Type.Number({ minimum: 0 }), max: Type.Number({ minimum: 0 }) }),
    maxLossPct: Type.Number({ minimum: 0, maximum: 100, default: 0.1 }),
    uptimePct: Type.Number({ minimum: 0, maximum: 100, default: 99.99 }),
    pricePerMbps: Type.Number({ minimum: 0, default: 1, description: 'monthly price per Mb/s' }),
    burstMs: Type.Optional(
      Type.Number({
        exclusiveMinimum: 0,
        maximum: 10_000,
        description: `policing burst, as milliseconds of traffic at the bought rate (default ${DEFAULT_BURST_MS}); never less than ${MIN_BURST_BYTES} bytes`,
      }),
    ),
  },
  { additionalProperties: false },
);

/** SLA monitoring of circuits (src/portal/sla.ts, docs/api.md). */
export const SlaConfigSchema = Type.Object(
  {
    windowS: Type.Number({
      exclusiveMinimum: 0,
      maximum: 86_400,
      default: 30,
      description: 'window over which loss and latency bounds are judged',
    }),
    sampleMs: Type.Integer({
      minimum: 0,
      default: 1000,
      description:
        "how often routers' published counters are read into the history, halfway between their publishes: set it to the routers' statsIntervalMs (0: only on requests)",
    }),
    minPackets: Type.Integer({
      minimum: 1,
      default: 100,
      description: 'fewer packets entering in the window: loss is not judged',
    }),
    staleMs: Type.Integer({
      minimum: 1,
      default: 5000,
      description: 'a router whose counters are this much older than the freshest is not waited for',
    }),
  },
  { additionalProperties: false, default: {} },
);
export type SlaConfig = Static<typeof SlaConfigSchema>;

export const PortalConfigSchema = Type.Object(
  {
    isp: Type.String({ minLength: 1 }),
    listen: BindAddressString('HTTP address, IP:PORT; port 0 picks one'),
    tls: Type.Optional(TlsConfigSchema),
    allowPlainHttp: Type.Optional(
      Type.Boolean({
        description:
          'serve plain HTTP on a non-loopback address without `tls` (API keys then cross the network in clear)',
      }),
    ),
    store: StoreConfigSchema,
    admin: Type.Optional(AdminConfigSchema),
    pops: Type.Array(
      Type.Object(
        {
          name: Type.String({ minLength: 1 }),
          routers: Type.Array(Address, {
            default: [],
            description:
              'static router addresses, primary first; live registrations in the store take precedence',
          }),
        },
        { additionalProperties: false },
      ),
      { minItems: 1 },
    ),
    offers: Type.Array(OfferConfigSchema),
    accounts: Type.Array(
      Type.Object(
        {
          name: Type.String({ minLength: 1 }),
          apiKeyHash: Type.Optional(
            Type.String({
              pattern: API_KEY_HASH_PATTERN,
              description: 'the API key salted and hashed: `arrow portal hash-key` makes one',
            }),
          ),
          apiKey: Type.Optional(
            Type.String({ description: 'refused: keys are never stored in clear; give apiKeyHash' }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    rateLimit: Type.Optional(
      Type.Object(
        {
          max: Type.Integer({ minimum: 1, default: 100, description: 'requests per account per window' }),
          windowMs: Type.Integer({ minimum: 1, default: 1000 }),
        },
        {
          additionalProperties: false,
          description: 'per-account request limit; beyond it, 429 with Retry-After',
        },
      ),
    ),
    sla: Type.Optional(SlaConfigSchema),
    requireTags: Type.Optional(
      Type.Boolean({
        description:
          "every circuit sold must carry this ISP's per-packet tag (docs/wire.md), whether or not the buyer asks",
      }),
    ),
    ipTransit: Type.Optional(
      Type.Object(
        {
          pops: Type.Array(Type.String({ minLength: 1 }), {
            minItems: 1,
            description: 'egress PoPs whose routers have an IP egress (router config `egress`)',
          }),
          customerPrefixes: Type.Array(PrefixString(), {
            minItems: 1,
            description:
              "the pool customers' tunnel addresses (deliver-ip `source`) must lie in: the egress routes them back to its routers",
          }),
        },
        {
          additionalProperties: false,
          description: 'IP transit (deliver-ip circuits, docs/egress.md); absent: not sold',
        },
      ),
    ),
    /** Where customers may make this ISP send: absent means the production default (src/portal/target-policy.ts). */
    targetPolicy: Type.Optional(TargetPolicySchema),
  },
  { additionalProperties: false },
);
export type PortalConfig = Static<typeof PortalConfigSchema>;
export type OfferConfig = Static<typeof OfferConfigSchema>;

/** Checks the cross-references a schema cannot: offers name known PoPs, names are unique. */
export function checkPortalConfig(c: PortalConfig): string[] {
  const problems: string[] = [];
  const pops = new Set<string>();
  for (const p of c.pops) {
    if (pops.has(p.name)) problems.push(`PoP ${p.name} defined twice`);
    pops.add(p.name);
  }
  const pairs = new Set<string>();
  for (const pop of c.ipTransit?.pops ?? [])
    if (!pops.has(pop)) problems.push(`ipTransit.pops names unknown PoP ${pop}`);
  for (const o of c.offers) {
    for (const pop of [o.from, o.to])
      if (!pops.has(pop)) problems.push(`offer ${o.from}->${o.to} names unknown PoP ${pop}`);
    if (o.latencyMs.min > o.latencyMs.max) problems.push(`offer ${o.from}->${o.to}: latency min exceeds max`);
    const key = `${o.from}->${o.to}`;
    if (pairs.has(key)) problems.push(`offer ${key} defined twice`);
    pairs.add(key);
  }
  const names = new Set<string>();
  for (const a of c.accounts) {
    if (a.apiKey !== undefined)
      problems.push(
        `account ${a.name}: apiKey in clear is not accepted; store apiKeyHash instead (make it with \`arrow portal hash-key\`)`,
      );
    else if (a.apiKeyHash === undefined) problems.push(`account ${a.name}: apiKeyHash missing`);
    if (names.has(a.name)) problems.push(`account ${a.name} defined twice`);
    names.add(a.name);
  }
  return problems;
}
