// `arrow protect` (src/services/protect.ts, docs/services.md "DoS protection"): the destination's
// nftables table, real nft in two namespaces this test makes and removes. Needs root; fails, never
// skips, without.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { CLI_PATH } from '../src/lab/process.js';
import { protectRuleset } from '../src/services/protect.js';

const tag = `arrow-prot${process.pid % 100000}`;
const DST = `${tag}-dst`;
const SRC = `${tag}-src`;
const EGRESS = '10.79.1.2';
const ATTACKER = '10.79.1.3';
const DEST = '10.79.1.1';

const sh = (...args: string[]): string => execFileSync(args[0]!, args.slice(1), { encoding: 'utf8' });

after(() => {
  for (const ns of [DST, SRC]) spawnSync('ip', ['netns', 'del', ns]);
});

test('the ruleset: egress routers in a set, optional ports, and bad input refused with what is wrong', () => {
  const r = protectRuleset({ egress: ['10.0.0.1', '10.0.0.2'], ports: [9000], name: 'svc' });
  assert.equal(r.table, 'arrow_protect_svc');
  assert.match(r.script, /elements = \{ 10\.0\.0\.1, 10\.0\.0\.2 \}/);
  assert.match(r.script, /ip saddr @egress udp dport \{ 9000 \} counter name "arrow" accept/);
  assert.match(r.script, /counter name "dropped" drop/);
  assert.doesNotMatch(protectRuleset({ egress: ['10.0.0.1'] }).script, /dport/);
  // A TUN endpoint's decapsulated packets are ARROW's too.
  assert.match(
    protectRuleset({ egress: ['10.0.0.1'], tun: ['arw0'] }).script,
    /iifname "arw0" counter name "arrow" accept/,
  );
  assert.throws(() => protectRuleset({ egress: ['10.0.0.1'], tun: ['a b'] }), /not an interface name/);
  assert.throws(() => protectRuleset({ egress: [] }), /at least one egress/);
  assert.throws(() => protectRuleset({ egress: ['10.0.0.1:4000'] }), /not an IPv4 address/);
  assert.throws(() => protectRuleset({ egress: ['10.0.0.1'], name: 'a-b' }), /protection name/);
  assert.throws(() => protectRuleset({ egress: ['10.0.0.1'], ports: [70000] }), /1-65535/);
});

test('arrow protect with a bad --egress exits 1 saying why, and installs nothing', () => {
  const r = spawnSync(process.execPath, [CLI_PATH, 'protect', '--egress', 'not-an-ip'], { encoding: 'utf8' });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /not-an-ip" is not an IPv4 address/);
});

/** Lines of JSON a process prints, as they come. */
function jsonLines(p: ChildProcess): Record<string, unknown>[] {
  const lines: Record<string, unknown>[] = [];
  let buf = '';
  p.stdout!.on('data', (d: Buffer) => {
    const parts = (buf + d.toString()).split('\n');
    buf = parts.pop()!;
    for (const l of parts) if (l.startsWith('{')) lines.push(JSON.parse(l) as Record<string, unknown>);
  });
  return lines;
}

async function until<T>(f: () => T | undefined, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('arrow protect (needs root): only the egress routers reach the destination, the rest is dropped and counted, and exit removes the table', async () => {
  if (process.getuid?.() !== 0)
    assert.fail('test/protect.test.ts needs root: it makes namespaces and nft tables');
  sh('ip', 'netns', 'add', DST);
  sh('ip', 'netns', 'add', SRC);
  sh(
    'ip',
    'link',
    'add',
    `${tag.slice(-8)}a`,
    'netns',
    DST,
    'type',
    'veth',
    'peer',
    'name',
    `${tag.slice(-8)}b`,
    'netns',
    SRC,
  );
  sh('ip', '-n', DST, 'addr', 'add', `${DEST}/24`, 'dev', `${tag.slice(-8)}a`);
  for (const a of [EGRESS, ATTACKER])
    sh('ip', '-n', SRC, 'addr', 'add', `${a}/24`, 'dev', `${tag.slice(-8)}b`);
  for (const [ns, dev] of [
    [DST, `${tag.slice(-8)}a`],
    [SRC, `${tag.slice(-8)}b`],
  ] as const) {
    sh('ip', '-n', ns, 'link', 'set', dev, 'up');
    sh('ip', '-n', ns, 'link', 'set', 'lo', 'up');
  }
  const protect = spawn(
    'ip',
    [
      'netns',
      'exec',
      DST,
      process.execPath,
      CLI_PATH,
      'protect',
      '--egress',
      EGRESS,
      '--port',
      '9000',
      '--name',
      'ptest',
      '--json',
      '--interval',
      '200',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let err = '';
  protect.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const out = jsonLines(protect);
  // The application: a python3 UDP server that counts what it gets, per source.
  const app = spawn(
    'ip',
    [
      'netns',
      'exec',
      DST,
      'python3',
      '-c',
      `
import socket, json, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('${DEST}', 9000))
s.settimeout(1.5)
got = {}
print('ready', flush=True)
while True:
    try:
        d, a = s.recvfrom(2048)
    except socket.timeout:
        break
    got[a[0]] = got.get(a[0], 0) + 1
print(json.dumps(got), flush=True)
`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let appOut = '';
  app.stdout!.on('data', (d: Buffer) => (appOut += d.toString()));
  try {
    await until(() => out.find((l) => l.event === 'installed'), 15_000, `arrow protect installing (${err})`);
    await until(() => (appOut.includes('ready') ? true : undefined), 10_000, 'the application starting');
    assert.match(
      sh('ip', 'netns', 'exec', DST, 'nft', 'list', 'table', 'inet', 'arrow_protect_ptest'),
      /@egress/,
    );
    // From the egress router: 20 to the service port (passes) and 10 to another port (dropped);
    // from anyone else: 20 to the service port (dropped), and pings (dropped).
    sh(
      'ip',
      'netns',
      'exec',
      SRC,
      'python3',
      '-c',
      `
import socket, time
for src, port, n in [('${EGRESS}', 9000, 20), ('${EGRESS}', 9001, 10), ('${ATTACKER}', 9000, 20)]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    for i in range(n):
        s.sendto(b'datagram %d' % i, ('${DEST}', port))
        time.sleep(0.002)
`,
    );
    const ping = spawnSync('ip', ['netns', 'exec', SRC, 'ping', '-c', '2', '-W', '1', '-I', ATTACKER, DEST], {
      encoding: 'utf8',
    });
    assert.notEqual(ping.status, 0, 'a ping from a non-egress source is dropped');
    await once(app, 'exit');
    const got = JSON.parse(appOut.split('\n').find((l) => l.startsWith('{'))!) as Record<string, number>;
    assert.deepEqual(got, { [EGRESS]: 20 }, 'the application heard only the egress router');
    const c = await until(
      () => out.findLast((l) => l.event === 'counters' && (l.dropped as { packets: number }).packets >= 32),
      5000,
      `the counters (${JSON.stringify(out.at(-1))})`,
    );
    assert.equal((c.arrow as { packets: number }).packets, 20);
    // 10 to the wrong port, 20 from the attacker, 2 pings (and maybe an ARP-less stray): all dropped.
    assert.ok((c.dropped as { packets: number }).packets >= 32, JSON.stringify(c));
  } finally {
    app.kill('SIGKILL');
    protect.kill('SIGTERM');
    await once(protect, 'exit');
  }
  assert.equal(protect.exitCode, 0, err);
  const removed = out.find((l) => l.event === 'removed');
  assert.ok(removed, 'the last counters are printed on exit');
  assert.doesNotMatch(sh('ip', 'netns', 'exec', DST, 'nft', 'list', 'tables'), /arrow_protect_ptest/);
  // With the table gone, the attacker gets through again: what stopped it was the table.
  const open = spawnSync('ip', ['netns', 'exec', SRC, 'ping', '-c', '1', '-W', '2', '-I', ATTACKER, DEST]);
  assert.equal(open.status, 0, 'ping passes once the protection is removed');
});
