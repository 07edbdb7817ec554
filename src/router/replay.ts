/**
 * The anti-replay window of one circuit (RFC 6479, as IPsec and WireGuard keep it): a ring of
 * REPLAY_BLOCKS 32-bit words over the highest sequence accepted so far. A sequence is fresh when
 * it is above the highest, or within the last REPLAY_WINDOW below it and not yet seen. Fixed
 * size, no allocation and loops bounded by REPLAY_BLOCKS, so a kernel program keeps it in a map
 * value. Sequences are 64-bit: they are handled as two 32-bit halves, exactly, with no BigInt.
 *
 * Only a packet whose tag verified may `accept` (mark) its sequence: a forged packet must not
 * move the window, or it could push honest packets out of it.
 */

export const REPLAY_BLOCKS = 64;
/** Bits in the ring. */
export const REPLAY_BITS = REPLAY_BLOCKS * 32;
/** How far below the highest sequence a packet may arrive and still be accepted (once). */
export const REPLAY_WINDOW = REPLAY_BITS - 32;

export interface ReplayWindow {
  /** Highest sequence accepted, as halves; meaningful once `started`. */
  topHi: number;
  topLo: number;
  started: boolean;
  bits: Uint32Array;
}

export function newReplayWindow(): ReplayWindow {
  return { topHi: 0, topLo: 0, started: false, bits: new Uint32Array(REPLAY_BLOCKS) };
}

/** `a - b` for a >= b (64-bit, as halves), capped at 2^33: anything that large is far outside the window. */
function gap(aHi: number, aLo: number, bHi: number, bLo: number): number {
  if (aHi === bHi) return aLo - bLo;
  if (aHi === bHi + 1) return aLo + 0x1_0000_0000 - bLo;
  return 0x2_0000_0000;
}

function newer(w: ReplayWindow, hi: number, lo: number): boolean {
  return hi > w.topHi || (hi === w.topHi && lo > w.topLo);
}

/** Whether `seq` (halves, unsigned) may be accepted: not seen, not too old. Changes nothing. */
export function replayFresh(w: ReplayWindow, hi: number, lo: number): boolean {
  if (!w.started || newer(w, hi, lo)) return true;
  if (gap(w.topHi, w.topLo, hi, lo) >= REPLAY_WINDOW) return false;
  return (w.bits[(lo >>> 5) & (REPLAY_BLOCKS - 1)]! & (1 << (lo & 31))) === 0;
}

/** Marks `seq` seen, sliding the window up when it is the highest yet. Call after `replayFresh` and a good tag. */
export function replayAccept(w: ReplayWindow, hi: number, lo: number): void {
  if (!w.started) {
    w.bits.fill(0);
  } else if (newer(w, hi, lo)) {
    // Clear the blocks the top moves past: they now stand for sequences not seen yet.
    const ahead = gap(hi, lo, w.topHi, w.topLo);
    const blocks = ahead >= REPLAY_BITS ? REPLAY_BLOCKS : ((lo >>> 5) - (w.topLo >>> 5)) & 0x7ff_ffff;
    const from = (w.topLo >>> 5) & (REPLAY_BLOCKS - 1);
    for (let i = 1; i <= blocks && i <= REPLAY_BLOCKS; i++) w.bits[(from + i) & (REPLAY_BLOCKS - 1)] = 0;
  }
  if (!w.started || newer(w, hi, lo)) {
    w.topHi = hi;
    w.topLo = lo;
    w.started = true;
  }
  const block = (lo >>> 5) & (REPLAY_BLOCKS - 1);
  w.bits[block] = w.bits[block]! | (1 << (lo & 31));
}
