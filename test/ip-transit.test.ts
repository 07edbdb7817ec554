import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { Lab, LAB_CUSTOMER_PREFIXES } from '../src/lab/lab.js';
import { defaultTopology, type Topology } from '../src/lab/topology.js';
import { throughSegments } from '../src/lab/demo.js';
import type { RouterStats } from '../src/store/circuit.js';
import { eventually, routerStats } from './helpers/network.js';

// Issue 12: IP transit to a host that runs nothing of ours. A customer's `arrow endpoint --tun`
// gateway sends IP packets through a 2-ISP path whose last circuit is deliver-ip; beta's egress
// router strips the envelope and its host routes the packet to an unmodified server (busybox
// httpd, ping's echo). The answers come back through the egress TUN into the return path.
// Everything runs in namespaces this test makes and removes.

function requireRoot(): void {
  if (process.getuid?.() !== 0)
    assert.fail('IP transit tests need root (namespaces, TUN): run `npm test` as root');
}

/** Two ISPs: alpha ams→fra, beta fra→lon, where lon is an egress PoP (2 routers, each with a TUN). */
function transitTopology(): Topology {
  const t = defaultTopology();
  const [alpha, beta] = t.isps;
  return {
    ...t,
    name: 'iptransit',
    isps: [
      alpha!,
      {
        ...beta!,
        pops: [
          { name: 'fra', routers: 2 },
          { name: 'lon', routers: 2, egress: true },
        ],
        offers: beta!.offers.map((o) => ({
          ...o,
          from: o.from === 'par' ? 'lon' : o.from,
          to: o.to === 'par' ? 'lon' : o.to,
        })),
      },
    ],
    servers: [],
    hosts: ['client', 'web'],
  };
}

/** Lines of a child's stdout, and a bounded wait for one. */
function watch(proc: ChildProcess): {
  all: string[];
  err: () => string;
  waitFor: (re: RegExp, ms: number) => Promise<void>;
} {
  const all: string[] = [];
  let partial = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => {
    const parts = (partial + d.toString()).split('\n');
    partial = parts.pop()!;
    all.push(...parts);
  });
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return {
    all,
    err: () => err,
    waitFor: async (re, ms) => {
      const deadline = Date.now() + ms;
      while (Date.now() < deadline) {
        if (all.some((l) => re.test(l))) return;
        if (proc.exitCode !== null) break;
        await sleep(50);
      }
      assert.fail(`no line matching ${re} within ${ms} ms; stdout:\n${all.join('\n')}\nstderr:\n${err}`);
    },
  };
}

async function egressStats(lab: Lab): Promise<RouterStats[]> {
  return (await routerStats(lab, 'beta')).filter((s) => s.pop === 'lon');
}

const sum = (xs: RouterStats[], f: (s: RouterStats) => number): number => xs.reduce((n, s) => n + f(s), 0);

test('IP transit: curl and ping from a customer gateway through 2 ISPs to an unmodified server; outside prefixes are dropped and counted', async () => {
  requireRoot();
  const lab = await Lab.start(transitTopology(), { netns: true });
  const dir = mkdtempSync(join(tmpdir(), 'arrow-ip-transit-'));
  let gateway: ChildProcess | undefined;
  try {
    const client = lab.hosts.find((h) => h.name === 'client')!;
    const web = lab.hosts.find((h) => h.name === 'web')!;
    const [egress1] = lab.isp('beta').pops.find((p) => p.name === 'lon')!.routers;
    // The web host knows nothing of Arrow: an ordinary route sends customer addresses to the
    // PoP's egress router, as an edge router would.
    const egressHost = egress1!.address.split(':')[0]!;
    const route = await web.run(['ip', 'route', 'replace', LAB_CUSTOMER_PREFIXES, 'via', egressHost]);
    assert.equal(route.code, 0, route.stderr);
    const file = randomBytes(3 * 1024 * 1024 + 17);
    writeFileSync(join(dir, 'file.bin'), file);
    const httpd = web.exec(['busybox', 'httpd', '-f', '-p', '8080', '-h', dir]);
    httpd.stdout!.resume();
    httpd.stderr!.resume();

    // The gateway: traffic to the web host enters the TUN, and the path delivers it as IP. A
    // second route (TEST-NET-2) is outside the path's prefixes: the egress drops it.
    const outside = '198.51.100.1';
    const pathFile = join(dir, 'path.yaml');
    writeFileSync(
      pathFile,
      stringify({
        segments: throughSegments(lab).map((s) => ({ ...s, bandwidthMbps: 200 })),
        target: { kind: 'ip', prefixes: [`${web.address}/32`] },
      }),
    );
    gateway = client.arrow([
      'endpoint',
      '--tun',
      'arw0',
      '--address',
      '100.64.0.2/32',
      '--route',
      `${web.address}/32`,
      '--route',
      `${outside}/32`,
      '--path',
      pathFile,
      '--listen',
      `${client.address}:0`,
    ]);
    const out = watch(gateway);
    await out.waitFor(/^tun arw0 up/, 30_000);

    // ping: ICMP through the path and back, from the tunnel address.
    const ping = await client.run([
      'ping',
      '-c',
      '20',
      '-i',
      '0.05',
      '-W',
      '2',
      '-I',
      '100.64.0.2',
      web.address,
    ]);
    const received = Number(/(\d+) received/.exec(ping.stdout)?.[1] ?? -1);
    assert.ok(received >= 18, `ping: ${ping.stdout}${ping.stderr}`);

    // curl: a TCP download, checked byte for byte.
    const curl = await client.run(
      [
        'curl',
        '-sS',
        '--max-time',
        '60',
        '--interface',
        '100.64.0.2',
        `http://${web.address}:8080/file.bin`,
        '-o',
        join(dir, 'got.bin'),
        '-w',
        '%{size_download} %{num_connects}',
      ],
      { timeoutMs: 90_000 },
    );
    assert.equal(curl.code, 0, curl.stderr);
    const got = readFileSync(join(dir, 'got.bin'));
    assert.equal(
      createHash('sha256').update(got).digest('hex'),
      createHash('sha256').update(file).digest('hex'),
    );
    assert.equal(curl.stdout.trim(), `${file.length} 1`, 'one TCP connection carried the whole file');

    // Outside the circuit's prefixes: never leaves the ISP, counted at the egress.
    const before = sum(await egressStats(lab), (s) => s.drops['outside-prefixes'] ?? 0);
    const lost = await client.run(['ping', '-c', '5', '-i', '0.05', '-W', '1', '-I', '100.64.0.2', outside]);
    assert.match(lost.stdout, / 0 received/, lost.stdout);
    const dropped = await eventually(async () => {
      const n = sum(await egressStats(lab), (s) => s.drops['outside-prefixes'] ?? 0) - before;
      return n >= 5 ? n : 0;
    }, 5000);
    assert.ok(dropped >= 5, `outside-prefixes drops at the egress: ${dropped}`);

    // The egress routers report what crossed their TUNs and whose prefix each answers for.
    const stats = await eventually(async () => {
      const s = await egressStats(lab);
      return sum(s, (x) => x.egress?.returned ?? 0) >= 20 ? s : undefined;
    }, 5000);
    assert.ok(stats, 'egress stats');
    assert.ok(sum(stats, (s) => s.egress?.delivered ?? 0) >= 20);
    for (const s of stats) {
      assert.equal(s.egress?.interface, 'arrow-egress');
      assert.ok(Object.keys(s.egress?.customers ?? {}).includes('100.64.0.2/32'), JSON.stringify(s.egress));
    }
  } finally {
    if (gateway && gateway.exitCode === null) {
      const exited = new Promise((resolve) => gateway!.once('exit', resolve));
      gateway.kill('SIGINT');
      await Promise.race([exited, sleep(10_000)]);
    }
    await lab.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
