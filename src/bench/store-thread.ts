/**
 * Measures what store work costs the forwarding thread: one real router process on a SQLite
 * store with many circuits, DATA forwarded at a fixed rate while the store changes steadily and
 * the router publishes its (large) stats often. Run once with the store client on the forwarding
 * thread (`storeThread: false`, the baseline, in the same run) and once on its own thread (the
 * default), and compare:
 *   arrow bench store-thread [--circuits 2000] [--pps 2000] [--changes 400] [--seconds 10] [--json]
 * Per mode: the router's event-loop delay (as it publishes it), the forwarded packets' latency
 * (sent → forwarded back to us), how many arrived, and whether the run is valid; then the ratios.
 * Bounded: each run lasts `seconds` (at most 60), sends at most pps × seconds packets.
 */
import { createSocket } from 'node:dgram';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { startComponent, stopComponent } from '../lab/process.js';
import { SqliteStore } from '../store/sqlite.js';
import type { RouterConfigInput } from '../router/config.js';
import { authToBytes, newAuthenticator } from '../wire/authenticator.js';
import { encode, decode, PacketType } from '../wire/header.js';
import { percentile, round } from '../util/stats.js';
import { Checks, type Validity } from './validity.js';

/** One mode's figures: the store client on the forwarding thread (the baseline) or on its own. */
export interface ModeResult extends Validity {
  storeThread: boolean;
  sent: number;
  received: number;
  latencyMs: { p50: number; p99: number; p999: number; max: number };
  /** The router's own loop-delay figures, one per stats publish during the run. */
  loopDelayMs: { p50Median: number; p99Median: number; p99Max: number; max: number; publishes: number };
  storeChanges: number;
}

async function runMode(
  storeThread: boolean,
  o: { circuits: number; pps: number; changes: number; seconds: number },
): Promise<ModeResult> {
  const dir = mkdtempSync(join(tmpdir(), 'arrow-store-thread-'));
  const dbPath = join(dir, 'alpha.db');
  const store = new SqliteStore(dbPath, { busyTimeoutMs: 2000 });
  const sink = createSocket('udp4');
  await new Promise<void>((r) => sink.bind(0, '127.0.0.1', () => r()));
  const sinkAddr = `127.0.0.1:${sink.address().port}`;
  const spare = '127.0.0.1:9';
  const auths: string[] = [];
  for (let i = 0; i < o.circuits; i++) {
    const c = await store.create({
      auth: newAuthenticator(),
      owner: 'bench',
      ingressPop: 'ams',
      egressPop: 'ams',
      bandwidthMbps: 1,
      internalAuth: newAuthenticator(),
      internalRouters: [],
      action: { kind: 'deliver-endpoint', addresses: [sinkAddr] },
    });
    auths.push(c.auth);
  }
  const cfg: RouterConfigInput = {
    name: 'r1',
    isp: 'alpha',
    pop: 'ams',
    listen: '127.0.0.1:0',
    store: { kind: 'sqlite', path: dbPath },
    statsIntervalMs: 200,
    storeThread,
  };
  const cfgPath = join(dir, 'router.yaml');
  writeFileSync(cfgPath, stringify(cfg));
  const router = await startComponent(['router', '--config', cfgPath], join(dir, 'router.log'));
  const [host, port] = [router.ready.address!.split(':')[0]!, Number(router.ready.address!.split(':')[1])];

  // Traffic on the first 50 circuits (never the churned ones' routes: those are re-chained to
  // the same sink, so every packet still has somewhere to go).
  const latencies: number[] = [];
  let received = 0;
  sink.on('message', (msg) => {
    const p = decode(msg);
    if (!p.ok || p.packet.payload.length < 8) return;
    const sentAt = Buffer.from(p.packet.payload).readBigUInt64BE(0);
    latencies.push(Number(process.hrtime.bigint() - sentAt) / 1e6);
    received++;
  });
  const headers = auths.slice(0, 50).map((a) => authToBytes(a));
  let sent = 0;
  let changes = 0;
  const until = Date.now() + o.seconds * 1000;
  const publishes: Array<{ p50: number; p99: number; max: number }> = [];
  const startedAt = new Date().toISOString();

  const traffic = (async () => {
    const perTick = Math.max(1, Math.round(o.pps / 200));
    while (Date.now() < until) {
      for (let i = 0; i < perTick; i++) {
        const payload = Buffer.alloc(64);
        payload.writeBigUInt64BE(process.hrtime.bigint(), 0);
        const pkt = encode({
          type: PacketType.Data,
          hopLimit: 64,
          authenticator: headers[sent % headers.length]!,
          sequence: BigInt(sent),
          payload,
        });
        sink.send(pkt, port, host);
        sent++;
      }
      await sleep(5);
    }
  })();
  // The store changes come from another thread: synchronous SQLite writes here would delay
  // our own receive timestamps and blur the latency we measure.
  const churn = new Promise<number>((resolve, reject) => {
    const w = new Worker(new URL(import.meta.url), {
      workerData: { dbPath, auths: auths.slice(50), sinkAddr, spare, changes: o.changes, until },
    });
    w.once('message', (n: number) => resolve(n));
    w.once('error', reject);
  }).then((n) => void (changes = n));
  // The router publishes its loop delay with its stats (one row, replaced): read each publish once.
  const watchStats = (async () => {
    let seen = '';
    while (Date.now() < until + 300) {
      const s = (await store.listRouterStats()).find((x) => x.router === 'r1');
      if (s?.loopDelayMs && s.updatedAt > startedAt && s.updatedAt !== seen) {
        seen = s.updatedAt;
        publishes.push(s.loopDelayMs);
      }
      await sleep(50);
    }
  })();
  await Promise.all([traffic, churn, watchStats]);
  await stopComponent(router.proc, 3000);
  sink.close();
  await store.close();
  const p99s = publishes.map((p) => p.p99);
  // A run whose load did not happen as stated measured something else.
  const validity = new Checks()
    .check(received === sent, `${sent - received} of ${sent} forwarded packets lost`)
    .check(
      sent >= 0.8 * o.pps * o.seconds,
      `sent only ${sent} of ${o.pps * o.seconds} packets (the sender fell behind)`,
    )
    .check(
      changes >= 0.5 * o.changes * o.seconds,
      `only ${changes} of ${o.changes * o.seconds} store changes were made (the churn fell behind)`,
    )
    .check(
      publishes.length >= 2 * o.seconds,
      `only ${publishes.length} stats publishes seen (expected ~5/s)`,
    ).result;
  return {
    ...validity,
    storeThread,
    sent,
    received,
    latencyMs: {
      p50: round(percentile(latencies, 50)),
      p99: round(percentile(latencies, 99)),
      p999: round(percentile(latencies, 99.9)),
      max: round(Math.max(0, ...latencies)),
    },
    loopDelayMs: {
      p50Median: round(
        percentile(
          publishes.map((p) => p.p50),
          50,
        ),
      ),
      p99Median: round(percentile(p99s, 50)),
      p99Max: Math.max(0, ...p99s),
      max: Math.max(0, ...publishes.map((p) => p.max)),
      publishes: publishes.length,
    },
    storeChanges: changes,
  };
}

/** The churn thread: re-chains circuits (real route changes the router recompiles) at a steady rate. */
async function churnThread(): Promise<void> {
  const d = workerData as {
    dbPath: string;
    auths: string[];
    sinkAddr: string;
    spare: string;
    changes: number;
    until: number;
  };
  const store = new SqliteStore(d.dbPath, { busyTimeoutMs: 2000 });
  const perTick = Math.max(1, Math.round(d.changes / 20));
  let k = 0;
  while (Date.now() < d.until) {
    for (let i = 0; i < perTick; i++) {
      const auth = d.auths[k++ % d.auths.length]!;
      await store.update(auth, {
        action: { kind: 'deliver-endpoint', addresses: k % 2 ? [d.sinkAddr, d.spare] : [d.sinkAddr] },
      });
    }
    await sleep(50);
  }
  await store.close();
  parentPort!.postMessage(k);
}

export interface StoreThreadBenchOptions {
  circuits: number;
  pps: number;
  changes: number;
  seconds: number;
  json?: boolean;
}

export interface StoreThreadReport {
  options: Omit<StoreThreadBenchOptions, 'json'>;
  /** The baseline (store client on the forwarding thread) first, then the store thread. */
  results: ModeResult[];
  valid: boolean;
  invalidReason: string | null;
  /** Store thread ÷ baseline; below 1 is better. Absent when either run is invalid. */
  ratios: { latencyP99: number; latencyP999: number; latencyMax: number; loopDelayP99: number } | null;
}

export async function runStoreThreadBench(opts: StoreThreadBenchOptions): Promise<StoreThreadReport> {
  const o = {
    circuits: opts.circuits,
    pps: opts.pps,
    changes: opts.changes,
    seconds: Math.min(60, opts.seconds),
  };
  const results: ModeResult[] = [];
  for (const mode of [false, true]) results.push(await runMode(mode, o));
  const [base, own] = results as [ModeResult, ModeResult];
  const invalid = results
    .filter((r) => !r.valid)
    .map((r) => `storeThread ${r.storeThread}: ${r.invalidReason}`);
  const ratio = (a: number, b: number): number => (b > 0 ? round(a / b) : NaN);
  return {
    options: o,
    results,
    valid: invalid.length === 0,
    invalidReason: invalid.length ? invalid.join('; ') : null,
    ratios: invalid.length
      ? null
      : {
          latencyP99: ratio(own.latencyMs.p99, base.latencyMs.p99),
          latencyP999: ratio(own.latencyMs.p999, base.latencyMs.p999),
          latencyMax: ratio(own.latencyMs.max, base.latencyMs.max),
          loopDelayP99: ratio(own.loopDelayMs.p99Median, base.loopDelayMs.p99Median),
        },
  };
}

export async function runStoreThreadBenchCommand(
  o: StoreThreadBenchOptions & {
    /** Where store-thread.svg and store-thread.png (the plot) are written. */
    out: string;
  },
): Promise<void> {
  const r = await runStoreThreadBench(o);
  if (o.json) console.log(JSON.stringify(r, null, 2));
  else {
    console.log(
      `store work vs the forwarding thread: ${r.options.circuits} circuits, ${r.options.pps} pkt/s, ${r.options.changes} changes/s, ${r.options.seconds} s per mode`,
    );
    for (const m of r.results) {
      const name = m.storeThread ? 'store thread        ' : 'forwarding thread   ';
      console.log(
        m.valid
          ? `  ${name} latency p50/p99/p99.9/max ${m.latencyMs.p50}/${m.latencyMs.p99}/${m.latencyMs.p999}/${m.latencyMs.max} ms, loop delay p99 (median publish) ${m.loopDelayMs.p99Median} ms, worst ${m.loopDelayMs.max} ms, ${m.received}/${m.sent} forwarded`
          : `  ${name} INVALID: ${m.invalidReason}`,
      );
    }
    if (r.ratios)
      console.log(
        `  store thread / forwarding thread: latency p99 ${r.ratios.latencyP99}x, p99.9 ${r.ratios.latencyP999}x, max ${r.ratios.latencyMax}x, loop delay p99 ${r.ratios.loopDelayP99}x`,
      );
  }
  // Loaded only now, and never in the churn thread, which runs this module too.
  const { storeThreadChart, writeBenchPlotFor } = await import('./plots.js');
  await writeBenchPlotFor(storeThreadChart(r), o, 'store-thread');
  if (!r.valid) process.exitCode = 1;
}

// The churn writer runs this module as a worker thread.
if (!isMainThread && (workerData as { dbPath?: string } | null)?.dbPath)
  churnThread().catch((err: unknown) => {
    console.error(`store-thread bench churn: ${(err as Error).message}`);
    process.exit(1);
  });
