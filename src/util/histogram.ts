/**
 * A fixed-bucket latency histogram in milliseconds: O(1) and allocation-free to record, small
 * to publish (a router's stats), and mergeable across routers (a benchmark's percentiles).
 */

/** Upper bounds of the buckets, ms, in 1-2-5 steps; a last bucket takes everything above. */
export const HISTOGRAM_BOUNDS_MS: readonly number[] = [
  0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000,
];

export interface HistogramSnapshot {
  /** Upper bound of each bucket but the last, ms. */
  boundsMs: number[];
  /** Samples per bucket: `counts[i]` are ≤ `boundsMs[i]` (and above the bound before); the last is above all. */
  counts: number[];
  /** The largest sample, ms (0 when empty). */
  maxMs: number;
}

export class Histogram {
  private readonly counts = new Array<number>(HISTOGRAM_BOUNDS_MS.length + 1).fill(0);
  private max = 0;

  add(ms: number): void {
    let i = 0;
    while (i < HISTOGRAM_BOUNDS_MS.length && ms > HISTOGRAM_BOUNDS_MS[i]!) i++;
    this.counts[i]!++;
    if (ms > this.max) this.max = ms;
  }

  snapshot(): HistogramSnapshot {
    return { boundsMs: [...HISTOGRAM_BOUNDS_MS], counts: [...this.counts], maxMs: this.max };
  }
}

/** Sums snapshots taken with the same bounds; snapshots with other bounds are an error. */
export function mergeHistograms(all: readonly HistogramSnapshot[]): HistogramSnapshot {
  const out: HistogramSnapshot = {
    boundsMs: [...HISTOGRAM_BOUNDS_MS],
    counts: new Array<number>(HISTOGRAM_BOUNDS_MS.length + 1).fill(0),
    maxMs: 0,
  };
  for (const h of all) {
    if (h.counts.length !== out.counts.length || h.boundsMs.some((b, i) => b !== out.boundsMs[i]))
      throw new Error('histograms with different buckets cannot be merged');
    h.counts.forEach((c, i) => (out.counts[i]! += c));
    out.maxMs = Math.max(out.maxMs, h.maxMs);
  }
  return out;
}

export function histogramTotal(h: HistogramSnapshot): number {
  return h.counts.reduce((a, b) => a + b, 0);
}

/**
 * The p-th percentile as the upper bound of the bucket holding that rank (so "p99 ≤ 2 ms"),
 * capped at the maximum; NaN when empty.
 */
export function histogramPercentile(h: HistogramSnapshot, p: number): number {
  const total = histogramTotal(h);
  if (total === 0) return Number.NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * total));
  let seen = 0;
  for (let i = 0; i < h.counts.length; i++) {
    seen += h.counts[i]!;
    if (seen >= rank) return Math.min(h.boundsMs[i] ?? h.maxMs, h.maxMs);
  }
  return h.maxMs;
}
