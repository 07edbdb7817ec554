/**
 * What a router knows about each adjacent router (next hops in other ISPs, and the
 * routers of its own egress PoPs): a smoothed RTT, whether an ack is outstanding,
 * and whether it is held dead. Pure logic with explicit times, so it is testable
 * without sockets or clocks.
 */

export interface LinkTimeoutConfig {
  /** Floor of the link timeout, whatever the measured RTT. */
  minMs: number;
  /** Timeout before any RTT has been measured to the neighbour. */
  initialMs: number;
  /** Ceiling. */
  maxMs: number;
}

interface State {
  srtt: number | undefined;
  rttvar: number;
  /** Time the oldest unacked probe or keepalive was sent to it; undefined when nothing is outstanding. */
  awaitingSince: number | undefined;
  dead: boolean;
  deadSince: number;
  lastHeard: number;
  /** A background RTT measurement in flight: feeds the estimate but can never kill the link. */
  pingAt: number | undefined;
}

export class Neighbours {
  private readonly states = new Map<string, State>();

  constructor(
    private readonly cfg: LinkTimeoutConfig,
    /** Extra patience when keepalives run: one missed keepalive must not kill a link. */
    private readonly livenessFloorMs = 0,
  ) {}

  private state(key: string): State {
    let s = this.states.get(key);
    if (!s) {
      s = {
        srtt: undefined,
        rttvar: 0,
        awaitingSince: undefined,
        dead: false,
        deadSince: 0,
        lastHeard: 0,
        pingAt: undefined,
      };
      this.states.set(key, s);
    }
    return s;
  }

  isDead(key: string): boolean {
    return this.states.get(key)?.dead ?? false;
  }

  deadNeighbours(): string[] {
    return [...this.states].filter(([, s]) => s.dead).map(([k]) => k);
  }

  rttMs(key: string): number | undefined {
    return this.states.get(key)?.srtt;
  }

  /** The link timeout: RFC 6298's SRTT + 4·RTTVAR, clamped, as TCP derives its RTO. */
  timeoutMs(key: string): number {
    const s = this.states.get(key);
    const rto = s?.srtt === undefined ? this.cfg.initialMs : s.srtt + 4 * s.rttvar;
    return Math.max(this.livenessFloorMs, Math.min(this.cfg.maxMs, Math.max(this.cfg.minMs, rto)));
  }

  /** We sent something that the neighbour must ack. Returns when it becomes overdue. */
  expectAck(key: string, now: number): number {
    const s = this.state(key);
    s.awaitingSince ??= now;
    return s.awaitingSince + this.timeoutMs(key);
  }

  /** A background keepalive went out to measure the RTT; a missing answer is not held against it. */
  measure(key: string, now: number): void {
    this.state(key).pingAt ??= now;
  }

  /**
   * The neighbour answered (PROBE_ACK or KEEPALIVE_ACK). Feeds the RTT estimate from the
   * oldest outstanding send, and returns true when a dead neighbour has come back.
   */
  heard(key: string, now: number): boolean {
    const s = this.state(key);
    const since = s.awaitingSince ?? s.pingAt;
    s.pingAt = undefined;
    if (since !== undefined && now - since <= this.cfg.maxMs) {
      const sample = now - since;
      if (s.srtt === undefined) {
        s.srtt = sample;
        s.rttvar = sample / 2;
      } else {
        s.rttvar = 0.75 * s.rttvar + 0.25 * Math.abs(s.srtt - sample);
        s.srtt = 0.875 * s.srtt + 0.125 * sample;
      }
    }
    s.awaitingSince = undefined;
    s.lastHeard = now;
    if (!s.dead) return false;
    s.dead = false;
    return true;
  }

  /** Live neighbours whose ack is overdue at `now`: they are to be declared dead. */
  overdue(now: number): string[] {
    const out: string[] = [];
    for (const [k, s] of this.states)
      if (!s.dead && s.awaitingSince !== undefined && now >= s.awaitingSince + this.timeoutMs(k)) out.push(k);
    return out;
  }

  /** The earliest moment a live neighbour's outstanding ack becomes overdue, or Infinity. */
  nextDeadline(): number {
    let t = Infinity;
    for (const [k, s] of this.states)
      if (!s.dead && s.awaitingSince !== undefined) t = Math.min(t, s.awaitingSince + this.timeoutMs(k));
    return t;
  }

  markDead(key: string, now: number): void {
    const s = this.state(key);
    s.dead = true;
    s.deadSince = now;
    // Karn's rule: an answer to anything sent before the death says nothing about the RTT
    // (a hung router answers its backlog seconds later), so it must not feed the estimate.
    s.awaitingSince = undefined;
    s.pingAt = undefined;
  }

  /** Marks dead from another router's verdict (the store), without our own evidence. */
  adoptDead(key: string, now: number): void {
    if (!this.isDead(key)) this.markDead(key, now);
  }

  snapshot(): Record<string, { rttMs: number | undefined; timeoutMs: number; dead: boolean }> {
    const out: Record<string, { rttMs: number | undefined; timeoutMs: number; dead: boolean }> = {};
    for (const [k, s] of this.states) out[k] = { rttMs: s.srtt, timeoutMs: this.timeoutMs(k), dead: s.dead };
    return out;
  }
}
