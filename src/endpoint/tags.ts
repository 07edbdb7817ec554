import { authToBytes } from '../wire/authenticator.js';
import { OFFSET_SEQUENCE, OFFSET_TAG, TAG_LENGTH, headerLength } from '../wire/header.js';
import { sipKey, type SipKey } from '../wire/siphash.js';
import { tagInto } from '../wire/tag.js';
import type { BoughtCircuit } from './path.js';

/** One tag the sender pushes: for the ISP whose circuit `auth` requires tags, with its key. */
export interface TagLink {
  auth: Buffer;
  key: SipKey;
}

/**
 * The tags a path needs, in path order: one for every circuit bought with a tag key (its ISP
 * checks it at its ingress and pops it, so the next checking ISP finds its own first). The
 * customer holds every key; no ISP learns another's (docs/wire.md, "The tag stack").
 */
export function tagChain(circuits: BoughtCircuit[]): TagLink[] {
  return circuits.flatMap((b) =>
    b.circuit.tagKey
      ? [{ auth: authToBytes(b.circuit.auth), key: sipKey(Buffer.from(b.circuit.tagKey, 'hex')) }]
      : [],
  );
}

/**
 * Fills the tag stack of an encoded packet (encoded with `chain.length` placeholder tags): each
 * ISP's tag over its own authenticator, the packet's sequence and the payload.
 */
export function fillTags(buf: Buffer, chain: readonly TagLink[]): void {
  const payloadAt = headerLength(buf);
  for (let i = 0; i < chain.length; i++) {
    const link = chain[i]!;
    tagInto(
      link.key,
      link.auth,
      0,
      buf,
      OFFSET_SEQUENCE,
      buf,
      payloadAt,
      buf.length,
      buf,
      OFFSET_TAG + i * TAG_LENGTH,
    );
  }
}

/** Placeholders for `n` tags, filled by `fillTags` once the packet is encoded. */
export function blankTags(n: number): Uint8Array[] | undefined {
  return n === 0 ? undefined : Array.from({ length: n }, () => new Uint8Array(TAG_LENGTH));
}
