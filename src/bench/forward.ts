import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { withProgress } from '../util/progress.js';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startComponent, stopComponent, type Managed } from '../lab/process.js';
import type { RouterConfigInput } from '../router/config.js';
import type { CircuitInput } from '../store/circuit.js';
import { SqliteStore } from '../store/sqlite.js';
import { newAuthenticator } from '../wire/authenticator.js';
import { HEADER_LENGTH, MAX_DATAGRAM } from '../wire/header.js';
import { cpuPercent, isGone, machinePercent, sampleCpu } from '../util/cpu.js';
import { formatKernelRows, kernelRowsUnavailable, runKernelRows, type KernelRows } from './forward-kernel.js';
import { isReply, type Payload, type Reply, type Request } from './protocol.js';
import {
  buildReport,
  emptyMeasurements,
  formatReport,
  type ConfigName,
  type ForwardBenchReport,
  type RunFigures,
} from './report.js';
import { SOCKET_BUFFER_BYTES } from './worker.js';

/**
 * `arrow bench forward`: datagrams per second through 1 and 2 ARROW routers, against
 * a plain Node UDP relay measured in the same run on the same machine. Every box is
 * a real OS process with real UDP sockets on loopback:
 *
 *   baseline  sender -> relay              -> sink
 *   hop1      sender -> router B           -> sink
 *   hop2      sender -> router A -> router B -> sink
 *
 * All processes start once and serve every run; runs of the three configs are
 * interleaved so slow drift (thermal, other load) spreads over all of them.
 */

/** Distinct loopback addresses, so each process is easy to tell apart in a capture. */
const HOSTS = {
  sender: '127.77.0.1',
  sink: '127.77.0.2',
  relay: '127.77.0.3',
  routerA: '127.77.0.4',
  routerB: '127.77.0.5',
} as const;

const POP = 'p';
/** Skipped at the start of every run: sockets, JIT and relay queues settle first. */
const WARMUP_MS = 300;
/** Pause between runs so a relay's backlog from one run is gone before the next starts. */
const SETTLE_MS = 150;
/** A blast ends on the parent's `stop`; these bounds only stop a sender whose parent went quiet. */
const BLAST_SLACK_MS = 10_000;
const MAX_SENDER_PPS = 10_000_000;
/** How long a worker may take to answer a control message beyond the time the work itself takes. */
const REPLY_SLACK_MS = 10_000;

export interface ForwardBenchOptions {
  sizes: number[];
  runs: number;
  durationS: number;
  /** Called with one line per finished run, for progress on stderr. */
  progress?: (line: string) => void;
}

export interface ForwardBenchFlags {
  json?: boolean;
  duration: number;
  runs: number;
  sizes: string;
  kernel: 'auto' | 'on' | 'off';
  /** Where forward.svg and forward.png (the plot) are written. */
  out: string;
}

/** The Node rows' report, with the kernel rows (or why they were not measured). */
export type ForwardBenchOutput = ForwardBenchReport &
  Partial<KernelRows> & {
    /** Whether the kernel rows alone were valid (the report's `valid` covers both). */
    kernelValid?: boolean;
    kernelInvalidReason?: string | null;
    /** Why the kernel rows were not measured. */
    kernelUnavailable?: string;
  };

export async function runForwardBenchCommand(o: ForwardBenchFlags): Promise<void> {
  const sizes = parseSizes(o.sizes);
  const unavailable = o.kernel === 'off' ? 'not asked for (--kernel off)' : kernelRowsUnavailable();
  if (o.kernel === 'on' && unavailable !== undefined) throw new Error(`--kernel on: ${unavailable}`);
  const [node, kernel] = await withProgress(o.json, async (progress) => {
    const n = await runForwardBench({ sizes, runs: o.runs, durationS: o.duration, progress });
    const k =
      unavailable === undefined
        ? await runKernelRows({ sizes, runs: o.runs, durationS: o.duration, progress })
        : undefined;
    return [n, k] as const;
  });
  let report: ForwardBenchOutput = { ...node };
  if (kernel !== undefined) {
    const { valid, invalidReason, ...rows } = kernel;
    report = { ...report, ...rows, kernelValid: valid, kernelInvalidReason: invalidReason };
    if (!kernel.valid) {
      report.valid = false;
      report.invalidReason = [node.invalidReason, `kernel rows: ${kernel.invalidReason}`]
        .filter(Boolean)
        .join('; ');
    }
  } else report.kernelUnavailable = unavailable;
  if (o.json) console.log(JSON.stringify(report));
  else {
    console.log(formatReport(node));
    console.log('');
    console.log(kernel ? formatKernelRows(kernel, sizes) : `kernel rows: not measured: ${unavailable}`);
  }
  // Loaded only now: the plotting libraries stay out of the process while it measures.
  const { forwardChart, writeBenchPlotFor } = await import('./plots.js');
  await writeBenchPlotFor(forwardChart(report), o, 'forward');
  if (!report.valid) {
    console.error(`arrow: INVALID, not results: ${report.invalidReason}`);
    process.exitCode = 1;
  }
}

/** `--sizes 64,1400` → [64, 1400], sorted and de-duplicated; each must hold an ARROW header and fit a datagram. */
export function parseSizes(text: string): number[] {
  const sizes = text.split(',').map((s) => Number(s.trim()));
  for (const [i, n] of sizes.entries()) {
    if (!Number.isInteger(n) || n < HEADER_LENGTH || n > MAX_DATAGRAM)
      throw new Error(
        `--sizes: ${JSON.stringify(text.split(',')[i])} is not a datagram size from ${HEADER_LENGTH} (the ARROW header) to ${MAX_DATAGRAM}`,
      );
  }
  return [...new Set(sizes)].sort((a, b) => a - b);
}

export async function runForwardBench(opts: ForwardBenchOptions): Promise<ForwardBenchReport> {
  const rig = new Rig();
  let failed = true;
  try {
    const paths = await rig.boot();
    const measurements = emptyMeasurements();
    for (const size of opts.sizes) {
      for (let run = 1; run <= opts.runs; run++) {
        for (const path of paths) {
          const figures = await rig.measure(path, size, opts.durationS * 1000);
          const list = measurements[path.name].get(size) ?? [];
          list.push(figures);
          measurements[path.name].set(size, list);
          opts.progress?.(
            `${path.name.padEnd(8)} ${String(size).padStart(5)} B  run ${run}/${opts.runs}: ` +
              `${Math.round(figures.pps)} pps (sender offered ${Math.round(figures.sentPps)})`,
          );
        }
      }
    }
    failed = false;
    return buildReport(measurements, {
      sizes: opts.sizes,
      runs: opts.runs,
      durationS: opts.durationS,
      machine: { cpus: availableParallelism(), node: process.version },
    });
  } finally {
    // On failure the logs stay for a look; the error message names the directory.
    await rig.stop({ keepDir: failed });
    if (failed && rig.rejections.length)
      process.stderr.write(`also failed while stopping:\n  ${rig.rejections.join('\n  ')}\n`);
  }
}

/** A process the benchmark drives: its name for messages, and how it was started. */
interface Worker {
  name: string;
  managed: Managed;
}

/** One measured configuration: where the sender aims, what it sends, and which processes relay. */
interface Path {
  name: ConfigName;
  entry: string;
  payload: Payload;
  relays: Worker[];
}

/** Owns the temp dir and every child process, so all of them stop however the run ends. */
class Rig {
  readonly dir = mkdtempSync(join(tmpdir(), 'arrow-bench-'));
  private readonly workers: Worker[] = [];
  private sender: Worker | undefined;
  private sink: Worker | undefined;
  private nextId = 1;
  /** Rejections of replies awaited later (see `expect`), for the report of a failed run. */
  readonly rejections: string[] = [];
  /** Ctrl-C must not leave a flooding sender behind. The children also exit when our IPC channel closes. */
  private readonly onSigint = (): void => {
    for (const w of this.workers) w.managed.proc.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
    process.exit(130);
  };

  constructor() {
    process.once('SIGINT', this.onSigint);
  }

  /** Starts sink, relay, routers and sender; returns the three paths in measuring order. */
  async boot(): Promise<Path[]> {
    const sink = await this.start('sink', ['bench-worker', 'sink', '--listen', `${HOSTS.sink}:0`]);
    this.sink = sink;
    const sinkAddress = addressOf(sink);
    const relay = await this.start('relay', [
      'bench-worker',
      'relay',
      '--listen',
      `${HOSTS.relay}:0`,
      '--target',
      sinkAddress,
    ]);

    // B's circuit ends at the sink; A's hands over to B, rewriting to B's authenticator, as a chained circuit does.
    const authA = newAuthenticator();
    const authB = newAuthenticator();
    const routerB = await this.startRouter(
      'b',
      HOSTS.routerB,
      forwardCircuit(authB, sinkAddress, newAuthenticator()),
    );
    const routerA = await this.startRouter(
      'a',
      HOSTS.routerA,
      forwardCircuit(authA, addressOf(routerB), authB),
    );

    this.sender = await this.start('sender', ['bench-worker', 'sender', '--listen', `${HOSTS.sender}:0`]);
    return [
      { name: 'baseline', entry: addressOf(relay), payload: { kind: 'raw' }, relays: [relay] },
      { name: 'hop1', entry: addressOf(routerB), payload: { kind: 'arrow', auth: authB }, relays: [routerB] },
      {
        name: 'hop2',
        entry: addressOf(routerA),
        payload: { kind: 'arrow', auth: authA },
        relays: [routerA, routerB],
      },
    ];
  }

  /**
   * One run: the sender blasts at the path's entry, the sink counts a window after
   * the warm-up, and the parent samples every process's CPU over that window.
   */
  async measure(path: Path, size: number, durationMs: number): Promise<RunFigures> {
    const sender = this.sender!;
    const sink = this.sink!;
    const maxMs = WARMUP_MS + durationMs + BLAST_SLACK_MS;
    const blastId = this.nextId++;
    const started = this.expect(sender, blastId, 'started', REPLY_SLACK_MS);
    const stopped = this.expect(sender, blastId, 'stopped', maxMs + REPLY_SLACK_MS);
    this.send(sender, {
      op: 'blast',
      id: blastId,
      target: path.entry,
      size,
      payload: path.payload,
      maxMs,
      maxPackets: Math.ceil((maxMs / 1000) * MAX_SENDER_PPS),
    });
    await started;

    const measureId = this.nextId++;
    const measured = this.expect(sink, measureId, 'measured', WARMUP_MS + durationMs + REPLY_SLACK_MS);
    this.send(sink, { op: 'measure', id: measureId, warmupMs: WARMUP_MS, durationMs });
    const roles = this.cpuRoles(path);
    await sleep(WARMUP_MS);
    const cpuBefore = sampleCpu([...roles.values()]);
    const window = await measured;
    const cpuAfter = sampleCpu([...roles.values()]);

    this.send(sender, { op: 'stop', id: blastId });
    const blast = await stopped;
    if (blast.reason !== 'stop')
      throw new Error(
        `the sender ended its blast on its own (${blast.reason} bound) before the window closed`,
      );
    if (window.packets === 0)
      throw new Error(
        `no datagram reached the sink through ${path.name} (the sender saw ${blast.errors} socket errors)${this.logsOf(path)}`,
      );
    await sleep(SETTLE_MS);

    const pps = window.packets / window.seconds;
    const pct = cpuPercent(cpuBefore, cpuAfter);
    const cpu: Record<string, number> = {};
    for (const [role, pid] of roles) if (pct.has(pid)) cpu[role] = Math.round(pct.get(pid)!);
    const machine = machinePercent(cpuBefore, cpuAfter);
    if (machine) {
      cpu.irq = Math.round(machine.irq);
      cpu.idle = Math.round(machine.idle);
      // Everything else on the machine: load that is not this benchmark's skews every figure.
      const ours = Object.values(cpu).reduce((t, x) => t + x, 0);
      cpu.other = Math.max(0, Math.round(availableParallelism() * 100 - ours));
    }
    return {
      pps,
      mbps: (size * 8 * pps) / 1e6,
      sentPps: blast.sent / blast.seconds,
      packets: window.packets,
      cpu,
    };
  }

  /** The processes busy in a path, by role, in packet order. */
  private cpuRoles(path: Path): Map<string, number> {
    const roles = new Map<string, number>();
    const pid = (w: Worker): number => w.managed.proc.pid ?? -1;
    roles.set('sender', pid(this.sender!));
    for (const w of path.relays) roles.set(w.name, pid(w));
    roles.set('sink', pid(this.sink!));
    return roles;
  }

  async stop(opts: { keepDir: boolean }): Promise<void> {
    process.off('SIGINT', this.onSigint);
    await Promise.all(this.workers.map((w) => stopComponent(w.managed.proc)));
    if (!opts.keepDir) rmSync(this.dir, { recursive: true, force: true });
  }

  private async start(name: string, args: string[]): Promise<Worker> {
    // startComponent's error already carries the tail of the worker's log.
    const managed = await startComponent(args, join(this.dir, `${name}.log`));
    const worker = { name, managed };
    this.workers.push(worker);
    return worker;
  }

  /** A router with its own SQLite store holding the one circuit it serves, loaded before it reports ready. */
  private async startRouter(name: 'a' | 'b', host: string, circuit: CircuitInput): Promise<Worker> {
    const storePath = join(this.dir, `router-${name}.db`);
    const store = new SqliteStore(storePath);
    try {
      await store.create(circuit);
    } finally {
      await store.close();
    }
    const config: RouterConfigInput = {
      isp: 'bench',
      pop: POP,
      name,
      listen: `${host}:0`,
      store: { kind: 'sqlite', path: storePath },
      statsIntervalMs: 1000,
      storePollMs: 5,
      socketBufferBytes: SOCKET_BUFFER_BYTES,
      registrationTtlMs: 3000,
    };
    const configPath = join(this.dir, `router-${name}.json`);
    // JSON is YAML, which is what the router's config loader reads.
    writeFileSync(configPath, JSON.stringify(config, null, 2));
    return this.start(name === 'a' ? 'routerA' : 'routerB', ['router', '--config', configPath]);
  }

  private send(w: Worker, req: Request): void {
    if (!w.managed.proc.connected) throw new Error(`${w.name} is gone${logTail(w)}`);
    w.managed.proc.send(req);
  }

  /**
   * Resolves with the worker's reply `op` to request `id`; rejects on a `failed`
   * reply, on the worker's exit (with its log) or after `timeoutMs`. Created before
   * the request is sent, so a fast reply is never missed.
   */
  private expect<O extends Reply['op']>(
    w: Worker,
    id: number,
    op: O,
    timeoutMs: number,
  ): Promise<Extract<Reply, { op: O }>> {
    const proc = w.managed.proc;
    const p = new Promise<Extract<Reply, { op: O }>>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        proc.off('message', onMessage);
        proc.off('exit', onExit);
      };
      const onMessage = (m: unknown): void => {
        if (!isReply(m) || m.id !== id) return;
        if (m.op === 'failed') {
          done();
          reject(new Error(`${w.name}: ${m.message}`));
        } else if (hasOp(m, op)) {
          done();
          resolve(m);
        }
      };
      const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
        done();
        reject(new Error(`${w.name} exited (${signal ?? code}) during the benchmark${logTail(w)}`));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${w.name} did not answer ${op} within ${timeoutMs} ms${logTail(w)}`));
      }, timeoutMs);
      proc.on('message', onMessage);
      proc.once('exit', onExit);
    });
    // Awaited later, possibly after it settles: handled here so an early rejection is not
    // "unhandled". The awaiting caller still gets it; one never awaited (an earlier step failed
    // first) is kept and reported with that failure.
    p.catch((err: Error) => this.rejections.push(`${w.name} ${op}: ${err.message.split('\n', 1)[0]}`));
    return p;
  }

  private logsOf(path: Path): string {
    return [...path.relays, this.sink!].map(logTail).join('');
  }
}

function hasOp<O extends Reply['op']>(r: Reply, op: O): r is Extract<Reply, { op: O }> {
  return r.op === op;
}

function addressOf(w: Worker): string {
  const a = w.managed.ready.address;
  if (a === undefined) throw new Error(`${w.name} reported ready without an address${logTail(w)}`);
  return a;
}

/** A single-PoP circuit (ingress == egress), so its router holds exactly one `forward` entry. */
function forwardCircuit(auth: string, next: string, nextAuth: string): CircuitInput {
  return {
    auth,
    owner: 'bench',
    ingressPop: POP,
    egressPop: POP,
    bandwidthMbps: 100_000,
    internalAuth: newAuthenticator(),
    internalRouters: [],
    action: { kind: 'forward', next: { addresses: [next], auth: nextAuth } },
  };
}

function logTail(w: Worker, lines = 15): string {
  let text: string;
  try {
    text = readFileSync(w.managed.logPath, 'utf8').trimEnd();
  } catch (err) {
    if (!isGone(err)) throw err;
    text = '';
  }
  const tail = text ? text.split('\n').slice(-lines).join('\n') : '(empty)';
  return `\n--- ${w.name} log (${w.managed.logPath}) ---\n${tail}`;
}
