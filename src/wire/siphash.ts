/**
 * SipHash-2-4 (Aumasson and Bernstein, 2012), with the 64-bit and the 128-bit output of the
 * reference implementation, in 32-bit halves: no BigInt, no allocation per call, so the router's
 * packet path can run it. Checked against the reference test vectors (test/tag.test.ts).
 *
 * Why SipHash for the per-packet tag: docs/security.md, "The per-packet tag".
 */

/** A 128-bit key as the four little-endian 32-bit words k0.lo, k0.hi, k1.lo, k1.hi. */
export type SipKey = Uint32Array;

export const SIP_KEY_LENGTH = 16;

/** Made once per key (when a circuit is compiled), never per packet. */
export function sipKey(key: Uint8Array): SipKey {
  if (key.length !== SIP_KEY_LENGTH) throw new Error('a SipHash key is 16 bytes');
  const k = new Uint32Array(4);
  for (let i = 0; i < 4; i++) k[i] = readLe32(key, 4 * i);
  return k;
}

// The state v0..v3 as hi/lo halves. Module-level, so one call allocates nothing; the router is
// single-threaded and a call never yields, so no two calls interleave.
let v0h = 0;
let v0l = 0;
let v1h = 0;
let v1l = 0;
let v2h = 0;
let v2l = 0;
let v3h = 0;
let v3l = 0;

function readLe32(b: Uint8Array, i: number): number {
  return (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24)) >>> 0;
}

function sipRound(): void {
  let lo: number;
  let t: number;
  // v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32)
  lo = (v0l + v1l) >>> 0;
  v0h = (v0h + v1h + (lo < v0l ? 1 : 0)) >>> 0;
  v0l = lo;
  t = ((v1h << 13) | (v1l >>> 19)) >>> 0;
  v1l = ((v1l << 13) | (v1h >>> 19)) >>> 0;
  v1h = t;
  v1h = (v1h ^ v0h) >>> 0;
  v1l = (v1l ^ v0l) >>> 0;
  t = v0h;
  v0h = v0l;
  v0l = t;
  // v2 += v3; v3 = rotl(v3, 16); v3 ^= v2
  lo = (v2l + v3l) >>> 0;
  v2h = (v2h + v3h + (lo < v2l ? 1 : 0)) >>> 0;
  v2l = lo;
  t = ((v3h << 16) | (v3l >>> 16)) >>> 0;
  v3l = ((v3l << 16) | (v3h >>> 16)) >>> 0;
  v3h = t;
  v3h = (v3h ^ v2h) >>> 0;
  v3l = (v3l ^ v2l) >>> 0;
  // v0 += v3; v3 = rotl(v3, 21); v3 ^= v0
  lo = (v0l + v3l) >>> 0;
  v0h = (v0h + v3h + (lo < v0l ? 1 : 0)) >>> 0;
  v0l = lo;
  t = ((v3h << 21) | (v3l >>> 11)) >>> 0;
  v3l = ((v3l << 21) | (v3h >>> 11)) >>> 0;
  v3h = t;
  v3h = (v3h ^ v0h) >>> 0;
  v3l = (v3l ^ v0l) >>> 0;
  // v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32)
  lo = (v2l + v1l) >>> 0;
  v2h = (v2h + v1h + (lo < v2l ? 1 : 0)) >>> 0;
  v2l = lo;
  t = ((v1h << 17) | (v1l >>> 15)) >>> 0;
  v1l = ((v1l << 17) | (v1h >>> 15)) >>> 0;
  v1h = t;
  v1h = (v1h ^ v2h) >>> 0;
  v1l = (v1l ^ v2l) >>> 0;
  t = v2h;
  v2h = v2l;
  v2l = t;
}

function compress(ml: number, mh: number): void {
  v3l = (v3l ^ ml) >>> 0;
  v3h = (v3h ^ mh) >>> 0;
  sipRound();
  sipRound();
  v0l = (v0l ^ ml) >>> 0;
  v0h = (v0h ^ mh) >>> 0;
}

function writeLe32(out: Uint8Array, at: number, x: number): void {
  out[at] = x & 0xff;
  out[at + 1] = (x >>> 8) & 0xff;
  out[at + 2] = (x >>> 16) & 0xff;
  out[at + 3] = x >>> 24;
}

/**
 * SipHash-2-4 of the concatenation `a[aStart..aEnd) ‖ b[bStart..bEnd)`, written to `out` at
 * `outAt` (8 bytes, or 16 with `wide`). `a`'s part must be a multiple of 8 bytes long: it holds
 * the fixed-size fields of a tag's message, `b` the payload, so neither is ever copied.
 */
export function siphash24(
  k: SipKey,
  a: Uint8Array,
  aStart: number,
  aEnd: number,
  b: Uint8Array,
  bStart: number,
  bEnd: number,
  out: Uint8Array,
  outAt: number,
  wide = false,
): void {
  if ((aEnd - aStart) % 8 !== 0) throw new Error('the first part must be whole 8-byte words');
  const k0l = k[0]!;
  const k0h = k[1]!;
  const k1l = k[2]!;
  const k1h = k[3]!;
  v0l = (k0l ^ 0x70736575) >>> 0;
  v0h = (k0h ^ 0x736f6d65) >>> 0;
  v1l = (k1l ^ 0x6e646f6d) >>> 0;
  v1h = (k1h ^ 0x646f7261) >>> 0;
  v2l = (k0l ^ 0x6e657261) >>> 0;
  v2h = (k0h ^ 0x6c796765) >>> 0;
  v3l = (k1l ^ 0x79746573) >>> 0;
  v3h = (k1h ^ 0x74656462) >>> 0;
  if (wide) v1l = (v1l ^ 0xee) >>> 0;
  for (let i = aStart; i < aEnd; i += 8) compress(readLe32(a, i), readLe32(a, i + 4));
  const whole = bStart + ((bEnd - bStart) & ~7);
  for (let i = bStart; i < whole; i += 8) compress(readLe32(b, i), readLe32(b, i + 4));
  // The last block: the remaining 0-7 bytes, and the total length (mod 256) in its top byte.
  const length = aEnd - aStart + (bEnd - bStart);
  let ml = 0;
  let mh = (length & 0xff) << 24;
  for (let i = whole, j = 0; i < bEnd; i++, j++) {
    if (j < 4) ml |= b[i]! << (8 * j);
    else mh |= b[i]! << (8 * (j - 4));
  }
  compress(ml >>> 0, mh >>> 0);
  v2l = (v2l ^ (wide ? 0xee : 0xff)) >>> 0;
  sipRound();
  sipRound();
  sipRound();
  sipRound();
  writeLe32(out, outAt, (v0l ^ v1l ^ v2l ^ v3l) >>> 0);
  writeLe32(out, outAt + 4, (v0h ^ v1h ^ v2h ^ v3h) >>> 0);
  if (!wide) return;
  v1l = (v1l ^ 0xdd) >>> 0;
  sipRound();
  sipRound();
  sipRound();
  sipRound();
  writeLe32(out, outAt + 8, (v0l ^ v1l ^ v2l ^ v3l) >>> 0);
  writeLe32(out, outAt + 12, (v0h ^ v1h ^ v2h ^ v3h) >>> 0);
}
