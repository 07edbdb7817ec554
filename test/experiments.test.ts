// The seeds' experiments on a netns lab, with unmodified programs (ping, iperf3, curl, busybox
// httpd) and TUN endpoints: each `arrow lab experiment NAME --json` runs end to end, at small
// sizes so the suite stays short. Needs root (namespaces, veth, TUN); fails, never skips, without.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI_PATH } from '../src/lab/process.js';

const out = mkdtempSync(join(tmpdir(), 'arrow-experiments-'));
process.on('exit', () => rmSync(out, { recursive: true, force: true }));

function experiment(name: string, args: string[]): Record<string, unknown> {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0)
    assert.fail('test/experiments.test.ts needs root: the experiments make namespaces, veth links and TUNs');
  const r = spawnSync(
    process.execPath,
    [CLI_PATH, 'lab', 'experiment', name, '--json', '--out', out, ...args],
    {
      encoding: 'utf8',
      timeout: 240_000,
    },
  );
  assert.equal(
    r.status,
    0,
    `arrow lab experiment ${name} failed:\n${r.stderr.split('\n').slice(-20).join('\n')}`,
  );
  // The report, its plot and its JSON are written.
  for (const ext of ['md', 'png', 'json'])
    assert.ok(existsSync(join(out, `${name}.${ext}`)), `${name}.${ext}`);
  const png = readFileSync(join(out, `${name}.png`));
  assert.deepEqual([...png.subarray(1, 4)], [...Buffer.from('PNG')]);
  assert.match(readFileSync(join(out, `${name}.md`), 'utf8'), /seed|paper|thesis/);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

type Figures = {
  rttUs: { min: number; avg: number; max: number };
  mbps: { min: number; avg: number; max: number };
};

test('experiment hops (needs root): ping RTT and iperf3 throughput, direct and through 1 and 2 ISPs', () => {
  const r = experiment('hops', ['--runs', '1', '--seconds', '1', '--pings', '20']) as unknown as Record<
    string,
    Figures
  >;
  for (const path of ['direct', 'hop1', 'hop2']) {
    const f = r[path]!;
    assert.ok(f.rttUs.min > 0 && f.rttUs.min <= f.rttUs.avg && f.rttUs.avg <= f.rttUs.max, JSON.stringify(f));
    assert.ok(f.mbps.avg > 1, `${path}: ${JSON.stringify(f.mbps)}`);
  }
  // Each ARROW ISP costs round-trip time: the tunnelled paths are slower than the plain one.
  assert.ok(
    r.hop1!.rttUs.avg > r.direct!.rttUs.avg && r.hop2!.rttUs.avg > r.direct!.rttUs.avg,
    JSON.stringify(r),
  );
});

test('experiment download (needs root): curl through a 2-ISP TUN circuit, intact with the middle router killed at 40%', () => {
  // The experiment checks every download's size and SHA-256 against the served file and fails otherwise.
  const r = experiment('download', ['--sizes', '8', '--runs', '1']) as {
    runs: { fileMB: number; baselineS: { median: number }; failoverS: { median: number }; addedS: number }[];
  };
  assert.equal(r.runs.length, 1);
  const run = r.runs[0]!;
  assert.equal(run.fileMB, 8);
  assert.ok(run.baselineS.median > 0 && run.failoverS.median > 0, JSON.stringify(run));
  assert.equal(typeof run.addedS, 'number');
});

test('experiment icmp-loss (needs root): pings lost at 100/s when the middle router is killed', () => {
  const r = experiment('icmp-loss', ['--trials', '2']) as {
    pps: number;
    trials: number;
    lost: Record<string, number>;
  };
  assert.equal(r.pps, 100);
  assert.equal(r.trials, 2);
  // Some loss (the router died) but a failover, not an outage: 300 pings per trial.
  assert.ok(r.lost.min! >= 1 && r.lost.max! < 100, JSON.stringify(r.lost));
});

test('experiment clients (needs root): UDP clients over a 3-ISP path, link-down on the middle router', () => {
  const r = experiment('clients', ['--counts', '5']) as {
    runs: { clients: number; allEchoesBefore: boolean; recovered: number; failoverMs: { median: number } }[];
  };
  const run = r.runs[0]!;
  assert.equal(run.clients, 5);
  assert.equal(run.allEchoesBefore, true);
  assert.equal(run.recovered, 5);
  assert.ok(run.failoverMs.median > 10 && run.failoverMs.median < 5000, JSON.stringify(run));
});
