import fc from 'fast-check';
import type { TSchema } from '@sinclair/typebox';
import { ADDRESS_FORMAT } from '../../src/util/address-schema.js';

// Request generators for the portal API fuzz (test/portal-fuzz.test.ts): values shaped by the
// API's own schemas, so requests reach the handlers and the store, mixed with hostile values.

/** Every address form of the issue, plus others a parser gets wrong: none may reach a router. */
export const HOSTILE_ADDRESSES = [
  '1.2.3.4:70000',
  '127.0.0.1:0',
  '127.0.0.1:99999',
  '999.1.1.1:5',
  'example.com:5',
  'localhost:4000',
  '224.0.0.1:5',
  '255.255.255.255:5',
  '0.0.0.0:5',
  '[ff02::1]:5',
  '[::]:5',
  '[::ffff:224.0.0.1]:5',
  '127.0.0.1:-1',
  '127.0.0.1:+5',
  '127.0.0.1:5.0',
  '127.0.0.1:1e3',
  ' 127.0.0.1:5',
  '127.0.0.1:5\n',
  '127.1:5',
  '0x7f.0.0.1:5',
  '127.000.0.1:5',
  '127.0.0.1:٥',
  '[fe80::1%eth0]:5',
  '[::1]',
  '[::1]:',
  '::1:5',
  '1.2.3.4',
  ':5',
  '',
  `${'9'.repeat(300)}.1.1.1:5`,
];

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

export const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom<unknown>(
    null,
    true,
    false,
    0,
    -1,
    -1e308,
    1e308,
    2 ** 53,
    -(2 ** 53),
    0.5,
    '',
    '0'.repeat(32),
    'ABCDEF0123456789ABCDEF0123456789',
    'x'.repeat(5000),
    [],
    {},
    { kind: 'udp' },
    { __proto__: null, constructor: 'x' },
  ),
  fc.constantFrom(...HOSTILE_ADDRESSES),
  fc.string({ maxLength: 40 }),
  fc.integer(),
  fc.double(),
  fc.array(fc.constantFrom(...HOSTILE_ADDRESSES), { maxLength: 20 }),
  fc.object({ maxDepth: 2 }),
);

/**
 * Values for one schema node, as the API defines it (so requests get past the edge and
 * reach the handlers and the store), now and then replaced by a hostile value.
 */
export function fromSchema(
  schema: TSchema,
  addresses: fc.Arbitrary<string>,
  pops: string[],
  path = '',
): fc.Arbitrary<unknown> {
  const s = schema as Record<string, unknown> & TSchema;
  let valid: fc.Arbitrary<unknown>;
  if (Array.isArray(s.anyOf))
    valid = fc.oneof(...(s.anyOf as TSchema[]).map((b) => fromSchema(b, addresses, pops, path)));
  else if ('const' in s) valid = fc.constant(s.const);
  else if (s.type === 'object') {
    const props = (s.properties ?? {}) as Record<string, TSchema>;
    const model: Record<string, fc.Arbitrary<unknown>> = {};
    for (const [k, v] of Object.entries(props)) model[k] = fromSchema(v, addresses, pops, `${path}.${k}`);
    const record = fc.record(model, { requiredKeys: (s.required as string[] | undefined) ?? [] });
    valid = fc.oneof(
      { weight: 9, arbitrary: record },
      {
        weight: 1,
        arbitrary: fc
          .tuple(record, fc.string({ maxLength: 10 }), hostileValue)
          .map(([r, k, v]) => ({ ...r, [`x${k}`]: v })),
      },
    );
  } else if (s.type === 'array')
    valid = fc.array(fromSchema(s.items as TSchema, addresses, pops, `${path}[]`), {
      minLength: (s.minItems as number | undefined) ?? 0,
      maxLength: Math.min((s.maxItems as number | undefined) ?? 3, 3),
    });
  else if (s.type === 'string') {
    if (s.format === ADDRESS_FORMAT) valid = addresses;
    else if (s.pattern === '^[0-9a-f]{32}$') valid = fc.uint8Array({ minLength: 16, maxLength: 16 }).map(hex);
    else if (path.endsWith('Pop'))
      valid = fc.oneof(
        { weight: 9, arbitrary: fc.constantFrom(...pops) },
        { weight: 1, arbitrary: fc.string({ maxLength: 8 }) },
      );
    else valid = fc.string({ maxLength: 20 });
  } else if (s.type === 'number' || s.type === 'integer')
    valid = fc.oneof(
      { weight: 6, arbitrary: fc.integer({ min: 1, max: 5 }) },
      { weight: 1, arbitrary: fc.double({ min: -1e7, max: 1e7, noNaN: true }) },
    );
  else if (s.type === 'boolean') valid = fc.boolean();
  else valid = hostileValue;
  return fc.oneof({ weight: 40, arbitrary: valid }, { weight: 1, arbitrary: hostileValue });
}

export type FuzzRequest =
  | { kind: 'create'; account: number; body: unknown }
  | { kind: 'chain'; account: number; pick: number; body: unknown }
  | { kind: 'get' | 'delete'; account: number; pick: number }
  | { kind: 'raw'; account: number; payload: string };

/** Most create bodies carry exactly one of `next` and `deliver`, as the API wants; the rest both or neither. */
export function mostlyOneAction(body: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> {
  return fc.tuple(body, fc.nat({ max: 3 })).map(([b, choice]) => {
    if (typeof b !== 'object' || b === null || Array.isArray(b)) return b;
    const r = { ...(b as Record<string, unknown>) };
    if ('next' in r && 'deliver' in r && choice < 3) delete r[choice === 0 ? 'next' : 'deliver'];
    return r;
  });
}
