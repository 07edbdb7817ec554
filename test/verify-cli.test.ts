import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Lab } from '../src/lab/lab.js';
import { CLI_PATH } from '../src/lab/process.js';
import { defaultTopology } from '../src/lab/topology.js';
import { Endpoint } from '../src/endpoint/endpoint.js';
import { releasePath } from '../src/endpoint/path.js';
import { eventually } from './helpers/network.js';
import { buySavedPath } from './helpers/lab-path.js';
import type { Verdict } from '../src/verify/check.js';
import type { VerifyBenchReport } from '../src/bench/verify.js';
import { benchReport } from './helpers/bench-run.js';

// Issue 14: `arrow verify` against a running lab, as a customer and as an ISP. A path bought
// through three ISPs verifies clean; after the middle ISP's circuit is relinquished (with curl, as
// any client would), the first ISP's circuit points into a black hole: exit 1, with the witness.

const run = promisify(execFile);

/** `arrow verify ARGS`, asynchronously (the lab's portals answer from this process's children). */
async function arrowVerify(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return run(process.execPath, [CLI_PATH, 'verify', ...args], { timeout: 60_000 }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: Error & { code?: number; stdout?: string; stderr?: string }) => ({
      code: typeof e.code === 'number' ? e.code : -1,
      stdout: e.stdout ?? '',
      stderr: e.stderr ?? e.message,
    }),
  );
}

test('arrow verify --path: a bought path is delivered through every ISP; after an upstream relinquish it is a black hole, exit 1', async () => {
  const topology = defaultTopology();
  topology.name = 'verifylab';
  const lab = await Lab.start(topology);
  const dir = mkdtempSync(join(tmpdir(), 'arrow-verify-'));
  const endpoint = await Endpoint.open('127.0.0.1:0');
  try {
    const { path, file, server } = await buySavedPath(lab, endpoint, dir);

    const ok = await arrowVerify(['--path', file, '--json']);
    assert.equal(ok.code, 0, ok.stderr + ok.stdout);
    const v = JSON.parse(ok.stdout) as Verdict;
    const first = v.flows.find((f) => f.entry.circuit === path.forward[0]!.circuit.auth)!;
    assert.equal(first.entry.from, 'customer');
    assert.deepEqual(first.outcome, { kind: 'delivered', how: 'udp', target: server });
    assert.deepEqual(first.isps, ['alpha', 'beta', 'gamma']);
    // Its delivery leaves flow state at gamma: the UDP socket the server answers.
    assert.equal(first.state?.kind, 'socket');
    assert.match(first.state?.holder ?? '', /^127\.1\.3\./);
    // gamma's router holding it, failed alone: the delivery moves to its sibling, pending answers do not.
    const moves = v.failures.flatMap((x) => x.stateMoves);
    assert.ok(
      moves.some((m) => m.established === 'lost' && m.to !== undefined),
      JSON.stringify(moves),
    );
    // The server's answers enter the return path and reach the customer's endpoint.
    const back = v.flows.find((f) => f.entry.from.startsWith('the target of'));
    assert.ok(back, JSON.stringify(v.flows.map((f) => [f.entry.from, f.entry.isp, f.outcome.kind])));
    assert.deepEqual(back.outcome, { kind: 'delivered', how: 'endpoint', target: endpoint.address });
    assert.deepEqual(back.isps, ['gamma', 'beta', 'alpha']);
    // Every router the paths use was failed alone: each has a sibling, so nothing breaks.
    assert.ok(v.failures.length >= 6, `${v.failures.length} routers checked`);
    assert.equal(v.problems, 0);
    const text = await arrowVerify(['--path', file]);
    assert.match(text.stdout, /delivered \(udp\) to .*crosses alpha > beta > gamma/);
    assert.match(text.stdout, /No loop and no black hole\./);
    assert.match(
      text.stdout,
      /state: gamma-\S+ holds the UDP socket the server answers|state: 127\.1\.3\.\S+ holds the UDP socket/,
    );
    assert.match(text.stdout, /dead: [0-9a-f]{8}: .*established flows LOST, new ones go through/);

    // The ISP's own view, from its store: alpha's circuits leave alpha towards beta or deliver.
    const store = await arrowVerify(['--store', join(lab.dir, 'portal-alpha.yaml'), '--json']);
    assert.equal(store.code, 0, store.stderr + store.stdout);
    const sv = JSON.parse(store.stdout) as Verdict;
    const fwd = sv.flows.find((f) => f.entry.circuit === path.forward[0]!.circuit.auth)!;
    assert.equal(fwd.outcome.kind, 'leaves');
    // Its witness: alpha's ingress and egress PoP routers by name, then the address where it leaves.
    assert.deepEqual(
      fwd.witness.map((x) => x.router ?? x.address),
      [
        ...['alpha-ams-', 'alpha-fra-'].map((p) => fwd.witness.find((x) => x.router?.startsWith(p))?.router),
        path.forward[1]!.circuit.ingress[0],
      ],
    );

    // A real repair: the beta router alpha forwards to dies; alpha's routers move the hop to its
    // sibling and record it in alpha's store. The repaired table still leaves alpha, to the sibling.
    const into = path.forward[1]!.circuit.ingress;
    assert.ok(into.length >= 2, 'beta has a sibling to repair to');
    lab.kill(lab.routers.find((r) => r.address === into[0])!.name);
    const repaired = await eventually(async () => {
      const r = await arrowVerify(['--store', join(lab.dir, 'portal-alpha.yaml'), '--json']);
      const f = (JSON.parse(r.stdout) as Verdict).flows.find((x) => x.entry.circuit === fwd.entry.circuit);
      return f?.outcome.kind === 'leaves' && f.outcome.address === into[1] ? r : undefined;
    }, 10_000);
    assert.ok(repaired, `alpha never repaired its hop to ${into[1]}`);
    assert.equal(repaired.code, 0);
    const after = await arrowVerify(['--path', file, '--json', '--no-failures']);
    assert.equal(after.code, 0, after.stdout + after.stderr);
    const afterFirst = (JSON.parse(after.stdout) as Verdict).flows.find(
      (f) => f.entry.circuit === path.forward[0]!.circuit.auth,
    )!;
    assert.equal(afterFirst.outcome.kind, 'delivered', 'the repaired path still delivers');
    assert.ok(
      afterFirst.witness.some((x) => x.address === into[1]),
      'through the sibling',
    );

    // beta relinquishes its forward circuit (curl, as any client): alpha still chains to it.
    const beta = path.forward[1]!;
    const del = spawnSync(
      'curl',
      [
        '-sS',
        '--fail',
        '-X',
        'DELETE',
        '-H',
        `authorization: Bearer ${beta.segment.apiKey}`,
        `${beta.segment.portal}/circuits/${beta.circuit.auth}`,
      ],
      { encoding: 'utf8' },
    );
    assert.equal(del.status, 0, del.stderr);
    const broken = await arrowVerify(['--path', file]);
    assert.equal(broken.code, 1, broken.stdout + broken.stderr);
    assert.match(broken.stdout, /BLACK HOLE \(unknown-authenticator\): beta\/fra\/\S+ knows no circuit/);
    assert.match(broken.stdout, /witness: alpha\/ams \(\S+\) \S+ -> beta\/fra \(\S+\)/);
    assert.match(broken.stdout, /^1 problem\(s\)\.$/m, 'reported once, not again under each failure');
    await releasePath({ ...path, forward: path.forward.filter((b) => b !== beta) });
  } finally {
    await endpoint.close();
    await lab.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('arrow verify: bad arguments are clear errors', async () => {
  const none = await arrowVerify([]);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /give one of --path FILE, --portal URL --key KEY/);
  const unpaired = await arrowVerify([
    '--portal',
    'http://127.0.0.1:1',
    '--portal',
    'http://127.0.0.1:2',
    '--key',
    'k',
  ]);
  assert.match(unpaired.stderr, /one --key per --portal \(2 portal\(s\), 1 key\(s\)\)/);
  const missing = await arrowVerify(['--path', '/nonexistent/path.json']);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /path\.json/);
});

test('arrow bench verify --json: the checker and the routers agree on every circuit; time grows with the network; a plot', async () => {
  const stdout = await benchReport(
    ['bench', 'verify', '--json', '--circuits', '2000', '--routers', '100', '--isps', '10', '--runs', '3'],
    120_000,
    'verify',
  );
  const r = JSON.parse(stdout) as VerifyBenchReport;
  assert.equal(r.circuits, 2000);
  assert.equal(r.routers, 100);
  assert.equal(r.agree, r.circuits, 'the checker and DataPlane.process agree on every circuit');
  assert.equal(r.delivered, r.circuits, 'every generated path delivers');
  assert.ok(r.states >= r.circuits, `${r.states} states`);
  assert.deepEqual(
    r.scaling.map((s) => s.circuits),
    [250, 500, 1000, 2000],
  );
  assert.ok(r.verifyMs > 0 && r.injectMs > 0 && r.ratio > 0, JSON.stringify(r));
  assert.equal(r.runMs.length, 3);
  // Valid or not (a busy machine), the report says which and why.
  assert.equal(r.valid, r.invalidReason === null);
});
