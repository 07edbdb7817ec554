import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileCircuit, CompileError, ForwardingTable, newCircuitCounters } from '../src/router/table.js';
import { DataPlane, type Output } from '../src/router/dataplane.js';
import type { Circuit } from '../src/store/circuit.js';
import { MemoryStore } from '../src/store/memory.js';
import { encode, PacketType } from '../src/wire/header.js';
import { authToBytes, newAuthenticator } from '../src/wire/authenticator.js';

function circuit(over: Partial<Circuit> = {}): Circuit {
  return {
    auth: newAuthenticator(),
    owner: 'acme',
    ingressPop: 'ams',
    egressPop: 'fra',
    bandwidthMbps: 10,
    internalAuth: newAuthenticator(),
    internalRouters: ['127.0.0.21:4000', '127.0.0.22:4000'],
    action: { kind: 'forward', next: { addresses: ['127.0.0.31:4000'], auth: newAuthenticator() } },
    createdAt: new Date().toISOString(),
    revision: 1,
    ...over,
  };
}

const forwardTo = (addresses: string[]): Partial<Circuit> => ({
  action: { kind: 'forward', next: { addresses, auth: newAuthenticator() } },
});

/** Records that a router cannot compile, with what its reason must say. */
const BAD: Array<{ name: string; pop: string; over: Partial<Circuit>; reason: RegExp }> = [
  {
    name: 'port above 65535',
    pop: 'fra',
    over: forwardTo(['1.2.3.4:70000']),
    reason: /port 70000 out of range/,
  },
  { name: 'port 99999', pop: 'fra', over: forwardTo(['127.0.0.1:99999']), reason: /port 99999 out of range/ },
  { name: 'port 0', pop: 'fra', over: forwardTo(['127.0.0.1:0']), reason: /port 0 is not a destination/ },
  { name: 'host name', pop: 'fra', over: forwardTo(['example.com:5']), reason: /is not an IPv4 literal/ },
  { name: 'bad IPv4', pop: 'fra', over: forwardTo(['999.1.1.1:5']), reason: /is not an IPv4 literal/ },
  { name: 'no port', pop: 'fra', over: forwardTo(['127.0.0.1']), reason: /expected IPv4:PORT/ },
  { name: 'no addresses', pop: 'fra', over: forwardTo([]), reason: /no addresses/ },
  {
    name: 'unknown action kind',
    pop: 'fra',
    over: { action: { kind: 'teleport' } as unknown as Circuit['action'] },
    reason: /unknown action kind "teleport"/,
  },
  {
    name: 'missing action',
    pop: 'fra',
    over: { action: undefined as unknown as Circuit['action'] },
    reason: /no action/,
  },
  {
    name: 'bad next authenticator',
    pop: 'fra',
    over: { action: { kind: 'forward', next: { addresses: ['127.0.0.31:4000'], auth: 'zz' } } },
    reason: /next hop authenticator/,
  },
  {
    name: 'bad internal authenticator',
    pop: 'fra',
    over: { internalAuth: 'nope' },
    reason: /internal authenticator/,
  },
  {
    name: 'bad internal router',
    pop: 'ams',
    over: { internalRouters: ['127.0.0.21:4000', '10.0.0.1:65536'] },
    reason: /internal hop address 1: .*port 65536 out of range/,
  },
  {
    name: 'bad deliver-udp target',
    pop: 'fra',
    over: { action: { kind: 'deliver-udp', target: '127.0.0.1:70000' } },
    reason: /deliver-udp target/,
  },
  {
    name: 'missing internal routers',
    pop: 'ams',
    over: { internalRouters: undefined as unknown as string[] },
    reason: /internal hop: no addresses/,
  },
];

for (const bad of BAD) {
  test(`compile rejects a record with ${bad.name}, naming the reason`, () => {
    assert.throws(
      () => compileCircuit(circuit(bad.over), bad.pop, newCircuitCounters()),
      (err: Error) => err instanceof CompileError && bad.reason.test(err.message),
    );
  });
}

test('a record that is not an object, or whose authenticator is bad, is rejected', () => {
  assert.throws(() => compileCircuit(null as unknown as Circuit, 'fra', newCircuitCounters()), CompileError);
  assert.throws(
    () => compileCircuit(circuit({ auth: 'short' }), 'fra', newCircuitCounters()),
    /circuit authenticator/,
  );
});

test("a bad address in a hop this router does not use is not this router's concern", () => {
  // The ingress PoP only compiles the internal hop: the egress's next hop is for fra's routers to judge.
  const c = circuit(forwardTo(['1.2.3.4:70000']));
  assert.equal(compileCircuit(c, 'ams', newCircuitCounters()).length, 1);
  assert.equal(compileCircuit(c, 'lon', newCircuitCounters()).length, 0);
});

class Recorder implements Output {
  sent: string[] = [];
  send(_p: Buffer, port: number, host: string): void {
    this.sent.push(`${host}:${port}`);
  }
  deliverUdp(): void {}
  deliverIp(): boolean {
    return false;
  }
}

function data(auth: string): Buffer {
  return encode({
    type: PacketType.Data,
    hopLimit: 64,
    authenticator: authToBytes(auth),
    sequence: 1n,
    payload: Buffer.from('x'),
  });
}

test('the table skips a bad record, keeps forwarding the rest, and reports the rejection', () => {
  const table = new ForwardingTable('fra');
  const seen: string[] = [];
  table.onReject = (auth, reason) => seen.push(`${auth} ${reason}`);
  const good = circuit();
  const bad = circuit(forwardTo(['1.2.3.4:70000']));
  table.replaceAll([good, bad], 7);
  assert.equal(table.circuits, 1);
  assert.equal(table.rejected.size, 1);
  assert.match(table.rejected.get(bad.auth)!, /address "1\.2\.3\.4:70000": port 70000 out of range/);
  assert.deepEqual(seen.length, 1);
  const r = table.snapshotRejections();
  assert.equal(r.count, 1);
  assert.deepEqual(Object.keys(r.circuits), [bad.auth]);

  const out = new Recorder();
  new DataPlane(table, out).process(data(good.internalAuth), 5000, '127.0.0.21');
  assert.deepEqual(out.sent, ['127.0.0.31:4000']);
});

test('a valid put replaces the rejection; a bad put withdraws the old route; a delete clears it', () => {
  const table = new ForwardingTable('fra');
  const c = circuit();
  const bad = { ...c, ...forwardTo(['example.com:5']), revision: 2 };
  assert.match(table.put(bad) ?? '', /"example\.com" is not an IPv4 literal/);
  assert.equal(table.has(c.auth), false);

  assert.equal(table.put({ ...c, revision: 3 }), undefined);
  assert.equal(table.rejected.size, 0);
  assert.equal(table.has(c.auth), true);

  // Every router of the PoP, restarted or not, must agree with the store: the old route goes too.
  const removed: string[] = [];
  table.onRemove = (a) => removed.push(a);
  table.apply({ type: 'put', revision: 4, circuit: { ...bad, revision: 4 } });
  assert.equal(table.has(c.auth), false);
  assert.deepEqual(removed, [c.auth]);
  assert.equal(table.rejected.size, 1);

  table.apply({ type: 'delete', revision: 5, auth: c.auth });
  assert.equal(table.rejected.size, 0);

  table.put(bad);
  table.apply({ type: 'resync', revision: 6, circuits: [] });
  assert.equal(table.rejected.size, 0, 'a resync without the record clears its rejection');
});

test('a malformed record (wrong types) is rejected, not thrown, even over a compiled one', () => {
  const table = new ForwardingTable('fra');
  const c = circuit();
  table.put(c);
  const broken = { ...c, internalRouters: 5, action: { kind: 'forward', next: null } } as unknown as Circuit;
  const reason = table.put(broken);
  assert.ok(reason, 'rejected');
  assert.equal(table.circuits, 0);
});

test('published rejections are bounded; the count covers all', () => {
  const table = new ForwardingTable('fra');
  for (let i = 0; i < 300; i++) table.put(circuit(forwardTo(['127.0.0.1:0'])));
  const r = table.snapshotRejections(10);
  assert.equal(r.count, 300);
  assert.equal(Object.keys(r.circuits).length, 10);
});

test('a watch listener that throws is counted and reported; the writer and the watch go on', async () => {
  const store = new MemoryStore();
  const reports: string[] = [];
  store.background.report = (err, context) => reports.push(`${context}: ${err.message}`);
  const got: number[] = [];
  const w = store.watch(0, (e) => {
    got.push(e.revision);
    if (e.revision === 1) throw new Error('boom');
  });
  await new Promise((r) => setImmediate(r));
  const { revision: _r, createdAt: _c, ...input } = circuit();
  await store.create(input);
  await store.create({ ...input, auth: newAuthenticator() });
  w.close();
  assert.deepEqual(got, [1, 2]);
  assert.equal(store.background.count, 1);
  assert.match(reports[0]!, /^watch listener: put at revision 1: boom$/);
});
