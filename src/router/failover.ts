import type { CircuitStore } from '../store/store.js';
import { mustParseAddress } from '../wire/address.js';
import { encode, PacketType } from '../wire/header.js';
import { Histogram } from '../util/histogram.js';
import type { Logger } from '../util/log.js';
import type { Control } from './dataplane.js';
import { Neighbours, type LinkTimeoutConfig } from './neighbours.js';
import { RateLimiter, type BucketConfig } from './ratelimit.js';
import type { Entry, ForwardingTable, Hop, HopMove } from './table.js';

export interface FailoverConfig {
  linkTimeout: LinkTimeoutConfig;
  /** How often a dead neighbour is re-checked with a keepalive. */
  recheckMs: number;
  /** How often the RTT to each neighbour in use is measured, so link timeouts follow it. */
  rttProbeMs: number;
  /** How long after a repair its choices are written to the store. */
  recordDelayMs: number;
  /** BFD-style keepalives to every neighbour in use (on by default: docs/failover.md). */
  liveness: { enabled: boolean; intervalMs: number; multiplier: number };
  probeRate: { perCircuit: BucketConfig; perAccount: BucketConfig };
}

export interface FailoverCounters {
  /** Neighbours declared dead (for any reason). */
  neighboursDown: number;
  /** Of those, verdicts from unanswered liveness keepalives (the rest: a forwarded probe's ack overdue). */
  livenessDown: number;
  /** Keepalives sent: liveness beats (which double as RTT measurements), and re-checks of dead neighbours. */
  keepalivesSent: number;
  /** Dead neighbours heard from again. */
  neighboursUp: number;
  /** Hops moved to an alternative by repair. */
  hopsMoved: number;
  /** Hops with no live alternative left. */
  hopsStranded: number;
  /** Repairs whose record in the store failed (the local repair stands). */
  recordFailures: number;
}

/**
 * Moved hops written to the store per transaction. A repair of thousands of circuits is
 * recorded in chunks, yielding between them, so neither this router nor its siblings (which
 * apply each chunk as it lands) hold their packet loops for the whole lot.
 */
const RECORD_CHUNK = 128;

/**
 * The router's half of the failover protocol (docs/failover.md): it expects an ack
 * for every probe it forwards, declares a neighbour dead when the ack is overdue,
 * moves every circuit using that neighbour to its next live alternative in one
 * step, sends the waiting probes on, and records the new choices in the store so the
 * sibling routers of the PoP agree and a restart keeps them. Dead neighbours are
 * re-checked in the background; BFD-style keepalives (on by default) find deaths
 * without any customer traffic.
 */
/** A neighbour this router declared dead, and what the verdict did to its hops. */
export interface NeighbourDeadEvent {
  /** The neighbour's address, `host:port`. */
  neighbour: string;
  /** Hops moved to an alternative. */
  hopsMoved: number;
  /** Hops left with no live alternative. */
  hopsStranded: number;
  /** What found it dead: unanswered liveness keepalives, or a customer's probe that got no ack. */
  by: 'liveness' | 'probe';
}

export class Failover implements Control {
  readonly neighbours: Neighbours;
  readonly counters: FailoverCounters = {
    neighboursDown: 0,
    livenessDown: 0,
    keepalivesSent: 0,
    neighboursUp: 0,
    hopsMoved: 0,
    hopsStranded: 0,
    recordFailures: 0,
  };
  /**
   * Probes waiting for each neighbour's ack, kept so they can follow the repair onwards: the
   * latest per hop, so the set is bounded by the circuits using the neighbour, whatever the
   * probe rate, and every circuit that probed gets its probe carried through the repair.
   */
  private readonly pending = new Map<string, Map<Hop, Buffer>>();
  private readonly perCircuit: RateLimiter;
  private readonly perAccount: RateLimiter;
  private checkTimer: NodeJS.Timeout | undefined;
  private checkAt = Infinity;
  /** Our own address, for the marker that flushes our socket before a verdict. */
  private self: { host: string; port: number } | undefined;
  private selfKey = '';
  private markerSentAt: number | undefined;
  private markerTimer: NodeJS.Timeout | undefined;
  private readonly marker = encode({
    type: PacketType.KeepaliveAck,
    hopLimit: 1,
    authenticator: new Uint8Array(16),
    sequence: 0n,
    payload: new Uint8Array(0),
  });
  /** How long each answered liveness keepalive had waited (normally the RTT): the margin to a verdict. */
  readonly keepaliveWait = new Histogram();
  private readonly timers: NodeJS.Timeout[] = [];
  private keepaliveSeq = 0n;
  private readonly clock = (): number => performance.now();
  /**
   * Told of every dead verdict, as it is made: a structured event for whoever watches the
   * router (`arrow bench failover` gets it over IPC), so nobody has to search the log.
   */
  onNeighbourDead: ((e: NeighbourDeadEvent) => void) | undefined;
  /** Told when a dead neighbour answers again (the admin API's verdict list, the dashboard's timeline). */
  onNeighbourAlive: ((neighbour: string) => void) | undefined;

  constructor(
    private readonly table: ForwardingTable,
    private readonly cfg: FailoverConfig,
    private readonly send: (packet: Buffer, port: number, host: string) => void,
    private readonly store: () => Pick<CircuitStore, 'setActive'> | undefined,
    private readonly log: Logger,
  ) {
    const l = cfg.liveness;
    this.neighbours = new Neighbours(cfg.linkTimeout, l.enabled ? l.intervalMs * l.multiplier : 0);
    this.perCircuit = new RateLimiter(cfg.probeRate.perCircuit);
    this.perAccount = new RateLimiter(cfg.probeRate.perAccount);
  }

  /** The table asks this while compiling entries: never start a circuit on a dead neighbour. */
  readonly isDead = (key: string): boolean => this.neighbours?.isDead(key) ?? false;

  /** Starts the timers. `self` is the router's own bound address (`host:port`). */
  start(self?: string): void {
    if (self) {
      this.self = mustParseAddress(self);
      this.selfKey = self;
    }
    const recheck = setInterval(() => {
      for (const k of this.neighbours.deadNeighbours()) this.keepalive(k);
    }, this.cfg.recheckMs);
    recheck.unref();
    this.timers.push(recheck);
    const l = this.cfg.liveness;
    if (!l.enabled) {
      const measure = setInterval(() => {
        const now = this.clock();
        for (const k of this.table.neighboursInUse().keys()) {
          if (k === this.selfKey || this.neighbours.isDead(k)) continue;
          this.neighbours.measure(k, now);
          this.keepalive(k);
        }
      }, this.cfg.rttProbeMs);
      measure.unref();
      this.timers.push(measure);
      return;
    }
    // With liveness on, every few beats' keepalive doubles as the RTT measurement: no extra packet.
    const measureEvery = Math.max(1, Math.round(this.cfg.rttProbeMs / l.intervalMs));
    let beats = 0;
    const beat = setInterval(() => {
      const now = this.clock();
      const measure = ++beats % measureEvery === 0;
      for (const k of this.table.neighboursInUse().keys()) {
        if (k === this.selfKey || this.neighbours.isDead(k)) continue;
        if (measure) this.neighbours.measure(k, now);
        this.keepalive(k);
        this.schedule(this.neighbours.expectKeepalive(k, now));
      }
    }, l.intervalMs);
    beat.unref();
    this.timers.push(beat);
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    clearTimeout(this.checkTimer);
    clearTimeout(this.markerTimer);
  }

  admitProbe(entry: Entry): boolean {
    const now = this.clock();
    if (!this.perCircuit.allow(entry.circuit, now)) return false;
    if (this.perAccount.allow(entry.owner, now)) return true;
    this.perCircuit.refund(entry.circuit);
    return false;
  }

  heard(from: string): void {
    if (from === this.selfKey) {
      if (this.markerSentAt !== undefined) this.judge(this.clock());
      return;
    }
    const now = this.clock();
    const waited = this.neighbours.keepaliveWaitMs(from, now);
    if (waited !== undefined) this.keepaliveWait.add(waited);
    if (this.neighbours.heard(from, now)) {
      this.counters.neighboursUp++;
      // Eligible again for future repairs and new circuits; circuits already moved stay put (no flapping).
      this.log.info({ neighbour: from }, 'neighbour alive again');
      this.onNeighbourAlive?.(from);
      // Hops stranded on a dead neighbour (no live alternative when it died) can use this one now.
      for (const dead of this.neighbours.deadNeighbours()) {
        const { moved } = this.table.repairNeighbour(dead);
        this.counters.hopsMoved += moved.length;
        if (moved.length > 0) this.recordLater(moved);
      }
    }
    this.pending.delete(from);
  }

  probeForwarded(hop: Hop, probe: Buffer): void {
    const key = hop.keys[hop.active]!;
    // A hop back into this very router (a return path that starts in our own PoP): we are alive.
    if (key === this.selfKey) return;
    let waiting = this.pending.get(key);
    if (!waiting) this.pending.set(key, (waiting = new Map()));
    waiting.set(hop, Buffer.from(probe));
    this.schedule(this.neighbours.expectAck(key, this.clock()));
  }

  /** One timer, set for the earliest moment some neighbour's ack becomes overdue. */
  private schedule(at: number): void {
    if (at === Infinity || at >= this.checkAt) return;
    clearTimeout(this.checkTimer);
    this.checkAt = at;
    this.checkTimer = setTimeout(() => this.check(), Math.max(0, at - this.clock()));
    this.checkTimer.unref();
  }

  private check(): void {
    this.checkAt = Infinity;
    const now = this.clock();
    // Timers may fire a hair early; whatever is not overdue yet gets a fresh check.
    if (this.neighbours.overdue(now).length === 0) return this.schedule(this.neighbours.nextDeadline());
    if (!this.self) return this.judge(now);
    // Before blaming a neighbour, make sure its ack is not sitting unread in our own socket
    // behind a burst: send ourselves a marker and judge when it comes back. The socket is a
    // FIFO, so by then everything that arrived before the deadline has been processed.
    if (this.markerSentAt !== undefined) return;
    this.markerSentAt = now;
    this.send(this.marker, this.self.port, this.self.host);
    // Should the marker be lost, judge anyway.
    this.markerTimer = setTimeout(() => this.judge(this.clock()), this.cfg.linkTimeout.maxMs);
    this.markerTimer.unref();
  }

  /** Our own marker came back through the socket: the backlog before the deadline is processed. */
  private judge(now: number): void {
    this.markerSentAt = undefined;
    clearTimeout(this.markerTimer);
    for (const k of this.neighbours.overdue(now)) this.declareDead(k, now);
  }

  private declareDead(key: string, now: number): void {
    const byLiveness = this.neighbours.keepaliveOverdue(key, now);
    this.neighbours.markDead(key, now);
    this.counters.neighboursDown++;
    if (byLiveness) this.counters.livenessDown++;
    const { moved, stranded } = this.table.repairNeighbour(key);
    this.counters.hopsMoved += moved.length;
    this.counters.hopsStranded += stranded;
    this.log.warn(
      {
        neighbour: key,
        by: byLiveness ? 'liveness' : 'probe',
        moved: moved.length,
        stranded,
        inUse: Object.fromEntries(this.table.neighboursInUse()),
      },
      'neighbour dead: circuits moved to alternatives',
    );
    this.onNeighbourDead?.({
      neighbour: key,
      hopsMoved: moved.length,
      hopsStranded: stranded,
      by: byLiveness ? 'liveness' : 'probe',
    });
    // The probes that found it dead carry on along the repaired hops, so the path heals end to end.
    const waiting = this.pending.get(key) ?? new Map<Hop, Buffer>();
    this.pending.delete(key);
    for (const [hop, probe] of waiting) {
      const to = hop.addresses[hop.active];
      if (!to || hop.keys[hop.active] === key) continue;
      this.send(probe, to.port, to.host);
      this.probeForwarded(hop, probe);
    }
    if (moved.length > 0) this.recordLater(moved);
  }

  /**
   * Records after a short delay. Writing (and every sibling applying) a thousand moved hops
   * blocks a router for tens of ms; done in the middle of a failover, that stall makes
   * neighbours misjudge live routers and cascades (docs/performance.md). The local repair is
   * already in force; the record only has to reach the siblings and survive restarts.
   */
  private recordLater(moved: HopMove[]): void {
    const t = setTimeout(() => void this.record(moved), this.cfg.recordDelayMs);
    t.unref();
  }

  /** Writes the new choices to the store, off the packet path; siblings pick them up by watch. */
  private async record(moved: HopMove[]): Promise<void> {
    const store = this.store();
    if (!store) return;
    for (let i = 0; i < moved.length; i += RECORD_CHUNK) {
      if (i > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      const chunk = moved.slice(i, i + RECORD_CHUNK);
      try {
        await store.setActive(chunk.map((m) => ({ auth: m.circuit, kind: m.kind, active: m.active })));
      } catch (err) {
        this.counters.recordFailures++;
        this.log.warn(
          { err: (err as Error).message, circuits: chunk.length },
          'could not record repair in the store',
        );
      }
    }
  }

  private keepalive(key: string): void {
    this.counters.keepalivesSent++;
    const to = mustParseAddress(key);
    const packet = encode({
      type: PacketType.Keepalive,
      hopLimit: 1,
      authenticator: new Uint8Array(16),
      sequence: this.keepaliveSeq++,
      payload: new Uint8Array(0),
    });
    this.send(packet, to.port, to.host);
  }
}
