// The router's table mirrored into the kernel's maps (src/router/kernel-mirror.ts), against the real
// program loaded in its test mode (BPF_PROG_TEST_RUN: no network needed): what the table says is what
// the program does, a repair is one map update per circuit (in one batch), and the kernel's counts reach the table's
// counters exactly once, across re-chains out of the kernel.
//
// Needs root (loading BPF): fails, never skips, without it, like the other kernel tests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KernelProgram, verdictOf } from '../src/router/kernel.js';
import { KernelMirror, addDelta } from '../src/router/kernel-mirror.js';
import { ForwardingTable, newCircuitCounters } from '../src/router/table.js';
import type { Circuit } from '../src/store/circuit.js';
import { encode, PacketType } from '../src/wire/header.js';
import { createLogger } from '../src/util/log.js';

const ROUTER_IP = '10.0.0.1';
const ROUTER_PORT = 4000;

/** Ethernet + IPv4 + UDP around an ARROW datagram, from 10.0.0.9:5555 to the router. */
function frame(arrow: Buffer): Buffer {
  const f = Buffer.alloc(42 + arrow.length);
  Buffer.from('020000000001020000000002', 'hex').copy(f, 0);
  f.writeUInt16BE(0x0800, 12);
  const ip = f.subarray(14, 34);
  ip[0] = 0x45;
  ip.writeUInt16BE(28 + arrow.length, 2);
  ip[8] = 64;
  ip[9] = 17;
  Buffer.from([10, 0, 0, 9, 10, 0, 0, 1]).copy(ip, 12);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += ip.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  ip.writeUInt16BE(~sum & 0xffff, 10);
  f.writeUInt16BE(5555, 34);
  f.writeUInt16BE(ROUTER_PORT, 36);
  f.writeUInt16BE(8 + arrow.length, 38);
  arrow.copy(f, 42);
  return f;
}

const AUTH = '11'.repeat(16);
const NEXT_AUTH = '22'.repeat(16);
const HOP_A = '10.0.0.20:6000';
const HOP_B = '10.0.0.21:6000';

function record(over: Partial<Circuit> = {}): Circuit {
  return {
    auth: AUTH,
    owner: 'acme',
    ingressPop: 'ams',
    egressPop: 'ams',
    bandwidthMbps: 1000,
    internalAuth: '33'.repeat(16),
    internalRouters: [],
    action: { kind: 'forward', next: { addresses: [HOP_A, HOP_B], auth: NEXT_AUTH } },
    createdAt: '2026-12-01T00:00:00.000Z',
    revision: 1,
    ...over,
  };
}

let seq = 0n;
/** Bytes of the ARROW datagrams the program sent on. */
let sentBytes = 0;
/** One DATA packet of the circuit through the program: its verdict and where it went. */
function send(prog: KernelProgram, payload = 100): { verdict: string; to: string } {
  const arrow = encode({
    type: PacketType.Data,
    hopLimit: 8,
    authenticator: Buffer.from(AUTH, 'hex'),
    sequence: seq++,
    payload: new Uint8Array(payload),
  });
  const r = prog.testRun(frame(arrow));
  const out = r.frame;
  const to = `${[...out.subarray(30, 34)].join('.')}:${out.readUInt16BE(36)}`;
  const verdict = verdictOf('xdp', r.action);
  if (verdict === 'sent') sentBytes += arrow.length;
  return { verdict, to };
}

/**
 * The program in test mode, a table whose dead neighbours are `dead`, mirrored into the program's
 * maps; `writes` counts map updates (each entry of a batch as one) and batches.
 */
function rig(maxCircuits: number): {
  prog: KernelProgram;
  dead: Set<string>;
  table: ForwardingTable;
  mirror: KernelMirror;
  writes: { updates: number; batches: number };
} {
  if (process.getuid?.() !== 0)
    assert.fail('test/kernel-mirror.test.ts loads BPF: it needs root; run `npm test` as root');
  const prog = KernelProgram.load({ testMode: true, maxCircuits, maxTagged: 4 });
  prog.setAddress(ROUTER_IP, ROUTER_PORT);
  const dead = new Set<string>();
  const table = new ForwardingTable('ams', (k) => dead.has(k));
  const mirror = new KernelMirror(prog, createLogger('test-mirror'));
  table.observer = mirror;
  const writes = { updates: 0, batches: 0 };
  const update = prog.update.bind(prog);
  prog.update = (...args: Parameters<KernelProgram['update']>): void => {
    writes.updates++;
    update(...args);
  };
  const updateBatch = prog.updateBatch.bind(prog);
  prog.updateBatch = (...args: Parameters<KernelProgram['updateBatch']>): void => {
    writes.batches++;
    writes.updates += args[3];
    updateBatch(...args);
  };
  return { prog, dead, table, mirror, writes };
}

test('kernel mirror (needs root): the table drives the maps; a repair is one map update; kernel counts fold into the table once', () => {
  const { prog, dead, table, mirror, writes } = rig(16);
  try {
    // The snapshot goes into the maps: DATA goes to the active next hop with its authenticator.
    table.replaceAll([record()], 1);
    assert.equal(mirror.size, 1);
    let r = send(prog);
    assert.deepEqual([r.verdict, r.to], ['sent', HOP_A]);

    // A repair moves the hop in the map: one update for the circuit, and DATA follows at once.
    dead.add(HOP_A);
    writes.updates = 0;
    writes.batches = 0;
    const { moved } = table.repairNeighbour(HOP_A);
    assert.equal(moved.length, 1);
    assert.equal(writes.updates, 1, 'a repair is one map update per circuit');
    assert.equal(writes.batches, 1, '...written in one batch with the rest of the repair');
    r = send(prog);
    assert.deepEqual([r.verdict, r.to], ['sent', HOP_B]);

    // The store's record of the repair (another router made it) moves it back the same way.
    dead.clear();
    writes.updates = 0;
    writes.batches = 0;
    table.put(record({ active: { next: 0 }, revision: 2 }));
    assert.equal(writes.updates, 1, 'a recorded active hop is one map update');
    r = send(prog);
    assert.equal(r.to, HOP_A);
    r = send(prog, 300);
    assert.equal(r.verdict, 'sent');

    // The kernel's counts (3 packets forwarded, plus the first one: 4) reach the table's counters once.
    mirror.fold();
    let c = table.snapshotCounters()[AUTH]!;
    assert.equal(c.packets, 4);
    assert.equal(c.inPackets, 4, 'counted in at the ingress');
    assert.equal(c.outPackets, 4, 'and out: a forward leaves the ISP');
    assert.equal(c.inBytes, sentBytes, 'in bytes: the datagrams as they arrived');
    assert.equal(c.outBytes, sentBytes, 'out bytes: no tag to pop');
    mirror.fold();
    assert.equal(table.snapshotCounters()[AUTH]!.packets, 4, 'a second fold adds nothing');

    // Re-chained to something only the Node path does: out of the kernel, its counts kept.
    table.put(record({ action: { kind: 'deliver-udp', target: '10.0.0.30:7000' }, revision: 3 }));
    assert.equal(mirror.size, 0);
    assert.deepEqual(mirror.refusals(), { 'deliver-udp circuits are delivered by the Node router': 1 });
    assert.equal(send(prog).verdict, 'pass', 'DATA goes up to the Node path');
    c = table.snapshotCounters()[AUTH]!;
    assert.equal(c.packets, 4, 'the kernel counts were folded before the circuit left the kernel');

    // Back into the kernel, then deleted: the map entry goes with the table's.
    table.put(record({ revision: 4 }));
    assert.equal(send(prog).verdict, 'sent');
    mirror.fold();
    assert.equal(table.snapshotCounters()[AUTH]!.packets, 5);
    table.apply({ type: 'delete', revision: 5, auth: AUTH });
    assert.equal(mirror.size, 0);
    assert.deepEqual(mirror.refusals(), {});
    assert.equal(send(prog).verdict, 'pass', 'an unknown authenticator goes up');

    // A record the table rejects takes the circuit out of the kernel too.
    table.put(record({ revision: 6 }));
    assert.equal(mirror.size, 1);
    table.put(
      record({ revision: 7, action: { kind: 'forward', next: { addresses: ['nowhere'], auth: NEXT_AUTH } } }),
    );
    assert.ok(table.rejected.has(AUTH));
    assert.equal(mirror.size, 0);
    assert.equal(send(prog).verdict, 'pass');
  } finally {
    mirror.close();
  }
});

test('kernel mirror (needs root): a repair of 200 circuits is one batch, and each circuit’s DATA goes to its own new hop', () => {
  const { prog, dead, table, mirror, writes } = rig(256);
  try {
    // More than the staging area starts with (64), each circuit with its own standby address.
    const circuits = Array.from({ length: 200 }, (_, i) => {
      const auth = `c${i.toString(16).padStart(31, '0')}`;
      const standby = `10.0.1.${i % 250}:${7000 + i}`;
      return record({
        auth,
        action: { kind: 'forward', next: { addresses: [HOP_A, standby], auth: NEXT_AUTH } },
      });
    });
    table.replaceAll(circuits, 1);
    assert.equal(mirror.size, 200);
    dead.add(HOP_A);
    assert.equal(table.repairNeighbour(HOP_A).moved.length, 200);
    assert.equal(writes.batches, 1, 'one BPF_MAP_UPDATE_BATCH for the whole repair');
    for (const [i, c] of circuits.entries()) {
      const arrow = encode({
        type: PacketType.Data,
        hopLimit: 8,
        authenticator: Buffer.from(c.auth, 'hex'),
        sequence: BigInt(i),
        payload: new Uint8Array(10),
      });
      const out = prog.testRun(frame(arrow)).frame;
      assert.equal(
        `${[...out.subarray(30, 34)].join('.')}:${out.readUInt16BE(36)}`,
        `10.0.1.${i % 250}:${7000 + i}`,
      );
    }
  } finally {
    mirror.close();
  }
});

test('addDelta adds what the kernel counted since the last fold, by reason too', () => {
  const into = newCircuitCounters();
  into.packets = 10;
  into.drops = { 'send-error': 1 };
  const before = { ...newCircuitCounters(), packets: 3, dropped: 1, drops: { 'over-rate': 1 } };
  const now = { ...newCircuitCounters(), packets: 7, dropped: 3, drops: { 'over-rate': 2, replay: 1 } };
  addDelta(into, before, now);
  assert.equal(into.packets, 14);
  assert.equal(into.dropped, 2);
  assert.deepEqual(into.drops, { 'send-error': 1, 'over-rate': 1, replay: 1 });
});
