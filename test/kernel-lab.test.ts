// The kernel fast path inside real router processes (docs/dataplane.md, "In the router"):
// - a netns lab, where every router has an interface of its own, runs it by default (`auto`): the
//   routers say so, echoes cross it, the kernel's counters show it forwarded them and the circuits'
//   counters match what was sent; killing the middle ISP's active router repairs with the kernel
//   path on (the upstream routers rewrite one map value per circuit);
// - on loopback `--dataplane kernel` refuses to start with one clear line, and `auto` (the
//   loopback lab) runs the Node path and says why.
//
// Needs root (network namespaces, BPF): fails, never skips, without it, like the other netns tests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { Lab, type LabHost } from '../src/lab/lab.js';
import { CLI_PATH } from '../src/lab/process.js';
import { defaultTopology, type Topology } from '../src/lab/topology.js';
import { throughSegments } from '../src/lab/demo.js';
import type { RouterStats } from '../src/store/circuit.js';
import { eventually, routerStats } from './helpers/network.js';
import { kernelSentBy } from './helpers/dataplanes.js';

function requireRoot(): void {
  if (process.getuid?.() !== 0)
    assert.fail('kernel lab tests need root (network namespaces, BPF): run `npm test` as root');
}

/** An unmodified UDP client in `host`: `count` datagrams (every `everyMs`) to `to`; prints `r N` per reply. */
function udpClient(host: LabHost, to: string, count: number, everyMs: number): ChildProcess {
  const [h, p] = to.split(':');
  const script = `
    const s = require('node:dgram').createSocket('udp4');
    s.on('message', (m) => console.log('r ' + m.toString()));
    let n = 0;
    const t = setInterval(() => { s.send('echo ' + n++, ${Number(p)}, '${h}'); if (n >= ${count}) clearInterval(t); }, ${everyMs});
    process.stdin.on('end', () => process.exit(0)); process.stdin.resume();`;
  return host.exec([process.execPath, '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
}

function collect(proc: ChildProcess): string[] {
  const all: string[] = [];
  let partial = '';
  proc.stdout!.on('data', (d: Buffer) => {
    const parts = (partial + d.toString()).split('\n');
    partial = parts.pop()!;
    all.push(...parts);
  });
  return all;
}

async function statsOfRouters(lab: Lab, isp: string, pop: string): Promise<RouterStats[]> {
  const names = new Set(
    lab
      .isp(isp)
      .pops.find((p) => p.name === pop)!
      .routers.map((r) => r.name),
  );
  return (await routerStats(lab, isp)).filter((s) => names.has(s.router));
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
const circuitsIn = (ss: RouterStats[]): number =>
  sum(ss.flatMap((s) => Object.values(s.circuits).map((c) => c.inPackets ?? 0)));
const carried = (s: RouterStats | undefined): number =>
  sum(Object.values(s?.circuits ?? {}).map((c) => c.packets));

test('kernel path in the netns lab (needs root): routers run it by default; echoes cross it, counted exactly; killing the middle router repairs with it on', async () => {
  requireRoot();
  const topology: Topology = defaultTopology();
  topology.name = 'nskern';
  topology.isps = topology.isps.slice(0, 2);
  topology.statsIntervalMs = 100;
  topology.failover = { liveness: { enabled: true, intervalMs: 10, multiplier: 3 } };
  const lab = await Lab.start(topology, { netns: true });
  let forward: ChildProcess | undefined;
  let client: ChildProcess | undefined;
  try {
    // Every router says so: at start (its ready message, `arrow lab up` lists it) and in its stats.
    for (const r of lab.routers) {
      assert.equal(r.dataplane?.mode, 'kernel', `${r.name}: ${r.dataplane?.reason}`);
      assert.equal(r.dataplane?.attach, 'tc', `${r.name} on a veth: tc, which takes GSO super-packets whole`);
    }
    const published = await eventually(async () => {
      const all = [...(await routerStats(lab, 'alpha')), ...(await routerStats(lab, 'beta'))];
      return all.length === lab.routers.length ? all : undefined;
    });
    assert.ok(published, 'every router publishes its stats');
    for (const s of published) {
      assert.equal(s.dataplane?.mode, 'kernel', s.router);
      assert.equal(s.dataplane?.forwarding, true, `${s.router}: the lab lets its interface forward`);
      assert.match(s.dataplane?.interface ?? '', /^arrow-nske-n\w+$/);
      assert.ok((s.dataplane?.programId ?? 0) > 0, `${s.router} names its program for bpftool`);
    }

    const host = await lab.addHost('client');
    const pathFile = join(lab.dir, 'path.yaml');
    writeFileSync(
      pathFile,
      stringify({
        segments: throughSegments(lab),
        target: { kind: 'udp', address: lab.server('echo').address },
      }),
    );
    forward = host.arrow(['forward', '--listen', `${host.address}:7000`, '--path', pathFile], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const fwdOut = collect(forward);
    assert.ok(
      await eventually(async () => fwdOut.some((l) => /^forwarding UDP/.test(l)), 30_000),
      'arrow forward bought the path',
    );

    // A counted burst: every datagram enters alpha at ams, so the ams routers' circuits count
    // exactly N in, whichever path forwarded each one, and the kernel forwarded them.
    const N = 300;
    const before = await statsOfRouters(lab, 'alpha', 'ams');
    const sentBefore = kernelSentBy(before);
    client = udpClient(host, `${host.address}:7000`, N, 5);
    const replies = collect(client);
    assert.ok(
      await eventually(async () => replies.length >= N, 15_000),
      `echoes cross the kernel path (${replies.length}/${N} replies)`,
    );
    const counted = await eventually(async () => {
      const s = await statsOfRouters(lab, 'alpha', 'ams');
      return circuitsIn(s) === N ? s : undefined;
    }, 5000);
    const now = await statsOfRouters(lab, 'alpha', 'ams');
    assert.ok(counted, `alpha/ams circuits count every datagram in: ${circuitsIn(now)} of ${N}`);
    const byKernel = kernelSentBy(counted) - sentBefore;
    const passedUp = sum(counted.map((s) => s.dataplane?.kernel?.passNoRoute ?? 0));
    assert.ok(
      byKernel >= N - passedUp && byKernel > 0,
      `the kernel sent them on: ${byKernel} of ${N} (${passedUp} passed up for want of a neighbour entry)`,
    );
    client.stdin?.end();
    client.kill('SIGKILL');

    // Failover with the kernel path on: kill the middle ISP's active ingress router. The alpha/fra
    // routers (its upstream) find it dead and move every circuit's next hop in their maps.
    client = udpClient(host, `${host.address}:7000`, 6000, 10);
    const live = collect(client);
    assert.ok(await eventually(async () => live.length > 50, 10_000), 'echoes flow again');
    const [b1, b2] = lab.isp('beta').pops[0]!.routers.map((r) => r.name) as [string, string];
    const fra = await eventually(async () => {
      const ss = await statsOfRouters(lab, 'beta', 'fra');
      const c = [carried(ss.find((s) => s.router === b1)), carried(ss.find((s) => s.router === b2))];
      return c[0]! + c[1]! > 20 ? c : undefined;
    });
    assert.ok(fra, 'beta/fra routers count what they carry');
    const [active, standby] = fra[0]! >= fra[1]! ? [b1, b2] : [b2, b1];
    const standbyBefore = kernelSentBy(
      (await statsOfRouters(lab, 'beta', 'fra')).filter((s) => s.router === standby),
    );
    await lab.fail(active, 'kill');
    const n = live.length;
    assert.ok(
      await eventually(async () => live.length >= n + 100, 10_000),
      `echoes recover after killing ${active} (${live.length - n} replies in 10 s)`,
    );
    const repaired = await eventually(async () => {
      const up = await statsOfRouters(lab, 'alpha', 'fra');
      const moved = sum(up.map((s) => s.failover?.hopsMoved ?? 0));
      const st = (await statsOfRouters(lab, 'beta', 'fra')).filter((s) => s.router === standby);
      return moved > 0 && kernelSentBy(st) >= standbyBefore + 50
        ? { moved, sent: kernelSentBy(st) }
        : undefined;
    }, 5000);
    assert.ok(repaired, `alpha/fra repaired and ${standby}'s kernel path carries the traffic`);
  } finally {
    client?.stdin?.end();
    client?.kill('SIGKILL');
    forward?.kill('SIGKILL');
    await lab.stop();
  }
});

test('kernel path on loopback (needs root): --dataplane kernel attaches tc to lo; what it cannot carry fails at start with one line; auto runs the Node path and says why', async () => {
  requireRoot();
  const dir = mkdtempSync(join(tmpdir(), 'arrow-kernel-lo-'));
  let router: ChildProcess | undefined;
  try {
    const file = join(dir, 'router.yaml');
    writeFileSync(
      file,
      stringify({
        isp: 'a',
        pop: 'p',
        name: 'r1',
        listen: '127.0.0.1:0',
        store: { kind: 'sqlite', path: join(dir, 'a.db') },
      }),
    );
    // 0.0.0.0 is every address: the program matches DATA by the router's own.
    const anyAddress = join(dir, 'any.yaml');
    writeFileSync(anyAddress, stringify({ ...parse(readFileSync(file, 'utf8')), listen: '0.0.0.0:0' }));
    let failed: { status: number | null; stderr: string; stdout: string } | undefined;
    try {
      execFileSync(process.execPath, [CLI_PATH, 'router', '--config', anyAddress, '--dataplane', 'kernel'], {
        encoding: 'utf8',
        timeout: 30_000,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    } catch (err) {
      failed = err as { status: number | null; stderr: string; stdout: string };
    }
    assert.ok(failed, '--dataplane kernel on 0.0.0.0 must not start');
    assert.equal(failed.status, 1);
    assert.equal(failed.stdout, '');
    assert.match(
      failed.stderr,
      /^arrow: --dataplane kernel: the router listens on 0\.0\.0\.0; [^\n]+\n$/,
      'one line that says why',
    );

    // Fault injection runs in the Node path, so the kernel must not forward past it.
    const impaired = join(dir, 'impaired.yaml');
    writeFileSync(
      impaired,
      stringify({ ...parse(readFileSync(file, 'utf8')), listen: '10.0.0.1:0', impair: { dropPct: 1 } }),
    );
    const r = spawnSync(
      process.execPath,
      [CLI_PATH, 'router', '--config', impaired, '--dataplane', 'kernel'],
      {
        encoding: 'utf8',
        timeout: 30_000,
      },
    );
    assert.equal(r.status, 1);
    assert.equal(
      r.stderr,
      'arrow: --dataplane kernel: impairment is configured, and it runs in the Node path\n',
    );

    // auto on loopback: the Node path, with the reason on its first line.
    router = spawn(process.execPath, [CLI_PATH, 'router', '--config', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out = collect(router);
    assert.ok(
      await eventually(async () => out.some((l) => /forwarding on/.test(l)), 15_000),
      'the router starts',
    );
    assert.match(
      out.find((l) => /forwarding on/.test(l))!,
      /data plane: node \(127\.0\.0\.1 is on the loopback interface \(lo\), shared with every process/,
    );
    router.kill('SIGTERM');
    await new Promise((r) => router!.once('exit', r));

    // Asked for by name, the kernel path on loopback: the tc program on lo (tcx, which chains one
    // program per router, where lo would hold one XDP program only).
    router = spawn(process.execPath, [CLI_PATH, 'router', '--config', file, '--dataplane', 'kernel'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const kout = collect(router);
    assert.ok(
      await eventually(async () => kout.some((l) => /forwarding on/.test(l)), 15_000),
      'the router starts on the kernel path on lo',
    );
    assert.match(
      kout.find((l) => /forwarding on/.test(l))!,
      /data plane: kernel \(tc on lo\)/,
    );
  } finally {
    router?.kill('SIGTERM');
    if (router && router.exitCode === null) await new Promise((r) => router!.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }

  // The loopback lab: every router on the Node path, each saying why.
  const t = defaultTopology();
  t.name = 'kernlo';
  t.isps = t.isps.slice(0, 1);
  const lab = await Lab.start(t);
  try {
    for (const r of lab.routers) {
      assert.equal(r.dataplane?.mode, 'node', r.name);
      assert.match(r.dataplane?.reason ?? '', /loopback interface/, r.name);
    }
  } finally {
    await lab.stop();
  }
});
