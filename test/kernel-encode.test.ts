// The kernel path's map values, encoded and decoded in TypeScript: pure, no BPF needed. The layout
// must match the C structs of src/router/bpf/arrow.bpf.c (KernelProgram.load also checks the sizes
// against the object, and test/bpf-differential.test.ts runs the program on them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ForwardingTable } from '../src/router/table.js';
import {
  CF_DECAP,
  CF_INGRESS,
  CF_POLICE,
  CF_REWRITE,
  CF_TAGGED,
  CIRCUIT_VALUE_SIZE,
  KernelKind,
  ZERO_SLOT,
  circuitCounters,
  decodeSlot,
  encodeCircuit,
  encodeConfig,
  encodePrefixKeys,
  encodeTagGuard,
  foldSlot,
  kernelRefusal,
  SLOT_VALUE_SIZE,
} from '../src/router/kernel.js';
import type { Circuit } from '../src/store/circuit.js';

function circuit(over: Partial<Circuit> = {}): Circuit {
  return {
    auth: 'aa'.repeat(16),
    owner: 'acme',
    ingressPop: 'ams',
    egressPop: 'ams',
    bandwidthMbps: 8,
    burstBytes: 3000,
    internalAuth: 'bb'.repeat(16),
    internalRouters: [],
    action: {
      kind: 'forward',
      next: { addresses: ['192.0.2.7:4000', '192.0.2.8:4001'], auth: 'cc'.repeat(16) },
    },
    createdAt: '2026-12-01T00:00:00.000Z',
    revision: 1,
    ...over,
  };
}

function entryOf(c: Circuit, pop = 'ams') {
  const t = new ForwardingTable(pop);
  assert.equal(t.put(c), undefined);
  return t.entriesOf(c.auth)[0]!;
}

test('encodeCircuit: slot, kind, flags, next hop (network order), authenticator, policing (struct arrow_circuit)', () => {
  const v = encodeCircuit(entryOf(circuit({ tagKey: 'dd'.repeat(16), active: { next: 1 } })), 7);
  assert.equal(v.length, CIRCUIT_VALUE_SIZE);
  assert.equal(v.readUInt32LE(0), 7);
  assert.equal(v[4], KernelKind.forward);
  assert.equal(v[5], CF_INGRESS | CF_POLICE | CF_TAGGED | CF_REWRITE);
  assert.equal(v.readUInt16BE(6), 4001, 'the active address is the second');
  assert.deepEqual([...v.subarray(8, 12)], [192, 0, 2, 8]);
  assert.equal(v.subarray(12, 28).toString('hex'), 'cc'.repeat(16));
  // 8 Mb/s: 1000 ns per byte, × 2^16; a 3000-byte burst is 3 ms.
  assert.equal(v.readBigUInt64LE(32), 1000n * 65536n);
  assert.equal(v.readBigUInt64LE(40), 3_000_000n);
});

test('encodeCircuit: an egress entry of a circuit from another PoP is neither ingress nor policed; no authenticator, no rewrite', () => {
  const c = circuit({
    ingressPop: 'fra',
    action: { kind: 'deliver-endpoint', addresses: ['192.0.2.9:5000'] },
  });
  const v = encodeCircuit(entryOf(c), 0);
  assert.equal(v[4], KernelKind['deliver-endpoint']);
  assert.equal(v[5], 0);
  assert.equal(v.readBigUInt64LE(32), 0n);
});

test('kernelRefusal: deliver-udp and IPv6 next hops stay on the Node path', () => {
  assert.equal(kernelRefusal(entryOf(circuit())), undefined);
  assert.match(
    kernelRefusal(entryOf(circuit({ action: { kind: 'deliver-udp', target: '192.0.2.1:53' } })))!,
    /deliver-udp/,
  );
  assert.match(
    kernelRefusal(
      entryOf(circuit({ action: { kind: 'deliver-endpoint', addresses: ['[2001:db8::1]:4000'] } })),
    )!,
    /IPv4/,
  );
  assert.throws(() =>
    encodeCircuit(entryOf(circuit({ action: { kind: 'deliver-udp', target: '192.0.2.1:53' } })), 0),
  );
});

test('encodeCircuit and encodePrefixKeys: a deliver-ip circuit has no next hop, CF_DECAP only when the egress decapsulates it, and its IPv4 prefixes as LPM keys (length incl. slot and role, slot big-endian, role, address)', () => {
  const e = entryOf(
    circuit({
      ingressPop: 'fra',
      action: { kind: 'deliver-ip', prefixes: ['198.51.100.0/24', '2001:db8::/32'], source: '10.99.0.0/16' },
    }),
  );
  assert.equal(kernelRefusal(e), undefined, 'the kernel takes deliver-ip');
  const v = encodeCircuit(e, 5, true);
  assert.equal(v[4], KernelKind['deliver-ip']);
  assert.equal(v[5], CF_DECAP);
  // Entering the ISP here too (policed): its DATA stays with one replay window and bucket, in Node.
  const guarded = entryOf(
    circuit({ action: { kind: 'deliver-ip', prefixes: ['198.51.100.0/24'], source: '10.99.0.0/16' } }),
  );
  assert.equal(encodeCircuit(guarded, 5, true)[5], CF_INGRESS | CF_POLICE);
  assert.ok(v.subarray(6, 28).equals(Buffer.alloc(22)), 'no next hop');
  assert.equal(encodeCircuit(e, 5)[5]! & CF_DECAP, 0);
  assert.deepEqual(
    encodePrefixKeys(e as typeof e & { kind: 'deliver-ip' }, 5).map((k) => k.toString('hex')),
    ['40000000' + '00000005' + '00' + 'c6336400', '38000000' + '00000005' + '01' + '0a630000'],
    'IPv6 prefixes stay with the Node router',
  );
});

test('encodeTagGuard and encodeConfig: key at 16, an empty window; address, port, clock', () => {
  const g = encodeTagGuard(Buffer.from('0123456789abcdef0123456789abcdef', 'hex'));
  assert.equal(g.subarray(16, 32).toString('hex'), '0123456789abcdef0123456789abcdef');
  assert.ok(g.subarray(0, 16).equals(Buffer.alloc(16)) && g.subarray(32).equals(Buffer.alloc(256)));
  const c = encodeConfig('10.1.2.3', 4000, 5n);
  assert.equal(
    c.toString('hex'),
    '0a010203' + '0fa0' + '0000' + '00000000' + '00000000' + '0500000000000000',
  );
  const e = encodeConfig('10.1.2.3', 4000, 0n, 7);
  assert.equal(e.readUInt32LE(8), 7, 'the egress TUN ifindex at 8');
  assert.throws(() => encodeConfig('::1', 4000), /IPv4/);
});

test('foldSlot: the u32 drop counters fold across wraps; u64 counters are taken as read (property)', () => {
  fc.assert(
    fc.property(fc.array(fc.nat(0xffff_ffff), { minLength: 1, maxLength: 20 }), (steps) => {
      let raw = 0;
      let total = { ...ZERO_SLOT };
      let last = { ...ZERO_SLOT };
      let expected = 0;
      for (const step of steps) {
        expected += step;
        raw = (raw + step) >>> 0;
        const now = { ...ZERO_SLOT, replay: raw, packets: expected };
        total = foldSlot(total, last, now);
        last = now;
      }
      assert.equal(total.replay, expected);
      assert.equal(total.packets, expected);
    }),
  );
});

test('decodeSlot reads struct arrow_slot; circuitCounters gives the Node accounting', () => {
  const v = Buffer.alloc(SLOT_VALUE_SIZE);
  v.writeUInt32LE(2, 4); // hop_limit
  v.writeBigUInt64LE(10n, 16); // packets
  v.writeBigUInt64LE(1000n, 24); // bytes
  v.writeBigUInt64LE(840n, 32); // out_bytes (tags popped)
  v.writeBigUInt64LE(200n, 40); // hop_limit_bytes
  v.writeUInt32LE(3, 48);
  v.writeUInt32LE(4, 52);
  v.writeUInt32LE(5, 56);
  const s = decodeSlot(v);
  assert.deepEqual(circuitCounters(s, 'forward', true), {
    packets: 10,
    bytes: 1000,
    dropped: 14,
    inPackets: 12,
    inBytes: 1200,
    outPackets: 10,
    outBytes: 840,
    drops: { 'hop-limit': 2, 'over-rate': 3, 'bad-tag': 4, replay: 5 },
  });
  const internal = circuitCounters(s, 'internal', false);
  assert.equal(internal.inPackets, 0);
  assert.equal(internal.outPackets, 0);
  assert.equal(internal.outBytes, 0);
});
