/** Percentile by nearest rank over a copy of the samples; NaN when empty. */
export function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export function median(samples: number[]): number {
  return percentile(samples, 50);
}

export function round(n: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** The median as the mean of the two middle samples when their number is even; NaN when empty. */
export function midMedian(samples: readonly number[]): number {
  if (samples.length === 0) return Number.NaN;
  const s = [...samples].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function mean(samples: readonly number[]): number {
  return samples.length ? samples.reduce((a, b) => a + b, 0) / samples.length : Number.NaN;
}

/** min / avg / max, as the seeds' tables give them; NaN each when empty. */
export function minAvgMax(samples: readonly number[]): { min: number; avg: number; max: number } {
  if (samples.length === 0) return { min: Number.NaN, avg: Number.NaN, max: Number.NaN };
  return { min: Math.min(...samples), avg: mean(samples), max: Math.max(...samples) };
}
