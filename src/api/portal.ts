import { Type, type Static } from '@sinclair/typebox';
import { AddressString, PrefixString } from '../util/address-schema.js';
import { MAX_DELIVER_PREFIXES } from '../store/circuit.js';

/**
 * The portal API's JSON schemas, shared by the server (validated at the edge, so handlers receive
 * typed, checked data) and its clients (which check what the server answers).
 */

export const Authenticator = Type.String({
  pattern: '^[0-9a-f]{32}$',
  description: '128-bit circuit authenticator, 32 lowercase hex digits',
});
export const Address = AddressString();
/**
 * An address as a stored record holds it, in answers. Requests are checked with `Address`, but a
 * record written before that check, or by hand, may hold anything; its circuit is then reported
 * as rejected by the routers (`rejected` in the stats), and an answer that lists it must still
 * be readable, so that the customer can see it and relinquish it.
 */
const StoredAddress = Type.String({ maxLength: 300, description: 'address as stored (IP:PORT when valid)' });

/** The hop and delivery shapes, over a given address schema: strict in requests, as stored in answers. */
function hopSchemas(address: typeof Address | typeof StoredAddress) {
  const addresses = Type.Array(address, {
    minItems: 1,
    maxItems: 16,
    description: 'primary first, then backups',
  });
  const nextHop = Type.Object(
    { addresses, auth: Authenticator },
    {
      additionalProperties: false,
      description: 'next hop: router addresses of the next segment and its authenticator',
    },
  );
  const deliver = Type.Union([
    Type.Object(
      {
        kind: Type.Literal('endpoint'),
        addresses,
        auth: Type.Optional(Authenticator),
      },
      {
        additionalProperties: false,
        description: 'the destination runs Arrow and receives the ARROW header',
      },
    ),
    Type.Object(
      {
        kind: Type.Literal('udp'),
        target: address,
        reply: Type.Optional(nextHop),
      },
      {
        additionalProperties: false,
        description: 'payload to an unmodified UDP server; its replies enter the `reply` circuit',
      },
    ),
    Type.Object(
      {
        kind: Type.Literal('ip'),
        prefixes: Type.Array(PrefixString('a destination prefix, e.g. 198.51.100.0/24'), {
          minItems: 1,
          maxItems: MAX_DELIVER_PREFIXES,
        }),
        source: PrefixString("the customer's tunnel prefix, inside the ISP's customerPrefixes"),
        reply: Type.Optional(nextHop),
      },
      {
        additionalProperties: false,
        description:
          'IP transit: the payload is an IP packet, handed to the egress host to route to one of `prefixes`; answers to `source` enter the `reply` circuit (docs/egress.md)',
      },
    ),
  ]);
  return { nextHop, deliver };
}

const strict = hopSchemas(Address);
const stored = hopSchemas(StoredAddress);
export const NextHop = strict.nextHop;
export const Deliver = strict.deliver;

export const CreateCircuitBody = Type.Object(
  {
    ingressPop: Type.String({ minLength: 1 }),
    egressPop: Type.String({ minLength: 1 }),
    bandwidthMbps: Type.Number({ exclusiveMinimum: 0, maximum: 1_000_000 }),
    next: Type.Optional(NextHop),
    deliver: Type.Optional(Deliver),
    requireTags: Type.Optional(
      Type.Boolean({
        description:
          "every DATA packet must carry this ISP's per-packet tag (docs/wire.md): the answer then holds the circuit's `tagKey`. An ISP may require tags on all its circuits whatever this says",
      }),
    ),
  },
  { additionalProperties: false },
);
export type CreateCircuitBody = Static<typeof CreateCircuitBody>;

export const CircuitView = Type.Object({
  auth: Authenticator,
  ingressPop: Type.String(),
  egressPop: Type.String(),
  bandwidthMbps: Type.Number(),
  ingress: Type.Array(Address, { description: 'ingress router addresses, primary first' }),
  next: Type.Optional(stored.nextHop),
  deliver: Type.Optional(stored.deliver),
  burstBytes: Type.Optional(
    Type.Integer({
      description:
        'policing burst: DATA beyond bandwidthMbps plus this many bytes at once is dropped (over-rate)',
    }),
  ),
  active: Type.Optional(
    Type.Object(
      {
        next: Type.Optional(Type.Integer({ minimum: 0 })),
        reply: Type.Optional(Type.Integer({ minimum: 0 })),
      },
      {
        description:
          "which address is in use, when not the first: `next` indexes next.addresses (or deliver.addresses), `reply` deliver.reply.addresses; set by the routers' failover repair (docs/failover.md)",
      },
    ),
  ),
  tagsRequired: Type.Optional(
    Type.Boolean({
      description: "every DATA packet must carry this ISP's tag (docs/wire.md); absent: false",
    }),
  ),
  tagKey: Type.Optional(
    Type.String({
      pattern: '^[0-9a-f]{32}$',
      description:
        "the SipHash-2-4 key for this circuit's tags, 32 hex digits: only in the answers to its owner's create and GET /circuits/{auth}, never in lists",
    }),
  ),
  createdAt: Type.String(),
  revision: Type.Integer(),
});
export type CircuitView = Static<typeof CircuitView>;

export const AuthParams = Type.Object({ auth: Authenticator });

export const Offer = Type.Object({
  isp: Type.String(),
  from: Type.String({ description: 'ingress PoP' }),
  to: Type.String({ description: 'egress PoP' }),
  capacityMbps: Type.Number(),
  availableMbps: Type.Number({ description: 'capacity not yet sold' }),
  latencyMs: Type.Object({ min: Type.Number(), max: Type.Number() }),
  maxLossPct: Type.Number(),
  uptimePct: Type.Number(),
  pricePerMbps: Type.Number(),
  ingress: Type.Array(Address, { description: 'routers of the ingress PoP, primary first, backups after' }),
  egress: Type.Array(Address, { description: 'routers of the egress PoP' }),
});

export const OffersResponse = Type.Object({
  isp: Type.String(),
  pops: Type.Array(Type.Object({ name: Type.String(), routers: Type.Array(Address) })),
  offers: Type.Array(Offer),
});

export const Counters = Type.Object({
  packets: Type.Integer(),
  bytes: Type.Integer(),
  dropped: Type.Integer(),
});

const Traffic = Type.Object(
  { packets: Type.Integer(), bytes: Type.Integer() },
  { description: 'DATA packets and bytes (whole ARROW datagrams)' },
);
const DropsByReason = Type.Record(Type.String(), Type.Integer(), {
  description:
    "drops of the circuit's packets by reason (hop-limit, no-next-hop, probe-rate, impair, send-error, and at the ingress over-rate, bad-tag, replay, …); reasons never seen are absent",
});

export const SlaViolation = Type.Object({
  kind: Type.Union([Type.Literal('loss'), Type.Literal('latency')]),
  measured: Type.Number(),
  bound: Type.Number(),
  message: Type.String({ description: 'e.g. "loss 23% > 0.1%"' }),
});

export const SlaReport = Type.Object(
  {
    ok: Type.Boolean({ description: 'both bounds held over the window' }),
    lossOk: Type.Boolean(),
    latencyOk: Type.Boolean(),
    windowS: Type.Number({ description: 'span judged, in seconds (shorter while history builds up)' }),
    from: Type.Optional(Type.String()),
    to: Type.Optional(Type.String()),
    inPackets: Type.Integer({ description: 'DATA entering the ISP in the span' }),
    outPackets: Type.Integer({ description: 'DATA leaving the ISP in the span' }),
    slackPackets: Type.Integer({
      description:
        "deficit within the routers' snapshot timing slack (recent rate × (2 ms + twice the slowest counter reads, countersReadMs, of the ingress and egress routers)), not counted as loss",
    }),
    lostPackets: Type.Integer({ description: 'in - out - slack, never negative' }),
    overRatePackets: Type.Optional(
      Type.Integer({
        description:
          "DATA the ingress dropped in the span as over the bought rate (over-rate): the sender's excess, not the ISP's loss, so never in inPackets nor lostPackets",
      }),
    ),
    lossPct: Type.Union([Type.Number(), Type.Null()], {
      description: 'loss over the span; null with too few packets to judge',
    }),
    latencyMs: Type.Union([Type.Number(), Type.Null()], {
      description: 'latest one-way latency estimate across the segment (RTT/2); null when not measured',
    }),
    latencyMaxMs: Type.Union([Type.Number(), Type.Null()], {
      description: 'highest estimate in the span: the figure judged against the bound',
    }),
    bounds: Type.Object({
      latencyMs: Type.Number({ description: "the offer's latencyMs.max" }),
      lossPct: Type.Number({ description: "the offer's maxLossPct" }),
    }),
    violations: Type.Array(SlaViolation),
  },
  { description: "whether the offer's latency and loss bounds held over the recent window" },
);

export const CircuitStats = Type.Object({
  auth: Authenticator,
  packets: Type.Integer({ description: 'circuit packets handled by all routers (DATA and probes)' }),
  bytes: Type.Integer(),
  dropped: Type.Integer({ description: "all drops of the circuit's packets; `drops` by reason" }),
  in: Traffic,
  out: Traffic,
  drops: DropsByReason,
  sla: Type.Optional(SlaReport),
  rejected: Type.Optional(
    Type.Array(
      Type.Object({
        router: Type.String(),
        pop: Type.String(),
        reason: Type.String({ description: 'why the router could not compile the circuit record' }),
      }),
      {
        description:
          "routers that skipped this circuit's record because they could not compile it (it is not forwarded there); absent when none did",
      },
    ),
  ),
  routers: Type.Array(
    Type.Object({
      router: Type.String(),
      pop: Type.String(),
      address: Type.String(),
      updatedAt: Type.String(),
      packets: Type.Integer(),
      bytes: Type.Integer(),
      dropped: Type.Integer(),
      in: Traffic,
      out: Traffic,
      drops: DropsByReason,
    }),
  ),
});

export const ErrorResponse = Type.Object({
  statusCode: Type.Integer(),
  error: Type.String(),
  message: Type.String(),
});
