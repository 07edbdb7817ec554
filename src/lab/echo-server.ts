import { createSocket, type Socket } from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { formatAddress, mustParseAddress } from '../wire/address.js';

/**
 * A plain UDP echo server that knows nothing about ARROW: it stands in for any
 * unmodified application server at the far end of a circuit.
 */
export async function startEchoServer(listen: string): Promise<{ address: string; socket: Socket }> {
  const at = mustParseAddress(listen, { bind: true });
  const socket = createSocket('udp4');
  socket.on('message', (msg, rinfo) => socket.send(msg, rinfo.port, rinfo.address));
  socket.on('error', () => {});
  await new Promise<void>((resolve) => socket.bind(at.port, at.host, () => resolve()));
  const a = socket.address() as AddressInfo;
  return { address: formatAddress({ host: a.address, port: a.port }), socket };
}
