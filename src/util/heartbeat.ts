import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

/**
 * A daemon's proof of life for whoever supervises it (docs/supervise.md). Both beats run on the
 * daemon's main thread, so a hung or stalled loop stops them: that is the point.
 *
 * - Under `arrow supervise` (env ARROW_HEARTBEAT_MS, an IPC channel): a `heartbeat` message every
 *   interval with the event loop's worst delay since the last one and the resident memory.
 * - Under systemd (env NOTIFY_SOCKET, WATCHDOG_USEC): READY=1 once serving, then WATCHDOG=1 at half
 *   the watchdog interval (sd_notify(3)), so `WatchdogSec=` kills a router whose loop hangs.
 */

/** What a child sends its supervisor. */
export interface HeartbeatMessage {
  event: 'heartbeat';
  /** The event loop's worst delay since the previous heartbeat, ms. */
  loopLagMs: number;
  rssBytes: number;
}

interface NotifyNative {
  notify(socketPath: string, message: string): number;
}

const NOTIFY_ADDON = fileURLToPath(new URL('../../native/arrow-notify.node', import.meta.url));

/** sd_notify(3): false when there is no NOTIFY_SOCKET; throws when the socket refuses. */
export function sdNotify(message: string, env: NodeJS.ProcessEnv = process.env): boolean {
  const socket = env.NOTIFY_SOCKET;
  if (!socket) return false;
  if (!existsSync(NOTIFY_ADDON))
    throw new Error(`NOTIFY_SOCKET is set but ${NOTIFY_ADDON} is not built: run npm run build`);
  const native = createRequire(import.meta.url)(NOTIFY_ADDON) as NotifyNative;
  native.notify(socket, message);
  return true;
}

/** Starts the beats the environment asks for; returns a stop function. Errors go to `onError`. */
export function startHeartbeat(
  onError: (err: Error) => void,
  env: NodeJS.ProcessEnv = process.env,
): () => void {
  const timers: NodeJS.Timeout[] = [];
  const everyMs = Number(env.ARROW_HEARTBEAT_MS);
  if (process.send && Number.isFinite(everyMs) && everyMs > 0) {
    const lag = monitorEventLoopDelay({ resolution: 10 });
    lag.enable();
    const beat = (): void => {
      const msg: HeartbeatMessage = {
        event: 'heartbeat',
        loopLagMs: lag.count > 0 ? lag.max / 1e6 : 0,
        rssBytes: process.memoryUsage.rss(),
      };
      lag.reset();
      process.send?.(msg);
    };
    beat();
    const t = setInterval(beat, everyMs);
    t.unref();
    timers.push(t);
  }
  if (env.NOTIFY_SOCKET) {
    const notify = (message: string): void => {
      try {
        sdNotify(message, env);
      } catch (err) {
        onError(err as Error);
      }
    };
    notify('READY=1');
    const usec = Number(env.WATCHDOG_USEC);
    const forUs = env.WATCHDOG_PID === undefined || Number(env.WATCHDOG_PID) === process.pid;
    if (Number.isFinite(usec) && usec > 0 && forUs) {
      const t = setInterval(() => notify('WATCHDOG=1'), Math.max(1, usec / 2000));
      t.unref();
      timers.push(t);
    }
  }
  return () => {
    for (const t of timers) clearInterval(t);
    if (env.NOTIFY_SOCKET) {
      try {
        sdNotify('STOPPING=1', env);
      } catch (err) {
        onError(err as Error);
      }
    }
  };
}
