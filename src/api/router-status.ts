/**
 * The parts of a router's admin `/status` detail that other programs read (the dashboard, `arrow
 * status`): plain types, so the router's admin thread, which loads no schema library, can use them.
 */

/** A router's verdict on a neighbour, as it was made (docs/failover.md). */
export interface RouterVerdict {
  /** `dead`: declared dead and its hops moved; `alive`: a dead neighbour answered again. */
  kind: 'dead' | 'alive';
  /** The neighbour's address, `host:port`. */
  neighbour: string;
  /** What found it dead (dead verdicts): liveness keepalives, or a customer's probe. */
  by?: 'liveness' | 'probe';
  hopsMoved: number;
  hopsStranded: number;
  /** Wall-clock ms since the epoch. */
  at: number;
}

/** What the router knows of one neighbour now. */
export interface RouterLink {
  neighbour: string;
  rttMs: number | null;
  dead: boolean;
}

/** How many recent verdicts `/status` keeps: enough for a failover, bounded for a flapping neighbour. */
export const RECENT_VERDICTS = 64;
/** How many neighbours `/status` lists (a router may have thousands; the totals count them all). */
export const LISTED_LINKS = 256;
