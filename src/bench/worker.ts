import { createSocket, type Socket } from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { announceReady } from '../util/ready.js';
import { authToBytes } from '../wire/authenticator.js';
import { formatAddress, mustParseAddress } from '../wire/address.js';
import { DEFAULT_HOP_LIMIT, HEADER_LENGTH, PacketType, encodeInto } from '../wire/header.js';
import {
  WORKER_ROLES,
  isRequest,
  type BlastRequest,
  type MeasureRequest,
  type Payload,
  type Reply,
  type Request,
  type StopReason,
  type WorkerRole,
} from './protocol.js';

/** Same as the router's default socketBufferBytes, so the baseline relay and the sink queue like a router does. */
export const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

/** Datagrams sent per turn of the event loop: big enough to amortise setImmediate, small enough to keep IPC responsive. */
const BATCH = 64;
/**
 * Send requests libuv may hold before the sender stops adding more. On loopback sends
 * almost always complete synchronously; this only bounds memory if they do not.
 */
const MAX_SEND_QUEUE = 1024;

export interface WorkerOptions {
  listen: string;
  /** Relay only: where every datagram goes. */
  target?: string;
}

/** `arrow bench-worker <role>`: one process of the forwarding benchmark, controlled over IPC. */
export async function runBenchWorker(role: string, o: WorkerOptions): Promise<void> {
  if (!isRole(role))
    throw new Error(`unknown bench worker role ${JSON.stringify(role)}; one of ${WORKER_ROLES.join(', ')}`);
  if (role !== 'relay' && !process.send)
    throw new Error(`bench-worker ${role} is driven over IPC by arrow bench forward`);
  const socket = await bindSocket(o.listen);
  const a = socket.address() as AddressInfo;
  const address = formatAddress({ host: a.address, port: a.port });

  let onRequest: (req: Request) => void;
  switch (role) {
    case 'relay':
      startRelay(socket, requireTarget(o.target));
      onRequest = (req) => reply({ op: 'failed', id: req.id, message: 'the relay takes no requests' });
      break;
    case 'sink':
      onRequest = sinkHandler(socket);
      break;
    case 'sender':
      onRequest = senderHandler(socket);
      break;
  }
  process.on('message', (m: unknown) => {
    if (isRequest(m)) onRequest(m);
  });

  const shutdown = async (): Promise<void> => process.exit(0);
  process.once('SIGTERM', () => void shutdown());
  process.once('SIGINT', () => void shutdown());
  announceReady({ address }, shutdown);
  if (!process.send) console.log(`bench ${role} on ${address}`);
}

function isRole(s: string): s is WorkerRole {
  return (WORKER_ROLES as readonly string[]).includes(s);
}

function requireTarget(target: string | undefined): { host: string; port: number } {
  if (target === undefined) throw new Error('bench-worker relay needs --target HOST:PORT');
  return mustParseAddress(target);
}

function reply(r: Reply): void {
  process.send?.(r);
}

async function bindSocket(listen: string): Promise<Socket> {
  const at = mustParseAddress(listen, { bind: true });
  const socket = createSocket({
    type: 'udp4',
    recvBufferSize: SOCKET_BUFFER_BYTES,
    sendBufferSize: SOCKET_BUFFER_BYTES,
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(at.port, at.host, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  return socket;
}

/**
 * The baseline: a UDP relay written the simplest way. It is what ARROW's per-packet
 * work (header check, table lookup, rewrite) is compared against.
 */
function startRelay(socket: Socket, to: { host: string; port: number }): void {
  countErrors(socket, 'relay');
  socket.on('message', (m) => socket.send(m, to.port, to.host));
}

/**
 * Socket errors (an ICMP unreachable surfacing as ECONNREFUSED) must not kill a worker mid-run;
 * they are counted and the first, and then every 1000th, goes to the worker's log.
 */
function countErrors(socket: Socket, role: string): void {
  let errors = 0;
  socket.on('error', (err) => {
    if (errors++ % 1000 === 0) console.error(`bench ${role}: socket error ${errors}: ${err.message}`);
  });
}

/** The sink counts every datagram; a measurement reads the counters at both ends of its window. */
function sinkHandler(socket: Socket): (req: Request) => void {
  let packets = 0;
  let bytes = 0;
  countErrors(socket, 'sink');
  socket.on('message', (m) => {
    packets++;
    bytes += m.length;
  });

  const measure = (req: MeasureRequest): void => {
    // Warm-up is skipped: sockets, JIT and the relays' queues settle before the window opens.
    setTimeout(() => {
      const p0 = packets;
      const b0 = bytes;
      const t0 = performance.now();
      setTimeout(() => {
        const seconds = (performance.now() - t0) / 1000;
        reply({ op: 'measured', id: req.id, packets: packets - p0, bytes: bytes - b0, seconds });
      }, req.durationMs);
    }, req.warmupMs);
  };

  return (req) => {
    if (req.op === 'measure') measure(req);
    else reply({ op: 'failed', id: req.id, message: `the sink does not handle ${req.op}` });
  };
}

/** Builds the one datagram a blast sends over and over: raw bytes, or an ARROW DATA packet of the same total size. */
export function buildDatagram(size: number, payload: Payload): Buffer {
  if (payload.kind === 'raw') return Buffer.alloc(size, 0x61);
  if (size < HEADER_LENGTH)
    throw new Error(`an ARROW datagram needs at least ${HEADER_LENGTH} bytes, asked for ${size}`);
  const buf = Buffer.alloc(size);
  encodeInto(
    {
      type: PacketType.Data,
      hopLimit: DEFAULT_HOP_LIMIT,
      authenticator: authToBytes(payload.auth),
      sequence: 0n,
      payload: new Uint8Array(size - HEADER_LENGTH),
    },
    buf,
  );
  return buf;
}

interface Blast {
  id: number;
  stopRequested: boolean;
}

/**
 * The sender: one blast at a time, from one connected socket (no per-send address
 * handling), reusing one Buffer. It yields between batches so IPC (the `stop`) and
 * socket errors get through.
 */
function senderHandler(socket: Socket): (req: Request) => void {
  let errors = 0;
  // ECONNREFUSED (an ICMP port unreachable) surfaces as a socket error on a connected socket; count, don't die.
  socket.on('error', () => errors++);
  let active: Blast | undefined;

  const start = async (req: BlastRequest): Promise<void> => {
    if (active) return reply({ op: 'failed', id: req.id, message: `blast ${active.id} is still running` });
    const blast: Blast = { id: req.id, stopRequested: false };
    active = blast;
    let buf: Buffer;
    try {
      buf = buildDatagram(req.size, req.payload);
      const to = mustParseAddress(req.target);
      await new Promise<void>((resolve) => socket.connect(to.port, to.host, resolve));
    } catch (err) {
      active = undefined;
      throw err;
    }
    errors = 0;
    reply({ op: 'started', id: req.id });
    const started = performance.now();
    let sent = 0;

    const finish = (reason: StopReason): void => {
      const seconds = (performance.now() - started) / 1000;
      socket.disconnect();
      active = undefined;
      reply({ op: 'stopped', id: req.id, sent, errors, seconds, reason });
    };
    // The hot loop: no allocation per datagram, only the reused `buf`.
    const turn = (): void => {
      if (blast.stopRequested) return finish('stop');
      if (sent >= req.maxPackets) return finish('count');
      if (performance.now() - started >= req.maxMs) return finish('time');
      if (socket.getSendQueueCount() < MAX_SEND_QUEUE) {
        const n = Math.min(BATCH, req.maxPackets - sent);
        for (let i = 0; i < n; i++) socket.send(buf);
        sent += n;
      }
      setImmediate(turn);
    };
    setImmediate(turn);
  };

  return (req) => {
    switch (req.op) {
      case 'blast':
        start(req).catch((err: unknown) =>
          reply({ op: 'failed', id: req.id, message: (err as Error).message }),
        );
        break;
      case 'stop':
        if (active?.id === req.id) active.stopRequested = true;
        else reply({ op: 'failed', id: req.id, message: `blast ${req.id} is not running` });
        break;
      default:
        reply({ op: 'failed', id: req.id, message: `the sender does not handle ${req.op}` });
    }
  };
}
