import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChangeEvent, CircuitInput } from '../../src/store/circuit.js';
import {
  CapacityError,
  ConflictError,
  IdempotencyMismatchError,
  InvalidRecordError,
  NotFoundError,
  type CircuitStore,
} from '../../src/store/store.js';
import { newAuthenticator } from '../../src/wire/authenticator.js';

export function circuitInput(over: Partial<CircuitInput> = {}): CircuitInput {
  return {
    auth: newAuthenticator(),
    owner: 'acme',
    ingressPop: 'ams',
    egressPop: 'fra',
    bandwidthMbps: 10,
    internalAuth: newAuthenticator(),
    internalRouters: ['127.0.0.21:4000'],
    action: { kind: 'deliver-udp', target: '127.0.0.9:7' },
    ...over,
  };
}

/** Waits for `n` events from a watch, or fails after `ms`. */
export function collect(store: CircuitStore, after: number, n: number, ms = 5000): Promise<ChangeEvent[]> {
  return new Promise((resolve, reject) => {
    const got: ChangeEvent[] = [];
    const timer = setTimeout(() => {
      w.close();
      reject(new Error(`got ${got.length} of ${n} events: ${JSON.stringify(got.map((e) => e.type))}`));
    }, ms);
    const w = store.watch(after, (e) => {
      got.push(e);
      if (got.length === n) {
        clearTimeout(timer);
        w.close();
        resolve(got);
      }
    });
  });
}

/**
 * One conformance suite for every CircuitStore backend: the same behaviour is
 * required of memory, SQLite and (later) etcd.
 */
export function storeConformance(name: string, open: () => Promise<CircuitStore>): void {
  const withStore = (title: string, fn: (s: CircuitStore) => Promise<void>): void => {
    test(`${name}: ${title}`, async () => {
      const s = await open();
      try {
        await fn(s);
      } finally {
        await s.close();
      }
    });
  };

  withStore('refuses a record no router could compile, and writes nothing', async (s) => {
    for (const action of [
      { kind: 'forward' as const, next: { addresses: ['1.2.3.4:70000'], auth: newAuthenticator() } },
      { kind: 'deliver-udp' as const, target: 'example.com:5' },
      { kind: 'deliver-endpoint' as const, addresses: ['127.0.0.1:0'] },
    ]) {
      const bad = circuitInput({ action });
      await assert.rejects(s.create(bad), InvalidRecordError);
      assert.equal(await s.get(bad.auth), undefined);
    }
    const good = await s.create(circuitInput());
    await assert.rejects(
      s.update(good.auth, { action: { kind: 'deliver-udp', target: '999.1.1.1:5' } }),
      (err: Error) => err instanceof InvalidRecordError && /action\.target: .*999\.1\.1\.1/.test(err.message),
    );
    assert.deepEqual(await s.get(good.auth), good);
  });

  withStore('create, get, list by owner', async (s) => {
    const a = await s.create(circuitInput({ owner: 'acme' }));
    const b = await s.create(circuitInput({ owner: 'zeta' }));
    assert.ok(a.revision > 0 && b.revision > a.revision, 'revisions increase');
    assert.deepEqual(await s.get(a.auth), a);
    assert.equal(await s.get(newAuthenticator()), undefined);
    assert.deepEqual(
      (await s.list({ owner: 'acme' })).map((c) => c.auth),
      [a.auth],
    );
    assert.equal((await s.list()).length, 2);
  });

  withStore('a duplicate authenticator is refused and changes nothing', async (s) => {
    const a = await s.create(circuitInput());
    await assert.rejects(s.create(circuitInput({ auth: a.auth, owner: 'other' })), ConflictError);
    assert.equal((await s.get(a.auth))!.owner, 'acme');
  });

  withStore('admission: capacity is enforced per PoP pair, atomically with the insert', async (s) => {
    await s.create(circuitInput({ bandwidthMbps: 60 }), { capacityMbps: 100 });
    await s.create(circuitInput({ ingressPop: 'fra', egressPop: 'ams', bandwidthMbps: 90 }), {
      capacityMbps: 100,
    });
    const err = await s
      .create(circuitInput({ bandwidthMbps: 41 }), { capacityMbps: 100 })
      .catch((e: unknown) => e);
    assert.ok(err instanceof CapacityError);
    assert.match((err as Error).message, /60 of 100 Mb\/s already sold/);
    await s.create(circuitInput({ bandwidthMbps: 40 }), { capacityMbps: 100 });
    assert.equal((await s.list()).length, 3);
  });

  withStore('update with compare-and-swap on the revision', async (s) => {
    const a = await s.create(circuitInput());
    const next = { kind: 'forward' as const, next: { addresses: ['127.0.0.5:1'], auth: newAuthenticator() } };
    const u = await s.update(a.auth, { action: next }, { expectRevision: a.revision });
    assert.ok(u.revision > a.revision);
    assert.deepEqual(u.action, next);
    await assert.rejects(
      s.update(a.auth, { action: a.action }, { expectRevision: a.revision }),
      ConflictError,
    );
    await assert.rejects(s.update(newAuthenticator(), { action: a.action }), NotFoundError);
    assert.deepEqual((await s.get(a.auth))!.action, next);
  });

  withStore('delete returns the circuit once, with compare-and-swap', async (s) => {
    const a = await s.create(circuitInput());
    await assert.rejects(s.delete(a.auth, { expectRevision: a.revision + 100 }), ConflictError);
    assert.deepEqual(await s.delete(a.auth, { expectRevision: a.revision }), a);
    assert.equal(await s.delete(a.auth), undefined);
    assert.equal(await s.get(a.auth), undefined);
  });

  withStore('snapshot then watch sees every later change, in order, exactly once', async (s) => {
    const before = await s.create(circuitInput());
    const snap = await s.snapshot();
    assert.deepEqual(
      snap.circuits.map((c) => c.auth),
      [before.auth],
    );
    const events = collect(s, snap.revision, 3);
    const a = await s.create(circuitInput());
    await s.update(a.auth, { internalRouters: ['127.0.0.8:8'] });
    await s.delete(before.auth);
    const got = await events;
    assert.deepEqual(
      got.map((e) => e.type),
      ['put', 'put', 'delete'],
    );
    const revs = got.map((e) => e.revision);
    assert.deepEqual(
      revs,
      [...revs].sort((x, y) => x - y),
    );
    assert.ok(revs[0]! > snap.revision);
    assert.equal(got[2]!.type === 'delete' && got[2]!.auth, before.auth);
  });

  withStore('watch from an old revision replays history', async (s) => {
    const a = await s.create(circuitInput());
    await s.create(circuitInput());
    const got = await collect(s, a.revision - 1, 2);
    assert.equal(got[0]!.type === 'put' && got[0]!.circuit.auth, a.auth);
  });

  withStore('router stats round-trip', async (s) => {
    const stats = {
      router: 'r1',
      pop: 'ams',
      address: '127.0.0.1:1',
      updatedAt: new Date().toISOString(),
      drops: { 'unknown-auth': 3 },
      handled: { data: 5 },
      circuits: { [newAuthenticator()]: { packets: 5, bytes: 500, dropped: 0 } },
    };
    await s.putRouterStats(stats);
    await s.putRouterStats({ ...stats, drops: { 'unknown-auth': 4 } });
    const all = await s.listRouterStats();
    assert.equal(all.length, 1);
    assert.equal(all[0]!.drops['unknown-auth'], 4);
  });

  withStore('router registrations are listed while alive and withdrawn on close', async (s) => {
    const reg = s.registerRouter({ name: 'r1', pop: 'ams', address: '127.0.0.1:4000' }, 1000);
    const other = s.registerRouter({ name: 'r0', pop: 'fra', address: '127.0.0.1:4001' }, 1000);
    const names = async (): Promise<string[]> => (await s.listRouters()).map((r) => r.name);
    for (let i = 0; i < 100 && (await names()).length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(await names(), ['r0', 'r1']);
    assert.deepEqual((await s.listRouters())[1], { name: 'r1', pop: 'ams', address: '127.0.0.1:4000' });
    await reg.close();
    assert.deepEqual(await names(), ['r0']);
    await other.close();
  });

  withStore('setActive records failover choices by merging, and watchers see them', async (s) => {
    const a = await s.create(circuitInput({ active: { internal: 1 } }));
    const events = collect(s, a.revision, 1);
    await s.setActive([
      { auth: a.auth, kind: 'next', active: 2 },
      { auth: newAuthenticator(), kind: 'next', active: 1 },
    ]);
    const got = await s.get(a.auth);
    assert.deepEqual(got!.active, { internal: 1, next: 2 });
    assert.ok(got!.revision > a.revision);
    const [ev] = await events;
    assert.ok(ev!.type === 'put' && ev!.circuit.active?.next === 2);
  });

  withStore(
    'idempotent create: a retried key returns the first circuit and sells nothing twice',
    async (s) => {
      const key = { key: 'order-42', fingerprint: 'f1' };
      const first = await s.create(circuitInput({ bandwidthMbps: 60 }), { capacityMbps: 100 }, key);
      assert.equal(first.idempotencyKey, 'order-42');
      // A retry carries a fresh authenticator (the portal draws one per request) and would not fit.
      const again = await s.create(circuitInput({ bandwidthMbps: 60 }), { capacityMbps: 100 }, key);
      assert.deepEqual(again, first);
      // Two retries at once, as two portals racing: still the one circuit.
      const racing = await Promise.all(
        [1, 2, 3].map(() => s.create(circuitInput({ bandwidthMbps: 60 }), { capacityMbps: 100 }, key)),
      );
      for (const r of racing) assert.equal(r.auth, first.auth);
      assert.equal((await s.list()).length, 1);
      await assert.rejects(
        s.create(circuitInput(), undefined, { key: 'order-42', fingerprint: 'other' }),
        IdempotencyMismatchError,
      );
      // Keys are per owner: another account's same key is its own.
      const zeta = await s.create(circuitInput({ owner: 'zeta' }), undefined, key);
      assert.notEqual(zeta.auth, first.auth);
      // The key is forgotten with its circuit.
      await s.delete(first.auth);
      const fresh = await s.create(circuitInput(), undefined, key);
      assert.notEqual(fresh.auth, first.auth);
      assert.equal((await s.list()).length, 2);
    },
  );

  withStore('idempotent create: first use of a key by concurrent creates makes one circuit', async (s) => {
    const key = { key: 'k-concurrent', fingerprint: 'f' };
    const made = await Promise.all([1, 2, 3, 4].map(() => s.create(circuitInput(), undefined, key)));
    assert.equal(new Set(made.map((c) => c.auth)).size, 1);
    assert.equal((await s.list()).length, 1);
  });
}
