import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildPortal } from '../src/portal/server.js';
import { PortalConfigSchema, type PortalConfig } from '../src/portal/config.js';
import { SqliteStore } from '../src/store/sqlite.js';
import { InvalidRecordError } from '../src/store/store.js';
import { validateConfig, ConfigError } from '../src/util/config.js';
import { newAuthenticator } from '../src/wire/authenticator.js';
import { parseAddress } from '../src/wire/address.js';
import { TargetPolicy } from '../src/portal/target-policy.js';
import { hashApiKey } from '../src/portal/accounts.js';

/** The portal keeps only the hash of the account's key. */
const ACME_KEY_HASH = await hashApiKey('acme-key-0000000000');

// The rows of issue 10 part 2, each against a real portal (fastify injection) on a real SQLite
// store: every address a customer sends is parsed by the one parser, checked against the ISP's
// egress target policy, and refused when it would loop back into the ISP.
const dir = mkdtempSync(join(tmpdir(), 'arrow-portal-input-'));
const key = { authorization: 'Bearer acme-key-0000000000' };

function portalConfig(name: string, targetPolicy: PortalConfig['targetPolicy'], hosts: string): PortalConfig {
  return {
    isp: name,
    listen: `${hosts}.1:0`,
    store: { kind: 'sqlite', path: join(dir, `${name}.db`) },
    pops: [
      { name: 'ams', routers: [`${hosts}.11:4000`, `${hosts}.12:4000`] },
      { name: 'fra', routers: [`${hosts}.21:4000`] },
    ],
    offers: [
      {
        from: 'ams',
        to: 'fra',
        capacityMbps: 1000,
        latencyMs: { min: 1, max: 9 },
        maxLossPct: 0.1,
        uptimePct: 99.99,
        pricePerMbps: 1,
      },
    ],
    accounts: [{ name: 'acme', apiKeyHash: ACME_KEY_HASH }],
    ...(targetPolicy ? { targetPolicy } : {}),
  };
}

async function portal(config: PortalConfig): Promise<{
  app: Awaited<ReturnType<typeof buildPortal>>;
  store: SqliteStore;
}> {
  const store = new SqliteStore(config.store.kind === 'sqlite' ? config.store.path : '');
  const app = await buildPortal({ config, store });
  after(async () => {
    await app.close();
    await store.close();
  });
  return { app, store };
}

// A production ISP: default policy, its routers on public addresses, an internal prefix and a denied one.
const prod = await portal(
  portalConfig(
    'prod',
    { allow: ['198.51.100.0/24'], deny: ['198.51.100.66/32'], internal: ['10.0.0.0/8'] },
    '192.0.2',
  ),
);
// The loopback lab: the whole network on 127.x, opened explicitly.
const lab = await portal(portalConfig('lab', { allow: ['127.0.0.0/8'], deny: [], internal: [] }, '127.0.0'));
// A careless operator who allows everything: the always-refused classes stay refused.
const open = await portal(
  portalConfig('open', { allow: ['0.0.0.0/0', '::/0'], deny: [], internal: [] }, '192.0.2'),
);
after(() => rmSync(dir, { recursive: true, force: true }));

const nextHop = { auth: newAuthenticator() };

async function create(
  app: typeof prod.app,
  body: object,
): Promise<{ status: number; message: string; json: Record<string, unknown> }> {
  const r = await app.inject({ method: 'POST', url: '/circuits', headers: key, payload: body });
  const json = r.json() as Record<string, unknown>;
  return { status: r.statusCode, message: String(json.message ?? ''), json };
}

const base = { ingressPop: 'ams', egressPop: 'fra', bandwidthMbps: 1 };

async function count(store: SqliteStore): Promise<number> {
  return (await store.list()).length;
}

for (const [address, why] of [
  ['1.2.3.4:70000', /port 70000 out of range 1-65535/],
  ['127.0.0.1:0', /port 0 is not a destination/],
  ['127.0.0.1:99999', /port 99999 out of range/],
  ['999.1.1.1:5', /"999\.1\.1\.1" is not an IPv4 literal/],
  ['example.com:5', /"example\.com" is not an IPv4 literal \(host names are refused/],
  ['[example.com]:5', /not an IPv6 literal/],
  ['1.2.3.4', /expected IPv4:PORT or \[IPv6\]:PORT/],
] as const) {
  test(`next hop ${address}: 400 naming the field and the fault, nothing created`, async () => {
    const before = await count(lab.store);
    const r = await create(lab.app, {
      ...base,
      next: { ...nextHop, addresses: ['127.0.0.5:4000', address] },
    });
    assert.equal(r.status, 400, r.message);
    assert.match(r.message, /^body\.next\.addresses\.1: /);
    assert.match(r.message, why);
    // The same address as a udp target, and in a chain: the same answer.
    const t = await create(lab.app, { ...base, deliver: { kind: 'udp', target: address } });
    assert.equal(t.status, 400, t.message);
    assert.match(t.message, why);
    assert.equal(await count(lab.store), before);
  });
}

for (const [target, rule] of [
  ['224.0.0.1:5', 'multicast'],
  ['239.255.255.250:1900', 'multicast'],
  ['[ff02::1]:5', 'multicast'],
  ['255.255.255.255:5', 'broadcast'],
  ['0.0.0.0:5', 'unspecified'],
  ['0.1.2.3:5', 'unspecified'],
  ['[::]:5', 'unspecified'],
  ['[::ffff:224.0.0.1]:5', 'multicast'],
] as const) {
  test(`deliver udp ${target}: 403 rule ${rule}, even where the ISP allows everything`, async () => {
    for (const { app, store } of [prod, lab, open]) {
      const before = await count(store);
      const r = await create(app, { ...base, deliver: { kind: 'udp', target } });
      assert.equal(r.status, 403, r.message);
      assert.match(
        r.message,
        new RegExp(`^deliver\\.target .* refused by this ISP's egress target policy \\(rule ${rule}\\)`),
      );
      assert.equal(await count(store), before);
    }
  });
}

test('infrastructure is refused by default, rule named: loopback, own routers, portal, internal prefixes, denied prefixes', async () => {
  const cases: Array<[object, string]> = [
    [{ deliver: { kind: 'udp', target: '127.0.0.1:7' } }, 'loopback'],
    [{ deliver: { kind: 'udp', target: '[::1]:7' } }, 'loopback'],
    [{ deliver: { kind: 'udp', target: '[::ffff:127.0.0.1]:7' } }, 'loopback'],
    // A router of this ISP, on any port.
    [{ deliver: { kind: 'udp', target: '192.0.2.21:22' } }, 'infrastructure'],
    [{ next: { ...nextHop, addresses: ['203.0.113.5:4000', '192.0.2.11:5000'] } }, 'infrastructure'],
    [{ deliver: { kind: 'endpoint', addresses: ['192.0.2.12:9'] } }, 'infrastructure'],
    // The portal itself.
    [{ deliver: { kind: 'udp', target: '192.0.2.1:443' } }, 'infrastructure'],
    [{ deliver: { kind: 'udp', target: '10.1.2.3:53' } }, 'internal'],
    [
      {
        deliver: {
          kind: 'udp',
          target: '203.0.113.9:7',
          reply: { ...nextHop, addresses: ['10.9.9.9:4000'] },
        },
      },
      'internal',
    ],
    // Denied although its /24 is allowed: deny wins.
    [{ deliver: { kind: 'udp', target: '198.51.100.66:7' } }, 'deny'],
  ];
  for (const [body, rule] of cases) {
    const before = await count(prod.store);
    const r = await create(prod.app, { ...base, ...body });
    assert.equal(r.status, 403, `${JSON.stringify(body)}: ${r.message}`);
    assert.match(r.message, new RegExp(`\\(rule ${rule}\\)`), r.message);
    assert.equal(await count(prod.store), before);
  }
  // Ordinary destinations pass.
  for (const body of [
    { deliver: { kind: 'udp', target: '203.0.113.9:7' } },
    { deliver: { kind: 'udp', target: '198.51.100.7:7' } },
    { deliver: { kind: 'udp', target: '[2001:db8::7]:7' } },
    { next: { ...nextHop, addresses: ['203.0.113.5:4000'] } },
  ]) {
    const r = await create(prod.app, { ...base, ...body });
    assert.equal(r.status, 201, `${JSON.stringify(body)}: ${r.message}`);
  }
});

test('infrastructure allowed by policy: the loopback lab delivers to 127.x', async () => {
  const r = await create(lab.app, { ...base, deliver: { kind: 'udp', target: '127.0.0.9:7' } });
  assert.equal(r.status, 201, r.message);
  const e = await create(lab.app, { ...base, deliver: { kind: 'endpoint', addresses: ['127.0.0.9:7'] } });
  assert.equal(e.status, 201, e.message);
  // A reply hop may enter this ISP's own routers: that is its return circuit.
  const reply = await create(lab.app, {
    ...base,
    deliver: { kind: 'udp', target: '127.0.0.9:7', reply: { ...nextHop, addresses: ['127.0.0.11:4000'] } },
  });
  assert.equal(reply.status, 201, reply.message);
});

test('chain to its own ingress router with its own authenticator: 409 loop, circuit unchanged', async () => {
  const c = await create(lab.app, { ...base, deliver: { kind: 'udp', target: '127.0.0.9:7' } });
  assert.equal(c.status, 201, c.message);
  const auth = c.json.auth as string;
  const ingress = c.json.ingress as string[];
  const before = await lab.store.get(auth);
  const r = await lab.app.inject({
    method: 'POST',
    url: `/circuits/${auth}/chain`,
    headers: key,
    payload: { addresses: [ingress[0]], auth },
  });
  assert.equal(r.statusCode, 409, r.body);
  assert.match(
    r.json().message,
    /^addresses\[0\] 127\.0\.0\.11:4000 is a router of this ISP \(lab\/ams\): .*loops/,
  );
  assert.deepEqual(await lab.store.get(auth), before);
  // The same loop at create time, through another circuit's authenticator and the egress PoP's router.
  const viaCreate = await create(lab.app, { ...base, next: { addresses: ['127.0.0.21:4000'], auth } });
  assert.equal(viaCreate.status, 409, viaCreate.message);
  assert.match(viaCreate.message, /lab\/fra/);
  // A different port on the same host is not a router: no loop (the policy decides; the lab allows it).
  const other = await lab.app.inject({
    method: 'POST',
    url: `/circuits/${auth}/chain`,
    headers: key,
    payload: { addresses: ['127.0.0.11:4001'], auth: newAuthenticator() },
  });
  assert.equal(other.statusCode, 200, other.body);
});

test('chain checks its addresses like create: 400 for a bad one, 403 for a refused one', async () => {
  const c = await create(prod.app, { ...base, deliver: { kind: 'udp', target: '203.0.113.9:7' } });
  const url = `/circuits/${c.json.auth as string}/chain`;
  const bad = await prod.app.inject({
    method: 'POST',
    url,
    headers: key,
    payload: { addresses: ['1.2.3.4:70000'], auth: newAuthenticator() },
  });
  assert.equal(bad.statusCode, 400);
  assert.match(bad.json().message, /port 70000 out of range/);
  const refused = await prod.app.inject({
    method: 'POST',
    url,
    headers: key,
    payload: { addresses: ['192.0.2.11:4000'], auth: newAuthenticator() },
  });
  assert.equal(refused.statusCode, 403);
  assert.match(refused.json().message, /rule infrastructure/);
});

test('the store itself refuses a record no router could compile', async () => {
  const input = {
    auth: newAuthenticator(),
    owner: 'acme',
    ingressPop: 'ams',
    egressPop: 'fra',
    bandwidthMbps: 1,
    internalAuth: newAuthenticator(),
    internalRouters: ['127.0.0.21:4000'],
    action: { kind: 'forward' as const, next: { addresses: ['1.2.3.4:70000'], auth: newAuthenticator() } },
  };
  await assert.rejects(lab.store.create(input), (err: Error) => {
    assert.ok(err instanceof InvalidRecordError);
    assert.match(err.message, /action\.next\.addresses\[0\]: .*port 70000 out of range/);
    return true;
  });
  assert.equal(await lab.store.get(input.auth), undefined);
  const good = await lab.store.create({ ...input, action: { kind: 'deliver-udp', target: '127.0.0.9:7' } });
  await assert.rejects(
    lab.store.update(good.auth, { action: { kind: 'deliver-udp', target: 'example.com:7' } }),
    InvalidRecordError,
  );
  assert.equal((await lab.store.get(good.auth))?.revision, good.revision);
});

test('configs use the same parser: bind addresses may use port 0, destinations may not, names never', () => {
  const good = portalConfig('cfg', undefined, '127.0.0');
  assert.equal(validateConfig(PortalConfigSchema, good, 'test').listen, '127.0.0.1:0');
  assert.throws(
    () =>
      validateConfig(
        PortalConfigSchema,
        { ...good, pops: [{ name: 'ams', routers: ['127.0.0.11:0'] }] },
        'test',
      ),
    (err: Error) =>
      err instanceof ConfigError && /\/pops\/0\/routers\/0: .*port 0 is not a destination/.test(err.message),
  );
  assert.throws(
    () => validateConfig(PortalConfigSchema, { ...good, listen: 'localhost:0' }, 'test'),
    (err: Error) =>
      err instanceof ConfigError && /\/listen: .*"localhost" is not an IPv4 literal/.test(err.message),
  );
  assert.throws(
    () => validateConfig(PortalConfigSchema, { ...good, targetPolicy: { allow: ['127.0.0.0/33'] } }, 'test'),
    (err: Error) => err instanceof ConfigError && /prefix length must be 0-32/.test(err.message),
  );
  assert.deepEqual(parseAddress('127.0.0.1:0', { bind: true }), {
    ok: true,
    address: { host: '127.0.0.1', port: 0 },
  });
});

test('policy rule order is pure and total: always-refused, deny, allow, default-refused, accept', () => {
  const p = new TargetPolicy({ allow: ['10.1.0.0/16'], deny: ['10.1.2.0/24'], internal: ['10.0.0.0/8'] });
  const infra = { routers: ['192.0.2.11:4000'], portal: ['192.0.2.1:0'], store: ['http://192.0.2.50:2379'] };
  const rule = (host: string): string | undefined => p.check({ host, port: 9 }, infra)?.rule;
  assert.equal(rule('10.1.3.4'), undefined);
  assert.equal(rule('10.1.2.4'), 'deny');
  assert.equal(rule('10.2.0.1'), 'internal');
  assert.equal(rule('192.0.2.50'), 'infrastructure');
  assert.equal(rule('127.9.9.9'), 'loopback');
  assert.equal(rule('224.1.1.1'), 'multicast');
  assert.equal(rule('8.8.8.8'), undefined);
});
