import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { plotDir } from './helpers/bench-run.js';
import { promisify } from 'node:util';

const run = promisify(execFile);
/** The compiled CLI, as a user runs it: this file is compiled to dist/test/, the CLI to dist/src/cli/. */
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function num(v: unknown, what: string): number {
  assert.equal(typeof v, 'number', `${what} is a number, got ${JSON.stringify(v)}`);
  assert.ok(Number.isFinite(v), `${what} is finite`);
  return v as number;
}

test(
  'bench liveness --json: a short soak of the default liveness on a quiet lab is valid and makes no false dead verdict',
  { timeout: 90_000 },
  async () => {
    // A lab of real processes (12 routers, 3 portals, an echo server), nothing failed. The command
    // exits 1 on a false verdict and 2 on an invalid run, still printing the report: read it either
    // way, so the assertions below say which.
    const out = plotDir('liveness');
    const stdout = await run(
      process.execPath,
      [CLI, 'bench', 'liveness', '--seconds', '8', '--paths', '2', '--json', '--out', out.dir],
      { timeout: 80_000, maxBuffer: 4 * 1024 * 1024 },
    ).then(
      (r) => r.stdout,
      (err: Error & { code?: unknown; stdout?: string }) => {
        if ((err.code !== 1 && err.code !== 2) || !err.stdout) throw err;
        return err.stdout;
      },
    );
    out.done();
    const r: unknown = JSON.parse(stdout);
    assert.ok(isRecord(r));
    assert.equal(r.invalidReason, null, 'the run is valid');
    assert.equal(r.valid, true);

    // The routers ran the default: liveness on, SCION's 200 ms x 3.
    assert.deepEqual(r.liveness, { enabled: true, intervalMs: 200, multiplier: 3 });
    assert.equal(r.detectionMs, 600);

    // Calibrated load, stated in the JSON.
    assert.ok(isRecord(r.calibration));
    // 0 when even the lowest step's round trips were slow (a busy host, seen once in a whole-suite
    // run): by design the soak then still runs at the floor rate and says so; lost echoes at that
    // step would have made the run INVALID, which is asserted above.
    assert.ok(num(r.calibration.capacityEchoesPerSec, 'capacity') >= 0);
    assert.equal(r.calibration.fraction, 0.1);
    assert.ok(Array.isArray(r.calibration.steps) && r.calibration.steps.length > 0);

    assert.ok(isRecord(r.healthCheck));
    assert.equal(r.healthCheck.received, r.healthCheck.sent, 'every health-check echo answered');
    assert.ok(num(r.healthCheck.sent, 'healthCheck.sent') > 0);

    assert.ok(isRecord(r.soak));
    assert.equal(r.soak.seconds, 8);
    assert.ok(isRecord(r.soak.echoes));
    assert.ok(num(r.soak.echoes.sent, 'echoes sent') > 0, 'steady echo traffic ran');
    assert.ok(num(r.soak.neighboursInUse, 'neighboursInUse') > 0, 'neighbours were in use');
    // 8 s at 200 ms: about 40 keepalives per neighbour; the counters must show them.
    const sent = num(r.soak.keepalivesSent, 'keepalivesSent');
    assert.ok(sent >= 20 * (r.soak.neighboursInUse as number), `keepalives counted: ${sent}`);
    const perNeighbour = num(r.soak.packetsPerNeighbourPerSec, 'packetsPerNeighbourPerSec');
    assert.ok(perNeighbour > 5 && perNeighbour <= 11, `about 10 packets/s per neighbour: ${perNeighbour}`);

    // The keepalive waits come from the routers' published histograms.
    assert.ok(isRecord(r.keepaliveWaitMs));
    assert.ok(num(r.keepaliveWaitMs.samples, 'wait samples') > 0);
    const { p50, p99, max } = r.keepaliveWaitMs;
    assert.ok(num(p50, 'p50') <= num(p99, 'p99') && (p99 as number) <= num(max, 'max') + 1e-9);

    // Nothing failed, so any verdict would be false: there must be none.
    assert.equal(r.falseDeadVerdicts, 0, `false verdicts: ${JSON.stringify(r.routersWithVerdicts)}`);
    assert.equal(r.livenessVerdicts, 0);
    assert.equal(r.revivals, 0);
    assert.deepEqual(r.routersWithVerdicts, []);
    assert.ok(isRecord(r.machine));
    assert.ok(num(r.machine.cores, 'cores') > 0);
  },
);
