import { Type, type Static } from '@sinclair/typebox';

/**
 * The CDN's JSON schemas (ARROW paper §4.4, docs/services.md "CDN"), shared by the cache nodes,
 * the controller that calls them, and tests: one definition of each message.
 */

/** A file's name in the CDN: one path segment, no dot files (nothing can climb out of the store). */
export const FILE_NAME_PATTERN = '^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$';

export const FileParamsSchema = Type.Object(
  { name: Type.String({ pattern: FILE_NAME_PATTERN, description: 'file name: letters, digits, . _ -' }) },
  { additionalProperties: false },
);
export type FileParams = Static<typeof FileParamsSchema>;

/** `POST /rtt` on a cache: the controller asks it to measure its round trip to a client. */
export const RttRequestSchema = Type.Object(
  {
    address: Type.Union([Type.String({ format: 'ipv4' }), Type.String({ format: 'ipv6' })], {
      description: "the client's IP address, as the controller saw it",
    }),
  },
  { additionalProperties: false },
);
export type RttRequest = Static<typeof RttRequestSchema>;

export const RttAnswerSchema = Type.Object({
  cache: Type.String({ description: "the cache's name" }),
  address: Type.String(),
  /** The smallest of the echoes' round trips: the path's delay with the least queueing in it. */
  rttMs: Type.Union([Type.Number(), Type.Null()], {
    description: 'the lowest round trip of the ICMP echoes that came back, ms; null when none did',
  }),
  sent: Type.Integer(),
  received: Type.Integer(),
  /** How long the measurement took, ms (what it added to the client's request). */
  tookMs: Type.Number(),
});
export type RttAnswer = Static<typeof RttAnswerSchema>;

export const CacheStatusSchema = Type.Object({
  cache: Type.String(),
  origin: Type.String(),
  files: Type.Integer({ description: 'files in the store' }),
  hits: Type.Integer(),
  misses: Type.Integer(),
  fillErrors: Type.Integer({ description: 'fills from the origin that failed' }),
  measurements: Type.Integer(),
});
export type CacheStatus = Static<typeof CacheStatusSchema>;

/** One cache as the controller sees it (`GET /caches`). */
export const ControllerCacheSchema = Type.Object({
  name: Type.String(),
  url: Type.String(),
  /** Skipped until this time (ISO), after a failed measurement; null when in use. */
  skippedUntil: Type.Union([Type.String(), Type.Null()]),
  lastError: Type.Union([Type.String(), Type.Null()]),
  redirects: Type.Integer(),
  failures: Type.Integer(),
});
export type ControllerCache = Static<typeof ControllerCacheSchema>;

/** Why the controller sent a client where it did (`GET /choose`, and the X-Arrow-Cdn-* headers). */
export const ChoiceSchema = Type.Object({
  client: Type.String(),
  cache: Type.Union([Type.String(), Type.Null()], {
    description: 'the chosen cache; null when none answered',
  }),
  url: Type.Union([Type.String(), Type.Null()]),
  how: Type.Union([Type.Literal('measured'), Type.Literal('atlas'), Type.Literal('none')], {
    description:
      "measured: the caches' RTTs, taken now; atlas: no cache answered, so the atlas's PoP-to-PoP latencies; none: nothing to choose",
  }),
  measurements: Type.Array(
    Type.Object({
      cache: Type.String(),
      rttMs: Type.Union([Type.Number(), Type.Null()]),
      error: Type.Union([Type.String(), Type.Null()]),
    }),
  ),
  tookMs: Type.Number(),
});
export type Choice = Static<typeof ChoiceSchema>;

export const ClientQuerySchema = Type.Object(
  {
    client: Type.Optional(
      Type.Union([Type.String({ format: 'ipv4' }), Type.String({ format: 'ipv6' })], {
        description: 'the client to choose for (default: the caller)',
      }),
    ),
  },
  { additionalProperties: false },
);
