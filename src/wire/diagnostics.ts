/**
 * Payloads of the diagnostic packet types (TRACE, LAST_LEG, RELAY and their replies),
 * byte by byte in docs/wire.md. Fixed layouts, small and bounded. Pure: no I/O, no clocks.
 * Decoders never throw: any byte string yields a value or undefined.
 */
import { createHash } from 'node:crypto';
import type { UdpAddress } from './address.js';
import { EncodeError } from './header.js';

/** First byte of every diagnostic payload. A receiver drops other values as `bad-payload`. */
export const DIAG_FORMAT = 1;

/** An originator or relay target: family (4), reserved, port, IPv4. IPv6 (family 6) is reserved. */
export const ADDRESS_BLOCK_LENGTH = 8;
const FAMILY_IPV4 = 4;

/** TRACE and LAST_LEG: format, flags, initial hop limit, reserved, timeout, reserved, originator. */
export const PROBE_REQUEST_LENGTH = 16;
/** RELAY: format, reserved ×3, target (R2). */
export const RELAY_REQUEST_LENGTH = 12;
/** RELAY_REPLY: format, status, reserved ×2, RTT µs, target (R2). */
export const RELAY_REPLY_LENGTH = 16;
/** Fixed part of TRACE_REPLY, before its five labels. */
export const TRACE_REPLY_FIXED = 6;
/** Fixed part of LAST_LEG_REPLY, before the target label and the server's reply bytes. */
export const LAST_LEG_REPLY_FIXED = 8;
/** Longest label (ISP, PoP, router, address) in a reply, in bytes. */
export const MAX_LABEL = 64;
/** How much of the server's answer a LAST_LEG_REPLY carries back. */
export const MAX_LAST_LEG_ECHO = 64;
/** Longest time a last-leg ping may wait for the server. */
export const MAX_LAST_LEG_TIMEOUT_MS = 5000;

/** TRACE request flag: every router answers (traceroute). Clear: only the hop where the trace ends (ping). */
export const TRACE_EVERY_HOP = 0x01;
/**
 * TRACE request flag: every answering router adds a digest of the payload as it arrived (tracebox's
 * idea, seed 004 §3.2), so the originator sees the first hop where the payload was changed.
 */
export const TRACE_DIGEST = 0x02;
/** Length of a payload digest in a TRACE_REPLY: SHA-256 cut to 64 bits. */
export const PAYLOAD_DIGEST_LENGTH = 8;
/** TRACE_REPLY flag: a payload digest follows the labels. */
export const HOP_DIGEST = 0x04;
/** TRACE_REPLY flag: this hop turns the trace into the circuit's return path. */
export const HOP_TURN = 0x01;
/** TRACE_REPLY flag: the trace ends at this hop (delivered, or nowhere to go). */
export const HOP_END = 0x02;

/** What a router did with the trace: its circuit action, or `return` for the turn into the return path. */
export type HopAction = 'internal' | 'forward' | 'deliver-endpoint' | 'deliver-udp' | 'return' | 'deliver-ip';
// Appended only: a hop's action travels as its index + 1.
const ACTIONS: readonly HopAction[] = [
  'internal',
  'forward',
  'deliver-endpoint',
  'deliver-udp',
  'return',
  'deliver-ip',
];

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** True for addresses a diagnostic payload can name: IPv4 literals (routers resolve no names on the packet path). */
export function isIpv4Address(a: UdpAddress): boolean {
  const m = IPV4.exec(a.host);
  return m !== null && m.slice(1).every((o) => Number(o) <= 255) && a.port > 0 && a.port <= 65535;
}

function writeAddress(out: Buffer, at: number, a: UdpAddress): void {
  const m = IPV4.exec(a.host);
  if (!m || !isIpv4Address(a)) throw new EncodeError(`not an IPv4 address with a port: ${a.host}:${a.port}`);
  out[at] = FAMILY_IPV4;
  out[at + 1] = 0;
  out.writeUInt16BE(a.port, at + 2);
  for (let i = 0; i < 4; i++) out[at + 4 + i] = Number(m[i + 1]);
}

function readAddress(buf: Uint8Array, at: number): UdpAddress | undefined {
  if (buf.length < at + ADDRESS_BLOCK_LENGTH || buf[at] !== FAMILY_IPV4) return undefined;
  const port = (buf[at + 2]! << 8) | buf[at + 3]!;
  if (port === 0) return undefined;
  return { host: `${buf[at + 4]}.${buf[at + 5]}.${buf[at + 6]}.${buf[at + 7]}`, port };
}

function bytes(buf: Uint8Array): Buffer {
  return Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
}

// ---- TRACE and LAST_LEG requests ----------------------------------------------------------------

export interface ProbeRequest {
  /** TRACE only: every router answers, not just the last. */
  everyHop: boolean;
  /** The hop limit the originator sent with, so each router can tell its hop index. */
  initialHopLimit: number;
  /** LAST_LEG only: how long the egress router waits for the server (ms, at most 5000). */
  timeoutMs: number;
  /** Where replies go: routers know only the previous hop, so the originator names itself. */
  originator: UdpAddress;
  /** TRACE only: every answering router reports a digest of the payload it received. */
  digest?: boolean;
}

/**
 * The payload of a TRACE or LAST_LEG packet. `body` follows the fixed part: padding for a
 * TRACE (ping sizes), the datagram for the server for a LAST_LEG.
 */
export function encodeProbeRequest(r: ProbeRequest, body: Uint8Array = new Uint8Array(0)): Buffer {
  if (!Number.isInteger(r.initialHopLimit) || r.initialHopLimit < 1 || r.initialHopLimit > 255)
    throw new EncodeError('initial hop limit must be 1..255');
  if (!Number.isInteger(r.timeoutMs) || r.timeoutMs < 0 || r.timeoutMs > MAX_LAST_LEG_TIMEOUT_MS)
    throw new EncodeError(`timeout must be 0..${MAX_LAST_LEG_TIMEOUT_MS} ms`);
  const out = Buffer.alloc(PROBE_REQUEST_LENGTH + body.length);
  out[0] = DIAG_FORMAT;
  out[1] = (r.everyHop ? TRACE_EVERY_HOP : 0) | (r.digest ? TRACE_DIGEST : 0);
  out[2] = r.initialHopLimit;
  out.writeUInt16BE(r.timeoutMs, 4);
  writeAddress(out, 8, r.originator);
  out.set(body, PROBE_REQUEST_LENGTH);
  return out;
}

export function decodeProbeRequest(payload: Uint8Array): ProbeRequest | undefined {
  if (payload.length < PROBE_REQUEST_LENGTH || payload[0] !== DIAG_FORMAT) return undefined;
  const initialHopLimit = payload[2]!;
  if (initialHopLimit === 0) return undefined;
  const originator = readAddress(payload, 8);
  if (!originator) return undefined;
  const timeoutMs = (payload[4]! << 8) | payload[5]!;
  if (timeoutMs > MAX_LAST_LEG_TIMEOUT_MS) return undefined;
  return {
    everyHop: (payload[1]! & TRACE_EVERY_HOP) !== 0,
    initialHopLimit,
    timeoutMs,
    originator,
    ...((payload[1]! & TRACE_DIGEST) !== 0 ? { digest: true } : {}),
  };
}

/** The bytes after the fixed request: a LAST_LEG's datagram for the server. */
export function probeRequestBody(payload: Uint8Array): Uint8Array {
  return payload.subarray(Math.min(payload.length, PROBE_REQUEST_LENGTH));
}

// ---- TRACE_REPLY ---------------------------------------------------------------------------------

export interface TraceHop {
  /** 1 for the first router the trace reached. */
  hopIndex: number;
  /** The hop limit the trace arrived with. */
  hopLimit: number;
  action: HopAction;
  /** This hop turned the trace into the return path (`action` is `return`). */
  turning: boolean;
  /** The trace ends here: delivered to an endpoint, or no next hop. */
  end: boolean;
  isp: string;
  pop: string;
  router: string;
  /** The router's own address. */
  address: string;
  /** Where the router sent the trace on (or the server, for `deliver-udp`); empty if nowhere. */
  next: string;
  /** The digest of the payload as this router received it (hex), when the trace asked for one. */
  digest?: string;
}

/**
 * The digest a router reports of a TRACE payload (everything after the header and its tag stack):
 * SHA-256 cut to 64 bits, hex. Not a MAC: it shows where bytes changed, not who changed them; an
 * on-path rewriter could fix it up, as it could tracebox's quoted headers (docs/diagnostics.md).
 */
export function payloadDigest(payload: Uint8Array): string {
  return createHash('sha256').update(payload).digest().subarray(0, PAYLOAD_DIGEST_LENGTH).toString('hex');
}

/** UTF-8, cut to MAX_LABEL bytes on a character boundary. */
function label(s: string): Buffer {
  let b = Buffer.from(s, 'utf8');
  if (b.length <= MAX_LABEL) return b;
  let chars = s.length;
  while (b.length > MAX_LABEL) b = Buffer.from(s.slice(0, --chars), 'utf8');
  return b;
}

export function encodeTraceReply(h: TraceHop): Buffer {
  const labels = [h.isp, h.pop, h.router, h.address, h.next].map(label);
  const digest = h.digest === undefined ? undefined : Buffer.from(h.digest, 'hex');
  if (digest !== undefined && digest.length !== PAYLOAD_DIGEST_LENGTH)
    throw new EncodeError(`a payload digest is ${PAYLOAD_DIGEST_LENGTH} bytes of hex`);
  const out = Buffer.alloc(
    TRACE_REPLY_FIXED + labels.reduce((t, l) => t + 1 + l.length, 0) + (digest?.length ?? 0),
  );
  out[0] = DIAG_FORMAT;
  out[1] = Math.max(0, Math.min(255, h.hopIndex));
  out[2] = Math.max(0, Math.min(255, h.hopLimit));
  out[3] = ACTIONS.indexOf(h.action) + 1;
  out[4] = (h.turning ? HOP_TURN : 0) | (h.end ? HOP_END : 0) | (digest ? HOP_DIGEST : 0);
  let at = TRACE_REPLY_FIXED;
  for (const l of labels) {
    out[at++] = l.length;
    l.copy(out, at);
    at += l.length;
  }
  digest?.copy(out, at);
  return out;
}

export function decodeTraceReply(payload: Uint8Array): TraceHop | undefined {
  if (payload.length < TRACE_REPLY_FIXED || payload[0] !== DIAG_FORMAT) return undefined;
  const action = ACTIONS[payload[3]! - 1];
  if (action === undefined) return undefined;
  const labels: string[] = [];
  let at = TRACE_REPLY_FIXED;
  for (let i = 0; i < 5; i++) {
    const n = payload[at];
    if (n === undefined || n > MAX_LABEL || at + 1 + n > payload.length) return undefined;
    labels.push(bytes(payload).toString('utf8', at + 1, at + 1 + n));
    at += 1 + n;
  }
  const flags = payload[4]!;
  let digest: string | undefined;
  if (flags & HOP_DIGEST) {
    if (at + PAYLOAD_DIGEST_LENGTH > payload.length) return undefined;
    digest = bytes(payload).toString('hex', at, at + PAYLOAD_DIGEST_LENGTH);
  }
  return {
    hopIndex: payload[1]!,
    hopLimit: payload[2]!,
    action,
    turning: (flags & HOP_TURN) !== 0,
    end: (flags & HOP_END) !== 0,
    isp: labels[0]!,
    pop: labels[1]!,
    router: labels[2]!,
    address: labels[3]!,
    next: labels[4]!,
    ...(digest !== undefined ? { digest } : {}),
  };
}

// ---- RELAY and RELAY_REPLY -----------------------------------------------------------------------

export function encodeRelayRequest(target: UdpAddress): Buffer {
  const out = Buffer.alloc(RELAY_REQUEST_LENGTH);
  out[0] = DIAG_FORMAT;
  writeAddress(out, 4, target);
  return out;
}

/** The router to echo (R2), or undefined for a malformed request. */
export function decodeRelayRequest(payload: Uint8Array): UdpAddress | undefined {
  if (payload.length < RELAY_REQUEST_LENGTH || payload[0] !== DIAG_FORMAT) return undefined;
  return readAddress(payload, 4);
}

export interface RelayResult {
  /** R1 → R2 → R1 round trip as R1 measured it, in ms (µs resolution). */
  rttMs: number;
  target: UdpAddress;
}

export function encodeRelayReply(r: RelayResult): Buffer {
  const out = Buffer.alloc(RELAY_REPLY_LENGTH);
  out[0] = DIAG_FORMAT;
  out[1] = 0; // status: answered (the only one sent; an unanswered relay sends nothing)
  out.writeUInt32BE(Math.max(0, Math.min(0xffff_ffff, Math.round(r.rttMs * 1000))), 4);
  writeAddress(out, 8, r.target);
  return out;
}

export function decodeRelayReply(payload: Uint8Array): RelayResult | undefined {
  if (payload.length < RELAY_REPLY_LENGTH || payload[0] !== DIAG_FORMAT || payload[1] !== 0) return undefined;
  const target = readAddress(payload, 8);
  if (!target) return undefined;
  return { rttMs: bytes(payload).readUInt32BE(4) / 1000, target };
}

// ---- LAST_LEG_REPLY ------------------------------------------------------------------------------

/**
 * `reply`: the server answered. `timeout`: it did not within the request's timeout.
 * `busy`: a last-leg ping on this circuit (or too many on the router) is already waiting.
 * `not-udp`: the circuit ends at an endpoint, not at a UDP server.
 */
export type LastLegStatus = 'reply' | 'timeout' | 'busy' | 'not-udp';
const STATUSES: readonly LastLegStatus[] = ['reply', 'timeout', 'busy', 'not-udp'];

export interface LastLegResult {
  status: LastLegStatus;
  /** Egress router → server → egress router, in ms (µs resolution); 0 unless `reply`. */
  rttMs: number;
  /** The circuit's delivery target: the only address a last-leg ping can reach. */
  target: string;
  /** Size of the server's answer. */
  replyLength: number;
  /** Its first bytes (at most 64). */
  reply: Uint8Array;
}

export function encodeLastLegReply(r: LastLegResult): Buffer {
  const target = label(r.target);
  const echo = r.reply.subarray(0, MAX_LAST_LEG_ECHO);
  const out = Buffer.alloc(LAST_LEG_REPLY_FIXED + 1 + target.length + echo.length);
  out[0] = DIAG_FORMAT;
  out[1] = STATUSES.indexOf(r.status);
  out.writeUInt16BE(Math.min(0xffff, r.replyLength), 2);
  out.writeUInt32BE(Math.max(0, Math.min(0xffff_ffff, Math.round(r.rttMs * 1000))), 4);
  out[LAST_LEG_REPLY_FIXED] = target.length;
  target.copy(out, LAST_LEG_REPLY_FIXED + 1);
  out.set(echo, LAST_LEG_REPLY_FIXED + 1 + target.length);
  return out;
}

export function decodeLastLegReply(payload: Uint8Array): LastLegResult | undefined {
  if (payload.length < LAST_LEG_REPLY_FIXED + 1 || payload[0] !== DIAG_FORMAT) return undefined;
  const status = STATUSES[payload[1]!];
  const n = payload[LAST_LEG_REPLY_FIXED]!;
  if (status === undefined || n > MAX_LABEL || LAST_LEG_REPLY_FIXED + 1 + n > payload.length)
    return undefined;
  const b = bytes(payload);
  const reply = b.subarray(LAST_LEG_REPLY_FIXED + 1 + n);
  if (reply.length > MAX_LAST_LEG_ECHO) return undefined;
  return {
    status,
    rttMs: b.readUInt32BE(4) / 1000,
    target: b.toString('utf8', LAST_LEG_REPLY_FIXED + 1, LAST_LEG_REPLY_FIXED + 1 + n),
    replyLength: b.readUInt16BE(2),
    reply: Uint8Array.from(reply),
  };
}
