// `arrow cdn controller --atlas` (docs/services.md, "CDN"): when no cache can measure the client
// (ICMP filtered on the way), the controller uses the atlas's measured path latency from each
// cache's PoP to the client. A loopback lab with an atlas: the client's address is delivered at
// PoP lon; cache `far` sits at ams, whose router delays what it carries by 25 ms, cache `near` at
// fra. `far` is named first, so a tie or no choice would pick it. The test's own nftables table
// (on the host, matching only the client's loopback address, removed after) drops the caches'
// pings, as a filtering network would.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { Lab } from '../src/lab/lab.js';
import type { Topology } from '../src/lab/topology.js';
import { AtlasClient } from '../src/atlas/client.js';
import { eventually } from './helpers/network.js';
import { startCli } from './helpers/cli-process.js';
import { labOffer } from './helpers/lab-offer.js';

const run = promisify(execFile);
const TABLE = `arrow_cdn_atlas_${process.pid}`;
const topology: Topology = {
  name: 'cdn-atlas',
  isps: [
    {
      name: 'web',
      accounts: [{ name: 'cdn', apiKey: 'cdn-key-web-0000000000000' }],
      store: { kind: 'sqlite' },
      pops: [
        { name: 'ams', routers: 1, impair: { delayMs: 25 } },
        { name: 'fra', routers: 1 },
        { name: 'lon', routers: 1 },
      ],
      offers: [labOffer('ams', 'lon'), labOffer('fra', 'lon')],
    },
  ],
  // The "client": its address is a destination the atlas knows, delivered at lon.
  servers: [{ name: 'client', kind: 'udp-echo', deliveredBy: ['web/lon'] }],
  atlas: { measureIntervalMs: 200, echoes: 5, history: 10 },
  statsIntervalMs: 200,
};

let lab: Lab;
const dir = mkdtempSync(join(tmpdir(), 'arrow-cdn-atlas-'));
const procs: ChildProcess[] = [];

before(async () => {
  if (process.getuid?.() !== 0) throw new Error('test/cdn-atlas.test.ts needs root (an nftables table)');
  lab = await Lab.start(topology);
});

after(async () => {
  for (const p of procs) p.kill('SIGKILL');
  spawnSync('nft', ['delete', 'table', 'inet', TABLE]);
  await lab?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Starts a daemon of the CDN and answers the URL it says it listens on. */
async function daemon(args: string[]): Promise<string> {
  const { proc, output } = await startCli(args, /listening on/);
  procs.push(proc);
  return /listening on (\S+)/.exec(output())![1]!;
}

test('arrow cdn controller --atlas: with the client unpingable, the atlas picks the cache whose PoP is nearer', async () => {
  const client = lab.server('client').address.split(':')[0]!;
  const atlas = new AtlasClient(lab.atlas!.url);
  // The atlas has measured both PoPs' paths to the client, and sees ams's delay.
  const latency = async (from: string): Promise<number | undefined> =>
    (await atlas.paths({ from, to: client, sort: 'latency', k: 1 })).paths[0]?.latencyMs;
  const measured = await eventually(
    async () => {
      const [a, f] = [await latency('web/ams'), await latency('web/fra')];
      return a !== undefined && f !== undefined && a > f + 10 ? { a, f } : undefined;
    },
    30_000,
    300,
  );
  assert.ok(
    measured,
    `the atlas never saw ams farther than fra: ${await latency('web/ams')} vs ${await latency('web/fra')}`,
  );

  const www = join(dir, 'www');
  spawnSync('mkdir', ['-p', www]);
  writeFileSync(join(www, 'f.bin'), randomBytes(10_000));
  const port = 19_000 + (process.pid % 1000);
  const origin = spawn('busybox', ['httpd', '-f', '-p', `127.0.0.1:${port}`, '-h', www], { stdio: 'ignore' });
  procs.push(origin);
  const cache = (name: string, host: string): Promise<string> =>
    daemon([
      'cdn',
      'cache',
      '--name',
      name,
      '--listen',
      `${host}:0`,
      '--origin',
      `http://127.0.0.1:${port}`,
      '--store',
      join(dir, name),
    ]);
  const far = await cache('far', '127.0.0.31');
  const near = await cache('near', '127.0.0.32');
  const controller = await daemon([
    'cdn',
    'controller',
    '--listen',
    '127.0.0.1:0',
    '--cache',
    `far=${far}@web/ams`,
    '--cache',
    `near=${near}@web/fra`,
    '--atlas',
    lab.atlas!.url,
    '--measure-timeout-ms',
    '2000',
  ]);
  const ask = async (): Promise<string> =>
    (
      await run(
        'curl',
        ['-sS', '--interface', client, '-D', '-', '-o', '/dev/null', `${controller}/files/f.bin`],
        {
          timeout: 30_000,
        },
      )
    ).stdout;

  // Pingable, the caches measure (both ~0 ms on loopback): chosen by measurement.
  const measuredHead = await ask();
  assert.match(measuredHead, /^HTTP\/1\.1 302/);
  assert.match(measuredHead, /x-arrow-cdn-how: measured/i);

  // Unpingable: no cache measures, the atlas decides, and it picks the nearer PoP's cache.
  const rules = `table inet ${TABLE} {
  chain output {
    type filter hook output priority filter; policy accept;
    ip daddr ${client} icmp type echo-request drop
  }
}
`;
  const nft = spawnSync('nft', ['-f', '-'], { input: rules, encoding: 'utf8' });
  assert.equal(nft.status, 0, nft.stderr);
  const head = await ask();
  assert.match(head, /^HTTP\/1\.1 302/);
  assert.match(head, /x-arrow-cdn-how: atlas/i, head);
  assert.match(head, /x-arrow-cdn-measurements: far=x,near=x/i, head);
  assert.match(head, new RegExp(`location: ${near.replace(/[.]/g, '\\.')}/files/f\\.bin`, 'i'), head);
  assert.match(head, /x-arrow-cdn-cache: near/i);
});
