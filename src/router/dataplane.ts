import {
  AUTH_LENGTH,
  OFFSET_AUTH,
  OFFSET_HOP_LIMIT,
  OFFSET_TYPE,
  PacketType,
  check,
  headerLength,
  type DecodeErrorCode,
} from '../wire/header.js';
import { authKeyFromPacket } from '../wire/authenticator.js';
import { formatAddress } from '../wire/address.js';
import type { Entry, ForwardingTable, Hop } from './table.js';
import type { CircuitCounters } from '../store/circuit.js';

/** Why a packet was dropped. Each reason has its own counter. */
export type DropReason =
  | DecodeErrorCode
  | 'unknown-auth'
  | 'hop-limit'
  | 'unexpected-type'
  | 'no-next-hop'
  | 'no-reply-path'
  | 'probe-rate'
  | 'send-error'
  | 'impair'
  | 'bad-payload'
  | 'unsolicited-reply'
  | 'relay-busy';

export const DROP_REASONS: readonly DropReason[] = [
  'truncated',
  'bad-version',
  'unknown-type',
  'reserved-flags',
  'unknown-auth',
  'hop-limit',
  'unexpected-type',
  'no-next-hop',
  'no-reply-path',
  'probe-rate',
  'send-error',
  'impair',
  'bad-payload',
  'unsolicited-reply',
  'relay-busy',
];

/** The I/O the data plane needs, and nothing more: sockets live behind it. */
export interface Output {
  send(packet: Buffer, port: number, host: string): void;
  /** Send a decapsulated payload to an unmodified UDP server from the circuit's own socket. */
  deliverUdp(entry: Entry & { kind: 'deliver-udp' }, payload: Buffer): void;
}

/**
 * The failover protocol's hooks into the packet path. The data plane reports what
 * it sees (acks, forwarded probes) and asks whether a probe may act; the timers and
 * repair live behind this interface (see failover.ts).
 */
export interface Control {
  /** A neighbour answered: PROBE_ACK or KEEPALIVE_ACK from `from` (`host:port`). */
  heard(from: string): void;
  /** A probe went out on `hop`: its ack is now expected. `probe` is only valid during the call. */
  probeForwarded(hop: Hop, probe: Buffer): void;
  /** Rate limits per circuit and per account: false drops the probe before it can trigger anything. */
  admitProbe(entry: Entry): boolean;
}

/**
 * Path diagnostics (docs/diagnostics.md): traceroute answers, the last-leg ping service
 * and the relayed echo. Each returns the reason it refuses a packet, which the data plane
 * counts; undefined means handled.
 */
export interface Diagnostics {
  /** A TRACE at this hop, admitted by the probe rate limits; `next` is where it goes on (if anywhere). */
  trace(buf: Buffer, entry: Entry, hopLimit: number, next: Hop | undefined): DropReason | undefined;
  /** A LAST_LEG at the circuit's last router: ping the circuit's own UDP target. */
  lastLeg(buf: Buffer, entry: Entry): DropReason | undefined;
  /** A RELAY request: echo the router it names and answer the requester. */
  relay(buf: Buffer, fromPort: number, fromHost: string): DropReason | undefined;
  /** An ECHO_REPLY: the answer to a relay's echo, or unsolicited. */
  echoReply(buf: Buffer, fromPort: number, fromHost: string): DropReason | undefined;
}

/** Without diagnostics (unit tests): traces travel unanswered, the rest is refused as before. */
export const NO_DIAGNOSTICS: Diagnostics = {
  trace: () => undefined,
  lastLeg: () => 'unexpected-type',
  relay: () => 'unexpected-type',
  echoReply: () => 'unexpected-type',
};

/** For routers without failover (and unit tests): probes are forwarded and nothing is tracked. */
export const NO_CONTROL: Control = { heard: () => {}, probeForwarded: () => {}, admitProbe: () => true };

export class DropCounters {
  readonly counts: Record<DropReason, number> = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<
    DropReason,
    number
  >;
  add(reason: DropReason): void {
    this.counts[reason]++;
  }
  get total(): number {
    let t = 0;
    for (const r of DROP_REASONS) t += this.counts[r];
    return t;
  }
}

export interface HandledCounters {
  data: number;
  probes: number;
  probeAcks: number;
  echoes: number;
  keepalives: number;
  keepaliveAcks: number;
  traces: number;
  lastLegs: number;
  relays: number;
}

/**
 * The packet path. `process` takes one datagram through a fixed sequence of
 * checks (well-formed, type, known authenticator, hop limit) and then performs
 * the circuit's action by rewriting the header in place. It never throws and
 * never awaits: the table is a Map that the store sync updates between packets.
 */
export class DataPlane {
  readonly drops = new DropCounters();
  readonly handled: HandledCounters = {
    data: 0,
    probes: 0,
    probeAcks: 0,
    echoes: 0,
    keepalives: 0,
    keepaliveAcks: 0,
    traces: 0,
    lastLegs: 0,
    relays: 0,
  };

  constructor(
    private readonly table: ForwardingTable,
    private readonly out: Output,
    private readonly control: Control = NO_CONTROL,
    private readonly diagnostics: Diagnostics = NO_DIAGNOSTICS,
  ) {}

  process(buf: Buffer, fromPort: number, fromHost: string): void {
    // 1. Well-formed header.
    const bad = check(buf);
    if (bad !== null) return this.drops.add(bad);

    // 2. Packets addressed to this router rather than to a circuit.
    const type = buf[OFFSET_TYPE]!;
    if (type === PacketType.Echo) {
      this.handled.echoes++;
      buf[OFFSET_TYPE] = PacketType.EchoReply;
      return this.send(buf, fromPort, fromHost);
    }
    if (type === PacketType.Keepalive) {
      this.handled.keepalives++;
      buf[OFFSET_TYPE] = PacketType.KeepaliveAck;
      return this.send(buf, fromPort, fromHost);
    }
    if (type === PacketType.ProbeAck || type === PacketType.KeepaliveAck) {
      // A neighbour acknowledging a probe we forwarded or a keepalive: proof of life.
      if (type === PacketType.ProbeAck) this.handled.probeAcks++;
      else this.handled.keepaliveAcks++;
      return this.control.heard(formatAddress({ host: fromHost, port: fromPort }));
    }
    if (type === PacketType.EchoReply)
      return this.refused(this.diagnostics.echoReply(buf, fromPort, fromHost));
    if (type === PacketType.Relay) {
      const refused = this.diagnostics.relay(buf, fromPort, fromHost);
      if (refused === undefined) this.handled.relays++;
      return this.refused(refused);
    }
    if (
      type !== PacketType.Data &&
      type !== PacketType.Probe &&
      type !== PacketType.Trace &&
      type !== PacketType.LastLeg
    )
      return this.drops.add('unexpected-type');

    // 3. Known authenticator.
    const entry = this.table.lookup(authKeyFromPacket(buf, OFFSET_AUTH));
    if (entry === undefined) return this.drops.add('unknown-auth');

    // DATA entering the ISP: counted before anything can drop it, so in - out is the segment's loss.
    if (type === PacketType.Data && entry.ingress) countIn(entry.counters, buf.length);

    // 4. Hop limit: a looped circuit dies here.
    const hops = buf[OFFSET_HOP_LIMIT]!;
    if (hops <= 1) return this.dropFor(entry, 'hop-limit');
    buf[OFFSET_HOP_LIMIT] = hops - 1;
    entry.counters.packets++;
    entry.counters.bytes += buf.length;

    // 5. Probes are acked to the previous hop before they travel on. The ack only says
    //    "this router is alive", so it is sent even for probes the rate limit then drops.
    if (type === PacketType.Probe) {
      this.handled.probes++;
      const ack = Buffer.from(buf.subarray(0, headerLength(buf)));
      ack[OFFSET_TYPE] = PacketType.ProbeAck;
      this.send(ack, fromPort, fromHost);
      if (!this.control.admitProbe(entry)) return this.dropFor(entry, 'probe-rate');
      if (entry.kind === 'deliver-udp') {
        // The unmodified server knows nothing of probes. The probe turns around into the
        // circuit's return path instead, so it checks (and repairs) the way back too, and
        // comes home to the endpoint as the end-to-end answer.
        if (!entry.reply) return;
        return this.forward(buf, entry.reply, entry, true);
      }
      return this.forward(buf, entry.next, entry, true);
    }
    // Diagnostics travel like probes, under the same rate limits, but are never tracked
    // for failover: a trace or a ping must not repair anything.
    if (type === PacketType.Trace || type === PacketType.LastLeg) {
      if (!this.control.admitProbe(entry)) return this.dropFor(entry, 'probe-rate');
      return type === PacketType.Trace ? this.trace(buf, entry, hops) : this.lastLeg(buf, entry);
    }
    this.handled.data++;

    // 6. The circuit's action.
    if (entry.kind === 'deliver-udp') {
      countOut(entry.counters, buf.length);
      return this.out.deliverUdp(entry, buf.subarray(headerLength(buf)));
    }
    this.forward(buf, entry.next, entry, false);
  }

  private trace(buf: Buffer, entry: Entry, hops: number): void {
    // The same turn into the return path as a probe at a deliver-udp last hop.
    const next = entry.kind === 'deliver-udp' ? entry.reply : entry.next;
    const refused = this.diagnostics.trace(buf, entry, hops, next);
    if (refused !== undefined) return this.dropFor(entry, refused);
    this.handled.traces++;
    if (next !== undefined) this.forward(buf, next, entry, false);
  }

  private lastLeg(buf: Buffer, entry: Entry): void {
    if (entry.kind !== 'deliver-udp' && entry.kind !== 'deliver-endpoint') {
      this.handled.lastLegs++;
      return this.forward(buf, entry.next, entry, false);
    }
    const refused = this.diagnostics.lastLeg(buf, entry);
    if (refused !== undefined) return this.dropFor(entry, refused);
    this.handled.lastLegs++;
  }

  private refused(reason: DropReason | undefined): void {
    if (reason !== undefined) this.drops.add(reason);
  }

  private forward(buf: Buffer, next: Hop, entry: Entry, probe: boolean): void {
    const to = next.addresses[next.active];
    if (to === undefined) return this.dropFor(entry, 'no-next-hop');
    if (next.auth !== undefined) next.auth.copy(buf, OFFSET_AUTH, 0, AUTH_LENGTH);
    const sent = this.trySend(buf, to.port, to.host);
    if (probe) this.control.probeForwarded(next, buf);
    else if (buf[OFFSET_TYPE] !== PacketType.Data) return;
    else if (!sent) countDrop(entry.counters, 'send-error');
    // Leaving the ISP: an egress-PoP entry hands the packet to the next ISP or the destination.
    else if (entry.kind !== 'internal') countOut(entry.counters, buf.length);
  }

  /**
   * A packet the router decided not to process (impairment, impair.ts): a drop by `reason`,
   * and against its circuit when it is DATA of one. It did arrive, so an ingress router also
   * counts it in: the loss shows in the circuit's in vs out like any other.
   */
  discard(buf: Buffer, reason: DropReason): void {
    this.drops.add(reason);
    if (check(buf) !== null || buf[OFFSET_TYPE] !== PacketType.Data) return;
    const entry = this.table.lookup(authKeyFromPacket(buf, OFFSET_AUTH));
    if (entry === undefined) return;
    if (entry.ingress) countIn(entry.counters, buf.length);
    countDrop(entry.counters, reason);
  }

  /** A drop of one of the circuit's packets: per circuit by reason, and in the router's totals. */
  private dropFor(entry: Entry, reason: DropReason): void {
    countDrop(entry.counters, reason);
    this.drops.add(reason);
  }

  private send(buf: Buffer, port: number, host: string): void {
    this.trySend(buf, port, host);
  }

  /** Sends, counting a failure as a `send-error` drop; false when it failed. Also for the router's own replies. */
  trySend(buf: Buffer, port: number, host: string): boolean {
    try {
      this.out.send(buf, port, host);
      return true;
    } catch {
      // Counted, not logged: this is the packet path (EAGAIN on a full buffer, a bad target).
      this.drops.add('send-error');
      return false;
    }
  }
}

function countIn(c: CircuitCounters, bytes: number): void {
  c.inPackets++;
  c.inBytes += bytes;
}

function countOut(c: CircuitCounters, bytes: number): void {
  c.outPackets++;
  c.outBytes += bytes;
}

function countDrop(c: CircuitCounters, reason: DropReason): void {
  c.dropped++;
  c.drops[reason] = (c.drops[reason] ?? 0) + 1;
}
