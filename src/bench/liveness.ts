import { mkdtempSync, rmSync } from 'node:fs';
import { withProgress } from '../util/progress.js';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Endpoint } from '../endpoint/endpoint.js';
import { buyPath, releasePath, type BoughtPath } from '../endpoint/path.js';
import { throughSegments } from '../lab/demo.js';
import { Lab } from '../lab/lab.js';
import { defaultTopology, type Topology } from '../lab/topology.js';
import { RouterConfigSchema } from '../router/config.js';
import { mustParseAddress, type UdpAddress } from '../wire/address.js';
import { authToBytes } from '../wire/authenticator.js';
import { PacketType } from '../wire/header.js';
import type { RouterStats } from '../store/circuit.js';
import { openStore } from '../store/open.js';
import {
  histogramPercentile,
  histogramTotal,
  mergeHistograms,
  type HistogramSnapshot,
} from '../util/histogram.js';
import { validateConfig } from '../util/config.js';
import { percentile, round } from '../util/stats.js';
import { cpuPercent, machinePercent, sampleCpu } from '../util/cpu.js';

/**
 * `arrow bench liveness`: a soak of the routers' BFD-style neighbour liveness on a quiet lab.
 * Nothing is failed, so every dead verdict a router makes is false. The verdicts, revivals and
 * keepalive waits come from the counters the routers publish to their ISP's store, not from
 * their logs. The echo load is a stated fraction of what this machine was measured to carry.
 */

export interface LivenessSettings {
  enabled: boolean;
  intervalMs: number;
  multiplier: number;
}

export interface LivenessBenchOptions {
  durationMs: number;
  /** Paths bought through every ISP, one endpoint each: the neighbours in use. */
  paths: number;
  /** Share of the calibrated capacity the soak's echoes run at. */
  fraction: number;
  /** Length of each calibration step. */
  calibrationStepMs: number;
  /** Overrides of the routers' liveness settings (default: the router defaults). */
  liveness?: Partial<LivenessSettings>;
  progress?: (line: string) => void;
}

export interface CalibrationStep {
  echoesPerSec: number;
  sent: number;
  lost: number;
  rttP99Ms: number;
  clean: boolean;
}

export interface RouterVerdicts {
  router: string;
  neighboursDown: number;
  livenessDown: number;
  neighboursUp: number;
}

export interface LivenessBenchReport {
  /** False when the run cannot be taken as a result; `invalidReason` says why. */
  valid: boolean;
  invalidReason: string | null;
  liveness: LivenessSettings;
  /** Detection time of a dead neighbour at the configured settings (interval × multiplier), ms. */
  detectionMs: number;
  calibration: {
    /** The highest echo rate in the calibration with no loss and RTT p99 ≤ 50 ms (0: not even the first). */
    capacityEchoesPerSec: number;
    fraction: number;
    steps: CalibrationStep[];
  };
  lab: { isps: number; routers: number; paths: number };
  /** Echoes answered before the soak: a valid run needs all of them. */
  healthCheck: { sent: number; received: number };
  soak: {
    seconds: number;
    echoesPerSec: number;
    echoes: {
      sent: number;
      received: number;
      lost: number;
      rttMs: { p50: number; p99: number; max: number };
    };
    /** Neighbour pairs (router → neighbour) in use at the end, summed over routers. */
    neighboursInUse: number;
    keepalivesSent: number;
    /** Keepalives plus their answers, per neighbour in use per second. */
    packetsPerNeighbourPerSec: number;
  };
  /** Dead verdicts during the soak. Nothing was failed, so each one is false. */
  falseDeadVerdicts: number;
  /** Of those, verdicts from unanswered keepalives (the rest came from probes' acks). */
  livenessVerdicts: number;
  revivals: number;
  /** Verdicts during set-up and calibration (which loads the machine on purpose): not in the soak's count. */
  setupVerdicts: number;
  routersWithVerdicts: RouterVerdicts[];
  /**
   * How long answered keepalives waited during the soak (normally the RTT), ms: bucket upper
   * bounds for the percentiles, and the largest wait (bounded by its bucket). A verdict needs
   * a wait of detectionMs.
   */
  keepaliveWaitMs: { samples: number; p50: number; p99: number; p999: number; max: number };
  machine: {
    cores: number;
    /** 1-minute load average at the end. */
    loadAvg1: number;
    /** Share of the machine's CPU time idle during the soak, percent of all cores. */
    idlePct: number | null;
    /** CPU of all lab routers together during the soak, percent of one core. */
    routersCpuPct: number;
  };
}

const ECHO_MAGIC = 0x11fe11fe;
/** An echo unanswered after this long is lost. */
const ECHO_TIMEOUT_MS = 1000;
const CALIBRATION_RATES = [20, 50, 100, 200, 400, 800, 1600, 3200];
const CALIBRATION_P99_MS = 50;
const HEALTH_ECHOES_PER_PATH = 20;
/** Echoes per second the soak never goes below, however slow the machine. */
const MIN_SOAK_RATE = 20;

/** The router defaults, with any overrides: what every router of the soak runs. */
export function livenessSettings(over: Partial<LivenessSettings> = {}): LivenessSettings {
  const defaults = validateConfig(RouterConfigSchema.properties.failover, {}, 'router defaults');
  return { ...defaults.liveness, ...over };
}

/** One bought path and the endpoint its replies come back to. */
interface EchoPath {
  endpoint: Endpoint;
  /** The first ISP's ingress router and the path's first authenticator. */
  to: UdpAddress;
  auth: Buffer;
}

/**
 * Echoes spread over several paths at a steady rate; loss and RTT are counted per window.
 * Sent bare on each circuit (no failover driver): the soak is about the routers' own liveness,
 * and a customer's probes would add verdicts of another kind.
 */
class EchoLoad {
  private readonly pending = new Map<number, number>();
  private seq = 0;
  private next = 0;
  sent = 0;
  lost = 0;
  rtts: number[] = [];
  /** Paths that have answered at least once. */
  readonly answered = new Set<EchoPath>();

  constructor(private readonly paths: EchoPath[]) {
    for (const p of paths)
      p.endpoint.on('data', (payload: Buffer) => {
        if (payload.length < 8 || payload.readUInt32BE(0) !== ECHO_MAGIC) return;
        this.answered.add(p);
        const s = payload.readUInt32BE(4);
        const at = this.pending.get(s);
        if (at === undefined) return;
        this.pending.delete(s);
        this.rtts.push(performance.now() - at);
      });
  }

  get received(): number {
    return this.rtts.length;
  }

  /** Starts counting afresh (earlier echoes still in flight are forgotten). */
  reset(): void {
    this.pending.clear();
    this.sent = 0;
    this.lost = 0;
    this.rtts = [];
  }

  private sendOne(): void {
    const s = this.seq++ >>> 0;
    const payload = Buffer.alloc(64);
    payload.writeUInt32BE(ECHO_MAGIC, 0);
    payload.writeUInt32BE(s, 4);
    this.pending.set(s, performance.now());
    const p = this.paths[this.next++ % this.paths.length]!;
    p.endpoint.sendOn(p.to, p.auth, PacketType.Data, payload);
    this.sent++;
  }

  private expire(now: number): void {
    for (const [s, at] of this.pending) {
      if (now - at < ECHO_TIMEOUT_MS) break; // insertion order is send order
      this.pending.delete(s);
      this.lost++;
    }
  }

  /**
   * Sends at `ratePerSec` for `ms` (bounded), in 10 ms ticks. After a stall of the bench
   * itself it catches up by at most 50 ms worth, so a hiccup never becomes a burst.
   */
  async run(ratePerSec: number, ms: number, onTick?: (elapsedMs: number) => Promise<void>): Promise<void> {
    const start = performance.now();
    let due = 0;
    let lastTick = start;
    let lastHook = start;
    for (let now = start; now - start < ms; now = performance.now()) {
      due = Math.min(due + ((now - lastTick) * ratePerSec) / 1000, (ratePerSec * 50) / 1000 + 1);
      lastTick = now;
      while (due >= 1) {
        this.sendOne();
        due--;
      }
      this.expire(now);
      if (onTick && now - lastHook >= 1000) {
        lastHook = now;
        await onTick(now - start);
      }
      await sleep(10);
    }
  }

  /** Echoes on every path until each has answered once (the routers have the circuits), bounded. */
  async waitAllAnswer(timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (this.answered.size < this.paths.length && performance.now() < deadline)
      await this.sendCount(this.paths.length, 10);
    return this.answered.size === this.paths.length;
  }

  /** Sends `count` echoes `gapMs` apart (a health check). */
  async sendCount(count: number, gapMs: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      this.sendOne();
      await sleep(gapMs);
    }
  }

  /** Waits for the answers still in flight, then counts the rest as lost. */
  async drain(): Promise<void> {
    const deadline = performance.now() + ECHO_TIMEOUT_MS;
    while (this.pending.size > 0 && performance.now() < deadline) await sleep(10);
    this.lost += this.pending.size;
    this.pending.clear();
  }
}

/** Every router's published counters, from each ISP's store. */
async function readStats(lab: Lab): Promise<RouterStats[]> {
  const out: RouterStats[] = [];
  for (const i of lab.isps) {
    const s = await openStore(i.store, { busyTimeoutMs: 1000, isp: i.name });
    try {
      out.push(...(await s.listRouterStats()));
    } finally {
      await s.close();
    }
  }
  return out;
}

interface Totals {
  down: number;
  byLiveness: number;
  up: number;
  keepalives: number;
  perRouter: Map<string, { down: number; byLiveness: number; up: number }>;
  waits: HistogramSnapshot;
}

function totals(stats: RouterStats[]): Totals {
  const perRouter = new Map<string, { down: number; byLiveness: number; up: number }>();
  let down = 0;
  let byLiveness = 0;
  let up = 0;
  let keepalives = 0;
  const waits: HistogramSnapshot[] = [];
  for (const s of stats) {
    const f = s.failover ?? {};
    const r = {
      down: f['neighboursDown'] ?? 0,
      byLiveness: f['livenessDown'] ?? 0,
      up: f['neighboursUp'] ?? 0,
    };
    perRouter.set(s.router, r);
    down += r.down;
    byLiveness += r.byLiveness;
    up += r.up;
    keepalives += f['keepalivesSent'] ?? 0;
    if (s.liveness) waits.push(s.liveness.keepaliveWaitMs);
  }
  return { down, byLiveness, up, keepalives, perRouter, waits: mergeHistograms(waits) };
}

/** The soak window's histogram: end minus start, with the max bounded by the window's top bucket. */
function windowHistogram(start: HistogramSnapshot, end: HistogramSnapshot): HistogramSnapshot {
  const counts = end.counts.map((c, i) => c - (start.counts[i] ?? 0));
  const top = counts.findLastIndex((c) => c > 0);
  const bound = top < 0 ? 0 : (end.boundsMs[top] ?? end.maxMs);
  return { boundsMs: end.boundsMs, counts, maxMs: Math.min(bound, end.maxMs) };
}

/** The soak's lab: the demo network (3 ISPs, 2 PoPs of 2 routers each), routers at the given liveness. */
function soakTopology(liveness: LivenessSettings): Topology {
  const t = defaultTopology();
  t.name = 'liveness';
  t.statsIntervalMs = 200;
  t.failover = { liveness };
  return t;
}

export async function runLivenessBench(opts: LivenessBenchOptions): Promise<LivenessBenchReport> {
  const say = opts.progress ?? ((): void => {});
  const liveness = livenessSettings(opts.liveness);
  const topology = soakTopology(liveness);
  const dir = mkdtempSync(join(tmpdir(), 'arrow-bench-liveness-'));
  let lab: Lab | undefined;
  const endpoints: Endpoint[] = [];
  const paths: BoughtPath[] = [];
  const echoPaths: EchoPath[] = [];
  let invalid: string | null = null;
  const markInvalid = (why: string): void => {
    invalid ??= why;
    say(`run invalid: ${why}`);
  };
  try {
    say(
      `starting the lab (3 ISPs, 12 routers); liveness ${liveness.enabled ? `${liveness.intervalMs} ms × ${liveness.multiplier}` : 'off'}`,
    );
    lab = await Lab.start(topology, { dir, keep: false });
    const target = { kind: 'udp' as const, address: lab.server('echo').address };
    for (let i = 0; i < opts.paths; i++) {
      const e = await Endpoint.open('127.0.0.1:0');
      endpoints.push(e);
      const p = await buyPath({ segments: throughSegments(lab), target }, { replyTo: e.replyTo });
      paths.push(p);
      const first = p.forward[0]!.circuit;
      echoPaths.push({ endpoint: e, to: mustParseAddress(first.ingress[0]!), auth: authToBytes(first.auth) });
    }
    const load = new EchoLoad(echoPaths);
    if (!(await load.waitAllAnswer(10_000)))
      markInvalid(`only ${load.answered.size} of ${echoPaths.length} paths answered an echo within 10 s`);

    // Calibration: what this machine carries, failure-free, in steps of doubling rate.
    const steps: CalibrationStep[] = [];
    let capacity = 0;
    for (const rate of CALIBRATION_RATES) {
      load.reset();
      await load.run(rate, opts.calibrationStepMs);
      await load.drain();
      const p99 = load.rtts.length ? percentile(load.rtts, 99) : Infinity;
      const clean = load.lost === 0 && p99 <= CALIBRATION_P99_MS;
      steps.push({ echoesPerSec: rate, sent: load.sent, lost: load.lost, rttP99Ms: round(p99, 2), clean });
      say(`calibration: ${rate} echoes/s, ${load.lost} of ${load.sent} lost, RTT p99 ${p99.toFixed(1)} ms`);
      if (!clean) break;
      capacity = rate;
    }
    // A lab that loses echoes at the lowest rate is broken; one that is merely slow (a saturated
    // machine) still soaks, at the floor rate, and says so in the calibration.
    const first = steps[0];
    if (first && first.lost > 0)
      markInvalid(
        `the lab lost ${first.lost} of ${first.sent} echoes at ${first.echoesPerSec}/s in calibration`,
      );
    const rate = Math.max(MIN_SOAK_RATE, Math.round(capacity * opts.fraction));

    // Let the calibration's load pass and the routers publish, then check the lab is healthy.
    await sleep(topology.statsIntervalMs * 3);
    load.reset();
    await load.sendCount(HEALTH_ECHOES_PER_PATH * endpoints.length, 5);
    await load.drain();
    const healthCheck = { sent: load.sent, received: load.received };
    if (healthCheck.received < healthCheck.sent)
      markInvalid(`lab unhealthy at start: ${healthCheck.received} of ${healthCheck.sent} echoes answered`);

    const startStats = await readStats(lab);
    if (startStats.length < lab.routers.length)
      markInvalid(`only ${startStats.length} of ${lab.routers.length} routers published counters at start`);
    const start = totals(startStats);
    const pids = lab.routers.map((r) => r.managed?.proc.pid).filter((p): p is number => p !== undefined);
    const cpuBefore = sampleCpu(pids);

    say(
      `soak: ${Math.round(opts.durationMs / 1000)} s at ${rate} echoes/s (${opts.fraction} of ${capacity}), no failures`,
    );
    load.reset();
    let lastReport = performance.now();
    await load.run(rate, opts.durationMs, async (elapsed) => {
      if (performance.now() - lastReport < 30_000) return;
      lastReport = performance.now();
      const now = totals(await readStats(lab!));
      say(
        `  ${Math.round(elapsed / 1000)} s: ${now.down - start.down} dead verdicts, ${load.lost} echoes lost of ${load.sent}`,
      );
    });
    const cpuAfter = sampleCpu(pids);
    await load.drain();
    // Every router publishes every statsIntervalMs: wait for counters that cover the whole soak.
    await sleep(topology.statsIntervalMs * 3);
    const endStats = await readStats(lab);
    const end = totals(endStats);
    const exited = lab.routers.filter(
      (r) => !r.managed || r.managed.proc.exitCode !== null || r.managed.proc.signalCode !== null,
    );
    if (exited.length > 0)
      markInvalid(`router(s) exited during the soak: ${exited.map((r) => r.name).join(', ')}`);
    const stale = endStats.filter((s) => Date.now() - Date.parse(s.updatedAt) > 5000);
    if (stale.length > 0) markInvalid(`stale counters from ${stale.map((s) => s.router).join(', ')}`);

    const seconds = opts.durationMs / 1000;
    const neighboursInUse = endStats.reduce((t, s) => t + Object.keys(s.neighbours ?? {}).length, 0);
    const keepalivesSent = end.keepalives - start.keepalives;
    const waits = windowHistogram(start.waits, end.waits);
    const idle = machinePercent(cpuBefore, cpuAfter);
    const cores = availableParallelism();
    const routerCpu = [...cpuPercent(cpuBefore, cpuAfter).values()].reduce((a, b) => a + b, 0);
    const routersWithVerdicts: RouterVerdicts[] = [];
    for (const [router, e] of end.perRouter) {
      const s = start.perRouter.get(router) ?? { down: 0, byLiveness: 0, up: 0 };
      if (e.down > s.down || e.up > s.up)
        routersWithVerdicts.push({
          router,
          neighboursDown: e.down - s.down,
          livenessDown: e.byLiveness - s.byLiveness,
          neighboursUp: e.up - s.up,
        });
    }
    return {
      valid: invalid === null,
      invalidReason: invalid,
      liveness,
      detectionMs: liveness.enabled ? liveness.intervalMs * liveness.multiplier : 0,
      calibration: { capacityEchoesPerSec: capacity, fraction: opts.fraction, steps },
      lab: { isps: topology.isps.length, routers: lab.routers.length, paths: paths.length },
      healthCheck,
      soak: {
        seconds,
        echoesPerSec: rate,
        echoes: {
          sent: load.sent,
          received: load.received,
          lost: load.lost,
          rttMs: {
            p50: round(percentile(load.rtts, 50), 2),
            p99: round(percentile(load.rtts, 99), 2),
            max: round(
              load.rtts.reduce((a, b) => Math.max(a, b), 0),
              2,
            ),
          },
        },
        neighboursInUse,
        keepalivesSent,
        packetsPerNeighbourPerSec: neighboursInUse
          ? round((2 * keepalivesSent) / neighboursInUse / seconds, 1)
          : 0,
      },
      falseDeadVerdicts: end.down - start.down,
      livenessVerdicts: end.byLiveness - start.byLiveness,
      revivals: end.up - start.up,
      setupVerdicts: start.down,
      routersWithVerdicts,
      keepaliveWaitMs: {
        samples: histogramTotal(waits),
        p50: round(histogramPercentile(waits, 50), 2),
        p99: round(histogramPercentile(waits, 99), 2),
        p999: round(histogramPercentile(waits, 99.9), 2),
        max: round(waits.maxMs, 2),
      },
      machine: {
        cores,
        loadAvg1: round(loadavg()[0] ?? 0, 2),
        idlePct: idle ? round(idle.idle / cores, 1) : null,
        routersCpuPct: round(routerCpu, 1),
      },
    };
  } finally {
    for (const p of paths)
      await releasePath(p).catch((err: Error) =>
        // The lab is about to stop anyway; said on stderr even in --json mode, never swallowed.
        process.stderr.write(`arrow bench liveness: releasing a path failed: ${err.message}\n`),
      );
    for (const e of endpoints) await e.close();
    await lab?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function formatLivenessReport(r: LivenessBenchReport): string {
  const l = r.liveness;
  const k = r.keepaliveWaitMs;
  const e = r.soak.echoes;
  return [
    `liveness soak: ${r.valid ? 'VALID' : `INVALID (${r.invalidReason})`}`,
    `  settings: ${l.enabled ? `${l.intervalMs} ms × ${l.multiplier} (detection ${r.detectionMs} ms)` : 'liveness off'}`,
    `  lab: ${r.lab.isps} ISPs, ${r.lab.routers} routers, ${r.lab.paths} paths, ${r.soak.neighboursInUse} neighbours in use`,
    `  calibration: capacity ${r.calibration.capacityEchoesPerSec} echoes/s; soak at ${r.soak.echoesPerSec}/s (fraction ${r.calibration.fraction})`,
    `  health check: ${r.healthCheck.received}/${r.healthCheck.sent} echoes answered`,
    `  soak: ${r.soak.seconds} s, no failures injected; echoes ${e.received}/${e.sent} (lost ${e.lost}), RTT p50 ${e.rttMs.p50} p99 ${e.rttMs.p99} max ${e.rttMs.max} ms`,
    `  FALSE DEAD VERDICTS: ${r.falseDeadVerdicts} (by liveness ${r.livenessVerdicts}), revivals ${r.revivals}; during set-up: ${r.setupVerdicts}`,
    ...r.routersWithVerdicts.map(
      (v) =>
        `    ${v.router}: ${v.neighboursDown} dead (${v.livenessDown} by liveness), ${v.neighboursUp} revived`,
    ),
    `  keepalive wait (≈ RTT): ${k.samples} samples, p50 ≤ ${k.p50} p99 ≤ ${k.p99} p99.9 ≤ ${k.p999} max ≤ ${k.max} ms`,
    `  cost: ${r.soak.keepalivesSent} keepalives, ${r.soak.packetsPerNeighbourPerSec} packets/s per neighbour (keepalive + answer)`,
    `  machine: ${r.machine.cores} cores, load ${r.machine.loadAvg1}, idle ${r.machine.idlePct ?? '?'}%, routers ${r.machine.routersCpuPct}% of a core`,
  ].join('\n');
}

/** `arrow bench liveness`'s flags, as the CLI parses them. */
export interface LivenessBenchFlags {
  minutes?: number;
  seconds?: number;
  json?: boolean;
  paths: number;
  fraction: number;
  interval?: number;
  multiplier?: number;
  liveness?: 'on' | 'off';
  /** Where liveness.svg and liveness.png (the plot) are written. */
  out: string;
}

export async function runLivenessBenchCommand(o: LivenessBenchFlags): Promise<void> {
  const seconds = o.seconds ?? (o.minutes ?? 10) * 60;
  const over: Partial<LivenessSettings> = {
    ...(o.interval === undefined ? {} : { intervalMs: o.interval }),
    ...(o.multiplier === undefined ? {} : { multiplier: o.multiplier }),
    ...(o.liveness === undefined ? {} : { enabled: o.liveness === 'on' }),
  };
  const report = await withProgress(o.json, (progress) =>
    runLivenessBench({
      durationMs: seconds * 1000,
      paths: o.paths,
      fraction: o.fraction,
      // Short runs (tests) calibrate in shorter steps.
      calibrationStepMs: seconds < 60 ? 400 : 1000,
      liveness: over,
      ...(progress ? { progress } : {}),
    }),
  );
  console.log(o.json ? JSON.stringify(report) : formatLivenessReport(report));
  // Loaded only now: the plotting libraries stay out of the process while it measures.
  const { livenessChart, writeBenchPlotFor } = await import('./plots.js');
  await writeBenchPlotFor(livenessChart(report), o, 'liveness');
  if (!report.valid) process.exitCode = 2;
  else if (report.falseDeadVerdicts > 0) process.exitCode = 1;
}
