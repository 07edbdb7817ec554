// Run by test/bpf-fib.test.ts inside a network namespace it prepared (`ip netns exec`): loads the
// XDP program as a router would (bpf_fib_lookup on, the kernel clock), runs one frame per case
// through BPF_PROG_TEST_RUN as if it had arrived on the interface named in argv, and prints the
// verdicts and frames as JSON. Not a test file itself: it needs the namespace around it.
import { execFileSync } from 'node:child_process';
import { KernelCircuits, KernelProgram } from '../../src/router/kernel.js';
import { ForwardingTable } from '../../src/router/table.js';
import type { Circuit } from '../../src/store/circuit.js';
import { encode, PacketType } from '../../src/wire/header.js';

interface Case {
  name: string;
  nextHop: string;
}

const [ifindexText, casesJson, frameHex, tcIfindexText] = process.argv.slice(2);
const ifindex = Number(ifindexText);
const cases = JSON.parse(casesJson!) as Case[];
const frameHead = Buffer.from(frameHex!, 'hex');

const prog = KernelProgram.load({ maxCircuits: 16 });
prog.setAddress('10.0.0.1', 4000);
const kernel = new KernelCircuits(prog);
const results: { name: string; action: number; frame: string; stats: Record<string, number> }[] = [];
cases.forEach((c, i) => {
  const auth = (i + 1).toString(16).padStart(2, '0').repeat(16);
  const record: Circuit = {
    auth,
    owner: 'acme',
    ingressPop: 'fra',
    egressPop: 'ams',
    bandwidthMbps: 100,
    internalAuth: auth,
    internalRouters: ['10.0.0.99:4000'],
    action: { kind: 'forward', next: { addresses: [c.nextHop], auth: 'ee'.repeat(16) } },
    createdAt: '2026-12-01T00:00:00.000Z',
    revision: 1,
  };
  const table = new ForwardingTable('ams');
  table.put(record);
  const key = Buffer.from(auth, 'hex');
  kernel.put(table.lookup(key.toString('latin1'))!, key);
  const arrow = encode({
    type: PacketType.Data,
    hopLimit: 9,
    authenticator: key,
    sequence: 1n,
    payload: Buffer.from('fib'),
  });
  const frame = Buffer.concat([frameHead, arrow]);
  frame.writeUInt16BE(28 + arrow.length, 16);
  frame.writeUInt16BE(8 + arrow.length, 38);
  const before = prog.stats();
  const r = prog.testRun(frame, { ifindex });
  const after = prog.stats();
  const stats: Record<string, number> = {};
  for (const [k, v] of Object.entries(after))
    if (v !== before[k as keyof typeof before]) stats[k] = v - before[k as keyof typeof before];
  results.push({ name: c.name, action: r.action, frame: r.frame.toString('hex'), stats });
});
// Attached for real: XDP on the arrival interface, tc ingress on another, as links of this process.
prog.attach(ifindex, 'auto');
prog.attach(Number(tcIfindexText), 'tc');
interface LinkInfo {
  id: number;
  prog_id: number;
}
const links = JSON.parse(execFileSync('bpftool', ['-j', 'link', 'show'], { encoding: 'utf8' })) as LinkInfo[];
const ids = prog.programIds();
const attached = Object.fromEntries(
  Object.entries(ids).map(([kind, id]) => [
    kind,
    { id, links: links.filter((l) => l.prog_id === id).length },
  ]),
);
prog.close();
process.stdout.write(JSON.stringify({ results, attached }));
