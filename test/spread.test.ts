// The spreading sequence of `arrow connect --spread` / `arrow forward --spread` (src/endpoint/spread.ts):
// pure logic, property-tested. What the sequence must be: deterministic given the key, unpredictable
// without it, roughly uniform over the ingress points in it, and never a point out of it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { IngressHealth, SpreadSequence, newSpreadKey, readSpreadKey } from '../src/endpoint/spread.js';
import { SIP_KEY_LENGTH, siphash24, sipKey } from '../src/wire/siphash.js';

const key = fc.uint8Array({ minLength: SIP_KEY_LENGTH, maxLength: SIP_KEY_LENGTH });
const seq = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });

test('the PRF is SipHash-2-4 of the sequence number (8 bytes, little-endian) under the key, low 32 bits', () => {
  fc.assert(
    fc.property(key, seq, (k, s) => {
      const input = Buffer.alloc(8);
      input.writeBigUInt64LE(s);
      const out = new Uint8Array(8);
      siphash24(sipKey(k), input, 0, 8, input, 0, 0, out, 0);
      assert.equal(new SpreadSequence(k).prf(s), Buffer.from(out).readUInt32LE(0));
    }),
  );
});

test('deterministic given the key: two senders with the same key pick the same ingress for every packet', () => {
  fc.assert(
    fc.property(
      key,
      fc.array(seq, { minLength: 1, maxLength: 50 }),
      fc.integer({ min: 1, max: 16 }),
      (k, seqs, n) => {
        const a = new SpreadSequence(k);
        const b = new SpreadSequence(Uint8Array.from(k));
        const all = Array.from({ length: n }, () => true);
        for (const s of seqs) assert.equal(a.pick(s, all), b.pick(s, all));
      },
    ),
  );
});

test('never picks an ingress out of the sequence; -1 only when none is in it', () => {
  fc.assert(
    fc.property(key, seq, fc.array(fc.boolean(), { minLength: 1, maxLength: 16 }), (k, s, inSeq) => {
      const i = new SpreadSequence(k).pick(s, inSeq);
      if (!inSeq.some(Boolean)) assert.equal(i, -1);
      else assert.equal(inSeq[i], true, `picked ${i} of ${JSON.stringify(inSeq)}`);
    }),
  );
});

test('roughly uniform: 40,000 consecutive packets over 4 points, then over the 3 left when one is out', () => {
  fc.assert(
    fc.property(key, fc.bigInt({ min: 0n, max: 2n ** 40n }), (k, from) => {
      const s = new SpreadSequence(k);
      for (const inSeq of [
        [true, true, true, true],
        [true, false, true, true],
      ]) {
        const counts = inSeq.map(() => 0);
        const n = 40_000;
        for (let i = 0n; i < BigInt(n); i++) counts[s.pick(from + i, inSeq)]!++;
        const live = inSeq.filter(Boolean).length;
        for (const [j, c] of counts.entries()) {
          if (!inSeq[j]) assert.equal(c, 0);
          // Binomial: sd = sqrt(n p (1-p)) ≈ 87 at p = 1/4; 6 sd either side.
          else assert.ok(Math.abs(c - n / live) < 600, `point ${j}: ${c} of ${n} over ${live}`);
        }
      }
    }),
    { numRuns: 5 },
  );
});

test('unpredictable without the key: another key gives another sequence', () => {
  fc.assert(
    fc.property(key, key, (k1, k2) => {
      fc.pre(Buffer.compare(Buffer.from(k1), Buffer.from(k2)) !== 0);
      const a = new SpreadSequence(k1);
      const b = new SpreadSequence(k2);
      const all = [true, true, true, true];
      let same = 0;
      for (let i = 0n; i < 1000n; i++) if (a.pick(i, all) === b.pick(i, all)) same++;
      // Independent sequences agree a quarter of the time.
      assert.ok(same > 150 && same < 350, `${same} of 1000 agree`);
    }),
    { numRuns: 20 },
  );
});

test('the key: 16 bytes, fresh keys differ, a key file holds 32 hex digits', () => {
  assert.throws(() => new SpreadSequence(new Uint8Array(8)), /16 bytes/);
  assert.notDeepEqual(newSpreadKey(), newSpreadKey());
  const dir = mkdtempSync(join(tmpdir(), 'arrow-spread-'));
  try {
    const f = join(dir, 'key');
    writeFileSync(f, '00112233445566778899aabbccddeeff\n');
    assert.equal(readSpreadKey(f).toString('hex'), '00112233445566778899aabbccddeeff');
    writeFileSync(f, 'not a key');
    assert.throws(() => readSpreadKey(f), /expected 32 hex digits/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('health: overloaded after more than 30% of the last 10 probes were lost or late; back after 5 good in a row', () => {
  const h = new IngressHealth({ window: 10, maxRttMs: 200, maxLossPct: 30, recover: 5 });
  let t = 0;
  let s = 0n;
  const probe = (home: number | undefined): boolean => {
    const q = s++;
    h.sent(q, t);
    if (home !== undefined) h.home(q, t + home);
    t += 100;
    return h.healthy(t);
  };
  for (let i = 0; i < 10; i++) assert.equal(probe(2), true);
  // Three lost of ten: still in (not more than 30%).
  for (let i = 0; i < 3; i++) probe(undefined);
  assert.equal(h.healthy(t + 1000), true);
  // A fourth, late (an RTT beyond the threshold counts as lost): out.
  assert.equal(probe(500), false);
  // A probe that gets through now and then does not bring it back.
  for (let i = 0; i < 20; i++) assert.equal(probe(i % 3 === 0 ? 2 : undefined), false);
  // The last lost probe is decided once its time is up.
  t += 1000;
  assert.equal(h.healthy(t), false);
  for (let i = 0; i < 4; i++) assert.equal(probe(2), false);
  assert.equal(probe(2), true, 'five good probes in a row');
  assert.equal(h.home(12345n, t), false, 'not one of ours');
});
