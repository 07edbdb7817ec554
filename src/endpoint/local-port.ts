import { createSocket, type Socket } from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { formatAddress, mustParseAddress, type UdpAddress } from '../wire/address.js';

/** Binds a UDP socket to `host:port` (port 0 picks one) and returns it with the address it got. */
export async function bindUdp(listen: string): Promise<{ socket: Socket; address: string }> {
  const at = mustParseAddress(listen, { bind: true });
  const socket = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(at.port, at.host, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  const a = socket.address() as AddressInfo;
  return { socket, address: formatAddress({ host: a.address, port: a.port }) };
}

/** What a local port forwards into: an Endpoint on one path, or a Connection over several. */
export interface Channel {
  send(payload: Uint8Array): unknown;
  on(event: 'data', listener: (payload: Buffer) => void): unknown;
}

/**
 * The local UDP port unmodified clients send to: datagrams go into the channel, and whatever
 * the channel delivers goes back to the client that spoke last. One client at a time: a second
 * client would need its own circuit.
 */
export class LocalPort {
  private client: UdpAddress | undefined;
  readonly counters = { fromClient: 0, toClient: 0 };

  private constructor(
    private readonly socket: Socket,
    readonly address: string,
  ) {}

  static async bind(listen: string): Promise<LocalPort> {
    const { socket, address } = await bindUdp(listen);
    return new LocalPort(socket, address);
  }

  attach(channel: Channel): void {
    this.socket.on('message', (msg, rinfo) => {
      this.client = { host: rinfo.address, port: rinfo.port };
      this.counters.fromClient++;
      channel.send(msg);
    });
    channel.on('data', (payload) => {
      if (!this.client) return;
      this.counters.toClient++;
      this.socket.send(payload, this.client.port, this.client.host);
    });
  }

  close(): void {
    this.socket.close();
  }
}
