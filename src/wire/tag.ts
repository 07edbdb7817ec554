import { AUTH_LENGTH, OFFSET_AUTH, OFFSET_SEQUENCE, OFFSET_TAG, TAG_LENGTH } from './header.js';
import { siphash24, type SipKey } from './siphash.js';

/**
 * The per-packet authentication tag (docs/wire.md, "The tag stack"; docs/security.md):
 *
 *   tag = SipHash-2-4-128(K, authenticator ‖ sequence ‖ payload length ‖ payload)
 *
 * with the authenticator the checking ISP's ingress router sees (16 bytes), the sequence as on the
 * wire (8 bytes, big-endian), the payload length as an 8-byte big-endian integer, and the payload:
 * the bytes after the whole tag stack. K is the circuit's tag key, issued by that ISP's portal to
 * the circuit's owner. Nothing here allocates.
 */

/** auth ‖ sequence ‖ length: the fixed 32 bytes of a tag's message (4 SipHash words). */
const prefix = new Uint8Array(AUTH_LENGTH + 8 + 8);

function fillPrefix(auth: Uint8Array, authAt: number, seq: Uint8Array, seqAt: number, length: number): void {
  for (let i = 0; i < AUTH_LENGTH; i++) prefix[i] = auth[authAt + i]!;
  for (let i = 0; i < 8; i++) prefix[AUTH_LENGTH + i] = seq[seqAt + i]!;
  // Payloads are below 2^16 bytes: the top six bytes of the length stay zero.
  prefix[AUTH_LENGTH + 8 + 6] = (length >>> 8) & 0xff;
  prefix[AUTH_LENGTH + 8 + 7] = length & 0xff;
}

/** Writes the tag of one ISP's circuit (`auth` at `authAt`) for this sequence and payload into `out` at `outAt`. */
export function tagInto(
  key: SipKey,
  auth: Uint8Array,
  authAt: number,
  seq: Uint8Array,
  seqAt: number,
  payload: Uint8Array,
  payloadStart: number,
  payloadEnd: number,
  out: Uint8Array,
  outAt: number,
): void {
  fillPrefix(auth, authAt, seq, seqAt, payloadEnd - payloadStart);
  siphash24(key, prefix, 0, prefix.length, payload, payloadStart, payloadEnd, out, outAt, true);
}

const expected = new Uint8Array(TAG_LENGTH);

/**
 * Whether the first tag of the stack in `buf` is right for `key`, the authenticator in the packet
 * and the payload from `payloadAt`. Compares every byte whatever differs (no early exit), so the
 * time taken tells nothing about how much of a guess was right.
 */
export function verifyTopTag(key: SipKey, buf: Uint8Array, payloadAt: number): boolean {
  tagInto(key, buf, OFFSET_AUTH, buf, OFFSET_SEQUENCE, buf, payloadAt, buf.length, expected, 0);
  let diff = 0;
  for (let i = 0; i < TAG_LENGTH; i++) diff |= expected[i]! ^ buf[OFFSET_TAG + i]!;
  return diff === 0;
}
