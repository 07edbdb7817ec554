import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { DROP_REASONS, DataPlane, INGRESS_REFUSALS, type Output } from '../src/router/dataplane.js';
import { sipKey } from '../src/wire/siphash.js';
import { tagInto } from '../src/wire/tag.js';
import { ForwardingTable } from '../src/router/table.js';
import type { Circuit } from '../src/store/circuit.js';
import { decode, encode, PacketType } from '../src/wire/header.js';
import { authToBytes, newAuthenticator } from '../src/wire/authenticator.js';

/** Records what the data plane would put on the wire: a fake of the socket layer only. */
class Recorder implements Output {
  sent: { packet: Buffer; to: string }[] = [];
  udp: { circuit: string; payload: Buffer }[] = [];
  send(packet: Buffer, port: number, host: string, offset = 0): void {
    this.sent.push({ packet: Buffer.from(packet.subarray(offset)), to: `${host}:${port}` });
  }
  deliverUdp(entry: { circuit: string }, payload: Buffer): void {
    this.udp.push({ circuit: entry.circuit, payload: Buffer.from(payload) });
  }
  ip: { circuit: string; packet: Buffer }[] = [];
  /** Without an egress TUN the router refuses (no-egress): `egress` says whether this one has one. */
  egress = true;
  deliverIp(entry: { circuit: string }, packet: Buffer): boolean {
    if (this.egress) this.ip.push({ circuit: entry.circuit, packet: Buffer.from(packet) });
    return this.egress;
  }
}

function circuit(over: Partial<Circuit> = {}): Circuit {
  return {
    auth: newAuthenticator(),
    owner: 'acme',
    ingressPop: 'ams',
    egressPop: 'fra',
    bandwidthMbps: 10,
    internalAuth: newAuthenticator(),
    internalRouters: ['127.0.0.21:4000', '127.0.0.22:4000'],
    action: {
      kind: 'forward',
      next: { addresses: ['127.0.0.31:4000', '127.0.0.32:4000'], auth: newAuthenticator() },
    },
    createdAt: new Date().toISOString(),
    revision: 1,
    ...over,
  };
}

function data(auth: string, hopLimit = 64, payload = Buffer.from('hello')): Buffer {
  return encode({ type: PacketType.Data, hopLimit, authenticator: authToBytes(auth), sequence: 1n, payload });
}

test('ingress PoP router rewrites to the internal authenticator and sends to the egress PoP', () => {
  const c = circuit();
  const table = new ForwardingTable('ams');
  table.put(c);
  const out = new Recorder();
  new DataPlane(table, out).process(data(c.auth), 5000, '127.0.0.1');
  assert.equal(out.sent.length, 1);
  assert.equal(out.sent[0]!.to, '127.0.0.21:4000');
  const p = decode(out.sent[0]!.packet);
  assert.ok(p.ok);
  assert.equal(Buffer.from(p.packet.authenticator).toString('hex'), c.internalAuth);
  assert.equal(p.packet.hopLimit, 63);
  assert.equal(Buffer.from(p.packet.payload).toString(), 'hello');
});

test('egress PoP router forwards to the next ISP with the next authenticator', () => {
  const c = circuit();
  const table = new ForwardingTable('fra');
  table.put(c);
  const out = new Recorder();
  const dp = new DataPlane(table, out);
  dp.process(data(c.auth), 5000, '127.0.0.1');
  assert.equal(out.sent.length, 0, 'the customer authenticator is not valid at the egress PoP');
  assert.equal(dp.drops.counts['unknown-auth'], 1);
  dp.process(data(c.internalAuth), 5000, '127.0.0.21');
  assert.equal(out.sent[0]!.to, '127.0.0.31:4000');
  const p = decode(out.sent[0]!.packet);
  assert.ok(p.ok && c.action.kind === 'forward');
  assert.equal(Buffer.from(p.packet.authenticator).toString('hex'), c.action.next.auth);
  // An egress-PoP router: the packet leaves the ISP here (out), it entered elsewhere (no in).
  assert.deepEqual(table.snapshotCounters()[c.auth], {
    packets: 1,
    bytes: 33,
    dropped: 0,
    inPackets: 0,
    inBytes: 0,
    outPackets: 1,
    outBytes: 33,
    drops: {},
  });
});

test('deliver-udp hands the bare payload to the delivery socket', () => {
  const c = circuit({
    ingressPop: 'fra',
    egressPop: 'fra',
    internalAuth: '',
    internalRouters: [],
    action: { kind: 'deliver-udp', target: '127.0.0.9:7' },
  });
  const table = new ForwardingTable('fra');
  table.put(c);
  const out = new Recorder();
  new DataPlane(table, out).process(data(c.auth, 5, Buffer.from('payload!')), 1, '127.0.0.1');
  assert.deepEqual(out.udp, [{ circuit: c.auth, payload: Buffer.from('payload!') }]);
});

test('hop limit: a packet arriving with 1 is dropped and counted, never forwarded', () => {
  const c = circuit({ ingressPop: 'ams', egressPop: 'ams', internalAuth: '', internalRouters: [] });
  const table = new ForwardingTable('ams');
  table.put(c);
  const out = new Recorder();
  const dp = new DataPlane(table, out);
  dp.process(data(c.auth, 1), 1, '127.0.0.1');
  dp.process(data(c.auth, 0), 1, '127.0.0.1');
  assert.equal(out.sent.length, 0);
  assert.equal(dp.drops.counts['hop-limit'], 2);
  assert.equal(table.snapshotCounters()[c.auth]!.dropped, 2);
});

test('echo is answered to the sender; probes are acked to the previous hop and forwarded', () => {
  const c = circuit();
  const table = new ForwardingTable('ams');
  table.put(c);
  const out = new Recorder();
  const dp = new DataPlane(table, out);
  dp.process(
    encode({
      type: PacketType.Echo,
      hopLimit: 1,
      authenticator: new Uint8Array(16),
      sequence: 77n,
      payload: new Uint8Array(3),
    }),
    9,
    '127.0.0.5',
  );
  assert.equal(out.sent[0]!.to, '127.0.0.5:9');
  const reply = decode(out.sent[0]!.packet);
  assert.ok(reply.ok && reply.packet.type === PacketType.EchoReply && reply.packet.sequence === 77n);

  dp.process(
    encode({
      type: PacketType.Probe,
      hopLimit: 64,
      authenticator: authToBytes(c.auth),
      sequence: 5n,
      payload: new Uint8Array(0),
    }),
    9,
    '127.0.0.5',
  );
  const [ack, fwd] = out.sent.slice(1).map((s) => ({ ...s, p: decode(s.packet) }));
  assert.equal(ack!.to, '127.0.0.5:9');
  assert.ok(ack!.p.ok && ack!.p.packet.type === PacketType.ProbeAck && ack!.p.packet.sequence === 5n);
  assert.equal(fwd!.to, '127.0.0.21:4000');
  assert.ok(fwd!.p.ok && fwd!.p.packet.type === PacketType.Probe);
});

test('the packet loop survives arbitrary bytes and counts every drop (property)', () => {
  const c = circuit();
  const table = new ForwardingTable('ams');
  table.put(c);
  const out = new Recorder();
  const dp = new DataPlane(table, out);
  let n = 0;
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 120 }), (bytes) => {
      n++;
      dp.process(Buffer.from(bytes), 1, '127.0.0.1');
    }),
    { numRuns: 5000 },
  );
  // Random bytes are never a valid packet for a random 128-bit authenticator: all dropped, or echoed.
  assert.equal(dp.drops.total + dp.handled.echoes + dp.handled.probeAcks, n);
  assert.equal(dp.handled.data, 0);
});

test('re-chaining a circuit keeps its counters; deleting it releases it', () => {
  const c = circuit({ ingressPop: 'ams', egressPop: 'ams', internalAuth: '', internalRouters: [] });
  const table = new ForwardingTable('ams');
  const removed: string[] = [];
  table.onRemove = (a) => removed.push(a);
  table.apply({ type: 'put', revision: 1, circuit: c });
  const dp = new DataPlane(table, new Recorder());
  dp.process(data(c.auth), 1, '127.0.0.1');
  table.apply({
    type: 'put',
    revision: 2,
    circuit: {
      ...c,
      revision: 2,
      action: { kind: 'forward', next: { addresses: ['127.0.0.99:1'], auth: newAuthenticator() } },
    },
  });
  dp.process(data(c.auth), 1, '127.0.0.1');
  assert.equal(table.snapshotCounters()[c.auth]!.packets, 2);
  table.apply({ type: 'delete', revision: 3, auth: c.auth });
  assert.deepEqual(removed, [c.auth]);
  assert.equal(table.size, 0);
  assert.equal(table.revision, 3);
});

// --- Policing and the per-packet tag at the ingress (docs/wire.md) ---

/** A DATA packet with tags for `chain` (each ISP's circuit authenticator and key), in path order. */
function taggedData(
  auth: string,
  seq: bigint,
  chain: { auth: string; key: string }[],
  payload = Buffer.from('hi'),
): Buffer {
  const buf = encode({
    type: PacketType.Data,
    hopLimit: 64,
    authenticator: authToBytes(auth),
    sequence: seq,
    tags: chain.map(() => new Uint8Array(16)),
    payload,
  });
  const seqBytes = buf.subarray(20, 28);
  chain.forEach((c, i) =>
    tagInto(
      sipKey(Buffer.from(c.key, 'hex')),
      authToBytes(c.auth),
      0,
      seqBytes,
      0,
      buf,
      28 + 16 * chain.length,
      buf.length,
      buf,
      28 + 16 * i,
    ),
  );
  return buf;
}

test('policing: DATA over the bought rate is dropped as over-rate at the ingress, never counted in', () => {
  const c = circuit({ bandwidthMbps: 8, burstBytes: 3000 });
  const table = new ForwardingTable('ams');
  table.put(c);
  const out = new Recorder();
  let now = 1e9;
  const dp = new DataPlane(table, out, undefined, undefined, () => now);
  const payload = Buffer.alloc(972); // 1000-byte datagrams
  for (let i = 0; i < 5; i++) dp.process(data(c.auth, 64, payload), 5000, '127.0.0.1');
  assert.equal(out.sent.length, 3, 'a 3000-byte burst');
  assert.equal(dp.drops.counts['over-rate'], 2);
  now += 1_000_000; // 1 ms at 8 Mb/s: 1000 bytes of credit
  dp.process(data(c.auth, 64, payload), 5000, '127.0.0.1');
  assert.equal(out.sent.length, 4);
  const k = table.snapshotCounters()[c.auth]!;
  assert.equal(k.drops['over-rate'], 2);
  assert.equal(k.inPackets, 4, 'refused packets are not in: not the ISP loss');
  // The egress PoP does not police: the internal hop carries what the ingress admitted.
  const egress = new ForwardingTable('fra');
  egress.put(c);
  const eout = new Recorder();
  const edp = new DataPlane(egress, eout, undefined, undefined, () => 1e9);
  for (let i = 0; i < 10; i++) edp.process(data(c.internalAuth, 64, payload), 5000, '127.0.0.21');
  assert.equal(eout.sent.length, 10);
});

test('tags: the ingress verifies its tag, pops it, and refuses forged, missing and replayed ones', () => {
  const key = randomBytes(16).toString('hex');
  const c = circuit({ tagKey: key });
  const next = { auth: newAuthenticator(), key: randomBytes(16).toString('hex') }; // the next ISP's
  const table = new ForwardingTable('ams');
  table.put(c);
  const out = new Recorder();
  const dp = new DataPlane(table, out, undefined, undefined, () => 1e9);
  const chain = [{ auth: c.auth, key }, next];

  const good = taggedData(c.auth, 7n, chain);
  const nextTag = Buffer.from(good.subarray(44, 60));
  dp.process(Buffer.from(good), 5000, '127.0.0.1');
  assert.equal(out.sent.length, 1);
  const p = decode(out.sent[0]!.packet);
  assert.ok(p.ok);
  assert.equal(p.packet.tags?.length, 1, 'our tag popped, the next ISP’s kept');
  assert.deepEqual(Buffer.from(p.packet.tags![0]!), nextTag);
  assert.equal(Buffer.from(p.packet.payload).toString(), 'hi');
  assert.equal(p.packet.hopLimit, 63);

  dp.process(Buffer.from(good), 5000, '127.0.0.1');
  assert.equal(dp.drops.counts.replay, 1, 'the same packet again');
  const forged = taggedData(c.auth, 8n, [{ auth: c.auth, key: randomBytes(16).toString('hex') }, next]);
  dp.process(forged, 5000, '127.0.0.1');
  const altered = taggedData(c.auth, 9n, chain);
  altered[altered.length - 1] = altered[altered.length - 1]! ^ 1;
  dp.process(altered, 5000, '127.0.0.1');
  dp.process(data(c.auth), 5000, '127.0.0.1');
  assert.equal(dp.drops.counts['bad-tag'], 3, 'wrong key, altered payload, no tag at all');
  // A forged packet did not move the window: the honest 9 and 8 still pass.
  dp.process(taggedData(c.auth, 9n, chain), 5000, '127.0.0.1');
  dp.process(taggedData(c.auth, 8n, chain), 5000, '127.0.0.1');
  assert.equal(out.sent.length, 3);
  const k = table.snapshotCounters()[c.auth]!;
  assert.deepEqual(k.drops, { replay: 1, 'bad-tag': 3 });
  assert.equal(k.inPackets, 3);
});

test('tags: forged packets cannot drain the owner’s bucket (the tag is checked before policing)', () => {
  const key = randomBytes(16).toString('hex');
  const c = circuit({ tagKey: key, bandwidthMbps: 1, burstBytes: 100 });
  const table = new ForwardingTable('ams');
  table.put(c);
  const out = new Recorder();
  const dp = new DataPlane(table, out, undefined, undefined, () => 1e9);
  const wrong = randomBytes(16).toString('hex');
  for (let i = 0; i < 1000; i++)
    dp.process(taggedData(c.auth, BigInt(i), [{ auth: c.auth, key: wrong }]), 5000, '127.0.0.1');
  assert.equal(dp.drops.counts['bad-tag'], 1000);
  dp.process(taggedData(c.auth, 1n, [{ auth: c.auth, key }]), 5000, '127.0.0.1');
  assert.equal(out.sent.length, 1, 'the owner’s packet still finds a full bucket');
});

test('tags: a router that checks none forwards tagged packets whole; deliver-udp strips the whole stack', () => {
  const c = circuit(); // no tags required here
  const table = new ForwardingTable('ams');
  table.put(c);
  const out = new Recorder();
  const dp = new DataPlane(table, out, undefined, undefined, () => 1e9);
  const chain = [{ auth: newAuthenticator(), key: randomBytes(16).toString('hex') }];
  const pkt = taggedData(c.auth, 1n, chain);
  dp.process(Buffer.from(pkt), 5000, '127.0.0.1');
  const p = decode(out.sent[0]!.packet);
  assert.ok(p.ok);
  assert.deepEqual(Buffer.from(p.packet.tags![0]!), pkt.subarray(28, 44));

  const u = circuit({
    egressPop: 'ams',
    internalAuth: '',
    internalRouters: [],
    action: { kind: 'deliver-udp', target: '127.0.0.9:53' },
  });
  const t2 = new ForwardingTable('ams');
  t2.put(u);
  const out2 = new Recorder();
  new DataPlane(t2, out2, undefined, undefined, () => 1e9).process(
    taggedData(u.auth, 1n, [...chain, ...chain]),
    5000,
    '127.0.0.1',
  );
  assert.equal(out2.udp[0]!.payload.toString(), 'hi');
});

test('DataPlane: every ingress refusal is a known drop reason', () => {
  for (const r of INGRESS_REFUSALS) assert.ok(DROP_REASONS.includes(r));
});
