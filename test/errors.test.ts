import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errorCode, hasCode, isExitStatus, unexpectedErrors } from '../src/util/errors.js';
import { readState, statePath } from '../src/lab/control.js';
import { Lab } from '../src/lab/lab.js';
import { startComponent } from '../src/lab/process.js';
import { stringify } from 'yaml';
import { defaultTopology } from '../src/lab/topology.js';

test('errorCode names errno codes, timeouts, and codes wrapped in a cause (as fetch does)', () => {
  const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
  assert.equal(errorCode(refused), 'ECONNREFUSED');
  assert.equal(errorCode(new TypeError('fetch failed', { cause: refused })), 'ECONNREFUSED');
  assert.equal(errorCode(new DOMException('timed out', 'TimeoutError')), 'TimeoutError');
  assert.equal(errorCode(new Error('plain')), undefined);
  assert.equal(errorCode('not an error'), undefined);
  assert.ok(hasCode(refused, 'ENOENT', 'ECONNREFUSED'));
  assert.ok(!hasCode(refused, 'ENOENT'));
});

test('isExitStatus tells a command that failed from one that could not start', () => {
  let failed: unknown;
  try {
    execFileSync(process.execPath, ['-e', 'process.exit(3)'], { stdio: 'ignore' });
  } catch (err) {
    failed = err;
  }
  assert.ok(isExitStatus(failed));
  let missing: unknown;
  try {
    execFileSync('/nonexistent/arrow-no-such-program', { stdio: 'ignore' });
  } catch (err) {
    missing = err;
  }
  assert.ok(!isExitStatus(missing));
  assert.equal(errorCode(missing), 'ENOENT');
});

test('lab state: a missing file is no lab; a torn one is no lab too, but logged and counted', () => {
  const dir = mkdtempSync(join(tmpdir(), 'arrow-errors-test-'));
  const before = process.env.ARROW_LAB_RUN_DIR;
  process.env.ARROW_LAB_RUN_DIR = dir;
  try {
    assert.equal(readState('nosuchlab'), undefined);
    assert.deepEqual(unexpectedErrors(), {}, 'a missing state file is expected, not counted');
    writeFileSync(statePath('torn'), '{"name": "torn", "pid": ');
    assert.equal(readState('torn'), undefined);
    assert.equal(unexpectedErrors()[`reading lab state ${statePath('torn')}`], 1);
  } finally {
    if (before === undefined) delete process.env.ARROW_LAB_RUN_DIR;
    else process.env.ARROW_LAB_RUN_DIR = before;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a lab whose boot fails part-way stops every process it started, ready or not', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'arrow-failed-boot-'));
  try {
    const topology = defaultTopology();
    topology.name = 'failed-boot';
    // gamma's routers refuse their config and exit; alpha's and beta's are starting meanwhile.
    topology.isps[2]!.impair = { dropPct: 500 };
    const err = await Lab.start(topology, { dir }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    assert.ok(err, 'the lab did not start');
    assert.match(err.message, /router --config \S*router-gamma-par-1\.yaml exited .* before ready/);
    // No process is left running from this lab's folder (its routers, portals, echo server).
    const left = readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .flatMap((pid) => {
        try {
          const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
          return cmd.includes(dir) ? [`${pid}: ${cmd}`] : [];
        } catch (e) {
          // The process exited between the listing and the read.
          if (hasCode(e, 'ENOENT', 'ESRCH')) return [];
          throw e;
        }
      });
    assert.deepEqual(left, [], 'processes left behind by a failed boot');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a component that never gets ready is killed with a diagnostic report of where it waited', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'arrow-not-ready-'));
  try {
    // A router whose etcd store is not there waits for it (it must not forward with an empty table).
    const config = join(dir, 'router.yaml');
    writeFileSync(
      config,
      stringify({
        isp: 'alpha',
        pop: 'ams',
        name: 'alpha-ams-1',
        listen: '127.0.0.1:0',
        store: { kind: 'etcd', endpoints: ['http://127.0.0.1:9'] },
      }),
    );
    const err = await startComponent(['router', '--config', config], join(dir, 'router.log'), 3000).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    assert.ok(err, 'the router got ready without its store');
    assert.match(err.message, /not ready within 3000 ms/);
    assert.match(
      err.message,
      /router starting: reading the circuit store/,
      'the log tail says how far it got',
    );
    assert.match(err.message, /report\.\d+\.\d+\.\d+\.\d+\.\d+\.json/, err.message);
    assert.match(err.message, /main thread: [\s\S]*worker 1: [\s\S]*active handles: /, err.message);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
