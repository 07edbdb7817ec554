/**
 * The supervisor's judgement (docs/supervise.md), pure: is a child sick, and how long to wait before
 * starting it again. Crash-only, as the thesis's DN-FD: a sick router is killed, never nursed, and
 * a router that keeps dying is restarted ever more slowly.
 */

export interface SupervisePolicy {
  /** How often a child reports (env ARROW_HEARTBEAT_MS); it is also how often children are judged. */
  heartbeatMs: number;
  /** Heartbeats missed in a row before a child is hung (killed). */
  missed: number;
  /** Event-loop delay a heartbeat may report before the child is stalled (killed). */
  maxLoopLagMs: number;
  /** Resident memory a heartbeat may report before the child is leaking (killed). */
  maxRssMb: number;
  /** How long a started child may take to say it is ready. */
  startTimeoutMs: number;
  backoff: { initialMs: number; maxMs: number; factor: number; resetAfterMs: number };
}

export const DEFAULT_POLICY: SupervisePolicy = {
  heartbeatMs: 500,
  missed: 4,
  maxLoopLagMs: 2000,
  maxRssMb: 2048,
  startTimeoutMs: 20_000,
  backoff: { initialMs: 100, maxMs: 30_000, factor: 2, resetAfterMs: 60_000 },
};

/** What the supervisor knows of a running child. Times are monotonic ms. */
export interface ChildHealth {
  startedAt: number;
  /** When it said it was ready; undefined until then. */
  readyAt: number | undefined;
  /** The last heartbeat's arrival, or undefined before the first. */
  lastBeatAt: number | undefined;
  loopLagMs: number;
  rssBytes: number;
}

export type Sickness =
  | { kind: 'hung'; why: string }
  | { kind: 'stalled'; why: string }
  | { kind: 'leaking'; why: string }
  | { kind: 'not-ready'; why: string };

/** Why the child must be killed now, or undefined when it is healthy. */
export function judge(h: ChildHealth, now: number, p: SupervisePolicy): Sickness | undefined {
  if (h.readyAt === undefined) {
    const waited = now - h.startedAt;
    return waited > p.startTimeoutMs
      ? { kind: 'not-ready', why: `not ready after ${Math.round(waited)} ms` }
      : undefined;
  }
  const silentSince = h.lastBeatAt ?? h.readyAt;
  const silent = now - silentSince;
  if (silent > p.heartbeatMs * p.missed)
    return {
      kind: 'hung',
      why: `no heartbeat for ${Math.round(silent)} ms (limit ${p.heartbeatMs * p.missed})`,
    };
  if (h.loopLagMs > p.maxLoopLagMs)
    return {
      kind: 'stalled',
      why: `event loop delayed ${Math.round(h.loopLagMs)} ms (limit ${p.maxLoopLagMs})`,
    };
  const rssMb = h.rssBytes / 2 ** 20;
  if (rssMb > p.maxRssMb)
    return { kind: 'leaking', why: `resident memory ${Math.round(rssMb)} MB (limit ${p.maxRssMb})` };
  return undefined;
}

/**
 * The wait before the next start: the initial backoff after a child that had run long enough
 * (`resetAfterMs`), else the previous wait times `factor`, at most `maxMs`.
 */
export function nextBackoff(previousMs: number | undefined, ranMs: number, p: SupervisePolicy): number {
  const b = p.backoff;
  if (previousMs === undefined || ranMs >= b.resetAfterMs) return b.initialMs;
  return Math.min(b.maxMs, Math.max(b.initialMs, previousMs * b.factor));
}
