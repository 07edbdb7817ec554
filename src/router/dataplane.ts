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
import type { Entry, ForwardingTable, Hop } from './table.js';

/** Why a packet was dropped. Each reason has its own counter. */
export type DropReason =
  | DecodeErrorCode
  | 'unknown-auth'
  | 'hop-limit'
  | 'unexpected-type'
  | 'no-next-hop'
  | 'no-reply-path'
  | 'send-error';

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
  'send-error',
];

/** The I/O the data plane needs, and nothing more: sockets live behind it. */
export interface Output {
  send(packet: Buffer, port: number, host: string): void;
  /** Send a decapsulated payload to an unmodified UDP server from the circuit's own socket. */
  deliverUdp(entry: Entry & { kind: 'deliver-udp' }, payload: Buffer): void;
}

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
}

/**
 * The packet path. `process` takes one datagram through a fixed sequence of
 * checks (well-formed, type, known authenticator, hop limit) and then performs
 * the circuit's action by rewriting the header in place. It never throws and
 * never awaits: the table is a Map that the store sync updates between packets.
 */
export class DataPlane {
  readonly drops = new DropCounters();
  readonly handled: HandledCounters = { data: 0, probes: 0, probeAcks: 0, echoes: 0 };

  constructor(
    private readonly table: ForwardingTable,
    private readonly out: Output,
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
    if (type === PacketType.ProbeAck) {
      // The next hop acknowledging a probe we forwarded: proof of a live neighbour (used by failover).
      this.handled.probeAcks++;
      return;
    }
    if (type !== PacketType.Data && type !== PacketType.Probe) return this.drops.add('unexpected-type');

    // 3. Known authenticator.
    const entry = this.table.lookup(authKeyFromPacket(buf, OFFSET_AUTH));
    if (entry === undefined) return this.drops.add('unknown-auth');

    // 4. Hop limit: a looped circuit dies here.
    const hops = buf[OFFSET_HOP_LIMIT]!;
    if (hops <= 1) {
      entry.counters.dropped++;
      return this.drops.add('hop-limit');
    }
    buf[OFFSET_HOP_LIMIT] = hops - 1;
    entry.counters.packets++;
    entry.counters.bytes += buf.length;

    // 5. Probes are acked to the previous hop before they travel on.
    if (type === PacketType.Probe) {
      this.handled.probes++;
      const ack = Buffer.from(buf.subarray(0, headerLength(buf)));
      ack[OFFSET_TYPE] = PacketType.ProbeAck;
      this.send(ack, fromPort, fromHost);
      // The unmodified server at the end knows nothing of probes: the last router answers for it.
      if (entry.kind === 'deliver-udp') return;
    } else {
      this.handled.data++;
    }

    // 6. The circuit's action.
    if (entry.kind === 'deliver-udp') {
      return this.out.deliverUdp(entry, buf.subarray(headerLength(buf)));
    }
    this.forward(buf, entry.next, entry);
  }

  private forward(buf: Buffer, next: Hop, entry: Entry): void {
    const to = next.addresses[next.active];
    if (to === undefined) {
      entry.counters.dropped++;
      return this.drops.add('no-next-hop');
    }
    if (next.auth !== undefined) next.auth.copy(buf, OFFSET_AUTH, 0, AUTH_LENGTH);
    this.send(buf, to.port, to.host);
  }

  private send(buf: Buffer, port: number, host: string): void {
    try {
      this.out.send(buf, port, host);
    } catch {
      this.drops.add('send-error');
    }
  }
}
