import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  DEFAULT_BURST_MS,
  MIN_BURST_BYTES,
  burstBytes,
  costNs,
  police,
  policeParams,
} from '../src/router/police.js';
import { SlaMonitor } from '../src/portal/sla.js';

const arbMbps = fc.oneof(
  fc.constantFrom(0.01, 1, 10, 100, 1000, 10_000),
  fc.double({ min: 0.01, max: 100_000, noNaN: true }),
);
const arbSize = fc.integer({ min: 1, max: 1500 });

test('the default burst: 50 ms of the bought rate, at least 64 KiB', () => {
  assert.equal(DEFAULT_BURST_MS, 50);
  assert.equal(burstBytes(1), MIN_BURST_BYTES);
  assert.equal(burstBytes(100), 625_000);
  assert.equal(burstBytes(100, 10), 125_000);
});

test('over any span, what a bucket admits costs at most the span plus the burst (property)', () => {
  fc.assert(
    fc.property(
      arbMbps,
      fc.array(fc.tuple(fc.integer({ min: 0, max: 2_000_000 }), arbSize), { minLength: 1, maxLength: 300 }),
      (mbps, arrivals) => {
        const p = policeParams(mbps, burstBytes(mbps));
        const s = { tat: 0 };
        let t = 1e9;
        const admitted: { t: number; cost: number }[] = [];
        for (const [gap, size] of arrivals) {
          t += gap;
          if (police(p, s, size, t)) admitted.push({ t, cost: costNs(p, size) });
        }
        // Every window [i, j] of admitted packets, from a full bucket: sum of costs <= span + burst.
        for (let i = 0; i < admitted.length; i++) {
          let sum = 0;
          for (let j = i; j < admitted.length; j++) {
            sum += admitted[j]!.cost;
            assert.ok(sum <= admitted[j]!.t - admitted[i]!.t + p.burstNs, `packets ${i}..${j}`);
          }
        }
      },
    ),
    { numRuns: 200 },
  );
});

test('a sender within the bought rate loses nothing, whatever its pacing (property)', () => {
  fc.assert(
    fc.property(
      arbMbps,
      fc.array(fc.tuple(fc.nat({ max: 1_000_000 }), arbSize), { minLength: 1, maxLength: 500 }),
      (mbps, packets) => {
        const p = policeParams(mbps, burstBytes(mbps));
        const s = { tat: 0 };
        // Each packet waits for its own transmission time at the bought rate, plus any idle gap.
        let t = 5e9;
        for (const [idle, size] of packets) {
          assert.ok(police(p, s, size, t), `a ${size}-byte packet at ${t}`);
          t += costNs(p, size) + idle;
        }
      },
    ),
    { numRuns: 200 },
  );
});

test('after idling, a full burst passes at once; then the bucket holds to the rate', () => {
  const mbps = 8; // 1 byte per µs
  const p = policeParams(mbps, burstBytes(mbps));
  const s = { tat: 0 };
  const t = 1e9;
  let passed = 0;
  while (police(p, s, 1000, t)) passed += 1000;
  assert.equal(passed, 65_000, 'the 64 KiB floor, in whole 1000-byte packets');
  // 536 bytes of burst are left: a 1000-byte packet needs 464 µs more credit.
  assert.equal(police(p, s, 1000, t + 400_000), false);
  assert.equal(police(p, s, 1000, t + 470_000), true);
  assert.equal(police(p, s, 1000, t + 470_000), false, 'and then the bucket is empty');
});

test('a sender at twice the rate gets the bought rate through, no more, no less (property)', () => {
  fc.assert(
    fc.property(fc.constantFrom(1, 10, 100), arbSize, (mbps, size) => {
      const p = policeParams(mbps, burstBytes(mbps));
      const s = { tat: 0 };
      const spanNs = 2e9;
      const gap = costNs(p, size) / 2;
      let bytes = 0;
      for (let t = 0; t < spanNs; t += gap) if (police(p, s, size, 1e9 + t)) bytes += size;
      const bought = (mbps * 1e6 * spanNs) / 8 / 1e9;
      const burst = burstBytes(mbps);
      assert.ok(bytes <= bought + burst + size, `${bytes} > ${bought} + ${burst}`);
      assert.ok(
        bytes >= bought + burst - 2 * size,
        `${bytes} < ${bought} + ${burst}: refusals must cost nothing`,
      );
    }),
    { numRuns: 60 },
  );
});

test('SLA: over-rate drops are reported in the window and never judged as the ISP loss', () => {
  const auth = 'b'.repeat(32);
  const t0 = Date.parse('2026-01-01T00:00:00.000Z');
  const m = new SlaMonitor(60_000);
  // 100 packets/s admitted and delivered, 50/s refused over the rate at the ingress, for 20 s.
  for (let s = 0; s <= 20; s++)
    for (const [router, pop, inP, outP, over] of [
      ['r1', 'ams', 100 * s, 0, 50 * s],
      ['r2', 'fra', 0, 100 * s, 0],
    ] as const)
      m.ingest([
        {
          router,
          pop,
          address: `127.0.0.${router === 'r1' ? 1 : 2}:4000`,
          updatedAt: new Date(t0 + 1000 * s).toISOString(),
          drops: {},
          handled: {},
          circuits: {
            [auth]: {
              packets: inP + outP,
              bytes: 0,
              dropped: over,
              inPackets: inP,
              outPackets: outP,
              drops: over ? { 'over-rate': over } : {},
            },
          },
        },
      ]);
  const r = m.report(
    { auth, ingressPop: 'ams', egressPop: 'fra' },
    { latencyMs: 10, lossPct: 0.1 },
    { windowMs: 10_000, minPackets: 100, staleMs: 5000 },
  );
  assert.equal(r.lostPackets, 0);
  assert.equal(r.lossOk, true);
  assert.ok(r.overRatePackets >= 400 && r.overRatePackets <= 500, String(r.overRatePackets));
});
