import { test } from 'node:test';
import assert from 'node:assert/strict';
import { benchReport } from './helpers/bench-run.js';

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function assertPositiveFinite(v: unknown, what: string): void {
  assert.equal(typeof v, 'number', `${what} is a number`);
  assert.ok(Number.isFinite(v) && (v as number) > 0, `${what} is finite and > 0, got ${String(v)}`);
}

test('bench forward --json runs real processes and prints one report', { timeout: 90_000 }, async () => {
  // A short run: real routers, relay, sender and sink, one 0.3 s window per config. It exits 1
  // when a point is INVALID (a busy machine), still printing the report: read it either way.
  const stdout = await benchReport(
    ['bench', 'forward', '--json', '--duration', '0.3', '--runs', '1', '--sizes', '64', '--kernel', 'off'],
    60_000,
    'forward',
  );
  const report: unknown = JSON.parse(stdout);
  assert.ok(isRecord(report));
  // Every point is judged, and the report is valid exactly when every point is.
  assert.equal(typeof report.valid, 'boolean');
  const points: Record<string, unknown>[] = [];

  assert.deepEqual(report.sizes, [64]);
  // The kernel rows have their own test (bench-forward-kernel.test.ts); off, the report says so.
  assert.equal(report.kernelUnavailable, 'not asked for (--kernel off)');
  assert.equal(report.kernel1, undefined);
  assert.equal(report.runs, 1);
  assert.equal(report.durationS, 0.3);
  assert.ok(isRecord(report.machine));
  assertPositiveFinite(report.machine.cpus, 'machine.cpus');
  assert.equal(report.machine.node, process.version);

  for (const config of ['baseline', 'hop1', 'hop2']) {
    const bySize: unknown = report[config];
    assert.ok(isRecord(bySize), `${config} is an object`);
    assert.deepEqual(Object.keys(bySize), ['64']);
    const point: unknown = bySize['64'];
    assert.ok(isRecord(point), `${config}["64"] is an object`);
    points.push(point);
    assert.equal(typeof point.valid, 'boolean', `${config} valid`);
    if (point.valid) assert.equal(point.invalidReason, null);
    else
      assert.ok(
        typeof point.invalidReason === 'string' && point.invalidReason.length > 0,
        `${config}: says why`,
      );
    assertPositiveFinite(point.pps, `${config} pps`);
    assertPositiveFinite(point.mbps, `${config} mbps`);
    // Mb/s is UDP payload bits at the sink, derived from pps (the two are rounded separately).
    assert.ok(Math.abs((point.mbps as number) - (64 * 8 * (point.pps as number)) / 1e6) < 0.1);
    assert.ok(Array.isArray(point.perRun) && point.perRun.length === 1, `${config} has one per-run figure`);
    const first: unknown = point.perRun[0];
    assert.ok(isRecord(first) && (first.packets as number) > 0, `${config}: datagrams counted`);
  }

  // With 1400 not measured, the headline ratios are taken at the largest size, here 64.
  assert.equal(
    report.valid,
    points.every((p) => p.valid === true),
  );
  if (!report.valid) assert.match(String(report.invalidReason), /(baseline|hop1|hop2) 64 B: /);
  assertPositiveFinite(report.ratio1, 'ratio1');
  assertPositiveFinite(report.ratio2, 'ratio2');
  assert.ok(isRecord(report.ratios) && isRecord(report.ratios['64']));
  assert.equal(report.ratios['64'].hop1, report.ratio1);
  assert.equal(report.ratios['64'].hop2, report.ratio2);
});
