import { midMedian, round } from '../util/stats.js';
import type { Measurement } from './model.js';

/**
 * How the atlas measures between two PoPs it cannot see from inside: it asks a router of
 * the first PoP to echo a router of the second (a relayed echo) and, in the same round,
 * echoes the first router directly. The difference is the PoP-to-PoP leg.
 */
export interface EchoProber {
  /** Round-trip ms of one echo to `router`, or undefined when none came back within `timeoutMs`. */
  echo(router: string, timeoutMs: number): Promise<number | undefined>;
  /**
   * Asks `via` to echo `to`: the `via`↔`to` round trip in ms as `via` timed it, or undefined when
   * the relay, the echo or either answer was lost.
   */
  relay(via: string, to: string, timeoutMs: number): Promise<number | undefined>;
}

/** One measurement round of a PoP pair: `echoes` direct and `echoes` relayed echoes. */
export interface RoundResult {
  at: number;
  direct: (number | undefined)[];
  relayed: (number | undefined)[];
}

/**
 * The recent history of one PoP pair, and the figures the path queries use. Pure: rounds go in,
 * a Measurement comes out.
 *
 * - latency: one way, half the median of the PoP-to-PoP round trips the first router timed;
 * - loss: of the leg itself, 1 − (relayed success)/(direct success), since a relayed echo crosses
 *   the atlas-to-router leg as well as the PoP-to-PoP leg. Clamped to 0..100 %.
 */
export class PairHistory {
  private readonly rounds: RoundResult[] = [];

  constructor(private readonly keep: number) {}

  add(round: RoundResult): void {
    this.rounds.push(round);
    if (this.rounds.length > this.keep) this.rounds.shift();
  }

  get size(): number {
    return this.rounds.length;
  }

  measurement(): Measurement | undefined {
    const direct = this.rounds.flatMap((r) => r.direct);
    const relayed = this.rounds.flatMap((r) => r.relayed);
    if (relayed.length === 0) return undefined;
    const directOk = direct.filter((x): x is number => x !== undefined);
    const relayedOk = relayed.filter((x): x is number => x !== undefined);
    const directShare = direct.length ? directOk.length / direct.length : 1;
    const relayedShare = relayedOk.length / relayed.length;
    const leg = directShare > 0 ? Math.min(1, relayedShare / directShare) : 0;
    const lossPct = Math.max(0, Math.min(100, (1 - leg) * 100));
    // Nothing came back at all: the pair is as good as cut. Its latency is unknown, not zero.
    if (relayedOk.length === 0)
      return { latencyMs: Infinity, lossPct: 100, samples: relayed.length, at: this.last };
    return {
      latencyMs: round(midMedian(relayedOk) / 2),
      lossPct: round(lossPct),
      samples: relayed.length,
      at: this.last,
    };
  }

  private get last(): number {
    return this.rounds[this.rounds.length - 1]!.at;
  }
}

/** One round for a pair: the echoes go out together, so a burst of loss hits both kinds alike. */
export async function measureRound(
  prober: EchoProber,
  via: string,
  to: string,
  echoes: number,
  timeoutMs: number,
  now: () => number = Date.now,
  /** A probe that failed outright (a socket error, not a lost echo): counted as lost, and reported here. */
  onProbeError: (err: unknown) => void = () => undefined,
): Promise<RoundResult> {
  const at = now();
  const direct: Promise<number | undefined>[] = [];
  const relayed: Promise<number | undefined>[] = [];
  const lost = (err: unknown): undefined => {
    onProbeError(err);
    return undefined;
  };
  for (let i = 0; i < echoes; i++) {
    direct.push(prober.echo(via, timeoutMs).catch(lost));
    relayed.push(prober.relay(via, to, timeoutMs).catch(lost));
  }
  return { at, direct: await Promise.all(direct), relayed: await Promise.all(relayed) };
}
