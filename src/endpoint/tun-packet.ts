// Pure IP-packet logic for TUN mode: MTU arithmetic, what a packet read from or written to the TUN
// is, and the ICMP "too big" answers. No I/O; the caller owns every buffer.
import { isIP } from 'node:net';
import { HEADER_LENGTH, TAG_LENGTH } from '../wire/header.js';

/** IPv4 (20) + UDP (8) headers of the underlay: ARROW travels in UDP over IPv4. */
export const UNDERLAY_OVERHEAD = 20 + 8;
export const DEFAULT_UNDERLAY_MTU = 1500;
/** The smallest MTU IPv4 allows a link (RFC 791). */
export const MIN_IPV4_MTU = 68;
/** The smallest MTU IPv6 allows a link (RFC 8200); below it the kernel disables IPv6 on the TUN. */
export const MIN_IPV6_MTU = 1280;

/**
 * The largest IP packet one ARROW DATA packet carries over an underlay of `underlayMtu`, with
 * `tags` per-packet tags on it (one per tag-checking ISP of the path): the TUN MTU.
 */
export function tunMtuFor(underlayMtu: number, tags = 0): number {
  return underlayMtu - UNDERLAY_OVERHEAD - HEADER_LENGTH - tags * TAG_LENGTH;
}

/** What is wrong with a would-be IP packet, or 'ok'. Strings, not objects: this runs per packet. */
export type PacketCheck = 'ok' | 'empty' | 'version' | 'short' | 'length';

/**
 * Is `p` one whole IPv4 or IPv6 packet? Its own length field must match exactly, so a truncated
 * or padded payload is caught here and never written into the TUN.
 */
export function checkIpPacket(p: Uint8Array): PacketCheck {
  const length = p.length;
  if (length < 1) return 'empty';
  const version = p[0]! >> 4;
  if (version === 4) {
    if (length < 20 || (p[0]! & 0x0f) < 5) return 'short';
    return ((p[2]! << 8) | p[3]!) === length ? 'ok' : 'length';
  }
  if (version === 6) {
    if (length < 40) return 'short';
    return 40 + ((p[4]! << 8) | p[5]!) === length ? 'ok' : 'length';
  }
  return 'version';
}

/** IPv4 with Don't Fragment set: it must not be fragmented, the sender wants "fragmentation needed". */
export function ipv4DontFragment(p: Uint8Array): boolean {
  return (p[6]! & 0x40) !== 0;
}

/** RFC 1122 3.2.2: no ICMP error about an ICMP error, a non-first fragment, or a multicast/broadcast. */
function mayAnswerIpv4(p: Uint8Array): boolean {
  if ((((p[6]! & 0x1f) << 8) | p[7]!) !== 0) return false; // not the first fragment
  const dst0 = p[16]!;
  if (dst0 >= 224) return false; // multicast, reserved, limited broadcast
  const ihl = (p[0]! & 0x0f) * 4;
  if (p[9] === 1 && p.length > ihl) {
    const type = p[ihl]!;
    if (type === 3 || type === 4 || type === 5 || type === 11 || type === 12) return false;
  }
  return true;
}

/** RFC 4443 2.4: no ICMPv6 error about an ICMPv6 error; Packet Too Big may answer multicast. */
function mayAnswerIpv6(p: Uint8Array): boolean {
  return !(p[6] === 58 && p.length > 40 && p[40]! < 128);
}

/** The one's-complement sum of 16-bit words, not yet folded or inverted. */
function sum16(b: Uint8Array, start: number, end: number, acc = 0): number {
  let s = acc;
  let i = start;
  for (; i + 1 < end; i += 2) s += (b[i]! << 8) | b[i + 1]!;
  if (i < end) s += b[i]! << 8;
  return s;
}

function fold(s: number): number {
  let x = s;
  while (x > 0xffff) x = (x & 0xffff) + (x >>> 16);
  return ~x & 0xffff;
}

/** Internet checksum (RFC 1071) of b[start, end). Zero when a correct checksum field is included. */
export function internetChecksum(b: Uint8Array, start = 0, end = b.length): number {
  return fold(sum16(b, start, end));
}

/** Bytes of the offending packet an IPv4 ICMP error quotes: up to 576 bytes in all (RFC 1812 4.3.2.3). */
const IPV4_QUOTE_MAX = 576 - 20 - 8;
/** An ICMPv6 error must not exceed the IPv6 minimum MTU (RFC 4443 2.4 (c)). */
const IPV6_QUOTE_MAX = MIN_IPV6_MTU - 40 - 8;
/** Big enough for either answer: pass one of these to tooBigReply and reuse it. */
export const TOO_BIG_SCRATCH = MIN_IPV6_MTU;

/**
 * Writes into `out` the ICMP answer to an oversized packet `p`, as if from a router whose next hop
 * takes at most `mtu` bytes: IPv4 with DF → ICMP type 3 code 4 "fragmentation needed" with the
 * next-hop MTU (RFC 1191); IPv6 → ICMPv6 Packet Too Big (RFC 4443). Its source is the packet's own
 * destination: the kernel drops a packet from one of its own addresses arriving on the TUN (martian),
 * and the route to the destination is the TUN, so reverse-path filtering accepts it. Returns the
 * answer's length, or 0 when the packet must get no answer (IPv4 without DF, an ICMP error, a
 * non-first fragment, multicast): then the caller drops it and counts.
 */
export function tooBigReply(p: Uint8Array, mtu: number, out: Uint8Array): number {
  const version = p[0]! >> 4;
  if (version === 4) {
    if (p.length < 20 || !ipv4DontFragment(p) || !mayAnswerIpv4(p)) return 0;
    const quote = Math.min(p.length, IPV4_QUOTE_MAX);
    const total = 20 + 8 + quote;
    out.fill(0, 0, 28);
    out[0] = 0x45;
    out[2] = total >> 8;
    out[3] = total & 0xff;
    out[8] = 64; // TTL
    out[9] = 1; // ICMP
    out.set(p.subarray(16, 20), 12); // from the packet's destination
    out.set(p.subarray(12, 16), 16); // to its source
    const ip = internetChecksum(out, 0, 20);
    out[10] = ip >> 8;
    out[11] = ip & 0xff;
    out[20] = 3; // destination unreachable
    out[21] = 4; // fragmentation needed and DF set
    out[26] = (mtu >> 8) & 0xff;
    out[27] = mtu & 0xff;
    out.set(p.subarray(0, quote), 28);
    const icmp = internetChecksum(out, 20, total);
    out[22] = icmp >> 8;
    out[23] = icmp & 0xff;
    return total;
  }
  if (version === 6) {
    if (p.length < 40 || !mayAnswerIpv6(p)) return 0;
    const quote = Math.min(p.length, IPV6_QUOTE_MAX);
    const payload = 8 + quote;
    out.fill(0, 0, 48);
    out[0] = 0x60;
    out[4] = payload >> 8;
    out[5] = payload & 0xff;
    out[6] = 58; // ICMPv6
    out[7] = 64; // hop limit
    out.set(p.subarray(24, 40), 8); // from the packet's destination
    out.set(p.subarray(8, 24), 24); // to its source
    out[40] = 2; // Packet Too Big
    out[41] = 0;
    out[44] = (mtu >>> 24) & 0xff;
    out[45] = (mtu >>> 16) & 0xff;
    out[46] = (mtu >>> 8) & 0xff;
    out[47] = mtu & 0xff;
    out.set(p.subarray(0, quote), 48);
    // Pseudo-header: source, destination, upper-layer length, next header (RFC 8200 8.1).
    let s = sum16(out, 8, 40);
    s += payload + 58;
    const icmp = fold(sum16(out, 40, 40 + payload, s));
    out[42] = icmp >> 8;
    out[43] = icmp & 0xff;
    return 40 + payload;
  }
  return 0;
}

/** An interface address in CIDR notation (`10.200.0.1/24`, `fd00::1/64`): what `ip addr add` takes. */
export function parseCidr(text: string): { address: string; prefix: number; family: 4 | 6 } | undefined {
  const m = /^([^/\s]+)\/(\d{1,3})$/.exec(text);
  if (!m) return undefined;
  const family = isIP(m[1]!);
  const prefix = Number(m[2]);
  if (family === 4 && prefix <= 32) return { address: m[1]!, prefix, family };
  if (family === 6 && prefix <= 128) return { address: m[1]!, prefix, family };
  return undefined;
}

/** A Linux interface name: 1–15 bytes, no slash, whitespace or colon. */
export function isInterfaceName(name: string): boolean {
  return /^[A-Za-z0-9_.-]{1,15}$/.test(name) && name !== '.' && name !== '..';
}
