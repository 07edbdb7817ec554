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
  /** Time the oldest unacked probe was sent to it; undefined when no probe is outstanding. */
  awaitingSince: number | undefined;
  /** Time the oldest unanswered liveness keepalive was sent to it; undefined when none is outstanding. */
  keepaliveSince: number | undefined;
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
    /**
     * The liveness detection window (keepalive interval × multiplier), 0 when keepalives are
     * off. It judges keepalives only: a probe's ack keeps the RTT-derived link timeout, so
     * liveness never slows down a repair a customer asked for.
     */
    private readonly detectMs = 0,
  ) {}

  private state(key: string): State {
    let s = this.states.get(key);
    if (!s) {
      s = {
        srtt: undefined,
        rttvar: 0,
        awaitingSince: undefined,
        keepaliveSince: undefined,
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
    return Math.min(this.cfg.maxMs, Math.max(this.cfg.minMs, rto));
  }

  /**
   * How long a keepalive may go unanswered: the liveness window, but never less than the
   * link timeout, so a neighbour whose RTT is longer than the window is not judged by it.
   */
  detectionMs(key: string): number {
    return Math.max(this.detectMs, this.timeoutMs(key));
  }

  /** We sent something that the neighbour must ack. Returns when it becomes overdue. */
  expectAck(key: string, now: number): number {
    const s = this.state(key);
    s.awaitingSince ??= now;
    return s.awaitingSince + this.timeoutMs(key);
  }

  /** A liveness keepalive went out. Returns when the neighbour is overdue if nothing answers. */
  expectKeepalive(key: string, now: number): number {
    const s = this.state(key);
    s.keepaliveSince ??= now;
    return s.keepaliveSince + this.detectionMs(key);
  }

  /**
   * How long the oldest unanswered keepalive had waited when an answer came, if one was
   * outstanding. Normally the RTT; its worst case is how close the link came to a verdict.
   */
  keepaliveWaitMs(key: string, now: number): number | undefined {
    const since = this.states.get(key)?.keepaliveSince;
    return since === undefined ? undefined : now - since;
  }

  /** A background keepalive went out to measure the RTT; a missing answer is not held against it. */
  measure(key: string, now: number): void {
    this.state(key).pingAt ??= now;
  }

  /**
   * The neighbour answered (PROBE_ACK or KEEPALIVE_ACK). Feeds the RTT estimate from the
   * oldest outstanding probe or RTT measurement, and returns true when a dead neighbour has
   * come back. Liveness keepalives are not used as samples: after a lost one, the next answer
   * would count a whole interval as RTT and inflate the link timeout of every probe.
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
    s.keepaliveSince = undefined;
    s.lastHeard = now;
    if (!s.dead) return false;
    s.dead = false;
    return true;
  }

  /** When a live neighbour becomes overdue: its probe's ack or its keepalive's answer, whichever is first. */
  private deadline(key: string, s: State): number {
    if (s.dead) return Infinity;
    const probe = s.awaitingSince === undefined ? Infinity : s.awaitingSince + this.timeoutMs(key);
    const keepalive = s.keepaliveSince === undefined ? Infinity : s.keepaliveSince + this.detectionMs(key);
    return Math.min(probe, keepalive);
  }

  /** Live neighbours whose ack is overdue at `now`: they are to be declared dead. */
  overdue(now: number): string[] {
    const out: string[] = [];
    for (const [k, s] of this.states) if (now >= this.deadline(k, s)) out.push(k);
    return out;
  }

  /** Whether the neighbour is overdue because its keepalives went unanswered (not a probe's ack). */
  keepaliveOverdue(key: string, now: number): boolean {
    const s = this.states.get(key);
    return s?.keepaliveSince !== undefined && !s.dead && now >= s.keepaliveSince + this.detectionMs(key);
  }

  /** The earliest moment a live neighbour's outstanding ack becomes overdue, or Infinity. */
  nextDeadline(): number {
    let t = Infinity;
    for (const [k, s] of this.states) t = Math.min(t, this.deadline(k, s));
    return t;
  }

  markDead(key: string, now: number): void {
    const s = this.state(key);
    s.dead = true;
    s.deadSince = now;
    // Karn's rule: an answer to anything sent before the death says nothing about the RTT
    // (a hung router answers its backlog seconds later), so it must not feed the estimate.
    s.awaitingSince = undefined;
    s.keepaliveSince = undefined;
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
