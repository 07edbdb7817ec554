import type { Circuit } from '../store/circuit.js';
import { HEADER_LENGTH, OFFSET_SEQUENCE, tagCount } from '../wire/header.js';
import { sipKey, type SipKey } from '../wire/siphash.js';
import { verifyTopTag } from '../wire/tag.js';
import { burstBytes, police, policeParams, type PoliceParams, type PoliceState } from './police.js';
import { newReplayWindow, replayAccept, replayFresh, type ReplayWindow } from './replay.js';

/**
 * What an ISP checks on a circuit's DATA where it enters the ISP (the ingress-PoP router): the
 * tag and the replay window when the circuit requires tags, then policing at the bought rate.
 * One per circuit, of fixed size, kept across re-chains like the counters (a re-chain must not
 * reopen the replay window nor refill the bucket). The kernel path keeps the same in a map value.
 */
export interface IngressGuard {
  police: PoliceParams;
  policeState: PoliceState;
  /** The circuit's tag key, when its DATA must carry this ISP's tag; else undefined. */
  tagKey: SipKey | undefined;
  /** The hex key `tagKey` was made from, to tell a changed key (which restarts the window). */
  tagKeyHex: string | undefined;
  replay: ReplayWindow;
}

export type IngressRefusal = 'bad-tag' | 'replay' | 'over-rate';

/** The guard for a circuit record, keeping `previous`'s state (bucket, and window if the key is the same). */
export function ingressGuard(c: Circuit, previous: IngressGuard | undefined): IngressGuard {
  const key = c.tagKey === undefined || c.tagKey === '' ? undefined : c.tagKey;
  const sameKey = previous !== undefined && previous.tagKeyHex === key;
  return {
    police: policeParams(c.bandwidthMbps, c.burstBytes ?? burstBytes(c.bandwidthMbps)),
    policeState: previous?.policeState ?? { tat: 0 },
    tagKey: key === undefined ? undefined : sipKey(Buffer.from(key, 'hex')),
    tagKeyHex: key,
    replay: sameKey ? previous.replay : newReplayWindow(),
  };
}

/**
 * The checks, in order: the tag and the replay window (so a forger holding a snooped
 * authenticator cannot drain the owner's bucket), then policing. `buf` is a well-formed DATA
 * packet of the circuit; `now` is monotonic ns. Undefined: admitted (and, with tags, the
 * sequence marked seen). Nothing is allocated.
 */
export function admit(g: IngressGuard, buf: Buffer, now: number): IngressRefusal | undefined {
  if (g.tagKey !== undefined) {
    const tags = tagCount(buf);
    if (tags === 0) return 'bad-tag';
    const hi = buf.readUInt32BE(OFFSET_SEQUENCE);
    const lo = buf.readUInt32BE(OFFSET_SEQUENCE + 4);
    // The cheap check first: an old sequence is refused before any MAC is computed.
    if (!replayFresh(g.replay, hi, lo)) return 'replay';
    if (!verifyTopTag(g.tagKey, buf, HEADER_LENGTH + 16 * tags)) return 'bad-tag';
    replayAccept(g.replay, hi, lo);
  }
  return police(g.police, g.policeState, buf.length, now) ? undefined : 'over-rate';
}
