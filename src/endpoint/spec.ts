import { Type, type Static } from '@sinclair/typebox';
import { AddressString } from '../util/address-schema.js';

const Segment = Type.Object(
  {
    isp: Type.Optional(Type.String()),
    portal: Type.String({ pattern: '^https?://', description: 'portal base URL' }),
    apiKey: Type.String({ minLength: 1 }),
    ingressPop: Type.String({ minLength: 1 }),
    egressPop: Type.String({ minLength: 1 }),
    bandwidthMbps: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
    requireTags: Type.Optional(
      Type.Boolean({
        description: 'buy with per-packet tags required; the sender then tags every DATA packet',
      }),
    ),
  },
  { additionalProperties: false },
);

/** A path file for `arrow forward --path FILE`. */
export const PathFileSchema = Type.Object(
  {
    segments: Type.Array(Segment, { minItems: 1 }),
    returnSegments: Type.Optional(Type.Array(Segment, { minItems: 1 })),
    target: Type.Union([
      Type.Object({ kind: Type.Literal('udp'), address: AddressString() }),
      Type.Object({
        kind: Type.Literal('endpoint'),
        addresses: Type.Array(AddressString(), { minItems: 1 }),
        auth: Type.Optional(Type.String({ pattern: '^[0-9a-f]{32}$' })),
      }),
    ]),
  },
  { additionalProperties: false },
);
export type PathFile = Static<typeof PathFileSchema>;
