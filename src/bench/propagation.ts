import { mkdtempSync, rmSync } from 'node:fs';
import { withProgress } from '../util/progress.js';
import { Agent, request } from 'node:http';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CreateCircuitBody } from '../api/portal.js';
import { Lab, type TableMessage } from '../lab/lab.js';
import type { Topology } from '../lab/topology.js';
import { percentile, round } from '../util/stats.js';
import { cpuPercent, machinePercent, sampleCpu } from '../util/cpu.js';
import { Checks, MAX_OTHER_CPU_PCT, type Validity } from './validity.js';

export { MAX_OTHER_CPU_PCT };

/**
 * `arrow bench propagation`: how long after the portal answers a create with 201 every
 * router of the ISP has the circuit in its forwarding table, and how many creates per
 * second the portal sustains, with a SQLite store and with a 3-member etcd cluster.
 *
 * One ISP of real processes (a Lab): PoPs `a` and `b` with two routers each, and its
 * portal. Circuits go from `a` to `b` and deliver to a UDP target, so every router
 * holds an entry for each: `a`'s routers the internal hop, `b`'s the delivery. The
 * routers run with `announceTable` and report each applied change over IPC with a
 * wall-clock stamp; the bench stamps each 201 with the same clock (one host).
 */

export type StoreKind = 'sqlite' | 'etcd';
export const STORE_KINDS: readonly StoreKind[] = ['sqlite', 'etcd'];

/** The issue's target, asked of etcd; SQLite is shown against it too. */
export const TARGET = { p99Ms: 50, createsPerSec: 1000 } as const;

const WARMUP_CIRCUITS = 50;
/** How long after the last 201 the routers may take to report the stragglers. */
const SETTLE_TIMEOUT_MS = 10_000;
const INGRESS = 'a';
const EGRESS = 'b';
const ACCOUNT = { name: 'bench', apiKey: 'bench-key-propagation-0000000000' };
/** Where every benched circuit delivers: the discard port, never sent to. */
const DELIVER_TARGET = '127.0.0.1:9';

export interface PropagationOptions {
  stores: StoreKind[];
  circuits: number;
  concurrency: number;
  warmup?: number;
  /** Called with progress lines (stderr in the CLI). */
  progress?: (line: string) => void;
}

/**
 * The baseline, measured in the same lab just before the creates: GET /healthz at the same
 * concurrency on the same connections, the portal's HTTP cost with no store and no router behind it.
 */
export interface HttpBaseline {
  requestsPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

/** A run is a result only on a machine this bench has to itself: other processes' CPU skews creates/s. */

export interface StoreResult extends Validity {
  baseline: HttpBaseline;
  /** createsPerSec / baseline.requestsPerSec. */
  ratio: number;
  /** Propagation: the last router's table stamp minus the 201's arrival, over circuits every router reported. */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Successful creates over the time from the first request sent to the last 201 received. */
  createsPerSec: number;
  /** Circuits created (201) in the measured phase. */
  circuits: number;
  /** Circuits every router had before the 201 arrived (counted as 0 ms in the percentiles). */
  alreadyPropagated: number;
  /** Circuits some router never reported within the settle timeout: a bug. */
  missing: number;
  /** Creates the portal refused or that failed (HTTP error, timeout). */
  failed: number;
  /** `resync` table events (a router replaced its whole table): they carry no per-circuit stamps. */
  resyncs: number;
  /** Circuits left out of the sample because a router got them only through a resync. */
  resynced: number;
  /** Round trip of POST /circuits as the client saw it. */
  createP50Ms: number;
  createP99Ms: number;
  /** Percent of one core per role over the measured phase (Linux only): where the machine's time went. */
  cpu: Record<string, number>;
  /** The issue's target: p99 < 50 ms and >= 1000 creates/s. */
  meetsTarget: boolean;
  /** First few failure messages, when any. */
  errors?: string[];
}

export interface PropagationReport {
  sqlite?: StoreResult;
  etcd?: StoreResult;
  routers: number;
  concurrency: number;
  machine: { cpus: number; node: string };
}

/** Wall-clock ms with sub-ms precision, the same clock the routers stamp with. */
const now = (): number => performance.timeOrigin + performance.now();

export async function runPropagationBenchCommand(o: {
  json?: boolean;
  store?: StoreKind;
  circuits: number;
  concurrency: number;
  /** Where propagation.svg and propagation.png (the plot) are written. */
  out: string;
}): Promise<void> {
  const report = await withProgress(o.json, (progress) =>
    runPropagationBench({
      stores: o.store ? [o.store] : [...STORE_KINDS],
      circuits: o.circuits,
      concurrency: o.concurrency,
      progress,
    }),
  );
  console.log(o.json ? JSON.stringify(report) : formatPropagationReport(report));
  // Loaded only now: the plotting libraries stay out of the process while it measures.
  const { propagationChart, writeBenchPlotFor } = await import('./plots.js');
  await writeBenchPlotFor(propagationChart(report), o, 'propagation');
  const bad = STORE_KINDS.flatMap((k) => {
    const r = report[k];
    return r && !r.valid ? [`${k}: ${r.invalidReason}`] : [];
  });
  if (bad.length) {
    console.error(`arrow: INVALID, not results: ${bad.join('; ')}`);
    process.exitCode = 1;
  }
}

export async function runPropagationBench(opts: PropagationOptions): Promise<PropagationReport> {
  const report: PropagationReport = {
    routers: 4,
    concurrency: opts.concurrency,
    machine: { cpus: availableParallelism(), node: process.version },
  };
  let current: { dir: string; lab: Lab | undefined } | undefined;
  // Ctrl-C: stop every process of the lab (the etcd members have no IPC channel to notice us go).
  // While the lab is still starting there is no Lab to stop: exiting SIGKILLs what it started
  // (Lab and EtcdCluster hook 'exit'), and the working dir goes after them.
  const onSigint = (): void => {
    process.stderr.write('interrupted: stopping the lab\n');
    const c = current;
    if (c) process.once('exit', () => rmSync(c.dir, { recursive: true, force: true }));
    void (c?.lab ? c.lab.stop() : Promise.resolve()).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSigint);
  try {
    for (const kind of opts.stores) {
      opts.progress?.(
        `${kind}: starting the lab (4 routers, portal${kind === 'etcd' ? ', 3 etcd members' : ''})`,
      );
      const dir = mkdtempSync(join(tmpdir(), `arrow-bench-propagation-${kind}-`));
      current = { dir, lab: undefined };
      // Kept on failure for the logs (the error names the dir); removed after a clean run.
      const lab = await Lab.start(topology(kind), { announceTable: true, dir, keep: true }).catch(
        (err: Error) => {
          throw new Error(`${kind}: the lab did not start (logs in ${dir}): ${err.message}`, { cause: err });
        },
      );
      current.lab = lab;
      let ok = false;
      try {
        report[kind] = await measure(lab, kind, opts);
        ok = true;
      } catch (err) {
        throw new Error(`${kind}: ${(err as Error).message} (logs in ${dir})`, { cause: err });
      } finally {
        current = undefined;
        await lab.stop();
        if (ok) rmSync(dir, { recursive: true, force: true });
      }
    }
  } finally {
    process.off('SIGINT', onSigint);
  }
  return report;
}

function topology(kind: StoreKind): Topology {
  return {
    name: 'propagation',
    isps: [
      {
        name: 'bench',
        accounts: [ACCOUNT],
        pops: [
          { name: INGRESS, routers: 2 },
          { name: EGRESS, routers: 2 },
        ],
        offers: [
          {
            from: INGRESS,
            to: EGRESS,
            // Admission must never refuse: the bench measures propagation, not selling out.
            capacityMbps: 1e15,
            latencyMs: { min: 1, max: 5 },
            maxLossPct: 0.1,
            uptimePct: 99.99,
            pricePerMbps: 1,
          },
        ],
        store: kind === 'etcd' ? { kind: 'etcd', members: 3 } : { kind: 'sqlite' },
      },
    ],
    servers: [],
    statsIntervalMs: 1000,
  };
}

/** Per-circuit table stamps, fed by every router's reports. */
class TableLog {
  /** auth → router → first wall-clock stamp at which that router's table had it. */
  readonly puts = new Map<string, Map<string, number>>();
  /** router → stamps of its resyncs. */
  readonly resyncs = new Map<string, number[]>();
  private readonly seenResyncs = new Set<string>();
  private waiter: { auths: string[]; resolve: () => void } | undefined;

  constructor(readonly routers: string[]) {}

  record(router: string, msg: TableMessage): void {
    if (msg.type === 'resync') {
      // The same report may reach us twice (lab callback and our own listener): count it once.
      const key = `${router}/${msg.revision}/${msg.at}`;
      if (this.seenResyncs.has(key)) return;
      this.seenResyncs.add(key);
      this.resyncs.set(router, [...(this.resyncs.get(router) ?? []), msg.at]);
      return;
    }
    if (msg.type !== 'put' || !msg.auth) return;
    let byRouter = this.puts.get(msg.auth);
    if (!byRouter) this.puts.set(msg.auth, (byRouter = new Map()));
    const prev = byRouter.get(router);
    if (prev === undefined || msg.at < prev) byRouter.set(router, msg.at);
    if (this.waiter && byRouter.size === this.routers.length) this.checkWaiter();
  }

  get resyncCount(): number {
    return [...this.resyncs.values()].reduce((n, l) => n + l.length, 0);
  }

  complete(auth: string): boolean {
    return (this.puts.get(auth)?.size ?? 0) === this.routers.length;
  }

  /** Resolves when every router has reported each of `auths`, or after `timeoutMs`. */
  async waitAll(auths: string[], timeoutMs: number): Promise<void> {
    const pending = auths.filter((a) => !this.complete(a));
    if (pending.length === 0) return;
    const done = new Promise<void>((resolve) => (this.waiter = { auths: pending, resolve }));
    const timer = sleep(timeoutMs, undefined, { ref: false });
    await Promise.race([done, timer]);
    this.waiter = undefined;
  }

  private checkWaiter(): void {
    const w = this.waiter!;
    w.auths = w.auths.filter((a) => !this.complete(a));
    if (w.auths.length === 0) w.resolve();
  }
}

interface Created {
  auth: string;
  sentAt: number;
  respondedAt: number;
}

/**
 * POST /circuits over keep-alive connections with node:http. Not PortalClient (fetch):
 * on 2 cores the client shares the CPU with the portal and the routers, and undici's
 * fetch costs several times more per request, so it would bound the creates/s it
 * measures and stamp 201s late (understating propagation) while its event loop is busy.
 */
class CreateClient {
  private readonly agent: Agent;
  private readonly url: URL;
  private readonly healthUrl: URL;
  private readonly body: Buffer;
  private readonly headers: Record<string, string>;

  constructor(baseUrl: string, apiKey: string, concurrency: number) {
    this.url = new URL('/circuits', baseUrl);
    this.healthUrl = new URL('/healthz', baseUrl);
    this.agent = new Agent({ keepAlive: true, maxSockets: concurrency });
    const body: CreateCircuitBody = {
      ingressPop: INGRESS,
      egressPop: EGRESS,
      bandwidthMbps: 1,
      deliver: { kind: 'udp', target: DELIVER_TARGET },
    };
    this.body = Buffer.from(JSON.stringify(body));
    this.headers = {
      authorization: `Bearer ${apiKey}`,
      'content-type': 'application/json',
      'content-length': String(this.body.length),
    };
  }

  /** GET /healthz: the baseline request, the same connections without the store. */
  health(): Promise<void> {
    return new Promise((resolve, reject) => {
      const req = request(this.healthUrl, { agent: this.agent, timeout: 10_000 }, (res) => {
        res.on('data', () => undefined);
        res.on('error', reject);
        res.on('end', () =>
          res.statusCode === 200 ? resolve() : reject(new Error(`GET /healthz: HTTP ${res.statusCode}`)),
        );
      });
      req.on('timeout', () => req.destroy(new Error('no answer within 10 s')));
      req.on('error', reject);
      req.end();
    });
  }

  /** Resolves with the new circuit's authenticator and the wall-clock time its 201 was complete. */
  create(): Promise<{ auth: string; respondedAt: number }> {
    return new Promise((resolve, reject) => {
      const req = request(
        this.url,
        { method: 'POST', agent: this.agent, headers: this.headers, timeout: 10_000 },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const respondedAt = now();
            const text = Buffer.concat(chunks).toString('utf8');
            if (res.statusCode !== 201) {
              let msg = text.slice(0, 300);
              try {
                msg = (JSON.parse(text) as { message?: string }).message ?? msg;
              } catch (err) {
                // Not JSON: the text itself is the message.
                if (!(err instanceof SyntaxError)) throw err;
              }
              return reject(new Error(`HTTP ${res.statusCode}: ${msg}`));
            }
            try {
              resolve({ auth: (JSON.parse(text) as { auth: string }).auth, respondedAt });
            } catch (err) {
              reject(err as Error);
            }
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error('no answer within 10 s')));
      req.on('error', reject);
      req.end(this.body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** Keeps `concurrency` creates in flight until `count` have been attempted. */
async function drive(
  client: CreateClient,
  count: number,
  concurrency: number,
): Promise<{ created: Created[]; errors: string[]; firstSent: number; lastResponse: number }> {
  const created: Created[] = [];
  const errors: string[] = [];
  let next = 0;
  let firstSent = Number.POSITIVE_INFINITY;
  let lastResponse = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      const sentAt = now();
      firstSent = Math.min(firstSent, sentAt);
      try {
        const { auth, respondedAt } = await client.create();
        lastResponse = Math.max(lastResponse, respondedAt);
        created.push({ auth, sentAt, respondedAt });
      } catch (err) {
        lastResponse = Math.max(lastResponse, now());
        errors.push((err as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return { created, errors, firstSent, lastResponse };
}

/** The baseline: `count` GET /healthz, `concurrency` in flight. */
async function measureBaseline(
  client: CreateClient,
  count: number,
  concurrency: number,
): Promise<HttpBaseline> {
  const times: number[] = [];
  let next = 0;
  const t0 = now();
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      const sentAt = now();
      await client.health();
      times.push(now() - sentAt);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  const seconds = (now() - t0) / 1000;
  return {
    requestsPerSec: Math.round(times.length / seconds),
    p50Ms: round(percentile(times, 50), 2),
    p99Ms: round(percentile(times, 99), 2),
  };
}

/**
 * The checks a run must pass to be a result: every create succeeded and reached every router,
 * enough samples, and no other load on the machine. Pure, so the rules are tested on their own.
 */
export function validatePropagation(
  r: Pick<StoreResult, 'circuits' | 'missing' | 'failed' | 'resynced' | 'cpu'>,
  requested: number,
): Validity {
  const sampled = r.circuits - r.missing - r.resynced;
  const other = r.cpu.other;
  return new Checks()
    .check(r.failed === 0, `${r.failed} creates failed`)
    .check(r.missing === 0, `${r.missing} circuits never reached every router`)
    .check(
      sampled >= 0.9 * requested,
      `too few samples: ${sampled} of ${requested} creates timed (${r.resynced} only via a resync)`,
    )
    .check(
      other === undefined || other <= MAX_OTHER_CPU_PCT,
      `other processes took ${other}% of a core during the run (> ${MAX_OTHER_CPU_PCT}%): the machine was not quiet`,
    ).result;
}

async function measure(lab: Lab, kind: StoreKind, opts: PropagationOptions): Promise<StoreResult> {
  const isp = lab.isps[0]!;
  const routers = lab.routers;
  const log = new TableLog(routers.map((r) => r.name));
  lab.onTable = (router, msg) => log.record(router, msg);
  const client = new CreateClient(isp.url, ACCOUNT.apiKey, opts.concurrency);
  try {
    return await measureWith(client, lab, kind, log, opts);
  } finally {
    client.close();
  }
}

async function measureWith(
  client: CreateClient,
  lab: Lab,
  kind: StoreKind,
  log: TableLog,
  opts: PropagationOptions,
): Promise<StoreResult> {
  const isp = lab.isps[0]!;
  const routers = lab.routers;

  // Warm-up: connections, JIT, the portal's router cache; not measured, but it must propagate.
  const warm = await drive(client, opts.warmup ?? WARMUP_CIRCUITS, opts.concurrency);
  if (warm.created.length === 0)
    throw new Error(`no warm-up create succeeded: ${warm.errors[0] ?? 'no attempt'}`);
  await log.waitAll(
    warm.created.map((c) => c.auth),
    SETTLE_TIMEOUT_MS,
  );
  const unseen = warm.created.filter((c) => !log.complete(c.auth)).length;
  if (unseen === warm.created.length)
    throw new Error(
      `no router reported any warm-up circuit within ${SETTLE_TIMEOUT_MS} ms (are the routers started with announceTable?)`,
    );
  const baseline = await measureBaseline(client, Math.max(200, opts.circuits), opts.concurrency);
  opts.progress?.(
    `${kind}: warm-up ${warm.created.length} circuits done; baseline GET /healthz ${baseline.requestsPerSec}/s; ` +
      `measuring ${opts.circuits}`,
  );

  const pids: Record<string, number[]> = {
    bench: [process.pid],
    portal: [isp.managed.proc.pid ?? -1],
    routers: routers.map((r) => r.managed?.proc.pid ?? -1),
    ...(isp.etcd ? { etcd: isp.etcd.members.map((m) => m.proc?.pid ?? -1) } : {}),
  };
  const cpuBefore = sampleCpu(Object.values(pids).flat());
  const run = await drive(client, opts.circuits, opts.concurrency);
  const cpuAfter = sampleCpu(Object.values(pids).flat());
  await log.waitAll(
    run.created.map((c) => c.auth),
    SETTLE_TIMEOUT_MS,
  );

  const samples: number[] = [];
  let alreadyPropagated = 0;
  let missing = 0;
  let resynced = 0;
  for (const c of run.created) {
    const byRouter = log.puts.get(c.auth);
    const absent = log.routers.filter((r) => !byRouter?.has(r));
    if (absent.length > 0) {
      // A router that resynced after the request went out may hold it without a per-circuit stamp.
      const viaResync = absent.every((r) => (log.resyncs.get(r) ?? []).some((at) => at >= c.sentAt));
      if (viaResync) resynced++;
      else missing++;
      continue;
    }
    const last = Math.max(...byRouter!.values());
    const ms = last - c.respondedAt;
    if (ms <= 0) alreadyPropagated++;
    samples.push(Math.max(0, ms));
  }

  const seconds = (run.lastResponse - run.firstSent) / 1000;
  const createsPerSec = run.created.length > 0 && seconds > 0 ? run.created.length / seconds : 0;
  const roundTrips = run.created.map((c) => c.respondedAt - c.sentAt);
  const pct = cpuPercent(cpuBefore, cpuAfter);
  const cpu: Record<string, number> = {};
  for (const [role, list] of Object.entries(pids)) {
    const used = list.filter((p) => pct.has(p));
    if (used.length) cpu[role] = Math.round(used.reduce((t, p) => t + pct.get(p)!, 0));
  }
  const machine = machinePercent(cpuBefore, cpuAfter);
  if (machine) {
    // The rest of the machine: kernel work, and any other load that would skew the figures.
    const ours = Object.values(cpu).reduce((t, x) => t + x, 0);
    cpu.other = Math.max(0, Math.round(availableParallelism() * 100 - machine.idle - ours));
    cpu.idle = Math.round(machine.idle);
  }

  const p99Ms = round(percentile(samples, 99), 2);
  const figures = {
    baseline,
    ratio: round(createsPerSec / baseline.requestsPerSec, 3),
    p50Ms: round(percentile(samples, 50), 2),
    p99Ms,
    maxMs: round(samples.length ? Math.max(...samples) : Number.NaN, 2),
    createsPerSec: Math.round(createsPerSec),
    circuits: run.created.length,
    alreadyPropagated,
    missing,
    failed: run.errors.length,
    resyncs: log.resyncCount,
    resynced,
    createP50Ms: round(percentile(roundTrips, 50), 2),
    createP99Ms: round(percentile(roundTrips, 99), 2),
    cpu,
    meetsTarget: p99Ms < TARGET.p99Ms && createsPerSec >= TARGET.createsPerSec,
  };
  const result: StoreResult = { ...validatePropagation(figures, opts.circuits), ...figures };
  if (run.errors.length) result.errors = [...new Set(run.errors)].slice(0, 5);
  opts.progress?.(
    `${kind}: ${result.valid ? '' : `INVALID (${result.invalidReason}): `}${result.circuits} circuits, p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms, ` +
      `${result.createsPerSec} creates/s${missing ? `, ${missing} MISSING` : ''}`,
  );
  return result;
}

const fmt = (n: number): string => (Number.isFinite(n) ? n.toFixed(2) : '-');

export function formatPropagationReport(r: PropagationReport): string {
  const header = [
    'store',
    'circuits',
    'p50 ms',
    'p99 ms',
    'max ms',
    'creates/s',
    'create p99 ms',
    'already',
    'missing',
    'failed',
    'resyncs',
    'baseline req/s',
    'x base',
    'target met',
  ];
  const rows: string[][] = [];
  const cpuLines: string[] = [];
  for (const k of STORE_KINDS) {
    const x = r[k];
    if (!x) continue;
    if (!x.valid) {
      rows.push([k, `INVALID: ${x.invalidReason ?? ''}`, ...header.slice(2).map(() => '')]);
      continue;
    }
    rows.push([
      k,
      String(x.circuits),
      fmt(x.p50Ms),
      fmt(x.p99Ms),
      fmt(x.maxMs),
      String(x.createsPerSec),
      fmt(x.createP99Ms),
      String(x.alreadyPropagated),
      String(x.missing),
      String(x.failed),
      String(x.resyncs),
      String(x.baseline.requestsPerSec),
      x.ratio.toFixed(3),
      x.meetsTarget ? 'yes' : 'no',
    ]);
    const cpu = Object.entries(x.cpu)
      .map(([role, p]) => `${role} ${p}`)
      .join(', ');
    if (cpu) cpuLines.push(`  ${k.padEnd(6)} ${cpu}`);
    for (const e of x.errors ?? []) cpuLines.push(`  ${k.padEnd(6)} error: ${e}`);
  }
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.filter((row) => !row[1]!.startsWith('INVALID')).map((row) => row[i]!.length)),
  );
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === 0 || c.startsWith('INVALID') ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [
    `ARROW circuit propagation: portal 201 -> every router's table (${r.routers} routers, 2 PoPs x 2), ` +
      `${r.concurrency} creates in flight`,
    `machine: ${r.machine.cpus} CPU(s), Node ${r.machine.node}; target: p99 < ${TARGET.p99Ms} ms and ` +
      `>= ${TARGET.createsPerSec} creates/s; baseline: GET /healthz on the same portal and connections`,
    `a run is INVALID (shown instead of its figures) when creates failed or went missing, too few were timed, or`,
    `other processes took more than ${MAX_OTHER_CPU_PCT}% of a core`,
    '',
    line(header),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
    '',
    'CPU % of one core during the creates (bench = this client; other = kernel and unrelated processes):',
    ...cpuLines,
  ].join('\n');
}
