import { DEFAULT_HOP_LIMIT, encodeInto, HEADER_LENGTH, MAX_DATAGRAM, PacketType } from '../wire/header.js';
import type { UdpAddress } from '../wire/address.js';
import type { Hop } from './table.js';

/**
 * Wraps what an unmodified destination sent back (a UDP server's datagram, an IP packet routed into
 * the egress TUN) in a DATA header with the return circuit's authenticator, and sends it to that
 * circuit's active ingress router. One per delivery service: the scratch buffer is its own.
 */
export class ReturnPathSender {
  private readonly scratch = Buffer.allocUnsafe(MAX_DATAGRAM);
  /**
   * This router's own address, once bound. When the return circuit enters the ISP at this very
   * router (a deliver circuit's return path usually starts at the egress PoP), the packet goes to
   * it rather than to the hop's active address: after a sibling died, that address is the dead
   * router until a repair moves it, and the answers would be lost meanwhile.
   */
  self: UdpAddress | undefined;

  constructor(private readonly send: (packet: Buffer, port: number, host: string) => void) {}

  /** False when there is no return path to send into, or the payload cannot fit one datagram. */
  wrapAndSend(reply: Hop | undefined, sequence: bigint, payload: Buffer): boolean {
    let to = reply?.addresses[reply.active];
    if (!reply || !to || !reply.auth || payload.length > MAX_DATAGRAM - HEADER_LENGTH) return false;
    const me = this.self;
    if (me !== undefined)
      for (const a of reply.addresses)
        if (a.port === me.port && a.host === me.host) {
          to = a;
          break;
        }
    const n = encodeInto(
      { type: PacketType.Data, hopLimit: DEFAULT_HOP_LIMIT, authenticator: reply.auth, sequence, payload },
      this.scratch,
    );
    // The socket sends later: it gets its own copy, the scratch is reused at once.
    this.send(Buffer.from(this.scratch.subarray(0, n)), to.port, to.host);
    return true;
  }
}
