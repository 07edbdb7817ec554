/**
 * The ARROW header, carried as the first bytes of a UDP payload.
 * Layout (network byte order), documented byte by byte in docs/wire.md:
 *
 *   0       version (1)
 *   1       type (PacketType)
 *   2       flags: T = 0x01 (tags present); bits 4-7 = number of tags - 1 when T is set,
 *           zero otherwise; bits 1-3 must be zero
 *   3       hop limit
 *   4..19   authenticator (128 bits)
 *   20..27  sequence (64 bits, unsigned)
 *   28..    the tag stack: 1-16 authentication tags of 16 bytes, present only when T is set;
 *           the first is checked (and removed) by the next ISP that checks tags
 *   ...     payload
 *
 * Everything here is pure: no I/O, no clocks, no randomness.
 */

export const VERSION = 1;
export const HEADER_LENGTH = 28;
export const TAG_LENGTH = 16;
export const AUTH_LENGTH = 16;
export const FLAG_TAG = 0x01;
/** Bits 4-7 of the flags: the number of tags minus one, when T is set (docs/wire.md, "The tag stack"). */
export const TAG_COUNT_SHIFT = 4;
export const MAX_TAGS = 16;
/** Flags a receiver understands. Any other bit set means a newer sender; we drop rather than misparse. */
export const KNOWN_FLAGS = FLAG_TAG | (0x0f << TAG_COUNT_SHIFT);
export const DEFAULT_HOP_LIMIT = 64;
/** Largest UDP payload over IPv4. */
export const MAX_DATAGRAM = 65507;

export const OFFSET_VERSION = 0;
export const OFFSET_TYPE = 1;
export const OFFSET_FLAGS = 2;
export const OFFSET_HOP_LIMIT = 3;
export const OFFSET_AUTH = 4;
export const OFFSET_SEQUENCE = 20;
export const OFFSET_TAG = 28;

export enum PacketType {
  Data = 1,
  Probe = 2,
  ProbeAck = 3,
  Echo = 4,
  EchoReply = 5,
  /** Neighbour liveness between adjacent routers (BFD-style), and re-checks of dead neighbours. */
  Keepalive = 6,
  KeepaliveAck = 7,
  /** Traceroute along a circuit: travels like a PROBE; every router answers the originator (docs/diagnostics.md). */
  Trace = 8,
  TraceReply = 9,
  /** Asks a router to ECHO another router and report the RTT (the atlas's PoP-to-PoP measurement). */
  Relay = 10,
  RelayReply = 11,
  /** Asks the egress router of a UDP-delivering circuit to ping the circuit's own target. */
  LastLeg = 12,
  LastLegReply = 13,
}

const TYPE_NAMES: Record<number, string> = {
  [PacketType.Data]: 'DATA',
  [PacketType.Probe]: 'PROBE',
  [PacketType.ProbeAck]: 'PROBE_ACK',
  [PacketType.Echo]: 'ECHO',
  [PacketType.EchoReply]: 'ECHO_REPLY',
  [PacketType.Keepalive]: 'KEEPALIVE',
  [PacketType.KeepaliveAck]: 'KEEPALIVE_ACK',
  [PacketType.Trace]: 'TRACE',
  [PacketType.TraceReply]: 'TRACE_REPLY',
  [PacketType.Relay]: 'RELAY',
  [PacketType.RelayReply]: 'RELAY_REPLY',
  [PacketType.LastLeg]: 'LAST_LEG',
  [PacketType.LastLegReply]: 'LAST_LEG_REPLY',
};

export function typeName(type: number): string {
  return TYPE_NAMES[type] ?? `TYPE_${type}`;
}

export function isKnownType(type: number): type is PacketType {
  return type >= PacketType.Data && type <= PacketType.LastLegReply;
}

export interface Packet {
  type: PacketType;
  hopLimit: number;
  /** 16 bytes. */
  authenticator: Uint8Array;
  sequence: bigint;
  /** The tag stack, 16 bytes each, first to be checked first; absent or empty: T clear. */
  tags?: Uint8Array[];
  payload: Uint8Array;
}

export type DecodeErrorCode = 'truncated' | 'bad-version' | 'unknown-type' | 'reserved-flags';

export interface DecodeError {
  code: DecodeErrorCode;
  message: string;
}

export type DecodeResult = { ok: true; packet: Packet } | { ok: false; error: DecodeError };

/**
 * Checks the fixed header without allocating. Returns null when the bytes are a
 * well-formed ARROW packet, else the reason. The router's packet loop uses this,
 * then reads fields in place.
 */
export function check(buf: Uint8Array): DecodeErrorCode | null {
  if (buf.length < HEADER_LENGTH) return 'truncated';
  if (buf[OFFSET_VERSION] !== VERSION) return 'bad-version';
  const type = buf[OFFSET_TYPE]!;
  if (!isKnownType(type)) return 'unknown-type';
  const flags = buf[OFFSET_FLAGS]!;
  if ((flags & ~KNOWN_FLAGS) !== 0) return 'reserved-flags';
  // A tag count without T is not a header we know either.
  if ((flags & FLAG_TAG) === 0 && flags !== 0) return 'reserved-flags';
  if (buf.length < HEADER_LENGTH + TAG_LENGTH * tagCount(buf)) return 'truncated';
  return null;
}

/** Tags on the stack: 0 when T is clear, else 1-16. Reads the flags only. */
export function tagCount(buf: Uint8Array): number {
  const flags = buf[OFFSET_FLAGS]!;
  return (flags & FLAG_TAG) === 0 ? 0 : 1 + (flags >>> TAG_COUNT_SHIFT);
}

/** The flags byte for `n` tags (0-16). */
export function tagFlags(n: number): number {
  return n === 0 ? 0 : FLAG_TAG | ((n - 1) << TAG_COUNT_SHIFT);
}

/** Bytes before the payload: the fixed header plus the tag stack. Assumes check() passed. */
export function headerLength(buf: Uint8Array): number {
  return HEADER_LENGTH + TAG_LENGTH * tagCount(buf);
}

const MESSAGES: Record<DecodeErrorCode, string> = {
  truncated: 'datagram shorter than the ARROW header',
  'bad-version': 'unsupported ARROW version',
  'unknown-type': 'unknown packet type',
  'reserved-flags': 'reserved flag bits set',
};

/** Decodes a datagram. Never throws: any byte string yields a packet or a typed error. */
export function decode(buf: Uint8Array): DecodeResult {
  const code = check(buf);
  if (code !== null) {
    const detail =
      code === 'bad-version'
        ? ` ${buf[OFFSET_VERSION]}`
        : code === 'unknown-type'
          ? ` ${buf[OFFSET_TYPE]}`
          : code === 'reserved-flags'
            ? ` 0x${buf[OFFSET_FLAGS]!.toString(16)}`
            : ` (${buf.length} bytes)`;
    return { ok: false, error: { code, message: MESSAGES[code] + detail } };
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const tags = tagCount(buf);
  const start = headerLength(buf);
  const packet: Packet = {
    type: buf[OFFSET_TYPE] as PacketType,
    hopLimit: buf[OFFSET_HOP_LIMIT]!,
    authenticator: buf.slice(OFFSET_AUTH, OFFSET_AUTH + AUTH_LENGTH),
    sequence: view.getBigUint64(OFFSET_SEQUENCE),
    payload: buf.slice(start),
  };
  if (tags > 0)
    packet.tags = Array.from({ length: tags }, (_, i) =>
      buf.slice(OFFSET_TAG + i * TAG_LENGTH, OFFSET_TAG + (i + 1) * TAG_LENGTH),
    );
  return { ok: true, packet };
}

export class EncodeError extends Error {}

/** Length of the encoded packet. */
export function encodedLength(p: Packet): number {
  return HEADER_LENGTH + TAG_LENGTH * (p.tags?.length ?? 0) + p.payload.length;
}

/**
 * Encodes into `out` (or a new buffer) and returns the number of bytes written.
 * Throws EncodeError on values that cannot be represented: that is a caller bug, not input.
 */
export function encodeInto(p: Packet, out: Uint8Array): number {
  if (p.authenticator.length !== AUTH_LENGTH) throw new EncodeError('authenticator must be 16 bytes');
  const tags = p.tags ?? [];
  if (tags.length > MAX_TAGS) throw new EncodeError(`at most ${MAX_TAGS} tags`);
  if (tags.some((t) => t.length !== TAG_LENGTH)) throw new EncodeError('a tag must be 16 bytes');
  if (!Number.isInteger(p.hopLimit) || p.hopLimit < 0 || p.hopLimit > 255)
    throw new EncodeError('hop limit must be 0..255');
  if (p.sequence < 0n || p.sequence > 0xffff_ffff_ffff_ffffn) throw new EncodeError('sequence must be u64');
  if (!isKnownType(p.type)) throw new EncodeError(`unknown packet type ${String(p.type)}`);
  const length = encodedLength(p);
  if (out.length < length) throw new EncodeError('output buffer too small');
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  out[OFFSET_VERSION] = VERSION;
  out[OFFSET_TYPE] = p.type;
  out[OFFSET_FLAGS] = tagFlags(tags.length);
  out[OFFSET_HOP_LIMIT] = p.hopLimit;
  out.set(p.authenticator, OFFSET_AUTH);
  view.setBigUint64(OFFSET_SEQUENCE, p.sequence);
  let at = HEADER_LENGTH;
  for (const t of tags) {
    out.set(t, at);
    at += TAG_LENGTH;
  }
  out.set(p.payload, at);
  return length;
}

export function encode(p: Packet): Buffer {
  const out = Buffer.allocUnsafe(encodedLength(p));
  encodeInto(p, out);
  return out;
}
