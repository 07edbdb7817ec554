import type { Diagnostics, DropReason } from './dataplane.js';
import { LastLegService } from './last-leg.js';
import { EchoRelay } from './relay.js';
import { TraceResponder, type RouterIdentity, type Send } from './trace.js';
import type { Entry, Hop } from './table.js';
import type { UdpDelivery } from './udp-delivery.js';

/**
 * A router's path diagnostics (docs/diagnostics.md) behind the data plane's one interface:
 * trace replies, the last-leg ping service and the relayed echo.
 */
export class RouterDiagnostics implements Diagnostics {
  readonly tracer: TraceResponder;
  readonly lastLegs: LastLegService;
  readonly relays: EchoRelay;
  private delivery: UdpDelivery | undefined;

  constructor(who: RouterIdentity, address: () => string, send: Send) {
    this.tracer = new TraceResponder(who, address, send);
    this.lastLegs = new LastLegService((entry, payload) => this.delivery?.deliver(entry, payload), send);
    this.relays = new EchoRelay(send);
  }

  /** The circuits' UDP sockets, once the router has them: the last leg sends and listens there. */
  attach(delivery: UdpDelivery): void {
    this.delivery = delivery;
    delivery.onServerReply = this.lastLegs.serverReplied;
  }

  trace(buf: Buffer, entry: Entry, hopLimit: number, next: Hop | undefined): DropReason | undefined {
    return this.tracer.answer(buf, entry, hopLimit, next);
  }
  lastLeg(buf: Buffer, entry: Entry): DropReason | undefined {
    return this.lastLegs.request(buf, entry);
  }
  relay(buf: Buffer, fromPort: number, fromHost: string): DropReason | undefined {
    return this.relays.request(buf, fromPort, fromHost);
  }
  echoReply(buf: Buffer, fromPort: number, fromHost: string): DropReason | undefined {
    return this.relays.reply(buf, fromPort, fromHost);
  }

  close(): void {
    this.lastLegs.close();
  }
}
