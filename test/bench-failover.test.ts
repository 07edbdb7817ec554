import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderFailoverPlot } from '../src/bench/failover-plot.js';
import type { FailoverReport } from '../src/bench/failover.js';
import { LAB_DATAPLANES, labOptions } from './helpers/dataplanes.js';
import { benchReport } from './helpers/bench-run.js';
import { darkPixels, decodePng, PNG_SIGNATURE } from './helpers/png.js';

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function num(v: unknown, what: string): number {
  assert.equal(typeof v, 'number', `${what} is a number, got ${JSON.stringify(v)}`);
  assert.ok(Number.isFinite(v), `${what} is finite`);
  return v as number;
}

function percentiles(v: unknown, what: string): void {
  assert.ok(isRecord(v), `${what} is an object`);
  const p50 = num(v.p50, `${what}.p50`);
  const p99 = num(v.p99, `${what}.p99`);
  const max = num(v.max, `${what}.max`);
  assert.ok(0 <= p50 && p50 <= p99 && p99 <= max, `${what}: 0 <= p50 ${p50} <= p99 ${p99} <= max ${max}`);
}

/** valid and invalidReason agree: a reason exactly when invalid. */
function validity(v: Record<string, unknown>, what: string): boolean {
  assert.equal(typeof v.valid, 'boolean', `${what}.valid`);
  if (v.valid) assert.equal(v.invalidReason, null, `${what}: valid, so no reason`);
  else
    assert.ok(typeof v.invalidReason === 'string' && v.invalidReason.length > 0, `${what}: INVALID says why`);
  return v.valid as boolean;
}

for (const dataplane of LAB_DATAPLANES)
  test(
    `bench failover --json --dataplane ${dataplane}: calibrated, 3 clients, liveness off and on, every client recovers, every run judged valid or not; the plot is an SVG and a PNG`,
    { timeout: 280_000 },
    async () => {
      labOptions(dataplane); // the kernel path needs root: say so, never skip
      const out = mkdtempSync(join(tmpdir(), 'arrow-bench-failover-test-'));
      try {
        // Two fresh labs of real processes (6 routers, 3 portals, an echo server), a SIGKILL in each.
        // The command exits 1 when some client never recovered, still printing the report: read it
        // either way, so the assertions below say which.
        const stdout = await benchReport(
          [
            'bench',
            'failover',
            '--clients',
            '3',
            '--liveness',
            'both',
            '--attempts',
            '1',
            '--json',
            '--dataplane',
            dataplane,
            '--out',
            out,
          ],
          270_000,
        );
        const report: unknown = JSON.parse(stdout);
        assert.ok(isRecord(report));
        assert.equal(report.dataplane, dataplane, `every lab's routers ran the ${dataplane} path`);
        assert.ok(isRecord(report.machine));
        assert.ok(num(report.machine.cpus, 'machine.cpus') > 0);
        assert.equal(report.machine.node, process.version);
        // The calibration: the failure-free capacity measured first, and the share every run got.
        const c: unknown = report.calibration;
        assert.ok(isRecord(c), 'calibration');
        const calibrationValid = validity(c, 'calibration');
        const capacity = num(c.capacityEchoesPerSec, 'calibration.capacityEchoesPerSec');
        assert.ok(capacity > 0);
        assert.equal(c.fraction, 0.5, 'the default fraction');
        assert.equal(c.rateEchoesPerSec, Math.round(capacity * 0.5));
        assert.ok(num(c.unloadedRttMs, 'calibration.unloadedRttMs') > 0);
        assert.ok(Array.isArray(c.steps) && c.steps.length > 0, 'calibration steps');
        const passed = (c.steps as Record<string, unknown>[]).filter((x) => x.passed === true);
        if (calibrationValid) assert.ok(passed.length > 0, 'a valid calibration had a step that passed');
        for (const x of c.steps as Record<string, unknown>[]) {
          assert.equal(typeof x.passed, 'boolean');
          if (!x.passed) assert.equal(typeof x.reason, 'string', 'a failed step says why');
        }
        // The capacity is the best passing step's reply rate (or the first step's, when none passed).
        if (passed.length) assert.equal(capacity, Math.max(...passed.map((x) => x.repliedPerSec as number)));

        const targets: unknown = report.targets;
        assert.ok(isRecord(targets), 'targets');
        for (const k of ['repairP99', 'flatness', 'livenessOutageP99']) {
          const t: unknown = targets[k];
          assert.ok(isRecord(t), `targets.${k}`);
          assert.equal(typeof t.met, 'boolean', `targets.${k}.met`);
          num(t.limit, `targets.${k}.limit`);
        }

        assert.ok(Array.isArray(report.runs), 'runs is an array');
        assert.equal(report.runs.length, 2);
        const modes = new Set<unknown>();
        for (const r of report.runs as unknown[]) {
          assert.ok(isRecord(r));
          const name = `run liveness ${String(r.liveness)}`;
          assert.equal(r.clients, 3);
          assert.ok(r.liveness === 'on' || r.liveness === 'off', name);
          modes.add(r.liveness);
          const valid = validity(r, name);
          if (!calibrationValid)
            assert.equal(valid, false, `${name}: no valid run on an invalid calibration`);
          assert.equal(r.attempt, 1);
          // The interval follows the calibrated rate: 10 ms (the issue's) unless 3 clients at 10 ms exceed it.
          const interval = Math.max(10, Math.ceil(3000 / (c.rateEchoesPerSec as number)));
          assert.equal(
            num(r.echoIntervalMs, `${name} echoIntervalMs`),
            interval,
            'the interval follows the calibration',
          );
          assert.equal(r.echoRatePerSec, Math.round(3000 / interval));
          assert.ok(num(r.unloadedRttMs, `${name} unloadedRttMs`) > 0, `${name}: the unloaded baseline`);
          assert.ok(num(r.samplesBeforeKill, `${name} samplesBeforeKill`) > 0);
          // Valid means the pre-kill conditions held; the thresholds themselves are unit-tested.
          if (valid) {
            assert.ok(
              (r.lostBeforeKill as number) <= 1,
              `${name}: valid, so (almost) nothing lost before the kill`,
            );
            assert.equal(r.spuriousFailures, 0, `${name}: valid, so no detector fired before the kill`);
            assert.equal(r.falseDeaths, 0, `${name}: valid, so no false death`);
          }
          percentiles(r.outageMs, `${name} outageMs`);
          percentiles(r.repairMs, `${name} repairMs`);
          assert.ok(num(r.lost, `${name} lost`) >= 0);
          assert.equal(r.recovered, 3, `${name}: every client recovered`);
          assert.ok((r.outageMs as { p50: number }).p50 > 0, `${name}: the kill made an outage`);
          // The victim carried every circuit: some router declared it dead and moved the hops,
          // as its neighbour-dead event (IPC, not the log) says.
          assert.ok(Array.isArray(r.verdicts));
          assert.ok(
            (r.verdicts as { neighbour: string; atMs: number; moved: number }[]).some(
              (v) => v.neighbour === r.victim && v.atMs >= 0 && v.moved === 3,
            ),
            `${name}: a router moved the 3 circuits off ${String(r.victim)}: ${JSON.stringify(r.verdicts)}`,
          );
        }
        assert.deepEqual(modes, new Set(['on', 'off']));

        const png = readFileSync(join(out, 'failover.png'));
        assert.ok(png.length > 10_000, `PNG of ${png.length} bytes`);
        assert.deepEqual(png.subarray(0, 8), PNG_SIGNATURE);
        assert.equal(decodePng(png).width, 1400);
        assertFailoverSvg(readFileSync(join(out, 'failover.svg'), 'utf8'), `--dataplane ${dataplane}`);
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    },
  );

/** The failover plot's texts: its titles, its axes with their units, its legend and its targets. */
function assertFailoverSvg(svg: string, what: string): void {
  for (const text of [
    'outage: reply gap around the kill',
    'repair: first probe to probe home',
    'clients (log scale)',
    'outage (ms, log scale)',
    'repair (ms, log scale)',
    'p99, liveness off',
    'p50, liveness off',
    'echo interval (outage resolution)',
  ])
    assert.ok(svg.includes(`>${text}</text>`), `${what}: the SVG has the text "${text}"`);
}

test('the failover plot of a saved report (docs/failover-2026-12-01.json): SVG with its axes, legend and targets; a PNG 1400 px wide with text drawn', async () => {
  const saved = JSON.parse(
    readFileSync(new URL('../../docs/failover-2026-12-01.json', import.meta.url), 'utf8'),
  ) as FailoverReport;
  const { svg, png } = await renderFailoverPlot(saved);
  assertFailoverSvg(svg, 'saved report');
  for (const text of ['p99, liveness on', 'target p99, liveness on', 'target p99 at N=1000'])
    assert.ok(svg.includes(`>${text}</text>`), `the SVG has the text "${text}"`);
  assert.match(svg, /1 INVALID run\(s\) not drawn/);
  assert.ok(png.length > 10_000, `PNG of ${png.length} bytes`);
  const img = decodePng(png);
  assert.equal(img.width, 1400);
  assert.ok(darkPixels(img, 0, 45) > 500, 'the title is drawn');
});
