import type { Lab } from './lab.js';

/** A router's dead verdict on a neighbour, as the bench and the demo report it. */
export interface Verdict {
  router: string;
  /** The neighbour declared dead: a lab router's name, `endpoint`, or an address. */
  neighbour: string;
  /** ms after the reference instant (the bench: the kill), wall clock; negative before it. */
  atMs: number;
  moved: number;
  stranded: number;
}

/** Wall-clock ms with sub-ms precision: the clock routers stamp their events with (one host). */
export const wallNow = (): number => performance.timeOrigin + performance.now();

/** What a router sends its parent over IPC for every dead verdict (src/router/main.ts). */
interface NeighbourDeadMessage {
  event: 'neighbour-dead';
  neighbour: string;
  hopsMoved: number;
  hopsStranded: number;
  at: number;
}

function isNeighbourDead(m: unknown): m is NeighbourDeadMessage {
  if (typeof m !== 'object' || m === null) return false;
  const x = m as Record<string, unknown>;
  return (
    x.event === 'neighbour-dead' &&
    typeof x.neighbour === 'string' &&
    typeof x.hopsMoved === 'number' &&
    typeof x.hopsStranded === 'number' &&
    typeof x.at === 'number'
  );
}

/**
 * Collects every router's dead verdicts, as the routers report them over IPC. Verdicts on
 * the endpoint are kept (and named `endpoint`): it is no router and does not answer keepalives.
 */
export class VerdictLog {
  readonly events: (Omit<Verdict, 'atMs'> & { at: number })[] = [];
  private readonly detach: (() => void)[] = [];

  constructor(lab: Lab, endpointAddress: string) {
    const names = new Map(lab.routers.map((r) => [r.address, r.name]));
    names.set(endpointAddress, 'endpoint');
    for (const r of lab.routers) {
      const proc = r.managed?.proc;
      if (!proc) continue;
      const onMessage = (m: unknown): void => {
        if (!isNeighbourDead(m)) return;
        this.events.push({
          router: r.name,
          neighbour: names.get(m.neighbour) ?? m.neighbour,
          at: m.at,
          moved: m.hopsMoved,
          stranded: m.hopsStranded,
        });
      };
      proc.on('message', onMessage);
      this.detach.push(() => proc.off('message', onMessage));
    }
  }

  /** Every verdict so far, stamped in ms relative to `refWallMs` (a `wallNow()` reading), in order. */
  relativeTo(refWallMs: number): Verdict[] {
    return this.events
      .map(({ at, ...d }) => ({ ...d, atMs: Math.round((at - refWallMs) * 10) / 10 }))
      .sort((a, b) => a.atMs - b.atMs);
  }

  close(): void {
    for (const d of this.detach) d();
  }
}
