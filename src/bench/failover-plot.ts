import type { FailoverReport, FailoverRun, LivenessMode, Percentiles } from './failover.js';
import { GREY, renderChart, type Chart, type RenderedChart, type Rgb, type Series } from '../plot/chart.js';

const COLORS: Record<LivenessMode, Rgb> = { off: [200, 40, 40], on: [30, 90, 200] };
const TARGET_COLOR: Rgb = [20, 140, 60];

/**
 * Failover time against the number of clients (log x): outageMs in the left panel,
 * repairMs in the right, p99 solid and p50 dashed, liveness off in red and on in blue,
 * the targets as green dashed lines. The echo interval, which is the resolution of
 * outageMs, is drawn in grey beside the outages.
 */
export function failoverChart(report: FailoverReport): Chart {
  const clients = [...new Set(report.runs.map((r) => r.clients))].sort((a, b) => a - b);
  const modes = (['off', 'on'] as const).filter((m) => report.runs.some((r) => r.liveness === m));
  // INVALID runs are not results: they are not drawn.
  const runsOf = (m: LivenessMode): FailoverRun[] =>
    report.runs.filter((r) => r.liveness === m && r.valid).sort((a, b) => a.clients - b.clients);
  const invalid = report.runs.filter((r) => !r.valid).length;
  // Reports saved before the interval was recorded have none: they say "on".
  const mode = (m: LivenessMode): string =>
    m === 'on' && report.livenessIntervalMs !== undefined ? `on (${report.livenessIntervalMs} ms × 3)` : m;

  const series = (pick: (r: FailoverRun) => Percentiles, include: (r: FailoverRun) => boolean): Series[] =>
    modes.flatMap((m) => {
      const runs = runsOf(m).filter(include);
      return [
        {
          label: `p99, liveness ${mode(m)}`,
          color: COLORS[m],
          width: 3,
          marker: 'circle' as const,
          points: runs.map((r) => ({ x: r.clients, y: pick(r).p99 })),
        },
        {
          label: `p50, liveness ${mode(m)}`,
          color: COLORS[m],
          width: 2,
          dash: [7, 5] as [number, number],
          marker: 'square' as const,
          points: runs.map((r) => ({ x: r.clients, y: pick(r).p50 })),
        },
      ];
    });

  const outage = series(
    (r) => r.outageMs,
    (r) => r.recovered > 0,
  );
  const interval: Series = {
    label: 'echo interval (outage resolution)',
    color: GREY,
    width: 2,
    dash: [3, 4],
    marker: 'diamond',
    points: clients.map((n) => ({
      x: n,
      y: report.runs.find((r) => r.clients === n)!.echoIntervalMs,
    })),
  };
  const lastLoss: Series[] = modes.map((m) => ({
    label: `last echo lost, liveness ${mode(m)}`,
    color: COLORS[m],
    width: 1,
    dash: [2, 3] as [number, number],
    marker: 'triangle' as const,
    points: runsOf(m).map((r) => ({ x: r.clients, y: r.lastLossMs })),
  }));
  return {
    title: "ARROW failover time vs clients: SIGKILL of the middle ISP's router every circuit crosses",
    subtitle:
      `${report.machine.cpus} CPUs, Node ${report.machine.node}; 3 ISPs, real processes; one run per point; ` +
      `load ${report.calibration.rateEchoesPerSec} echoes/s (${report.calibration.fraction} of the calibrated capacity)` +
      (invalid ? `; ${invalid} INVALID run(s) not drawn` : ''),
    width: 1400,
    legendColumns: 3,
    panels: [
      {
        title: 'outage: reply gap around the kill',
        x: { title: 'clients', log: true, ticks: clients },
        y: { title: 'outage', unit: 'ms', log: true },
        series: [...outage, ...lastLoss, interval],
        hlines: modes.includes('on')
          ? [
              {
                y: report.targets.livenessOutageP99.limit,
                label: 'target p99, liveness on',
                color: TARGET_COLOR,
              },
            ]
          : [],
      },
      {
        title: 'repair: first probe to probe home',
        x: { title: 'clients', log: true, ticks: clients },
        y: { title: 'repair', unit: 'ms', log: true },
        series: series(
          (r) => r.repairMs,
          (r) => r.probed > 0,
        ),
        hlines: [
          {
            y: report.targets.repairP99.limit,
            label: `target p99 at N=${Math.max(...clients)}`,
            color: TARGET_COLOR,
          },
        ],
      },
    ],
  };
}

/** The failover plot as SVG and PNG (see {@link failoverChart}). */
export function renderFailoverPlot(report: FailoverReport): Promise<RenderedChart> {
  return renderChart(failoverChart(report));
}
