// The benchmarks' validity rules, as pure logic: a run whose pre-failure conditions failed is
// INVALID with its reasons, never a result. The benchmarks themselves are run by bench-*.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateAtlas } from '../src/bench/atlas.js';
import { validateDataPlane } from '../src/bench/dataplane.js';
import { checkTargets, validateFailoverRun, type FailoverRun } from '../src/bench/failover.js';
import { validatePropagation } from '../src/bench/propagation.js';
import { validatePoint, type RunFigures } from '../src/bench/report.js';
import { Checks } from '../src/bench/validity.js';

test('Checks: valid with a null reason when every check holds; every failed reason otherwise', () => {
  assert.deepEqual(new Checks().check(true, 'a').result, { valid: true, invalidReason: null });
  assert.deepEqual(new Checks().check(false, 'a').check(true, 'b').check(false, 'c').result, {
    valid: false,
    invalidReason: 'a; c',
  });
});

/** A clean failover run at N = 1000: what a quiet machine gives. */
const clean = {
  clients: 1000,
  samplesBeforeKill: 6000,
  lostBeforeKill: 0,
  spuriousFailures: 0,
  falseDeaths: 0,
  rttMs: { p50: 1.5, p99: 6 },
  unloadedRttMs: 0.9,
  preKillTickLateMs: 0.4,
  cpu: { bench: 30, routers: 80, routerMax: 25, other: 10, idle: 60 },
};
const calibrated = { valid: true };

test('failover: a clean run is valid', () => {
  assert.deepEqual(validateFailoverRun(clean, calibrated), { valid: true, invalidReason: null });
});

test("failover: the issue's slow-machine run (loss, spurious failures, 2 s RTT, no idle CPU) is INVALID, every reason named", () => {
  const v = validateFailoverRun(
    {
      ...clean,
      lostBeforeKill: 2146,
      spuriousFailures: 1840,
      rttMs: { p50: 2000, p99: 2600 },
      cpu: { bench: 40, routers: 149, routerMax: 95, other: 9, idle: 2 },
    },
    calibrated,
  );
  assert.equal(v.valid, false);
  for (const reason of [
    /2146 echoes lost before the kill/,
    /1840 detector firings before the kill/,
    /round trip p50 2000 ms/,
    /round trip p99 2600 ms/,
    /machine saturated: 2% idle/,
    /busiest router CPU-bound: 95%/,
  ])
    assert.match(v.invalidReason!, reason);
});

test('failover: each pre-kill check alone makes a run INVALID', () => {
  const cases: [Partial<typeof clean>, RegExp][] = [
    [{ samplesBeforeKill: 50 }, /too few samples before the kill: 50/],
    [{ lostBeforeKill: 13 }, /13 echoes lost before the kill \(> 12\)/],
    [{ spuriousFailures: 11 }, /11 detector firings before the kill \(> 10\)/],
    [{ falseDeaths: 1 }, /1 router dead verdicts before the kill/],
    [{ rttMs: { p50: 4, p99: 6 } }, /round trip p50 4 ms before the kill, unloaded 0.9 ms/],
    [{ unloadedRttMs: Number.NaN }, /no unloaded round trip/],
    [{ preKillTickLateMs: 12 }, /scheduler ran 12 ms late/],
    [{ cpu: { ...clean.cpu, idle: 3 } }, /machine saturated: 3% idle/],
    [{ cpu: { ...clean.cpu, other: 80 } }, /other processes took 80% of a core/],
  ];
  for (const [change, reason] of cases) {
    const v = validateFailoverRun({ ...clean, ...change }, calibrated);
    assert.equal(v.valid, false, JSON.stringify(change));
    assert.match(v.invalidReason!, reason);
  }
  // Small runs tolerate one lost echo, and no detector firing.
  assert.equal(
    validateFailoverRun({ ...clean, clients: 5, samplesBeforeKill: 700, lostBeforeKill: 1 }, calibrated)
      .valid,
    true,
  );
  assert.equal(
    validateFailoverRun({ ...clean, clients: 5, samplesBeforeKill: 700, spuriousFailures: 1 }, calibrated)
      .valid,
    false,
  );
  // A run cannot be valid on an invalid calibration: its load was not the stated share of anything.
  assert.match(validateFailoverRun(clean, { valid: false }).invalidReason!, /calibration was invalid/);
});

test('failover targets are judged on valid runs only: an INVALID run gives no value and misses, saying why', () => {
  const run = (clients: number, repairP99: number, valid: boolean): FailoverRun =>
    ({
      clients,
      liveness: 'off',
      valid,
      invalidReason: valid ? null : 'machine saturated: 0% idle',
      probed: clients,
      recovered: clients,
      repairMs: { p50: repairP99 / 2, p99: repairP99, max: repairP99 },
      outageMs: { p50: 60, p99: 80, max: 90 },
    }) as FailoverRun;
  const good = checkTargets([run(5, 20, true), run(1000, 30, true)]);
  assert.equal(good.repairP99.met, true);
  assert.equal(good.flatness.results[0]!.value, 1.5);
  assert.equal(good.flatness.met, true);
  const bad = checkTargets([run(5, 20, true), run(1000, 30, false)]);
  assert.equal(bad.repairP99.met, false);
  assert.equal(bad.repairP99.results[0]!.value, null);
  assert.match(bad.repairP99.results[0]!.note!, /N = 1000 INVALID: machine saturated/);
  assert.equal(bad.flatness.met, false);
});

test('propagation: failed or missing creates, too few samples and a busy machine make a run INVALID', () => {
  const ok = { circuits: 1000, missing: 0, failed: 0, resynced: 0, cpu: { other: 5, idle: 0 } };
  assert.equal(
    validatePropagation(ok, 1000).valid,
    true,
    'a saturated machine is what a throughput bench is for',
  );
  assert.match(
    validatePropagation({ ...ok, failed: 3, circuits: 997 }, 1000).invalidReason!,
    /3 creates failed/,
  );
  assert.match(validatePropagation({ ...ok, missing: 2 }, 1000).invalidReason!, /2 circuits never reached/);
  assert.match(validatePropagation({ ...ok, resynced: 200 }, 1000).invalidReason!, /too few samples: 800/);
  assert.match(
    validatePropagation({ ...ok, cpu: { other: 80 } }, 1000).invalidReason!,
    /other processes took 80%/,
  );
});

test('forward: a point is INVALID on a busy machine, a short window or runs that disagree', () => {
  const r = (pps: number, cpu: Record<string, number> = { other: 5 }): RunFigures => ({
    pps,
    mbps: 1,
    sentPps: pps * 2,
    packets: pps * 2,
    cpu,
  });
  assert.equal(validatePoint([r(50_000), r(52_000), r(49_000)]).valid, true);
  assert.match(validatePoint([r(50_000), r(20_000)]).invalidReason!, /runs 2.5x apart/);
  assert.match(validatePoint([r(50_000, { other: 90 })]).invalidReason!, /run 1: other processes took 90%/);
  assert.match(validatePoint([r(100)]).invalidReason!, /run 1: 200 datagrams counted/);
  assert.match(validatePoint([]).invalidReason!, /no run/);
});

test('dataplane and atlas: too little work or noisy runs are INVALID', () => {
  assert.equal(validateDataPlane({ packets: 2_000_000, perRunNs: [100, 110, 105] }).valid, true);
  assert.match(
    validateDataPlane({ packets: 2_000_000, perRunNs: [100, 300, 105] }).invalidReason!,
    /3x apart/,
  );
  assert.match(
    validateDataPlane({ packets: 1000, perRunNs: [100, 100, 100] }).invalidReason!,
    /1000 packets per run/,
  );
  assert.equal(
    validateAtlas({ queries: 100, runP50Ms: [5, 5.5, 5.2], unconstrainedAnswered: 90 }).valid,
    true,
  );
  assert.match(
    validateAtlas({ queries: 100, runP50Ms: [5], unconstrainedAnswered: 0 }).invalidReason!,
    /1 run\(s\).*no unconstrained query found a path/,
  );
});
