import { formatAddress, type UdpAddress } from '../wire/address.js';
import {
  decodeProbeRequest,
  encodeLastLegReply,
  probeRequestBody,
  type LastLegResult,
} from '../wire/diagnostics.js';
import {
  AUTH_LENGTH,
  DEFAULT_HOP_LIMIT,
  encode,
  headerLength,
  OFFSET_SEQUENCE,
  PacketType,
} from '../wire/header.js';
import type { DropReason } from './dataplane.js';
import type { Entry } from './table.js';
import type { Send } from './trace.js';

/** Default wait for the server when the request says 0. */
const DEFAULT_TIMEOUT_MS = 1000;
/** Last-leg pings waiting at once on one router; more are answered `busy`. */
export const MAX_PENDING_LAST_LEGS = 1024;

const NO_AUTH = new Uint8Array(AUTH_LENGTH);

interface Pending {
  originator: UdpAddress;
  sequence: bigint;
  target: string;
  sentAt: number;
  timer: NodeJS.Timeout;
}

/** Sends a payload from a circuit's own socket to the circuit's target (UdpDelivery.deliver). */
export type DeliverUdp = (entry: Entry & { kind: 'deliver-udp' }, payload: Buffer) => void;

/**
 * The ping service at egress PoPs. At the last router of a circuit that delivers to an
 * unmodified UDP server, a LAST_LEG sends the customer's datagram from the circuit's own
 * socket to the circuit's own target, and reports the RTT of the first datagram the server
 * sends back to that socket (or a timeout). The target is never taken from the packet, so
 * the service cannot be aimed at any other host. One ping waits per circuit at a time.
 */
export class LastLegService {
  private readonly pending = new Map<string, Pending>();
  private readonly clock = (): number => performance.now();

  constructor(
    private readonly deliver: DeliverUdp,
    private readonly send: Send,
  ) {}

  readonly request = (buf: Buffer, entry: Entry): DropReason | undefined => {
    const payload = buf.subarray(headerLength(buf));
    const req = decodeProbeRequest(payload);
    if (!req) return 'bad-payload';
    const sequence = buf.readBigUInt64BE(OFFSET_SEQUENCE);
    if (entry.kind !== 'deliver-udp') {
      this.answer(req.originator, sequence, { status: 'not-udp', target: '' });
      return undefined;
    }
    const target = formatAddress(entry.target);
    if (this.pending.has(entry.circuit) || this.pending.size >= MAX_PENDING_LAST_LEGS) {
      this.answer(req.originator, sequence, { status: 'busy', target });
      return undefined;
    }
    const circuit = entry.circuit;
    const timer = setTimeout(() => {
      const p = this.pending.get(circuit);
      if (p?.sequence !== sequence) return;
      this.pending.delete(circuit);
      this.answer(p.originator, p.sequence, { status: 'timeout', target });
    }, req.timeoutMs || DEFAULT_TIMEOUT_MS);
    timer.unref();
    this.pending.set(circuit, { originator: req.originator, sequence, target, sentAt: this.clock(), timer });
    // Its own copy: the packet buffer is the socket's, and send() reads it later.
    this.deliver(entry, Buffer.from(probeRequestBody(payload)));
    return undefined;
  };

  /**
   * Every datagram a server sends back on a circuit's socket passes here before it goes
   * into the return path as usual: the first one after a last-leg ping answers it.
   */
  readonly serverReplied = (circuit: string, payload: Buffer): void => {
    if (this.pending.size === 0) return;
    const p = this.pending.get(circuit);
    if (!p) return;
    const rttMs = this.clock() - p.sentAt;
    clearTimeout(p.timer);
    this.pending.delete(circuit);
    this.answer(p.originator, p.sequence, {
      status: 'reply',
      target: p.target,
      rttMs,
      replyLength: payload.length,
      reply: payload,
    });
  };

  close(): void {
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
  }

  private answer(
    to: UdpAddress,
    sequence: bigint,
    r: Pick<LastLegResult, 'status' | 'target'> & Partial<LastLegResult>,
  ): void {
    const payload = encodeLastLegReply({ rttMs: 0, replyLength: 0, reply: new Uint8Array(0), ...r });
    this.send(
      encode({
        type: PacketType.LastLegReply,
        hopLimit: DEFAULT_HOP_LIMIT,
        authenticator: NO_AUTH,
        sequence,
        payload,
      }),
      to.port,
      to.host,
    );
  }
}
