import { Worker } from 'node:worker_threads';
import type { LogLevel } from '../api/admin.js';
import type { RouterStats } from '../store/circuit.js';
import type { Logger } from '../util/log.js';
import type { AdminData, FromAdmin, ToAdmin } from './admin-worker.js';

/**
 * The forwarding thread's handle on its admin thread (admin-worker.ts): it posts each stats
 * snapshot there and takes log-level changes back. A dead admin thread is logged and leaves the
 * router forwarding: metrics are not worth a packet.
 */
export class RouterAdmin {
  private constructor(
    private readonly worker: Worker,
    /** The admin API's base URL, e.g. http://127.0.0.1:9180. */
    readonly url: string,
  ) {}

  /** Starts the thread and waits for its server to listen; rejects with why it could not. */
  static start(data: AdminData, log: Logger, onLogLevel: (level: LogLevel) => void): Promise<RouterAdmin> {
    const worker = new Worker(new URL('./admin-worker.js', import.meta.url), { workerData: data });
    return new Promise((resolve, reject) => {
      let started: RouterAdmin | undefined;
      worker.on('message', (m: FromAdmin) => {
        if (m.ev === 'listening') {
          started = new RouterAdmin(worker, m.url);
          resolve(started);
        } else if (m.ev === 'failed') {
          void worker.terminate();
          reject(new Error(`admin API on ${data.admin.listen}: ${m.message}`));
        } else onLogLevel(m.level);
      });
      worker.on('error', (err) => {
        log.error({ err: err.message }, 'admin thread failed: no /metrics until the router restarts');
        if (!started) reject(err);
      });
      worker.unref();
    });
  }

  publish(stats: RouterStats): void {
    this.worker.postMessage({ op: 'stats', stats } satisfies ToAdmin);
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
