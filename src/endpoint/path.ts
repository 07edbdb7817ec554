import type { CircuitView } from '../api/portal.js';
import { boughtPathProblems, checkBoughtPath } from '../verify/bought.js';
import { PortalClient } from './portal-client.js';

/** One segment to buy: an ISP's portal, and the PoPs to enter and leave that ISP by. */
export interface SegmentSpec {
  isp?: string;
  portal: string;
  apiKey: string;
  ingressPop: string;
  egressPop: string;
  bandwidthMbps?: number;
  /** Buy the circuit with per-packet tags required (the ISP may require them anyway). */
  requireTags?: boolean;
}

export type TargetSpec =
  /** An unmodified UDP server: the last ISP decapsulates and sends it the payload. */
  | { kind: 'udp'; address: string }
  /** A destination running Arrow. */
  | { kind: 'endpoint'; addresses: string[]; auth?: string }
  /**
   * IP transit (docs/egress.md): the last ISP decapsulates and routes each IP packet to one of
   * `prefixes`, and answers to `source` (our tunnel prefix) come back by the return path.
   */
  | { kind: 'ip'; prefixes: string[]; source: string };

export interface PathSpec {
  /** Segments in the order traffic crosses them. */
  segments: SegmentSpec[];
  target: TargetSpec;
  /**
   * Segments of the return path, in the order return traffic crosses them.
   * Default: the same ISPs backwards, entering at each forward egress PoP.
   */
  returnSegments?: SegmentSpec[];
}

export interface BoughtCircuit {
  segment: SegmentSpec;
  circuit: CircuitView;
}

export interface BoughtPath {
  /** Forward circuits, in path order. Send to `forward[0].circuit.ingress` with `forward[0].circuit.auth`. */
  forward: BoughtCircuit[];
  /** Return circuits, in return path order; empty when no return path was requested. */
  reverse: BoughtCircuit[];
  /** Authenticator the return path writes on packets delivered to us. */
  replyAuth: string | undefined;
}

/**
 * The return path's segments by default: the same ISPs backwards. Without `requireTags`: the return
 * path's DATA is sent by the far end (a UDP target's replies are wrapped by the last ISP's router),
 * which holds no tag keys of ours (docs/security.md, "Not covered yet").
 */
export function defaultReturnSegments(segments: SegmentSpec[]): SegmentSpec[] {
  return [...segments]
    .reverse()
    .map(({ requireTags: _tags, ...s }) => ({ ...s, ingressPop: s.egressPop, egressPop: s.ingressPop }));
}

const DEFAULT_BANDWIDTH = 1;

/**
 * Buys a path across several ISPs. Circuits are bought in reverse order, the last
 * segment first, so each earlier segment is created already knowing its next hop and
 * authenticator. The return path (when `replyTo` is given) is bought before the
 * forward path, so the last forward segment can hand server replies to it.
 * If any purchase fails, everything already bought is relinquished: no half-made path.
 */
export async function buyPath(
  spec: PathSpec,
  opts: { replyTo?: { addresses: string[]; auth: string } } = {},
): Promise<BoughtPath> {
  if (spec.segments.length === 0) throw new Error('a path needs at least one segment');
  const bought: BoughtCircuit[] = [];
  const buy = async (
    segment: SegmentSpec,
    body: Parameters<PortalClient['createCircuit']>[0],
  ): Promise<BoughtCircuit> => {
    const circuit = await new PortalClient(segment.portal, segment.apiKey).createCircuit(body);
    const b = { segment, circuit };
    bought.push(b);
    return b;
  };
  try {
    const reverse: BoughtCircuit[] = [];
    if (opts.replyTo) {
      const segs = spec.returnSegments ?? defaultReturnSegments(spec.segments);
      let next: { addresses: string[]; auth: string } | undefined;
      for (let i = segs.length - 1; i >= 0; i--) {
        const s = segs[i]!;
        const base = {
          ingressPop: s.ingressPop,
          egressPop: s.egressPop,
          bandwidthMbps: s.bandwidthMbps ?? DEFAULT_BANDWIDTH,
          ...(s.requireTags ? { requireTags: true } : {}),
        };
        const b = await buy(
          s,
          next
            ? { ...base, next }
            : {
                ...base,
                deliver: { kind: 'endpoint', addresses: opts.replyTo.addresses, auth: opts.replyTo.auth },
              },
        );
        reverse.unshift(b);
        next = { addresses: b.circuit.ingress, auth: b.circuit.auth };
      }
    }
    const forward: BoughtCircuit[] = [];
    let next: { addresses: string[]; auth: string } | undefined;
    for (let i = spec.segments.length - 1; i >= 0; i--) {
      const s = spec.segments[i]!;
      const base = {
        ingressPop: s.ingressPop,
        egressPop: s.egressPop,
        bandwidthMbps: s.bandwidthMbps ?? DEFAULT_BANDWIDTH,
        ...(s.requireTags ? { requireTags: true } : {}),
      };
      let b: BoughtCircuit;
      if (next) b = await buy(s, { ...base, next });
      else if (spec.target.kind === 'udp') {
        const r = reverse[0];
        b = await buy(s, {
          ...base,
          deliver: {
            kind: 'udp',
            target: spec.target.address,
            ...(r ? { reply: { addresses: r.circuit.ingress, auth: r.circuit.auth } } : {}),
          },
        });
      } else if (spec.target.kind === 'ip') {
        const r = reverse[0];
        b = await buy(s, {
          ...base,
          deliver: {
            kind: 'ip',
            prefixes: spec.target.prefixes,
            source: spec.target.source,
            ...(r ? { reply: { addresses: r.circuit.ingress, auth: r.circuit.auth } } : {}),
          },
        });
      } else {
        const t = spec.target;
        b = await buy(s, {
          ...base,
          deliver: { kind: 'endpoint', addresses: t.addresses, ...(t.auth ? { auth: t.auth } : {}) },
        });
      }
      forward.unshift(b);
      next = { addresses: b.circuit.ingress, auth: b.circuit.auth };
    }
    // Checked before anything is sent into it: every circuit leads into the next and ends at its
    // target, as the portals answered (docs/verify.md). A path that does not is relinquished.
    const problems = boughtPathProblems(checkBoughtPath({ forward, reverse }));
    if (problems.length > 0) throw new Error(`the bought path does not check: ${problems.join('; ')}`);
    return { forward, reverse, replyAuth: opts.replyTo?.auth };
  } catch (err) {
    await relinquishAll(bought);
    throw err;
  }
}

/** Relinquishes circuits, last bought first. Best effort: reports what could not be released. */
export async function relinquishAll(circuits: BoughtCircuit[]): Promise<Error[]> {
  const failures: Error[] = [];
  for (const b of [...circuits].reverse()) {
    try {
      await new PortalClient(b.segment.portal, b.segment.apiKey).relinquish(b.circuit.auth);
    } catch (err) {
      failures.push(err as Error);
    }
  }
  return failures;
}

export async function releasePath(path: BoughtPath): Promise<Error[]> {
  return relinquishAll([...path.reverse, ...path.forward]);
}

/**
 * Undoes a purchase of several paths that failed part way: relinquishes the ones already bought,
 * then throws `err`. Circuits that could not be relinquished are named in the error (their
 * cause is kept), so nothing is left behind silently.
 */
export async function abandonPaths(bought: BoughtPath[], err: unknown): Promise<never> {
  const failures: Error[] = [];
  for (const p of bought) failures.push(...(await releasePath(p)));
  if (failures.length === 0) throw err;
  throw new Error(
    `${err instanceof Error ? err.message : String(err)}; and ${failures.length} circuit(s) already bought could not be relinquished: ${failures.map((f) => f.message).join('; ')}`,
    { cause: err },
  );
}
