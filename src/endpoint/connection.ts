import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { authToBytes, newAuthenticator } from '../wire/authenticator.js';
import { formatAddress, mustParseAddress, type UdpAddress } from '../wire/address.js';
import { PacketType, type Packet } from '../wire/header.js';
import type { Endpoint } from './endpoint.js';
import { tagChain, type TagLink } from './tags.js';
import { abandonPaths, buyPath, releasePath, type BoughtPath, type PathSpec } from './path.js';
import { DEFAULT_HEALTH, IngressHealth, SpreadSequence, type HealthOptions } from './spread.js';

/** The customer's failure rule. Detection is the customer's choice, so each circuit can have its own. */
export interface DetectorOptions {
  /** A circuit is failing when nothing has come back for this long after we sent. */
  timeoutMs: number;
  /** While failing, a probe goes out this often. */
  probeIntervalMs: number;
  /** No PROBE_ACK from the ingress router within this long: move to the next ingress router. */
  ackTimeoutMs: number;
  /** Standby circuits are checked end to end this often, so a switch never lands on a dead one. */
  standbyCheckMs: number;
  /** Go back to the primary once it is repaired. */
  revert: boolean;
  /** With no standby left, give up on repair after this long and re-buy avoiding the dead ISP. */
  rebuyAfterMs: number;
}

export const DEFAULT_DETECTOR: DetectorOptions = {
  timeoutMs: 50,
  probeIntervalMs: 20,
  ackTimeoutMs: 50,
  standbyCheckMs: 1000,
  revert: true,
  rebuyAfterMs: 2000,
};

export type CircuitState = 'up' | 'failing';

/**
 * Spreading (`arrow connect --spread`, docs/services.md "DoS protection"): every circuit is an
 * ingress point carrying a share of the DATA, chosen per packet by a keyed PRF of its sequence
 * number; a circuit failing or overloaded leaves the sequence until it is healthy again.
 */
export interface SpreadOptions {
  /** The 16-byte PRF key: a secret (never logged, never on the wire). */
  key: Uint8Array;
  /** Every circuit is probed end to end this often, for its health (default 100; ingress routers admit 20 probes/s). */
  probeMs?: number;
  /** What makes a circuit overloaded (unset fields: DEFAULT_HEALTH). */
  health?: Partial<HealthOptions>;
}

export const DEFAULT_SPREAD_PROBE_MS = 100;

/** One bought path as the connection drives it. */
export class PathCircuit {
  state: CircuitState = 'up';
  ingress: UdpAddress[];
  activeIngress = 0;
  readonly auth: Buffer;
  /** Tags its DATA carries: one per circuit of the path bought with tags, in path order. */
  readonly tags: TagLink[];
  /** First send after the last thing heard on this circuit's return path. */
  unansweredSince: number | undefined;
  lastHeard = 0;
  /** Last PROBE_ACK from the ingress router in use. */
  lastAck = 0;
  /** Repair bookkeeping while failing. */
  firstProbeAt: number | undefined;
  lastProbeAt = -Infinity;
  ackWaitSince: number | undefined;
  readonly probes = new Set<bigint>();
  /** Probes of this failure sent through another ingress router than the active one: sequence → its index. */
  readonly viaOther = new Map<bigint, number>();
  /** Another ingress router that acked one of those probes: where to go if the active one stays silent. */
  answeringIngress: number | undefined;
  /** With spreading: its health from its probes, and whether it is in the sequence now. */
  health: IngressHealth | undefined;
  inSequence = true;
  /** With spreading: DATA sent on it. */
  spreadSent = 0;

  constructor(
    readonly path: BoughtPath,
    /** Authenticator its return path writes when delivering to us: tells the circuits apart. */
    readonly replyAuth: string,
  ) {
    const first = path.forward[0]!.circuit;
    this.ingress = first.ingress.map((a) => mustParseAddress(a));
    this.auth = authToBytes(first.auth);
    this.tags = tagChain(path.forward);
  }

  get isps(): string[] {
    return this.path.forward.map((b) => b.segment.isp ?? b.segment.portal);
  }
}

export interface ConnectionEvents {
  data: [payload: Buffer, circuit: PathCircuit];
  /** The detector found the circuit failing. */
  failure: [circuit: PathCircuit, at: number];
  /** Sending moved to another circuit. */
  switch: [from: PathCircuit, to: PathCircuit, at: number];
  /** The endpoint moved to another ingress router of the first ISP. */
  ingress: [circuit: PathCircuit, address: string];
  /** A probe came home: the circuit works end to end again. */
  repaired: [circuit: PathCircuit, repairMs: number, at: number];
  /** A replacement path was bought avoiding `avoid`. */
  rebuy: [circuit: PathCircuit, avoid: string[]];
  /**
   * A re-buy around the dead ISPs in `avoid` failed (no candidate, a portal refused, ...). The
   * connection keeps probing and tries again after `rebuyAfterMs`.
   */
  rebuyFailed: [error: Error, avoid: string[]];
  /** With spreading: the circuit left (`false`) or rejoined (`true`) the sequence. */
  sequence: [circuit: PathCircuit, inSequence: boolean, at: number];
}

/** How far `Connection.waitReady` checks each circuit. */
export type ReadyScope =
  /** A probe came home: the circuit and its return path work end to end. */
  | 'end-to-end'
  /** The first ingress router acked a probe: it knows the circuit (the far end may not be up yet). */
  | 'ingress';

/**
 * A connection over one primary and any number of standby circuits. It sends on
 * one circuit, watches every circuit's return path, and drives the endpoint's half
 * of the failover protocol (docs/failover.md): detect by its own timeout, switch to a
 * live standby at once, probe the failing circuit until it comes home, move to
 * another ingress router when the first ISP does not ack, and when an ISP is dead
 * with no standby left, re-buy avoiding it.
 */
export class Connection extends EventEmitter<ConnectionEvents> {
  readonly circuits: PathCircuit[] = [];
  private activeIndex = 0;
  private readonly byReplyAuth = new Map<string, PathCircuit>();
  private readonly timer: NodeJS.Timeout;
  private lastStandbyCheck = 0;
  private rebuying = false;
  private closed = false;
  /** No re-buy attempt before this: a failed one waits `rebuyAfterMs` before the next. */
  private nextRebuyAt = 0;
  readonly opts: DetectorOptions;
  /** With spreading: the PRF, the probe interval, and which circuits are in the sequence (index-aligned). */
  private readonly spread: { sequence: SpreadSequence; probeMs: number; health: HealthOptions } | undefined;
  private readonly inSequence: boolean[] = [];
  private readonly everyCircuit: boolean[] = [];
  private readonly now = (): number => performance.now();
  private readonly onData = (payload: Buffer, packet: Packet): void => {
    const c = this.byReplyAuth.get(Buffer.from(packet.authenticator).toString('hex'));
    if (!c) return;
    // Data shows the return path works, not that what we send now gets through: a reply to a
    // packet sent before the failure (read late from our socket, or held in a stalled router) must
    // not end the failure while the ingress router in use is dead. Only a probe of this failure
    // coming home repairs (onProbe).
    this.answered(c, this.now());
    this.emit('data', payload, c);
  };
  private readonly onProbe = (packet: Packet): void => {
    const c = this.byReplyAuth.get(Buffer.from(packet.authenticator).toString('hex'));
    if (!c) return;
    c.health?.home(packet.sequence, this.now());
    if (!c.probes.has(packet.sequence)) return;
    // Home through another ingress router while the active one has not acked: that one is dead to us.
    const via = c.viaOther.get(packet.sequence);
    if (via !== undefined && via !== c.activeIngress && c.ackWaitSince !== undefined)
      this.moveIngress(c, via);
    this.heard(c);
  };
  private readonly onProbeAck = (seq: bigint, from: UdpAddress): void => {
    const at = formatAddress(from);
    for (const c of this.circuits) {
      if (!c.probes.has(seq)) continue;
      const via = c.viaOther.get(seq);
      if (via !== undefined) {
        if (at === formatAddress(c.ingress[via]!)) c.answeringIngress = via;
      } else if (at === formatAddress(c.ingress[c.activeIngress]!)) {
        c.ackWaitSince = undefined;
        c.lastAck = this.now();
      }
    }
  };

  constructor(
    readonly endpoint: Endpoint,
    opts: Partial<DetectorOptions> = {},
    /** Buys a replacement path that avoids the given ISPs; without it there is no re-buy. */
    private readonly rebuy?: (avoid: string[]) => Promise<BoughtPath>,
    spread?: SpreadOptions,
  ) {
    super();
    this.opts = { ...DEFAULT_DETECTOR, ...opts };
    this.spread = spread && {
      sequence: new SpreadSequence(spread.key),
      probeMs: spread.probeMs ?? DEFAULT_SPREAD_PROBE_MS,
      health: { ...DEFAULT_HEALTH, ...spread.health },
    };
    endpoint.on('data', this.onData);
    endpoint.on('probe', this.onProbe);
    endpoint.on('probeAck', this.onProbeAck);
    this.timer = setInterval(
      () => this.tick(),
      Math.max(1, Math.min(this.opts.probeIntervalMs, this.opts.timeoutMs) / 2),
    );
    // The application's own sockets keep the process alive; a detector must not.
    this.timer.unref();
  }

  /** A fresh authenticator for the return path of the next circuit to buy: pass as `replyTo`. */
  replyTo(): { addresses: string[]; auth: string } {
    return { addresses: [this.endpoint.address], auth: newAuthenticator() };
  }

  /** Adds a bought path; the first one added is the primary. */
  add(path: BoughtPath): PathCircuit {
    if (!path.replyAuth)
      throw new Error('the path needs a return path to this endpoint (buy it with replyTo)');
    const c = new PathCircuit(path, path.replyAuth);
    c.lastHeard = this.now();
    if (this.spread) c.health = new IngressHealth(this.spread.health);
    this.circuits.push(c);
    this.inSequence.push(true);
    this.everyCircuit.push(true);
    this.byReplyAuth.set(path.replyAuth, c);
    return c;
  }

  /**
   * Buys each path into the connection, in order (the first one added is the primary, the rest
   * standbys), each with its own return path to this endpoint. All or nothing: if one purchase
   * fails, every path bought here is relinquished and the error thrown; close the connection then.
   */
  async buy(specs: PathSpec[]): Promise<BoughtPath[]> {
    const bought: BoughtPath[] = [];
    try {
      for (const spec of specs) {
        const path = await buyPath(spec, { replyTo: this.replyTo() });
        bought.push(path);
        this.add(path);
      }
    } catch (err) {
      return abandonPaths(bought, err);
    }
    return bought;
  }

  get active(): PathCircuit {
    const c = this.circuits[this.activeIndex];
    if (!c) throw new Error('no circuit: add a bought path first');
    return c;
  }

  /** Whether DATA is spread over every circuit (`SpreadOptions`) rather than sent on the active one. */
  get spreading(): boolean {
    return this.spread !== undefined;
  }

  send(payload: Uint8Array): void {
    if (this.spread) return this.sendSpread(payload);
    const c = this.active;
    const now = this.now();
    c.unansweredSince ??= now;
    this.endpoint.sendOn(c.ingress[c.activeIngress]!, c.auth, PacketType.Data, payload, undefined, c.tags);
  }

  /**
   * Spreading: the PRF of the packet's sequence number picks the circuit among those in the
   * sequence; with none in it (every ingress flooded or dead), among all, so traffic still tries.
   */
  private sendSpread(payload: Uint8Array): void {
    const seq = this.endpoint.nextSequence();
    let i = this.spread!.sequence.pick(seq, this.inSequence);
    if (i < 0) i = this.spread!.sequence.pick(seq, this.everyCircuit);
    const c = this.circuits[i];
    if (!c) throw new Error('no circuit: add a bought path first');
    c.unansweredSince ??= this.now();
    c.spreadSent++;
    this.endpoint.sendOn(c.ingress[c.activeIngress]!, c.auth, PacketType.Data, payload, seq, c.tags);
  }

  /** Spreading: recomputes which circuits are in the sequence (up and healthy), noting each change. */
  private updateSequence(now: number): void {
    for (let i = 0; i < this.circuits.length; i++) {
      const c = this.circuits[i]!;
      const healthy = c.health ? c.health.healthy(now) : true;
      const inSeq = c.state === 'up' && healthy;
      if (inSeq === c.inSequence) continue;
      c.inSequence = inSeq;
      this.inSequence[i] = inSeq;
      this.emit('sequence', c, inSeq, now);
    }
  }

  /**
   * DATA went out on the active circuit by another way than `send` (the kernel's encapsulation,
   * src/endpoint/kernel-endpoint.ts): the detector starts waiting for an answer as `send` does.
   */
  sentOutside(): void {
    this.active.unansweredSince ??= this.now();
  }

  /** DATA came home on `c`'s return path by another way than this endpoint's socket (the kernel's decapsulation). */
  receivedOutside(c: PathCircuit): void {
    this.answered(c, this.now());
  }

  /**
   * Probes every circuit until each answers (see `ReadyScope`), or `timeoutMs` passes. Resolves
   * with the circuits that did not answer: empty when all are ready. Not answering is not fatal,
   * since the failover driver keeps repairing; the caller decides whether to warn or give up.
   */
  async waitReady(timeoutMs = 5000, scope: ReadyScope = 'end-to-end'): Promise<PathCircuit[]> {
    const since = this.now();
    const deadline = since + timeoutMs;
    const pending = (): PathCircuit[] =>
      this.circuits.filter((c) => (scope === 'ingress' ? c.lastAck : c.lastHeard) <= since);
    for (;;) {
      const left = pending();
      const now = this.now();
      if (left.length === 0 || now >= deadline) return left;
      for (const c of left) this.sendProbe(c);
      // Ingress routers admit 20 probes/s per circuit: every 50 ms stays inside that.
      await sleep(Math.min(50, deadline - now));
    }
  }

  /** One probe on `c` through its ingress router in use; its sequence is remembered so it counts when it comes home. */
  private sendProbe(c: PathCircuit): void {
    const seq = this.endpoint.nextSequence();
    c.probes.add(seq);
    if (c.probes.size > 64) c.probes.delete(c.probes.values().next().value!);
    c.health?.sent(seq, this.now());
    this.endpoint.sendOn(c.ingress[c.activeIngress]!, c.auth, PacketType.Probe, new Uint8Array(0), seq);
  }

  /** Something came back on `c`'s return path: what we sent is answered. */
  private answered(c: PathCircuit, now: number): void {
    c.lastHeard = now;
    c.unansweredSince = undefined;
  }

  /** A probe sent on `c` came home: the path works end to end now, and a failure of it ends. */
  private heard(c: PathCircuit): void {
    const now = this.now();
    this.answered(c, now);
    if (c.state !== 'failing') return;
    const repairMs = now - (c.firstProbeAt ?? now);
    c.state = 'up';
    c.firstProbeAt = undefined;
    c.ackWaitSince = undefined;
    c.probes.clear();
    c.viaOther.clear();
    c.answeringIngress = undefined;
    this.emit('repaired', c, repairMs, now);
    if (this.spread) return this.updateSequence(now);
    if (this.opts.revert && this.circuits.indexOf(c) === 0 && this.activeIndex !== 0) this.switchTo(0, now);
  }

  private tick(): void {
    const now = this.now();
    if (this.spread) return this.tickSpread(now);
    const a = this.circuits[this.activeIndex];
    if (
      a &&
      a.state === 'up' &&
      a.unansweredSince !== undefined &&
      now - a.unansweredSince > this.opts.timeoutMs
    )
      this.fail(a, now);
    for (const c of this.circuits) if (c.state === 'failing') this.probe(c, now);
    if (now - this.lastStandbyCheck > this.opts.standbyCheckMs) {
      this.lastStandbyCheck = now;
      this.checkStandbys(now);
    }
  }

  /**
   * Spreading: every circuit carries DATA, so each is watched as the active one is otherwise
   * (nothing back for `timeoutMs` after sending: failing), and each is probed every `probeMs`,
   * whether up (its health) or failing (its repair, with the usual ingress moves and re-buy).
   */
  private tickSpread(now: number): void {
    for (const c of this.circuits) {
      if (
        c.state === 'up' &&
        c.unansweredSince !== undefined &&
        now - c.unansweredSince > this.opts.timeoutMs
      )
        this.fail(c, now);
      else if (now - c.lastProbeAt >= this.spread!.probeMs) {
        if (c.state === 'failing') this.probe(c, now);
        else {
          c.lastProbeAt = now;
          this.sendProbe(c);
        }
      }
    }
    this.updateSequence(now);
  }

  private fail(c: PathCircuit, now: number): void {
    c.state = 'failing';
    c.unansweredSince = undefined;
    // Only a probe of this failure may end it, not one sent before it (by waitReady) that comes late.
    c.probes.clear();
    this.emit('failure', c, now);
    // Spreading: out of the sequence at once; the others carry its share while it is probed.
    if (this.spread) this.updateSequence(now);
    // A live standby takes the traffic at once; the probe repairs the failing circuit meanwhile.
    const i = this.spread ? -1 : this.circuits.findIndex((x) => x !== c && x.state === 'up');
    if (i >= 0) this.switchTo(i, now);
    this.probe(c, now);
    // One probe through each other ingress router of the first ISP as well: should the active one be
    // the dead router, the path behind the others starts repairing now, not after the ack timeout.
    c.viaOther.clear();
    c.answeringIngress = undefined;
    this.probeOtherIngress(c);
  }

  /** A probe through each ingress router of the first ISP but the active one, to learn which are alive. */
  private probeOtherIngress(c: PathCircuit): void {
    for (let j = 0; j < c.ingress.length; j++) {
      if (j === c.activeIngress) continue;
      const seq = this.endpoint.nextSequence();
      c.probes.add(seq);
      c.viaOther.set(seq, j);
      if (c.viaOther.size > 64) c.viaOther.delete(c.viaOther.keys().next().value!);
      this.endpoint.sendOn(c.ingress[j]!, c.auth, PacketType.Probe, new Uint8Array(0), seq);
    }
  }

  /** Sends through the first ISP's ingress router `j` from now on. */
  private moveIngress(c: PathCircuit, j: number): void {
    c.activeIngress = j;
    c.ackWaitSince = undefined;
    c.answeringIngress = undefined;
    this.emit('ingress', c, formatAddress(c.ingress[j]!));
  }

  private switchTo(i: number, now: number): void {
    const from = this.active;
    this.activeIndex = i;
    const to = this.active;
    to.unansweredSince = undefined;
    this.emit('switch', from, to, now);
  }

  private probe(c: PathCircuit, now: number): void {
    const ackOverdue =
      c.ackWaitSince !== undefined && now - c.ackWaitSince > this.opts.ackTimeoutMs && c.ingress.length > 1;
    // An overdue ack is acted on at once (and probed through the new ingress), not at the next interval.
    if (!ackOverdue && now - c.lastProbeAt < this.opts.probeIntervalMs) return;
    // The ingress router did not ack: it is dead to us; the first ISP's other routers hold the same
    // circuit. Move only to one that acked a probe: when none has (a dead one among them, or our own
    // machine stalled), moving could land on a dead router; ask them again and stay meanwhile.
    if (ackOverdue) {
      const other = c.answeringIngress;
      if (other !== undefined && other !== c.activeIngress) this.moveIngress(c, other);
      else {
        c.ackWaitSince = undefined;
        this.probeOtherIngress(c);
      }
    }
    c.firstProbeAt ??= now;
    c.lastProbeAt = now;
    c.ackWaitSince ??= now;
    this.sendProbe(c);
    if (
      this.rebuy &&
      !this.rebuying &&
      now >= this.nextRebuyAt &&
      now - c.firstProbeAt > this.opts.rebuyAfterMs &&
      !this.circuits.some((x) => x.state === 'up')
    )
      void this.replace(c);
  }

  /** Standbys are probed end to end now and then; a silent one is marked failing and repaired like any other. */
  private checkStandbys(now: number): void {
    for (const c of this.circuits) {
      if (c === this.active || c.state !== 'up') continue;
      if (c.lastHeard < now - 3 * this.opts.standbyCheckMs) {
        this.fail(c, now);
        continue;
      }
      this.sendProbe(c);
    }
  }

  /** Finds the ISPs of the failing path whose routers answer no echo, and buys around them. */
  private async replace(c: PathCircuit): Promise<void> {
    this.rebuying = true;
    const avoid: string[] = [];
    try {
      for (const b of c.path.forward) {
        const answers = await Promise.all(b.circuit.ingress.map((r) => this.endpoint.echo(r, 200)));
        if (answers.every((x) => x === undefined)) avoid.push(b.segment.isp ?? b.segment.portal);
      }
      // Every ISP answers: keep probing, the repair may still come; look again a while later.
      if (avoid.length === 0) return;
      const path = await this.rebuy!(avoid);
      if (this.closed) {
        // Closed while buying: nobody will send on it or relinquish it later.
        const failures = await releasePath(path);
        if (failures.length > 0)
          this.emit(
            'rebuyFailed',
            new Error(
              `closed while re-buying; could not relinquish the new path: ${failures.map((f) => f.message).join('; ')}`,
            ),
            avoid,
          );
        return;
      }
      const fresh = this.add(path);
      this.switchTo(this.circuits.indexOf(fresh), this.now());
      this.emit('rebuy', fresh, avoid);
    } catch (err) {
      // The caller hears of it (a portal's 401, no candidate left...); the probes go on meanwhile.
      this.emit('rebuyFailed', err instanceof Error ? err : new Error(String(err)), avoid);
    } finally {
      this.rebuying = false;
      this.nextRebuyAt = this.now() + this.opts.rebuyAfterMs;
    }
  }

  /** Stops the timers; with `release`, relinquishes every circuit. */
  async close(release = false): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    this.endpoint.off('data', this.onData);
    this.endpoint.off('probe', this.onProbe);
    this.endpoint.off('probeAck', this.onProbeAck);
    if (release) for (const c of this.circuits) await releasePath(c.path);
  }
}

/**
 * A re-buy strategy from a list of candidate paths (the ISP list the customer gave):
 * the first candidate that uses none of the ISPs to avoid.
 */
export function rebuyFrom(candidates: PathSpec[], replyTo: () => { addresses: string[]; auth: string }) {
  return async (avoid: string[]): Promise<BoughtPath> => {
    const ok = candidates.find((p) => !p.segments.some((s) => avoid.includes(s.isp ?? s.portal)));
    if (!ok) throw new Error(`no candidate path avoids ${avoid.join(', ')}`);
    return buyPath(ok, { replyTo: replyTo() });
  };
}
