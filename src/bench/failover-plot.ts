import type { FailoverReport, FailoverRun, LivenessMode, Percentiles } from './failover.js';
import { BLACK, Canvas, drawChart, drawLegend, GREY, type Rgb, type Series } from '../plot/png.js';

const COLORS: Record<LivenessMode, Rgb> = { off: [200, 40, 40], on: [30, 90, 200] };
const TARGET_COLOR: Rgb = [20, 140, 60];
const SCALE = 2;

/**
 * Failover time against the number of clients (log x): outageMs in the left panel,
 * repairMs in the right, p99 solid and p50 dashed, liveness off in red and on in blue,
 * the targets as green dashed lines. The echo interval, which is the resolution of
 * outageMs, is drawn in grey beside the outages.
 */
export function renderFailoverPlot(report: FailoverReport): Buffer {
  const width = 1400;
  const height = 720;
  const canvas = new Canvas(width, height);
  const clients = [...new Set(report.runs.map((r) => r.clients))].sort((a, b) => a - b);
  const modes = (['off', 'on'] as const).filter((m) => report.runs.some((r) => r.liveness === m));
  // INVALID runs are not results: they are not drawn.
  const runsOf = (m: LivenessMode): FailoverRun[] =>
    report.runs.filter((r) => r.liveness === m && r.valid).sort((a, b) => a.clients - b.clients);
  const invalid = report.runs.filter((r) => !r.valid).length;
  const mode = (m: LivenessMode): string => (m === 'on' ? `on (${report.livenessIntervalMs} ms × 3)` : m);

  canvas.text(
    "ARROW failover time vs clients: SIGKILL of the middle ISP's router every circuit crosses",
    width / 2,
    14,
    BLACK,
    SCALE,
    'center',
  );
  canvas.text(
    `${report.machine.cpus} CPUs, Node ${report.machine.node}; 3 ISPs, real processes; one run per point; ` +
      `load ${report.calibration.rateEchoesPerSec} echoes/s (${report.calibration.fraction} of the calibrated capacity)` +
      (invalid ? `; ${invalid} INVALID run(s) not drawn` : ''),
    width / 2,
    40,
    GREY,
    SCALE,
    'center',
  );

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
  const panelY = 70;
  const panelH = 520;
  const panelW = width / 2 - 10;
  drawChart(
    canvas,
    { x: 10, y: panelY, w: panelW, h: panelH },
    {
      title: 'outage: reply gap around the kill',
      xLabel: 'clients (log scale)',
      yLabel: 'outageMs (log scale)',
      xLog: true,
      yLog: true,
      xTicks: clients,
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
    SCALE,
  );
  drawChart(
    canvas,
    { x: width / 2 + 5, y: panelY, w: panelW, h: panelH },
    {
      title: 'repair: first probe to probe home',
      xLabel: 'clients (log scale)',
      yLabel: 'repairMs (log scale)',
      xLog: true,
      yLog: true,
      xTicks: clients,
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
    SCALE,
  );
  drawLegend(
    canvas,
    { x: 60, y: panelY + panelH + 24, w: width - 80, h: 100 },
    [...outage, ...lastLoss, interval],
    3,
    SCALE,
  );
  return canvas.toPng();
}
