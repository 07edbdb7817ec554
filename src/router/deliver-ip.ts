import type { DropReason } from './dataplane.js';
import type { Entry } from './table.js';

/**
 * Why the inner packet of a deliver-ip circuit may not leave the ISP, or undefined when it may
 * (docs/egress.md). Pure and allocation-free: it reads the IP header where it lies in the ARROW
 * datagram (from `at`). The header must be a whole IPv4 or IPv6 header whose length field matches
 * the payload, the destination must be in the circuit's prefixes (so a circuit never becomes an open
 * relay into the ISP) and the source in the customer's own prefix (no spoofing, BCP 38).
 */
export function innerPacketRefusal(
  entry: Entry & { kind: 'deliver-ip' },
  buf: Buffer,
  at: number,
): DropReason | undefined {
  const length = buf.length - at;
  if (length < 1) return 'not-ip';
  const version = buf[at]! >> 4;
  if (version === 4) {
    if (length < 20 || (buf[at]! & 0x0f) < 5 || buf.readUInt16BE(at + 2) !== length) return 'not-ip';
    if (!entry.prefixes.hasV4(buf, at + 16)) return 'outside-prefixes';
    if (!entry.source.hasV4(buf, at + 12)) return 'spoofed-source';
    return undefined;
  }
  if (version === 6) {
    if (length < 40 || buf.readUInt16BE(at + 4) + 40 !== length) return 'not-ip';
    if (!entry.prefixes.hasV6(buf, at + 24)) return 'outside-prefixes';
    if (!entry.source.hasV6(buf, at + 8)) return 'spoofed-source';
    return undefined;
  }
  return 'not-ip';
}
