// Real packets through the kernel path: three network namespaces (sender, router, sink) on veth
// links, the program attached to the router's interface as a router attaches it. A Node UDP socket
// sends DATA of a circuit to the router's address; no process listens there, so only the program
// can forward it. The sink must get every packet with the next hop's authenticator and the hop
// limit decremented, with no UDP checksum errors, in each attach mode.
//
// Needs root: fails (never skips) without it, like the netns tests. HEAVY (namespaces).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import type { Circuit } from '../src/store/circuit.js';
import { encode, PacketType } from '../src/wire/header.js';

const PACKETS = 20;

const circuit: Circuit = {
  auth: '11'.repeat(16),
  internalAuth: '12'.repeat(16),
  owner: 'acme',
  ingressPop: 'fra',
  egressPop: 'ams',
  bandwidthMbps: 100,
  internalRouters: ['10.0.0.3:4000'],
  action: { kind: 'forward', next: { addresses: ['10.0.1.2:4001'], auth: 'ee'.repeat(16) } },
  createdAt: '2026-12-01T00:00:00.000Z',
  revision: 1,
};

function run(cmd: string, ...args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8' });
}

/** `node` running `script` (an ES module's text) in namespace `ns`. */
function nodeIn(ns: string, script: string): string[] {
  return ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', script];
}

for (const mode of ['generic', 'native', 'tc'] as const) {
  test(`BPF forwarding (needs root), ${mode}: DATA crosses the router in the kernel, rewritten, every packet`, async (t) => {
    if (process.getuid?.() !== 0)
      assert.fail('test/bpf-forward.test.ts makes network namespaces and attaches XDP: it needs root');
    const p = `arrowfw${process.pid}${mode[0]}`;
    const [S, R, D] = [`${p}s`, `${p}r`, `${p}d`];
    for (const ns of [S, R, D]) run('ip', 'netns', 'add', ns);
    t.after(() => {
      for (const ns of [S, R, D]) run('ip', 'netns', 'del', ns);
    });
    run('ip', 'link', 'add', 's0', 'netns', S, 'type', 'veth', 'peer', 'name', 'r0', 'netns', R);
    run('ip', 'link', 'add', 'r1', 'netns', R, 'type', 'veth', 'peer', 'name', 'd0', 'netns', D);
    for (const [ns, dev, addr] of [
      [S, 's0', '10.0.0.9/24'],
      [R, 'r0', '10.0.0.1/24'],
      [R, 'r1', '10.0.1.1/24'],
      [D, 'd0', '10.0.1.2/24'],
    ] as const) {
      run('ip', '-n', ns, 'addr', 'add', addr, 'dev', dev);
      run('ip', '-n', ns, 'link', 'set', dev, 'up');
    }
    run('ip', 'netns', 'exec', R, 'sysctl', '-qw', 'net.ipv4.conf.all.forwarding=1');
    // A native-mode redirect into r1 lands in d0's queue, which takes XDP frames only with GRO on.
    run('ip', 'netns', 'exec', D, 'ethtool', '-K', 'd0', 'gro', 'on');
    // Neighbours resolved, as they are on a router that has been talking to them.
    run('ip', 'netns', 'exec', R, 'ping', '-c1', '-W1', '10.0.1.2');
    run('ip', 'netns', 'exec', S, 'ping', '-c1', '-W1', '10.0.0.1');
    const r0 = Number(/^(\d+):/.exec(run('ip', '-n', R, '-o', 'link', 'show', 'r0'))![1]);

    const router = spawn(
      'ip',
      [
        'netns',
        'exec',
        R,
        process.execPath,
        new URL('./helpers/bpf-router.js', import.meta.url).pathname,
        String(r0),
        mode,
        JSON.stringify(circuit),
      ],
      { stdio: ['pipe', 'pipe', 'inherit'] },
    );
    const lines = createInterface({ input: router.stdout });
    const [first] = (await once(lines, 'line')) as [string];
    assert.equal(first, 'attached');

    // The sink and the sender are small Node processes in their namespaces.
    const sink = spawn(
      'ip',
      nodeIn(
        D,
        `import dgram from 'node:dgram';
         const s = dgram.createSocket('udp4'); const got = [];
         s.on('message', (m) => { got.push(m.toString('hex')); if (got.length === ${PACKETS}) { console.log(JSON.stringify(got)); s.close(); } });
         s.bind(4001, '10.0.1.2', () => console.log('ready'));
         setTimeout(() => { console.log(JSON.stringify(got)); process.exit(0); }, 5000).unref();`,
      ),
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const sinkLines = createInterface({ input: sink.stdout });
    const [ready] = (await once(sinkLines, 'line')) as [string];
    assert.equal(ready, 'ready');
    const packet = encode({
      type: PacketType.Data,
      hopLimit: 9,
      authenticator: Buffer.from(circuit.internalAuth, 'hex'),
      sequence: 1n,
      payload: Buffer.alloc(100, 7),
    });
    run(
      'ip',
      ...nodeIn(
        S,
        `import dgram from 'node:dgram';
         const s = dgram.createSocket('udp4'); const p = Buffer.from('${packet.toString('hex')}', 'hex');
         for (let i = 0; i < ${PACKETS}; i++) await new Promise((ok) => s.send(p, 4000, '10.0.0.1', ok));
         s.close();`,
      ),
    );
    const [gotLine] = (await once(sinkLines, 'line')) as [string];
    const got = JSON.parse(gotLine) as string[];
    router.stdin.end();
    const [statsLine] = (await once(lines, 'line')) as [string];
    const stats = JSON.parse(statsLine) as Record<string, number>;

    const expected = Buffer.from(packet);
    expected[3] = 8;
    Buffer.from('ee'.repeat(16), 'hex').copy(expected, 4);
    assert.equal(got.length, PACKETS, `the sink got ${got.length} of ${PACKETS}; router stats ${statsLine}`);
    for (const g of got) assert.equal(g, expected.toString('hex'));
    assert.equal(stats.redirect, PACKETS, statsLine);
    const udp = run('ip', 'netns', 'exec', D, 'nstat', '-az', 'UdpInCsumErrors');
    assert.match(udp, /UdpInCsumErrors\s+0\b/);
  });
}
