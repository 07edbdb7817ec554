/**
 * How a daemon started by a supervisor (the lab, a test, a bench) says it is serving: a message over
 * the IPC channel, and exit when the parent goes away. Daemons import this, never the lab.
 */

/** What a component tells its parent over IPC once it is serving. */
export interface ReadyMessage {
  event: 'ready';
  address?: string;
  url?: string;
  /** The daemon's admin API (/metrics, /status, /log/level), docs/operations.md. */
  admin?: string;
  /** A router's data plane: `kernel` or `node`, and why (src/router/dataplane-mode.ts). */
  dataplane?: { mode: 'kernel' | 'node'; reason: string; interface?: string; attach?: string };
}

/** In a component process: tell the parent we are serving, and exit when the parent goes away. */
export function announceReady(msg: Omit<ReadyMessage, 'event'>, shutdown: () => Promise<void>): void {
  if (!process.send) return;
  process.send({ event: 'ready', ...msg });
  process.once('disconnect', () => void shutdown());
}
