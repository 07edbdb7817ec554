import { formatAddress } from '../wire/address.js';
import {
  decodeProbeRequest,
  encodeTraceReply,
  payloadDigest,
  type HopAction,
  type TraceHop,
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
import type { Entry, Hop } from './table.js';

export type Send = (packet: Buffer, port: number, host: string) => void;

/** Who a router is, as its trace replies name it. */
export interface RouterIdentity {
  isp: string;
  pop: string;
  router: string;
}

/** Replies never carry an authenticator: an internal one must not reach customers (docs/wire.md). */
const NO_AUTH = new Uint8Array(AUTH_LENGTH);

/**
 * A router's answer to a TRACE: one TRACE_REPLY straight to the originator the trace
 * names, saying who this router is and what it did with the trace. The data plane has
 * already applied the probe rate limits and does the forwarding itself.
 */
export class TraceResponder {
  constructor(
    private readonly who: RouterIdentity,
    /** The router's bound address, known once its socket is up. */
    private readonly address: () => string,
    private readonly send: Send,
  ) {}

  readonly answer = (
    buf: Buffer,
    entry: Entry,
    hopLimit: number,
    next: Hop | undefined,
  ): DropReason | undefined => {
    const payload = buf.subarray(headerLength(buf));
    const request = decodeProbeRequest(payload);
    if (!request) return 'bad-payload';
    const to = next?.keys[next.active];
    const end = entry.kind === 'deliver-endpoint' || to === undefined;
    // A ping (not every hop) is answered only where the trace ends.
    if (!request.everyHop && !end) return undefined;
    let action: HopAction = entry.kind;
    if ((entry.kind === 'deliver-udp' || entry.kind === 'deliver-ip') && next !== undefined)
      action = 'return';
    const hop: TraceHop = {
      hopIndex: request.initialHopLimit - hopLimit + 1,
      hopLimit,
      action,
      turning: action === 'return',
      end,
      ...this.who,
      address: this.address(),
      next:
        to ??
        (entry.kind === 'deliver-udp'
          ? formatAddress(entry.target)
          : entry.kind === 'deliver-ip'
            ? entry.prefixes.prefixes.map((p) => `${p.network}/${p.length}`).join(',')
            : ''),
      // The payload as it arrived here, before this router forwards it (it never changes it).
      ...(request.digest ? { digest: payloadDigest(payload) } : {}),
    };
    const reply = encode({
      type: PacketType.TraceReply,
      hopLimit: DEFAULT_HOP_LIMIT,
      authenticator: NO_AUTH,
      sequence: buf.readBigUInt64BE(OFFSET_SEQUENCE),
      payload: encodeTraceReply(hop),
    });
    this.send(reply, request.originator.port, request.originator.host);
    return undefined;
  };
}
