import { Type, type Static } from '@sinclair/typebox';

/**
 * The dashboard's JSON (docs/operations.md, "The dashboard"): what `arrow dashboard` serves at
 * `/api/snapshot` and streams as Server-Sent Events at `/api/events`, and what its page renders.
 * One module for the server, the page (which imports the types only) and the tests.
 */

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

export const RouterState = Type.Union(
  ['up', 'stalled', 'hung', 'dead', 'no-answer'].map((s) => Type.Literal(s)),
  {
    description:
      "up: its admin API answers with fresh stats; stalled: it answers, but its forwarding thread's stats are old; hung: no answer and its process is stopped (SIGSTOP); dead: no answer and no process; no-answer: no answer, process unknown",
  },
);
export type RouterStateName = Static<typeof RouterState>;

export const RouterLinkView = Type.Object({
  /** The neighbour: a router's name where the dashboard knows its address, else the address. */
  to: Type.String(),
  rttMs: Nullable(Type.Number()),
  dead: Type.Boolean(),
});

export const RouterView = Type.Object({
  name: Type.String(),
  isp: Type.String(),
  pop: Type.String(),
  address: Type.String(),
  state: RouterState,
  /** `kernel (xdp on veth0)`, `node`, ... */
  dataplane: Type.String(),
  circuits: Type.Integer(),
  /** From /metrics: arrow_router_forwarded_packets_total. */
  forwardedPackets: Type.Number(),
  /** From /metrics: the sum of arrow_router_dropped_packets_total over its reasons. */
  droppedPackets: Type.Number(),
  drops: Type.Record(Type.String(), Type.Number(), { description: 'dropped packets by reason' }),
  /** Forwarded packets per second between the last two polls. */
  pps: Type.Number(),
  repairs: Type.Number(),
  hopsMoved: Type.Number(),
  neighbours: Type.Object({ total: Type.Integer(), dead: Type.Integer() }),
  links: Type.Array(RouterLinkView),
  admin: Type.String({ description: "its admin API's base URL" }),
  error: Type.Optional(Type.String({ description: 'why its admin API did not answer' })),
});
export type RouterViewT = Static<typeof RouterView>;

export const ComponentView = Type.Object({
  name: Type.String(),
  service: Type.String(),
  up: Type.Boolean(),
  admin: Type.String(),
  error: Type.Optional(Type.String()),
});

export const TimelineEvent = Type.Object({
  /** Wall-clock ms since the epoch: when it happened (a router's verdict: when the router made it). */
  at: Type.Number(),
  kind: Type.Union(
    ['verdict-dead', 'verdict-alive', 'router-down', 'router-up', 'customer'].map((k) => Type.Literal(k)),
  ),
  /** Who: the router that made the verdict or went down, or `customer`. */
  subject: Type.String(),
  /** The neighbour a verdict is about. */
  object: Type.Optional(Type.String()),
  hopsMoved: Type.Optional(Type.Integer()),
  /** A customer event's outage, ms (last reply before the failure to the first after). */
  outageMs: Type.Optional(Type.Number()),
  text: Type.String(),
});
export type TimelineEventT = Static<typeof TimelineEvent>;

export const CustomerHop = Type.Object({
  index: Type.Integer(),
  isp: Nullable(Type.String()),
  pop: Nullable(Type.String()),
  router: Nullable(Type.String()),
  direction: Type.String(),
  rttMs: Nullable(Type.Number()),
  lossPct: Type.Number(),
});

export const CustomerCircuit = Type.Object({
  isp: Type.String(),
  direction: Type.Union([Type.Literal('forward'), Type.Literal('return')]),
  auth: Type.String(),
  from: Type.String(),
  to: Type.String(),
  packets: Type.Number(),
  dropped: Type.Number(),
  /** The portal's SLA verdict over its window; null before it has one. */
  sla: Nullable(
    Type.Object({
      ok: Type.Boolean(),
      lossPct: Nullable(Type.Number()),
      latencyMs: Nullable(Type.Number()),
      bounds: Type.Object({ latencyMs: Type.Number(), lossPct: Type.Number() }),
    }),
  ),
  error: Type.Optional(Type.String()),
});

export const AtlasCandidate = Type.Object({
  isps: Type.Array(Type.String()),
  latencyMs: Type.Number(),
  lossPct: Type.Number(),
  price: Type.Number(),
  rejected: Nullable(Type.Array(Type.String())),
});

export const CustomerView = Type.Object({
  name: Type.String({ description: 'whose view: the demo customer, or the path file' }),
  circuits: Type.Array(CustomerCircuit),
  /** Traceroute along the first forward circuit: each hop's RTT and loss. */
  traceroute: Type.Array(CustomerHop),
  tracerouteAt: Nullable(Type.Number()),
  atlas: Nullable(Type.Object({ chosen: Type.Array(Type.String()), candidates: Type.Array(AtlasCandidate) })),
  /** The customer's own RTT through the path, ms, when it sends echoes (the demo). */
  rttMs: Nullable(Type.Number()),
  /** DATA per second on the first forward circuit, from its portal's counters. */
  pps: Nullable(Type.Number()),
});
export type CustomerViewT = Static<typeof CustomerView>;

export const DashboardSnapshot = Type.Object({
  at: Type.Number(),
  source: Type.String({ description: 'what it watches: lab NAME, or admin URLs' }),
  version: Type.String(),
  isps: Type.Array(
    Type.Object({
      name: Type.String(),
      pops: Type.Array(Type.Object({ name: Type.String(), routers: Type.Array(Type.String()) })),
    }),
  ),
  routers: Type.Array(RouterView),
  components: Type.Array(ComponentView),
  customer: Nullable(CustomerView),
  /** The recent timeline, oldest first. */
  timeline: Type.Array(TimelineEvent),
  /** Per-router forwarded pps and the customer's RTT over the last minutes, for the charts. */
  history: Type.Object({
    at: Type.Array(Type.Number()),
    pps: Type.Record(Type.String(), Type.Array(Nullable(Type.Number()))),
    customerRttMs: Type.Array(Nullable(Type.Number())),
    customerPps: Type.Array(Nullable(Type.Number())),
  }),
});
export type DashboardSnapshotT = Static<typeof DashboardSnapshot>;
