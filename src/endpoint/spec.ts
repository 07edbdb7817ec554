import { Type, type Static } from '@sinclair/typebox';
import { AddressString, PrefixString } from '../util/address-schema.js';
import type { PathSpec } from './path.js';

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
      Type.Object(
        {
          kind: Type.Literal('ip'),
          prefixes: Type.Optional(
            Type.Array(PrefixString(), {
              minItems: 1,
              description: "destination prefixes; default: the endpoint's --route prefixes",
            }),
          ),
          source: Type.Optional(
            PrefixString(
              "our tunnel prefix, that answers come back to; default: the endpoint's first --address as a host prefix",
            ),
          ),
        },
        {
          additionalProperties: false,
          description: 'IP transit to hosts that run nothing of ours (arrow endpoint --tun as a gateway)',
        },
      ),
    ]),
  },
  { additionalProperties: false },
);
export type PathFile = Static<typeof PathFileSchema>;

/**
 * The path a file describes, with an `ip` target's defaults filled in from the endpoint's own
 * flags (`prefixes` from --route, `source` from the first --address). Throws a sentence naming what
 * is missing; without `ip` defaults (arrow forward, which carries UDP, not IP packets) an `ip`
 * target is refused.
 */
export function pathSpecOf(file: PathFile, ip?: { routes: string[]; source: string | undefined }): PathSpec {
  const t = file.target;
  if (t.kind !== 'ip') return { ...file, target: t };
  if (!ip) throw new Error('target kind ip carries IP packets: use arrow endpoint --tun NAME --route PREFIX');
  const prefixes = t.prefixes ?? ip.routes;
  if (prefixes.length === 0) throw new Error('target kind ip: give prefixes, or --route PREFIX');
  const source = t.source ?? ip.source;
  if (source === undefined) throw new Error('target kind ip: give source, or --address');
  return { ...file, target: { kind: 'ip', prefixes, source } };
}
