/**
 * SLA policing: one byte-based token bucket per circuit, at its bought bandwidth, where its DATA
 * enters the ISP (docs/wire.md, "Policing"). Written as GCRA (the "virtual scheduling" form of a
 * token bucket): the whole state is one integer, the theoretical arrival time `tat` in ns, so a
 * kernel program keeps it in one u64 of a fixed-size map and does integer arithmetic only.
 *
 * Pure: the caller passes the time (monotonic ns); nothing here allocates per packet.
 */

/** The burst when the offer names none: this many milliseconds of traffic at the bought rate... */
export const DEFAULT_BURST_MS = 50;
/**
 * ...but never less than this many bytes: the largest UDP datagram with its ARROW header fits,
 * so any single packet a customer may send can pass a full bucket (and ~43 full-size packets do).
 */
export const MIN_BURST_BYTES = 65_536;
/** Fixed-point scale of the per-byte cost: ns per byte × 2^16. */
export const COST_SHIFT = 16;
/**
 * Cost per byte is capped so that `bytes × cost` stays below 2^53 (exact in a JS number) for any
 * datagram (< 2^16 bytes): rates below ~4 kb/s are policed as 4 kb/s.
 */
export const MAX_NS_PER_BYTE_Q16 = 2 ** 37 - 1;

/** A circuit's policing parameters, fixed when the circuit is compiled into the table. */
export interface PoliceParams {
  /** Nanoseconds per byte at the bought rate, × 2^16, rounded (8000 / Mb/s ns per byte). */
  nsPerByteQ16: number;
  /** The burst as time: how far ahead of now the bucket may be booked, ns (burst bytes × ns per byte). */
  burstNs: number;
}

/** The mutable state: kept per circuit across re-chains, like its counters. */
export interface PoliceState {
  /** Theoretical arrival time, ns: when the bucket would be full again. 0 = full. */
  tat: number;
}

/** Burst in bytes for a circuit of `mbps`: `burstMs` worth of traffic, at least MIN_BURST_BYTES. */
export function burstBytes(mbps: number, burstMs = DEFAULT_BURST_MS): number {
  return Math.max(MIN_BURST_BYTES, Math.ceil((mbps * 1e6 * burstMs) / 8 / 1000));
}

export function policeParams(mbps: number, burst: number): PoliceParams {
  const nsPerByteQ16 = Math.min(
    MAX_NS_PER_BYTE_Q16,
    Math.max(1, Math.round((8000 * 2 ** COST_SHIFT) / mbps)),
  );
  return { nsPerByteQ16, burstNs: Math.floor((burst * nsPerByteQ16) / 2 ** COST_SHIFT) };
}

/** ns a packet of `bytes` costs: rounded up, so rounding never gives a customer more than bought. */
export function costNs(p: PoliceParams, bytes: number): number {
  return Math.ceil((bytes * p.nsPerByteQ16) / 2 ** COST_SHIFT);
}

/**
 * Admits a packet of `bytes` at time `now` (ns, monotonic) or refuses it. A refused packet leaves
 * the state unchanged (it took no tokens), so a sender over the rate gets exactly the rate through.
 */
export function police(p: PoliceParams, s: PoliceState, bytes: number, now: number): boolean {
  const start = s.tat > now ? s.tat : now;
  const tat = start + costNs(p, bytes);
  if (tat - now > p.burstNs) return false;
  s.tat = tat;
  return true;
}
