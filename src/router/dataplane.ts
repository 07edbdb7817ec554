import { performance } from 'node:perf_hooks';
import {
  AUTH_LENGTH,
  HEADER_LENGTH,
  OFFSET_AUTH,
  OFFSET_FLAGS,
  OFFSET_HOP_LIMIT,
  OFFSET_TYPE,
  PacketType,
  TAG_LENGTH,
  check,
  headerLength,
  tagCount,
  tagFlags,
  type DecodeErrorCode,
} from '../wire/header.js';
import { admit } from './ingress.js';
import { innerPacketRefusal } from './deliver-ip.js';
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
  | 'relay-busy'
  | 'over-rate'
  | 'bad-tag'
  | 'replay'
  | 'not-ip'
  | 'outside-prefixes'
  | 'spoofed-source'
  | 'no-egress';

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
  'over-rate',
  'bad-tag',
  'replay',
  'not-ip',
  'outside-prefixes',
  'spoofed-source',
  'no-egress',
];

/** Drops that refuse the customer's own DATA at the ISP's door: never counted `in`, never the ISP's loss. */
export const INGRESS_REFUSALS: readonly DropReason[] = ['over-rate', 'bad-tag', 'replay'];

/** Monotonic time in ns, for policing. */
export type Clock = () => number;
export const monotonicNs: Clock = () => Math.round(performance.now() * 1e6);

/** The I/O the data plane needs, and nothing more: sockets live behind it. */
export interface Output {
  /** Sends `packet` from byte `offset` on (a tag popped at the ingress moves the header up: docs/wire.md). */
  send(packet: Buffer, port: number, host: string, offset?: number): void;
  /** Send a decapsulated payload to an unmodified UDP server from the circuit's own socket. */
  deliverUdp(entry: Entry & { kind: 'deliver-udp' }, payload: Buffer): void;
  /**
   * Hands a decapsulated IP packet (checked against the circuit's prefixes) to the host's network
   * stack; false when this router has no egress device (docs/egress.md).
   */
  deliverIp(entry: Entry & { kind: 'deliver-ip' }, packet: Buffer): boolean;
  /**
   * A probe of a deliver-ip circuit reached this egress: the customer's path leads here now, so the
   * egress takes the customer over as on DATA. A download's client sends nothing while its data
   * is lost, but its failover probes do arrive (docs/egress.md).
   */
  probedIp?(entry: Entry & { kind: 'deliver-ip' }): void;
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
 * checks (well-formed, type, known authenticator, hop limit, and for DATA entering
 * the ISP the tag and replay window, then policing) and then performs the circuit's
 * action by rewriting the header in place. It never throws and never awaits: the
 * table is a Map that the store sync updates between packets. The kernel path copies
 * this order exactly (docs/wire.md, "What a router does with a packet").
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
    /** Monotonic ns for policing; a test passes its own. */
    private readonly clock: Clock = monotonicNs,
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

    // 4. Hop limit: a looped circuit dies here. DATA entering the ISP is counted in first: a
    //    loop is the ISP's loss.
    const hops = buf[OFFSET_HOP_LIMIT]!;
    const entering = type === PacketType.Data && entry.ingress;
    if (hops <= 1) {
      if (entering) countIn(entry.counters, buf.length);
      return this.dropFor(entry, 'hop-limit');
    }

    // 5. DATA entering the ISP: the tag and replay window when the circuit requires tags, then
    //    policing at the bought rate. A refusal is the sender's doing, so it is never counted
    //    in (nor as the ISP's loss); whatever passes is, so in - out is the segment's loss.
    let start = 0;
    const payloadAt = headerLength(buf);
    if (entering) {
      const guard = entry.guard;
      if (guard !== undefined) {
        const refused = admit(guard, buf, this.clock());
        if (refused !== undefined) return this.dropFor(entry, refused);
        // Pop our tag: the header moves up over it, so the next ISP finds its own tag first.
        if (guard.tagKey !== undefined) start = popTag(buf);
      }
      countIn(entry.counters, buf.length);
    }
    buf[start + OFFSET_HOP_LIMIT] = hops - 1;
    entry.counters.packets++;
    entry.counters.bytes += buf.length;

    // 6. Probes are acked to the previous hop before they travel on. The ack only says
    //    "this router is alive", so it is sent even for probes the rate limit then drops.
    if (type === PacketType.Probe) {
      this.handled.probes++;
      const ack = Buffer.from(buf.subarray(0, headerLength(buf)));
      ack[OFFSET_TYPE] = PacketType.ProbeAck;
      this.send(ack, fromPort, fromHost);
      if (!this.control.admitProbe(entry)) return this.dropFor(entry, 'probe-rate');
      if (entry.kind === 'deliver-ip') this.out.probedIp?.(entry);
      if (entry.kind === 'deliver-udp' || entry.kind === 'deliver-ip') {
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

    // 7. The circuit's action.
    if (entry.kind === 'deliver-udp') {
      countOut(entry.counters, buf.length - start);
      return this.out.deliverUdp(entry, buf.subarray(payloadAt));
    }
    if (entry.kind === 'deliver-ip') {
      // Decapsulation: only an IP packet from the customer's prefix to the circuit's prefixes
      // leaves, so a circuit never relays into the ISP or spoofs another's addresses.
      const refused = innerPacketRefusal(entry, buf, payloadAt);
      if (refused !== undefined) return this.dropFor(entry, refused);
      if (!this.out.deliverIp(entry, buf.subarray(payloadAt))) return this.dropFor(entry, 'no-egress');
      return countOut(entry.counters, buf.length - start);
    }
    this.forward(buf, entry.next, entry, false, start);
  }

  private trace(buf: Buffer, entry: Entry, hops: number): void {
    // The same turn into the return path as a probe at a deliver-udp last hop.
    const next = entry.kind === 'deliver-udp' || entry.kind === 'deliver-ip' ? entry.reply : entry.next;
    const refused = this.diagnostics.trace(buf, entry, hops, next);
    if (refused !== undefined) return this.dropFor(entry, refused);
    this.handled.traces++;
    if (next !== undefined) this.forward(buf, next, entry, false);
  }

  private lastLeg(buf: Buffer, entry: Entry): void {
    if (entry.kind === 'forward' || entry.kind === 'internal') {
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

  /** Sends the packet that starts at `start` of `buf` (after a popped tag) to the hop's active address. */
  private forward(buf: Buffer, next: Hop, entry: Entry, probe: boolean, start = 0): void {
    const to = next.addresses[next.active];
    if (to === undefined) return this.dropFor(entry, 'no-next-hop');
    if (next.auth !== undefined) next.auth.copy(buf, start + OFFSET_AUTH, 0, AUTH_LENGTH);
    const sent = this.trySend(buf, to.port, to.host, start);
    if (probe) this.control.probeForwarded(next, buf);
    else if (buf[start + OFFSET_TYPE] !== PacketType.Data) return;
    else if (!sent) countDrop(entry.counters, 'send-error');
    // Leaving the ISP: an egress-PoP entry hands the packet to the next ISP or the destination.
    else if (entry.kind !== 'internal') countOut(entry.counters, buf.length - start);
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
  trySend(buf: Buffer, port: number, host: string, offset = 0): boolean {
    try {
      this.out.send(buf, port, host, offset);
      return true;
    } catch {
      // Counted, not logged: this is the packet path (EAGAIN on a full buffer, a bad target).
      this.drops.add('send-error');
      return false;
    }
  }
}

/**
 * Removes the first tag of the stack in place: the fixed header moves up by one tag over it, with
 * one tag fewer in its flags. Returns where the packet now starts. No bytes of the payload move.
 */
function popTag(buf: Buffer): number {
  const left = tagCount(buf) - 1;
  buf.copyWithin(TAG_LENGTH, 0, HEADER_LENGTH);
  buf[TAG_LENGTH + OFFSET_FLAGS] = tagFlags(left);
  return TAG_LENGTH;
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
