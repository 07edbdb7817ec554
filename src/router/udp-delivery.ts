import { createSocket, type Socket } from 'node:dgram';
import { ReturnPathSender } from './return-path.js';
import type { UdpAddress } from '../wire/address.js';
import type { Entry } from './table.js';
import type { DropCounters } from './dataplane.js';

type UdpEntry = Entry & { kind: 'deliver-udp' };

/**
 * The last hop to an unmodified UDP server. Each circuit gets its own socket, so
 * the server sees one stable client address per circuit, and whatever the server
 * sends back to that socket is the circuit's reply traffic: we wrap it in an ARROW
 * header and send it into the circuit's paired return path.
 */
export class UdpDelivery {
  private readonly sockets = new Map<string, { socket: Socket; entry: UdpEntry; sequence: bigint }>();
  private readonly returnPath: ReturnPathSender;
  /** Sees every datagram a server sends back, before it goes into the return path (the last-leg ping). */
  onServerReply: ((circuit: string, payload: Buffer) => void) | undefined;

  constructor(
    private readonly bindHost: string,
    send: (packet: Buffer, port: number, host: string) => void,
    private readonly drops: DropCounters,
  ) {
    this.returnPath = new ReturnPathSender(send);
  }

  /** This router's bound address: return traffic enters the return circuit here when it can (ReturnPathSender). */
  set self(address: UdpAddress) {
    this.returnPath.self = address;
  }

  deliver(entry: UdpEntry, payload: Buffer): void {
    let s = this.sockets.get(entry.circuit);
    if (!s) {
      const socket = createSocket('udp4');
      s = { socket, entry, sequence: 0n };
      const state = s;
      socket.on('message', (msg) => this.reply(state, msg));
      socket.on('error', () => this.drops.add('send-error'));
      socket.bind(0, this.bindHost);
      this.sockets.set(entry.circuit, s);
    }
    s.entry = entry; // the table may have re-compiled the entry (chain): follow it
    s.socket.send(payload, entry.target.port, entry.target.host);
  }

  private reply(state: { entry: UdpEntry; sequence: bigint }, payload: Buffer): void {
    this.onServerReply?.(state.entry.circuit, payload);
    if (!this.returnPath.wrapAndSend(state.entry.reply, state.sequence++, payload))
      this.drops.add('no-reply-path');
  }

  release(circuit: string): void {
    const s = this.sockets.get(circuit);
    if (!s) return;
    this.sockets.delete(circuit);
    s.socket.close();
  }

  close(): void {
    for (const c of [...this.sockets.keys()]) this.release(c);
  }
}
