import { generateAtlas, mulberry32 } from '../atlas/generate.js';
import { compileAtlas, type CompiledAtlas } from '../atlas/graph.js';
import type { AtlasMap } from '../atlas/model.js';
import { queryPaths, type PathQuery } from '../atlas/query.js';
import { MinHeap } from '../atlas/search.js';
import { median, percentile, round } from '../util/stats.js';
import { Checks, type Validity } from './validity.js';

/** The target: path queries over 200 ISPs / 1000 PoPs answer in under 100 ms (p50). */
export const ATLAS_TARGET_P50_MS = 100;

export interface AtlasBenchShape {
  name: string;
  p50Ms: number;
  p99Ms: number;
  /** p50 over the baseline's p50. */
  ratio: number;
  /** Queries of this shape that found at least one path (of `queries`). */
  answered: number;
}

/** Runs whose overall p50 are further apart than this (max / min) measured the machine's noise. */
export const MAX_RUN_SPREAD = 1.5;
/** Fewer queries per shape than this make a p99 of one or two samples. */
export const MIN_QUERIES = 20;

/** The checks a run must pass to be a result. Pure, so the rules are tested on their own. */
export function validateAtlas(r: {
  queries: number;
  runP50Ms: number[];
  unconstrainedAnswered: number;
}): Validity {
  const spread = r.runP50Ms.length ? Math.max(...r.runP50Ms) / Math.min(...r.runP50Ms) : Infinity;
  return new Checks()
    .check(r.queries >= MIN_QUERIES, `${r.queries} queries per shape (< ${MIN_QUERIES})`)
    .check(r.runP50Ms.length >= 3, `${r.runP50Ms.length} run(s): at least 3 are needed to see noise`)
    .check(
      spread <= MAX_RUN_SPREAD,
      `runs' p50 ${round(spread, 2)}x apart (> ${MAX_RUN_SPREAD}x): a busy machine`,
    )
    .check(r.unconstrainedAnswered > 0, 'no unconstrained query found a path: the generated map is broken')
    .result;
}

export interface AtlasBenchReport extends Validity {
  /** Overall p50 of each run, ms: their spread is the noise check. */
  runP50Ms: number[];
  isps: number;
  pops: number;
  offers: number;
  peerings: number;
  runs: number;
  queries: number;
  seed: number;
  baseline: { p50Ms: number; p99Ms: number };
  shapes: AtlasBenchShape[];
  overall: { p50Ms: number; p99Ms: number };
  target: { p50Ms: number; met: boolean };
}

/** Measurements in the generated map are stamped at this time, and queries are asked at it. */
const NOW = 1_700_000_000_000;

type ShapeMaker = (pair: { from: string; to: string }, rnd: () => number) => PathQuery;

/**
 * Path-query latency over a generated atlas, per query shape, against plain Dijkstra on latency
 * over the same graph (no alternation, no constraints): the cost of "just a shortest path".
 */
export function runAtlasBench(opts: {
  isps: number;
  pops: number;
  queries: number;
  runs: number;
  seed: number;
}): AtlasBenchReport {
  const map = generateAtlas({ isps: opts.isps, pops: opts.pops, seed: opts.seed, now: NOW });
  const g = compileAtlas(map);
  const rnd = mulberry32(opts.seed ^ 0x5eed);
  const popIds = g.popIds;
  const ispOfPop = (id: string): string => id.slice(0, id.indexOf('/'));
  const pairs = Array.from({ length: opts.queries }, () => {
    const from = popIds[Math.floor(rnd() * popIds.length)]!;
    let to = from;
    while (to === from) to = popIds[Math.floor(rnd() * popIds.length)]!;
    return { from, to };
  });
  const baselineWeights = plainWeights(map, g);
  // The best path's latency per pair (untimed), to set latency bounds around it.
  const bestLatency = new Map(
    pairs.map((p) => [
      `${p.from}>${p.to}`,
      queryPaths(map, { from: p.from, to: p.to }, NOW).paths[0]?.latencyMs,
    ]),
  );
  const otherIsp = (pair: { from: string; to: string }, r: () => number): string => {
    for (;;) {
      const isp = g.isps[Math.floor(r() * g.isps.length)]!;
      if (isp !== ispOfPop(pair.from) && isp !== ispOfPop(pair.to)) return isp;
    }
  };
  const shapes: [string, ShapeMaker][] = [
    ['unconstrained', (p) => ({ from: p.from, to: p.to })],
    [
      'maxLatency',
      (p, r) => {
        // Around the best path's latency: 3 in 4 bounds 20% above it (met), 1 in 4 10% below it
        // (nothing meets it, so the answer is the rejected list).
        const best = bestLatency.get(`${p.from}>${p.to}`) ?? 100;
        return { from: p.from, to: p.to, maxLatencyMs: round(best * (r() < 0.75 ? 1.2 : 0.9), 1) };
      },
    ],
    [
      'avoid',
      (p, r) => ({
        from: p.from,
        to: p.to,
        avoid: [...new Set(Array.from({ length: 5 }, () => otherIsp(p, r)))],
      }),
    ],
    ['require', (p, r) => ({ from: ispOfPop(p.from), to: p.to, require: [otherIsp(p, r)] })],
    ['k2-isp', (p) => ({ from: p.from, to: p.to, k: 2, disjoint: 'isp' })],
    ['k3-router', (p) => ({ from: p.from, to: p.to, k: 3, disjoint: 'router' })],
    ['sort-price', (p) => ({ from: p.from, to: p.to, sort: 'price' })],
  ];
  const queries = shapes.map(([name, make]) => ({ name, list: pairs.map((p) => make(p, rnd)) }));

  // Warm-up, so the JIT has compiled the search before anything is timed.
  for (const s of queries) for (const q of s.list.slice(0, 5)) queryPaths(map, q, NOW);
  for (const p of pairs.slice(0, 20)) dijkstra(g, baselineWeights, p.from, p.to);

  const perRun: { baseline: number[][]; shapes: number[][][]; overall: number[][] } = {
    baseline: [],
    shapes: queries.map(() => []),
    overall: [],
  };
  const answered = queries.map(() => 0);
  for (let run = 0; run < opts.runs; run++) {
    const base: number[] = [];
    for (const p of pairs) {
      const t0 = process.hrtime.bigint();
      dijkstra(g, baselineWeights, p.from, p.to);
      base.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    perRun.baseline.push(base);
    const all: number[] = [];
    queries.forEach((s, i) => {
      const times: number[] = [];
      let found = 0;
      for (const q of s.list) {
        const t0 = process.hrtime.bigint();
        const a = queryPaths(map, q, NOW);
        times.push(Number(process.hrtime.bigint() - t0) / 1e6);
        if (a.paths.length > 0) found++;
      }
      answered[i] = found;
      perRun.shapes[i]!.push(times);
      all.push(...times);
    });
    perRun.overall.push(all);
  }
  const summary = (runs: number[][]): { p50Ms: number; p99Ms: number } => ({
    p50Ms: round(median(runs.map((t) => percentile(t, 50))), 3),
    p99Ms: round(median(runs.map((t) => percentile(t, 99))), 3),
  });
  const baseline = summary(perRun.baseline);
  const overall = summary(perRun.overall);
  const runP50Ms = perRun.overall.map((t) => round(percentile(t, 50), 3));
  return {
    ...validateAtlas({ queries: opts.queries, runP50Ms, unconstrainedAnswered: answered[0]! }),
    runP50Ms,
    isps: opts.isps,
    pops: map.pops.length,
    offers: map.offers.length,
    peerings: map.peerings.length,
    runs: opts.runs,
    queries: opts.queries,
    seed: opts.seed,
    baseline,
    shapes: queries.map((s, i) => {
      const r = summary(perRun.shapes[i]!);
      return { name: s.name, ...r, ratio: round(r.p50Ms / baseline.p50Ms, 2), answered: answered[i]! };
    }),
    overall,
    target: { p50Ms: ATLAS_TARGET_P50_MS, met: overall.p50Ms < ATLAS_TARGET_P50_MS },
  };
}

/** Per-edge latency for the baseline, as the query's `measured` mode would pick it, precomputed. */
function plainWeights(map: AtlasMap, g: CompiledAtlas): { seg: Float64Array; link: Float64Array } {
  const seg = new Float64Array(g.offers.length);
  g.offers.forEach((o, i) => {
    const m = map.measured.segments.get(g.segKey[i]!);
    seg[i] = m && m.samples > 0 ? m.latencyMs : o.latencyMs.max;
  });
  const link = new Float64Array(g.linkA.length);
  for (let i = 0; i < link.length; i++)
    link[i] = map.measured.links.get(g.linkKey[i]!)?.latencyMs ?? g.linkLatencyMs[i]!;
  return { seg, link };
}

/** Plain Dijkstra on latency from PoP to PoP over segments and links, stopping at the destination. */
function dijkstra(
  g: CompiledAtlas,
  w: { seg: Float64Array; link: Float64Array },
  from: string,
  to: string,
): number {
  const s = g.popIndex.get(from)!;
  const t = g.popIndex.get(to)!;
  const dist = new Float64Array(g.popIds.length).fill(Infinity);
  const heap = new MinHeap();
  dist[s] = 0;
  heap.push(s, 0, 0);
  while (heap.size > 0) {
    const d = heap.topKey1();
    const v = heap.pop();
    if (d > dist[v]!) continue;
    if (v === t) return d;
    for (let i = g.segOutStart[v]!; i < g.segOutStart[v + 1]!; i++) {
      const seg = g.segOut[i]!;
      const u = g.segTo[seg]!;
      const nd = d + w.seg[seg]!;
      if (nd < dist[u]!) {
        dist[u] = nd;
        heap.push(u, nd, 0);
      }
    }
    for (let i = g.linkAtStart[v]!; i < g.linkAtStart[v + 1]!; i++) {
      const l = g.linkAt[i]!;
      const u = g.linkA[l] === v ? g.linkB[l]! : g.linkA[l]!;
      const nd = d + w.link[l]!;
      if (nd < dist[u]!) {
        dist[u] = nd;
        heap.push(u, nd, 0);
      }
    }
  }
  return Infinity;
}

/** `arrow bench atlas` flags. */
export interface AtlasBenchFlags {
  isps: number;
  pops: number;
  queries: number;
  runs: number;
  seed: number;
  json?: boolean;
  /** Where atlas.svg and atlas.png (the plot) are written. */
  out: string;
}

export async function runAtlasBenchCommand(o: AtlasBenchFlags): Promise<void> {
  if (o.pops < 2 * o.isps)
    throw new Error(`--pops must be at least 2 × --isps (${2 * o.isps}), got ${o.pops}`);
  const r = runAtlasBench(o);
  if (!r.valid) process.exitCode = 1;
  printAtlasReport(r, o.json);
  // Loaded only now: the plotting libraries stay out of the process while it measures.
  const { atlasChart, writeBenchPlotFor } = await import('./plots.js');
  await writeBenchPlotFor(atlasChart(r), o, 'atlas');
}

function printAtlasReport(r: AtlasBenchReport, json: boolean | undefined): void {
  if (json) return console.log(JSON.stringify(r));
  if (!r.valid) return console.log(`atlas path queries: INVALID (not a result): ${r.invalidReason}`);
  console.log(
    `atlas path queries: ${r.isps} ISPs, ${r.pops} PoPs, ${r.offers} offers, ${r.peerings} peerings; ` +
      `${r.queries} queries per shape, median of ${r.runs} runs`,
  );
  const row = (name: string, p50: number, p99: number, ratio: string, answered: string): string =>
    `  ${name.padEnd(14)} ${p50.toFixed(3).padStart(9)} ${p99.toFixed(3).padStart(9)} ${ratio.padStart(7)} ${answered.padStart(9)}`;
  console.log(
    `  ${'shape'.padEnd(14)} ${'p50 ms'.padStart(9)} ${'p99 ms'.padStart(9)} ${'ratio'.padStart(7)} ${'answered'.padStart(9)}`,
  );
  console.log(row('baseline', r.baseline.p50Ms, r.baseline.p99Ms, '1.00', '-'));
  for (const s of r.shapes)
    console.log(row(s.name, s.p50Ms, s.p99Ms, s.ratio.toFixed(2), `${s.answered}/${r.queries}`));
  console.log(row('overall', r.overall.p50Ms, r.overall.p99Ms, '', ''));
  console.log(
    `  target p50 < ${r.target.p50Ms} ms: ${r.target.met ? 'met' : 'NOT met'} (baseline: plain Dijkstra on latency, no constraints)`,
  );
}
