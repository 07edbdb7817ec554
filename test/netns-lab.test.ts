import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse, stringify } from 'yaml';
import { Lab, type LabHost } from '../src/lab/lab.js';
import { CLI_PATH } from '../src/lab/process.js';
import { defaultTopology, type Topology } from '../src/lab/topology.js';
import { throughSegments } from '../src/lab/demo.js';
import { listNamespaces } from '../src/lab/netns.js';
import { readState, statePath } from '../src/lab/control.js';
import { eventually, routerStats } from './helpers/network.js';

// These tests make network namespaces and veth links: they need root. They fail (never skip)
// without it, so a CI run without root cannot look green.
function requireRoot(): void {
  if (process.getuid?.() !== 0)
    assert.fail('netns lab tests need root (CAP_SYS_ADMIN, CAP_NET_ADMIN): run `npm test` as root');
}

/** Namespaces and root-namespace links a lab named `name` left behind. */
function leftovers(name: string): { namespaces: string[]; links: string[] } {
  const links = execFileSync('ip', ['-o', 'link'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => / arrow-/.test(l));
  return { namespaces: listNamespaces(`arrow-${name}-`), links };
}

/** Lines from a child's stdout, and a bounded wait for a matching one. */
function lines(proc: ChildProcess): { all: string[]; waitFor: (re: RegExp, ms: number) => Promise<boolean> } {
  const all: string[] = [];
  let partial = '';
  proc.stdout!.on('data', (d: Buffer) => {
    const parts = (partial + d.toString()).split('\n');
    partial = parts.pop()!;
    all.push(...parts);
  });
  return {
    all,
    waitFor: async (re, ms) => {
      const deadline = Date.now() + ms;
      while (Date.now() < deadline) {
        if (all.some((l) => re.test(l))) return true;
        await sleep(50);
      }
      return false;
    },
  };
}

/**
 * An unmodified UDP client (plain dgram, no ARROW) inside the host: one datagram every 10 ms
 * to `to`, for at most 60 s; prints `r <text>` for every reply.
 */
function udpClient(host: LabHost, to: string): ChildProcess {
  const [h, p] = to.split(':');
  const script = `
    const s = require('node:dgram').createSocket('udp4');
    s.on('message', (m) => console.log('r ' + m.toString()));
    let n = 0;
    const t = setInterval(() => s.send('echo ' + n++, ${Number(p)}, '${h}'), 10);
    setTimeout(() => { clearInterval(t); s.close(); }, 60000);
    process.stdin.on('end', () => process.exit(0)); process.stdin.resume();`;
  return host.exec([process.execPath, '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
}

/** Packets a router counted over all its circuits, from its stats in the ISP's store. */
async function carried(lab: Lab, router: string): Promise<number> {
  const r = lab.router(router);
  const s = (await routerStats(lab, r.isp)).find((x) => x.router === router);
  return Object.values(s?.circuits ?? {}).reduce((sum, c) => sum + c.packets, 0);
}

test('netns lab (needs root): 3 ISPs in namespaces on 10.77.x.y; echoes cross them; link-down on the middle router fails over, heal brings it back; stop leaves nothing', async () => {
  requireRoot();
  const topology: Topology = defaultTopology();
  topology.name = 'nstest';
  topology.statsIntervalMs = 100;
  // Routers find the dead neighbour themselves: `arrow forward` has no failure detector.
  topology.failover = { liveness: { enabled: true, intervalMs: 10, multiplier: 3 } };
  topology.isps[2]!.transitDelayMs = 2;
  const lab = await Lab.start(topology, { netns: true });
  let forward: ChildProcess | undefined;
  let client: ChildProcess | undefined;
  try {
    // Every component has its own namespace and a 10.77 address, none on loopback.
    const namespaces = listNamespaces('arrow-nstest-');
    for (const r of lab.routers) {
      assert.match(r.address, /^10\.77\.\d+\.\d+:\d+$/, r.name);
      assert.ok(r.ns && namespaces.includes(r.ns), `${r.name} has its namespace`);
    }
    for (const i of lab.isps) assert.match(i.url, /^http:\/\/10\.77\.\d+\.1:\d+$/);
    assert.match(lab.server('echo').address, /^10\.77\.0\.100:/);
    assert.equal(readState('nstest')?.namespaces.length, namespaces.length, 'the state file lists them');
    // A second lab of the same name is refused, and leaves the first one's state file alone.
    await assert.rejects(Lab.start(topology, { netns: true }), /namespaces of a lab named "nstest" exist/);
    assert.ok(existsSync(statePath('nstest')));
    // transitDelayMs: half the crossing's delay at every router of the ISP (its delay stage).
    const delayOf = (router: string): unknown =>
      (parse(readFileSync(lab.router(router).configPath, 'utf8')) as { impair?: { delayMs?: number } }).impair
        ?.delayMs;
    assert.equal(delayOf('gamma-par-1'), 1);
    assert.equal(delayOf('gamma-lon-2'), 1);
    assert.equal(delayOf('alpha-ams-1'), undefined);
    // The data plane: the kernel path where each router has its interface, except where the
    // delay stage (Node) must see every packet.
    assert.equal(
      lab.router('alpha-ams-1').dataplane?.mode,
      'kernel',
      lab.router('alpha-ams-1').dataplane?.reason,
    );
    assert.equal(lab.router('gamma-par-1').dataplane?.mode, 'node');
    assert.match(lab.router('gamma-par-1').dataplane?.reason ?? '', /impairment/);

    const host = await lab.addHost('client');
    assert.equal(host.address, '10.77.250.1');
    const pathFile = join(lab.dir, 'path.yaml');
    writeFileSync(
      pathFile,
      stringify({
        segments: throughSegments(lab),
        target: { kind: 'udp', address: lab.server('echo').address },
      }),
    );
    // `arrow forward` buys the path from inside the host: it reaches the portals over the veths.
    forward = host.arrow(['forward', '--listen', `${host.address}:7000`, '--path', pathFile], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    assert.ok(await lines(forward).waitFor(/^forwarding UDP/, 30_000), 'arrow forward bought the path');

    client = udpClient(host, `${host.address}:7000`);
    const replies = lines(client);
    assert.ok(await replies.waitFor(/^r echo 50$/, 15_000), 'echoes cross the namespaces');
    assert.ok(
      replies.all.every((l) => /^r echo \d+$/.test(l)),
      'every reply is an echo of what was sent',
    );

    // The middle ISP's active ingress router: the beta/fra router that carries the packets.
    const [b1, b2] = lab.isp('beta').pops[0]!.routers.map((r) => r.name) as [string, string];
    const counts = await eventually(async () => {
      const c = [await carried(lab, b1), await carried(lab, b2)];
      return c[0]! + c[1]! > 20 ? c : undefined;
    }, 5000);
    assert.ok(counts, 'beta/fra routers publish their counters');
    const [active, standby] = counts[0]! >= counts[1]! ? [b1, b2] : [b2, b1];

    // Fail the active one, and every echo sent from then on must come back through the other.
    const recovers = async (label: string, via: string): Promise<void> => {
      const before = await carried(lab, via);
      const n = replies.all.length;
      const got = await eventually(async () => replies.all.length >= n + 100, 10_000);
      assert.ok(got, `${label}: echoes recover (${replies.all.length - n} replies in 10 s)`);
      const grew = await eventually(async () => (await carried(lab, via)) >= before + 50, 5000);
      assert.ok(grew, `${label}: ${via} now carries the traffic`);
    };
    await lab.fail(active, 'link-down');
    assert.deepEqual(lab.failures, { [active]: 'link-down' });
    const linkState = execFileSync('ip', ['-n', lab.router(active).ns!, '-o', 'link'], { encoding: 'utf8' });
    assert.match(linkState, /arrow-nste-n\w+.*state DOWN/, 'its interface is down');
    await recovers(`link-down ${active}`, standby);

    // Healed, it carries the traffic again when the other one goes down.
    await lab.heal(active);
    assert.deepEqual(lab.failures, {});
    await sleep(500); // liveness declares it alive again
    await lab.fail(standby, 'link-down');
    await recovers(`heal ${active}, link-down ${standby}`, active);
    await lab.heal(standby);
  } finally {
    client?.stdin?.end();
    client?.kill('SIGKILL');
    forward?.kill('SIGKILL');
    await lab.stop();
  }
  const left = leftovers('nstest');
  assert.deepEqual(left, { namespaces: [], links: [] }, 'no arrow-* namespace or link after stop');
  assert.equal(existsSync(statePath('nstest')), false, 'the state file is gone');
});

/** Runs `arrow ARGS` to the end (bounded) and returns its exit code and output. */
function arrow(args: string[]): { status: number | null; out: string } {
  try {
    const out = execFileSync(process.execPath, [CLI_PATH, ...args], {
      encoding: 'utf8',
      timeout: 30_000,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return { status: 0, out };
  } catch (err) {
    const e = err as { status: number | null; stdout?: string; stderr?: string };
    return { status: e.status, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

test('arrow lab up --netns (needs root): lab fail/heal from the shell (link-down, kill, hang); after SIGKILL of lab up, arrow lab down removes every namespace', async () => {
  requireRoot();
  const dir = mkdtempSync(join(tmpdir(), 'arrow-netns-cli-'));
  let labUp: ChildProcess | undefined;
  try {
    const t = defaultTopology();
    t.name = 'nscli';
    t.isps = t.isps.slice(0, 1);
    t.hosts = ['client'];
    const file = join(dir, 'topology.yaml');
    writeFileSync(file, stringify(t));
    labUp = spawn(process.execPath, [CLI_PATH, 'lab', 'up', file, '--netns'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const out = lines(labUp);
    assert.ok(await out.waitFor(/Ctrl-C stops every process/, 60_000), out.all.join('\n'));
    assert.ok(
      out.all.some((l) => /alpha-ams-1\s+10\.77\.1\.11:\d+/.test(l)),
      'routers listed at 10.77 addresses',
    );
    assert.ok(
      out.all.some((l) => /alpha-ams-1\s+\S+\s+kernel \(tc on arrow-nscl-n\w+\)$/.test(l)),
      `routers say they run the kernel path: ${out.all.join('\n')}`,
    );
    assert.ok(
      out.all.some((l) => /host client: 10\.77\.250\.1/.test(l)),
      'the topology host is listed',
    );
    const ns = 'arrow-nscli-alpha-ams-1';
    const linkOf = (): string => execFileSync('ip', ['-n', ns, '-o', 'link'], { encoding: 'utf8' });

    // Always --lab: other labs (other engineers' tests) may be up at the same time.
    const ok = (args: string[]): void => {
      const r = arrow([...args, '--lab', 'nscli']);
      assert.equal(r.status, 0, `arrow ${args.join(' ')}: ${r.out}`);
    };
    ok(['lab', 'fail', 'alpha-ams-1', '--kind', 'link-down']);
    assert.match(linkOf(), /arrow-nscl-n\w+.*state DOWN/);
    const again = arrow(['lab', 'fail', 'alpha-ams-1', '--kind', 'kill', '--lab', 'nscli']);
    assert.equal(again.status, 1, 'a failed router cannot fail twice');
    assert.match(again.out, /already failed \(link-down\)/);
    ok(['lab', 'heal', 'alpha-ams-1']);
    assert.match(linkOf(), /arrow-nscl-n\w+.*state UP/);

    const pid = readState('nscli')!.processes['alpha-ams-2']!;
    ok(['lab', 'fail', 'alpha-ams-2', '--kind', 'kill']);
    assert.ok(
      await eventually(
        async () =>
          !execFileSync('ip', ['netns', 'pids', 'arrow-nscli-alpha-ams-2'], { encoding: 'utf8' }).trim(),
        5000,
      ),
      'killed',
    );
    ok(['lab', 'heal', 'alpha-ams-2']);
    const restarted = readState('nscli')!.processes['alpha-ams-2']!;
    assert.notEqual(restarted, pid, 'a new process');
    const inNs = execFileSync('ip', ['netns', 'pids', 'arrow-nscli-alpha-ams-2'], { encoding: 'utf8' });
    assert.ok(inNs.split('\n').includes(String(restarted)), 'restarted in its own namespace');

    const hangPid = readState('nscli')!.processes['alpha-fra-1']!;
    ok(['lab', 'fail', 'alpha-fra-1', '--kind', 'hang']);
    const stateOf = (p: number): string =>
      execFileSync('ps', ['-o', 'stat=', '-p', String(p)], { encoding: 'utf8' });
    assert.match(stateOf(hangPid), /^T/, 'stopped');
    ok(['lab', 'heal', 'alpha-fra-1']);
    assert.doesNotMatch(stateOf(hangPid), /^T/, 'continued');

    const bad = arrow(['lab', 'heal', 'nosuch-router', '--lab', 'nscli']);
    assert.equal(bad.status, 1);
    assert.match(bad.out, /no router nosuch-router/);

    // A crash: the lab process dies without cleaning up; `arrow lab down` does it.
    const exited = new Promise((resolve) => labUp!.once('exit', resolve));
    labUp.kill('SIGKILL');
    await exited;
    assert.ok(listNamespaces('arrow-nscli-').length > 0, 'the crash left namespaces');
    const down = arrow(['lab', 'down', 'nscli']);
    assert.equal(down.status, 0, down.out);
    assert.match(down.out, /lab nscli: .*removed \d+ namespace/);
    assert.deepEqual(leftovers('nscli'), { namespaces: [], links: [] });
    assert.equal(existsSync(statePath('nscli')), false);
  } finally {
    labUp?.kill('SIGKILL');
    arrow(['lab', 'down', 'nscli']);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('arrow lab up --netns (needs root): Ctrl-C stops every process and removes the namespaces', async () => {
  requireRoot();
  const dir = mkdtempSync(join(tmpdir(), 'arrow-netns-int-'));
  let labUp: ChildProcess | undefined;
  try {
    const t = defaultTopology();
    t.name = 'nsint';
    t.isps = t.isps.slice(0, 1);
    const file = join(dir, 'topology.yaml');
    writeFileSync(file, stringify(t));
    labUp = spawn(process.execPath, [CLI_PATH, 'lab', 'up', file, '--netns'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    assert.ok(await lines(labUp).waitFor(/Ctrl-C stops every process/, 60_000));
    assert.ok(listNamespaces('arrow-nsint-').length >= 6, 'core, 4 routers, portal, server');
    const exited = new Promise<number | null>((resolve) => labUp!.once('exit', (code) => resolve(code)));
    labUp.kill('SIGINT');
    assert.equal(await Promise.race([exited, sleep(20_000).then(() => 'timeout')]), 0);
    assert.deepEqual(leftovers('nsint'), { namespaces: [], links: [] });
    assert.equal(existsSync(statePath('nsint')), false);
  } finally {
    labUp?.kill('SIGKILL');
    arrow(['lab', 'down', 'nsint']);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('arrow lab up --netns refuses a lab name that cannot name namespaces, with a clear error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'arrow-netns-bad-'));
  try {
    const t = defaultTopology();
    t.name = 'Bad-Name';
    const file = join(dir, 'topology.yaml');
    writeFileSync(file, stringify(t));
    const r = arrow(['lab', 'up', file, '--netns']);
    assert.equal(r.status, 1);
    assert.match(r.out, /name: lab name "Bad-Name" cannot name network namespaces/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
