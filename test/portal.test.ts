import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildPortal } from '../src/portal/server.js';
import type { PortalConfig } from '../src/portal/config.js';
import { SqliteStore } from '../src/store/sqlite.js';
import { newAuthenticator } from '../src/wire/authenticator.js';
import { AccountKeys, hashApiKey } from '../src/portal/accounts.js';
import { checkPortalConfig } from '../src/portal/config.js';

// The portal's HTTP behaviour, on a real SQLite store, through fastify's request injection.
const dir = mkdtempSync(join(tmpdir(), 'arrow-portal-test-'));
const store = new SqliteStore(join(dir, 'isp.db'));
const config: PortalConfig = {
  isp: 'alpha',
  listen: '127.0.0.1:0',
  store: { kind: 'sqlite', path: join(dir, 'isp.db') },
  pops: [
    { name: 'ams', routers: ['127.0.0.11:4000', '127.0.0.12:4000'] },
    { name: 'fra', routers: ['127.0.0.21:4000', '127.0.0.22:4000'] },
  ],
  offers: [
    {
      from: 'ams',
      to: 'fra',
      capacityMbps: 100,
      latencyMs: { min: 2, max: 9 },
      maxLossPct: 0.1,
      uptimePct: 99.99,
      pricePerMbps: 2,
    },
  ],
  accounts: [
    { name: 'acme', apiKeyHash: await hashApiKey('acme-key-0000000000') },
    { name: 'zeta', apiKeyHash: await hashApiKey('zeta-key-0000000000') },
  ],
  // Targets on loopback (127.0.0.9) are refused by default: this test network opens it.
  targetPolicy: { allow: ['127.0.0.0/8'], deny: [], internal: [] },
};
const app = await buildPortal({ config, store });
after(async () => {
  await app.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});
const acme = { authorization: 'Bearer acme-key-0000000000' };
const zeta = { authorization: 'Bearer zeta-key-0000000000' };
const deliver = { kind: 'udp', target: '127.0.0.9:7' };

async function create(
  body: object,
  headers = acme,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await app.inject({ method: 'POST', url: '/circuits', headers, payload: body });
  return { status: r.statusCode, json: r.json() };
}

test('serves its OpenAPI document with every route', async () => {
  const r = await app.inject({ method: 'GET', url: '/openapi.json' });
  assert.equal(r.statusCode, 200);
  const doc = r.json();
  assert.equal(doc.openapi, '3.0.3');
  for (const p of [
    '/offers',
    '/circuits',
    '/circuits/{auth}',
    '/circuits/{auth}/chain',
    '/circuits/{auth}/stats',
  ])
    assert.ok(doc.paths[p], `missing ${p}`);
  assert.ok(doc.paths['/circuits'].post.requestBody);
});

test('offers list SLA, price, capacity and ingress routers with backups', async () => {
  const r = await app.inject({ method: 'GET', url: '/offers' });
  assert.equal(r.statusCode, 200);
  const [o] = r.json().offers;
  assert.deepEqual(o.ingress, ['127.0.0.11:4000', '127.0.0.12:4000']);
  assert.deepEqual(o.latencyMs, { min: 2, max: 9 });
  assert.equal(o.capacityMbps, 100);
  assert.equal(typeof o.pricePerMbps, 'number');
});

test('requests without a valid API key get 401 with a message', async () => {
  const none = await app.inject({ method: 'GET', url: '/circuits' });
  assert.equal(none.statusCode, 401);
  assert.match(none.json().message, /missing API key/);
  const bad = await app.inject({
    method: 'GET',
    url: '/circuits',
    headers: { authorization: 'Bearer nope' },
  });
  assert.equal(bad.statusCode, 401);
  assert.match(bad.json().message, /unknown API key/);
});

test('invalid creates get 400 saying what is wrong, and create nothing', async () => {
  const cases: [object, RegExp][] = [
    [{ egressPop: 'fra', bandwidthMbps: 1, deliver }, /ingressPop/],
    [{ ingressPop: 'ams', egressPop: 'fra', bandwidthMbps: -1, deliver }, /bandwidthMbps/],
    [{ ingressPop: 'nyc', egressPop: 'fra', bandwidthMbps: 1, deliver }, /unknown ingress PoP nyc/],
    [{ ingressPop: 'fra', egressPop: 'ams', bandwidthMbps: 1, deliver }, /no offer from fra to ams/],
    [{ ingressPop: 'ams', egressPop: 'fra', bandwidthMbps: 1 }, /exactly one of/],
    [
      {
        ingressPop: 'ams',
        egressPop: 'fra',
        bandwidthMbps: 1,
        deliver,
        next: { addresses: ['1.2.3.4:5'], auth: newAuthenticator() },
      },
      /exactly one of/,
    ],
    [
      {
        ingressPop: 'ams',
        egressPop: 'fra',
        bandwidthMbps: 1,
        next: { addresses: ['1.2.3.4:5'], auth: 'xyz' },
      },
      /auth/,
    ],
    [
      {
        ingressPop: 'ams',
        egressPop: 'fra',
        bandwidthMbps: 1,
        next: { addresses: ['nope'], auth: newAuthenticator() },
      },
      /addresses/,
    ],
    [
      { ingressPop: 'ams', egressPop: 'fra', bandwidthMbps: 1, deliver, bandwith: 3 },
      /additional properties/,
    ],
  ];
  for (const [body, message] of cases) {
    const r = await create(body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.match(String(r.json.message), message);
  }
  const notJson = await app.inject({
    method: 'POST',
    url: '/circuits',
    headers: { ...acme, 'content-type': 'application/json' },
    payload: '{',
  });
  assert.equal(notJson.statusCode, 400);
  assert.equal((await store.list()).length, 0);
});

test('create returns the authenticator and ingress routers; list shows only the caller’s circuits', async () => {
  const r = await create({ ingressPop: 'ams', egressPop: 'fra', bandwidthMbps: 10, deliver });
  assert.equal(r.status, 201);
  assert.match(String(r.json.auth), /^[0-9a-f]{32}$/);
  assert.deepEqual(r.json.ingress, ['127.0.0.11:4000', '127.0.0.12:4000']);
  const stored = await store.get(String(r.json.auth));
  assert.deepEqual(stored!.internalRouters, ['127.0.0.21:4000', '127.0.0.22:4000']);
  const mine = await app.inject({ method: 'GET', url: '/circuits', headers: acme });
  assert.ok(mine.json().circuits.some((c: { auth: string }) => c.auth === r.json.auth));
  const theirs = await app.inject({ method: 'GET', url: '/circuits', headers: zeta });
  assert.deepEqual(theirs.json().circuits, []);
});

test('only the owner may chain, delete or read stats; to others the circuit does not exist', async () => {
  const { json } = await create({ ingressPop: 'ams', egressPop: 'fra', bandwidthMbps: 1, deliver });
  const auth = String(json.auth);
  const next = { addresses: ['127.0.0.31:4000'], auth: newAuthenticator() };
  for (const [method, url, payload] of [
    ['POST', `/circuits/${auth}/chain`, next],
    ['DELETE', `/circuits/${auth}`, undefined],
    ['GET', `/circuits/${auth}/stats`, undefined],
    ['GET', `/circuits/${auth}`, undefined],
  ] as const) {
    const r = await app.inject({ method, url, headers: zeta, ...(payload ? { payload } : {}) });
    assert.equal(r.statusCode, 404, `${method} ${url}`);
    assert.match(r.json().message, /no circuit/);
  }
  const unchanged = await store.get(auth);
  assert.equal(unchanged!.action.kind, 'deliver-udp');

  const chained = await app.inject({
    method: 'POST',
    url: `/circuits/${auth}/chain`,
    headers: acme,
    payload: next,
  });
  assert.equal(chained.statusCode, 200);
  assert.deepEqual(chained.json().next, next);
  const stats = await app.inject({ method: 'GET', url: `/circuits/${auth}/stats`, headers: acme });
  assert.equal(stats.statusCode, 200);
  assert.equal(stats.json().packets, 0);
  const del = await app.inject({ method: 'DELETE', url: `/circuits/${auth}`, headers: acme });
  assert.equal(del.statusCode, 200);
  assert.equal(await store.get(auth), undefined);
  const again = await app.inject({ method: 'DELETE', url: `/circuits/${auth}`, headers: acme });
  assert.equal(again.statusCode, 404);
});

test('admission control: 409 when the PoP pair is sold out; existing circuits untouched', async () => {
  for (const c of await store.list()) await store.delete(c.auth);
  const first = await create({ ingressPop: 'ams', egressPop: 'fra', bandwidthMbps: 70, deliver });
  assert.equal(first.status, 201);
  const refused = await create({ ingressPop: 'ams', egressPop: 'fra', bandwidthMbps: 31, deliver }, zeta);
  assert.equal(refused.status, 409);
  assert.match(String(refused.json.message), /capacity sold out: 70 of 100 Mb\/s/);
  assert.deepEqual(
    (await store.list()).map((c) => c.auth),
    [first.json.auth],
  );
  const offers = await app.inject({ method: 'GET', url: '/offers' });
  assert.equal(offers.json().offers[0].availableMbps, 30);
  assert.equal(
    (await create({ ingressPop: 'ams', egressPop: 'fra', bandwidthMbps: 30, deliver }, zeta)).status,
    201,
  );
});

test('unknown routes and malformed authenticators in paths get clear 4xx', async () => {
  const r = await app.inject({ method: 'GET', url: '/nowhere', headers: acme });
  assert.equal(r.statusCode, 404);
  assert.match(r.json().message, /no route GET \/nowhere/);
  const bad = await app.inject({ method: 'GET', url: '/circuits/XYZ/stats', headers: acme });
  assert.equal(bad.statusCode, 400);
  assert.match(bad.json().message, /params\/auth/);
});

test('Idempotency-Key: a retry returns the same circuit and sells nothing twice; another body is 422', async () => {
  for (const c of await store.list()) await store.delete(c.auth);
  const body = { ingressPop: 'ams', egressPop: 'fra', bandwidthMbps: 60, deliver };
  const post = (b: object, key: string, headers = acme) =>
    app.inject({
      method: 'POST',
      url: '/circuits',
      headers: { ...headers, 'idempotency-key': key },
      payload: b,
    });
  const first = await post(body, 'order-1');
  assert.equal(first.statusCode, 201);
  assert.equal(first.headers['idempotent-replayed'], undefined);
  // Same body with its fields in another order: the same request. 60 + 60 would not fit in 100.
  const retry = await post({ deliver, bandwidthMbps: 60, egressPop: 'fra', ingressPop: 'ams' }, 'order-1');
  assert.equal(retry.statusCode, 201);
  assert.equal(retry.headers['idempotent-replayed'], 'true');
  assert.deepEqual(retry.json(), first.json());
  assert.equal((await store.list()).length, 1);
  const offers = await app.inject({ method: 'GET', url: '/offers' });
  assert.equal(offers.json().offers[0].availableMbps, 40, 'billed once');

  const other = await post({ ...body, bandwidthMbps: 5 }, 'order-1');
  assert.equal(other.statusCode, 422);
  assert.match(other.json().message, /Idempotency-Key "order-1" was already used for a different request/);
  // Scoped to the account: zeta's order-1 is zeta's own.
  const zetas = await post({ ...body, bandwidthMbps: 5 }, 'order-1', zeta);
  assert.equal(zetas.statusCode, 201);
  assert.notEqual(zetas.json().auth, first.json().auth);
  assert.equal((await store.list()).length, 2);

  const badKey = await post(body, 'has space');
  assert.equal(badKey.statusCode, 400);
  assert.match(badKey.json().message, /idempotency-key/);
});

test('Idempotency-Key survives a portal restart: a new portal on the same store replays the key', async () => {
  const body = { ingressPop: 'ams', egressPop: 'fra', bandwidthMbps: 1, deliver };
  const headers = { ...acme, 'idempotency-key': 'restart-1' };
  const before = await app.inject({ method: 'POST', url: '/circuits', headers, payload: body });
  assert.equal(before.statusCode, 201);
  const count = (await store.list()).length;
  // A second portal process's view: its own store connection and app, as after a restart.
  const store2 = new SqliteStore(join(dir, 'isp.db'));
  const app2 = await buildPortal({ config, store: store2 });
  try {
    const after2 = await app2.inject({ method: 'POST', url: '/circuits', headers, payload: body });
    assert.equal(after2.statusCode, 201);
    assert.equal(after2.json().auth, before.json().auth);
    // Two portals racing one new key: one circuit.
    const race = { ...acme, 'idempotency-key': 'race-1' };
    const [a, b] = await Promise.all([
      app.inject({ method: 'POST', url: '/circuits', headers: race, payload: body }),
      app2.inject({ method: 'POST', url: '/circuits', headers: race, payload: body }),
    ]);
    assert.equal(a.json().auth, b.json().auth);
    assert.equal((await store.list()).length, count + 1);
  } finally {
    await app2.close();
    await store2.close();
  }
});

test('API keys: the config holds salted hashes only, a clear key is refused, a wrong key is 401', async () => {
  for (const a of config.accounts) {
    assert.equal(a.apiKey, undefined);
    assert.match(a.apiKeyHash!, /^scrypt\$16384\$8\$1\$/);
    assert.ok(!a.apiKeyHash!.includes('key-0000000000'));
  }
  // Same key, two hashes: the salt is per key.
  assert.notEqual(await hashApiKey('acme-key-0000000000'), config.accounts[0]!.apiKeyHash);
  const clear = checkPortalConfig({ ...config, accounts: [{ name: 'acme', apiKey: 'acme-key-0000000000' }] });
  assert.match(clear.join('\n'), /apiKey in clear is not accepted; store apiKeyHash/);
  const wrong = await app.inject({
    method: 'GET',
    url: '/circuits',
    headers: { authorization: 'Bearer acme-key-0000000001' },
  });
  assert.equal(wrong.statusCode, 401);
  const keys = new AccountKeys(config.accounts);
  assert.equal(await keys.account('zeta-key-0000000000'), 'zeta');
  assert.equal(await keys.account('zeta-key-0000000000'), 'zeta', 'from the cache');
  assert.equal(await keys.account('acme-key-000000000'), undefined);
});

test('rate limit per account: 429 with Retry-After beyond the limit; other accounts unaffected', async () => {
  const limited = await buildPortal({
    config: { ...config, rateLimit: { max: 3, windowMs: 60_000 } },
    store,
  });
  try {
    const get = (headers: Record<string, string>) =>
      limited.inject({ method: 'GET', url: '/circuits', headers });
    for (let i = 0; i < 3; i++) assert.equal((await get(acme)).statusCode, 200);
    const over = await get(acme);
    assert.equal(over.statusCode, 429);
    assert.ok(Number(over.headers['retry-after']) > 0, `Retry-After: ${over.headers['retry-after']}`);
    assert.match(over.json().message, /rate limit of 3 requests per 60000 ms exceeded for this account/);
    assert.equal((await get(zeta)).statusCode, 200, 'zeta has its own budget');
  } finally {
    await limited.close();
  }
});

test('requireTags: the owner gets the tag key on create and GET, never in lists; burstBytes is set from the offer', async () => {
  for (const c of await store.list()) await store.delete(c.auth);
  const bad = await create({
    ingressPop: 'ams',
    egressPop: 'fra',
    bandwidthMbps: 1,
    deliver,
    requireTags: 'yes',
  });
  assert.equal(bad.status, 400);
  assert.match(String(bad.json.message), /requireTags.*boolean/);

  const plain = await create({ ingressPop: 'ams', egressPop: 'fra', bandwidthMbps: 10, deliver });
  assert.equal(plain.status, 201);
  assert.equal(plain.json.tagKey, undefined);
  assert.equal(plain.json.tagsRequired, undefined);
  assert.equal(plain.json.burstBytes, 65_536, '50 ms of 10 Mb/s is 62,500 bytes: the 64 KiB floor');

  const r = await create({
    ingressPop: 'ams',
    egressPop: 'fra',
    bandwidthMbps: 1,
    deliver,
    requireTags: true,
  });
  assert.equal(r.status, 201);
  assert.match(String(r.json.tagKey), /^[0-9a-f]{32}$/);
  assert.equal(r.json.tagsRequired, true);
  const stored = await store.get(String(r.json.auth));
  assert.equal(stored!.tagKey, r.json.tagKey, 'the store carries the key to the routers');
  const one = await app.inject({ method: 'GET', url: `/circuits/${String(r.json.auth)}`, headers: acme });
  assert.equal(one.json().tagKey, r.json.tagKey);
  const list = await app.inject({ method: 'GET', url: '/circuits', headers: acme });
  const listed = list.json().circuits.find((c: { auth: string }) => c.auth === r.json.auth);
  assert.equal(listed.tagsRequired, true);
  assert.equal(listed.tagKey, undefined, 'never in a list');
  const other = await app.inject({ method: 'GET', url: `/circuits/${String(r.json.auth)}`, headers: zeta });
  assert.equal(other.statusCode, 404);
  assert.doesNotMatch(other.body, new RegExp(String(r.json.tagKey)));
});

test('an ISP that requires tags issues a key with every circuit; offers take a burst', async () => {
  const d = mkdtempSync(join(tmpdir(), 'arrow-portal-tags-'));
  const s = new SqliteStore(join(d, 'isp.db'));
  const cfg: PortalConfig = {
    ...config,
    store: { kind: 'sqlite', path: join(d, 'isp.db') },
    requireTags: true,
    offers: [{ ...config.offers[0]!, burstMs: 200 }],
  };
  assert.deepEqual(checkPortalConfig(cfg), []);
  const a = await buildPortal({ config: cfg, store: s });
  try {
    const r = await a.inject({
      method: 'POST',
      url: '/circuits',
      headers: acme,
      payload: { ingressPop: 'ams', egressPop: 'fra', bandwidthMbps: 10, deliver },
    });
    assert.equal(r.statusCode, 201);
    assert.match(r.json().tagKey, /^[0-9a-f]{32}$/);
    assert.equal(r.json().burstBytes, 250_000, '200 ms of 10 Mb/s');
  } finally {
    await a.close();
    await s.close();
    rmSync(d, { recursive: true, force: true });
  }
});

test("a router's failover record between a customer's read and write is retried over; a customer's change is a 409", async () => {
  // The race made exactly: a store that lets "a router" (or "another customer") write the circuit
  // just before the portal's compare-and-swap, once per circuit.
  type Meddle = (s: SqliteStore, auth: string) => Promise<void>;
  class RacedStore extends SqliteStore {
    meddle: Meddle | undefined;
    private async once(auth: string): Promise<void> {
      const m = this.meddle;
      this.meddle = undefined;
      await m?.(this, auth);
    }
    override async delete(...a: Parameters<SqliteStore['delete']>): ReturnType<SqliteStore['delete']> {
      await this.once(a[0]);
      return super.delete(...a);
    }
    override async update(...a: Parameters<SqliteStore['update']>): ReturnType<SqliteStore['update']> {
      await this.once(a[0]);
      return super.update(...a);
    }
  }
  const raced = new RacedStore(join(dir, 'raced.db'));
  const portal = await buildPortal({
    config: { ...config, store: { kind: 'sqlite', path: join(dir, 'raced.db') } },
    store: raced,
  });
  try {
    const buy = async (): Promise<string> => {
      const r = await portal.inject({
        method: 'POST',
        url: '/circuits',
        headers: acme,
        payload: { ingressPop: 'ams', egressPop: 'fra', bandwidthMbps: 1, deliver },
      });
      assert.equal(r.statusCode, 201, r.body);
      return (r.json() as { auth: string }).auth;
    };
    const routerRecords: Meddle = (s, auth) => s.setActive([{ auth, kind: 'internal', active: 1 }]);
    const customerChains: Meddle = async (s, auth) =>
      void (await s.update(auth, {
        action: { kind: 'forward', next: { addresses: ['127.0.0.9:9'], auth: newAuthenticator() } },
      }));
    const chainBody = { addresses: ['127.0.0.9:8'], auth: newAuthenticator() };

    // A router's record of its failover choice in between: the chain and the relinquish go through.
    const a = await buy();
    raced.meddle = routerRecords;
    const chained = await portal.inject({
      method: 'POST',
      url: `/circuits/${a}/chain`,
      headers: acme,
      payload: chainBody,
    });
    assert.equal(chained.statusCode, 200, chained.body);
    assert.deepEqual((await raced.get(a))!.action, { kind: 'forward', next: chainBody });
    raced.meddle = routerRecords;
    const gone = await portal.inject({ method: 'DELETE', url: `/circuits/${a}`, headers: acme });
    assert.equal(gone.statusCode, 200, gone.body);
    assert.equal(await raced.get(a), undefined, 'relinquished');

    // Another customer change in between is a real conflict: 409, and nothing is lost.
    const b = await buy();
    raced.meddle = customerChains;
    const lost = await portal.inject({ method: 'DELETE', url: `/circuits/${b}`, headers: acme });
    assert.equal(lost.statusCode, 409, lost.body);
    assert.ok(await raced.get(b), 'a delete that lost the race deletes nothing');
  } finally {
    await portal.close();
    await raced.close();
  }
});
