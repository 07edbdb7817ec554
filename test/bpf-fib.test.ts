// The kernel path as a router loads it (bpf_fib_lookup on), in a network namespace of its own: a
// veth pair v0/v1 with the router's address on v0, and permanent neighbour entries. BPF_PROG_TEST_RUN
// with the frame arriving on v0 shows the three outcomes of the route lookup: a next hop out of
// another interface is redirected there with the neighbour's MAC, one on the arrival link goes back
// out (XDP_TX), and one without a neighbour entry, or with forwarding off, goes up to the Node router
// unchanged. (test/bpf-differential.test.ts covers everything else, with the lookup off.)
//
// Needs root: fails (never skips) without it, like the netns tests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { XdpAction } from '../src/router/kernel.js';

const NS = `arrowbpf${process.pid}`;

function ip(...args: string[]): string {
  return execFileSync('ip', ['-n', NS, ...args], { encoding: 'utf8' });
}

function ifindex(name: string): number {
  const m = /^(\d+):/.exec(ip('-o', 'link', 'show', name));
  assert.ok(m, `ifindex of ${name}`);
  return Number(m[1]);
}

function mac(name: string): string {
  const m = /link\/ether ([0-9a-f:]+)/.exec(ip('-o', 'link', 'show', name));
  assert.ok(m, `MAC of ${name}`);
  return m[1]!.replaceAll(':', '');
}

/** Ethernet + IPv4 + UDP, 10.0.0.9:5555 -> 10.0.0.1:4000; the probe fills in the lengths. */
function head(dstMac: string): string {
  const f = Buffer.alloc(42);
  Buffer.from(dstMac, 'hex').copy(f, 0);
  Buffer.from('020000000009', 'hex').copy(f, 6);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x45;
  f[22] = 64;
  f[23] = 17;
  Buffer.from([10, 0, 0, 9, 10, 0, 0, 1]).copy(f, 26);
  f.writeUInt16BE(5555, 34);
  f.writeUInt16BE(4000, 36);
  return f.toString('hex');
}

interface Result {
  name: string;
  action: number;
  frame: string;
  stats: Record<string, number>;
}

function probe(
  cases: { name: string; nextHop: string }[],
  frameHead: string,
): { results: Result[]; attached: Record<string, { id: number; links: number }> } {
  const out = execFileSync(
    'ip',
    [
      'netns',
      'exec',
      NS,
      process.execPath,
      new URL('./helpers/bpf-fib-probe.js', import.meta.url).pathname,
      String(ifindex('v0')),
      JSON.stringify(cases),
      frameHead,
      String(ifindex('v1')),
    ],
    { encoding: 'utf8' },
  );
  return JSON.parse(out) as { results: Result[]; attached: Record<string, { id: number; links: number }> };
}

test('BPF route lookup (needs root): redirect with the neighbour’s MAC, XDP_TX on the arrival link, up to the Node router without a neighbour or with forwarding off; XDP and tc attach as links that end with the process', (t) => {
  if (process.getuid?.() !== 0)
    assert.fail(
      'test/bpf-fib.test.ts makes a network namespace and loads XDP: it needs root; run `npm test` as root',
    );
  execFileSync('ip', ['netns', 'add', NS]);
  t.after(() => execFileSync('ip', ['netns', 'del', NS]));
  ip('link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1');
  ip('addr', 'add', '10.0.0.1/24', 'dev', 'v0');
  ip('addr', 'add', '10.0.1.1/24', 'dev', 'v1');
  ip('link', 'set', 'v0', 'up');
  ip('link', 'set', 'v1', 'up');
  ip('neigh', 'add', '10.0.0.7', 'lladdr', '02:00:00:00:00:07', 'dev', 'v0', 'nud', 'permanent');
  ip('neigh', 'add', '10.0.1.2', 'lladdr', '02:00:00:00:00:12', 'dev', 'v1', 'nud', 'permanent');
  const cases = [
    { name: 'other link', nextHop: '10.0.1.2:4001' },
    { name: 'same link', nextHop: '10.0.0.7:4002' },
    { name: 'no neighbour', nextHop: '10.0.1.3:4003' },
  ];
  const frameHead = head(mac('v0'));

  // bpf_fib_lookup refuses to route for an interface that does not forward.
  execFileSync('ip', [
    'netns',
    'exec',
    NS,
    'sysctl',
    '-qw',
    'net.ipv4.conf.all.forwarding=0',
    'net.ipv4.conf.v0.forwarding=0',
  ]);
  for (const r of probe(cases, frameHead).results) {
    assert.equal(r.action, XdpAction.pass, r.name);
    assert.deepEqual(r.stats, { passNoRoute: 1 }, r.name);
  }

  execFileSync('ip', [
    'netns',
    'exec',
    NS,
    'sysctl',
    '-qw',
    'net.ipv4.conf.all.forwarding=1',
    'net.ipv4.conf.v0.forwarding=1',
  ]);
  const { results, attached } = probe(cases, frameHead);
  const [other, same, none] = results;
  assert.equal(other!.action, XdpAction.redirect);
  assert.deepEqual(other!.stats, { redirect: 1 });
  let f = Buffer.from(other!.frame, 'hex');
  assert.equal(f.subarray(0, 6).toString('hex'), '020000000012', 'destination MAC: the neighbour');
  assert.equal(f.subarray(6, 12).toString('hex'), mac('v1'), 'source MAC: the way out');
  assert.equal([...f.subarray(30, 34)].join('.'), '10.0.1.2');
  assert.equal(f.readUInt16BE(36), 4001);

  assert.equal(same!.action, XdpAction.tx);
  assert.deepEqual(same!.stats, { tx: 1 });
  f = Buffer.from(same!.frame, 'hex');
  assert.equal(f.subarray(0, 6).toString('hex'), '020000000007');
  assert.equal(f.subarray(6, 12).toString('hex'), mac('v0'));

  assert.equal(none!.action, XdpAction.pass);
  assert.deepEqual(none!.stats, { passNoRoute: 1 });
  f = Buffer.from(none!.frame, 'hex');
  assert.equal(f.subarray(0, 12).toString('hex'), frameHead.slice(0, 24), 'MACs unchanged');
  assert.equal([...f.subarray(30, 34)].join('.'), '10.0.0.1', 'still addressed to the router');
  assert.equal(f[45], 9, 'hop limit unchanged');

  // The probe attached XDP to v0 and tc to v1, as links: present while it ran, gone with it.
  assert.equal(attached.xdp?.links, 1, JSON.stringify(attached));
  assert.equal(attached.tc?.links, 1, JSON.stringify(attached));
  for (const { id } of Object.values(attached))
    assert.throws(
      () => execFileSync('bpftool', ['prog', 'show', 'id', String(id)], { stdio: 'pipe' }),
      /Command failed/,
      `program ${id} outlived the process`,
    );
});
