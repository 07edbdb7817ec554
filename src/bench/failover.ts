import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { withProgress } from '../util/progress.js';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_LIVENESS_INTERVAL_MS } from '../router/config.js';
import { DEFAULT_DETECTOR, type DetectorOptions } from '../endpoint/connection.js';
import { VerdictLog, wallNow, type Verdict } from '../lab/verdicts.js';
import { Endpoint } from '../endpoint/endpoint.js';
import { buyPath, releasePath, type BoughtPath, type SegmentSpec } from '../endpoint/path.js';
import { Lab } from '../lab/lab.js';
import type { DataplaneMode } from '../router/dataplane-mode.js';
import type { Topology } from '../lab/topology.js';
import { percentile, round } from '../util/stats.js';
import { newAuthenticator } from '../wire/authenticator.js';
import { cpuPercent, machinePercent, sampleCpu } from '../util/cpu.js';
import { ClientFleet, type FleetClient } from './failover-clients.js';
import { renderFailoverPlot } from './failover-plot.js';
import { Checks, checkCpu, MAX_OTHER_CPU_PCT, type Validity } from './validity.js';

/**
 * `arrow bench failover`: seed 000's Fig. 2 (failover time against the number of
 * clients) on our own lab network of real processes.
 *
 * Three ISPs in a row, each one PoP with two routers; N clients, each with its own
 * forward and return circuits through all three, so every circuit crosses the same
 * middle-ISP router (the first of beta's ingress list). With echoes flowing, that
 * router is SIGKILLed. Every client detects the failure by its own timeout and probes
 * as `Connection` does (see failover-clients.ts); the bench records per client:
 *
 * - outageMs: the longest gap between echo replies from the last reply before the
 *   kill to the first reply to an echo sent after it;
 * - repairMs: from the client's first probe to its probe coming home (or data arriving);
 * - lost echoes.
 *
 * 1000 clients × 100 echoes/s is ~700,000 router packets/s, far beyond 2 cores. So all
 * clients live in this one process on one socket, and the load is calibrated to the machine:
 * first a failure-free lab measures what this machine carries (the N = 0 capacity, echoes/s
 * with no loss and round trips far below the detector's timeout), then every run gets a stated
 * fraction of it (--fraction): each client's echo interval (and probe interval) grows once N
 * clients at 10 ms would exceed it. The interval is reported per run, and it is the resolution
 * of outageMs.
 *
 * Every run checks that it measured what it meant to (validity.ts): no echo lost and no
 * detector firing before the kill, round trips near the unloaded ones measured in the same
 * lab, no router CPU-bound, a machine with idle CPU. A run failing a check is INVALID and
 * shows its reasons instead of figures; it is retried in a fresh lab up to --attempts times.
 *
 * Every (N, liveness) run gets a fresh lab, so runs are independent.
 */

export type LivenessMode = 'on' | 'off';
export const LIVENESS_MODES: readonly LivenessMode[] = ['off', 'on'];

/**
 * The customer's failure rule, as in the failover tests and `arrow demo`. The probe interval
 * is set per run: it follows the echo interval (10 ms up to N = 40), so that the probes of N
 * failing clients keep to the same aggregate budget as their echoes.
 */
export const BENCH_DETECTOR: DetectorOptions = {
  ...DEFAULT_DETECTOR,
  timeoutMs: 50,
  probeIntervalMs: 10,
  ackTimeoutMs: 40,
};

/** The issue's echo interval, kept while the aggregate rate stays within the budget. */
export const BASE_ECHO_INTERVAL_MS = 10;
/**
 * The share of the measured capacity each run is given. Half leaves the other half of the
 * machine for the failover itself (probes, repair records, the store's watch), so the kill,
 * not the load, decides the figures.
 */
export const DEFAULT_FRACTION = 0.5;
/** How many times an INVALID run is tried, each in a fresh lab, before it is reported as such. */
export const DEFAULT_ATTEMPTS = 2;

/** Calibration: this many clients step the aggregate echo rate up until a step fails. */
const CALIBRATION_CLIENTS = 64;
const CALIBRATION_FIRST_RATE = 250;
const CALIBRATION_STEP = 1.5;
const CALIBRATION_MAX_RATE = 60_000;
const CALIBRATION_SETTLE_MS = 250;
const CALIBRATION_WINDOW_MS = 1000;
/** A step passes with at most this much loss... */
const CALIBRATION_MAX_LOSS_PCT = 0.5;
/** ...and round trips this far below the detector's timeout (p99 at most timeout / 2). */
const CALIBRATION_RTT_SHARE = 0.5;

/** The unloaded pilot: a few clients echoing slowly, for the round trip the run is held against. */
const PILOT_CLIENTS = 5;
const PILOT_INTERVAL_MS = 20;
const PILOT_MS = 700;

export const TARGETS = {
  /** repairMs p99 at the largest N, ms. */
  repairP99Ms: 50,
  /** repairMs p99 at the largest N over p99 at the smallest. */
  flatness: 2,
  /** outageMs p99 with liveness on, ms. */
  livenessOutageP99Ms: 200,
} as const;

const SCHEDULER_TICK_MS = 1;
const BUY_CONCURRENCY = 48;
/** Replies every client must have had before the measured phase starts. */
const WARMUP_REPLIES = 3;
const WARMUP_TIMEOUT_MS = 30_000;
/**
 * Echoes flowing before the kill. Longer than the routers' RTT measurement period
 * (rttProbeMs, 1 s), so link timeouts follow measured RTTs as in a network that has run
 * for a while, not the initial 50 ms.
 */
const STEADY_MS = 1500;
const RECOVERY_DEADLINE_MS = 10_000;
const DRAIN_MS = 300;
/** An echo sent this long before the kill should have come back: if not, it was lost before the failure. */
const HEALTHY_RTT_MS = 100;
const ACCOUNT = 'bench';

export interface Percentiles {
  p50: number;
  p99: number;
  max: number;
}

export interface FailoverRun extends Validity {
  clients: number;
  liveness: LivenessMode;
  /** Which attempt this is (1 = first); earlier attempts were INVALID for `earlierInvalid`. */
  attempt: number;
  earlierInvalid: string[];
  /** Aggregate echo rate of the run, echoes/s: clients × 1000 / echoIntervalMs. */
  echoRatePerSec: number;
  /** Round trip p50 of a few clients echoing slowly in this run's lab before the load: the baseline. */
  unloadedRttMs: number;
  /** Echoes sent in the steady phase, old enough to have come back before the kill. */
  samplesBeforeKill: number;
  /** How late the bench's scheduler ran in the steady phase (p99): the bench itself keeping up. */
  preKillTickLateMs: number;
  /** Each client's echo interval in this run. */
  echoIntervalMs: number;
  /** Each client's probe interval while failing (the detector's probeIntervalMs). */
  probeIntervalMs: number;
  /** Over recovered clients. */
  outageMs: Percentiles;
  /** Over clients that probed after the kill and were repaired (`probed`); zeros when none probed. */
  repairMs: Percentiles;
  /** Echoes lost, all clients, from the start of the measured phase to the end. */
  lost: number;
  /**
   * When the last lost echo (any client) was sent, ms after the kill: from then on every echo of
   * every client got through. The path's repair as traffic sees it, at the resolution of the
   * aggregate echo rate (N / echo interval) rather than one client's interval. 0 when none was lost.
   */
  lastLossMs: number;
  /** Clients whose echoes flow again after the kill. */
  recovered: number;
  /** Clients whose detector fired after the kill (the rest saw the path repaired before their timeout). */
  probed: number;
  /** Detector firings after the kill, all clients: above `probed` when repaired clients failed again. */
  failures: number;
  /** Echoes lost before the kill (load, not failover): should be 0. */
  lostBeforeKill: number;
  /** Detector firings before the kill (a reply later than timeoutMs): should be 0. */
  spuriousFailures: number;
  echoesSent: number;
  /** Echo round trip before the kill. */
  rttMs: { p50: number; p99: number };
  /** How late the bench's shared 1 ms scheduler ran after the kill (the bench's own resolution). */
  tickLateMs: { p99: number; max: number };
  /** Time to buy the N paths (6 circuits each). */
  setupS: number;
  /**
   * Paths bought again because beta's portal handed out its second router first: its first
   * router's registration had lapsed for a moment while thousands of circuits were being bought.
   */
  rebought: number;
  /** The router killed. */
  victim: string;
  /** Routers declared dead before the kill (false verdicts, e.g. under load): should be 0. */
  falseDeaths: number;
  /**
   * Every "neighbour dead" verdict of the run, from the routers' logs: who declared whom dead,
   * when (negative: before the kill), and how many hops it moved.
   */
  verdicts: Verdict[];
  /**
   * Percent of one core per role during the steady phase (Linux only): bench, routers (sum),
   * routerMax (the busiest router), portals, echo, other (the rest of the machine), idle.
   */
  cpu: Record<string, number>;
  /**
   * The same, from the kill until every client recovered (`recoveryS`): where the failover's
   * time goes. The killed router is gone, so `routers` counts the five left.
   */
  cpuRecovery: Record<string, number>;
  recoveryS: number;
}

export interface CalibrationStep {
  /** The aggregate rate asked for, echoes/s. */
  targetPerSec: number;
  /** What the bench sent and got back in the window, per second. */
  sentPerSec: number;
  repliedPerSec: number;
  lossPct: number;
  rttMs: { p50: number; p99: number };
  /** Percent of one core, as in FailoverRun.cpu. */
  cpu: Record<string, number>;
  passed: boolean;
  /** Why the step failed, when it did. */
  reason?: string;
}

/** What this machine carries with no failure, and the share of it every run gets. */
export interface Calibration extends Validity {
  /** The highest reply rate, echoes/s, of a step with no loss to speak of and round trips far below the timeout. */
  capacityEchoesPerSec: number;
  fraction: number;
  /** fraction × capacity: the aggregate echo rate every run is held to. */
  rateEchoesPerSec: number;
  /** Clients the ramp used (their paths are built like the runs'). */
  clients: number;
  /** Round trip p50 at the lowest step. */
  unloadedRttMs: number;
  /** What ended the ramp: the first failed step's reason, the bench's own sending, or the ramp's top. */
  bound: string;
  steps: CalibrationStep[];
}

export type { Verdict } from '../lab/verdicts.js';

export interface TargetCheck {
  limit: number;
  met: boolean;
  results: {
    liveness: LivenessMode;
    clients?: number;
    value: number | null;
    met: boolean;
    /** Why there is no value, when there is none. */
    note?: string;
  }[];
}

export interface FailoverReport {
  calibration: Calibration;
  /** Keepalive interval of the runs with liveness on (× 3): the router default unless --liveness-interval. */
  livenessIntervalMs: number;
  /** The data plane the labs' routers ran, as they reported it at start (`mixed` if they differed). */
  dataplane: 'kernel' | 'node' | 'mixed';
  runs: FailoverRun[];
  targets: {
    /** repairMs p99 at the largest N < 50 ms, per liveness mode. */
    repairP99: TargetCheck & { clients: number };
    /** repairMs p99(max N) / p99(min N) <= 2, per liveness mode. */
    flatness: TargetCheck & { minClients: number; maxClients: number };
    /** outageMs p99 < 200 ms for every run with liveness on. */
    livenessOutageP99: TargetCheck;
  };
  machine: { cpus: number; node: string };
}

export interface FailoverBenchOptions {
  clients: number[];
  liveness: LivenessMode[];
  /** The share of the calibrated capacity every run gets (default DEFAULT_FRACTION). */
  fraction?: number;
  /** Tries per run while it comes out INVALID (default DEFAULT_ATTEMPTS). */
  attempts?: number;
  /** Every client's probe interval; default: its echo interval (so probes keep to the same budget). */
  probeIntervalMs?: number;
  /** Keepalive interval with liveness on (default: the router's, 200 ms × 3). */
  livenessIntervalMs?: number;
  /**
   * The routers' data plane (`arrow router --dataplane`). The bench's lab is on loopback, where
   * `auto` is the Node path; `kernel` puts every router's DATA in the tc program on lo.
   */
  dataplane?: DataplaneMode;
  progress?: (line: string) => void;
}

export async function runFailoverBenchCommand(o: {
  clients: string;
  liveness: 'on' | 'off' | 'both';
  json?: boolean;
  out: string;
  fraction: number;
  attempts: number;
  probeInterval?: number;
  livenessInterval?: number;
  dataplane: DataplaneMode;
}): Promise<void> {
  if (!(o.fraction > 0 && o.fraction <= 1))
    throw new Error(`--fraction must be above 0 and at most 1, got ${o.fraction}`);
  const clients = parseClients(o.clients);
  const liveness = o.liveness === 'both' ? [...LIVENESS_MODES] : [o.liveness];
  const report = await withProgress(o.json, (progress) =>
    runFailoverBench({
      clients,
      liveness,
      fraction: o.fraction,
      attempts: o.attempts,
      dataplane: o.dataplane,
      progress,
      ...(o.probeInterval === undefined ? {} : { probeIntervalMs: o.probeInterval }),
      ...(o.livenessInterval === undefined ? {} : { livenessIntervalMs: o.livenessInterval }),
    }),
  );
  mkdirSync(o.out, { recursive: true });
  const plot = await renderFailoverPlot(report);
  const svg = resolve(o.out, 'failover.svg');
  const png = resolve(o.out, 'failover.png');
  writeFileSync(svg, plot.svg);
  writeFileSync(png, plot.png);
  console.log(o.json ? JSON.stringify(report) : `${formatFailoverReport(report)}\nplot: ${svg}, ${png}`);
  if (report.runs.some((r) => r.recovered < r.clients)) {
    console.error('arrow: some clients never recovered within the deadline');
    process.exitCode = 1;
  }
  const invalid = [
    ...(report.calibration.valid ? [] : [`calibration: ${report.calibration.invalidReason}`]),
    ...report.runs
      .filter((r) => !r.valid)
      .map((r) => `N=${r.clients} liveness ${r.liveness}: ${r.invalidReason}`),
  ];
  if (invalid.length) {
    console.error(`arrow: INVALID, not results (rerun on a quieter machine):\n  ${invalid.join('\n  ')}`);
    process.exitCode = 1;
  }
}

/** `--clients 5,20,1000` → [5, 20, 1000], sorted, de-duplicated. */
export function parseClients(text: string): number[] {
  const list = text.split(',').map((s) => Number(s.trim()));
  for (const [i, n] of list.entries())
    if (!Number.isInteger(n) || n < 1 || n > 10_000)
      throw new Error(
        `--clients: ${JSON.stringify(text.split(',')[i])} is not a client count from 1 to 10000`,
      );
  return [...new Set(list)].sort((a, b) => a - b);
}

/** The echo interval for N clients: 10 ms, or longer so that N clients together stay within `rate`. */
export function echoIntervalFor(clients: number, rate: number): number {
  return Math.max(BASE_ECHO_INTERVAL_MS, Math.ceil((clients * 1000) / rate));
}

/** A lab of the bench's topology in a fresh dir, stopped (and its dir removed when `keep` says so) after `use`. */
async function withLab<T>(
  label: string,
  liveness: { mode: LivenessMode; intervalMs: number },
  current: {
    value: { dir: string; lab: Lab | undefined } | undefined;
    dataplane: DataplaneMode | undefined;
    /** Every data plane a lab's routers reported. */
    seen: Set<'kernel' | 'node'>;
  },
  progress: ((line: string) => void) | undefined,
  use: (lab: Lab) => Promise<T>,
  keep: (result: T) => boolean,
): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), `arrow-bench-failover-${label}-`));
  current.value = { dir, lab: undefined };
  const lab = await Lab.start(topology(liveness.mode, liveness.intervalMs), {
    dir,
    keep: true,
    ...(current.dataplane ? { dataplane: current.dataplane } : {}),
  }).catch((err: Error) => {
    throw new Error(`the lab did not start (logs in ${dir}): ${err.message}`, { cause: err });
  });
  current.value.lab = lab;
  for (const r of lab.routers) current.seen.add(r.dataplane?.mode ?? 'node');
  let result: T | undefined;
  try {
    result = await use(lab);
    return result;
  } catch (err) {
    throw new Error(`${label}: ${(err as Error).message} (logs in ${dir})`, { cause: err });
  } finally {
    current.value = undefined;
    await lab.stop();
    // Kept for a post-mortem when something failed or the result asks for it.
    if (result !== undefined && !keep(result)) rmSync(dir, { recursive: true, force: true });
    else progress?.(`  logs kept in ${dir}`);
  }
}

export async function runFailoverBench(opts: FailoverBenchOptions): Promise<FailoverReport> {
  const runs: FailoverRun[] = [];
  const fraction = opts.fraction ?? DEFAULT_FRACTION;
  const attempts = opts.attempts ?? DEFAULT_ATTEMPTS;
  const livenessIntervalMs = opts.livenessIntervalMs ?? DEFAULT_LIVENESS_INTERVAL_MS;
  const current: Parameters<typeof withLab>[2] = {
    value: undefined,
    dataplane: opts.dataplane,
    seen: new Set(),
  };
  // Ctrl-C: stop the lab's processes (they also exit when our IPC channel closes).
  const onSigint = (): void => {
    process.stderr.write('interrupted: stopping the lab\n');
    const c = current.value;
    if (c) process.once('exit', () => rmSync(c.dir, { recursive: true, force: true }));
    void (c?.lab ? c.lab.stop() : Promise.resolve()).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSigint);
  let calibration: Calibration;
  try {
    opts.progress?.(
      `calibration: what this machine carries with no failure (${CALIBRATION_CLIENTS} clients, rate stepped up)`,
    );
    // A busy machine spoils the calibration as it spoils a run: try again in a fresh lab.
    for (let attempt = 1; ; attempt++) {
      calibration = await withLab(
        'calibration',
        { mode: 'off', intervalMs: livenessIntervalMs },
        current,
        opts.progress,
        (lab) => calibrate(lab, fraction, opts.progress),
        (c) => !c.valid,
      );
      if (calibration.valid || attempt >= attempts) break;
      opts.progress?.(`  calibration INVALID (${calibration.invalidReason}); again in a fresh lab`);
    }
    opts.progress?.(
      `  capacity ${calibration.capacityEchoesPerSec} echoes/s (bound: ${calibration.bound}); ` +
        `runs get ${fraction} of it: ${calibration.rateEchoesPerSec} echoes/s` +
        (calibration.valid ? '' : `; INVALID: ${calibration.invalidReason}`),
    );
    for (const clients of opts.clients) {
      for (const liveness of opts.liveness) {
        const echoIntervalMs = echoIntervalFor(clients, calibration.rateEchoesPerSec);
        const probeIntervalMs = opts.probeIntervalMs ?? echoIntervalMs;
        const earlierInvalid: string[] = [];
        for (let attempt = 1; ; attempt++) {
          opts.progress?.(
            `N=${clients} liveness ${liveness}${attempt > 1 ? ` (attempt ${attempt})` : ''}: starting the lab ` +
              `(6 routers, 3 portals, echo server); per client: echo every ${echoIntervalMs} ms, ` +
              `probe every ${probeIntervalMs} ms when failing`,
          );
          const run = await withLab(
            `${clients}-${liveness}`,
            { mode: liveness, intervalMs: livenessIntervalMs },
            current,
            opts.progress,
            (lab) =>
              measure(
                lab,
                {
                  clients,
                  liveness,
                  echoIntervalMs,
                  probeIntervalMs,
                  attempt,
                  earlierInvalid: [...earlierInvalid],
                },
                calibration,
                opts.progress,
              ),
            (r) => r.recovered < r.clients,
          );
          opts.progress?.(`  ${runLine(run)}`);
          // No run is valid on an invalid calibration: trying again would not change that.
          if (run.valid || attempt >= attempts || !calibration.valid) {
            runs.push(run);
            break;
          }
          earlierInvalid.push(run.invalidReason ?? 'invalid');
        }
      }
    }
  } finally {
    process.off('SIGINT', onSigint);
  }
  return {
    calibration,
    livenessIntervalMs,
    dataplane: current.seen.size === 1 ? [...current.seen][0]! : 'mixed',
    runs,
    targets: checkTargets(runs),
    machine: { cpus: availableParallelism(), node: process.version },
  };
}

const ISPS = ['alpha', 'beta', 'gamma'] as const;
const POP = 'pop';

/**
 * Three ISPs, each a single PoP with two routers selling circuits from that PoP to itself.
 * A single-PoP segment is one router hop per ISP instead of two (ingress PoP, then egress
 * PoP), which halves the routers and the packets per echo, so the 2 cores carry more
 * clients at 10 ms. The failover is the same: beta's routers are the next hop of alpha's
 * circuits (forward) and of gamma's (return), and those are the hops that get repaired.
 */
function topology(liveness: LivenessMode, livenessIntervalMs: number): Topology {
  return {
    name: 'failover-bench',
    isps: ISPS.map((name) => ({
      name,
      accounts: [{ name: ACCOUNT, apiKey: `bench-key-failover-${name}-0000000000` }],
      pops: [{ name: POP, routers: 2 }],
      offers: [
        {
          from: POP,
          to: POP,
          // Admission must never refuse: the bench measures failover, not selling out.
          capacityMbps: 1e15,
          latencyMs: { min: 1, max: 5 },
          maxLossPct: 0.1,
          uptimePct: 99.99,
          pricePerMbps: 1,
        },
      ],
      store: { kind: 'sqlite' as const },
    })),
    servers: [{ name: 'echo', kind: 'udp-echo' }],
    statsIntervalMs: 1000,
    failover: {
      liveness: { enabled: liveness === 'on', intervalMs: livenessIntervalMs, multiplier: 3 },
      // All N clients share one account. The per-account bucket (default 5000/s, burst 2000) is
      // there to stop floods, not repairs: raised so it never decides the outcome (with
      // --probe-interval 10 at N = 1000, the failing clients probe at up to 100,000/s).
      // The per-circuit limit (20/s, burst 10) stays at its default.
      probeRate: { perAccount: { ratePerSec: 1_000_000, burst: 100_000 } },
    },
  };
}

function segments(lab: Lab): SegmentSpec[] {
  return lab.isps.map((i) => ({
    isp: i.name,
    portal: i.url,
    apiKey: i.accounts[0]!.apiKey,
    ingressPop: POP,
    egressPop: POP,
  }));
}

/** Rounds of buying again the paths whose first router in beta is not the victim, and the wait before each. */
const REBUY_ROUNDS = 3;
const REBUY_WAIT_MS = 1000;

/** One client's path: through every ISP to the echo server, with its own return path (reply authenticator). */
function buyClientPath(lab: Lab, endpoint: Endpoint): Promise<BoughtPath> {
  return buyPath(
    { segments: segments(lab), target: { kind: 'udp', address: lab.server('echo').address } },
    { replyTo: { addresses: [endpoint.address], auth: newAuthenticator() } },
  );
}

/** Buys `count` client paths, `concurrency` at a time. */
async function buyPaths(
  lab: Lab,
  endpoint: Endpoint,
  count: number,
  concurrency: number,
): Promise<BoughtPath[]> {
  const paths: BoughtPath[] = new Array<BoughtPath>(count);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      paths[i] = await buyClientPath(lab, endpoint);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return paths;
}

/** Percent of one core per role, plus the busiest router, the rest of the machine and idle. */
function cpuByRole(
  pids: Record<string, number[]>,
  routerPids: number[],
  before: ReturnType<typeof sampleCpu>,
  after: ReturnType<typeof sampleCpu>,
): Record<string, number> {
  const pct = cpuPercent(before, after);
  const cpu: Record<string, number> = {};
  for (const [role, list] of Object.entries(pids)) {
    const used = list.filter((p) => pct.has(p));
    if (used.length) cpu[role] = Math.round(used.reduce((t, p) => t + pct.get(p)!, 0));
  }
  const perRouter = routerPids.filter((p) => pct.has(p)).map((p) => pct.get(p)!);
  if (perRouter.length) cpu.routerMax = Math.round(Math.max(...perRouter));
  const machine = machinePercent(before, after);
  if (machine) {
    // The rest of the machine: the kernel's loopback work, and anything else running on the host.
    const ours = Object.entries(cpu).reduce((t, [k, x]) => (k === 'routerMax' ? t : t + x), 0);
    cpu.other = Math.max(0, Math.round(availableParallelism() * 100 - machine.idle - ours));
    cpu.idle = Math.round(machine.idle);
  }
  return cpu;
}

function labPids(lab: Lab): { pids: Record<string, number[]>; routers: number[] } {
  const routers = lab.routers.map((r) => r.managed?.proc.pid ?? -1);
  return {
    pids: {
      bench: [process.pid],
      routers,
      portals: lab.isps.map((i) => i.managed.proc.pid ?? -1),
      echo: lab.servers.map((s) => s.managed.proc.pid ?? -1),
    },
    routers,
  };
}

/** Waits until every client of `fleet` has had `replies` echoes answered. */
async function warmUp(fleet: ClientFleet, replies: number, what: string): Promise<void> {
  const deadline = performance.now() + WARMUP_TIMEOUT_MS;
  while (fleet.clients.some((c) => c.replies.length < replies)) {
    if (performance.now() > deadline) {
      const silent = fleet.clients.filter((c) => c.replies.length < replies).length;
      throw new Error(
        `${silent} of ${fleet.clients.length} ${what} clients had no echo answered within ${WARMUP_TIMEOUT_MS} ms`,
      );
    }
    await sleep(20);
  }
}

/** Round trips of the echoes sent in [from, to) that came back, and how many did not. */
function echoesIn(
  fleet: ClientFleet,
  from: number,
  to: number,
): { rtts: number[]; sent: number; lost: number } {
  const rtts: number[] = [];
  let sent = 0;
  let lost = 0;
  for (const c of fleet.clients)
    for (const e of c.echoes) {
      if (e.sentAt < from || e.sentAt >= to) continue;
      sent++;
      if (Number.isNaN(e.repliedAt)) lost++;
      else rtts.push(e.repliedAt - e.sentAt);
    }
  return { rtts, sent, lost };
}

/**
 * The unloaded round trip of this lab: a few clients echoing slowly, before any load. The
 * run's round trips under load are held against it.
 */
async function unloadedRtt(endpoint: Endpoint, paths: BoughtPath[]): Promise<number> {
  const fleet = new ClientFleet(endpoint, paths.slice(0, PILOT_CLIENTS), {
    detector: BENCH_DETECTOR,
    echoIntervalMs: PILOT_INTERVAL_MS,
    tickMs: SCHEDULER_TICK_MS,
    maxRunMs: WARMUP_TIMEOUT_MS + PILOT_MS + 1000,
  });
  try {
    fleet.start();
    // The first echoes may beat the routers to their circuits: time only once all are answered.
    await warmUp(fleet, 2, 'pilot');
    const from = performance.now();
    await sleep(PILOT_MS);
    const to = performance.now();
    fleet.stopSending();
    await sleep(HEALTHY_RTT_MS);
    const { rtts } = echoesIn(fleet, from, to);
    return round(percentile(rtts, 50), 2);
  } finally {
    fleet.close();
  }
}

/**
 * The N = 0 capacity: with no failure, CALIBRATION_CLIENTS clients step the aggregate echo rate
 * up by CALIBRATION_STEP until a step loses echoes, answers too late for the detector, or the
 * bench cannot send the rate asked. The capacity is the reply rate of the last step that passed.
 */
async function calibrate(
  lab: Lab,
  fraction: number,
  progress: ((line: string) => void) | undefined,
): Promise<Calibration> {
  const endpoint = await Endpoint.open('127.0.0.1:0');
  let fleet: ClientFleet | undefined;
  try {
    const paths = await buyPaths(lab, endpoint, CALIBRATION_CLIENTS, BUY_CONCURRENCY);
    const rttLimit = BENCH_DETECTOR.timeoutMs * CALIBRATION_RTT_SHARE;
    fleet = new ClientFleet(endpoint, paths, {
      detector: BENCH_DETECTOR,
      echoIntervalMs: (CALIBRATION_CLIENTS * 1000) / CALIBRATION_FIRST_RATE,
      tickMs: SCHEDULER_TICK_MS,
      maxRunMs: 5 * 60_000,
    });
    fleet.start();
    await warmUp(fleet, 2, 'calibration');
    const { pids, routers } = labPids(lab);
    const steps: CalibrationStep[] = [];
    let bound = `the ramp's top, ${CALIBRATION_MAX_RATE} echoes/s`;
    for (
      let target = CALIBRATION_FIRST_RATE;
      target <= CALIBRATION_MAX_RATE;
      target = Math.round(target * CALIBRATION_STEP)
    ) {
      fleet.setEchoInterval((CALIBRATION_CLIENTS * 1000) / target);
      await sleep(CALIBRATION_SETTLE_MS);
      const from = performance.now();
      const before = sampleCpu(Object.values(pids).flat());
      await sleep(CALIBRATION_WINDOW_MS);
      const after = sampleCpu(Object.values(pids).flat());
      const to = performance.now();
      // Let the window's last echoes come home before counting them lost.
      await sleep(HEALTHY_RTT_MS);
      const { rtts, sent, lost } = echoesIn(fleet, from, to);
      const seconds = (to - from) / 1000;
      const step: CalibrationStep = {
        targetPerSec: target,
        sentPerSec: Math.round(sent / seconds),
        repliedPerSec: Math.round((sent - lost) / seconds),
        lossPct: round(sent ? (100 * lost) / sent : 100, 2),
        rttMs: { p50: round(percentile(rtts, 50), 2), p99: round(percentile(rtts, 99), 2) },
        cpu: cpuByRole(pids, routers, before, after),
        passed: false,
      };
      const reason = new Checks()
        .check(
          step.lossPct <= CALIBRATION_MAX_LOSS_PCT,
          `${step.lossPct}% of echoes lost (> ${CALIBRATION_MAX_LOSS_PCT}%)`,
        )
        .check(step.rttMs.p99 <= rttLimit, `round trip p99 ${step.rttMs.p99} ms (> ${rttLimit} ms)`)
        .check(
          step.sentPerSec >= 0.9 * target,
          `the bench sent only ${step.sentPerSec} of ${target} echoes/s (the bench is the bound)`,
        ).result.invalidReason;
      step.passed = reason === null;
      if (reason !== null) step.reason = reason;
      steps.push(step);
      progress?.(
        `  ${target} echoes/s asked: ${step.sentPerSec} sent, ${step.repliedPerSec} answered, ` +
          `${step.lossPct}% lost, RTT p50/p99 ${step.rttMs.p50}/${step.rttMs.p99} ms, ` +
          `CPU ${cpuText(step.cpu)}${reason ? ` -> stop: ${reason}` : ''}`,
      );
      if (reason !== null) {
        bound = `at ${target} echoes/s, ${reason}`;
        break;
      }
    }
    const passed = steps.filter((x) => x.passed);
    const capacity = passed.length
      ? Math.max(...passed.map((x) => x.repliedPerSec))
      : steps[0]!.repliedPerSec;
    // The lowest step's load is light enough to be the unloaded figure; its CPU shows a quiet machine.
    const first = steps[0]!;
    const checks = new Checks().check(
      passed.length > 0,
      `even ${CALIBRATION_FIRST_RATE} echoes/s failed (${first.reason ?? ''}): the machine is too busy`,
    );
    checkCpu(checks, first.cpu);
    // The step that ended the ramp must have failed on our load, not on a neighbour's.
    const last = steps.at(-1)!;
    const lastOther = last.cpu.other;
    if (last !== first && lastOther !== undefined)
      checks.check(
        lastOther <= MAX_OTHER_CPU_PCT,
        `at the last step other processes took ${lastOther}% of a core (> ${MAX_OTHER_CPU_PCT}%): the capacity measured the neighbours`,
      );
    return {
      ...checks.result,
      capacityEchoesPerSec: capacity,
      fraction,
      rateEchoesPerSec: Math.max(1, Math.round(capacity * fraction)),
      clients: CALIBRATION_CLIENTS,
      unloadedRttMs: first.rttMs.p50,
      bound,
      steps,
    };
  } finally {
    fleet?.close();
    await endpoint.close();
  }
}

/**
 * The checks a run must pass to be a result: the load before the kill was carried cleanly
 * (no loss, no detector firing, no router verdict, round trips near the unloaded ones), with
 * CPU to spare. Pure, so the rules are tested on their own.
 */
export function validateFailoverRun(
  r: Pick<
    FailoverRun,
    | 'clients'
    | 'samplesBeforeKill'
    | 'lostBeforeKill'
    | 'spuriousFailures'
    | 'falseDeaths'
    | 'rttMs'
    | 'unloadedRttMs'
    | 'preKillTickLateMs'
    | 'cpu'
  >,
  calibration: Pick<Calibration, 'valid'>,
  detectorTimeoutMs: number = BENCH_DETECTOR.timeoutMs,
): Validity {
  const minSamples = Math.max(100, 2 * r.clients);
  const maxLost = Math.max(1, Math.floor(VALID.lostShare * r.samplesBeforeKill));
  const maxSpurious = Math.floor(VALID.spuriousShare * r.clients);
  const maxRttP50 = Math.max(VALID.rttFactor * r.unloadedRttMs, r.unloadedRttMs + VALID.rttSlackMs);
  const maxRttP99 = detectorTimeoutMs * CALIBRATION_RTT_SHARE;
  const checks = new Checks()
    .check(calibration.valid, 'the calibration was invalid')
    .check(r.unloadedRttMs > 0, 'no unloaded round trip was measured')
    .check(
      r.samplesBeforeKill >= minSamples,
      `too few samples before the kill: ${r.samplesBeforeKill} (< ${minSamples})`,
    )
    .check(r.lostBeforeKill <= maxLost, `${r.lostBeforeKill} echoes lost before the kill (> ${maxLost})`)
    .check(
      r.spuriousFailures <= maxSpurious,
      `${r.spuriousFailures} detector firings before the kill (> ${maxSpurious})`,
    )
    .check(r.falseDeaths === 0, `${r.falseDeaths} router dead verdicts before the kill`)
    .check(
      r.rttMs.p50 <= maxRttP50,
      `round trip p50 ${r.rttMs.p50} ms before the kill, unloaded ${r.unloadedRttMs} ms (> ${round(maxRttP50, 2)} ms)`,
    )
    .check(
      r.rttMs.p99 <= maxRttP99,
      `round trip p99 ${r.rttMs.p99} ms before the kill (> ${maxRttP99} ms, half the detector's timeout)`,
    )
    .check(
      r.preKillTickLateMs <= VALID.tickLateMs,
      `the bench's scheduler ran ${r.preKillTickLateMs} ms late (p99 > ${VALID.tickLateMs} ms)`,
    );
  return checkCpu(
    checks,
    r.cpu,
    r.cpu.routerMax === undefined ? undefined : ['the busiest router', r.cpu.routerMax],
  ).result;
}

/** The validity thresholds (validateFailoverRun). */
export const VALID = {
  /** Echoes lost before the kill: at most this share of the samples (and at least 1 allowed). */
  lostShare: 0.002,
  /** Detector firings before the kill: at most this share of the clients. */
  spuriousShare: 0.01,
  /** Round trip p50 under load: at most this many times the unloaded one... */
  rttFactor: 4,
  /** ...or the unloaded one plus this, whichever is larger. */
  rttSlackMs: 3,
  /** The bench's 1 ms scheduler: p99 lateness before the kill. */
  tickLateMs: 5,
} as const;

async function measure(
  lab: Lab,
  run: {
    clients: number;
    liveness: LivenessMode;
    echoIntervalMs: number;
    probeIntervalMs: number;
    attempt: number;
    earlierInvalid: string[];
  },
  calibration: Calibration,
  progress: ((line: string) => void) | undefined,
): Promise<FailoverRun> {
  const endpoint = await Endpoint.open('127.0.0.1:0');
  let fleet: ClientFleet | undefined;
  const verdictLog = new VerdictLog(lab, endpoint.address);
  try {
    const t0 = performance.now();
    const paths = await buyPaths(lab, endpoint, run.clients, BUY_CONCURRENCY);
    const setupS = (performance.now() - t0) / 1000;
    progress?.(`  bought ${run.clients} paths (${run.clients * 6} circuits) in ${setupS.toFixed(1)} s`);

    // Every circuit's next hop in beta, forward and return, must start with the same router. A
    // portal lists only routers whose registration is current; one that lapsed under the set-up's
    // load for a moment gave some paths the other router first: those are bought again.
    const firstInBeta = (p: BoughtPath): string[] => [
      p.forward[1]!.circuit.ingress[0]!,
      p.reverse[1]!.circuit.ingress[0]!,
    ];
    const counts = new Map<string, number>();
    for (const p of paths) for (const a of firstInBeta(p)) counts.set(a, (counts.get(a) ?? 0) + 1);
    const victimAddress = [...counts].sort((a, b) => b[1] - a[1])[0]![0];
    let rebought = 0;
    for (let round = 1; round <= REBUY_ROUNDS; round++) {
      const off = [...paths.keys()].filter((i) => firstInBeta(paths[i]!).some((a) => a !== victimAddress));
      if (off.length === 0) break;
      progress?.(`  ${off.length} path(s) got beta's other router first; buying them again (round ${round})`);
      await sleep(REBUY_WAIT_MS);
      for (const i of off) {
        await releasePath(paths[i]!);
        paths[i] = await buyClientPath(lab, endpoint);
        rebought++;
      }
    }
    for (const [i, p] of paths.entries()) {
      const fwd = p.forward[1]!.circuit.ingress[0];
      const ret = p.reverse[1]!.circuit.ingress[0];
      if (fwd !== victimAddress || ret !== victimAddress)
        throw new Error(
          `client ${i}: beta's first router is ${fwd} (forward) / ${ret} (return), not ${victimAddress}`,
        );
    }
    const victim = lab.routers.find((r) => r.address === victimAddress);
    if (!victim) throw new Error(`no lab router at ${victimAddress}`);

    const unloadedRttMs = await unloadedRtt(endpoint, paths);

    const maxRunMs = WARMUP_TIMEOUT_MS + STEADY_MS + RECOVERY_DEADLINE_MS + 10 * run.echoIntervalMs + 10_000;
    fleet = new ClientFleet(endpoint, paths, {
      detector: { ...BENCH_DETECTOR, probeIntervalMs: run.probeIntervalMs },
      echoIntervalMs: run.echoIntervalMs,
      tickMs: SCHEDULER_TICK_MS,
      maxRunMs,
    });
    fleet.start();

    // Warm-up: routers learn the circuits from their stores within milliseconds; wait until
    // every client has had echoes answered.
    await warmUp(fleet, WARMUP_REPLIES, 'bench');
    // Detectors run from here on; the steady phase shows they stay quiet while the path is healthy.
    fleet.arm();

    const measureFrom = performance.now();
    const steadyTicksFrom = fleet.tickLateMs.length;
    const { pids, routers } = labPids(lab);
    const cpuBefore = sampleCpu(Object.values(pids).flat());
    await sleep(Math.max(STEADY_MS, 3 * run.echoIntervalMs));
    const cpuAfter = sampleCpu(Object.values(pids).flat());

    const killAt = performance.now();
    const killWallMs = wallNow();
    lab.kill(victim.name, 'SIGKILL');
    const ticksBefore = fleet.tickLateMs.length;
    progress?.(`  killed ${victim.name} (${victim.address}) with SIGKILL`);

    const cpuAtKill = sampleCpu(Object.values(pids).flat());
    const deadline = killAt + RECOVERY_DEADLINE_MS;
    while (performance.now() < deadline && !fleet.clients.every((c) => recoveredAfter(c, killAt)))
      await sleep(10);
    const cpuRecovered = sampleCpu(Object.values(pids).flat());
    // A little more traffic after the last recovery, then let the last replies come home.
    await sleep(Math.max(200, 2 * run.echoIntervalMs));
    fleet.stopSending();
    await sleep(DRAIN_MS);
    fleet.close();
    const verdicts = verdictLog.relativeTo(killWallMs);
    // Verdicts on the endpoint are left out: it is no router, and it does not answer keepalives.
    const falseDeaths = verdicts.filter((d) => d.atMs < 0 && d.neighbour !== 'endpoint').length;

    const outages: number[] = [];
    const repairs: number[] = [];
    let recovered = 0;
    let probed = 0;
    let lost = 0;
    let lostBeforeKill = 0;
    let samplesBeforeKill = 0;
    let spuriousFailures = 0;
    let failures = 0;
    let echoesSent = 0;
    let lastLossAt = killAt;
    const rtts: number[] = [];
    for (const c of fleet.clients) {
      spuriousFailures += c.failures.filter((f) => f.at < killAt).length;
      failures += c.failures.filter((f) => f.at >= killAt).length;
      // repairMs is the first repair after the kill: the one the failover protocol did.
      const f = c.failures.find((x) => x.at >= killAt);
      if (f) {
        probed++;
        if (f.repairMs !== undefined) repairs.push(f.repairMs);
      }
      const outage = outageOf(c, killAt);
      if (outage !== undefined && !c.current) {
        recovered++;
        outages.push(outage);
      }
      for (const e of c.echoes) {
        if (e.sentAt < measureFrom) continue;
        echoesSent++;
        const missing = Number.isNaN(e.repliedAt);
        if (missing) {
          lost++;
          lastLossAt = Math.max(lastLossAt, e.sentAt);
        }
        if (e.sentAt < killAt - HEALTHY_RTT_MS) {
          samplesBeforeKill++;
          if (missing) lostBeforeKill++;
          else rtts.push(e.repliedAt - e.sentAt);
        }
      }
    }
    const late = fleet.tickLateMs.slice(ticksBefore);
    const steadyLate = fleet.tickLateMs.slice(steadyTicksFrom, ticksBefore);
    const cpu = cpuByRole(pids, routers, cpuBefore, cpuAfter);
    const cpuRecovery = cpuByRole(pids, routers, cpuAtKill, cpuRecovered);

    const figures = {
      clients: run.clients,
      liveness: run.liveness,
      attempt: run.attempt,
      earlierInvalid: run.earlierInvalid,
      echoIntervalMs: run.echoIntervalMs,
      echoRatePerSec: Math.round((run.clients * 1000) / run.echoIntervalMs),
      probeIntervalMs: run.probeIntervalMs,
      unloadedRttMs,
      outageMs: summary(outages),
      repairMs: summary(repairs),
      lost,
      lastLossMs: round(lastLossAt - killAt, 1),
      recovered,
      probed,
      failures,
      samplesBeforeKill,
      lostBeforeKill,
      spuriousFailures,
      echoesSent,
      rttMs: { p50: round(percentile(rtts, 50), 2), p99: round(percentile(rtts, 99), 2) },
      preKillTickLateMs: round(percentile(steadyLate, 99), 1),
      tickLateMs: { p99: round(percentile(late, 99), 1), max: round(late.length ? Math.max(...late) : 0, 1) },
      setupS: round(setupS, 1),
      rebought,
      victim: victim.name,
      falseDeaths,
      verdicts,
      cpu,
      cpuRecovery,
      recoveryS: round((cpuRecovered.at - cpuAtKill.at) / 1000, 2),
    };
    return { ...validateFailoverRun(figures, calibration), ...figures };
  } finally {
    verdictLog.close();
    fleet?.close();
    await endpoint.close();
  }
}

/** Echoes flow again: some reply answers an echo sent after the kill, and no failure is open. */
function recoveredAfter(c: FleetClient, killAt: number): boolean {
  if (c.current) return false;
  for (let i = c.replies.length - 1; i >= 0; i--) {
    const r = c.replies[i]!;
    if (c.echoes[r.echo]!.sentAt > killAt) return true;
    if (r.at <= killAt) return false;
  }
  return false;
}

/**
 * The client's outage: the longest gap between consecutive replies, from the last reply
 * received before the kill to the first reply to an echo sent after it. (A reply that was
 * in flight at the kill may land after it; the gap that follows is still the outage.)
 * Undefined when echoes never flowed again.
 */
export function outageOf(c: FleetClient, killAt: number): number | undefined {
  const { replies, echoes } = c;
  let start = -1;
  for (let i = 0; i < replies.length; i++) if (replies[i]!.at <= killAt) start = i;
  let end = -1;
  for (let i = Math.max(0, start); i < replies.length; i++)
    if (echoes[replies[i]!.echo]!.sentAt > killAt) {
      end = i;
      break;
    }
  if (start < 0 || end < 0) return undefined;
  let gap = 0;
  for (let i = start + 1; i <= end; i++) gap = Math.max(gap, replies[i]!.at - replies[i - 1]!.at);
  return gap;
}

function summary(samples: number[]): Percentiles {
  if (samples.length === 0) return { p50: 0, p99: 0, max: 0 };
  return {
    p50: round(percentile(samples, 50), 1),
    p99: round(percentile(samples, 99), 1),
    max: round(Math.max(...samples), 1),
  };
}

export function checkTargets(runs: FailoverRun[]): FailoverReport['targets'] {
  const ns = runs.map((r) => r.clients);
  const minN = Math.min(...ns);
  const maxN = Math.max(...ns);
  const modes = LIVENESS_MODES.filter((m) => runs.some((r) => r.liveness === m));
  const at = (n: number, m: LivenessMode): FailoverRun | undefined =>
    runs.find((r) => r.clients === n && r.liveness === m);

  const invalid = (r: FailoverRun): string => `N = ${r.clients} INVALID: ${r.invalidReason ?? ''}`;
  const repairResults = modes.map((m) => {
    const r = at(maxN, m)!;
    if (!r.valid) return { liveness: m, clients: maxN, value: null, met: false, note: invalid(r) };
    const value = r.probed > 0 ? r.repairMs.p99 : null;
    return {
      liveness: m,
      clients: maxN,
      value,
      met: r.recovered === r.clients && (value ?? 0) < TARGETS.repairP99Ms,
      ...(value === null ? { note: 'no client probed: the routers repaired before any detector fired' } : {}),
    };
  });
  const flatResults = modes.map((m) => {
    const lo = at(minN, m)!;
    const hi = at(maxN, m)!;
    const bad = [lo, hi].find((x) => !x.valid);
    if (bad) return { liveness: m, value: null, met: false, note: invalid(bad) };
    // Ratios need a repair measured at both ends; with no client probing there is nothing to compare.
    const value =
      lo.probed > 0 && hi.probed > 0 && lo.repairMs.p99 > 0
        ? round(hi.repairMs.p99 / lo.repairMs.p99, 2)
        : null;
    if (value !== null) return { liveness: m, value, met: value <= TARGETS.flatness };
    return {
      liveness: m,
      value,
      // Nothing to repair at either end is flat; probing at N = max only is not.
      met: hi.probed === 0,
      note: `clients that probed: ${lo.probed} at N = ${minN}, ${hi.probed} at N = ${maxN}`,
    };
  });
  const outageResults = runs
    .filter((r) => r.liveness === 'on')
    .map((r) =>
      r.valid
        ? {
            liveness: r.liveness,
            clients: r.clients,
            value: r.outageMs.p99,
            met: r.recovered === r.clients && r.outageMs.p99 < TARGETS.livenessOutageP99Ms,
          }
        : { liveness: r.liveness, clients: r.clients, value: null, met: false, note: invalid(r) },
    );
  return {
    repairP99: {
      limit: TARGETS.repairP99Ms,
      clients: maxN,
      results: repairResults,
      met: repairResults.every((x) => x.met),
    },
    flatness: {
      limit: TARGETS.flatness,
      minClients: minN,
      maxClients: maxN,
      results: flatResults,
      met: flatResults.every((x) => x.met),
    },
    livenessOutageP99: {
      limit: TARGETS.livenessOutageP99Ms,
      results: outageResults,
      met: outageResults.every((x) => x.met),
    },
  };
}

const f1 = (n: number): string => n.toFixed(1);

function cpuText(cpu: Record<string, number>): string {
  return Object.entries(cpu)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
}

function runLine(r: FailoverRun): string {
  if (!r.valid) return `INVALID (not a result): ${r.invalidReason}`;
  return (
    `outage p50/p99/max ${f1(r.outageMs.p50)}/${f1(r.outageMs.p99)}/${f1(r.outageMs.max)} ms, ` +
    `repair ${r.probed ? `${f1(r.repairMs.p50)}/${f1(r.repairMs.p99)}/${f1(r.repairMs.max)} ms` : '- (no client probed)'}, ` +
    `${r.lost} lost, ${r.recovered}/${r.clients} recovered, ${r.probed} probed`
  );
}

export function formatFailoverReport(r: FailoverReport): string {
  const header = [
    'clients',
    'liveness',
    'echo ms',
    'probe ms',
    'outage p50',
    'p99',
    'max',
    'repair p50',
    'p99',
    'max',
    'probed',
    'lost',
    'last loss',
    'lost pre-kill',
    'recovered',
    'RTT p50/p99',
    'echoes/s',
    'CPU % (steady)',
  ];
  const rows = r.runs.map((x) => {
    const rep = (v: number): string => (x.probed ? f1(v) : '-');
    const liveness = x.liveness === 'on' ? `on ${r.livenessIntervalMs}x3` : x.liveness;
    const lead = [x.clients, liveness, x.echoIntervalMs, x.probeIntervalMs].map(String);
    // An invalid run shows why, never its figures.
    if (!x.valid) return [...lead, `INVALID: ${x.invalidReason ?? ''}`, ...header.slice(5).map(() => '')];
    return [
      String(x.clients),
      x.liveness,
      String(x.echoIntervalMs),
      String(x.probeIntervalMs),
      f1(x.outageMs.p50),
      f1(x.outageMs.p99),
      f1(x.outageMs.max),
      rep(x.repairMs.p50),
      rep(x.repairMs.p99),
      rep(x.repairMs.max),
      String(x.probed),
      String(x.lost),
      `+${f1(x.lastLossMs)}`,
      String(x.lostBeforeKill),
      `${x.recovered}/${x.clients}`,
      `${f1(x.rttMs.p50)}/${f1(x.rttMs.p99)} (unloaded ${f1(x.unloadedRttMs)})`,
      String(x.echoRatePerSec),
      cpuText(x.cpu),
    ];
  });
  // An INVALID cell spans the row: it does not widen the outage column.
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.filter((row) => !row[4]!.startsWith('INVALID')).map((row) => row[i]!.length)),
  );
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === 1 || i === cells.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  const t = r.targets;
  const yes = (m: boolean): string => (m ? 'met' : 'MISSED');
  const v = (x: { value: number | null; note?: string }, unit = ' ms'): string =>
    x.value === null ? `n/a (${x.note ?? 'no value'})` : `${x.value}${unit}`;
  const d = BENCH_DETECTOR;
  const c = r.calibration;
  return [
    `ARROW failover vs number of clients: SIGKILL the middle ISP's router that every circuit crosses`,
    `machine: ${r.machine.cpus} CPU(s), Node ${r.machine.node}; 3 ISPs x 1 PoP x 2 routers, real processes, ` +
      `routers on the ${r.dataplane} path; ` +
      `detector: timeout ${d.timeoutMs} ms, ack timeout ${d.ackTimeoutMs} ms; echo and probe intervals per run`,
    'outage = longest reply gap around the kill (resolution: the echo interval); repair = first probe -> probe home,',
    'over the clients that probed (the others found the path repaired before their timeout); last loss = when the',
    'last echo that was lost (any client) was sent, after the kill. Times in ms.',
    '',
    `calibration (no failure, ${c.clients} clients, rate stepped up): capacity ${c.capacityEchoesPerSec} echoes/s ` +
      `(${c.bound}); unloaded RTT p50 ${c.unloadedRttMs} ms; every run gets ${c.fraction} of it, ` +
      `${c.rateEchoesPerSec} echoes/s` +
      (c.valid ? '' : `; INVALID: ${c.invalidReason}`),
    ...c.steps.map(
      (x) =>
        `  ${String(x.targetPerSec).padStart(6)}/s asked: ${x.sentPerSec} sent, ${x.repliedPerSec} answered, ` +
        `${x.lossPct}% lost, RTT p50/p99 ${x.rttMs.p50}/${x.rttMs.p99} ms; CPU ${cpuText(x.cpu)}` +
        (x.passed ? '' : ` -- ${x.reason ?? 'failed'}`),
    ),
    'a run is INVALID (shown instead of its figures) when, before the kill, echoes were lost, a detector fired,',
    'a router declared a false death, round trips rose far above the unloaded ones, a router was CPU-bound,',
    'the machine had no idle CPU, or other processes took more than 30% of a core.',
    '',
    line(header),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
    '',
    "routers' verdicts (their neighbour-dead events: router -> neighbour it declared dead, ms after the kill, hops moved):",
    ...r.runs.map(
      (x) =>
        `  N=${x.clients} liveness ${x.liveness}: ` +
        (x.verdicts.length
          ? x.verdicts
              .map(
                (d) =>
                  `${d.router} -> ${d.neighbour} ${d.atMs >= 0 ? '+' : ''}${d.atMs} ms, ${d.moved} moved` +
                  (d.atMs < 0 && d.neighbour !== 'endpoint' ? ' (FALSE: before the kill)' : ''),
              )
              .join('; ')
          : 'none') +
        (x.spuriousFailures ? `; ${x.spuriousFailures} detector firing(s) BEFORE the kill` : '') +
        (x.failures > x.probed ? `; ${x.failures - x.probed} repaired client(s) failed again` : '') +
        `; CPU from the kill to recovery (${x.recoveryS} s): ${cpuText(x.cpuRecovery)}` +
        (x.earlierInvalid.length
          ? `; after ${x.earlierInvalid.length} INVALID attempt(s): ${x.earlierInvalid.join(' | ')}`
          : ''),
    ),
    '',
    'targets:',
    `  repairMs p99 < ${t.repairP99.limit} ms at N = ${t.repairP99.clients}: ` +
      t.repairP99.results.map((x) => `liveness ${x.liveness} ${v(x)} ${yes(x.met)}`).join('; '),
    `  flat in N, repairMs p99(N=${t.flatness.maxClients}) / p99(N=${t.flatness.minClients}) <= ${t.flatness.limit}: ` +
      t.flatness.results.map((x) => `liveness ${x.liveness} ${v(x, 'x')} ${yes(x.met)}`).join('; '),
    `  liveness on, outageMs p99 < ${t.livenessOutageP99.limit} ms: ` +
      (t.livenessOutageP99.results.length
        ? t.livenessOutageP99.results.map((x) => `N=${x.clients} ${v(x)} ${yes(x.met)}`).join('; ')
        : 'not run'),
  ].join('\n');
}
