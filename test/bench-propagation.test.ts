import { test } from 'node:test';
import assert from 'node:assert/strict';
import { benchReport } from './helpers/bench-run.js';

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function num(v: unknown, what: string): number {
  assert.equal(typeof v, 'number', `${what} is a number, got ${JSON.stringify(v)}`);
  assert.ok(Number.isFinite(v), `${what} is finite`);
  return v as number;
}

test(
  'bench propagation --json times creates to every router with SQLite and etcd',
  { timeout: 120_000 },
  async () => {
    // A short run: 4 real routers and a portal per store, plus a 3-member etcd cluster for etcd.
    // It exits 1 when a run is INVALID (a create failed, a circuit went missing, a busy machine), still printing the report:
    // read it either way, so the assertions below say which.
    const stdout = await benchReport(
      ['bench', 'propagation', '--json', '--circuits', '100', '--concurrency', '8'],
      110_000,
      'propagation',
    );
    const report: unknown = JSON.parse(stdout);
    assert.ok(isRecord(report));
    assert.ok(isRecord(report.machine));
    assert.ok(num(report.machine.cpus, 'machine.cpus') > 0);
    assert.equal(report.machine.node, process.version);

    for (const store of ['sqlite', 'etcd']) {
      const r: unknown = report[store];
      assert.ok(isRecord(r), `${store} is an object`);
      const p50 = num(r.p50Ms, `${store} p50Ms`);
      const p99 = num(r.p99Ms, `${store} p99Ms`);
      const max = num(r.maxMs, `${store} maxMs`);
      assert.ok(
        0 <= p50 && p50 <= p99 && p99 <= max,
        `${store}: 0 <= p50 ${p50} <= p99 ${p99} <= max ${max}`,
      );
      assert.ok(num(r.createsPerSec, `${store} createsPerSec`) > 0);
      assert.equal(r.missing, 0, `${store}: every circuit reached every router`);
      assert.equal(num(r.circuits, `${store} circuits`) + num(r.failed, `${store} failed`), 100);
      assert.ok(num(r.alreadyPropagated, `${store} alreadyPropagated`) <= (r.circuits as number));
      // The baseline in the same lab: GET /healthz on the same portal and connections.
      assert.ok(isRecord(r.baseline), `${store} baseline`);
      assert.ok(num(r.baseline.requestsPerSec, `${store} baseline.requestsPerSec`) > 0);
      const ratio = num(r.ratio, `${store} ratio`);
      assert.ok(
        Math.abs(ratio - (r.createsPerSec as number) / (r.baseline.requestsPerSec as number)) < 0.01,
        `${store} ratio`,
      );
      // Judged: valid exactly when nothing failed or went missing and the machine was quiet.
      assert.equal(typeof r.valid, 'boolean', `${store} valid`);
      if (r.valid) assert.equal(r.invalidReason, null);
      else assert.ok(typeof r.invalidReason === 'string' && r.invalidReason.length > 0, `${store}: says why`);
    }
  },
);
