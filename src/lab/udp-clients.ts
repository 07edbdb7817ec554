import { createSocket, type Socket } from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';
import { mustParseAddress } from '../wire/address.js';

/**
 * Progress lines, one JSON object a line on stdout before the result: `sending` once every socket
 * is bound and the first datagrams are out, `answered` once every client has had a reply. A
 * driver that times a failure counts from these, not from spawning this process: starting Node
 * takes from a few hundred ms on a warm machine to over a second on a cold or busy one.
 */
export interface UdpClientsEvent {
  event: 'sending' | 'answered';
  /** Wall-clock ms (timeOrigin + now), comparable across processes. */
  at: number;
}

export interface UdpClientsResult {
  /** Per client: when each reply arrived, wall-clock ms (timeOrigin + now, comparable across processes). */
  replies: number[][];
  /** Per client: the round number each reply carried, in the order of `replies`. */
  echoed: number[][];
  /** When round n went out to every client, wall-clock ms. */
  roundsAt: number[];
  sent: number[];
  /** Socket errors per client (ICMP unreachables). */
  errors: number[];
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
  onEvent?: (e: UdpClientsEvent) => void;
}): Promise<UdpClientsResult> {
  const host = mustParseAddress(`${o.target}:1`).host;
  const replies: number[][] = Array.from({ length: o.count }, () => []);
  const wall = (): number => performance.timeOrigin + performance.now();
  let waiting = o.count;
  const echoed: number[][] = Array.from({ length: o.count }, () => []);
  const roundsAt: number[] = [];
  const onReply = (i: number, msg: Buffer): void => {
    const at = wall();
    if (msg.length < 4) return;
    if (replies[i]!.length === 0 && --waiting === 0) o.onEvent?.({ event: 'answered', at });
    replies[i]!.push(at);
    echoed[i]!.push(msg.readUInt32BE(0));
  };
  const sent: number[] = Array.from({ length: o.count }, () => 0);
  const errors: number[] = Array.from({ length: o.count }, () => 0);
  const sockets: Socket[] = [];
  for (let i = 0; i < o.count; i++) {
    const s = createSocket('udp4');
    s.on('message', (msg) => onReply(i, msg));
    // An ICMP unreachable (the path not up yet) surfaces as an error on the socket: counted, not fatal.
    s.on('error', () => errors[i]!++);
    await new Promise<void>((r) => s.bind(0, () => r()));
    sockets.push(s);
  }
  const payload = Buffer.alloc(64);
  // The clock starts when the sockets are ready, so --duration is the time spent sending.
  const start = performance.now();
  for (let n = 0; performance.now() - start < o.durationMs; n++) {
    payload.writeUInt32BE(n, 0);
    roundsAt.push(wall());
    sockets.forEach((s, i) => {
      s.send(payload, o.basePort + i, host);
      sent[i]!++;
    });
    if (n === 0) o.onEvent?.({ event: 'sending', at: wall() });
    const next = start + (n + 1) * o.intervalMs;
    await sleep(Math.max(0, next - performance.now()));
  }
  await sleep(500);
  for (const s of sockets) s.close();
  return { replies, echoed, roundsAt, sent, errors };
}
