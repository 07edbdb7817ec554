import { PathCircuit, type DetectorOptions } from '../endpoint/connection.js';
import type { Endpoint } from '../endpoint/endpoint.js';
import type { BoughtPath } from '../endpoint/path.js';
import { formatAddress, type UdpAddress } from '../wire/address.js';
import { PacketType, type Packet } from '../wire/header.js';

/**
 * Many customers in one process, for `arrow bench failover`. Each client owns one bought
 * path (its own forward and return circuits, told apart by the return path's reply
 * authenticator) and runs the endpoint's half of the failover protocol exactly as
 * `Connection` (src/endpoint/connection.ts) does for one primary circuit with no standby:
 *
 * - every send sets `unansweredSince` if unset; anything heard on the return path clears it;
 * - a circuit that is `up` and has had nothing back for `timeoutMs` after a send is `failing`;
 * - a failing circuit is probed at once and then every `probeIntervalMs`; a PROBE_ACK from
 *   the ingress router clears the ack wait, and without one for `ackTimeoutMs` the client moves
 *   to the first ISP's next ingress router;
 * - a probe of ours coming home, or any data on the return path, repairs the circuit:
 *   `repairMs` = now − first probe.
 *
 * The state lives in the same `PathCircuit` objects `Connection` uses. What differs is
 * only the plumbing, which `Connection` cannot offer at N = 1000 on 2 cores: one timer for
 * the whole fleet instead of a `setInterval` per connection (1000 timers firing every 5 ms),
 * and one listener per endpoint event with O(1) demultiplexing (reply authenticator → client,
 * probe sequence → client) instead of every connection listening to every packet. The fleet
 * ticks every `tickMs` (1 ms) where a `Connection` ticks every min(probe interval, timeout)/2
 * (5 ms with a 10 ms probe interval, 25 ms with a 250 ms one): detection is up to 4 (24) ms
 * earlier, which shortens outages by that much at most and does not touch repairMs (it starts
 * at the first probe). Detectors are armed after the warm-up (`arm`), so echoes sent before a
 * router had learnt the circuit are not failures.
 */

/** One echo: when it went out, and when its reply came back (NaN until then). */
export interface EchoRecord {
  sentAt: number;
  repliedAt: number;
}

/** One failure the client's detector found, and its repair. */
export interface FailureRecord {
  /** When the detector declared the circuit failing. */
  at: number;
  firstProbeAt: number | undefined;
  /** When a probe came home or data arrived; undefined while still failing. */
  repairedAt: number | undefined;
  /** As `Connection` emits it: repairedAt − firstProbeAt. */
  repairMs: number | undefined;
  probes: number;
  /** Moves to another ingress router of the first ISP while this failure lasted. */
  ingressMoves: number;
}

export class FleetClient {
  readonly echoes: EchoRecord[] = [];
  /** Reply arrival times in arrival order, with the echo number each answered. */
  readonly replies: { at: number; echo: number }[] = [];
  readonly failures: FailureRecord[] = [];
  nextSendAt = 0;

  constructor(
    readonly index: number,
    readonly circuit: PathCircuit,
  ) {}

  get current(): FailureRecord | undefined {
    const f = this.failures.at(-1);
    return f && f.repairedAt === undefined ? f : undefined;
  }
}

/** Payload of an echo: a marker, the client's index and the echo's number. */
const MAGIC = 0xfa11e0e0;
const PAYLOAD_BYTES = 16;

export interface FleetOptions {
  detector: DetectorOptions;
  /** Each client sends one echo this often (changed with `setEchoInterval`). */
  echoIntervalMs: number;
  /** The shared scheduler's period. */
  tickMs: number;
  /** Upper bound on the fleet's life, whatever the caller does. */
  maxRunMs: number;
}

export class ClientFleet {
  readonly clients: FleetClient[];
  /** Packets that matched no client, or whose payload named a different client than its authenticator. */
  readonly strays = { data: 0, mismatched: 0 };
  /** How late the scheduler ran, in ms past each tick's due time: shows when the bench itself was the bottleneck. */
  readonly tickLateMs: number[] = [];
  private readonly byReplyAuth = new Map<string, FleetClient>();
  private readonly byProbe = new Map<bigint, FleetClient>();
  private timer: NodeJS.Timeout | undefined;
  private sending = false;
  private armed = false;
  private startedAt = 0;
  private lastTick = 0;
  private readonly payload = Buffer.alloc(PAYLOAD_BYTES);
  private readonly now = (): number => performance.now();
  private readonly opts: FleetOptions;

  private readonly onData = (payload: Buffer, packet: Packet): void => {
    const c = this.byReplyAuth.get(Buffer.from(packet.authenticator).toString('hex'));
    if (!c) {
      this.strays.data++;
      return;
    }
    const now = this.now();
    this.heard(c, now);
    if (payload.length < PAYLOAD_BYTES || payload.readUInt32BE(0) !== MAGIC) return;
    if (payload.readUInt32BE(4) !== c.index) {
      this.strays.mismatched++;
      return;
    }
    const e = c.echoes[payload.readUInt32BE(8)];
    if (!e || !Number.isNaN(e.repliedAt)) return;
    e.repliedAt = now;
    c.replies.push({ at: now, echo: payload.readUInt32BE(8) });
  };

  private readonly onProbe = (packet: Packet): void => {
    const c = this.byReplyAuth.get(Buffer.from(packet.authenticator).toString('hex'));
    if (c && c.circuit.probes.has(packet.sequence)) this.heard(c, this.now());
  };

  private readonly onProbeAck = (seq: bigint, from: UdpAddress): void => {
    const c = this.byProbe.get(seq);
    if (!c) return;
    const k = c.circuit;
    if (k.probes.has(seq) && formatAddress(from) === formatAddress(k.ingress[k.activeIngress]!))
      k.ackWaitSince = undefined;
  };

  constructor(
    private readonly endpoint: Endpoint,
    paths: BoughtPath[],
    opts: FleetOptions,
  ) {
    // A copy: setEchoInterval changes it.
    this.opts = { ...opts };
    this.clients = paths.map((p, i) => {
      if (!p.replyAuth) throw new Error(`client ${i}: the path has no return path to this endpoint`);
      const c = new FleetClient(i, new PathCircuit(p, p.replyAuth));
      this.byReplyAuth.set(p.replyAuth, c);
      return c;
    });
    endpoint.on('data', this.onData);
    endpoint.on('probe', this.onProbe);
    endpoint.on('probeAck', this.onProbeAck);
  }

  /** Starts the scheduler: every client echoes every `echoIntervalMs`, phases spread evenly over one interval. */
  start(): void {
    const now = this.now();
    this.startedAt = now;
    this.lastTick = now;
    const n = this.clients.length;
    for (const c of this.clients) {
      c.nextSendAt = now + (c.index * this.opts.echoIntervalMs) / n;
      c.circuit.lastHeard = now;
    }
    this.sending = true;
    this.timer = setInterval(() => this.tick(), this.opts.tickMs);
  }

  /**
   * Arms every client's failure detector. Until then clients only echo: the warm-up's
   * unanswered echoes (sent before a router had the circuit) are not failures to repair.
   */
  arm(): void {
    for (const c of this.clients) c.circuit.unansweredSince = undefined;
    this.armed = true;
  }

  /**
   * Changes every client's echo interval from its next echo on: the calibration steps the
   * aggregate rate up with the same clients and paths.
   */
  setEchoInterval(ms: number): void {
    const now = this.now();
    this.opts.echoIntervalMs = ms;
    const n = this.clients.length;
    for (const c of this.clients) c.nextSendAt = Math.min(c.nextSendAt, now + (c.index * ms) / n);
  }

  /** Stops sending echoes; the detector and repair keep running until `close`. */
  stopSending(): void {
    this.sending = false;
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.endpoint.off('data', this.onData);
    this.endpoint.off('probe', this.onProbe);
    this.endpoint.off('probeAck', this.onProbeAck);
  }

  private tick(): void {
    const now = this.now();
    this.tickLateMs.push(Math.max(0, now - this.lastTick - this.opts.tickMs));
    this.lastTick = now;
    if (now - this.startedAt > this.opts.maxRunMs) {
      this.sending = false;
      clearInterval(this.timer);
      return;
    }
    const d = this.opts.detector;
    const interval = this.opts.echoIntervalMs;
    for (const c of this.clients) {
      if (this.sending && c.nextSendAt <= now) {
        this.send(c, now);
        c.nextSendAt += interval;
        // A scheduler that fell behind skips the missed slots instead of bursting to catch up.
        if (c.nextSendAt <= now) c.nextSendAt = now + interval;
      }
      if (!this.armed) continue;
      // Connection.tick, for a connection with this one circuit.
      const k = c.circuit;
      if (k.state === 'up' && k.unansweredSince !== undefined && now - k.unansweredSince > d.timeoutMs)
        this.fail(c, now);
      else if (k.state === 'failing') this.probe(c, now);
    }
  }

  /** Connection.send: DATA on the circuit's active ingress router. */
  private send(c: FleetClient, now: number): void {
    const k = c.circuit;
    k.unansweredSince ??= now;
    const echo = c.echoes.length;
    c.echoes.push({ sentAt: now, repliedAt: Number.NaN });
    const p = this.payload;
    p.writeUInt32BE(MAGIC, 0);
    p.writeUInt32BE(c.index, 4);
    p.writeUInt32BE(echo, 8);
    p.writeUInt32BE(0, 12);
    this.endpoint.sendOn(k.ingress[k.activeIngress]!, k.auth, PacketType.Data, p);
  }

  /** Connection.heard. */
  private heard(c: FleetClient, now: number): void {
    const k = c.circuit;
    k.lastHeard = now;
    k.unansweredSince = undefined;
    if (k.state !== 'failing') return;
    const f = c.current;
    if (f) {
      f.repairedAt = now;
      f.repairMs = now - (k.firstProbeAt ?? now);
    }
    k.state = 'up';
    k.firstProbeAt = undefined;
    k.ackWaitSince = undefined;
    for (const seq of k.probes) this.byProbe.delete(seq);
    k.probes.clear();
  }

  /** Connection.fail, with no standby to switch to. */
  private fail(c: FleetClient, now: number): void {
    const k = c.circuit;
    k.state = 'failing';
    k.unansweredSince = undefined;
    c.failures.push({
      at: now,
      firstProbeAt: undefined,
      repairedAt: undefined,
      repairMs: undefined,
      probes: 0,
      ingressMoves: 0,
    });
    this.probe(c, now);
  }

  /** Connection.probe, without re-buy (the bench kills one router; the ISP stays). */
  private probe(c: FleetClient, now: number): void {
    const k = c.circuit;
    const d = this.opts.detector;
    if (now - k.lastProbeAt < d.probeIntervalMs) return;
    const f = c.current;
    if (k.ackWaitSince !== undefined && now - k.ackWaitSince > d.ackTimeoutMs && k.ingress.length > 1) {
      k.activeIngress = (k.activeIngress + 1) % k.ingress.length;
      k.ackWaitSince = undefined;
      if (f) f.ingressMoves++;
    }
    k.firstProbeAt ??= now;
    k.lastProbeAt = now;
    k.ackWaitSince ??= now;
    if (f) {
      f.firstProbeAt ??= now;
      f.probes++;
    }
    const seq = this.endpoint.nextSequence();
    k.probes.add(seq);
    this.byProbe.set(seq, c);
    this.endpoint.sendOn(k.ingress[k.activeIngress]!, k.auth, PacketType.Probe, new Uint8Array(0), seq);
  }
}
