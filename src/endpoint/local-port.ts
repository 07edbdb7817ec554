import { createSocket, type Socket } from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { formatAddress, mustParseAddress, type UdpAddress } from '../wire/address.js';

/**
 * Socket buffers of an endpoint's sockets, as a router's default (socketBufferBytes). The kernel's
 * default receive buffer (208 KB, ~140 full-size datagrams) overflows under a TCP burst through a
 * TUN pair: `arrow lab experiment hops` lost 18% of its datagrams there (UdpRcvbufErrors) while the
 * endpoint's process was 36% busy, and TCP then ran at 1% of the path's rate. Capped by the
 * kernel's net.core.rmem_max and wmem_max.
 */
export const ENDPOINT_SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

/** Binds a UDP socket to `host:port` (port 0 picks one) and returns it with the address it got. */
export async function bindUdp(listen: string): Promise<{ socket: Socket; address: string }> {
  const at = mustParseAddress(listen, { bind: true });
  const socket = createSocket({
    type: 'udp4',
    recvBufferSize: ENDPOINT_SOCKET_BUFFER_BYTES,
    sendBufferSize: ENDPOINT_SOCKET_BUFFER_BYTES,
  });
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
