import { parentPort, workerData } from 'node:worker_threads';
import type { ChangeEvent, Circuit, RouterStats } from '../store/circuit.js';
import type { StoreConfig } from '../store/config.js';
import type { ActiveChange, CircuitStore, Registration, RouterRegistration } from '../store/store.js';
import { openOrSay, snapshotWaiting } from './store-sync.js';

/** Forwarding thread → store thread. Calls with an `id` are answered by a `reply`. */
export type ToSync =
  | { op: 'start' }
  | { op: 'setActive'; id: number; changes: ActiveChange[] }
  | { op: 'stats'; id: number; stats: RouterStats }
  | { op: 'register'; router: RouterRegistration; ttlMs: number }
  | { op: 'close'; id: number }
  /** Liveness: answered with `pong` at once (a hung store thread is restarted, store-sync.ts). */
  | { op: 'ping' };

/** Store thread → forwarding thread. */
export type FromSync =
  | { ev: 'snapshot'; revision: number; circuits: Circuit[] }
  | { ev: 'changes'; events: ChangeEvent[] }
  | { ev: 'reply'; id: number; error?: string; errorName?: string }
  | { ev: 'background'; count: number; context: string; message: string }
  | { ev: 'waiting'; message: string; retryMs: number }
  | { ev: 'fatal'; message: string }
  | { ev: 'pong' };

interface SyncData {
  store: StoreConfig;
  isp: string;
  pollMs: number;
  faultHangMs?: number;
}

/**
 * The router's store thread: owns the store connection (SQLite polling, etcd's watch stream),
 * reads the snapshot, follows changes and posts them to the forwarding thread in batches, and
 * serializes and writes the router's stats, registration and repair records.
 */
async function main(): Promise<void> {
  const port = parentPort!;
  const data = workerData as SyncData;
  const post = (m: FromSync): void => port.postMessage(m);
  let store: CircuitStore | undefined;
  let registration: Registration | undefined;
  let pending: ChangeEvent[] = [];

  // One message per poll turn (up to a chunk of changes), not one per change.
  const flush = (): void => {
    const events = pending;
    pending = [];
    if (events.length > 0) post({ ev: 'changes', events });
  };

  const answer = (id: number, work: Promise<unknown>): void =>
    void work.then(
      () => post({ ev: 'reply', id }),
      (err: Error) => post({ ev: 'reply', id, error: err.message, errorName: err.name }),
    );

  port.on('message', (m: ToSync) => {
    switch (m.op) {
      case 'start':
        void (async () => {
          try {
            store = await openOrSay(data);
          } catch (err) {
            return post({ ev: 'fatal', message: (err as Error).message });
          }
          store.background.report = (err, context) =>
            post({ ev: 'background', count: store!.background.count, context, message: err.message });
          const snap = await snapshotWaiting(store, (message, retryMs) =>
            post({ ev: 'waiting', message, retryMs }),
          );
          post({ ev: 'snapshot', revision: snap.revision, circuits: snap.circuits });
          // Tests only (StoreSyncOptions.faultHangMs): a thread that stops answering.
          if (data.faultHangMs)
            Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, data.faultHangMs);
          store.watch(snap.revision, (e) => {
            if (pending.length === 0) queueMicrotask(flush);
            pending.push(e);
          });
        })();
        break;
      case 'setActive':
        answer(m.id, store ? store.setActive(m.changes) : Promise.reject(new Error('store not open')));
        break;
      case 'stats':
        answer(m.id, store ? store.putRouterStats(m.stats) : Promise.reject(new Error('store not open')));
        break;
      case 'register':
        registration = store?.registerRouter(m.router, m.ttlMs);
        break;
      case 'ping':
        post({ ev: 'pong' });
        break;
      case 'close':
        // The forwarding thread terminates this thread once answered.
        answer(
          m.id,
          (async () => {
            await registration?.close();
            await store?.close();
          })(),
        );
        break;
    }
  });
}

void main();
