// TUN mode end to end (needs root and /dev/net/tun): two TUN endpoints, each TUN in a network
// namespace this test makes and removes, joined by a real 2-ISP lab on 127.0.0.0/8. The buyer is
// `arrow endpoint --tun` as its own process; the answerer is the library in this process, so its
// counters can be read. Traffic is ordinary ping from inside the namespaces.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Lab } from '../src/lab/lab.js';
import { defaultTopology, type Topology } from '../src/lab/topology.js';
import { CLI_PATH, startComponent, stopComponent, type Managed } from '../src/lab/process.js';
import { parsePeer, TunEndpoint, type TunPeer } from '../src/endpoint/tun.js';
import { eventually, routerStats } from './helpers/network.js';

const exec = promisify(execFile);
const root = typeof process.getuid === 'function' && process.getuid() === 0;
const tag = randomBytes(3).toString('hex');
const ns = { a: `arrow-t-${tag}-a`, b: `arrow-t-${tag}-b` };
const tunName = { a: `at${tag}a`, b: `at${tag}b` };
const addr = { a: '10.200.0.1', b: '10.200.0.2' };
// A loopback address of its own for the answerer's ARROW socket, so the buyer can name it up front.
const answererListen = `127.9.${randomBytes(1)[0]! % 250}.${1 + (randomBytes(1)[0]! % 250)}:7000`;

// alpha (ams -> fra) then beta (fra -> par), two routers per PoP.
const topology: Topology = defaultTopology();
topology.isps = topology.isps.slice(0, 2);
topology.servers = [];
topology.statsIntervalMs = 100;

let lab: Lab | undefined;
let buyer: Managed | undefined;
let answerer: TunEndpoint | undefined;
let peer: TunPeer | undefined;
const made: string[] = [];

function requireRoot(): void {
  if (!root)
    throw new Error('test/tun.test.ts needs root (CAP_NET_ADMIN) for TUN interfaces and network namespaces');
  if (!existsSync('/dev/net/tun')) throw new Error('test/tun.test.ts needs /dev/net/tun (modprobe tun)');
}

/** Runs a program inside a namespace; resolves with its output whatever its exit code. */
async function inNs(name: string, cmd: string[], timeoutMs = 20_000): Promise<{ code: number; out: string }> {
  try {
    const r = await exec('ip', ['netns', 'exec', name, ...cmd], { timeout: timeoutMs });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

function received(pingOutput: string): number {
  return Number(/(\d+) received/.exec(pingOutput)?.[1] ?? 0);
}

before(async () => {
  requireRoot();
  for (const n of [ns.a, ns.b]) {
    spawnSync('ip', ['netns', 'add', n], { stdio: 'inherit' });
    made.push(n);
    spawnSync('ip', ['-n', n, 'link', 'set', 'lo', 'up']);
  }
  lab = await Lab.start(topology);
  const seg = (isp: string, ingressPop: string, egressPop: string) => {
    const i = lab!.isp(isp);
    // Tags required on every circuit, both ways: the answerer tags with the keys in the peer file.
    return { isp, portal: i.url, apiKey: i.accounts[0]!.apiKey, ingressPop, egressPop, requireTags: true };
  };
  const pathFile = join(lab.dir, 'tun-path.json');
  const peerFile = join(lab.dir, 'tun-peer.json');
  writeFileSync(
    pathFile,
    JSON.stringify({
      segments: [seg('alpha', 'ams', 'fra'), seg('beta', 'fra', 'par')],
      returnSegments: [seg('beta', 'par', 'fra'), seg('alpha', 'fra', 'ams')],
      target: { kind: 'endpoint', addresses: [answererListen] },
    }),
  );
  buyer = await startComponent(
    [
      'endpoint',
      '--tun',
      tunName.a,
      '--netns',
      ns.a,
      '--address',
      `${addr.a}/24`,
      '--path',
      pathFile,
      '--write-peer',
      peerFile,
    ],
    join(lab.dir, 'logs', 'tun-buyer.log'),
  );
  peer = parsePeer(JSON.parse(readFileSync(peerFile, 'utf8')), peerFile);
  answerer = await TunEndpoint.start({ name: tunName.b, netns: ns.b, addresses: [`${addr.b}/24`], peer });
  // Bounded warm-up: the first ping may race the routers learning the circuits.
  for (let i = 0; i < 20; i++) {
    if ((await inNs(ns.b, ['ping', '-c', '1', '-W', '1', addr.a])).code === 0) break;
    await sleep(100);
  }
});

after(async () => {
  // Everything this test made goes, even when a test failed.
  await answerer?.stop().catch(() => {});
  if (buyer) await stopComponent(buyer.proc).catch(() => {});
  await lab?.stop().catch(() => {});
  for (const n of made) spawnSync('ip', ['netns', 'del', n]);
});

test('TUN mode (needs root): ping crosses a 2-ISP circuit between TUN endpoints in two namespaces', async (t) => {
  const before = structuredClone(answerer!.counters);
  const started = performance.now();
  const r = await inNs(ns.a, ['ping', '-c', '10', '-i', '0.05', '-W', '2', '-s', '1000', addr.b]);
  assert.equal(received(r.out), 10, r.out);
  t.diagnostic(`ping took ${(performance.now() - started).toFixed(0)} ms; ${/rtt.*/.exec(r.out)?.[0]}`);
  const c = answerer!.counters;
  assert.ok(c.toTun - before.toTun >= 10, 'the answerer wrote the echo requests into its TUN');
  assert.ok(c.fromTun - before.fromTun >= 10, 'and carried the replies back');
  assert.ok(c.toTunBytes - before.toTunBytes >= 10 * 1028, 'whole 1028-byte IP packets');
  // The packets crossed the lab's routers: each ISP's routers counted them on the buyer's forward circuit.
  for (const [i, isp] of ['alpha', 'beta'].entries()) {
    const auth = peer!.paths[0]!.reverse[i]!.auth;
    const packets = async (): Promise<number> =>
      (await routerStats(lab!, isp)).reduce((n, s) => n + (s.circuits[auth]?.packets ?? 0), 0);
    assert.ok((await eventually(async () => (await packets()) >= 10, 3000)) === true, `${isp} carried them`);
  }
  // Up, or back up within a probe's round trip: 50 ms after its last echo reply with nothing coming
  // back, the answerer's detector fires and probes (docs/failover.md); the ack ends it. A check that
  // lands in that window saw `failing` (twice in CI-like runs), which is the protocol, not a fault.
  const state = async (): Promise<string> => answerer!.stats().circuits[0]!.state;
  assert.equal(
    await eventually(async () => ((await state()) === 'up' ? 'up' : undefined), 2000),
    'up',
    await state(),
  );
  // Every circuit required tags, so the routers would have dropped untagged packets as bad-tag.
  for (const c of [...peer!.paths[0]!.forward, ...peer!.paths[0]!.reverse])
    assert.match(c.tagKey ?? '', /^[0-9a-f]{32}$/, `circuit ${c.auth} was bought with tags`);
  const badTags = async (): Promise<number> =>
    (await Promise.all(['alpha', 'beta'].map((isp) => routerStats(lab!, isp))))
      .flat()
      .reduce(
        (n, s) => n + Object.values(s.circuits).reduce((m, c) => m + (c.drops?.['bad-tag'] ?? 0), 0),
        0,
      );
  assert.equal(await badTags(), 0, 'no packet of either direction failed its tag check');
});

/** 1500 − IPv4 (20) − UDP (8) − ARROW (28) − 2 tags (16 each): both ISPs check tags both ways. */
const MTU = 1412;

test('TUN mode (needs root): the TUN MTU (1412: 1444 less two tags) and an oversized DF packet gets ICMP fragmentation-needed', async () => {
  const link = await inNs(ns.b, ['ip', 'link', 'show', tunName.b]);
  assert.match(link.out, new RegExp(`mtu ${MTU} `));
  assert.match((await inNs(ns.a, ['ip', 'link', 'show', tunName.a])).out, new RegExp(`mtu ${MTU} `));
  // A full-size packet that fits is carried.
  const fits = await inNs(ns.b, ['ping', '-c', '1', '-W', '2', '-M', 'do', '-s', `${MTU - 28}`, addr.a]);
  assert.equal(received(fits.out), 1, fits.out);
  // Raise the MTU by hand: now the kernel hands the endpoint packets the circuit cannot carry.
  await inNs(ns.b, ['ip', 'link', 'set', 'dev', tunName.b, 'mtu', '1500']);
  try {
    const before = structuredClone(answerer!.counters);
    const df = await inNs(ns.b, ['ping', '-c', '1', '-W', '1', '-M', 'do', '-s', `${1500 - 28}`, addr.a]);
    assert.match(df.out, new RegExp(`Frag needed and DF set \\(mtu = ${MTU}\\)`), df.out);
    assert.equal(answerer!.counters.icmpTooBig - before.icmpTooBig, 1);
    assert.equal(answerer!.counters.drops.tooBig - before.drops.tooBig, 1);
    // The kernel believed it: the path MTU to the peer is now the TUN's.
    const route = await inNs(ns.b, ['ip', 'route', 'get', addr.a]);
    assert.match(route.out, new RegExp(`mtu ${MTU}`), route.out);
    // Without DF there is no ICMP: the packet is dropped and counted, never truncated.
    const mid = structuredClone(answerer!.counters);
    await inNs(ns.b, ['ip', 'route', 'flush', 'cache']);
    const noDf = await inNs(ns.b, ['ping', '-c', '1', '-W', '1', '-M', 'dont', '-s', `${1500 - 28}`, addr.a]);
    assert.equal(received(noDf.out), 0, noDf.out);
    assert.equal(answerer!.counters.drops.tooBig - mid.drops.tooBig, 1);
    assert.equal(answerer!.counters.icmpTooBig, mid.icmpTooBig);
    assert.equal(answerer!.counters.fromTun, mid.fromTun, 'nothing oversized entered the circuit');
  } finally {
    await inNs(ns.b, ['ip', 'link', 'set', 'dev', tunName.b, 'mtu', String(MTU)]);
  }
});

test('TUN mode (needs root): one-way traffic is not a dead circuit: the peer sends probes back', async () => {
  let repairs = 0;
  const onRepaired = (): void => void repairs++;
  answerer!.connection.on('repaired', onRepaired);
  // 10.200.0.3 is nobody: the buyer's kernel drops what arrives for it, so nothing comes back, the
  // detector declares the circuit failing and probes; only the buyer's reflection brings a probe home.
  const r = await inNs(ns.b, ['ping', '-c', '40', '-i', '0.025', '-W', '1', '10.200.0.3']);
  answerer!.connection.off('repaired', onRepaired);
  assert.equal(received(r.out), 0, r.out);
  assert.ok(repairs >= 1, 'the failing circuit came back up by its probe alone');
});

test('TUN mode (needs root): ping keeps working when the middle ISP’s router on the path is killed', async (t) => {
  // Forward: alpha-ams -> alpha-fra -> beta-fra-1 (primary) -> beta-par -> answerer. Kill beta-fra-1.
  const victim = lab!.router('beta-fra-1');
  const pinging = inNs(ns.a, ['ping', '-c', '150', '-i', '0.02', '-W', '1', addr.b], 30_000);
  await sleep(1000);
  lab!.kill(victim.name, 'SIGKILL');
  const r = await pinging;
  const seqs = [...r.out.matchAll(/icmp_seq=(\d+) ttl/g)].map((m) => Number(m[1]));
  assert.ok(
    seqs.some((s) => s > 120),
    `replies continue after the kill:\n${r.out.split('\n').slice(-5).join('\n')}`,
  );
  t.diagnostic(`${150 - received(r.out)} of 150 pings (every 20 ms) lost across the kill`);
  assert.ok(received(r.out) >= 100, r.out.split('\n').slice(-3).join('\n'));
});

test('TUN mode: without root it says so clearly, without a stack trace', () => {
  // Root with every capability dropped (bounding set empty): what an unprivileged user has, while
  // still able to read this checkout wherever it lives.
  const r = spawnSync(
    'setpriv',
    [
      '--bounding-set=-all',
      '--inh-caps=-all',
      process.execPath,
      CLI_PATH,
      'endpoint',
      '--tun',
      `at${tag}x`,
      '--address',
      '10.201.0.1/24',
      '--peer-file',
      '/nonexistent',
      '--wait',
      '1',
    ],
    { encoding: 'utf8' },
  );
  // It fails before waiting for the peer file.
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /needs root \(CAP_NET_ADMIN\)/);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
});

test('TUN mode: a bad flag is named', () => {
  const r = spawnSync(
    process.execPath,
    [CLI_PATH, 'endpoint', '--tun', 'x0', '--address', '10.201.0.1', '--peer-file', 'p.json'],
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--address "10\.201\.0\.1": expected CIDR/);
});

test('TUN mode: --underlay-checksums is checked: one of auto, finish, keep, and not with --dataplane node', () => {
  const endpoint = (...more: string[]): ReturnType<typeof spawnSync> =>
    spawnSync(
      process.execPath,
      [CLI_PATH, 'endpoint', '--tun', 'x0', '--address', '10.201.0.1/24', '--peer-file', 'p.json', ...more],
      { encoding: 'utf8' },
    );
  const bad = endpoint('--underlay-checksums', 'sometimes');
  assert.equal(bad.status, 1);
  assert.match(String(bad.stderr), /--underlay-checksums <mode>' argument 'sometimes' is invalid/);
  const node = endpoint('--underlay-checksums', 'finish', '--dataplane', 'node');
  assert.equal(node.status, 1);
  assert.match(String(node.stderr), /--underlay-checksums is for the kernel path/);
  const help = spawnSync(process.execPath, [CLI_PATH, 'endpoint', '--help'], { encoding: 'utf8' });
  assert.match(help.stdout, /--underlay-checksums <mode>/);
});
