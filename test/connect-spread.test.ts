// `arrow connect --spread K` through the real command (docs/services.md, "DoS protection"): a lab
// of real processes on loopback with an atlas, a python3 UDP client that knows nothing of ARROW,
// three ingress points at three ISPs. Each carries a share of the datagrams; one killed leaves the
// sequence and the flow goes on over the others; Ctrl-C relinquishes everything.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AtlasClient } from '../src/atlas/client.js';
import { Lab } from '../src/lab/lab.js';
import { CLI_PATH } from '../src/lab/process.js';
import type { Topology } from '../src/lab/topology.js';
import { eventually } from './helpers/network.js';
import { pythonUdpEchoes } from './helpers/python-udp.js';
import { labOffer } from './helpers/lab-offer.js';

const isp = (name: string): Topology['isps'][0] => ({
  name,
  accounts: [{ name: 'acme', apiKey: `acme-key-${name}-00000000000` }],
  store: { kind: 'sqlite' },
  pops: [
    { name: 'ams', routers: 1 },
    { name: 'lon', routers: 1 },
  ],
  offers: [labOffer('ams', 'lon'), labOffer('lon', 'ams')],
});
const ISPS = ['red', 'green', 'blue'];
const topology: Topology = {
  name: 'spread-test',
  isps: ISPS.map(isp),
  servers: [{ name: 'echo', kind: 'udp-echo', deliveredBy: ISPS.map((i) => `${i}/lon`) }],
  atlas: { measureIntervalMs: 200, echoes: 5, history: 10 },
  statsIntervalMs: 200,
};

let lab: Lab;
const dir = mkdtempSync(join(tmpdir(), 'arrow-spread-test-'));

before(async () => {
  lab = await Lab.start(topology);
  const atlas = new AtlasClient(lab.atlas!.url);
  const ready = await eventually(
    async () =>
      (await atlas.paths({ from: '*/ams', to: lab.server('echo').address, k: 3 })).paths.length === 3,
    30_000,
    200,
  );
  assert.ok(ready, 'the atlas never offered three disjoint paths');
});

after(async () => {
  await lab?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** DATA and probes each ISP's ams->lon circuit took in, from `arrow circuits --json` (the real command). */
function carried(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const i of lab.isps) {
    const r = spawnSync(
      process.execPath,
      [CLI_PATH, 'circuits', '--portal', i.url, '--key', i.accounts[0]!.apiKey, '--json'],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    const { circuits } = JSON.parse(r.stdout) as {
      circuits: { ingressPop: string; stats: { in: { packets: number } } }[];
    };
    out[i.name] = circuits.filter((c) => c.ingressPop === 'ams').reduce((a, c) => a + c.stats.in.packets, 0);
  }
  return out;
}

/** Node's argv for `arrow connect --spread 3` from every ams PoP to the echo server, with `keyFile` as its key. */
function connect(keyFile: string): string[] {
  return [
    CLI_PATH,
    'connect',
    '--atlas',
    lab.atlas!.url,
    '--from',
    '*/ams',
    '--to',
    lab.server('echo').address,
    '--spread',
    '3',
    '--spread-key',
    keyFile,
    '--keys',
    join(dir, 'keys.yaml'),
    '--listen',
    '127.0.0.1:0',
  ];
}

test('arrow connect --spread 3: a foreign client over three ingress points; a dead one leaves the sequence', async () => {
  const keys = join(dir, 'keys.yaml');
  writeFileSync(keys, topology.isps.map((i) => `${i.name}: ${i.accounts[0]!.apiKey}`).join('\n'));
  const keyFile = join(dir, 'spread.key');
  writeFileSync(keyFile, '000102030405060708090a0b0c0d0e0f\n');
  // Bad input first: a key file that holds no key is refused before anything is bought.
  writeFileSync(join(dir, 'bad.key'), 'secret');
  const bad = spawnSync(process.execPath, connect(join(dir, 'bad.key')), { encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /--spread-key: .*expected 32 hex digits/);

  const proc = spawn(process.execPath, [...connect(keyFile), '--json'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  try {
    const report = await eventually(async () => {
      try {
        return JSON.parse(out) as { listen: string; bought: { forward: { segment: { isp: string } }[] }[] };
      } catch (e) {
        if (e instanceof SyntaxError) return undefined;
        throw e;
      }
    }, 30_000);
    assert.ok(report, `connect printed no report; stderr: ${err}`);
    assert.deepEqual(report.bought.map((p) => p.forward[0]!.segment.isp).sort(), [...ISPS].sort());
    const before = carried();
    const got = await pythonUdpEchoes(report.listen, 600, 200);
    assert.ok(got >= 590, `${got} of 600 echoes came back`);
    // Each ingress carried about a third (200 ± 50, plus ~10 probes/s): spread, not one primary.
    const after1 = await eventually(
      async () => {
        const now = carried();
        return ISPS.every((i) => now[i]! - before[i]! >= 150) ? now : undefined;
      },
      5000,
      200,
    );
    assert.ok(
      after1,
      `every ingress carried a share: ${JSON.stringify(carried())} (before ${JSON.stringify(before)})`,
    );
    // One ingress point dies: it leaves the sequence, the others carry the flow.
    const victim = lab.isp('green').pops.find((p) => p.name === 'ams')!.routers[0]!;
    lab.kill(victim.name);
    const during = await pythonUdpEchoes(report.listen, 400, 200);
    assert.ok(during >= 360, `${during} of 400 echoes with one of three ingress points dead`);
    // (The client has run: what connect printed meanwhile is read now.)
    // Failing (its DATA unanswered for 50 ms) or overloaded (its probes lost), whichever saw it first.
    const left =
      /sequence ingress \d via green at [\d.:]+: (failing|overloaded \(\d+% [^)]*\)), out of the sequence/;
    await eventually(async () => left.test(err) || undefined, 5000, 50);
    assert.match(err, left);
  } finally {
    proc.kill('SIGINT');
    await once(proc, 'exit');
  }
  // Ctrl-C relinquished every circuit (the portals answer for a dead router).
  for (const i of lab.isps) {
    const { circuits } = (await fetch(`${i.url}/circuits`, {
      headers: { authorization: `Bearer ${i.accounts[0]!.apiKey}` },
    }).then((r) => r.json())) as { circuits: unknown[] };
    assert.equal(circuits.length, 0, `${i.name} still holds circuits`);
  }
});
