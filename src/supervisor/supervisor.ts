import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { HeartbeatMessage } from '../util/heartbeat.js';
import type { ReadyMessage } from '../util/ready.js';
import { judge, nextBackoff, type ChildHealth, type SupervisePolicy } from './policy.js';

/** This build's CLI: children are `arrow router --config FILE`, started as `arrow supervise` was. */
const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));

export interface ChildSpec {
  /** A name for logs and counters (the router's config path by default). */
  name: string;
  /** Arguments after `arrow`, e.g. ['router', '--config', 'r1.yaml']. */
  args: string[];
}

/** Everything the supervisor does, one event each; `arrow supervise` prints them as JSON lines. */
export type SuperviseEvent =
  | { event: 'started'; child: string; pid: number; attempt: number }
  | { event: 'ready'; child: string; pid: number; address?: string; afterMs: number }
  | { event: 'killed'; child: string; pid: number; reason: string; why: string }
  | { event: 'exited'; child: string; pid: number; code: number | null; signal: string | null; ranMs: number }
  | { event: 'restarting'; child: string; inMs: number; attempt: number };

/** One child as the detector sees it. */
export interface ChildView {
  name: string;
  pid: number | undefined;
  /** Running and said it is ready. */
  ready: boolean;
  attempt: number;
  rssBytes: number;
  loopLagMs: number;
  /** The wait before its next start, while it is down. */
  backoffMs: number | undefined;
}

export interface SuperviseCounters {
  starts: number;
  restarts: number;
  /** Kills by why: hung (no heartbeat), stalled (event loop), leaking (memory), not-ready. */
  kills: Record<string, number>;
  /** Exits the supervisor did not cause. */
  crashes: number;
}

interface Child {
  spec: ChildSpec;
  proc: ChildProcess | undefined;
  health: ChildHealth;
  attempt: number;
  backoffMs: number | undefined;
  restartTimer: NodeJS.Timeout | undefined;
  /** The supervisor killed it (a verdict or a stop): its exit is not a crash. */
  killing: boolean;
}

/**
 * The decapsulation nodes' failure detector and restarter (the thesis's DN-FD), for any Arrow
 * daemon: it starts each child with an IPC channel and ARROW_HEARTBEAT_MS, judges its heartbeats
 * (src/supervisor/policy.ts), SIGKILLs a sick one (hung, stalled, leaking, never ready), and starts
 * a dead one again after an exponential backoff. Crash-only: nothing is repaired in place.
 */
export class Supervisor extends EventEmitter<{ event: [SuperviseEvent] }> {
  readonly counters: SuperviseCounters = { starts: 0, restarts: 0, kills: {}, crashes: 0 };
  private readonly children: Child[];
  private timer: NodeJS.Timeout | undefined;
  private stopping = false;
  private readonly clock = (): number => performance.now();

  constructor(
    specs: ChildSpec[],
    private readonly policy: SupervisePolicy,
  ) {
    super();
    this.children = specs.map((spec) => ({
      spec,
      proc: undefined,
      health: { startedAt: 0, readyAt: undefined, lastBeatAt: undefined, loopLagMs: 0, rssBytes: 0 },
      attempt: 0,
      backoffMs: undefined,
      restartTimer: undefined,
      killing: false,
    }));
  }

  start(): void {
    for (const c of this.children) this.spawn(c);
    this.timer = setInterval(() => this.check(), Math.max(10, this.policy.heartbeatMs / 2));
  }

  /** Children's pids now (undefined while one waits to restart). */
  pids(): Record<string, number | undefined> {
    return Object.fromEntries(this.children.map((c) => [c.spec.name, c.proc?.pid]));
  }

  /** Each child as the detector sees it now (for /metrics and /status). */
  snapshot(): ChildView[] {
    return this.children.map((c) => ({
      name: c.spec.name,
      pid: c.proc?.pid,
      ready: c.proc !== undefined && c.health.readyAt !== undefined,
      attempt: c.attempt,
      rssBytes: c.health.rssBytes,
      loopLagMs: c.health.loopLagMs,
      backoffMs: c.backoffMs,
    }));
  }

  /** Stops every child (SIGTERM, SIGKILL after `graceMs`) and restarts nothing. */
  async stop(graceMs = 3000): Promise<void> {
    this.stopping = true;
    clearInterval(this.timer);
    await Promise.all(
      this.children.map(async (c) => {
        clearTimeout(c.restartTimer);
        const proc = c.proc;
        if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
        c.killing = true;
        const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(t);
      }),
    );
  }

  private spawn(c: Child): void {
    c.attempt++;
    c.killing = false;
    const proc = spawn(process.execPath, [CLI, ...c.spec.args], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, ARROW_HEARTBEAT_MS: String(this.policy.heartbeatMs) },
    });
    c.proc = proc;
    const now = this.clock();
    c.health = { startedAt: now, readyAt: undefined, lastBeatAt: undefined, loopLagMs: 0, rssBytes: 0 };
    this.counters.starts++;
    if (c.attempt > 1) this.counters.restarts++;
    const pid = proc.pid ?? -1;
    this.emit('event', { event: 'started', child: c.spec.name, pid, attempt: c.attempt });
    proc.on('message', (m: ReadyMessage | HeartbeatMessage) => {
      if (c.proc !== proc) return;
      const at = this.clock();
      if (m.event === 'ready') {
        c.health.readyAt = at;
        this.emit('event', {
          event: 'ready',
          child: c.spec.name,
          pid,
          ...(m.address ? { address: m.address } : {}),
          afterMs: Math.round(at - c.health.startedAt),
        });
      } else if (m.event === 'heartbeat') {
        c.health.lastBeatAt = at;
        c.health.loopLagMs = m.loopLagMs;
        c.health.rssBytes = m.rssBytes;
      }
    });
    proc.once('error', (err) => {
      // A spawn failure (no node binary?) exits too; count it as a crash there.
      this.emit('event', {
        event: 'exited',
        child: c.spec.name,
        pid,
        code: null,
        signal: err.message,
        ranMs: 0,
      });
    });
    proc.once('exit', (code, signal) => this.exited(c, proc, code, signal));
  }

  private exited(c: Child, proc: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (c.proc !== proc) return;
    const ranMs = this.clock() - c.health.startedAt;
    c.proc = undefined;
    if (!c.killing) this.counters.crashes++;
    this.emit('event', {
      event: 'exited',
      child: c.spec.name,
      pid: proc.pid ?? -1,
      code,
      signal,
      ranMs: Math.round(ranMs),
    });
    if (this.stopping) return;
    c.backoffMs = nextBackoff(c.backoffMs, ranMs, this.policy);
    this.emit('event', {
      event: 'restarting',
      child: c.spec.name,
      inMs: c.backoffMs,
      attempt: c.attempt + 1,
    });
    c.restartTimer = setTimeout(() => {
      if (!this.stopping) this.spawn(c);
    }, c.backoffMs);
  }

  private check(): void {
    const now = this.clock();
    for (const c of this.children) {
      const proc = c.proc;
      if (!proc || c.killing) continue;
      const sick = judge(c.health, now, this.policy);
      if (!sick) continue;
      c.killing = true;
      this.counters.kills[sick.kind] = (this.counters.kills[sick.kind] ?? 0) + 1;
      this.emit('event', {
        event: 'killed',
        child: c.spec.name,
        pid: proc.pid ?? -1,
        reason: sick.kind,
        why: sick.why,
      });
      // SIGKILL: a hung (even SIGSTOPped) process cannot run a handler, and crash-only means no goodbye.
      proc.kill('SIGKILL');
    }
  }
}
