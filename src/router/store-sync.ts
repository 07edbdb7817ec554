import { Worker } from 'node:worker_threads';
import type { ChangeEvent, RouterStats, Snapshot } from '../store/circuit.js';
import type { StoreConfig } from '../store/config.js';
import { openStore } from '../store/open.js';
import type { ActiveChange, CircuitStore, Registration, RouterRegistration } from '../store/store.js';
import type { Logger } from '../util/log.js';
import type { FromSync, ToSync } from './store-worker.js';

/** How the router reaches its ISP's store (docs/operations.md, "Threads"). */
export interface StoreSyncOptions {
  store: StoreConfig;
  isp: string;
  pollMs: number;
  /** Store work on its own thread (default), or on the forwarding thread (memory stores, comparisons). */
  thread: boolean;
  /** Tests only: the first store thread blocks this long after posting its snapshot (a hang). */
  faultHangMs?: number;
}

/**
 * The router's side of its store: a consistent snapshot, then every change after it, and
 * the writes a router makes (its stats, its registration, failover's repair records).
 * Two implementations: on a worker thread, so the forwarding thread never runs SQLite,
 * etcd decoding or the stats JSON; or in-thread, for the memory store (which lives in
 * this process) and for measuring the difference.
 */
export interface StoreSync {
  /** Opens the store and reads the snapshot, waiting for a store that is down. */
  start(): Promise<Snapshot>;
  /** Follows changes after the snapshot; `onChanges` gets them in order, a batch at a time. */
  follow(onChanges: (events: ChangeEvent[]) => void): void;
  setActive(changes: ActiveChange[]): Promise<void>;
  /** Publishes the router's counters; serialized and written off the forwarding thread when on a worker. */
  putRouterStats(stats: RouterStats): Promise<void>;
  registerRouter(router: RouterRegistration, ttlMs: number): void;
  /** Errors the store client met in background work, counted. */
  readonly backgroundErrors: number;
  /** Store threads replaced because they stopped answering (0 without a store thread). */
  readonly restarts: number;
  close(): Promise<void>;
}

export function openStoreSync(opts: StoreSyncOptions, log: Logger): StoreSync {
  return opts.thread && opts.store.kind !== 'memory'
    ? new WorkerStoreSync(opts, log)
    : new LocalStoreSync(opts, log);
}

/** What both implementations do when the store is down at start: wait, saying so. */
function unavailableAtStart(log: Logger, message: string, retryMs: number): void {
  log.warn({ err: message, retryMs }, 'circuit store unavailable at start; waiting');
}

/**
 * Logs store background errors without flooding: a poll that fails every 5 ms logs once a
 * second, with how many were folded in. Every one is counted.
 */
export function rateLimitedReport(log: Logger): (err: Error, context: string) => void {
  let lastAt = 0;
  let folded = 0;
  return (err, context) => {
    const now = Date.now();
    if (now - lastAt < 1000) {
      folded++;
      return;
    }
    lastAt = now;
    log.warn({ err: err.message, context, suppressed: folded }, 'circuit store background error');
    folded = 0;
  };
}

function describeStore(s: StoreConfig): string {
  return s.kind === 'sqlite'
    ? `sqlite ${s.path}`
    : s.kind === 'etcd'
      ? `etcd ${s.endpoints.join(',')}`
      : s.kind;
}

/** How often the forwarding thread pings its store thread. */
const STORE_THREAD_PING_MS = 1000;
/** A store thread silent this long (no answer to pings, nothing else) is replaced. */
export const STORE_THREAD_STALL_MS = 5000;

/** The store client on the forwarding thread itself. */
class LocalStoreSync implements StoreSync {
  readonly restarts = 0;
  private store: CircuitStore | undefined;
  private revision = 0;
  private registration: Registration | undefined;
  private watcher: { close(): void } | undefined;

  constructor(
    private readonly opts: StoreSyncOptions,
    private readonly log: Logger,
  ) {}

  get backgroundErrors(): number {
    return this.store?.background.count ?? 0;
  }

  async start(): Promise<Snapshot> {
    this.store = await openOrSay(this.opts);
    this.store.background.report = rateLimitedReport(this.log);
    const snap = await snapshotWaiting(this.store, (m, ms) => unavailableAtStart(this.log, m, ms));
    this.revision = snap.revision;
    return snap;
  }

  follow(onChanges: (events: ChangeEvent[]) => void): void {
    this.watcher = this.store!.watch(this.revision, (e) => onChanges([e]));
  }

  setActive(changes: ActiveChange[]): Promise<void> {
    return this.store!.setActive(changes);
  }

  putRouterStats(stats: RouterStats): Promise<void> {
    return this.store!.putRouterStats(stats);
  }

  registerRouter(router: RouterRegistration, ttlMs: number): void {
    this.registration = this.store!.registerRouter(router, ttlMs);
  }

  async close(): Promise<void> {
    this.watcher?.close();
    await this.registration?.close().catch((err: unknown) => this.withdrawFailed(err));
    await this.store?.close();
  }

  private withdrawFailed(err: unknown): void {
    // The registration lapses within its TTL anyway; say why it was not withdrawn at once.
    this.log.warn({ err: (err as Error).message }, 'router registration not withdrawn; it expires by TTL');
  }
}

export async function openOrSay(
  opts: Pick<StoreSyncOptions, 'store' | 'isp' | 'pollMs'>,
): Promise<CircuitStore> {
  try {
    // Routers never block their loop waiting for a write lock (busy_timeout 0): a skipped stats flush is retried.
    return await openStore(opts.store, { busyTimeoutMs: 0, pollMs: opts.pollMs, isp: opts.isp });
  } catch (err) {
    throw new Error(
      `cannot open the circuit store (${describeStore(opts.store)}): ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

/** A store that is down at start is waited for: forwarding with an empty table would drop everything. */
export async function snapshotWaiting(
  store: CircuitStore,
  onWait: (message: string, retryMs: number) => void,
): Promise<Snapshot> {
  for (let delay = 100; ; delay = Math.min(delay * 2, 2000)) {
    try {
      return await store.snapshot();
    } catch (err) {
      onWait((err as Error).message, delay);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/**
 * The store client on a worker thread (src/router/store-worker.ts). The forwarding thread
 * only receives change batches (structured clone) and posts its stats object; SQLite
 * polling and writes, etcd's gRPC stream and every JSON encode and decode of records run
 * on the worker.
 */
class WorkerStoreSync implements StoreSync {
  private worker!: Worker;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  private onChanges: ((events: ChangeEvent[]) => void) | undefined;
  /** Changes that arrived before `follow` (between the snapshot and the table load). */
  private early: ChangeEvent[] = [];
  private snapshot: { resolve: (s: Snapshot) => void; reject: (e: Error) => void } | undefined;
  private errors = 0;
  private exited = false;
  private closing = false;
  private readonly report: (err: Error, context: string) => void;
  /** When the store thread last said anything (ms since the epoch). */
  private heardAt = Date.now();
  private checkedAt = Date.now();
  private readonly liveness: NodeJS.Timeout;
  private started = false;
  private registration: { router: RouterRegistration; ttlMs: number } | undefined;
  /** Store threads replaced because they stopped answering. */
  restarts = 0;

  constructor(
    private readonly opts: StoreSyncOptions,
    private readonly log: Logger,
  ) {
    this.report = rateLimitedReport(log);
    this.spawn();
    // Crash-only, as for routers (docs/supervise.md): a store thread that answers nothing for
    // STORE_THREAD_STALL_MS (a hang seen in clean runs, stuck while loading modules) is replaced,
    // and the new one's snapshot replaces the table. Its pings come from this thread's timer.
    this.liveness = setInterval(() => this.checkLiveness(), STORE_THREAD_PING_MS);
    this.liveness.unref();
  }

  private spawn(): void {
    const worker = new Worker(new URL('./store-worker.js', import.meta.url), {
      workerData: {
        store: this.opts.store,
        isp: this.opts.isp,
        pollMs: this.opts.pollMs,
        // Only the first thread hangs: its replacement must work.
        faultHangMs: this.restarts === 0 ? this.opts.faultHangMs : undefined,
      },
    });
    this.worker = worker;
    this.heardAt = Date.now();
    this.exited = false;
    // A replaced thread's last words are not this store's.
    worker.on('message', (m: FromSync) => worker === this.worker && this.receive(m));
    worker.on(
      'error',
      (err) => worker === this.worker && this.fail(new Error(`store thread failed: ${err.message}`)),
    );
    worker.on('exit', (code) => {
      if (worker !== this.worker) return;
      this.exited = true;
      if (code !== 0 && !this.closing) this.fail(new Error(`store thread exited with code ${code}`));
    });
  }

  private checkLiveness(): void {
    const now = Date.now();
    // This thread was itself stopped (SIGSTOP) or stalled: the store thread could not have been
    // heard meanwhile, so its silence counts from now.
    if (now - this.checkedAt > 2 * STORE_THREAD_PING_MS) this.heardAt = now;
    this.checkedAt = now;
    if (this.closing || this.exited) return;
    const silentMs = now - this.heardAt;
    if (silentMs < STORE_THREAD_STALL_MS) {
      this.send({ op: 'ping' });
      return;
    }
    this.restarts++;
    this.log.error(
      { silentMs, restarts: this.restarts },
      'circuit store thread stopped answering; replacing it (the table reloads from a new snapshot)',
    );
    const old = this.worker;
    void old.terminate();
    for (const p of this.pending.values()) p.reject(new Error('the store thread was replaced'));
    this.pending.clear();
    this.spawn();
    this.send({ op: 'start' });
    if (this.registration) this.send({ op: 'register', ...this.registration });
  }

  get backgroundErrors(): number {
    return this.errors;
  }

  start(): Promise<Snapshot> {
    return new Promise((resolve, reject) => {
      this.snapshot = { resolve, reject };
      this.send({ op: 'start' });
    });
  }

  /** The snapshot of a replacement thread: the table is replaced by it, as after a compaction. */
  private restarted(snap: Snapshot): void {
    const event: ChangeEvent = { type: 'resync', revision: snap.revision, circuits: snap.circuits };
    if (this.onChanges) this.onChanges([event]);
    else this.early.push(event);
  }

  follow(onChanges: (events: ChangeEvent[]) => void): void {
    this.onChanges = onChanges;
    if (this.early.length > 0) onChanges(this.early.splice(0));
  }

  setActive(changes: ActiveChange[]): Promise<void> {
    return this.call({ op: 'setActive', changes });
  }

  putRouterStats(stats: RouterStats): Promise<void> {
    return this.call({ op: 'stats', stats });
  }

  registerRouter(router: RouterRegistration, ttlMs: number): void {
    this.registration = { router, ttlMs };
    this.send({ op: 'register', router, ttlMs });
  }

  async close(): Promise<void> {
    clearInterval(this.liveness);
    if (this.exited) return;
    await this.call({ op: 'close' }).catch((err: Error) =>
      this.log.warn({ err: err.message }, 'store thread did not close cleanly'),
    );
    this.closing = true;
    await this.worker.terminate();
  }

  private call(m: ToSyncWithoutId): Promise<void> {
    if (this.exited) return Promise.reject(new Error('store thread has exited'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.send({ ...m, id } as ToSync);
    });
  }

  private send(m: ToSync): void {
    this.worker.postMessage(m);
  }

  private receive(m: FromSync): void {
    this.heardAt = Date.now();
    switch (m.ev) {
      case 'pong':
        break;
      case 'snapshot':
        if (this.started) this.restarted({ revision: m.revision, circuits: m.circuits });
        this.started = true;
        this.snapshot?.resolve({ revision: m.revision, circuits: m.circuits });
        this.snapshot = undefined;
        break;
      case 'changes':
        if (this.onChanges) this.onChanges(m.events);
        else this.early.push(...m.events);
        break;
      case 'reply': {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (m.error === undefined) p?.resolve();
        else p?.reject(Object.assign(new Error(m.error), { name: m.errorName ?? 'Error' }));
        break;
      }
      case 'background':
        this.errors = m.count;
        this.report(new Error(m.message), m.context);
        break;
      case 'waiting':
        unavailableAtStart(this.log, m.message, m.retryMs);
        break;
      case 'fatal':
        this.fail(new Error(m.message));
        break;
    }
  }

  private fail(err: Error): void {
    if (this.snapshot) {
      this.snapshot.reject(err);
      this.snapshot = undefined;
      return;
    }
    // After start, the forwarding table stands on its own: keep forwarding, say loudly that it is frozen.
    this.log.error(
      { err: err.message },
      'circuit store thread failed; the table no longer follows the store',
    );
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}

type ToSyncWithoutId = ToSync extends infer T ? (T extends { id: number } ? Omit<T, 'id'> : never) : never;
