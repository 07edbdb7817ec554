import { Type, type Static } from '@sinclair/typebox';

/**
 * The atlas API's JSON schemas, shared by the server (which validates queries at the edge) and
 * its client (which checks what the server answers). docs/atlas.md.
 */

const IspName = Type.String({
  minLength: 1,
  maxLength: 100,
  pattern: '^[^/\\s]+$',
  description: 'an ISP name as its portal reports it',
});

export const PathQuerySchema = Type.Object(
  {
    from: Type.String({
      minLength: 1,
      maxLength: 201,
      pattern: '^(\\*/[^/\\s]+|[^*/\\s][^/\\s]*(/[^/\\s]+)?)$',
      description:
        'source: an ingress ISP (`ISP`, any of its PoPs), one PoP (`ISP/POP`), or a place (`*/POP`: the PoP named POP of every ISP that has one)',
    }),
    to: Type.String({
      minLength: 1,
      maxLength: 201,
      pattern: '^\\S+$',
      description:
        "destination: an egress PoP (`ISP/POP`), or an IPv4 address or `IPv4:port` that the atlas's targets map to the PoPs that can deliver to it (longest prefix match)",
    }),
    maxLatencyMs: Type.Optional(
      Type.Number({
        exclusiveMinimum: 0,
        description: 'soft bound: path latency (one way, ms) at most this',
      }),
    ),
    minBandwidthMbps: Type.Optional(
      Type.Number({
        exclusiveMinimum: 0,
        maximum: 1_000_000,
        description:
          'hard filter: every segment must have at least this much available bandwidth; also the bandwidth priced',
      }),
    ),
    maxPrice: Type.Optional(
      Type.Number({
        minimum: 0,
        description:
          'soft bound: total monthly price, the sum over segments of pricePerMbps × bandwidth (minBandwidthMbps, or 1)',
      }),
    ),
    maxLossPct: Type.Optional(
      Type.Number({
        minimum: 0,
        maximum: 100,
        description: 'soft bound: path loss in percent, 1 − Π(1 − loss of each segment and link)',
      }),
    ),
    avoid: Type.Optional(
      Type.Array(IspName, {
        maxItems: 256,
        description: 'hard filter: ISPs that must not carry the path (ISPs unknown to the atlas are ignored)',
      }),
    ),
    require: Type.Optional(
      Type.Array(IspName, {
        maxItems: 8,
        description: 'hard filter: ISPs that must each carry a segment of the path',
      }),
    ),
    maxIsps: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 32,
        description: 'hard filter: at most this many ARROW segments (each from a different ISP)',
      }),
    ),
    latency: Type.Optional(
      Type.Union([Type.Literal('measured'), Type.Literal('sla')], {
        default: 'measured',
        description:
          "which latency and loss to use: `measured` (a fresh measurement when there is one, else the SLA's max latency and maxLossPct) or `sla` (always the SLA)",
      }),
    ),
    k: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 8,
        default: 1,
        description: 'how many disjoint alternatives to return',
      }),
    ),
    disjoint: Type.Optional(
      Type.Union([Type.Literal('router'), Type.Literal('isp')], {
        default: 'isp',
        description:
          '`isp`: alternatives share no ISP except the source ISP and the ISP of a fixed destination; `router`: they share no PoP except where they start and end',
      }),
    ),
    sort: Type.Optional(
      Type.Union([Type.Literal('latency'), Type.Literal('price'), Type.Literal('hops')], {
        default: 'latency',
        description:
          'what "best" means: lowest latency (ties: fewer segments), lowest price (ties: latency) or fewest segments (ties: latency)',
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'a declarative path query: source, destination, constraints, sort',
  },
);
export type PathQuery = Static<typeof PathQuerySchema>;

const Num = Type.Number();
/** JSON has no Infinity: a cut pair's latency goes out as null. */
const NumOrNull = Type.Union([Type.Number(), Type.Null()]);

export const PathSegmentSchema = Type.Object({
  isp: Type.String(),
  ingressPop: Type.String(),
  egressPop: Type.String(),
  latencyMs: NumOrNull,
  lossPct: Num,
  measured: Type.Boolean(),
  availableMbps: Num,
  price: Num,
  ingress: Type.Array(Type.String()),
  egress: Type.Array(Type.String()),
});

export const PathLinkSchema = Type.Object({
  a: Type.String(),
  b: Type.String(),
  latencyMs: NumOrNull,
  lossPct: Num,
});

export const PathCandidateSchema = Type.Object({
  segments: Type.Array(PathSegmentSchema),
  links: Type.Array(PathLinkSchema),
  latencyMs: NumOrNull,
  lossPct: Num,
  bandwidthMbps: Num,
  price: Num,
  isps: Type.Array(Type.String()),
});

/** POST /paths: paths meeting the constraints, the near misses with reasons, and notes. */
export const PathAnswerSchema = Type.Object({
  paths: Type.Array(PathCandidateSchema),
  rejected: Type.Array(Type.Object({ path: PathCandidateSchema, reasons: Type.Array(Type.String()) })),
  notes: Type.Array(Type.String()),
});

const OfferSchema = Type.Object({
  isp: Type.String(),
  from: Type.String(),
  to: Type.String(),
  capacityMbps: Num,
  availableMbps: Num,
  latencyMs: Type.Object({ min: Num, max: Num }),
  maxLossPct: Num,
  uptimePct: Num,
  pricePerMbps: Num,
  ingress: Type.Array(Type.String()),
  egress: Type.Array(Type.String()),
});

/** GET /map: each ISP (portal, freshness), PoPs, offers, peerings and targets. */
export const AtlasMapViewSchema = Type.Object({
  isps: Type.Array(
    Type.Object({
      name: Type.String(),
      portal: Type.String(),
      fetchedAt: Type.Union([Type.String(), Type.Null()]),
      error: Type.Union([Type.String(), Type.Null()]),
    }),
  ),
  pops: Type.Array(
    Type.Object({ isp: Type.String(), pop: Type.String(), routers: Type.Array(Type.String()) }),
  ),
  offers: Type.Array(OfferSchema),
  peerings: Type.Array(Type.Object({ a: Type.String(), b: Type.String(), latencyMs: Type.Optional(Num) })),
  targets: Type.Array(Type.Object({ prefix: Type.String(), pops: Type.Array(Type.String()) })),
});
export type AtlasMapView = Static<typeof AtlasMapViewSchema>;

/** GET /measurements: one-way latency and loss per PoP pair. */
export const MeasurementsSchema = Type.Object({
  probeErrors: Type.Optional(Type.Integer({ description: 'probes that failed outright (socket errors)' })),
  pairs: Type.Array(
    Type.Object({
      kind: Type.Union([Type.Literal('segment'), Type.Literal('link')]),
      key: Type.String(),
      a: Type.String(),
      b: Type.String(),
      latencyMs: NumOrNull,
      lossPct: NumOrNull,
      samples: Type.Integer(),
      at: Type.Union([Type.String(), Type.Null()]),
    }),
  ),
});
