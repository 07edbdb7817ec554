import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { formatAddress, mustParseAddress, type UdpAddress } from '../wire/address.js';
import { authToBytes } from '../wire/authenticator.js';
import { midMedian } from '../util/stats.js';
import { bindUdp } from './local-port.js';
import {
  decodeLastLegReply,
  decodeRelayReply,
  decodeTraceReply,
  encodeProbeRequest,
  encodeRelayRequest,
  isIpv4Address,
  MAX_LAST_LEG_TIMEOUT_MS,
  payloadDigest,
  PROBE_REQUEST_LENGTH,
  type HopAction,
  type LastLegStatus,
} from '../wire/diagnostics.js';
import { AUTH_LENGTH, decode, DEFAULT_HOP_LIMIT, encode, PacketType, type Packet } from '../wire/header.js';

/**
 * The customer's side of path diagnostics (docs/diagnostics.md): traceroute and ping
 * along a circuit, the last-leg ping at the egress PoP, and router echoes, direct and
 * relayed (the atlas's PoP-to-PoP measurement). One UDP socket serves any number of
 * concurrent measurements: every request gets its own sequence, and replies are matched
 * by it. RTTs are measured here, from send to arrival, except where a router measures
 * a leg it alone can see (the relay's R1→R2, the last leg's egress→server).
 */

/** A circuit as the diagnostics address it: where to send, and the authenticator it has there. */
export interface CircuitRef {
  /** The first ingress router (`host:port`). */
  ingress: string;
  /** The circuit's customer authenticator at that router (32 hex digits), as `arrow circuits` shows it. */
  auth: string;
}

type Listener = (packet: Packet, arrivedAt: number, size: number) => void;

/** Should our own backlog marker not come back (it never leaves the host), judge after this anyway. */
const MARKER_TIMEOUT_MS = 1000;

export class DiagnosticSocket {
  private sequence = 1n;
  private readonly listeners = new Map<bigint, Listener>();
  /** Datagrams that were not ARROW, or replies nobody waited for. */
  readonly counters = { malformed: 0, unmatched: 0 };
  /**
   * Sent to ourselves to learn when the socket's backlog is read (see `backlogRead`): a random
   * prefix (never an ARROW header: its version byte is not ours) and the number of the marker.
   */
  private readonly markerPrefix = Buffer.concat([Buffer.from('arrow-backlog-marker:'), randomBytes(8)]);
  private markerNumber = 0;
  /** Who waits for the marker in flight, and who waits for the next one. */
  private markerWaiters: (() => void)[] | undefined;
  private nextMarkerWaiters: (() => void)[] = [];
  private markerTimer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    private readonly socket: Socket,
    /** Our own address, named in requests so routers can answer: an IPv4 literal. */
    readonly address: string,
  ) {
    socket.on('message', (msg) => this.receive(msg, performance.now()));
    // ICMP unreachable from a dead router surfaces as a socket error; the timeout reports it.
    socket.on('error', () => {});
  }

  /**
   * Opens a socket. `bind` (`host:port`) must be a specific IPv4 address, because routers
   * answer the address the requests name. Without it, the socket binds to the local
   * address the OS would use to reach `toward` (default 127.0.0.1).
   */
  static async open(opts: { bind?: string; toward?: string } = {}): Promise<DiagnosticSocket> {
    const at = opts.bind
      ? mustParseAddress(opts.bind, { bind: true })
      : {
          host: opts.toward ? await localAddressToward(mustParseAddress(opts.toward)) : '127.0.0.1',
          port: 0,
        };
    if (!isIpv4Address({ host: at.host, port: 1 }))
      throw new Error(`bind address must be a specific IPv4 address, got ${formatAddress(at)}`);
    const { socket, address } = await bindUdp(formatAddress(at));
    return new DiagnosticSocket(socket, address);
  }

  get originator(): UdpAddress {
    return mustParseAddress(this.address);
  }

  /** Sends one packet and calls `listener` for every reply with its sequence until `forget`. */
  send(
    to: string,
    type: PacketType,
    payload: Uint8Array,
    listener: Listener,
    opts: { auth?: string; hopLimit?: number } = {},
  ): { sequence: bigint; sentAt: number } {
    const sequence = this.sequence++;
    const addr = mustParseAddress(to);
    this.listeners.set(sequence, listener);
    const packet = encode({
      type,
      hopLimit: opts.hopLimit ?? DEFAULT_HOP_LIMIT,
      authenticator: opts.auth ? authToBytes(opts.auth) : new Uint8Array(AUTH_LENGTH),
      sequence,
      payload,
    });
    const sentAt = performance.now();
    this.socket.send(packet, addr.port, addr.host);
    return { sequence, sentAt };
  }

  forget(sequence: bigint): void {
    this.listeners.delete(sequence);
  }

  /**
   * Resolves once every datagram that reached our socket before this call has been read.
   *
   * A timer that fires after our event loop was busy (start-up, a GC pause, a loaded machine) would
   * otherwise call replies lost that sit unread in the socket: the timers run before the socket is
   * read. So a wait that ends is judged only after a marker we send ourselves comes back; the socket
   * is a FIFO, so by then everything that arrived before it has been handled. The routers judge their
   * neighbours the same way (src/router/failover.ts).
   */
  backlogRead(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.nextMarkerWaiters.push(resolve);
      if (this.markerWaiters === undefined) this.sendMarker();
    });
  }

  private sendMarker(): void {
    this.markerWaiters = this.nextMarkerWaiters;
    this.nextMarkerWaiters = [];
    const self = mustParseAddress(this.address);
    const marker = Buffer.alloc(this.markerPrefix.length + 4);
    this.markerPrefix.copy(marker);
    marker.writeUInt32BE((this.markerNumber = (this.markerNumber + 1) >>> 0), this.markerPrefix.length);
    this.socket.send(marker, self.port, self.host);
    this.markerTimer = setTimeout(() => this.markerBack(), MARKER_TIMEOUT_MS);
    this.markerTimer.unref();
  }

  private markerBack(): void {
    clearTimeout(this.markerTimer);
    const waiters = this.markerWaiters ?? [];
    this.markerWaiters = undefined;
    for (const w of waiters) w();
    if (this.nextMarkerWaiters.length > 0 && !this.closed) this.sendMarker();
  }

  /**
   * Sends one request and resolves with the first reply `accept` makes a value of
   * (`accept` gets the reply, its arrival and our send time), or undefined after `timeoutMs`.
   */
  request<T>(
    to: string,
    type: PacketType,
    payload: Uint8Array,
    timeoutMs: number,
    accept: (packet: Packet, arrivedAt: number, sentAt: number, size: number) => T | undefined,
    opts: { auth?: string; hopLimit?: number } = {},
  ): Promise<T | undefined> {
    return new Promise((resolve) => {
      const state: { sequence?: bigint; sentAt: number; done: boolean } = { sentAt: 0, done: false };
      // Lost only if no reply is in the socket once our own backlog is read (see backlogRead).
      const timer = setTimeout(
        () =>
          void this.backlogRead().then(() => {
            if (state.done) return;
            state.done = true;
            if (state.sequence !== undefined) this.forget(state.sequence);
            resolve(undefined);
          }),
        timeoutMs,
      );
      const sent = this.send(
        to,
        type,
        payload,
        (p, at, size) => {
          if (state.done) return;
          const v = accept(p, at, state.sentAt, size);
          if (v === undefined) return;
          state.done = true;
          clearTimeout(timer);
          this.forget(sent.sequence);
          resolve(v);
        },
        opts,
      );
      state.sequence = sent.sequence;
      state.sentAt = sent.sentAt;
    });
  }

  /** ECHO to `router`: its RTT in ms, or undefined on timeout (see echoRouter). */
  echo(router: string, timeoutMs: number): Promise<number | undefined> {
    return echoRouter(this, router, { timeoutMs });
  }

  /** Asks `via` to echo `to`: the via↔to RTT as `via` timed it, or undefined when lost (see measureRelay). */
  async relay(via: string, to: string, timeoutMs: number): Promise<number | undefined> {
    return (await measureRelay(this, via, to, { timeoutMs })).rttMs;
  }

  private receive(msg: Buffer, arrivedAt: number): void {
    const p = this.markerPrefix;
    if (msg.length === p.length + 4 && p.equals(msg.subarray(0, p.length))) {
      // An older marker (one we stopped waiting for after MARKER_TIMEOUT_MS) releases nobody.
      if (this.markerWaiters !== undefined && msg.readUInt32BE(p.length) === this.markerNumber)
        this.markerBack();
      return;
    }
    const r = decode(msg);
    if (!r.ok) {
      this.counters.malformed++;
      return;
    }
    const listener = this.listeners.get(r.packet.sequence);
    if (listener) listener(r.packet, arrivedAt, msg.length);
    else this.counters.unmatched++;
  }

  close(): Promise<void> {
    this.closed = true;
    this.listeners.clear();
    // Nothing more will be read: every wait ends now (markerBack sends no new marker once closed).
    this.markerWaiters = [...(this.markerWaiters ?? []), ...this.nextMarkerWaiters];
    this.nextMarkerWaiters = [];
    this.markerBack();
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}

/** The local IPv4 address the OS routes from toward `to` (no packet is sent). */
async function localAddressToward(to: UdpAddress): Promise<string> {
  const s = createSocket('udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.connect(to.port, to.host, () => resolve());
    });
    return (s.address() as AddressInfo).address;
  } finally {
    s.close();
  }
}

// ---- statistics ----------------------------------------------------------------------------------

export interface RttSummary {
  min: number;
  avg: number;
  max: number;
  /** Mean deviation as ping prints it: the standard deviation of the samples. */
  mdev: number;
}

/** min/avg/max/mdev of RTT samples in ms, as ping computes them; undefined with no samples. */
export function summarize(samples: readonly number[]): RttSummary | undefined {
  if (samples.length === 0) return undefined;
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  let sq = 0;
  for (const x of samples) {
    min = Math.min(min, x);
    max = Math.max(max, x);
    sum += x;
    sq += x * x;
  }
  const avg = sum / samples.length;
  return { min, avg, max, mdev: Math.sqrt(Math.max(0, sq / samples.length - avg * avg)) };
}

export function lossPct(sent: number, received: number): number {
  return sent === 0 ? 0 : (100 * (sent - received)) / sent;
}

// ---- router echoes: direct and relayed -----------------------------------------------------------

/** ECHO to one router; resolves with the RTT in ms, or undefined on timeout. */
export function echoRouter(
  sock: DiagnosticSocket,
  router: string,
  opts: { timeoutMs?: number } = {},
): Promise<number | undefined> {
  return sock.request(
    router,
    PacketType.Echo,
    new Uint8Array(0),
    opts.timeoutMs ?? 1000,
    (p, at, sentAt) => (p.type === PacketType.EchoReply ? at - sentAt : undefined),
    { hopLimit: 1 },
  );
}

export interface RelaySample {
  /** R1 → R2 → R1 as R1 measured it: the latency between the two PoPs. Undefined when lost. */
  rttMs: number | undefined;
  /** Requester → R1 → R2 → R1 → requester, measured here. Undefined when lost. */
  totalMs: number | undefined;
}

/** Asks router `r1` to echo router `r2` and report the R1↔R2 round trip. */
export async function measureRelay(
  sock: DiagnosticSocket,
  r1: string,
  r2: string,
  opts: { timeoutMs?: number } = {},
): Promise<RelaySample> {
  const payload = encodeRelayRequest(mustParseAddress(r2));
  const sample = await sock.request(
    r1,
    PacketType.Relay,
    payload,
    opts.timeoutMs ?? 1000,
    (p, at, sentAt) => {
      const r = p.type === PacketType.RelayReply ? decodeRelayReply(p.payload) : undefined;
      return r ? { rttMs: r.rttMs, totalMs: at - sentAt } : undefined;
    },
  );
  return sample ?? { rttMs: undefined, totalMs: undefined };
}

export interface LinkMeasurement {
  r1: string;
  r2: string;
  /** RELAYs to R1 naming R2. `rttMs`: R1↔R2 as R1 measured; `totalMs`: the requester's whole round trip. */
  relayed: { sent: number; received: number; lossPct: number; rttMs: number[]; totalMs: number[] };
  /** ECHOs straight to R1: what the requester's own leg costs and loses. */
  direct: { sent: number; received: number; lossPct: number; rttMs: number[] };
  /**
   * Loss on the R1–R2 link alone: the relayed success rate over the direct one (a relay
   * crosses the requester–R1 leg too), as a percentage. Undefined when R1 never answered.
   */
  linkLossPct: number | undefined;
}

export interface LinkOptions {
  /** Relayed and direct echoes each (default 10). */
  count?: number;
  /** Between one pair of sends and the next (default 100 ms). */
  intervalMs?: number;
  /** Per echo (default 1000 ms). */
  timeoutMs?: number;
}

/**
 * N relayed echoes R1→R2 and N direct echoes to R1, interleaved at a fixed interval
 * without waiting for answers; resolves once every echo is answered or timed out, after
 * at most count × interval + timeout.
 */
export async function measureLink(
  sock: DiagnosticSocket,
  r1: string,
  r2: string,
  opts: LinkOptions = {},
): Promise<LinkMeasurement> {
  const count = opts.count ?? 10;
  const intervalMs = opts.intervalMs ?? 100;
  const timeoutMs = opts.timeoutMs ?? 1000;
  const relays: Promise<RelaySample>[] = [];
  const echoes: Promise<number | undefined>[] = [];
  for (let i = 0; i < count; i++) {
    if (i > 0) await sleep(intervalMs);
    relays.push(measureRelay(sock, r1, r2, { timeoutMs }));
    echoes.push(echoRouter(sock, r1, { timeoutMs }));
  }
  const rs = await Promise.all(relays);
  const es = await Promise.all(echoes);
  const rtt = rs.flatMap((r) => (r.rttMs === undefined ? [] : [r.rttMs]));
  const total = rs.flatMap((r) => (r.totalMs === undefined ? [] : [r.totalMs]));
  const direct = es.filter((x): x is number => x !== undefined);
  const relayedRate = rtt.length / count;
  const directRate = direct.length / count;
  return {
    r1,
    r2,
    relayed: {
      sent: count,
      received: rtt.length,
      lossPct: lossPct(count, rtt.length),
      rttMs: rtt,
      totalMs: total,
    },
    direct: { sent: count, received: direct.length, lossPct: lossPct(count, direct.length), rttMs: direct },
    linkLossPct: directRate === 0 ? undefined : 100 * (1 - Math.min(1, relayedRate / directRate)),
  };
}

// ---- traceroute ----------------------------------------------------------------------------------

export interface TraceOptions {
  /** Traces per run, like traceroute's queries (default 3). */
  queries?: number;
  /** How long to wait for the last reply of a query (default 2000 ms). */
  timeoutMs?: number;
  /** Between queries (default 100 ms): well inside the routers' per-circuit probe budget. */
  intervalMs?: number;
  hopLimit?: number;
  /**
   * Payload integrity per hop (tracebox): the traces carry a random body, and every router
   * reports a digest of the payload as it arrived, so the first hop whose digest differs from
   * the one sent names where the payload was modified.
   */
  integrity?: boolean;
}

/** Bytes of random body an integrity trace carries, so a rewrite of any payload byte shows. */
export const INTEGRITY_BODY_LENGTH = 48;

export interface TraceHopResult {
  /** 1 for the first router. */
  index: number;
  /** Who answered, from the first reply at this index; undefined when no query got one. */
  isp: string | undefined;
  pop: string | undefined;
  router: string | undefined;
  address: string | undefined;
  action: HopAction | undefined;
  /** Where the router sent the trace on (the server for `deliver-udp`). */
  next: string | undefined;
  /** `return` once the trace has turned into the circuit's return path. */
  direction: 'forward' | 'return';
  turning: boolean;
  end: boolean;
  /** One per query: the RTT in ms, or undefined when that query got no answer here. */
  rttMs: (number | undefined)[];
  received: number;
  lossPct: number;
  /** Median RTT here minus the median at the previous answering hop: what this segment adds. */
  addedMs: number | undefined;
  /**
   * Integrity traces: the digest this hop reported (the first that differs from the one sent,
   * if any query's did); undefined when it reported none (no answer, or a router too old).
   */
  digest?: string | undefined;
  /** Integrity traces: some query's payload arrived here changed. Undefined without a digest. */
  modified?: boolean | undefined;
}

export interface TraceIntegrity {
  /** The digest of the payload as sent. */
  sent: string;
  /** The first hop whose payload arrived changed, or null when none did. */
  firstModifiedHop: number | null;
  /** Hops that reported a digest. */
  reported: number;
}

export interface TraceResult {
  circuit: CircuitRef;
  queries: number;
  hops: TraceHopResult[];
  /** Some query reached the end of the circuit (a delivery, or the end of its return path). */
  complete: boolean;
  /** With `integrity`: where the payload was first modified, if anywhere. */
  integrity?: TraceIntegrity;
}

/** The median, or undefined when nothing answered. */
function median(xs: number[]): number | undefined {
  return xs.length === 0 ? undefined : midMedian(xs);
}

/** One hop of a traceroute in a line: who answered, its median RTT (ms, 3 decimals) and the queries lost. */
export function hopSummary(
  h: TraceHopResult,
  queries: number,
): {
  index: number;
  isp: string | null;
  pop: string | null;
  router: string | null;
  direction: 'forward' | 'return';
  rttMs: number | null;
  lossPct: number;
} {
  const answered = h.rttMs.filter((x): x is number => x !== undefined);
  const mid = median(answered);
  return {
    index: h.index,
    isp: h.isp ?? null,
    pop: h.pop ?? null,
    router: h.router ?? null,
    direction: h.direction,
    rttMs: mid === undefined ? null : Math.round(mid * 1000) / 1000,
    lossPct: Math.round(((queries - answered.length) / queries) * 1000) / 10,
  };
}

/**
 * Traceroute along a circuit: `queries` TRACEs, each answered by every router it passes
 * (including the return path when the circuit ends at a UDP server). Hops that never
 * answered show up as gaps, so a dead or lossy segment is plain.
 */
export async function traceroute(
  sock: DiagnosticSocket,
  circuit: CircuitRef,
  opts: TraceOptions = {},
): Promise<TraceResult> {
  const queries = opts.queries ?? 3;
  const timeoutMs = opts.timeoutMs ?? 2000;
  const hopLimit = opts.hopLimit ?? DEFAULT_HOP_LIMIT;
  const payload = encodeProbeRequest(
    {
      everyHop: true,
      initialHopLimit: hopLimit,
      timeoutMs: 0,
      originator: sock.originator,
      ...(opts.integrity ? { digest: true } : {}),
    },
    opts.integrity ? randomBytes(INTEGRITY_BODY_LENGTH) : undefined,
  );
  const sent = opts.integrity ? payloadDigest(payload) : undefined;
  type Answer = NonNullable<ReturnType<typeof decodeTraceReply>> & { rttMs: number };
  const answers: Map<number, Answer>[] = [];
  const sequences: bigint[] = [];
  for (let q = 0; q < queries; q++) {
    if (q > 0) await sleep(opts.intervalMs ?? 100);
    const got = new Map<number, Answer>();
    answers.push(got);
    const { sequence, sentAt } = sock.send(
      circuit.ingress,
      PacketType.Trace,
      payload,
      (p, at) => {
        if (p.type !== PacketType.TraceReply) return;
        const hop = decodeTraceReply(p.payload);
        if (hop && hop.hopIndex > 0 && !got.has(hop.hopIndex))
          got.set(hop.hopIndex, { ...hop, rttMs: at - sentAt });
      },
      { auth: circuit.auth, hopLimit },
    );
    sequences.push(sequence);
  }
  await sleep(timeoutMs);
  await sock.backlogRead();
  for (const s of sequences) sock.forget(s);

  const last = Math.max(0, ...answers.flatMap((m) => [...m.keys()]));
  const hops: TraceHopResult[] = [];
  let direction: 'forward' | 'return' = 'forward';
  let previousMedian: number | undefined;
  for (let index = 1; index <= last; index++) {
    const here = answers.map((m) => m.get(index));
    const first = here.find((a) => a !== undefined);
    const rtts = here.map((a) => a?.rttMs);
    const ok = rtts.filter((x): x is number => x !== undefined);
    const med = median(ok);
    const digests = here.flatMap((a) => (a?.digest === undefined ? [] : [a.digest]));
    const changed = digests.find((d) => d !== sent);
    hops.push({
      index,
      isp: first?.isp,
      pop: first?.pop,
      router: first?.router,
      address: first?.address,
      action: first?.action,
      next: first?.next,
      direction,
      turning: first?.turning ?? false,
      end: first?.end ?? false,
      rttMs: rtts,
      received: ok.length,
      lossPct: lossPct(queries, ok.length),
      addedMs: med !== undefined && previousMedian !== undefined ? med - previousMedian : undefined,
      ...(sent !== undefined
        ? { digest: changed ?? digests[0], modified: digests.length > 0 ? changed !== undefined : undefined }
        : {}),
    });
    if (med !== undefined) previousMedian = med;
    if (first?.turning) direction = 'return';
  }
  const complete = hops.some((h) => h.end && h.received > 0);
  if (sent === undefined) return { circuit, queries, hops, complete };
  const first = hops.find((h) => h.modified === true);
  const integrity = {
    sent,
    firstModifiedHop: first?.index ?? null,
    reported: hops.filter((h) => h.digest !== undefined).length,
  };
  return { circuit, queries, hops, complete, integrity };
}

// ---- ping through the circuit --------------------------------------------------------------------

export interface PingOptions {
  /** Pings to send (default 4). */
  count?: number;
  /** Between pings (default 1000 ms). */
  intervalMs?: number;
  /** Wait per ping (default 2000 ms). */
  timeoutMs?: number;
  /** Bytes of padding after the request, like ping's -s (default 56). */
  size?: number;
  /** Called as each answer arrives. */
  onReply?: (reply: PingReply) => void;
  /** Stops sending early (Ctrl-C): the pings in flight still get their timeout. */
  signal?: AbortSignal;
}

export interface PingReply {
  /** 1-based, like ping's icmp_seq. */
  seq: number;
  rttMs: number;
  /** Size of the answering datagram. */
  bytes: number;
  /** Who answered: the router where the circuit (and its return path) ends, or `home` when the ping came back to us. */
  from: { isp: string; pop: string; router: string; address: string } | 'home';
}

export interface PingResult {
  transmitted: number;
  received: number;
  lossPct: number;
  rtt: RttSummary | undefined;
  replies: PingReply[];
  /** Wall time from the first send to the last answer or timeout. */
  timeMs: number;
}

/**
 * Ping through a whole circuit: a TRACE that only the hop where it ends answers (and that
 * comes home to us when the circuit's return path delivers here). It travels every hop of
 * the circuit (and of the return path, for a UDP server), under the routers' probe rate
 * limits, and never triggers failover.
 */
export async function ping(
  sock: DiagnosticSocket,
  circuit: CircuitRef,
  opts: PingOptions = {},
): Promise<PingResult> {
  const count = opts.count ?? 4;
  const payload = encodeProbeRequest(
    { everyHop: false, initialHopLimit: DEFAULT_HOP_LIMIT, timeoutMs: 0, originator: sock.originator },
    new Uint8Array(Math.max(0, (opts.size ?? 56) - PROBE_REQUEST_LENGTH)),
  );
  return pingLoop(count, opts, (seq) =>
    sock.request(
      circuit.ingress,
      PacketType.Trace,
      payload,
      opts.timeoutMs ?? 2000,
      (p, at, sentAt, size): PingReply | undefined => {
        let from: PingReply['from'];
        if (p.type === PacketType.Trace) from = 'home';
        else if (p.type === PacketType.TraceReply) {
          const hop = decodeTraceReply(p.payload);
          if (!hop?.end) return undefined;
          from = { isp: hop.isp, pop: hop.pop, router: hop.router, address: hop.address };
        } else return undefined;
        return { seq, rttMs: at - sentAt, bytes: size, from };
      },
      { auth: circuit.auth },
    ),
  );
}

async function pingLoop<R extends { seq: number; rttMs: number }>(
  count: number,
  opts: { intervalMs?: number; onReply?: (r: R) => void; signal?: AbortSignal },
  one: (seq: number) => Promise<R | undefined>,
  /** Wait for each answer (or its timeout) before the interval to the next: a single-slot service. */
  oneAtATime = false,
): Promise<{
  transmitted: number;
  received: number;
  lossPct: number;
  rtt: RttSummary | undefined;
  replies: R[];
  timeMs: number;
}> {
  const started = performance.now();
  const inFlight: Promise<void>[] = [];
  const replies: R[] = [];
  let transmitted = 0;
  for (let seq = 1; seq <= count && !opts.signal?.aborted; seq++) {
    if (seq > 1 && oneAtATime) await inFlight.at(-1);
    if (seq > 1)
      await sleep(opts.intervalMs ?? 1000, undefined, { signal: opts.signal }).catch((err: unknown) => {
        // Ctrl-C during the wait ends the run (checked below); anything else is a real error.
        if (!(err instanceof Error && err.name === 'AbortError')) throw err;
      });
    if (opts.signal?.aborted) break;
    transmitted++;
    inFlight.push(
      one(seq).then((r) => {
        if (!r) return;
        replies.push(r);
        opts.onReply?.(r);
      }),
    );
  }
  await Promise.all(inFlight);
  replies.sort((a, b) => a.seq - b.seq);
  return {
    transmitted,
    received: replies.length,
    lossPct: lossPct(transmitted, replies.length),
    rtt: summarize(replies.map((r) => r.rttMs)),
    replies,
    timeMs: performance.now() - started,
  };
}

// ---- the last-leg ping at the egress PoP ---------------------------------------------------------

export interface LastLegOptions extends Omit<PingOptions, 'size' | 'onReply'> {
  /** The datagram the egress router sends to the circuit's target (default `arrow ping`). */
  payload?: Uint8Array;
  /** How long the egress router waits for the server (default 1000 ms, at most 5000). */
  serverTimeoutMs?: number;
  onReply?: (reply: LastLegReply) => void;
}

export interface LastLegReply {
  seq: number;
  /** Egress router → server → egress router, as the egress router measured it. */
  rttMs: number;
  /** Our whole round trip: through the circuit to the egress router, the last leg, and the answer. */
  roundTripMs: number;
  /** The circuit's target: the only address the service reaches. */
  target: string;
  replyLength: number;
  /** The first bytes of the server's answer (at most 64). */
  reply: Uint8Array;
}

export interface LastLegResult {
  transmitted: number;
  received: number;
  lossPct: number;
  rtt: RttSummary | undefined;
  replies: LastLegReply[];
  /** Answers that were not a server reply, by status (`timeout`, `busy`, `not-udp`). */
  failures: Partial<Record<LastLegStatus, number>>;
  /** The circuit's target as the egress router named it, once any answer came. */
  target: string | undefined;
  timeMs: number;
}

/**
 * Asks the egress router of a circuit that delivers to an unmodified UDP server to send
 * `payload` to that server from the circuit's own socket, and to report the RTT of its
 * first answer. The request travels the circuit like a trace; the target is the circuit's.
 */
export async function lastLegPing(
  sock: DiagnosticSocket,
  circuit: CircuitRef,
  opts: LastLegOptions = {},
): Promise<LastLegResult> {
  const serverTimeoutMs = Math.min(opts.serverTimeoutMs ?? 1000, MAX_LAST_LEG_TIMEOUT_MS);
  const payload = encodeProbeRequest(
    {
      everyHop: false,
      initialHopLimit: DEFAULT_HOP_LIMIT,
      timeoutMs: serverTimeoutMs,
      originator: sock.originator,
    },
    opts.payload ?? Buffer.from('arrow ping'),
  );
  const failures: Partial<Record<LastLegStatus, number>> = {};
  let target: string | undefined;
  const r = await pingLoop<LastLegReply>(
    opts.count ?? 4,
    opts,
    async (seq) => {
      // Our wait covers the router's wait for the server, plus the way there and back.
      const a = await sock.request(
        circuit.ingress,
        PacketType.LastLeg,
        payload,
        (opts.timeoutMs ?? 2000) + serverTimeoutMs,
        (p, at, sentAt) => {
          const d = p.type === PacketType.LastLegReply ? decodeLastLegReply(p.payload) : undefined;
          return d ? { ...d, roundTripMs: at - sentAt } : undefined;
        },
        { auth: circuit.auth },
      );
      if (!a) return undefined;
      if (a.target) target = a.target;
      if (a.status !== 'reply') {
        failures[a.status] = (failures[a.status] ?? 0) + 1;
        return undefined;
      }
      const { target: t, rttMs, roundTripMs, replyLength, reply } = a;
      return { seq, rttMs, roundTripMs, target: t, replyLength, reply };
      // The router holds one last-leg ping per circuit (src/router/last-leg.ts): a second sent while
      // the first waits for a slow server would only be refused as busy.
    },
    true,
  );
  return { ...r, failures, target };
}
