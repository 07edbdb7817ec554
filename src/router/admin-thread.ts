import { createServer } from 'node:net';
import { Worker } from 'node:worker_threads';
import type { LogLevel } from '../api/admin.js';
import type { RouterVerdict } from '../api/router-status.js';
import type { RouterStats } from '../store/circuit.js';
import type { Logger } from '../util/log.js';
import { mustParseAddress } from '../wire/address.js';
import type { AdminData, FromAdmin, ToAdmin } from './admin-worker.js';

/**
 * The forwarding thread's handle on its admin thread (admin-worker.ts): it posts each stats
 * snapshot there and takes log-level changes back. The router never waits for it: its port is
 * chosen here (when the config says 0), so the URL is known at once, and the thread comes up in
 * the background; one that cannot listen or dies is logged and leaves the router forwarding
 * (metrics are not worth a packet, and a loaded host once took 17 s to build its HTTP server).
 */
export class RouterAdmin {
  private constructor(
    private readonly worker: Worker,
    /** The admin API's base URL, e.g. http://127.0.0.1:9180. */
    readonly url: string,
  ) {}

  static async start(
    data: AdminData,
    log: Logger,
    onLogLevel: (level: LogLevel) => void,
  ): Promise<RouterAdmin> {
    const at = mustParseAddress(data.admin.listen, { bind: true });
    const port =
      at.port === 0
        ? await freePort(at.host).catch((err: Error) => {
            throw new Error(`admin API on ${data.admin.listen}: ${err.message}`);
          })
        : at.port;
    const listen = at.host.includes(':') ? `[${at.host}]:${port}` : `${at.host}:${port}`;
    const worker = new Worker(new URL('./admin-worker.js', import.meta.url), {
      workerData: { ...data, admin: { ...data.admin, listen } } satisfies AdminData,
    });
    worker.on('message', (m: FromAdmin) => {
      // 'listening' is logged by the admin thread itself.
      if (m.ev === 'failed') log.error({ listen, err: m.message }, 'admin API could not start: no /metrics');
      else if (m.ev === 'log-level') onLogLevel(m.level);
    });
    worker.on('error', (err) =>
      log.error({ err: err.message }, 'admin thread failed: no /metrics until the router restarts'),
    );
    worker.unref();
    return new RouterAdmin(worker, `http://${listen}`);
  }

  publish(stats: RouterStats): void {
    this.worker.postMessage({ op: 'stats', stats } satisfies ToAdmin);
  }

  /** A verdict as it is made: the admin thread keeps the recent ones for `/status`. */
  verdict(v: RouterVerdict): void {
    this.worker.postMessage({ op: 'verdict', verdict: v } satisfies ToAdmin);
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}

/** A port the kernel says is free on `host` now (bound and released: the admin thread binds it next). */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const a = s.address();
      s.close(() => (a !== null && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}
