import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { Lab } from '../src/lab/lab.js';
import type { Topology } from '../src/lab/topology.js';
import { runEchoes } from '../src/lab/demo.js';
import { CLI_PATH } from '../src/lab/process.js';
import { Endpoint } from '../src/endpoint/endpoint.js';
import { buyPath, releasePath } from '../src/endpoint/path.js';
import { PortalClient } from '../src/endpoint/portal-client.js';
import { EtcdStore } from '../src/store/etcd.js';
import type { Circuit, CircuitInput, RouterStats } from '../src/store/circuit.js';
import { newAuthenticator } from '../src/wire/authenticator.js';
import { eventually, routerStats } from './helpers/network.js';

// A circuit record no router can compile, written straight into the ISP's store (as an older
// portal or an operator's direct write would), while the routers run and across a restart.
// Every piece is a real process: routers, portal, store (SQLite file or etcd member), echo server.

const topology = (store: Topology['isps'][0]['store']): Topology => ({
  name: `reject-${store?.kind}`,
  statsIntervalMs: 200,
  servers: [{ name: 'echo', kind: 'udp-echo' }],
  isps: [
    {
      name: 'alpha',
      store,
      accounts: [{ name: 'acme', apiKey: 'acme-key-alpha-000000' }],
      pops: [{ name: 'ams', routers: 2 }],
      offers: [
        {
          from: 'ams',
          to: 'ams',
          capacityMbps: 1000,
          latencyMs: { min: 1, max: 10 },
          maxLossPct: 1,
          uptimePct: 99,
          pricePerMbps: 1,
        },
      ],
    },
  ],
});

const ROUTERS = ['alpha-ams-1', 'alpha-ams-2'];

function badInput(auth: string, next = '1.2.3.4:70000'): Omit<Circuit, 'revision'> {
  const input: CircuitInput = {
    auth,
    owner: 'acme',
    ingressPop: 'ams',
    egressPop: 'ams',
    bandwidthMbps: 1,
    internalAuth: newAuthenticator(),
    internalRouters: [],
    action: { kind: 'forward', next: { addresses: [next], auth: newAuthenticator() } },
  };
  return { ...input, createdAt: new Date().toISOString() };
}

/** Writes past every validator: the store's own format, as the portal would have written it. */
interface RawWriter {
  put(record: Omit<Circuit, 'revision'>): Promise<void>;
  delete(auth: string): Promise<void>;
  close(): Promise<void>;
}

function sqliteWriter(path: string): RawWriter {
  const db = new Database(path);
  db.pragma('busy_timeout = 5000');
  const put = db.transaction((record: Omit<Circuit, 'revision'>) => {
    const revision = Number(
      db.prepare("INSERT INTO changes (auth, kind, data) VALUES (?, 'put', NULL)").run(record.auth)
        .lastInsertRowid,
    );
    const data = JSON.stringify({ ...record, revision });
    db.prepare(
      'INSERT OR REPLACE INTO circuits (auth, owner, ingress_pop, egress_pop, bandwidth_mbps, revision, data) VALUES (?, ?, ?, ?, ?, ?, ?)',
    ).run(
      record.auth,
      record.owner,
      record.ingressPop,
      record.egressPop,
      record.bandwidthMbps,
      revision,
      data,
    );
    db.prepare('UPDATE changes SET data = ? WHERE revision = ?').run(data, revision);
  });
  const del = db.transaction((auth: string) => {
    db.prepare('DELETE FROM circuits WHERE auth = ?').run(auth);
    db.prepare("INSERT INTO changes (auth, kind, data) VALUES (?, 'delete', NULL)").run(auth);
  });
  return {
    put: async (r) => void put.immediate(r),
    delete: async (a) => void del.immediate(a),
    close: async () => void db.close(),
  };
}

function etcdWriter(endpoints: string[]): RawWriter {
  const s = new EtcdStore({ endpoints, prefix: '/arrow/alpha/' });
  return {
    put: async (r) =>
      void (await s.client.put(`/arrow/alpha/circuits/${r.auth}`).value(JSON.stringify(r)).exec()),
    delete: async (a) => void (await s.client.delete().key(`/arrow/alpha/circuits/${a}`).exec()),
    close: () => s.close(),
  };
}

async function rejectionsEverywhere(lab: Lab, auth: string, want: boolean): Promise<RouterStats[]> {
  const since = Date.now();
  return eventually(async () => {
    const all = (await routerStats(lab, 'alpha')).filter(
      (s) => ROUTERS.includes(s.router) && Date.parse(s.updatedAt) > since,
    );
    const ok =
      all.length === ROUTERS.length &&
      all.every((s) =>
        want ? s.rejected === 1 && s.rejections?.[auth] : s.rejected === 0 && !s.rejections?.[auth],
      );
    return ok ? all : (undefined as unknown as RouterStats[]);
  }, 10_000);
}

async function arrowCircuits(url: string, key: string): Promise<string> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [CLI_PATH, 'circuits', '--portal', url, '--key', key],
    {
      timeout: 20_000,
    },
  );
  return stdout;
}

for (const store of [{ kind: 'sqlite' as const }, { kind: 'etcd' as const, members: 1 }]) {
  test(`${store.kind}: an uncompilable record is skipped and reported; routers keep forwarding and restart fine`, async () => {
    const lab = await Lab.start(topology(store));
    const endpoint = await Endpoint.open('127.0.0.1:0');
    const isp = lab.isp('alpha');
    const key = isp.accounts[0]!.apiKey;
    const writer =
      store.kind === 'sqlite'
        ? sqliteWriter(isp.store.kind === 'sqlite' ? isp.store.path : '')
        : etcdWriter(isp.etcd!.endpoints);
    const path = await buyPath(
      {
        segments: [{ isp: 'alpha', portal: isp.url, apiKey: key, ingressPop: 'ams', egressPop: 'ams' }],
        target: { kind: 'udp', address: lab.server('echo').address },
      },
      { replyTo: endpoint.replyTo },
    );
    try {
      endpoint.useUnprotected(path);
      await endpoint.waitReady();
      const echoes = async (): Promise<number> => (await runEchoes(endpoint, 20, 5, 1000)).received;
      assert.ok(await eventually(echoes), 'path never came up');

      // While the routers run: the watch delivers the bad record.
      const bad = newAuthenticator();
      await writer.put(badInput(bad));
      const stats = await rejectionsEverywhere(lab, bad, true);
      assert.ok(stats, 'every router reports rejected=1 with the reason');
      for (const s of stats)
        assert.match(s.rejections![bad]!, /address "1\.2\.3\.4:70000": port 70000 out of range/);
      // The forwarding thread's loop delay comes with the stats (the store client runs on its own thread).
      for (const s of stats)
        assert.ok(s.loopDelayMs && s.loopDelayMs.max >= s.loopDelayMs.p50, JSON.stringify(s.loopDelayMs));
      for (const r of ROUTERS) assert.equal(lab.router(r).managed!.proc.exitCode, null, `${r} still running`);
      assert.equal(await echoes(), 20, 'the other circuit is still forwarded, every echo back');

      // The customer sees why, in the API and in `arrow circuits`.
      const portal = new PortalClient(isp.url, key);
      const view = await portal.stats(bad);
      assert.equal(view.rejected?.length, ROUTERS.length);
      assert.match(view.rejected![0]!.reason, /port 70000 out of range/);
      const listing = await arrowCircuits(isp.url, key);
      assert.match(
        listing,
        /REJECTED by alpha-ams-\d,alpha-ams-\d: next hop address 0: .*port 70000 out of range/,
      );

      // At startup: a killed router comes back with the bad record in its snapshot, and forwards.
      lab.kill('alpha-ams-1');
      await lab.restart('alpha-ams-1');
      assert.ok(await rejectionsEverywhere(lab, bad, true), 'the restarted router reports it too');
      assert.ok(await eventually(async () => (await echoes()) === 20), 'forwarding after the restart');

      // A valid put of the same circuit replaces the rejection; a delete clears a new one.
      await writer.put(badInput(bad, '127.0.0.1:9'));
      assert.ok(await rejectionsEverywhere(lab, bad, false), 'fixed record: rejection gone');
      await writer.put(badInput(bad, 'example.com:9'));
      const again = await rejectionsEverywhere(lab, bad, true);
      assert.match(again[0]!.rejections![bad]!, /"example\.com" is not an IPv4 literal/);
      await writer.delete(bad);
      assert.ok(await rejectionsEverywhere(lab, bad, false), 'deleted record: rejection gone');
      assert.equal(await echoes(), 20);
    } finally {
      await writer.close();
      await releasePath(path).catch((err: unknown) => console.error(`release: ${(err as Error).message}`));
      await endpoint.close();
      await lab.stop();
    }
  });
}
