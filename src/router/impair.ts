import { randomBytes } from 'node:crypto';
import { check, headerLength, OFFSET_TYPE, PacketType } from '../wire/header.js';

/**
 * Lab fault injection ("impair"): a stage between a router's socket and its data plane
 * that drops a share of the packets the router carries and delays the rest, like a lossy
 * or long link in front of the router, and may rewrite a byte of their payload, like a
 * middlebox on that link. Off by default; meant for labs and tests, never
 * for production traffic. See docs/operations.md ("Impairment").
 *
 * Failover control (PROBE, PROBE_ACK, KEEPALIVE, KEEPALIVE_ACK) is never impaired: a
 * neighbour whose probes were dropped would be declared dead and every circuit through
 * it moved, which is not the fault being emulated.
 */

export interface ImpairConfig {
  /** Share of impairable packets dropped, in percent (0..100). */
  dropPct: number;
  /** Delay added to every impairable packet that is not dropped, in ms. */
  delayMs: number;
  /** Each packet's delay varies uniformly within ±jitterMs (never below 0, never reordering). */
  jitterMs?: number;
  /** Share of impairable packets (with a payload) whose last payload byte is inverted, in percent. */
  rewritePct?: number;
  /** Seed of the drop and jitter draws, for reproducible runs; default: random (crypto). */
  seed?: number;
  /** Packets that may wait in the delay line; more are dropped (counted as `overflow`). */
  queueLimit?: number;
}

export const DEFAULT_QUEUE_LIMIT = 10_000;

/** What the stage did, published with the router's stats (`impair`). */
export interface ImpairCounters {
  /** Packets the stage applied to (everything but failover control). */
  impairable: number;
  /** Dropped by the `dropPct` draw. */
  dropped: number;
  /** Dropped because the delay line was full. */
  overflow: number;
  /** Passed on with a payload byte inverted (`rewritePct`). */
  rewritten: number;
  /** Sent through the delay line. */
  delayed: number;
  /** Waiting in the delay line now. */
  queued: number;
  /** Worst lateness seen when releasing a delayed packet (ms past its due time). */
  maxLateMs: number;
}

/** True when the config impairs anything: a zero config is not installed at all. */
export function impairActive(cfg: ImpairConfig | undefined): cfg is ImpairConfig {
  return (
    cfg !== undefined &&
    (cfg.dropPct > 0 || cfg.delayMs > 0 || (cfg.jitterMs ?? 0) > 0 || (cfg.rewritePct ?? 0) > 0)
  );
}

/** Packets that impairment leaves alone: malformed ones (counted by the data plane) and failover control. */
export function isImpairable(buf: Buffer): boolean {
  if (check(buf) !== null) return false;
  const type = buf[OFFSET_TYPE]!;
  return (
    type !== PacketType.Probe &&
    type !== PacketType.ProbeAck &&
    type !== PacketType.Keepalive &&
    type !== PacketType.KeepaliveAck
  );
}

/**
 * xoshiro128** (Blackman and Vigna), seeded through splitmix32: a fast, well-distributed
 * generator with no allocation per draw. Not for secrets; the seed comes from crypto when
 * none is given, so two routers never share a drop pattern by accident.
 */
export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number = randomBytes(4).readUInt32LE(0)) {
    let s = seed >>> 0;
    const split = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = split();
    this.b = split();
    this.c = split();
    this.d = split();
  }

  /** A uniform draw in [0, 1). */
  next(): number {
    const r = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return r / 4294967296;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** Released packets are handed on with the sender's address they arrived with. */
export type Deliver = (packet: Buffer, fromPort: number, fromHost: string) => void;

/**
 * A FIFO of packets with their due times, in a preallocated ring (no allocation per
 * packet). Due times never decrease, so a packet never leaves before one that arrived
 * earlier: jitter stretches gaps but cannot reorder. One timer, armed for the head.
 */
export class DelayLine {
  private readonly packets: (Buffer | undefined)[];
  private readonly ports: Uint16Array;
  private readonly hosts: string[];
  private readonly due: Float64Array;
  private head = 0;
  private count = 0;
  private lastDue = 0;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  maxLateMs = 0;

  constructor(
    readonly capacity: number,
    private readonly deliver: Deliver,
    private readonly clock: () => number,
  ) {
    this.packets = new Array<Buffer | undefined>(capacity).fill(undefined);
    this.ports = new Uint16Array(capacity);
    this.hosts = new Array<string>(capacity).fill('');
    this.due = new Float64Array(capacity);
  }

  get length(): number {
    return this.count;
  }

  /** Queues a packet to leave at `dueAt` (or after the one before it). False when the line is full. */
  push(packet: Buffer, fromPort: number, fromHost: string, dueAt: number): boolean {
    if (this.count === this.capacity) return false;
    const i = (this.head + this.count) % this.capacity;
    this.packets[i] = packet;
    this.ports[i] = fromPort;
    this.hosts[i] = fromHost;
    this.due[i] = this.lastDue = Math.max(dueAt, this.lastDue);
    this.count++;
    if (this.count === 1) this.arm(this.clock());
    return true;
  }

  /** Drops everything waiting (router stop). */
  clear(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
    this.packets.fill(undefined);
    this.count = 0;
  }

  private arm(now: number): void {
    if (this.count === 0) return;
    const at = this.due[this.head]!;
    if (this.timer !== undefined && this.timerAt <= at) return;
    clearTimeout(this.timer);
    this.timerAt = at;
    // Node's timers fire on a 1 ms grid and may fire early by up to a tick (their start is
    // the loop's cached time); release() re-checks the clock and re-arms for what is not due.
    this.timer = setTimeout(() => this.release(), Math.max(1, at - now));
    this.timer.unref();
  }

  private release(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = this.clock();
    // Within half a tick of due is due: waiting for another timer would make it a tick late.
    while (this.count > 0 && this.due[this.head]! <= now + RELEASE_SLACK_MS) {
      const i = this.head;
      const packet = this.packets[i]!;
      this.packets[i] = undefined;
      this.head = (i + 1) % this.capacity;
      this.count--;
      const late = now - this.due[i]!;
      if (late > this.maxLateMs) this.maxLateMs = late;
      this.deliver(packet, this.ports[i]!, this.hosts[i]!);
    }
    this.arm(this.clock());
  }
}

/** How early (ms) a packet may leave rather than wait for one more timer tick. */
const RELEASE_SLACK_MS = 0.5;

/**
 * The impairment stage: `accept` takes every datagram from the socket. Failover control
 * and malformed packets go straight to the data plane; the rest is dropped with
 * probability dropPct/100 (handed to `discard`, which counts it against its circuit) or
 * delayed by delayMs ± jitterMs through a FIFO, then handed to the data plane.
 */
export class ImpairStage {
  readonly counters: ImpairCounters = {
    impairable: 0,
    dropped: 0,
    overflow: 0,
    rewritten: 0,
    delayed: 0,
    queued: 0,
    maxLateMs: 0,
  };
  private readonly prng: Prng;
  private readonly rewriteShare: number;
  private readonly line: DelayLine | undefined;
  private readonly dropShare: number;
  private readonly delayMs: number;
  private readonly jitterMs: number;

  constructor(
    cfg: ImpairConfig,
    private readonly deliver: Deliver,
    private readonly discard: (packet: Buffer) => void,
    private readonly clock: () => number = () => performance.now(),
  ) {
    this.prng = new Prng(cfg.seed);
    this.dropShare = Math.min(100, Math.max(0, cfg.dropPct)) / 100;
    this.rewriteShare = Math.min(100, Math.max(0, cfg.rewritePct ?? 0)) / 100;
    this.delayMs = Math.max(0, cfg.delayMs);
    this.jitterMs = Math.max(0, cfg.jitterMs ?? 0);
    if (this.delayMs > 0 || this.jitterMs > 0)
      this.line = new DelayLine(cfg.queueLimit ?? DEFAULT_QUEUE_LIMIT, deliver, clock);
  }

  accept(packet: Buffer, fromPort: number, fromHost: string): void {
    if (!isImpairable(packet)) return this.deliver(packet, fromPort, fromHost);
    this.counters.impairable++;
    if (this.dropShare > 0 && this.prng.next() < this.dropShare) {
      this.counters.dropped++;
      return this.discard(packet);
    }
    if (
      this.rewriteShare > 0 &&
      packet.length > headerLength(packet) &&
      this.prng.next() < this.rewriteShare
    ) {
      packet[packet.length - 1]! ^= 0xff;
      this.counters.rewritten++;
    }
    if (!this.line) return this.deliver(packet, fromPort, fromHost);
    let delay = this.delayMs;
    if (this.jitterMs > 0) delay = Math.max(0, delay + (2 * this.prng.next() - 1) * this.jitterMs);
    if (!this.line.push(packet, fromPort, fromHost, this.clock() + delay)) {
      this.counters.overflow++;
      return this.discard(packet);
    }
    this.counters.delayed++;
  }

  /** Counters for publishing, with the live queue length. */
  snapshot(): ImpairCounters {
    return {
      ...this.counters,
      queued: this.line?.length ?? 0,
      maxLateMs: Math.round((this.line?.maxLateMs ?? 0) * 1000) / 1000,
    };
  }

  stop(): void {
    this.line?.clear();
  }
}
