import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { sipKey, siphash24 } from '../src/wire/siphash.js';
import { tagInto, verifyTopTag } from '../src/wire/tag.js';
import { encode, PacketType, headerLength } from '../src/wire/header.js';
import {
  REPLAY_WINDOW,
  newReplayWindow,
  replayAccept,
  replayFresh,
  type ReplayWindow,
} from '../src/router/replay.js';
import { SIP128, SIP64 } from './helpers/siphash-vectors.js';

const KEY = sipKey(Uint8Array.from({ length: 16 }, (_, i) => i));
const EMPTY = new Uint8Array(0);

function sip(key: Uint32Array, msg: Uint8Array, wide: boolean): string {
  const out = Buffer.alloc(wide ? 16 : 8);
  siphash24(key, EMPTY, 0, 0, msg, 0, msg.length, out, 0, wide);
  return out.toString('hex');
}

test('SipHash-2-4 matches the reference vectors, 64- and 128-bit output', () => {
  for (let i = 0; i < 64; i++) {
    const msg = Uint8Array.from({ length: i }, (_, j) => j);
    assert.equal(sip(KEY, msg, false), SIP64[i], `64-bit, ${i} bytes`);
    assert.equal(sip(KEY, msg, true), SIP128[i], `128-bit, ${i} bytes`);
  }
});

test('SipHash over two parts equals SipHash over their concatenation (property)', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 16, maxLength: 16 }),
      fc.integer({ min: 0, max: 6 }).map((w) => w * 8),
      fc.uint8Array({ maxLength: 300 }),
      (k, aLen, rest) => {
        const key = sipKey(k);
        const a = Uint8Array.from({ length: aLen }, (_, i) => (i * 7) & 0xff);
        const whole = new Uint8Array([...a, ...rest]);
        const split = Buffer.alloc(16);
        siphash24(key, a, 0, a.length, rest, 0, rest.length, split, 0, true);
        assert.equal(split.toString('hex'), sip(key, whole, true));
      },
    ),
    { numRuns: 300 },
  );
});

/** A DATA packet with one tag over it, for `key` and its own authenticator. */
function tagged(key: Uint32Array, auth: Uint8Array, seq: bigint, payload: Uint8Array): Buffer {
  const buf = encode({
    type: PacketType.Data,
    hopLimit: 64,
    authenticator: auth,
    sequence: seq,
    tags: [new Uint8Array(16)],
    payload,
  });
  const at = headerLength(buf);
  tagInto(key, buf, 4, buf, 20, buf, at, buf.length, buf, 28);
  return buf;
}

const arbKey = fc.uint8Array({ minLength: 16, maxLength: 16 }).map(sipKey);
const arbAuth = fc.uint8Array({ minLength: 16, maxLength: 16 });
const arbSeq = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
const arbPayload = fc.uint8Array({ maxLength: 1500 });

test('a tag verifies with its key, and any change to what it covers breaks it (property)', () => {
  fc.assert(
    fc.property(
      arbKey,
      arbAuth,
      arbSeq,
      arbPayload,
      fc.nat(),
      fc.integer({ min: 0, max: 7 }),
      (k, a, s, p, at, bit) => {
        const buf = tagged(k, a, s, p);
        const payloadAt = headerLength(buf);
        assert.ok(verifyTopTag(k, buf, payloadAt));
        // Flip one bit anywhere the tag covers (authenticator, sequence, tag, payload); the hop
        // limit (byte 3) is not covered, since every router changes it.
        const covered = [...Array(24).keys()]
          .map((i) => 4 + i)
          .concat([...Array(buf.length - 28).keys()].map((i) => 28 + i));
        const i = covered[at % covered.length]!;
        const forged = Buffer.from(buf);
        forged[i] = forged[i]! ^ (1 << bit);
        assert.equal(verifyTopTag(k, forged, payloadAt), false, `bit ${bit} of byte ${i}`);
        const hop = Buffer.from(buf);
        hop[3] = 1;
        assert.ok(verifyTopTag(k, hop, payloadAt));
      },
    ),
    { numRuns: 300 },
  );
});

test('a tag is bound to its key and to the payload length (property)', () => {
  fc.assert(
    fc.property(
      arbKey,
      arbKey,
      arbAuth,
      arbSeq,
      fc.uint8Array({ minLength: 1, maxLength: 200 }),
      (k1, k2, a, s, p) => {
        fc.pre(!k1.every((w, i) => w === k2[i]));
        const buf = tagged(k1, a, s, p);
        assert.equal(verifyTopTag(k2, buf, headerLength(buf)), false, 'another key');
        // The same tag over the payload cut short (a truncating middlebox) fails.
        assert.equal(verifyTopTag(k1, buf.subarray(0, buf.length - 1), headerLength(buf)), false);
      },
    ),
    { numRuns: 300 },
  );
});

function halves(s: bigint): [number, number] {
  return [Number(s >> 32n), Number(s & 0xffff_ffffn)];
}

/** The replay rule, stated plainly: accepted once, and only within REPLAY_WINDOW below the highest. */
class Model {
  seen = new Set<bigint>();
  top: bigint | undefined;
  fresh(s: bigint): boolean {
    if (this.top === undefined || s > this.top) return true;
    return this.top - s < BigInt(REPLAY_WINDOW) && !this.seen.has(s);
  }
  accept(s: bigint): void {
    this.seen.add(s);
    if (this.top === undefined || s > this.top) this.top = s;
  }
}

test('the replay window agrees with the plain rule on any sequence of arrivals (property)', () => {
  // Sequences near a base, including bases just below a 2^32 boundary and the top of the range.
  const base = fc.constantFrom(0n, 2n ** 32n - 1500n, 2n ** 63n, 2n ** 64n - 10_000n);
  const step = fc.oneof(
    fc.integer({ min: -40, max: 40 }),
    fc.integer({ min: -2100, max: 2100 }),
    fc.integer({ min: -5000, max: 5000 }),
  );
  fc.assert(
    fc.property(base, fc.array(step, { minLength: 1, maxLength: 400 }), (b, steps) => {
      const w: ReplayWindow = newReplayWindow();
      const m = new Model();
      let s = b + 5000n;
      for (const d of steps) {
        s += BigInt(d);
        if (s < 0n || s >= 2n ** 64n) s = b + 5000n;
        const [hi, lo] = halves(s);
        const f = replayFresh(w, hi, lo);
        assert.equal(f, m.fresh(s), `sequence ${s}`);
        if (f) {
          replayAccept(w, hi, lo);
          m.accept(s);
          assert.equal(replayFresh(w, hi, lo), false, 'a replay of an accepted sequence');
        }
      }
    }),
    { numRuns: 300 },
  );
});

test('the replay window: in-order, reordered within the window, and too old', () => {
  const w = newReplayWindow();
  const take = (s: bigint): boolean => {
    const [hi, lo] = halves(s);
    if (!replayFresh(w, hi, lo)) return false;
    replayAccept(w, hi, lo);
    return true;
  };
  for (let s = 100n; s < 5000n; s += 2n) assert.ok(take(s));
  // The highest is 4998; odd sequences were never sent.
  assert.ok(take(4998n - BigInt(REPLAY_WINDOW) + 1n), 'late but within the window');
  assert.equal(take(4998n - BigInt(REPLAY_WINDOW) - 1n), false, 'older than the window');
  assert.equal(take(4000n), false, 'seen');
  assert.ok(take(4001n), 'not seen, within the window');
  assert.ok(take(2n ** 32n + 7n), 'a jump across 2^32');
  assert.equal(take(2n ** 32n + 7n), false);
  assert.equal(take(4003n), false, 'now far older than the window');
});
