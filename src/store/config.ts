import { Type, type Static } from '@sinclair/typebox';

export const StoreConfigSchema = Type.Union([
  Type.Object(
    {
      kind: Type.Literal('sqlite'),
      path: Type.String({ minLength: 1, description: 'database file, shared by the ISP on one host' }),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      kind: Type.Literal('etcd'),
      endpoints: Type.Array(Type.String({ pattern: '^https?://' }), {
        minItems: 1,
        description: 'client URLs of the members',
      }),
      prefix: Type.Optional(Type.String({ minLength: 1, description: 'key prefix; default /arrow/<isp>/' })),
      callTimeoutMs: Type.Optional(
        Type.Integer({ minimum: 100, description: 'deadline of each call; default 2000' }),
      ),
    },
    { additionalProperties: false },
  ),
  Type.Object({ kind: Type.Literal('memory') }, { additionalProperties: false }),
]);
export type StoreConfig = Static<typeof StoreConfigSchema>;
