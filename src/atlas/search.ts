import type { CompiledAtlas } from './graph.js';

/**
 * Resource-constrained shortest paths over the atlas: a label-setting search with Pareto-dominance
 * and bound pruning, ordered A*-style by (objective + exact lower bound to the destination).
 *
 * States: every PoP v twice. (v, IN) means "at v, the next hop must be a segment of v's ISP" (the
 * source, or just after a peering link); (v, OUT) means "at v after a segment: stop here if v is a
 * destination, or take a peering link". So a path alternates segment, link, segment, ... by
 * construction.
 *
 * Resources per label: latency (ms), loss (as -ln(1-p), so it adds up), price, segments, the bitmask
 * of required ISPs visited, and the set of "critical" ISPs visited (see ISP-simple paths below).
 * A label dominates another at the same state when it is no worse in the objective (lexicographic)
 * and in every bounded resource, has visited a superset of the required ISPs and a subset of the
 * critical ones. Dominated labels are dropped; every such drop is safe because any extension of the
 * dropped label is matched by the same extension of the dominating one.
 *
 * ISP-simple paths (each ISP at most once) are enforced by decremental state-space relaxation: the
 * search first ignores repeats; if the best path it finds repeats an ISP, that ISP becomes critical
 * (its visits are tracked in the label and in dominance) and the search runs again. The final path
 * is ISP-simple and optimal, since every relaxation contains every ISP-simple path.
 */

export const R_LATENCY = 0;
export const R_LOSS = 1;
export const R_PRICE = 2;
export const R_SEGMENTS = 3;
export type Resource = 0 | 1 | 2 | 3;
export const RESOURCES: readonly Resource[] = [0, 1, 2, 3];

const IN = 0;
const OUT = 1;
/** Critical ISPs are tracked in two 31-bit words. */
export const MAX_CRITICAL = 62;
const EPS = 1e-9;

/** Per-query edge costs and filters, indexed like CompiledAtlas segments and links. */
export interface EdgeCosts {
  /** [resource][segment]. Segments cost 1 in R_SEGMENTS. */
  seg: [Float64Array, Float64Array, Float64Array, Float64Array];
  /** [resource][link]. Links cost 0 in price and segments. */
  link: [Float64Array, Float64Array, Float64Array, Float64Array];
  /** 1 when the segment passes the query's hard filters (bandwidth, avoided ISPs). */
  segUsable: Uint8Array;
}

export interface SearchProblem {
  g: CompiledAtlas;
  costs: EdgeCosts;
  sources: number[];
  isDest: Uint8Array;
  /** Objective, compared lexicographically: [primary, secondary]. */
  objective: [Resource, Resource];
  /** Upper bounds by resource (Infinity when none); labels that cannot meet them are pruned. */
  bounds: Float64Array;
  /** Resources compared componentwise in dominance (those with a bound the search must keep). */
  tracked: Resource[];
  /** Bit per required ISP index (0 when not required); fullMask = all required bits. */
  requiredBit: Int32Array;
  fullMask: number;
  /** Lower bounds [resource] per state (2 × PoPs), from lowerBounds(); Infinity = unreachable. */
  lb: (Float64Array | undefined)[];
  /** Label budget: the search stops (exhausted = true) after creating this many labels. */
  budget: number;
  /** Time budget (ms of wall clock from the start of the search), checked every few thousand labels. */
  timeBudgetMs: number;
  /**
   * Per required ISP: its bits in the required mask and lowerBoundsVia() of the primary objective.
   * A label missing those bits must still detour through that ISP, so its bound is the larger one.
   */
  via: { bits: number; lb: Float64Array }[];
}

/** Per-search exclusions: k-alternatives remove ISPs or PoPs used by earlier paths. */
export interface Exclusions {
  isp: Uint8Array;
  pop: Uint8Array;
  /** PoPs that may start or end a path but not be crossed (router-disjoint alternatives). */
  endpointOnly: Uint8Array;
}

export interface FoundPath {
  /** Segment indices, in order. */
  segments: number[];
  /** Link indices between them (segments.length - 1), in order. */
  links: number[];
  /** Resource totals. */
  totals: [number, number, number, number];
}

export interface SearchResult {
  paths: FoundPath[];
  /** An ISP-repeating path came first: these ISPs must become critical and the search rerun. */
  repeated?: number[];
  /** The label budget ran out before the search finished. */
  exhausted: boolean;
  labels: number;
}

/**
 * Exact lower bounds of one resource from every state to the destinations: a reverse Dijkstra over
 * the state graph (hard filters applied, exclusions not: a bound for a larger graph stays valid).
 */
export function lowerBounds(
  g: CompiledAtlas,
  costs: EdgeCosts,
  isDest: Uint8Array,
  r: Resource,
): Float64Array {
  const n = g.popIds.length;
  const init = new Float64Array(2 * n).fill(Infinity);
  for (let v = 0; v < n; v++) if (isDest[v]) init[2 * v + OUT] = 0;
  return reverseDistances(g, costs, r, init);
}

/**
 * Lower bounds to the destinations *through* one ISP: from each state, the least cost to reach a
 * PoP of `isp` (to take its segment) plus the least cost from there on (`toDest`). With required
 * ISPs, a label that has not yet visited `isp` needs at least this much more.
 */
export function lowerBoundsVia(
  g: CompiledAtlas,
  costs: EdgeCosts,
  r: Resource,
  isp: number,
  toDest: Float64Array,
): Float64Array {
  const init = new Float64Array(2 * g.popIds.length).fill(Infinity);
  for (const v of g.ispPops[isp]!) init[2 * v + IN] = toDest[2 * v + IN]!;
  return reverseDistances(g, costs, r, init);
}

/** Multi-source reverse Dijkstra over the state graph from initial distances (Infinity = none). */
function reverseDistances(g: CompiledAtlas, costs: EdgeCosts, r: Resource, init: Float64Array): Float64Array {
  const dist = init;
  const heap = new MinHeap();
  for (let s = 0; s < dist.length; s++) if (dist[s]! < Infinity) heap.push(s, dist[s]!, 0);
  const segCost = costs.seg[r];
  const linkCost = costs.link[r];
  while (heap.size > 0) {
    const d = heap.topKey1();
    const s = heap.pop();
    if (d > dist[s]!) continue;
    const v = s >> 1;
    if ((s & 1) === OUT) {
      // Predecessors of (v, OUT): (u, IN) with a segment u -> v.
      for (let i = g.segInStart[v]!; i < g.segInStart[v + 1]!; i++) {
        const seg = g.segIn[i]!;
        if (!costs.segUsable[seg]) continue;
        const t = 2 * g.segFrom[seg]! + IN;
        const nd = d + segCost[seg]!;
        if (nd < dist[t]!) {
          dist[t] = nd;
          heap.push(t, nd, 0);
        }
      }
    } else {
      // Predecessors of (v, IN): (u, OUT) with a link u - v.
      for (let i = g.linkAtStart[v]!; i < g.linkAtStart[v + 1]!; i++) {
        const l = g.linkAt[i]!;
        const u = g.linkA[l] === v ? g.linkB[l]! : g.linkA[l]!;
        const t = 2 * u + OUT;
        const nd = d + linkCost[l]!;
        if (nd < dist[t]!) {
          dist[t] = nd;
          heap.push(t, nd, 0);
        }
      }
    }
  }
  return dist;
}

/** Label storage, struct-of-arrays, grown by doubling. */
class Labels {
  cap = 0;
  count = 0;
  state: Int32Array = new Int32Array(0);
  parent: Int32Array = new Int32Array(0);
  /** Segment index (>= 0) or -(link index) - 1 taken to reach this label; unused at sources. */
  via: Int32Array = new Int32Array(0);
  res: [Float64Array, Float64Array, Float64Array, Float64Array] = [
    new Float64Array(0),
    new Float64Array(0),
    new Float64Array(0),
    new Float64Array(0),
  ];
  mask: Int32Array = new Int32Array(0);
  critLo: Int32Array = new Int32Array(0);
  critHi: Int32Array = new Int32Array(0);
  /** Bit i: the segments so far are a prefix of forbidden path i (see SearchOptions.forbidden). */
  dup: Int32Array = new Int32Array(0);
  dead: Uint8Array = new Uint8Array(0);

  constructor(initial: number) {
    this.grow(initial);
  }

  grow(cap: number): void {
    const copyI = (a: Int32Array): Int32Array => {
      const b = new Int32Array(cap);
      b.set(a);
      return b;
    };
    const copyF = (a: Float64Array): Float64Array => {
      const b = new Float64Array(cap);
      b.set(a);
      return b;
    };
    this.state = copyI(this.state);
    this.parent = copyI(this.parent);
    this.via = copyI(this.via);
    this.res = [copyF(this.res[0]), copyF(this.res[1]), copyF(this.res[2]), copyF(this.res[3])];
    this.mask = copyI(this.mask);
    this.critLo = copyI(this.critLo);
    this.critHi = copyI(this.critHi);
    this.dup = copyI(this.dup);
    const d = new Uint8Array(cap);
    d.set(this.dead);
    this.dead = d;
    this.cap = cap;
  }

  add(): number {
    if (this.count === this.cap) this.grow(this.cap * 2);
    return this.count++;
  }
}

/** Critical-ISP bookkeeping: ISP index -> bit position 0..61, or -1. */
export class CriticalIsps {
  readonly bit: Int32Array;
  size = 0;
  constructor(isps: number) {
    this.bit = new Int32Array(isps).fill(-1);
  }
  add(isp: number): boolean {
    if (this.bit[isp]! >= 0) return true;
    if (this.size >= MAX_CRITICAL) return false;
    this.bit[isp] = this.size++;
    return true;
  }
}

export interface SearchOptions {
  critical: CriticalIsps;
  exclusions: Exclusions;
  /** Stop after this many complete paths (1 for the answer search). */
  maxPaths: number;
  /**
   * Complete paths are offered here. true: a result. false: not a result, but it still dominates
   * later complete paths (so results are Pareto-optimal among all complete paths, not only results).
   */
  accept?: (p: FoundPath) => boolean;
  /** When true, an ISP-repeating complete path is skipped instead of reported (critical set full). */
  skipRepeats: boolean;
  /**
   * Segment sequences that must not be returned again (earlier alternatives; at most 30). A label
   * tracks which of them its segments are still a prefix of, and dominance respects that, so the
   * search stays exact: it finds the best path that is none of these.
   */
  forbidden?: number[][];
}

/** Runs the label-setting search once. */
export function search(p: SearchProblem, o: SearchOptions): SearchResult {
  const { g, costs, isDest, bounds, tracked, requiredBit, fullMask, lb } = p;
  const throughIsps = p.via;
  const [prim, sec] = p.objective;
  const lbP = lb[prim]!;
  const lbS = lb[sec]!;
  const n = g.popIds.length;
  const L = new Labels(1024);
  const heap = new MinHeap();
  const atState: (number[] | undefined)[] = new Array(2 * n);
  const sinkLabels: number[] = [];
  const { isp: exIsp, pop: exPop, endpointOnly } = o.exclusions;
  const critBit = o.critical.bit;
  const boundedRes = RESOURCES.filter((r) => bounds[r]! < Infinity);
  const result: SearchResult = { paths: [], exhausted: false, labels: 0 };
  const scratch = new Float64Array(4);
  const forbidden = o.forbidden ?? [];
  if (forbidden.length > 30) throw new RangeError('at most 30 forbidden paths');
  const allForbidden = (1 << forbidden.length) - 1;
  const isForbidden = (id: number): boolean => {
    const dup = L.dup[id]!;
    if (dup === 0) return false;
    const count = L.res[R_SEGMENTS][id]!;
    for (let i = 0; i < forbidden.length; i++)
      if (dup & (1 << i) && forbidden[i]!.length === count) return true;
    return false;
  };

  const dominates = (a: number, b: number): boolean => {
    const pa = L.res[prim][a]!;
    const pb = L.res[prim][b]!;
    if (pa > pb || (pa === pb && L.res[sec][a]! > L.res[sec][b]!)) return false;
    for (const r of tracked) if (L.res[r][a]! > L.res[r][b]!) return false;
    if ((L.mask[a]! & L.mask[b]!) !== L.mask[b]) return false;
    if ((L.dup[a]! & ~L.dup[b]!) !== 0) return false;
    return (L.critLo[a]! & ~L.critLo[b]!) === 0 && (L.critHi[a]! & ~L.critHi[b]!) === 0;
  };

  /** Keeps label `id` at `list` unless dominated; drops the labels it dominates. */
  const admit = (list: number[], id: number): boolean => {
    for (const other of list) if (!L.dead[other] && dominates(other, id)) return false;
    let w = 0;
    for (const other of list) {
      if (L.dead[other]) continue;
      if (dominates(id, other)) L.dead[other] = 1;
      else list[w++] = other;
    }
    list.length = w;
    list.push(id);
    return true;
  };

  /** Creates a label at `state` extending `from` by edge `via`, unless pruned or dominated. */
  const extend = (
    from: number,
    state: number,
    via: number,
    seg: boolean,
    edge: number,
    isp: number,
  ): void => {
    let lbPs = lbP[state]!;
    if (lbPs === Infinity) return;
    const mask = seg ? L.mask[from]! | requiredBit[isp]! : L.mask[from]!;
    for (const v of throughIsps) {
      if ((mask & v.bits) === v.bits) continue;
      const h = v.lb[state]!;
      if (h > lbPs) lbPs = h;
    }
    if (lbPs === Infinity) return;
    const c = seg ? costs.seg : costs.link;
    const r0 = L.res[0][from]! + c[0][edge]!;
    const r1 = L.res[1][from]! + c[1][edge]!;
    const r2 = L.res[2][from]! + c[2][edge]!;
    const r3 = L.res[3][from]! + c[3][edge]!;
    const vals = scratch;
    vals[0] = r0;
    vals[1] = r1;
    vals[2] = r2;
    vals[3] = r3;
    for (const r of boundedRes) {
      const lbr = r === prim ? lbPs : lb[r]![state]!;
      if (vals[r]! + lbr > bounds[r]! + EPS) return;
    }
    let dup = L.dup[from]!;
    if (seg && dup !== 0) {
      const at = L.res[R_SEGMENTS][from]!;
      for (let i = 0; i < forbidden.length; i++)
        if (dup & (1 << i) && forbidden[i]![at] !== edge) dup &= ~(1 << i);
    }
    let lo = L.critLo[from]!;
    let hi = L.critHi[from]!;
    if (seg) {
      const b = critBit[isp]!;
      if (b >= 0) {
        if (b < 31) {
          if (lo & (1 << b)) return;
          lo |= 1 << b;
        } else {
          if (hi & (1 << (b - 31))) return;
          hi |= 1 << (b - 31);
        }
      }
    }
    const id = L.add();
    L.state[id] = state;
    L.parent[id] = from;
    L.via[id] = via;
    L.res[0][id] = r0;
    L.res[1][id] = r1;
    L.res[2][id] = r2;
    L.res[3][id] = r3;
    L.mask[id] = mask;
    L.critLo[id] = lo;
    L.critHi[id] = hi;
    L.dup[id] = dup;
    L.dead[id] = 0;
    let list = atState[state];
    if (!list) atState[state] = list = [];
    if (!admit(list, id)) {
      L.dead[id] = 1;
      return;
    }
    heap.push(id, vals[prim]! + lbPs, vals[sec]! + lbS[state]!);
  };

  for (const s of p.sources) {
    if (exPop[s] || lbP[2 * s + IN] === Infinity) continue;
    const id = L.add();
    L.state[id] = 2 * s + IN;
    L.parent[id] = -1;
    L.via[id] = 0;
    for (const r of RESOURCES) L.res[r][id] = 0;
    L.mask[id] = 0;
    L.critLo[id] = 0;
    L.critHi[id] = 0;
    L.dup[id] = allForbidden;
    let list = atState[2 * s + IN];
    if (!list) atState[2 * s + IN] = list = [];
    if (admit(list, id)) heap.push(id, lbP[2 * s + IN]!, lbS[2 * s + IN]!);
  }

  const started = performance.now();
  let nextClockCheck = 4096;
  while (heap.size > 0) {
    if (L.count > nextClockCheck) {
      nextClockCheck = L.count + 4096;
      if (performance.now() - started > p.timeBudgetMs) {
        result.exhausted = true;
        break;
      }
    }
    if (L.count > p.budget) {
      result.exhausted = true;
      break;
    }
    const id = heap.pop();
    if (L.dead[id]) continue;
    const state = L.state[id]!;
    const v = state >> 1;
    if ((state & 1) === OUT) {
      if (isDest[v] && L.mask[id] === fullMask && !isForbidden(id)) {
        let sinkOk = true;
        for (const other of sinkLabels)
          if (dominates(other, id)) {
            sinkOk = false;
            break;
          }
        if (sinkOk) {
          const path = unwind(L, id);
          const repeats = repeatedIsps(g, path);
          if (repeats.length > 0) {
            if (!o.skipRepeats) {
              result.repeated = repeats;
              break;
            }
          } else {
            sinkLabels.push(id);
            if (!o.accept || o.accept(path)) {
              result.paths.push(path);
              if (result.paths.length >= o.maxPaths) break;
            }
          }
        }
      }
      if (endpointOnly[v]) continue;
      for (let i = g.linkAtStart[v]!; i < g.linkAtStart[v + 1]!; i++) {
        const l = g.linkAt[i]!;
        const w = g.linkA[l] === v ? g.linkB[l]! : g.linkA[l]!;
        if (exPop[w] || endpointOnly[w] || exIsp[g.popIsp[w]!]) continue;
        extend(id, 2 * w + IN, -l - 1, false, l, -1);
      }
    } else {
      const isp = g.popIsp[v]!;
      if (exIsp[isp]) continue;
      for (let i = g.segOutStart[v]!; i < g.segOutStart[v + 1]!; i++) {
        const seg = g.segOut[i]!;
        if (!costs.segUsable[seg]) continue;
        const to = g.segTo[seg]!;
        if (exPop[to] || (endpointOnly[to] && !isDest[to])) continue;
        extend(id, 2 * to + OUT, seg, true, seg, isp);
      }
    }
  }
  result.labels = L.count;
  return result;
}

function unwind(L: Labels, id: number): FoundPath {
  const segments: number[] = [];
  const links: number[] = [];
  const totals: FoundPath['totals'] = [L.res[0][id]!, L.res[1][id]!, L.res[2][id]!, L.res[3][id]!];
  for (let cur = id; L.parent[cur]! >= 0; cur = L.parent[cur]!) {
    const via = L.via[cur]!;
    if (via >= 0) segments.push(via);
    else links.push(-via - 1);
  }
  segments.reverse();
  links.reverse();
  return { segments, links, totals };
}

function repeatedIsps(g: CompiledAtlas, p: FoundPath): number[] {
  const seen = new Set<number>();
  const repeated = new Set<number>();
  for (const s of p.segments) {
    const isp = g.popIsp[g.segFrom[s]!]!;
    if (seen.has(isp)) repeated.add(isp);
    seen.add(isp);
  }
  return [...repeated];
}

/** Binary min-heap of integer items keyed by (key1, key2), ties by insertion order. */
export class MinHeap {
  private items: Int32Array = new Int32Array(256);
  private k1: Float64Array = new Float64Array(256);
  private k2: Float64Array = new Float64Array(256);
  private seq: Float64Array = new Float64Array(256);
  private next = 0;
  size = 0;

  push(item: number, key1: number, key2: number): void {
    if (this.size === this.items.length) this.grow();
    let i = this.size++;
    const s = this.next++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(key1, key2, s, p)) break;
      this.move(p, i);
      i = p;
    }
    this.items[i] = item;
    this.k1[i] = key1;
    this.k2[i] = key2;
    this.seq[i] = s;
  }

  topKey1(): number {
    return this.k1[0]!;
  }

  pop(): number {
    const top = this.items[0]!;
    const last = --this.size;
    if (last > 0) {
      const item = this.items[last]!;
      const a = this.k1[last]!;
      const b = this.k2[last]!;
      const s = this.seq[last]!;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= last) break;
        const r = l + 1;
        const c = r < last && this.lessAt(r, l) ? r : l;
        if (!this.less(this.k1[c]!, this.k2[c]!, this.seq[c]!, i, a, b, s)) break;
        this.move(c, i);
        i = c;
      }
      this.items[i] = item;
      this.k1[i] = a;
      this.k2[i] = b;
      this.seq[i] = s;
    }
    return top;
  }

  /** (a1, a2, as) < entry j — or, when b* are given, (a1, a2, as) < (b1, b2, bs). */
  private less(
    a1: number,
    a2: number,
    as: number,
    j: number,
    b1?: number,
    b2?: number,
    bs?: number,
  ): boolean {
    const c1 = b1 ?? this.k1[j]!;
    const c2 = b2 ?? this.k2[j]!;
    const cs = bs ?? this.seq[j]!;
    return a1 < c1 || (a1 === c1 && (a2 < c2 || (a2 === c2 && as < cs)));
  }

  private lessAt(i: number, j: number): boolean {
    return this.less(this.k1[i]!, this.k2[i]!, this.seq[i]!, j);
  }

  private move(from: number, to: number): void {
    this.items[to] = this.items[from]!;
    this.k1[to] = this.k1[from]!;
    this.k2[to] = this.k2[from]!;
    this.seq[to] = this.seq[from]!;
  }

  private grow(): void {
    const cap = this.items.length * 2;
    const i = new Int32Array(cap);
    i.set(this.items);
    this.items = i;
    for (const k of ['k1', 'k2', 'seq'] as const) {
      const a = new Float64Array(cap);
      a.set(this[k]);
      this[k] = a;
    }
  }
}
