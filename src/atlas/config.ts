import { AdminConfigSchema } from '../api/admin.js';
import { Type, type Static } from '@sinclair/typebox';
import { BindAddressString } from '../util/address-schema.js';
import { TlsConfigSchema } from '../util/http.js';

const PopId = Type.String({ pattern: '^[^/\\s]+/[^/\\s]+$', description: 'a PoP id, `isp/pop`' });

/** `arrow atlas --config FILE`: which portals to learn from, how ISPs connect, and how often to measure. */
export const AtlasConfigSchema = Type.Object(
  {
    listen: BindAddressString('HTTP address, IP:PORT; port 0 picks one'),
    tls: Type.Optional(TlsConfigSchema),
    admin: Type.Optional(AdminConfigSchema),
    allowPlainHttp: Type.Optional(
      Type.Boolean({ description: 'serve plain HTTP on a non-loopback address without `tls`' }),
    ),
    ca: Type.Optional(
      Type.String({
        minLength: 1,
        description: "PEM file of a CA that signed portals' certificates (besides the system's)",
      }),
    ),
    isps: Type.Array(
      Type.Object(
        {
          name: Type.String({ minLength: 1 }),
          portal: Type.String({ pattern: '^https?://', description: "the ISP's portal base URL" }),
        },
        { additionalProperties: false },
      ),
      { minItems: 1 },
    ),
    peerings: Type.Array(
      Type.Object(
        {
          a: PopId,
          b: PopId,
          latencyMs: Type.Optional(
            Type.Number({ minimum: 0, description: 'one-way latency to assume until measured' }),
          ),
        },
        { additionalProperties: false },
      ),
      { default: [], description: 'links between PoPs of different ISPs (both directions)' },
    ),
    targets: Type.Array(
      Type.Object(
        {
          prefix: Type.String({
            pattern: '^\\d{1,3}(\\.\\d{1,3}){3}/\\d{1,2}$',
            description: 'IPv4 CIDR',
          }),
          pops: Type.Array(PopId, { minItems: 1, description: 'PoPs that can deliver to the prefix' }),
        },
        { additionalProperties: false },
      ),
      { default: [] },
    ),
    refreshMs: Type.Integer({ minimum: 100, default: 5000, description: 'how often offers are re-read' }),
    measure: Type.Object(
      {
        intervalMs: Type.Integer({ minimum: 50, default: 1000, description: 'one measurement round' }),
        echoes: Type.Integer({ minimum: 1, maximum: 100, default: 5, description: 'echo pairs per round' }),
        timeoutMs: Type.Integer({
          minimum: 10,
          default: 500,
          description: 'an echo later than this is lost',
        }),
        history: Type.Integer({
          minimum: 1,
          default: 30,
          description: 'rounds kept per PoP pair; figures are over this window',
        }),
      },
      { default: {}, additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
export type AtlasConfig = Static<typeof AtlasConfigSchema>;

/** Checks what the schema cannot: peerings join different ISPs that are configured. */
export function checkAtlasConfig(c: AtlasConfig): string[] {
  const problems: string[] = [];
  const isps = new Set<string>();
  for (const i of c.isps) {
    if (isps.has(i.name)) problems.push(`ISP ${i.name} listed twice`);
    isps.add(i.name);
  }
  for (const p of c.peerings) {
    const [ia] = p.a.split('/');
    const [ib] = p.b.split('/');
    if (ia === ib) problems.push(`peering ${p.a} <-> ${p.b} joins an ISP to itself`);
    for (const i of [ia!, ib!])
      if (!isps.has(i)) problems.push(`peering ${p.a} <-> ${p.b} names unknown ISP ${i}`);
  }
  for (const t of c.targets)
    for (const pop of t.pops)
      if (!isps.has(pop.split('/')[0]!)) problems.push(`target ${t.prefix} names unknown ISP in ${pop}`);
  return problems;
}
