import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { SIP_KEY_LENGTH, siphash24, sipKey, type SipKey } from '../wire/siphash.js';

/**
 * Spreading over ingress points (Phalanx's "mailboxes", ARROW §3.5; docs/services.md, "DoS
 * protection"): each DATA packet goes through one of K ingress circuits, chosen by a keyed PRF of
 * its sequence number, so an attacker who does not hold the key cannot tell which ingress the next
 * packet takes and must flood all of them at once.
 *
 * The PRF is SipHash-2-4 (the router's tag function, src/wire/siphash.ts) under a 128-bit spread
 * key, over the sequence number as 8 little-endian bytes; its low 32 bits pick one of the ingress
 * points in the sequence. Pure: no I/O, no allocation per pick.
 */
export class SpreadSequence {
  private readonly key: SipKey;
  private readonly input = Buffer.alloc(8);
  private readonly output = new Uint8Array(8);

  constructor(key: Uint8Array) {
    if (key.length !== SIP_KEY_LENGTH) throw new Error(`a spread key is ${SIP_KEY_LENGTH} bytes`);
    this.key = sipKey(key);
  }

  /** The PRF's 32-bit value for sequence number `seq`. */
  prf(seq: bigint): number {
    this.input.writeBigUInt64LE(BigInt.asUintN(64, seq));
    siphash24(this.key, this.input, 0, 8, this.input, 0, 0, this.output, 0);
    const o = this.output;
    return (o[0]! | (o[1]! << 8) | (o[2]! << 16) | (o[3]! << 24)) >>> 0;
  }

  /**
   * The ingress point for packet `seq`: among the indices `i` with `inSequence[i]`, the
   * (PRF mod their count)-th. -1 when none is in the sequence. A point out of the sequence is
   * skipped; the others keep an equal share (the modulo bias of 32 bits over K ≤ 64 is < 2^-26).
   */
  pick(seq: bigint, inSequence: readonly boolean[]): number {
    let n = 0;
    for (const x of inSequence) if (x) n++;
    if (n === 0) return -1;
    let k = this.prf(seq) % n;
    for (let i = 0; i < inSequence.length; i++) if (inSequence[i] && k-- === 0) return i;
    return -1;
  }
}

/** A fresh random spread key: what `arrow connect --spread` uses unless given `--spread-key`. */
export function newSpreadKey(): Buffer {
  return randomBytes(SIP_KEY_LENGTH);
}

/**
 * Reads a spread key from a file: 32 hex digits (surrounding whitespace ignored). A file, not a
 * flag, so the secret never shows in `ps` or a shell history.
 */
export function readSpreadKey(file: string): Buffer {
  const text = readFileSync(file, 'utf8').trim();
  if (!/^[0-9a-fA-F]{32}$/.test(text))
    throw new Error(
      `spread key file ${file}: expected 32 hex digits (16 bytes), got ${text.length} characters`,
    );
  return Buffer.from(text, 'hex');
}

/** When an ingress circuit is overloaded and leaves the sequence (docs/services.md). */
export interface HealthOptions {
  /** Probes decided (home or late) that the loss share is taken over. */
  window: number;
  /** A probe not home within this long counts as lost (loss, or an RTT beyond the threshold). */
  maxRttMs: number;
  /** More than this share of the window lost: overloaded, out of the sequence. */
  maxLossPct: number;
  /** Back in the sequence after this many probes in a row came home in time. */
  recover: number;
}

export const DEFAULT_HEALTH: HealthOptions = { window: 10, maxRttMs: 200, maxLossPct: 30, recover: 5 };

/**
 * One ingress circuit's health from its end-to-end probes: each probe is good when it comes home
 * within `maxRttMs`, bad otherwise. Overloaded when the bad share of the last `window` decided
 * probes exceeds `maxLossPct`; healthy again only after `recover` good ones in a row (hysteresis,
 * so a point under a flood that lets a probe through now and then does not flap). Pure: the
 * caller passes the time.
 */
export class IngressHealth {
  /** Probes in flight: sequence → when sent. */
  private readonly pending = new Map<bigint, number>();
  /** Decided probes, oldest first: true = home in time. */
  private readonly outcomes: boolean[] = [];
  private goodInRow = 0;
  private overloaded = false;
  readonly counts = { sent: 0, home: 0, late: 0 };

  constructor(readonly opts: HealthOptions = DEFAULT_HEALTH) {}

  sent(seq: bigint, now: number): void {
    this.pending.set(seq, now);
    this.counts.sent++;
    // Bounded: a probe never answered is decided by `decide` long before this matters.
    if (this.pending.size > 4 * this.opts.window) this.pending.delete(this.pending.keys().next().value!);
  }

  /** A probe came home; false when it was not one of ours (or was already decided late). */
  home(seq: bigint, now: number): boolean {
    const at = this.pending.get(seq);
    if (at === undefined) return false;
    this.pending.delete(seq);
    // Probes sent before this one and out too long are lost: decided first, in the order sent.
    this.expire(now);
    const good = now - at <= this.opts.maxRttMs;
    this.counts[good ? 'home' : 'late']++;
    this.record(good);
    return true;
  }

  /** Decides the probes out longer than `maxRttMs` as lost, then says whether the circuit is healthy. */
  healthy(now: number): boolean {
    this.expire(now);
    return !this.overloaded;
  }

  private expire(now: number): void {
    for (const [seq, at] of this.pending) {
      if (now - at <= this.opts.maxRttMs) continue;
      this.pending.delete(seq);
      this.counts.late++;
      this.record(false);
    }
  }

  /** The bad share of the window now, 0..1 (for reports). */
  get lossShare(): number {
    if (this.outcomes.length === 0) return 0;
    return this.outcomes.filter((g) => !g).length / this.outcomes.length;
  }

  private record(good: boolean): void {
    this.outcomes.push(good);
    if (this.outcomes.length > this.opts.window) this.outcomes.shift();
    this.goodInRow = good ? this.goodInRow + 1 : 0;
    if (!this.overloaded) {
      const bad = this.outcomes.filter((g) => !g).length;
      if (bad * 100 > this.opts.maxLossPct * this.opts.window) this.overloaded = true;
    } else if (this.goodInRow >= this.opts.recover) {
      this.overloaded = false;
      // A fresh start: the bad probes of the flood would otherwise throw it out again at once.
      this.outcomes.length = 0;
    }
  }
}
