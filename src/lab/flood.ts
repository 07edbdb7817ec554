import { createSocket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { mustParseAddress } from '../wire/address.js';
import { LAB_NET } from './netns.js';

/** The most a flood may send, per target: a bound on what a lab experiment can unleash. */
export const MAX_FLOOD_PPS = 50_000;
export const MAX_FLOOD_SECONDS = 120;

export interface FloodResult {
  /** Datagrams sent per target, in the order given. */
  sent: number[];
  /** Send errors (a full socket buffer, an ICMP unreachable). */
  errors: number;
  seconds: number;
}

/** Lab addresses only: the netns lab's 10.77.0.0/16 or loopback. Throws for anything else. */
export function assertLabTarget(target: string): void {
  const { host } = mustParseAddress(target);
  if (!host.startsWith(`${LAB_NET}.`) && !host.startsWith('127.'))
    throw new Error(
      `flood target ${target}: only lab addresses (${LAB_NET}.0.0/16, 127.0.0.0/8) may be flooded`,
    );
}

/**
 * The attacker of `arrow lab experiment dos`: random datagrams of `size` bytes (not ARROW: the
 * attacker holds no authenticator) at `pps` per target, for `seconds`. Paced every millisecond
 * from the clock, so a late timer catches up instead of lowering the rate; bounded in rate, time
 * and targets (lab addresses only).
 */
export async function flood(o: {
  targets: string[];
  pps: number;
  seconds: number;
  size: number;
  /** Told when the first datagrams are out (wall-clock ms), as the run starts: the driver times from it. */
  onStart?: (at: number) => void;
}): Promise<FloodResult> {
  if (o.targets.length === 0) throw new Error('name at least one flood target');
  for (const t of o.targets) assertLabTarget(t);
  if (!(o.pps > 0 && o.pps <= MAX_FLOOD_PPS)) throw new Error(`--pps must be 1..${MAX_FLOOD_PPS}`);
  if (!(o.seconds > 0 && o.seconds <= MAX_FLOOD_SECONDS))
    throw new Error(`--seconds must be above 0 and at most ${MAX_FLOOD_SECONDS}`);
  if (!(Number.isInteger(o.size) && o.size >= 1 && o.size <= 1472)) throw new Error('--size must be 1..1472');
  const to = o.targets.map((t) => mustParseAddress(t));
  const socket = createSocket({ type: 'udp4', sendBufferSize: 4 * 1024 * 1024 });
  let errors = 0;
  // Counted, not fatal: an unreachable target or a full buffer is part of flooding.
  socket.on('error', () => errors++);
  await new Promise<void>((r) => socket.bind(0, () => r()));
  const payload = randomBytes(o.size);
  const sent = to.map(() => 0);
  const start = performance.now();
  let stopped = false;
  let started = false;
  const stop = (): void => {
    stopped = true;
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  const onSent = (err: Error | null): void => {
    if (err) errors++;
  };
  for (;;) {
    const elapsed = (performance.now() - start) / 1000;
    if (stopped || elapsed >= o.seconds) break;
    const due = Math.floor(elapsed * o.pps);
    // At most 50 ms' worth at once: after a long stall, catch up without one giant burst.
    const cap = Math.max(1, Math.ceil(o.pps / 20));
    for (let i = 0; i < to.length; i++) {
      const n = Math.min(cap, due - sent[i]!);
      for (let j = 0; j < n; j++) socket.send(payload, to[i]!.port, to[i]!.host, onSent);
      sent[i]! += Math.max(0, n);
    }
    if (!started) {
      started = true;
      o.onStart?.(performance.timeOrigin + performance.now());
    }
    await sleep(1);
  }
  const seconds = (performance.now() - start) / 1000;
  await sleep(50);
  socket.close();
  process.off('SIGTERM', stop);
  process.off('SIGINT', stop);
  return { sent, errors, seconds };
}
