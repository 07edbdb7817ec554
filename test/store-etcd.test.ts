import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { EtcdCluster } from '../src/lab/etcd-cluster.js';
import { EtcdStore } from '../src/store/etcd.js';
import { CapacityError } from '../src/store/store.js';
import { circuitInput, collect, storeConformance } from './helpers/store-conformance.js';

// A real single-member etcd cluster on loopback ports, for the same conformance suite SQLite passes.
let cluster: EtcdCluster;
before(async () => {
  cluster = await EtcdCluster.start({ members: 1 });
});
after(async () => {
  await cluster?.stop();
});

const open = async (): Promise<EtcdStore> =>
  new EtcdStore({ endpoints: cluster.endpoints, prefix: `/arrow/test-${randomBytes(4).toString('hex')}/` });

storeConformance('etcd', open);

test('etcd: keys are namespaced per ISP', async () => {
  const a = new EtcdStore({ endpoints: cluster.endpoints, prefix: '/arrow/isp-a/' });
  const b = new EtcdStore({ endpoints: cluster.endpoints, prefix: '/arrow/isp-b/' });
  try {
    const c = await a.create(circuitInput());
    assert.ok(await a.get(c.auth));
    assert.equal(await b.get(c.auth), undefined);
    assert.deepEqual(await b.list(), []);
  } finally {
    await a.close();
    await b.close();
  }
});

test('etcd: a watcher behind a compaction gets a full resync, not a gap', async () => {
  const s = await open();
  try {
    const keep = await s.create(circuitInput());
    const gone = await s.create(circuitInput());
    await s.delete(gone.auth);
    await s.compact();
    const [ev] = await collect(s, keep.revision - 1, 1);
    assert.equal(ev!.type, 'resync');
    assert.ok(ev!.type === 'resync' && ev!.circuits.length === 1 && ev!.circuits[0]!.auth === keep.auth);
  } finally {
    await s.close();
  }
});

test('etcd: concurrent creates on one PoP pair never oversell it', async () => {
  const stores = [await open(), await open()];
  // Two clients on one prefix, as two portals of one ISP would be.
  const prefix = stores[0]!.opts.prefix;
  await stores[1]!.close();
  stores[1] = new EtcdStore({ endpoints: cluster.endpoints, prefix });
  try {
    const results = await Promise.allSettled(
      Array.from({ length: 60 }, (_, i) =>
        stores[i % 2]!.create(circuitInput({ bandwidthMbps: 5 }), { capacityMbps: 100 }),
      ),
    );
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    const refused = results.filter(
      (r) => r.status === 'rejected' && r.reason instanceof CapacityError,
    ).length;
    assert.equal(ok, 20);
    assert.equal(refused, 40);
    const sold = (await stores[0]!.list()).reduce((t, c) => t + c.bandwidthMbps, 0);
    assert.equal(sold, 100);
  } finally {
    await Promise.all(stores.map((s) => s.close()));
  }
});

test('etcd: concurrent creates are group-committed, and watchers see every circuit of a batch', async () => {
  const s = await open();
  try {
    const snap = await s.snapshot();
    const events = collect(s, snap.revision, 40);
    const created = await Promise.all(
      Array.from({ length: 40 }, () => s.create(circuitInput({ bandwidthMbps: 1 }))),
    );
    const revisions = new Set(created.map((c) => c.revision));
    assert.ok(revisions.size < 40, `batched: ${revisions.size} transactions for 40 creates`);
    const got = await events;
    assert.deepEqual(
      new Set(got.map((e) => (e.type === 'put' ? e.circuit.auth : ''))),
      new Set(created.map((c) => c.auth)),
    );
    for (const c of created) assert.equal((await s.get(c.auth))!.revision, c.revision);
  } finally {
    await s.close();
  }
});
