import type { PathAnswer, PathCandidate } from './query.js';

function describe(p: PathCandidate): string {
  return p.segments
    .map((s) => `${s.isp} ${s.ingressPop}→${s.egressPop}${s.measured ? '' : '*'}`)
    .join('  |  ');
}

/** The candidate table, readable by a network engineer at a terminal. */
export function formatAnswer(a: PathAnswer): string[] {
  const lines: string[] = [];
  const row = (n: string, p: PathCandidate, note = ''): string =>
    `${n.padEnd(4)}${`${p.latencyMs.toFixed(1)} ms`.padStart(10)}${`${p.lossPct.toFixed(1)}%`.padStart(8)}${p.price.toFixed(2).padStart(9)}${String(p.bandwidthMbps).padStart(8)}   ${describe(p)}${note}`;
  lines.push(
    `${'#'.padEnd(4)}${'latency'.padStart(10)}${'loss'.padStart(8)}${'price'.padStart(9)}${'Mb/s'.padStart(8)}   path (ISP ingress→egress; * = SLA figures, not measured)`,
  );
  if (a.paths.length === 0) lines.push('    no path meets the constraints');
  a.paths.forEach((p, i) => lines.push(row(String(i + 1), p)));
  if (a.rejected.length) {
    lines.push('rejected:');
    for (const r of a.rejected) lines.push(row('-', r.path, `   (${r.reasons.join('; ')})`));
  }
  return lines;
}
