// The destination-bought form of DoS protection (docs/services.md, "DoS protection"): `arrow
// mailboxes` buys K ingress paths for each client with the destination's keys and writes the
// client's bundle; `arrow forward --mailboxes` spreads an unmodified python3 client over them. A
// second client, an insider, floods one of its own mailboxes with valid authenticators: the ingress
// router's policing holds it to the bought rate, and the honest client's flow, through the same
// ingress routers, is untouched. All real processes on loopback.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { Lab } from '../src/lab/lab.js';
import { CLI_PATH } from '../src/lab/process.js';
import type { Topology } from '../src/lab/topology.js';
import type { MailboxBundle } from '../src/endpoint/mailboxes.js';
import { authToBytes } from '../src/wire/authenticator.js';
import { mustParseAddress } from '../src/wire/address.js';
import { encode, PacketType } from '../src/wire/header.js';
import { eventually } from './helpers/network.js';
import { pythonUdpEchoes } from './helpers/python-udp.js';
import { startCli } from './helpers/cli-process.js';
import { labOffer } from './helpers/lab-offer.js';

const ISPS = ['red', 'blue'];
const INGRESS = ['ams', 'par'];
const isp = (name: string): Topology['isps'][0] => ({
  name,
  accounts: [{ name: 'svc', apiKey: `svc-key-${name}-000000000000` }],
  store: { kind: 'sqlite' },
  pops: [...INGRESS, 'lon'].map((p) => ({ name: p, routers: 1 })),
  offers: INGRESS.flatMap((p) => [labOffer(p, 'lon'), labOffer('lon', p)]),
});
const topology: Topology = {
  name: 'mailboxes-test',
  isps: ISPS.map(isp),
  servers: [{ name: 'echo', kind: 'udp-echo', deliveredBy: ISPS.map((i) => `${i}/lon`) }],
  statsIntervalMs: 200,
};

let lab: Lab;
const dir = mkdtempSync(join(tmpdir(), 'arrow-mailboxes-test-'));
const procs: ChildProcess[] = [];

before(async () => {
  lab = await Lab.start(topology);
});

after(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await lab?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The four path files (2 ISPs x 2 ingress PoPs, all to lon), bought at 1 Mb/s with the destination's keys. */
function pathFiles(): string[] {
  const files: string[] = [];
  for (const name of ISPS)
    for (const pop of INGRESS) {
      const i = lab.isp(name);
      const f = join(dir, `${name}-${pop}.yaml`);
      writeFileSync(
        f,
        JSON.stringify({
          segments: [
            {
              isp: name,
              portal: i.url,
              apiKey: i.accounts[0]!.apiKey,
              ingressPop: pop,
              egressPop: 'lon',
              bandwidthMbps: 1,
            },
          ],
          target: { kind: 'udp', address: lab.server('echo').address },
        }),
      );
      files.push(f);
    }
  return files;
}

async function freePort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const port = s.address().port;
  s.close();
  return port;
}

/** `arrow ARGS`, up once its output matches `ready`; killed after the test if still running. */
async function start(args: string[], ready: RegExp): Promise<{ proc: ChildProcess; out: () => string }> {
  const { proc, output } = await startCli(args, ready, { timeoutMs: 30_000 });
  procs.push(proc);
  return { proc, out: output };
}

interface CircuitStats {
  auth: string;
  ingressPop: string;
  stats: { in: { packets: number }; drops: Record<string, number> };
}

/** The destination's circuits at every ISP, through `arrow circuits --json` (the real command). */
function circuits(): CircuitStats[] {
  return lab.isps.flatMap((i) => {
    const r = spawnSync(
      process.execPath,
      [CLI_PATH, 'circuits', '--portal', i.url, '--key', i.accounts[0]!.apiKey, '--json'],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    return (JSON.parse(r.stdout) as { circuits: CircuitStats[] }).circuits;
  });
}

test('mailboxes: the destination buys, the client spreads over them, an insider flooding its own is policed', async () => {
  const files = pathFiles();
  // Bad input is refused before anything is bought.
  const bad = spawnSync(
    process.execPath,
    [
      CLI_PATH,
      'mailboxes',
      ...files.flatMap((f) => ['-p', f]),
      '--client',
      '0.0.0.0:5000',
      '-o',
      join(dir, 'x.yaml'),
    ],
    { encoding: 'utf8' },
  );
  assert.equal(bad.status, 1, bad.stderr);
  assert.match(bad.stderr, /--client 0\.0\.0\.0:5000: the return paths need a host and a port/);
  assert.equal(circuits().length, 0, 'a refused mailboxes bought nothing');
  const both = spawnSync(
    process.execPath,
    [CLI_PATH, 'forward', '-l', '127.0.0.1:0', '--mailboxes', 'b.yaml', '--path', files[0]!],
    { encoding: 'utf8' },
  );
  assert.equal(both.status, 1);
  assert.match(both.stderr, /either --path files \(you buy\) or --mailboxes/);

  // Two clients, each with its own four mailboxes.
  const honestPort = await freePort();
  const insiderPort = await freePort();
  const honestBundle = join(dir, 'honest.yaml');
  const insiderBundle = join(dir, 'insider.yaml');
  const buy = (port: number, out: string): Promise<{ proc: ChildProcess; out: () => string }> =>
    start(
      ['mailboxes', ...files.flatMap((f) => ['-p', f]), '--client', `127.0.0.1:${port}`, '-o', out],
      /mailbox\(es\) for client/,
    );
  const honestBox = await buy(honestPort, honestBundle);
  const insiderBox = await buy(insiderPort, insiderBundle);
  assert.equal(circuits().length, 2 * 2 * 4, 'each bundle: 4 forward and 4 return circuits');

  // The bundle: 0600, the circuits the client needs, none of the keys that bought them.
  const text = readFileSync(honestBundle, 'utf8');
  assert.equal(statSync(honestBundle).mode & 0o777, 0o600);
  for (const i of lab.isps) assert.ok(!text.includes(i.accounts[0]!.apiKey), 'the bundle holds no API key');
  const bundle = parse(text) as MailboxBundle;
  assert.equal(bundle.client, `127.0.0.1:${honestPort}`);
  assert.deepEqual(
    bundle.ingress.map((x) => `${x.forward[0]!.isp}/${x.forward[0]!.circuit.ingressPop}`).sort(),
    ['blue/ams', 'blue/par', 'red/ams', 'red/par'],
  );

  const fwd = await start(['forward', '-l', '127.0.0.1:0', '--mailboxes', honestBundle], /forwarding UDP/);
  const listen = /forwarding UDP (\S+) over 4 of the destination's mailboxes/.exec(fwd.out())?.[1];
  assert.ok(listen, fwd.out());
  const mine = new Set(bundle.ingress.map((x) => x.forward[0]!.circuit.auth));
  const inOf = (auths: Set<string>): number[] =>
    circuits()
      .filter((c) => auths.has(c.auth))
      .map((c) => c.stats.in.packets);
  const before = inOf(mine);

  // The insider floods the first of its own mailboxes with its valid authenticator while the
  // honest client sends: 3000 datagrams of 1000 bytes in ~1 s (24 Mb/s on a 1 Mb/s circuit).
  const theirs = (parse(readFileSync(insiderBundle, 'utf8')) as MailboxBundle).ingress[0]!.forward[0]!
    .circuit;
  const flood = (async (): Promise<void> => {
    const s = createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    const to = mustParseAddress(theirs.ingress[0]!);
    const auth = authToBytes(theirs.auth);
    for (let i = 0; i < 3000; i++) {
      s.send(
        encode({
          type: PacketType.Data,
          hopLimit: 64,
          authenticator: auth,
          sequence: BigInt(i + 1),
          payload: Buffer.alloc(1000),
        }),
        to.port,
        to.host,
      );
      if (i % 30 === 29) await new Promise((r) => setTimeout(r, 10));
    }
    s.close();
  })();
  const [got] = await Promise.all([pythonUdpEchoes(listen, 400, 200), flood]);
  assert.ok(got >= 392, `${got} of 400 echoes came back while an insider flooded its own mailbox`);

  // Every mailbox carried a share of the honest flow (100 ± 40 each, plus probes).
  const carried = await eventually(
    async () => {
      const now = inOf(mine);
      return now.every((n, i) => n - before[i]! >= 60) ? now : undefined;
    },
    5000,
    200,
  );
  assert.ok(
    carried,
    `every mailbox carried a share: ${JSON.stringify(inOf(mine))} (before ${JSON.stringify(before)})`,
  );
  // The flood met the policer at its ingress: most of it over-rate, never counted in.
  const policed = await eventually(
    async () => {
      const c = circuits().find((x) => x.auth === theirs.auth)!;
      return (c.stats.drops['over-rate'] ?? 0) >= 2000 ? c : undefined;
    },
    5000,
    200,
  );
  assert.ok(
    policed,
    `the insider's flood was not policed: ${JSON.stringify(circuits().find((x) => x.auth === theirs.auth))}`,
  );
  assert.ok(policed.stats.in.packets <= 1000, `admitted ${policed.stats.in.packets} of 3000 at 1 Mb/s`);

  // Ctrl-C on the forward relinquishes nothing (the destination owns the mailboxes)...
  fwd.proc.kill('SIGINT');
  const [fwdCode] = await once(fwd.proc, 'exit');
  assert.equal(fwdCode, 0, fwd.out());
  assert.equal(circuits().length, 16);
  // ...and on the destination's side relinquishes them and removes the bundle.
  for (const box of [honestBox, insiderBox]) {
    box.proc.kill('SIGTERM');
    const [code] = await once(box.proc, 'exit');
    assert.equal(code, 0, box.out());
    assert.match(box.out(), /relinquished 4 mailbox\(es\)/);
  }
  assert.equal(existsSync(honestBundle), false);
  assert.equal(circuits().length, 0, 'every mailbox relinquished');
});
