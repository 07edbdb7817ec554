// `arrow bench forward`'s kernel rows, run as a user runs them (docs/performance.md): namespaces,
// real `arrow router --dataplane kernel` processes, the C generator and the XDP sink. Short windows:
// this checks that every row is measured and carried by what it claims, not how fast it is.
//
// Needs root: fails (never skips) without it, like the other kernel tests. HEAVY (namespaces).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { benchReport } from './helpers/bench-run.js';
import type { ForwardBenchOutput } from '../src/bench/forward.js';
import { KERNEL_ROWS } from '../src/bench/forward-kernel.js';

test(
  'bench forward --kernel on (needs root): every kernel row measured, the routers carried them in the kernel, tags all verified',
  { timeout: 180_000 },
  async () => {
    if (process.getuid?.() !== 0)
      assert.fail('the kernel rows need root (namespaces, XDP): run npm test as root');
    const stdout = await benchReport(
      [
        'bench',
        'forward',
        '--json',
        '--kernel',
        'on',
        '--duration',
        '0.5',
        '--runs',
        '1',
        '--sizes',
        '64,1400',
      ],
      150_000,
      'forward',
    );
    const r = JSON.parse(stdout) as ForwardBenchOutput;
    assert.equal(r.kernelUnavailable, undefined);
    assert.equal(r.kernelAttach, 'xdp-native');
    assert.equal(typeof r.kernelValid, 'boolean');
    for (const name of KERNEL_ROWS)
      for (const size of ['64', '1400']) {
        const p = r[name]?.[size];
        assert.ok(p, `${name} ${size} B is reported`);
        assert.ok(
          p.pps > 0 && Number.isFinite(p.pps),
          `${name} ${size} B: the sink counted datagrams (${p.pps} pps)`,
        );
        assert.ok(
          Math.abs(p.mbps - (Number(size) * 8 * p.pps) / 1e6) < 0.2,
          `${name} ${size} B: mbps from pps`,
        );
        assert.ok(p.sentPps > 0, `${name} ${size} B: the generator's own rate`);
        if (/\d/.test(name))
          // What reached the sink on an ARROW row crossed router a in the kernel, not its Node path.
          assert.ok(
            (p.perRun[0]!.kernelShare ?? 0) >= 0.95,
            `${name} ${size} B: kernel share ${p.perRun[0]!.kernelShare}`,
          );
      }
    // Every tag the C generator computed verified in the kernel; honest traffic is never dropped.
    const { dropBadTag, dropReplay, dropOverRate } = r.kernelRouterCounters!;
    assert.deepEqual(
      { dropBadTag, dropReplay, dropOverRate },
      { dropBadTag: 0, dropReplay: 0, dropOverRate: 0 },
    );
    assert.equal(r.kernelRatio1, r.kernelRatios!['64']!.kernel1);
    assert.equal(r.kernelRatioTag, r.kernelRatios!['64']!.kernel1Tag);
    assert.equal(r.kernelTargets!.size, 64);
    assert.equal(typeof r.kernelTargets!.ratio1Met, 'boolean');
    // A router costs something over the generator alone; in a valid run a negative cost would be a
    // counting bug. A run whose rates moved between rows (run 50: the baseline outran the generator
    // alone on a VM with steal) is INVALID, says why, and its differences are no result.
    if (r.kernelValid)
      for (const size of ['64', '1400'])
        for (const [row, ns] of Object.entries(r.kernelNsPerPacket![size]!))
          assert.ok(Number.isFinite(ns) && ns > 0, `${row} ${size} B adds ${ns} ns per packet`);
    else assert.match(String(r.kernelInvalidReason), /./);
  },
);
