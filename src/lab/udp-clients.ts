import { createSocket, type Socket } from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';
import { mustParseAddress } from '../wire/address.js';

export interface UdpClientsResult {
  /** Per client: when each reply arrived, wall-clock ms (timeOrigin + now, comparable across processes). */
  replies: number[][];
  sent: number[];
}

/**
 * N plain UDP clients (each its own socket) sending a numbered datagram every `intervalMs` to
 * `target` host, ports `basePort + i`, for `durationMs`, and noting when each echo came back.
 * It stands in for seed 000's UDP client programs; it knows nothing of ARROW.
 */
export async function runUdpClients(o: {
  target: string;
  basePort: number;
  count: number;
  intervalMs: number;
  durationMs: number;
}): Promise<UdpClientsResult> {
  const host = mustParseAddress(`${o.target}:1`).host;
  const start = performance.now();
  const replies: number[][] = Array.from({ length: o.count }, () => []);
  const sent: number[] = Array.from({ length: o.count }, () => 0);
  const sockets: Socket[] = [];
  for (let i = 0; i < o.count; i++) {
    const s = createSocket('udp4');
    s.on('message', () => replies[i]!.push(performance.timeOrigin + performance.now()));
    s.on('error', () => {});
    await new Promise<void>((r) => s.bind(0, () => r()));
    sockets.push(s);
  }
  const payload = Buffer.alloc(64);
  for (let n = 0; performance.now() - start < o.durationMs; n++) {
    payload.writeUInt32BE(n, 0);
    sockets.forEach((s, i) => {
      s.send(payload, o.basePort + i, host);
      sent[i]!++;
    });
    const next = start + (n + 1) * o.intervalMs;
    await sleep(Math.max(0, next - performance.now()));
  }
  await sleep(500);
  for (const s of sockets) s.close();
  return { replies, sent };
}
