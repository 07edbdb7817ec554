import { test, after, mock } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildPortal } from '../src/portal/server.js';
import type { PortalConfig } from '../src/portal/config.js';
import { hashApiKey } from '../src/portal/accounts.js';
import { SqliteStore } from '../src/store/sqlite.js';
import { LabCa } from '../src/lab/certs.js';
import { listenHttp, loadTls } from '../src/util/http.js';
import { createLogger } from '../src/util/log.js';
import { ConfigError } from '../src/util/config.js';
import { PortalClient, PortalError } from '../src/endpoint/portal-client.js';
import { AtlasClient, AtlasError } from '../src/atlas/client.js';
import { buyPath } from '../src/endpoint/path.js';
import { Lab } from '../src/lab/lab.js';
import { CLI_PATH } from '../src/lab/process.js';
import type { Topology } from '../src/lab/topology.js';
import { newAuthenticator } from '../src/wire/authenticator.js';

// HTTPS between real clients and real portals on loopback; clients that check what servers answer.
const dir = mkdtempSync(join(tmpdir(), 'arrow-tls-test-'));
const log = createLogger('tls-test', 'silent');
const KEY = 'acme-key-tls-000000000';
const store = new SqliteStore(join(dir, 'isp.db'));
const config: PortalConfig = {
  isp: 'alpha',
  listen: '127.0.0.1:0',
  store: { kind: 'sqlite', path: join(dir, 'isp.db') },
  pops: [
    { name: 'ams', routers: ['127.0.0.11:4000'] },
    { name: 'fra', routers: ['127.0.0.21:4000'] },
  ],
  offers: [
    {
      from: 'ams',
      to: 'fra',
      capacityMbps: 100,
      latencyMs: { min: 1, max: 9 },
      maxLossPct: 0.1,
      uptimePct: 99.99,
      pricePerMbps: 1,
    },
  ],
  accounts: [{ name: 'acme', apiKeyHash: await hashApiKey(KEY) }],
  // The test's servers live on loopback, which a production policy refuses.
  targetPolicy: { allow: ['127.0.0.0/8'], deny: [], internal: [] },
};
const ca = await LabCa.create(dir, 'tls-test');
const tlsFiles = await ca.issue('portal', '127.0.0.1');
const portal = await buildPortal({ config: { ...config, tls: tlsFiles }, store, tls: loadTls(tlsFiles) });
const url = await listenHttp(portal, { service: 'portal alpha', listen: '127.0.0.1:0', tls: true, log });
const closers: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of closers.reverse()) await c();
  await portal.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});
const deliver = { kind: 'udp' as const, target: '127.0.0.9:7' };
const body = { ingressPop: 'ams', egressPop: 'fra', bandwidthMbps: 1, deliver };

test('a client with the CA talks HTTPS to the portal; without it, a clear error naming --ca', async () => {
  assert.match(url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const offers = await new PortalClient(url, KEY, { ca: ca.pem }).offers();
  assert.equal(offers.isp, 'alpha');
  const err = await new PortalClient(url, KEY).offers().catch((e: unknown) => e);
  assert.ok(err instanceof PortalError, String(err));
  assert.equal(err.status, 0);
  assert.match(err.message, /TLS certificate not trusted \(\w+\); pass --ca FILE/);
});

test('the CLI verifies with --ca FILE, and refuses an untrusted portal without it', async () => {
  // Asynchronously: the portal answering is in this process.
  const run = (extra: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) =>
      execFile(
        process.execPath,
        [CLI_PATH, ...extra, 'circuits', '--portal', url, '--key', KEY, '--json'],
        { encoding: 'utf8', timeout: 30_000, env: { ...process.env, ARROW_CA: '' } },
        (err, stdout, stderr) =>
          resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      ),
    );
  const ok = await run(['--ca', ca.path]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.ok(Array.isArray((JSON.parse(ok.stdout) as { circuits: unknown[] }).circuits));
  const refused = await run([]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /TLS certificate not trusted.*--ca/);
});

test('plain HTTP: on loopback with a warning line; refused on other addresses unless allowed', async () => {
  const plain = await buildPortal({ config, store });
  closers.push(() => plain.close());
  const warn = mock.method(console, 'error', () => undefined);
  let plainUrl: string;
  try {
    plainUrl = await listenHttp(plain, { service: 'portal alpha', listen: '127.0.0.1:0', tls: false, log });
  } finally {
    warn.mock.restore();
  }
  assert.match(plainUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.match(
    String(warn.mock.calls[0]?.arguments[0]),
    /warning: portal alpha: plain HTTP without TLS.*loopback/,
  );
  assert.equal((await new PortalClient(plainUrl, KEY).offers()).isp, 'alpha');
  const other = await buildPortal({ config, store });
  closers.push(() => other.close());
  await assert.rejects(
    listenHttp(other, { service: 'portal alpha', listen: '10.0.0.1:0', tls: false, log }),
    (e: unknown) => e instanceof ConfigError && /refusing plain HTTP on 10\.0\.0\.1:0/.test(e.message),
  );
});

/** A tiny HTTP server answering every request with `answer`, for malformed-answer tests. */
async function fakeServer(
  handler: (req: IncomingMessage) => { status: number; body: string },
): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const a = handler(req);
      res.writeHead(a.status, { 'content-type': 'application/json' }).end(a.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => new Promise((resolve) => server.close(resolve)));
  const addr = server.address() as { port: number };
  return { url: `http://127.0.0.1:${addr.port}`, server };
}

test('clients reject a malformed answer with an error naming the field', async () => {
  const { url: bad } = await fakeServer((req) =>
    req.url === '/circuits'
      ? {
          status: 200,
          body: JSON.stringify({
            circuits: [
              {
                auth: 'not-hex',
                ingressPop: 'ams',
                egressPop: 'fra',
                bandwidthMbps: 1,
                ingress: ['127.0.0.11:4000'],
                createdAt: '2026-12-01T00:00:00Z',
                revision: 1,
              },
            ],
          }),
        }
      : req.url === '/paths'
        ? {
            status: 200,
            body: JSON.stringify({
              paths: [
                {
                  segments: 'many',
                  links: [],
                  latencyMs: 1,
                  lossPct: 0,
                  bandwidthMbps: 1,
                  price: 1,
                  isps: [],
                },
              ],
              rejected: [],
              notes: [],
            }),
          }
        : {
            status: 200,
            body: JSON.stringify({ isps: [], pops: [], offers: [{ isp: 1 }], peerings: [], targets: [] }),
          },
  );
  const portalErr = await new PortalClient(bad, KEY).circuits().catch((e: unknown) => e);
  assert.ok(portalErr instanceof PortalError, String(portalErr));
  assert.match(portalErr.message, /malformed answer to GET \/circuits: \/circuits\/0\/auth/);
  const pathsErr = await new AtlasClient(bad)
    .paths({ from: 'alpha/ams', to: '127.0.0.1' })
    .catch((e: unknown) => e);
  assert.ok(pathsErr instanceof AtlasError, String(pathsErr));
  assert.match(pathsErr.message, /malformed answer to POST \/paths: \/paths\/0\/segments: Expected array/);
  const mapErr = await new AtlasClient(bad).map().catch((e: unknown) => e);
  assert.match(
    String(mapErr),
    /malformed answer to GET \/map: \/offers\/0\/from: Expected required property/,
  );
});

test('a create whose answer was lost is retried with the same Idempotency-Key: one circuit, not two', async () => {
  const before = (await store.list()).length;
  const keys: string[] = [];
  let posts = 0;
  // In front of the real portal: the first create reaches it, but its answer never comes back.
  const front = await fakeServerProxy(portal, (req) => {
    if (req.method === 'POST') {
      keys.push(String(req.headers['idempotency-key']));
      return ++posts === 1 ? 'drop-answer' : 'pass';
    }
    return 'pass';
  });
  const client = new PortalClient(front, KEY);
  const made = await client.createCircuit(body);
  assert.equal(posts, 2, 'tried twice');
  assert.equal(keys[0], keys[1], 'with the same key');
  assert.match(keys[0]!, /^[0-9a-f-]{36}$/);
  assert.equal((await store.list()).length, before + 1, 'one circuit');
  assert.ok(await store.get(made.auth));
  // buyPath sends a key too: a lost answer on its create is retried the same way.
  posts = 0;
  const path = await buyPath({
    segments: [{ portal: front, apiKey: KEY, ingressPop: 'ams', egressPop: 'fra' }],
    target: { kind: 'udp', address: '127.0.0.9:7' },
  });
  assert.equal(posts, 2);
  assert.equal((await store.list()).length, before + 2);
  assert.ok(await store.get(path.forward[0]!.circuit.auth));
});

/** A plain-HTTP front for `app` that can swallow an answer after the portal handled the request. */
async function fakeServerProxy(
  app: FastifyInstance,
  decide: (req: IncomingMessage) => 'pass' | 'drop-answer',
): Promise<string> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const what = decide(req);
      void app
        .inject({
          method: req.method as 'GET',
          url: req.url!,
          headers: req.headers as Record<string, string>,
          payload: Buffer.concat(chunks),
        })
        .then((r) => {
          if (what === 'drop-answer') return void req.socket.destroy();
          res.writeHead(r.statusCode, { 'content-type': 'application/json' }).end(r.body);
        });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => new Promise((resolve) => server.close(resolve)));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

test('a lab over TLS: HTTPS portals and atlas, hashed keys in configs, clients and the atlas trust its CA', async () => {
  const isp = (name: string, pops: [string, string]): Topology['isps'][0] => ({
    name,
    accounts: [{ name: 'acme' }],
    store: { kind: 'sqlite' },
    pops: pops.map((p) => ({ name: p, routers: 1 })),
    offers: [
      {
        from: pops[0],
        to: pops[1],
        capacityMbps: 100,
        latencyMs: { min: 1, max: 50 },
        maxLossPct: 0.1,
        uptimePct: 99.99,
        pricePerMbps: 1,
      },
    ],
  });
  const lab = await Lab.start(
    {
      name: 'tls-lab',
      isps: [isp('alpha', ['ams', 'fra']), isp('beta', ['fra', 'par'])],
      servers: [{ name: 'echo', kind: 'udp-echo', deliveredBy: ['beta/par'] }],
      peerings: [{ a: 'alpha/fra', b: 'beta/fra' }],
      atlas: { measureIntervalMs: 200, echoes: 2, history: 5 },
      statsIntervalMs: 200,
    },
    { tls: true },
  );
  try {
    assert.ok(lab.ca);
    for (const i of lab.isps) {
      assert.match(i.url, /^https:\/\//);
      const cfg = readFileSync(i.portalConfigPath, 'utf8');
      assert.match(cfg, /apiKeyHash: scrypt\$/);
      assert.ok(!cfg.includes(i.accounts[0]!.apiKey), 'no clear key in the portal config');
      assert.match(cfg, /tls:/);
    }
    assert.match(lab.atlas!.url, /^https:\/\//);
    // The atlas fetched every portal's offers over HTTPS, trusting the lab's CA.
    const atlas = new AtlasClient(lab.atlas!.url);
    let map = await atlas.map();
    for (let i = 0; i < 50 && map.isps.some((x) => x.fetchedAt === null); i++) {
      await new Promise((r) => setTimeout(r, 100));
      map = await atlas.map();
    }
    assert.deepEqual(
      map.isps.map((x) => [x.name, x.error]),
      [
        ['alpha', null],
        ['beta', null],
      ],
    );
    assert.equal(map.offers.length, 2);
    const a = lab.isp('alpha');
    const c = await new PortalClient(a.url, a.accounts[0]!.apiKey).createCircuit({
      ingressPop: 'ams',
      egressPop: 'fra',
      bandwidthMbps: 1,
      next: { addresses: ['127.0.0.1:9'], auth: newAuthenticator() },
    });
    assert.match(c.auth, /^[0-9a-f]{32}$/);
    // The CLI, given the lab's CA, lists it.
    const r = spawnSync(
      process.execPath,
      [
        CLI_PATH,
        '--ca',
        lab.ca.path,
        'circuits',
        '--portal',
        a.url,
        '--key',
        a.accounts[0]!.apiKey,
        '--json',
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { circuits: { auth: string }[] }).circuits[0]!.auth, c.auth);
  } finally {
    await lab.stop();
  }
});
