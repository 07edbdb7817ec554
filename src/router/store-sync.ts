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

/** The store client on the forwarding thread itself. */
class LocalStoreSync implements StoreSync {
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
  private readonly worker: Worker;
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

  constructor(
    opts: StoreSyncOptions,
    private readonly log: Logger,
  ) {
    this.report = rateLimitedReport(log);
    this.worker = new Worker(new URL('./store-worker.js', import.meta.url), {
      workerData: { store: opts.store, isp: opts.isp, pollMs: opts.pollMs },
    });
    this.worker.on('message', (m: FromSync) => this.receive(m));
    this.worker.on('error', (err) => this.fail(new Error(`store thread failed: ${err.message}`)));
    this.worker.on('exit', (code) => {
      this.exited = true;
      if (code !== 0 && !this.closing) this.fail(new Error(`store thread exited with code ${code}`));
    });
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
    this.send({ op: 'register', router, ttlMs });
  }

  async close(): Promise<void> {
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
    switch (m.ev) {
      case 'snapshot':
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
