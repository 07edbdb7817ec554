/**
 * The IPC protocol between `arrow bench forward` and its worker processes.
 * Control travels over the Node IPC channel that startComponent opens, never over
 * the measured UDP sockets, so it cannot disturb the packet counts.
 */

export type WorkerRole = 'sender' | 'sink' | 'relay';
export const WORKER_ROLES: readonly WorkerRole[] = ['sender', 'sink', 'relay'];

/** What the sender puts in each datagram: raw bytes (baseline) or an ARROW DATA packet. */
export type Payload = { kind: 'raw' } | { kind: 'arrow'; auth: string };

/** Parent → sender: blast `size`-byte datagrams at `target` until told to stop (or a safety bound is hit). */
export interface BlastRequest {
  op: 'blast';
  id: number;
  target: string;
  size: number;
  payload: Payload;
  /** Safety bounds, so a lost `stop` cannot leave a sender flooding loopback. */
  maxMs: number;
  maxPackets: number;
}

/** Parent → sender: end blast `id`; the sender answers with a `stopped` carrying the same id. */
export interface StopRequest {
  op: 'stop';
  id: number;
}

/** Parent → sink: count what arrives in [now + warmupMs, now + warmupMs + durationMs]. */
export interface MeasureRequest {
  op: 'measure';
  id: number;
  warmupMs: number;
  durationMs: number;
}

export type Request = BlastRequest | StopRequest | MeasureRequest;

/** Why a blast ended. Anything but `stop` means it ended before the parent asked, so the window may be short. */
export type StopReason = 'stop' | 'time' | 'count';

export interface BlastStarted {
  op: 'started';
  id: number;
}

export interface BlastDone {
  op: 'stopped';
  id: number;
  sent: number;
  /** Send errors reported by the socket (e.g. ECONNREFUSED from an ICMP unreachable). */
  errors: number;
  seconds: number;
  reason: StopReason;
}

export interface Measured {
  op: 'measured';
  id: number;
  packets: number;
  bytes: number;
  /** The window as the sink's clock saw it; timers fire late under load, so this is what pps divides by. */
  seconds: number;
}

export interface Failed {
  op: 'failed';
  id: number;
  message: string;
}

export type Reply = BlastStarted | BlastDone | Measured | Failed;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

/** Narrows an IPC message to a request; anything else (e.g. a stray message) is ignored by the worker. */
export function isRequest(v: unknown): v is Request {
  return (
    isRecord(v) && typeof v.id === 'number' && (v.op === 'blast' || v.op === 'stop' || v.op === 'measure')
  );
}

export function isReply(v: unknown): v is Reply {
  return (
    isRecord(v) &&
    typeof v.id === 'number' &&
    (v.op === 'started' || v.op === 'stopped' || v.op === 'measured' || v.op === 'failed')
  );
}
