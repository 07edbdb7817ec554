import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildPortal } from '../src/portal/server.js';
import type { PortalConfig } from '../src/portal/config.js';
import { SqliteStore } from '../src/store/sqlite.js';
import { newAuthenticator } from '../src/wire/authenticator.js';
import { hashApiKey } from '../src/portal/accounts.js';

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
