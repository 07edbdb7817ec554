import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { AtlasMap } from './model.js';
import { PathQuerySchema, type PathQuery } from '../api/atlas.js';
import { DEFAULT_MEASUREMENT_MAX_AGE_MS } from './model.js';
import { compileAtlas, maskTo, parseIpv4, type CompiledAtlas } from './graph.js';
import {
  CriticalIsps,
  lowerBounds,
  lowerBoundsVia,
  R_LATENCY,
  R_LOSS,
  R_PRICE,
  R_SEGMENTS,
  RESOURCES,
  search,
  type EdgeCosts,
  type Exclusions,
  type FoundPath,
  type Resource,
  type SearchProblem,
} from './search.js';

/**
 * Path queries: a declarative JSON query (never customer code) answered by a constrained
 * shortest-path search over the atlas map. See docs/atlas.md, "Path queries".
 */

export { PathQuerySchema, type PathQuery } from '../api/atlas.js';

const checkQuery = TypeCompiler.Compile(PathQuerySchema);

export type QueryErrorCode = 'bad-query' | 'unknown-isp' | 'unknown-pop' | 'unmappable-target';

/** A query that cannot be answered as asked: invalid, or naming something the atlas does not know. */
export class QueryError extends Error {
  constructor(
    readonly code: QueryErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'QueryError';
  }
}

export interface PathSegment {
  isp: string;
  /** PoP names inside `isp`. */
  ingressPop: string;
  egressPop: string;
  latencyMs: number;
  lossPct: number;
  /** true when latency and loss come from a fresh measurement, false when from the SLA. */
  measured: boolean;
  availableMbps: number;
  /** pricePerMbps × the query's bandwidth. */
  price: number;
  ingress: string[];
  egress: string[];
}

export interface PathLink {
  /** PoP ids, in the direction of travel. */
  a: string;
  b: string;
  latencyMs: number;
  lossPct: number;
}

export interface PathCandidate {
  segments: PathSegment[];
  links: PathLink[];
  latencyMs: number;
  lossPct: number;
  /** The smallest availableMbps of the segments. */
  bandwidthMbps: number;
  price: number;
  /** The segments' ISPs, in order; each appears once. */
  isps: string[];
}

export interface PathAnswer {
  /** Up to k paths meeting every constraint, best first, disjoint as asked. */
  paths: PathCandidate[];
  /**
   * Up to k+2 paths that meet the hard filters but break a soft bound (maxLatencyMs, maxLossPct,
   * maxPrice), best first, each with its reasons. Only Pareto-optimal ones: each is better than any
   * other path on the sort order or on a bounded measure.
   */
  rejected: { path: PathCandidate; reasons: string[] }[];
  /** Anything that makes the answer less than exact (a search budget ran out), in words. */
  notes: string[];
}

/**
 * What one search may spend before it gives up and says so in `notes`: labels (about 60 bytes
 * each) and wall-clock time. Ordinary queries use a few thousand labels and a few ms; only
 * combinatorial ones (many required ISPs far apart) come near these.
 */
const ANSWER_BUDGET = { labels: 1_000_000, ms: 1000 };
const REJECTED_BUDGET = { labels: 200_000, ms: 250 };

/**
 * Answers a path query. Throws QueryError for an invalid query or one naming an ISP, PoP or target
 * the map does not know; otherwise never throws (no path is `paths: []`).
 * `now` (ms epoch) decides which measurements are fresh.
 */
export function queryPaths(map: AtlasMap, q: PathQuery, now: number = Date.now()): PathAnswer {
  if (!checkQuery.Check(q)) {
    const e = checkQuery.Errors(q).First();
    throw new QueryError('bad-query', `invalid query: ${e ? `${e.path || '/'} ${e.message}` : 'malformed'}`);
  }
  const g = compileAtlas(map);
  const k = q.k ?? 1;
  const sort = q.sort ?? 'latency';
  const disjoint = q.disjoint ?? 'isp';
  const n = g.popIds.length;

  const dests = resolveDestination(g, q.to);
  const isDest = new Uint8Array(n);
  for (const d of dests) isDest[d] = 1;

  const avoided = new Uint8Array(g.isps.length);
  for (const name of q.avoid ?? []) {
    const i = g.ispIndex.get(name);
    if (i !== undefined) avoided[i] = 1;
  }
  const sources = resolveSource(g, q.from, avoided);
  const sourceIsps = new Set(sources.map((s) => g.popIsp[s]!));
  const requiredBit = new Int32Array(g.isps.length);
  let fullMask = 0;
  (q.require ?? []).forEach((name, i) => {
    const idx = g.ispIndex.get(name);
    if (idx === undefined)
      throw new QueryError('unknown-isp', `require: unknown ISP ${JSON.stringify(name)}`);
    if (avoided[idx]) throw new QueryError('bad-query', `ISP ${name} is both required and avoided`);
    requiredBit[idx] = requiredBit[idx]! | (1 << i);
    fullMask |= 1 << i;
  });

  const costs = edgeCosts(map, g, q, now, avoided);
  const bounds = new Float64Array(4).fill(Infinity);
  if (q.maxLatencyMs !== undefined) bounds[R_LATENCY] = q.maxLatencyMs;
  if (q.maxLossPct !== undefined) bounds[R_LOSS] = lossToLog(q.maxLossPct);
  if (q.maxPrice !== undefined) bounds[R_PRICE] = q.maxPrice;
  if (q.maxIsps !== undefined) bounds[R_SEGMENTS] = q.maxIsps;
  const objective: [Resource, Resource] =
    sort === 'latency'
      ? [R_LATENCY, R_SEGMENTS]
      : sort === 'price'
        ? [R_PRICE, R_LATENCY]
        : [R_SEGMENTS, R_LATENCY];

  // Lower bounds are computed once, on the whole filtered graph, and reused by every search below.
  const lbCache: (Float64Array | undefined)[] = [];
  const lb = (r: Resource): Float64Array => (lbCache[r] ??= lowerBounds(g, costs, isDest, r));
  const needed = new Set<Resource>([...objective, ...RESOURCES.filter((r) => bounds[r]! < Infinity)]);
  for (const r of needed) lb(r);

  const problem: SearchProblem = {
    g,
    costs,
    sources,
    isDest,
    objective,
    bounds,
    tracked: RESOURCES.filter((r) => bounds[r]! < Infinity),
    requiredBit,
    fullMask,
    lb: lbCache,
    budget: ANSWER_BUDGET.labels,
    timeBudgetMs: ANSWER_BUDGET.ms,
    via: [...new Set((q.require ?? []).map((name) => g.ispIndex.get(name)!))].map((isp) => ({
      bits: requiredBit[isp]!,
      lb: lowerBoundsVia(g, costs, objective[0], isp, lb(objective[0])),
    })),
  };
  const critical = new CriticalIsps(g.isps.length);
  const notes: string[] = [];
  const exclusions: Exclusions = {
    isp: new Uint8Array(g.isps.length),
    pop: new Uint8Array(n),
    endpointOnly: new Uint8Array(n),
  };
  // ISPs every alternative may share under isp-disjointness: the source's and the destination's,
  // each when it is fixed (all source, or all destination, PoPs belong to one ISP).
  const destIsps = new Set(dests.map((d) => g.popIsp[d]!));
  const sharedIsps = new Set([
    ...(sourceIsps.size === 1 ? sourceIsps : []),
    ...(destIsps.size === 1 ? destIsps : []),
  ]);

  const found: FoundPath[] = [];
  for (let i = 0; i < k; i++) {
    // Disjointness lets a path made only of shared ISPs (or with no interior PoP) come back
    // unchanged; the earlier paths are therefore forbidden outright.
    const p = bestPath(
      problem,
      critical,
      exclusions,
      found.map((f) => f.segments),
      notes,
    );
    if (!p) break;
    found.push(p);
    if (disjoint === 'isp') {
      for (const s of p.segments) {
        const isp = g.popIsp[g.segFrom[s]!]!;
        if (!sharedIsps.has(isp)) exclusions.isp[isp] = 1;
      }
    } else {
      const pops = p.segments.flatMap((s) => [g.segFrom[s]!, g.segTo[s]!]);
      pops.forEach((v, j) => {
        if (j === 0 || j === pops.length - 1) exclusions.endpointOnly[v] = 1;
        else exclusions.pop[v] = 1;
      });
    }
  }

  const rejected: PathAnswer['rejected'] = [];
  const soft = [R_LATENCY, R_LOSS, R_PRICE].filter((r) => bounds[r]! < Infinity) as Resource[];
  if (soft.length > 0) {
    const hardBounds = new Float64Array(4).fill(Infinity);
    hardBounds[R_SEGMENTS] = bounds[R_SEGMENTS]!;
    const relaxed: SearchProblem = {
      ...problem,
      bounds: hardBounds,
      tracked: [...soft, ...(hardBounds[R_SEGMENTS]! < Infinity ? [R_SEGMENTS as Resource] : [])],
      budget: REJECTED_BUDGET.labels,
      timeBudgetMs: REJECTED_BUDGET.ms,
    };
    const r = search(relaxed, {
      critical,
      exclusions: {
        isp: new Uint8Array(g.isps.length),
        pop: new Uint8Array(n),
        endpointOnly: new Uint8Array(n),
      },
      maxPaths: k + 2,
      skipRepeats: true,
      accept: (path) => violations(path, q, bounds).length > 0,
    });
    if (r.exhausted)
      notes.push(
        `the search for rejected paths stopped at its budget (${r.labels} labels); the list may be short`,
      );
    for (const path of r.paths)
      rejected.push({ path: describe(g, costs, path), reasons: violations(path, q, bounds) });
  }

  return { paths: found.map((p) => describe(g, costs, p)), rejected, notes };
}

/** One best path under the exclusions, ISP-simple, refining the critical ISPs until it is. */
function bestPath(
  problem: SearchProblem,
  critical: CriticalIsps,
  exclusions: Exclusions,
  forbidden: number[][],
  notes: string[],
): FoundPath | undefined {
  let skipRepeats = false;
  // Each round adds at least one ISP to the critical set, which is bounded.
  for (let round = 0; round <= problem.g.isps.length + 1; round++) {
    const r = search(problem, { critical, exclusions, maxPaths: 1, skipRepeats, forbidden });
    if (r.exhausted) {
      notes.push(`the search stopped at its budget (${r.labels} labels); a better path may have been missed`);
      return r.paths[0];
    }
    if (!r.repeated) return r.paths[0];
    for (const isp of r.repeated) {
      if (!critical.add(isp)) {
        // Out of critical-ISP bits: keep searching, passing over ISP-repeating paths. This is no
        // longer guaranteed optimal, so say so.
        skipRepeats = true;
        notes.push('too many ISP-repeating detours to track exactly; the path may not be optimal');
        break;
      }
    }
  }
  return undefined;
}

/** Source PoPs. An avoided ISP cannot be a fixed source; in a place (star-slash-POP) it drops out. */
function resolveSource(g: CompiledAtlas, from: string, avoided: Uint8Array): number[] {
  const slash = from.indexOf('/');
  const ispName = slash < 0 ? from : from.slice(0, slash);
  if (ispName === '*') {
    const name = from.slice(slash + 1);
    const here = g.popIds
      .map((id, i) => (id.slice(id.indexOf('/') + 1) === name ? i : -1))
      .filter((i) => i >= 0);
    if (here.length === 0)
      throw new QueryError('unknown-pop', `from: no ISP has a PoP named ${JSON.stringify(name)}`);
    const usable = here.filter((i) => !avoided[g.popIsp[i]!]);
    if (usable.length === 0)
      throw new QueryError(
        'bad-query',
        `from: every ISP with a PoP named ${JSON.stringify(name)} is in avoid`,
      );
    return usable;
  }
  const isp = g.ispIndex.get(ispName);
  if (isp === undefined) throw new QueryError('unknown-isp', `from: unknown ISP ${JSON.stringify(ispName)}`);
  if (avoided[isp]) throw new QueryError('bad-query', `source ISP ${ispName} is also in avoid`);
  if (slash < 0) return g.ispPops[isp]!;
  const pop = g.popIndex.get(from);
  if (pop === undefined)
    throw new QueryError('unknown-pop', `from: ISP ${ispName} has no PoP ${JSON.stringify(from)}`);
  return [pop];
}

function resolveDestination(g: CompiledAtlas, to: string): number[] {
  const hostPort = /^(\d{1,3}(?:\.\d{1,3}){3})(?::(\d{1,5}))?$/.exec(to);
  if (hostPort) {
    const ip = parseIpv4(hostPort[1]!);
    if (ip === undefined)
      throw new QueryError('bad-query', `to: ${JSON.stringify(to)} is not a valid IPv4 address`);
    let best = -1;
    let pops: number[] = [];
    for (const t of g.targets) {
      if (t.length < best || maskTo(ip, t.length) !== t.network) continue;
      if (t.length > best) {
        best = t.length;
        pops = [];
      }
      pops.push(...t.pops);
    }
    if (best < 0)
      throw new QueryError('unmappable-target', `to: no target prefix of the atlas contains ${hostPort[1]}`);
    if (pops.length === 0)
      throw new QueryError(
        'unmappable-target',
        `to: the longest prefix containing ${hostPort[1]} maps to no known PoP`,
      );
    return [...new Set(pops)];
  }
  const slash = to.indexOf('/');
  if (slash < 0 || to.indexOf('/', slash + 1) >= 0)
    throw new QueryError(
      'bad-query',
      `to: ${JSON.stringify(to)} is neither ISP/POP nor an IPv4 address (host:port needs an IPv4 host)`,
    );
  const ispName = to.slice(0, slash);
  if (!g.ispIndex.has(ispName))
    throw new QueryError('unknown-isp', `to: unknown ISP ${JSON.stringify(ispName)}`);
  const pop = g.popIndex.get(to);
  if (pop === undefined)
    throw new QueryError('unknown-pop', `to: ISP ${ispName} has no PoP ${JSON.stringify(to)}`);
  return [pop];
}

/** Loss percent to its additive form, -ln(1 - p); 100% is Infinity. */
function lossToLog(pct: number): number {
  const p = Math.min(100, Math.max(0, pct)) / 100;
  return p >= 1 ? Infinity : -Math.log1p(-p);
}

function logToLoss(l: number): number {
  return l === Infinity ? 100 : -Math.expm1(-l) * 100;
}

interface CostsWithDetail extends EdgeCosts {
  segMeasured: Uint8Array;
  segLossPct: Float64Array;
  linkLossPct: Float64Array;
}

function edgeCosts(
  map: AtlasMap,
  g: CompiledAtlas,
  q: PathQuery,
  now: number,
  avoided: Uint8Array,
): CostsWithDetail {
  const m = g.offers.length;
  const l = g.linkA.length;
  const useMeasured = (q.latency ?? 'measured') === 'measured';
  const maxAge = map.measurementMaxAgeMs ?? DEFAULT_MEASUREMENT_MAX_AGE_MS;
  const bw = q.minBandwidthMbps ?? 1;
  const seg: EdgeCosts['seg'] = [
    new Float64Array(m),
    new Float64Array(m),
    new Float64Array(m),
    new Float64Array(m),
  ];
  const link: EdgeCosts['link'] = [
    new Float64Array(l),
    new Float64Array(l),
    new Float64Array(l),
    new Float64Array(l),
  ];
  const segUsable = new Uint8Array(m);
  const segMeasured = new Uint8Array(m);
  const segLossPct = new Float64Array(m);
  const linkLossPct = new Float64Array(l);
  const fresh = (x: { samples: number; at: number } | undefined): boolean =>
    x !== undefined && x.samples > 0 && now - x.at <= maxAge;
  for (let i = 0; i < m; i++) {
    const o = g.offers[i]!;
    const isp = g.popIsp[g.segFrom[i]!]!;
    // Without minBandwidthMbps a sold-out offer still cannot be bought.
    const enough =
      q.minBandwidthMbps === undefined ? o.availableMbps > 0 : o.availableMbps >= q.minBandwidthMbps;
    segUsable[i] = enough && !avoided[isp] ? 1 : 0;
    const meas = useMeasured ? map.measured.segments.get(g.segKey[i]!) : undefined;
    const ok = fresh(meas);
    segMeasured[i] = ok ? 1 : 0;
    const lossPct = ok ? meas!.lossPct : o.maxLossPct;
    seg[R_LATENCY][i] = Math.max(0, ok ? meas!.latencyMs : o.latencyMs.max);
    segLossPct[i] = lossPct;
    seg[R_LOSS][i] = lossToLog(lossPct);
    seg[R_PRICE][i] = Math.max(0, o.pricePerMbps * bw);
    seg[R_SEGMENTS][i] = 1;
  }
  for (let i = 0; i < l; i++) {
    const meas = useMeasured ? map.measured.links.get(g.linkKey[i]!) : undefined;
    const ok = fresh(meas);
    link[R_LATENCY][i] = Math.max(0, ok ? meas!.latencyMs : g.linkLatencyMs[i]!);
    linkLossPct[i] = ok ? meas!.lossPct : 0;
    link[R_LOSS][i] = lossToLog(linkLossPct[i]!);
  }
  return { seg, link, segUsable, segMeasured, segLossPct, linkLossPct };
}

function violations(p: FoundPath, q: PathQuery, bounds: Float64Array): string[] {
  const reasons: string[] = [];
  const eps = 1e-9;
  const [latency, loss, price] = p.totals;
  if (latency > bounds[R_LATENCY]! + eps)
    reasons.push(`latency ${latency.toFixed(1)} ms > ${q.maxLatencyMs} ms`);
  if (loss > bounds[R_LOSS]! + eps) reasons.push(`loss ${logToLoss(loss).toFixed(1)}% > ${q.maxLossPct}%`);
  if (price > bounds[R_PRICE]! + eps) reasons.push(`price ${price.toFixed(2)} > ${q.maxPrice}`);
  return reasons;
}

function describe(g: CompiledAtlas, c: CostsWithDetail, p: FoundPath): PathCandidate {
  const segments: PathSegment[] = p.segments.map((s) => {
    const o = g.offers[s]!;
    return {
      isp: o.isp,
      ingressPop: o.from,
      egressPop: o.to,
      latencyMs: c.seg[R_LATENCY][s]!,
      lossPct: c.segLossPct[s]!,
      measured: c.segMeasured[s] === 1,
      availableMbps: o.availableMbps,
      price: c.seg[R_PRICE][s]!,
      ingress: o.ingress.length > 0 ? o.ingress : g.popRouters[g.segFrom[s]!]!,
      egress: o.egress.length > 0 ? o.egress : g.popRouters[g.segTo[s]!]!,
    };
  });
  const links: PathLink[] = p.links.map((l, i) => ({
    a: g.popIds[g.segTo[p.segments[i]!]!]!,
    b: g.popIds[g.segFrom[p.segments[i + 1]!]!]!,
    latencyMs: c.link[R_LATENCY][l]!,
    lossPct: c.linkLossPct[l]!,
  }));
  return {
    segments,
    links,
    latencyMs: p.totals[R_LATENCY],
    lossPct: logToLoss(p.totals[R_LOSS]),
    bandwidthMbps: Math.min(...segments.map((s) => s.availableMbps)),
    price: p.totals[R_PRICE],
    isps: segments.map((s) => s.isp),
  };
}
