import { Type, type Static } from '@sinclair/typebox';
import { OfferConfigSchema } from '../portal/config.js';
import { ImpairConfigSchema } from '../router/config.js';

/** Fault injection for a group of routers (lab only): see the router config's `impair`, docs/operations.md. */
const LabImpairSchema = Type.Partial(ImpairConfigSchema, {
  additionalProperties: false,
  description:
    'drop/delay/rewrite what these routers carry (not probes or keepalives): {dropPct, delayMs, jitterMs?, rewritePct?, seed?, queueLimit?}',
});

/** A whole emulated network in one YAML file: ISPs, their PoPs and routers, offers, accounts, servers. */
export const TopologySchema = Type.Object(
  {
    name: Type.String({ default: 'lab' }),
    isps: Type.Array(
      Type.Object(
        {
          name: Type.String({ pattern: '^[a-z][a-z0-9-]*$' }),
          accounts: Type.Array(
            Type.Object({
              name: Type.String({ minLength: 1 }),
              apiKey: Type.Optional(
                Type.String({
                  minLength: 16,
                  description: 'default: a random key; the portal config gets only its salted hash',
                }),
              ),
            }),
            { minItems: 1 },
          ),
          pops: Type.Array(
            Type.Object({
              name: Type.String({ pattern: '^[a-z][a-z0-9-]*$' }),
              routers: Type.Integer({ minimum: 1, maximum: 16, default: 2, description: 'how many routers' }),
              impair: Type.Optional(LabImpairSchema),
              egress: Type.Optional(
                Type.Boolean({
                  description:
                    'IP transit leaves here (netns labs only): each router gets an egress TUN and decapsulates deliver-ip circuits; customer tunnel addresses come from 100.64.0.0/10 (docs/egress.md)',
                }),
              ),
              egressSnat: Type.Optional(
                Type.Boolean({
                  description:
                    "with egress: the routers source-NAT customers' packets to their own address (masquerade) instead of announcing the customers' prefixes to the edge router",
                }),
              ),
            }),
            { minItems: 1 },
          ),
          offers: Type.Array(OfferConfigSchema),
          impair: Type.Optional(LabImpairSchema),
          transitDelayMs: Type.Optional(
            Type.Number({
              minimum: 0,
              maximum: 10_000,
              description:
                "one-way delay of crossing this ISP (WAN latency), added by the routers' delay stage: half at each router a packet passes (ingress PoP and egress PoP)",
            }),
          ),
          store: Type.Union(
            [
              Type.Object({ kind: Type.Literal('sqlite') }, { additionalProperties: false }),
              Type.Object(
                { kind: Type.Literal('etcd'), members: Type.Integer({ minimum: 1, maximum: 7, default: 3 }) },
                { additionalProperties: false },
              ),
            ],
            {
              default: { kind: 'sqlite' },
              description: "the ISP's circuit store: one SQLite file, or its own etcd cluster",
            },
          ),
        },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 200 },
    ),
    servers: Type.Array(
      Type.Object(
        {
          name: Type.String({ minLength: 1 }),
          kind: Type.Literal('udp-echo'),
          deliveredBy: Type.Optional(
            Type.Array(Type.String({ pattern: '^[a-z][a-z0-9-]*/[a-z][a-z0-9-]*$' }), {
              description: "PoPs (isp/pop) that can deliver to this server: the atlas's targets",
            }),
          ),
        },
        { additionalProperties: false },
      ),
      { default: [] },
    ),
    peerings: Type.Optional(
      Type.Array(
        Type.Object(
          {
            a: Type.String({ pattern: '^[a-z][a-z0-9-]*/[a-z][a-z0-9-]*$' }),
            b: Type.String({ pattern: '^[a-z][a-z0-9-]*/[a-z][a-z0-9-]*$' }),
            latencyMs: Type.Optional(Type.Number({ minimum: 0 })),
          },
          { additionalProperties: false },
        ),
        { description: 'links between PoPs of different ISPs, for the atlas' },
      ),
    ),
    atlas: Type.Optional(
      Type.Object(
        {
          measureIntervalMs: Type.Integer({ minimum: 50, default: 500 }),
          echoes: Type.Integer({ minimum: 1, maximum: 100, default: 10 }),
          history: Type.Integer({ minimum: 1, default: 20 }),
        },
        { additionalProperties: false, description: 'run an atlas over the lab (arrow atlas)' },
      ),
    ),
    hosts: Type.Optional(
      Type.Array(Type.String({ pattern: '^[a-z][a-z0-9-]*$' }), {
        maxItems: 254,
        description:
          'extra namespaces for unmodified programs (netns labs only): arrow-<lab>-host-<name> at 10.77.250.1 and up',
      }),
    ),
    statsIntervalMs: Type.Integer({ minimum: 50, default: 500 }),
    failover: Type.Optional(
      Type.Unknown({
        description:
          "router failover settings for every router (the router config's `failover` section, docs/operations.md); neighbour liveness is on by default (200 ms × 3), `{liveness: {enabled: false}}` turns it off",
      }),
    ),
  },
  { additionalProperties: false },
);
export type Topology = Static<typeof TopologySchema>;

const offer = (
  from: string,
  to: string,
  latency: [number, number],
  price: number,
): Topology['isps'][0]['offers'][0] => ({
  from,
  to,
  capacityMbps: 1000,
  latencyMs: { min: latency[0], max: latency[1] },
  maxLossPct: 0.1,
  uptimePct: 99.99,
  pricePerMbps: price,
});

function isp(
  name: string,
  pops: [string, string],
  latency: [number, number],
  price: number,
): Topology['isps'][0] {
  return {
    name,
    accounts: [{ name: 'demo', apiKey: `demo-key-${name}-0000000000` }],
    store: { kind: 'sqlite' },
    pops: pops.map((p) => ({ name: p, routers: 2 })),
    offers: [offer(pops[0], pops[1], latency, price), offer(pops[1], pops[0], latency, price)],
  };
}

/** The demo network: three ISPs, two PoPs each, two routers per PoP, and a UDP echo server. */
export function defaultTopology(): Topology {
  return {
    name: 'demo',
    isps: [
      isp('alpha', ['ams', 'fra'], [2, 10], 1.0),
      isp('beta', ['fra', 'par'], [3, 12], 0.8),
      isp('gamma', ['par', 'lon'], [2, 8], 1.2),
    ],
    servers: [{ name: 'echo', kind: 'udp-echo' }],
    statsIntervalMs: 200,
  };
}

/**
 * The `arrow demo` network: the three ISPs in a row, plus `flaky`, which sells the direct
 * ams→lon link cheaper and faster on paper but drops a fifth of what it carries. An atlas
 * learns the offers, measures every PoP pair, and must find flaky's loss itself.
 */
export function demoTopology(): Topology {
  const t = defaultTopology();
  const flaky = isp('flaky', ['ams', 'lon'], [1, 5], 0.5);
  flaky.impair = { dropPct: 20 };
  return {
    ...t,
    isps: [...t.isps, flaky],
    servers: [{ name: 'echo', kind: 'udp-echo', deliveredBy: ['gamma/lon', 'flaky/lon'] }],
    peerings: [
      { a: 'alpha/fra', b: 'beta/fra' },
      { a: 'beta/par', b: 'gamma/par' },
    ],
    atlas: { measureIntervalMs: 250, echoes: 10, history: 20 },
  };
}
