import { Type, type Static } from '@sinclair/typebox';

export const StoreConfigSchema = Type.Union([
  Type.Object(
    { kind: Type.Literal('sqlite'), path: Type.String({ minLength: 1 }) },
    { additionalProperties: false },
  ),
  Type.Object({ kind: Type.Literal('memory') }, { additionalProperties: false }),
]);
export type StoreConfigSchema = Static<typeof StoreConfigSchema>;
