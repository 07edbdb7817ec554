import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { startComponent, stopComponent } from '../src/lab/process.js';
import { SqliteStore } from '../src/store/sqlite.js';
import { hashApiKey } from '../src/portal/accounts.js';
import { encode, OFFSET_TYPE, PacketType } from '../src/wire/header.js';
import { eventually, sendRaw } from './helpers/network.js';

// Issue 13, part 1: the daemons' admin API. A router's, read with curl as Prometheus or an operator would. Known
// traffic goes through a real router process (the Node path, on loopback), and /metrics must give
// back exactly what was sent: packets forwarded, in and out, drops by reason, the listed circuit's
// own series. /status and /log/level answer too, and a bad level is a 400 that says why. A
// portal's counts its requests, sales and refusals, and the capacity it has sold.

const run = promisify(execFile);
const HOST = '127.0.0.93';
const SINK = '127.0.0.94';
const AUTH = 'a1'.repeat(16);
const SENT = 100;
const UNKNOWN = 7;
const EXPIRED = 3;

/** curl's answer; status 0 when it could not connect (a router's admin API comes up after it is ready). */
async function curl(args: string[]): Promise<{ status: number; body: string }> {
  const r = await run('curl', ['-sS', '-w', '\n%{http_code}', ...args]).catch(
    (err: Error & { code?: number; stderr?: string }) => {
      if (err.code !== 7) throw err; // 7: could not connect
      return { stdout: `${err.stderr ?? ''}\n0` };
    },
  );
  const at = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(at + 1)), body: r.stdout.slice(0, at) };
}

/** The value of one series in Prometheus text, or undefined. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n'))
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  return undefined;
}

test('router admin API: /metrics gives back exactly the traffic sent (curl), per listed circuit too; /status; /log/level GET and PUT, a bad level refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'arrow-admin-'));
  const sink = createSocket('udp4');
  let received = 0;
  // DATA only: the router's liveness keepalives reach the endpoint too (it is a next hop).
  sink.on('message', (m: Buffer) => {
    if (m[OFFSET_TYPE] === PacketType.Data) received++;
  });
  await new Promise<void>((resolve) => sink.bind(0, SINK, () => resolve()));
  const sinkPort = sink.address().port;
  const dbPath = join(dir, 'alpha.db');
  const store = new SqliteStore(dbPath);
  await store.create({
    auth: AUTH,
    owner: 'acme',
    ingressPop: 'ams',
    egressPop: 'ams',
    bandwidthMbps: 100,
    internalAuth: 'b2'.repeat(16),
    internalRouters: [],
    action: { kind: 'deliver-endpoint', addresses: [`${SINK}:${sinkPort}`] },
  });
  const config = join(dir, 'router.yaml');
  writeFileSync(
    config,
    stringify({
      isp: 'alpha',
      pop: 'ams',
      name: 'alpha-ams-1',
      listen: `${HOST}:0`,
      store: { kind: 'sqlite', path: dbPath },
      dataplane: 'node',
      statsIntervalMs: 100,
      metrics: { circuits: [AUTH] },
    }),
  );
  const log = join(dir, 'router.log');
  const router = await startComponent(['router', '--config', config], log);
  const { ready } = router;
  const stderr = (): string => readFileSync(log, 'utf8');
  try {
    assert.match(
      ready.admin ?? '',
      /^http:\/\/127\.0\.0\.1:\d+$/,
      'the admin API binds to loopback by default',
    );
    const admin = ready.admin!;

    const data = (hopLimit: number, auth = AUTH): Buffer =>
      encode({
        type: PacketType.Data,
        hopLimit,
        authenticator: Buffer.from(auth, 'hex'),
        sequence: 1n,
        payload: new Uint8Array(100),
      });
    await sendRaw(ready.address!, [
      ...Array.from({ length: SENT }, () => data(16)),
      ...Array.from({ length: UNKNOWN }, () => data(16, 'ee'.repeat(16))),
      ...Array.from({ length: EXPIRED }, () => data(1)),
    ]);
    const metrics = await eventually(async () => {
      const r = await curl([`${admin}/metrics`]);
      return (sample(r.body, 'arrow_router_forwarded_packets_total') ?? 0) >= SENT &&
        (sample(r.body, 'arrow_router_dropped_packets_total{reason="hop-limit"}') ?? 0) >= EXPIRED
        ? r
        : undefined;
    }, 10_000);
    assert.ok(metrics, 'the counts reached /metrics');
    assert.equal(received, SENT, 'the sink got every packet');
    const m = metrics.body;
    const bytes = SENT * data(16).length;
    const expected: Record<string, number> = {
      arrow_router_forwarded_packets_total: SENT,
      arrow_router_forwarded_bytes_total: bytes,
      // DATA enters the ISP here: admitted packets and hop-limit drops are `in` (docs/wire.md).
      arrow_router_input_packets_total: SENT + EXPIRED,
      arrow_router_output_packets_total: SENT,
      arrow_router_output_bytes_total: bytes,
      'arrow_router_packets_total{type="data"}': SENT,
      'arrow_router_dropped_packets_total{reason="unknown-auth"}': UNKNOWN,
      'arrow_router_dropped_packets_total{reason="hop-limit"}': EXPIRED,
      arrow_router_circuits: 1,
      [`arrow_router_circuit_packets_total{circuit="${AUTH}"}`]: SENT,
      [`arrow_router_circuit_input_packets_total{circuit="${AUTH}"}`]: SENT + EXPIRED,
      [`arrow_router_circuit_dropped_packets_total{circuit="${AUTH}"}`]: EXPIRED,
      'arrow_router_dataplane_info{mode="node",attach="",interface=""}': 1,
    };
    for (const [series, value] of Object.entries(expected))
      assert.equal(sample(m, series), value, `${series} in:\n${m}`);
    assert.match(m, /^# TYPE arrow_router_forwarded_packets_total counter$/m);
    assert.match(m, /^process_resident_memory_bytes \d+/m, 'process metrics');

    const status = await curl([`${admin}/status`]);
    assert.equal(status.status, 200);
    const s = JSON.parse(status.body) as {
      service: string;
      name: string;
      logLevel: string;
      detail: {
        circuits: number;
        isp: string;
        dataplane: { mode: string };
        store: { tableRevision: number };
      };
    };
    assert.equal(s.service, 'router');
    assert.equal(s.name, 'alpha-ams-1');
    assert.equal(s.detail.isp, 'alpha');
    assert.equal(s.detail.circuits, 1);
    assert.equal(s.detail.dataplane.mode, 'node');
    assert.ok(s.detail.store.tableRevision >= 1);

    assert.deepEqual(JSON.parse((await curl([`${admin}/log/level`])).body), { level: 'info' });
    const bad = await curl([
      '-X',
      'PUT',
      '-H',
      'content-type: application/json',
      '-d',
      '{"level":"loud"}',
      `${admin}/log/level`,
    ]);
    assert.equal(bad.status, 400, bad.body);
    assert.match(bad.body, /level/);
    const set = await curl([
      '-X',
      'PUT',
      '-H',
      'content-type: application/json',
      '-d',
      '{"level":"debug"}',
      `${admin}/log/level`,
    ]);
    assert.equal(set.status, 200, set.body);
    assert.deepEqual(JSON.parse((await curl([`${admin}/log/level`])).body), { level: 'debug' });
    // The forwarding thread's logger took it: a table change is logged at debug level now.
    await store.create({
      auth: 'c3'.repeat(16),
      owner: 'acme',
      ingressPop: 'ams',
      egressPop: 'ams',
      bandwidthMbps: 1,
      internalAuth: 'd4'.repeat(16),
      internalRouters: [],
      action: { kind: 'deliver-endpoint', addresses: [`${SINK}:${sinkPort}`] },
    });
    assert.ok(
      await eventually(async () => stderr().includes('"msg":"table changes"'), 5000),
      `a debug line after PUT /log/level debug:\n${stderr().slice(-2000)}`,
    );
    const openapi = await curl([`${admin}/openapi.json`]);
    assert.equal(openapi.status, 200);
    assert.ok(Object.keys((JSON.parse(openapi.body) as { paths: object }).paths).includes('/metrics'));
  } finally {
    await stopComponent(router.proc);
    sink.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('portal and atlas admin APIs: /metrics counts requests by route and status, a sale and a refusal by reason, capacity sold per PoP pair; the atlas its queries and probe errors (curl against `arrow portal` and `arrow atlas`)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'arrow-admin-portal-'));
  const config = join(dir, 'portal.yaml');
  writeFileSync(
    config,
    stringify({
      isp: 'alpha',
      listen: '127.0.0.1:0',
      store: { kind: 'sqlite', path: join(dir, 'alpha.db') },
      pops: [
        { name: 'ams', routers: ['127.0.0.11:4000'] },
        { name: 'fra', routers: ['127.0.0.21:4000'] },
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
      accounts: [{ name: 'acme', apiKeyHash: await hashApiKey('acme-key-0000000000') }],
      targetPolicy: { allow: ['127.0.0.0/8'], deny: [], internal: [] },
    }),
  );
  const portal = await startComponent(['portal', '--config', config], join(dir, 'portal.log'));
  const { ready } = portal;
  try {
    assert.match(ready.admin ?? '', /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.notEqual(ready.admin, ready.url, 'the admin API is apart from the customer API');
    const key = ['-H', 'authorization: Bearer acme-key-0000000000', '-H', 'content-type: application/json'];
    const buy = (body: object): Promise<{ status: number; body: string }> =>
      curl(['-X', 'POST', ...key, '-d', JSON.stringify(body), `${ready.url}/circuits`]);
    const deliver = { kind: 'udp', target: '127.0.0.9:7' };
    assert.equal(
      (await buy({ ingressPop: 'ams', egressPop: 'fra', bandwidthMbps: 30, deliver })).status,
      201,
    );
    assert.equal((await buy({ ingressPop: 'ams', egressPop: 'zrh', bandwidthMbps: 1, deliver })).status, 400);
    assert.equal((await curl([`${ready.url}/offers`])).status, 200);
    assert.equal((await curl([`${ready.url}/circuits/${'00'.repeat(16)}`, ...key])).status, 404);

    const m = (await curl([`${ready.admin!}/metrics`])).body;
    const expected: Record<string, number> = {
      arrow_portal_circuit_creates_total: 1,
      'arrow_portal_circuit_refusals_total{reason="invalid"}': 1,
      'arrow_portal_http_requests_total{method="POST",route="/circuits",status="201"}': 1,
      'arrow_portal_http_requests_total{method="POST",route="/circuits",status="400"}': 1,
      'arrow_portal_http_requests_total{method="GET",route="/offers",status="200"}': 1,
      'arrow_portal_http_requests_total{method="GET",route="/circuits/:auth",status="404"}': 1,
      'arrow_portal_capacity_mbps{from="ams",to="fra",kind="offered"}': 100,
      'arrow_portal_capacity_mbps{from="ams",to="fra",kind="sold"}': 30,
      'arrow_portal_capacity_mbps{from="ams",to="fra",kind="available"}': 70,
      // The sale was checked against the portal's own table (docs/verify.md): sound, but each PoP
      // has one router, so a single failure strands it.
      'arrow_portal_table_checks_total{result="single-point"}': 1,
      'arrow_portal_table_checks_total{result="ok"}': 0,
      'arrow_portal_table_checks_total{result="refused"}': 0,
    };
    for (const [series, value] of Object.entries(expected))
      assert.equal(sample(m, series), value, `${series} in:\n${m}`);
    const status = JSON.parse((await curl([`${ready.admin!}/status`])).body) as {
      service: string;
      name: string;
      detail: { offers: number };
    };
    assert.equal(status.service, 'portal');
    assert.equal(status.name, 'alpha');
    assert.equal(status.detail.offers, 1);

    // The atlas over that portal: its query latency and requests, and its measurement probes
    // (the PoPs' routers do not exist here, so every probe fails and is counted).
    const atlasConfig = join(dir, 'atlas.yaml');
    writeFileSync(
      atlasConfig,
      stringify({
        listen: '127.0.0.1:0',
        isps: [{ name: 'alpha', portal: ready.url }],
        measure: { intervalMs: 100, timeoutMs: 50 },
      }),
    );
    const atlas = await startComponent(['atlas', '--config', atlasConfig], join(dir, 'atlas.log'));
    const at = atlas.ready;
    try {
      const query = await curl([
        '-X',
        'POST',
        '-H',
        'content-type: application/json',
        '-d',
        JSON.stringify({ from: 'alpha/ams', to: 'alpha/fra' }),
        `${at.url}/paths`,
      ]);
      assert.equal(query.status, 200, query.body);
      // The pair is measured (every echo lost: no router there), and /metrics says what /measurements says.
      const measured = await eventually(async () => {
        const r = JSON.parse((await curl([`${at.url}/measurements`])).body) as {
          pairs: { kind: string; key: string; lossPct: number | null; samples: number }[];
        };
        return r.pairs.find((p) => p.samples > 0 && p.lossPct !== null);
      }, 10_000);
      assert.ok(measured, 'the atlas measured the offer segment');
      const am = (await curl([`${at.admin!}/metrics`])).body;
      assert.equal(
        sample(am, `arrow_atlas_pair_loss_ratio{kind="${measured.kind}",pair="${measured.key}"}`),
        measured.lossPct! / 100,
        am,
      );
      assert.equal(
        sample(am, 'arrow_atlas_http_requests_total{method="POST",route="/paths",status="200"}'),
        1,
        am,
      );
      assert.equal(sample(am, 'arrow_atlas_query_duration_seconds_count{status="200"}'), 1, am);
      assert.equal(JSON.parse((await curl([`${at.admin!}/status`])).body).service, 'atlas');
    } finally {
      await stopComponent(atlas.proc);
    }
  } finally {
    await stopComponent(portal.proc);
    rmSync(dir, { recursive: true, force: true });
  }
});
