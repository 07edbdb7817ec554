// `arrow endpoint --tun --spread` (docs/services.md, "DoS protection"): the IP packets of an
// unmodified TCP download (curl from python3's http.server, each in a namespace of its own) are
// spread over two ingress points, one at each ISP, by the keyed PRF. The buyer is the real command;
// the answerer is the library. Each ingress point carries a share, and the file arrives whole.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Lab } from '../src/lab/lab.js';
import { defaultTopology, type Topology } from '../src/lab/topology.js';
import { CLI_PATH, startComponent, stopComponent, type Managed } from '../src/lab/process.js';
import { parsePeer, TunEndpoint, type TunPeer } from '../src/endpoint/tun.js';
import { eventually, routerStats } from './helpers/network.js';

const exec = promisify(execFile);
const tag = randomBytes(3).toString('hex');
const ns = { a: `arrow-s-${tag}-a`, b: `arrow-s-${tag}-b` };
const tunName = { a: `as${tag}a`, b: `as${tag}b` };
const addr = { a: '10.202.0.1', b: '10.202.0.2' };
const answererListen = `127.9.${1 + (randomBytes(1)[0]! % 250)}.${1 + (randomBytes(1)[0]! % 250)}:7001`;

// alpha (ams -> fra) then beta (fra -> par).
const topology: Topology = defaultTopology();
topology.name = 'tun-spread';
topology.isps = topology.isps.slice(0, 2);
topology.servers = [];
topology.statsIntervalMs = 100;

let lab: Lab | undefined;
let buyer: Managed | undefined;
let answerer: TunEndpoint | undefined;
let peer: TunPeer | undefined;
let httpd: ChildProcess | undefined;
const made: string[] = [];
const dir = mkdtempSync(join(tmpdir(), 'arrow-tun-spread-'));
const file = randomBytes(2 << 20);

before(async () => {
  if (process.getuid?.() !== 0 || !existsSync('/dev/net/tun'))
    throw new Error('test/tun-spread.test.ts needs root and /dev/net/tun (namespaces, TUN interfaces)');
  for (const n of [ns.a, ns.b]) {
    spawnSync('ip', ['netns', 'add', n], { stdio: 'inherit' });
    made.push(n);
    spawnSync('ip', ['-n', n, 'link', 'set', 'lo', 'up']);
  }
  lab = await Lab.start(topology);
  const seg = (isp: string, ingressPop: string, egressPop: string): Record<string, string | number> => {
    const i = lab!.isp(isp);
    return { isp, portal: i.url, apiKey: i.accounts[0]!.apiKey, ingressPop, egressPop, bandwidthMbps: 100 };
  };
  const target = { kind: 'endpoint', addresses: [answererListen] };
  // Two ingress points: through alpha then beta, or straight into beta.
  const viaAlpha = join(lab.dir, 'via-alpha.json');
  const viaBeta = join(lab.dir, 'via-beta.json');
  writeFileSync(
    viaAlpha,
    JSON.stringify({ segments: [seg('alpha', 'ams', 'fra'), seg('beta', 'fra', 'par')], target }),
  );
  writeFileSync(viaBeta, JSON.stringify({ segments: [seg('beta', 'fra', 'par')], target }));
  const peerFile = join(lab.dir, 'spread-peer.json');
  const args = [
    'endpoint',
    '--tun',
    tunName.a,
    '--netns',
    ns.a,
    '--address',
    `${addr.a}/24`,
    '--path',
    viaAlpha,
    '--path',
    viaBeta,
    '--spread',
  ];
  // The kernel path does not spread: asked for it, the endpoint says why and stops before buying.
  const refused = spawnSync(process.execPath, [CLI_PATH, ...args, '--dataplane', 'kernel'], {
    encoding: 'utf8',
  });
  assert.notEqual(refused.status, 0);
  assert.match(refused.stderr, /--dataplane kernel: spreading/);
  buyer = await startComponent(
    [...args, '--write-peer', peerFile],
    join(lab.dir, 'logs', 'tun-spread-buyer.log'),
  );
  peer = parsePeer(JSON.parse(readFileSync(peerFile, 'utf8')), peerFile);
  answerer = await TunEndpoint.start({ name: tunName.b, netns: ns.b, addresses: [`${addr.b}/24`], peer });
  writeFileSync(join(dir, 'file.bin'), file);
  httpd = spawn(
    'ip',
    ['netns', 'exec', ns.b, 'python3', '-m', 'http.server', '--bind', addr.b, '-d', dir, '8080'],
    {
      stdio: 'ignore',
    },
  );
  for (let i = 0; i < 50; i++) {
    const r = await exec('ip', [
      'netns',
      'exec',
      ns.a,
      'curl',
      '-s',
      '-o',
      '/dev/null',
      '-m',
      '2',
      `http://${addr.b}:8080/`,
    ]).then(
      () => true,
      () => false,
    );
    if (r) break;
    await sleep(100);
  }
});

after(async () => {
  httpd?.kill('SIGKILL');
  await answerer?.stop().catch(() => {});
  if (buyer) await stopComponent(buyer.proc).catch(() => {});
  await lab?.stop().catch(() => {});
  for (const n of made) spawnSync('ip', ['netns', 'del', n]);
  rmSync(dir, { recursive: true, force: true });
});

test('TUN mode with --spread (needs root): a TCP download whose packets take both ingress points by the PRF', async () => {
  const log = readFileSync(join(lab!.dir, 'logs', 'tun-spread-buyer.log'), 'utf8');
  assert.match(log, /ingress 0 via alpha > beta/);
  assert.match(log, /ingress 1 via beta/);
  assert.match(log, /data path: node: spreading/);
  // The buyer's forward circuits are the answerer's return circuits in the peer file; the first of
  // each is the ingress point, at alpha and at beta.
  const ingress = peer!.paths.map((p) => p.reverse[0]!);
  assert.deepEqual(ingress.map((c) => c.isp).sort(), ['alpha', 'beta']);
  const carried = async (): Promise<number[]> =>
    Promise.all(
      ingress.map(async (c) =>
        (await routerStats(lab!, c.isp!)).reduce((n, s) => n + (s.circuits[c.auth]?.inPackets ?? 0), 0),
      ),
    );
  const before = await carried();
  const out = join(dir, 'got.bin');
  const r = await exec(
    'ip',
    [
      'netns',
      'exec',
      ns.a,
      'curl',
      '-sS',
      '-m',
      '60',
      `http://${addr.b}:8080/file.bin`,
      '-o',
      out,
      '-w',
      '%{size_download}',
    ],
    { timeout: 70_000 },
  );
  assert.equal(r.stdout.trim(), String(file.length));
  const got = readFileSync(out);
  assert.equal(
    createHash('sha256').update(got).digest('hex'),
    createHash('sha256').update(file).digest('hex'),
  );
  // The client's side of the download (the request and ~700+ ACKs) went both ways round: each
  // ingress point took at least a fifth of it.
  const shares = await eventually(
    async () => {
      const now = await carried();
      const d = now.map((n, i) => n - before[i]!);
      const total = d[0]! + d[1]!;
      return total >= 300 && d.every((x) => x >= total / 5) ? d : undefined;
    },
    5000,
    200,
  );
  assert.ok(
    shares,
    `both ingress points carried a share: ${JSON.stringify((await carried()).map((n, i) => n - before[i]!))}`,
  );
});
