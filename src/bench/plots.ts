import { mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { GREY, renderChart, type Axis, type Chart, type Rgb, type Series } from '../plot/chart.js';
import type { VerifyBenchReport } from './verify.js';
import type { AtlasBenchReport } from './atlas.js';
import type { DataPlaneBenchReport } from './dataplane.js';
import type { KernelPoint, KernelRowName } from './forward-kernel.js';
import type { ForwardBenchOutput } from './forward.js';
import type { LivenessBenchReport } from './liveness.js';
import { TARGET, type PropagationReport, type StoreKind } from './propagation.js';
import { CONFIG_NAMES, headlineSize, type ConfigName, type PointResult } from './report.js';
import type { ModeResult, StoreThreadReport } from './store-thread.js';

/**
 * The plots of the benchmarks other than failover (failover-plot.ts): each a pure function of the
 * bench's report that draws what it measures beside its same-run baseline, and
 * {@link writeBenchPlot}, which writes one as NAME.svg and NAME.png into the bench's --out
 * directory. Points of an INVALID run are not results: they are not drawn, and the subtitle says
 * so (as the failover plot does); the reasons are in the bench's report.
 *
 * Percentiles are drawn against "1 in N" on a log axis (p50 at 2, p99 at 100, p99.9 at 1000, the
 * largest of N samples at N), the usual latency-tail picture: the tail gets the room it needs.
 */

const BLUE: Rgb = [30, 90, 200];
const RED: Rgb = [200, 40, 40];
const ORANGE: Rgb = [225, 120, 20];
const PURPLE: Rgb = [120, 60, 170];
const TEAL: Rgb = [0, 140, 140];
const BROWN: Rgb = [140, 90, 40];
const PINK: Rgb = [200, 60, 140];
const OLIVE: Rgb = [120, 130, 20];
const BLACK: Rgb = [40, 40, 40];
const DARK_GREY: Rgb = [90, 90, 90];
const LIGHT_GREY: Rgb = [185, 185, 185];
const TARGET_COLOR: Rgb = [20, 140, 60];

const DASHED: [number, number] = [7, 5];
const DOTTED: [number, number] = [2, 4];

/** Where a percentile goes on the "1 in N" axis. */
const ONE_IN = { p50: 2, p99: 100, p999: 1000 } as const;
type Pct = keyof typeof ONE_IN;

/** The "1 in N" axis; `max` says whether some series places its largest sample at N. */
function tailAxis(pcts: Pct[], max: boolean, ticks: number[]): Axis {
  const names: Record<Pct, string> = { p50: 'p50 = 2', p99: 'p99 = 100', p999: 'p99.9 = 1000' };
  return {
    title: `percentile as 1 in N: ${[...pcts.map((p) => names[p]), ...(max ? ['max = N samples'] : [])].join(', ')}`,
    log: true,
    ticks,
  };
}

/**
 * A series' points on the "1 in N" axis: each percentile, then the maximum at N = the number of
 * samples when that is known and lies beyond the last percentile (with fewer samples, the
 * percentile already is the maximum). A percentile beyond the samples is left out.
 */
function tailPoints(
  pcts: Partial<Record<Pct, number>>,
  max?: { y: number; samples: number },
): { x: number; y: number }[] {
  const points = (Object.keys(ONE_IN) as Pct[]).flatMap((p): { x: number; y: number }[] => {
    const y = pcts[p];
    if (y === undefined || (max && ONE_IN[p] > max.samples)) return [];
    return [{ x: ONE_IN[p], y }];
  });
  const last = points.length ? points[points.length - 1]!.x : 0;
  if (max && max.samples > last) points.push({ x: max.samples, y: max.y });
  return points;
}

/**
 * The x values of `series` as ticks, the percentiles' first, leaving out one within ×3 of a tick
 * kept before it: the labels of two sample counts that close (48000, 86000) would run together.
 */
function spacedTicks(series: Series[]): number[] {
  const xs = [...new Set(series.flatMap((s) => s.points.map((p) => p.x)))];
  const standard = Object.values(ONE_IN) as number[];
  const kept: number[] = [];
  for (const x of [...xs.filter((x) => standard.includes(x)), ...xs.filter((x) => !standard.includes(x))])
    if (x > 0 && !kept.some((k) => Math.max(k, x) / Math.min(k, x) < 3)) kept.push(x);
  return kept.sort((a, b) => a - b);
}

/** The percentiles the series use, in order. */
function pctsOf(series: Series[]): Pct[] {
  const xs = new Set(series.flatMap((s) => s.points.map((p) => p.x)));
  return (Object.keys(ONE_IN) as Pct[]).filter((p) => xs.has(ONE_IN[p]));
}

/** Whether some series has a point beyond the percentiles: a maximum at N. */
function hasMax(series: Series[]): boolean {
  return series.some((s) => s.points.some((p) => !(Object.values(ONE_IN) as number[]).includes(p.x)));
}

function tailX(series: Series[]): Axis {
  return tailAxis(pctsOf(series), hasMax(series), spacedTicks(series));
}

const ratioText = (r: number): string => (Number.isFinite(r) ? `${r}×` : 'n/a');
const int = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** The subtitle's note on INVALID points, or ''. */
function invalidNote(count: number, what = 'point'): string {
  return count ? `; ${count} INVALID ${what}(s) not drawn (not results: reasons in the report)` : '';
}

// --- bench forward ---------------------------------------------------------------------------

const FORWARD_LOOK: Record<ConfigName, Omit<Series, 'points'>> = {
  baseline: {
    label: 'plain Node UDP relay (baseline)',
    color: GREY,
    width: 3,
    dash: DASHED,
    marker: 'square',
  },
  hop1: { label: '1 ARROW router', color: BLUE, width: 3, marker: 'circle' },
  hop2: { label: '2 ARROW routers', color: PURPLE, width: 3, marker: 'triangle' },
};

const KERNEL_LOOK: Record<KernelRowName, Omit<Series, 'points'>> = {
  kernelGenerator: {
    label: 'XDP generator alone to the sink (ceiling)',
    color: LIGHT_GREY,
    width: 2,
    dash: DOTTED,
    marker: 'diamond',
  },
  kernelGeneratorTag: {
    label: 'XDP generator computing tags (ceiling with tags)',
    color: BROWN,
    width: 2,
    dash: DOTTED,
    marker: 'diamond',
  },
  kernelBaseline: {
    label: 'plain XDP forwarder (kernel baseline)',
    color: DARK_GREY,
    width: 3,
    dash: DASHED,
    marker: 'square',
  },
  kernel1: { label: '1 router in XDP', color: ORANGE, width: 3, marker: 'circle' },
  kernel2: { label: '2 routers in XDP', color: RED, width: 3, marker: 'triangle' },
  kernel1Tag: { label: '1 router in XDP checking tags', color: TEAL, width: 3, marker: 'circle' },
};

/**
 * `arrow bench forward`: packets/s at the sink against the datagram size, both on log axes, one
 * line per path: the Node rows against the plain Node UDP relay, and (where measured) the kernel
 * rows against a plain XDP forwarder, with the generator alone as their ceiling.
 */
export function forwardChart(report: ForwardBenchOutput): Chart {
  const sizes = [...report.sizes].sort((a, b) => a - b);
  let invalid = 0;
  const points = (row: Record<string, PointResult | KernelPoint> | undefined): { x: number; y: number }[] =>
    sizes.flatMap((size) => {
      const p = row?.[String(size)];
      if (!p) return [];
      if (!p.valid) {
        invalid++;
        return [];
      }
      return [{ x: size, y: p.pps }];
    });
  const x: Axis = { title: 'UDP payload size', unit: 'B', log: true, ticks: sizes };
  const y: Axis = { title: 'rate at the sink', unit: 'packets/s', log: true };
  const node: Series[] = CONFIG_NAMES.map((name) => ({
    ...FORWARD_LOOK[name],
    points: points(report[name]),
  }));
  const kernelNames = Object.keys(KERNEL_LOOK) as KernelRowName[];
  const measured = kernelNames.every((name) => report[name] !== undefined);
  const kernel: Series[] = measured
    ? kernelNames.map((name) => ({ ...KERNEL_LOOK[name], points: points(report[name]) }))
    : [];
  const head = headlineSize(report.sizes);
  const notes = [
    `${report.machine.cpus} CPUs, Node ${report.machine.node}; median of ${report.runs} run(s) × ${report.durationS} s per point`,
    report.valid
      ? `at ${head} B: 1 router ${ratioText(report.ratio1)}, 2 routers ${ratioText(report.ratio2)} the relay's rate` +
        (measured && report.kernelTargets
          ? `; at ${report.kernelTargets.size} B: 1 router in XDP ${ratioText(report.kernelRatio1 ?? NaN)} the XDP forwarder's`
          : '')
      : '',
    measured ? '' : `kernel rows not measured: ${report.kernelUnavailable ?? 'not in the report'}`,
  ].filter(Boolean);
  return {
    title: 'ARROW forwarding rate vs the same-run baseline: packets/s per path',
    subtitle: notes.join('; ') + invalidNote(invalid),
    width: measured ? 1400 : 1000,
    legendColumns: measured ? 3 : 2,
    panels: [
      { title: 'Node path: UDP sockets on loopback', x, y, series: node },
      ...(measured ? [{ title: 'kernel path: XDP on veth between namespaces', x, y, series: kernel }] : []),
    ],
  };
}

// --- bench dataplane -------------------------------------------------------------------------

/**
 * `arrow bench dataplane`: nanoseconds per packet of each run of DataPlane.process (log y), with
 * its median and the same-run baseline (the same loop with no ARROW work) as reference lines.
 */
export function dataPlaneChart(report: DataPlaneBenchReport): Chart {
  const runs = report.valid ? report.perRunNs.map((ns, i) => ({ x: i + 1, y: ns })) : [];
  return {
    title: `ARROW data plane cost per packet, no sockets: ${int.format(report.circuits)} circuits, 1400-byte packets`,
    subtitle: report.valid
      ? `${report.runs} run(s) of ${int.format(report.packets)} packets; median ${report.nsPerPacket} ns, ` +
        `${ratioText(report.ratio)} the baseline's ${report.baselineNs} ns`
      : `INVALID run, nothing drawn (not a result: reasons in the report); ${report.runs} run(s) of ${int.format(report.packets)} packets`,
    panels: [
      {
        title: '',
        x: { title: 'run', ...(runs.length ? { ticks: runs.map((r) => r.x) } : {}) },
        y: { title: 'time per packet', unit: 'ns', log: true },
        series: [
          {
            label: 'DataPlane.process: check, lookup, rewrite (each run)',
            color: BLUE,
            width: 2,
            marker: 'circle',
            points: runs,
          },
        ],
        hlines: report.valid
          ? [
              { y: report.nsPerPacket, label: `median ${report.nsPerPacket} ns`, color: BLUE },
              {
                y: report.baselineNs,
                label: `baseline: the same loop with no ARROW work, median ${report.baselineNs} ns`,
                color: DARK_GREY,
              },
            ]
          : [],
      },
    ],
  };
}

// --- bench propagation -----------------------------------------------------------------------

const STORE_COLORS: Record<StoreKind, Rgb> = { sqlite: BLUE, etcd: ORANGE };

/**
 * `arrow bench propagation`: per store, p50 and p99 of the time from the portal's 201 to the last
 * router's table, of the create's round trip, and of the baseline (GET /healthz on the same portal
 * and connections); creates/s against the baseline's requests/s in the legend; the p99 target.
 */
export function propagationChart(report: PropagationReport): Chart {
  const target = TARGET;
  const stores = (['sqlite', 'etcd'] as const).filter((k) => report[k] !== undefined);
  const invalid = stores.filter((k) => !report[k]!.valid);
  const series: Series[] = stores.flatMap((k): Series[] => {
    const r = report[k]!;
    const drawn = r.valid;
    return [
      {
        label: `propagation, ${k}: ${int.format(r.createsPerSec)} creates/s, ${ratioText(r.ratio)} the baseline's requests/s`,
        color: STORE_COLORS[k],
        width: 3,
        marker: 'circle',
        points: drawn ? tailPoints({ p50: r.p50Ms, p99: r.p99Ms }) : [],
      },
      {
        label: `create round trip (POST /circuits), ${k}`,
        color: STORE_COLORS[k],
        width: 2,
        dash: DASHED,
        marker: 'square',
        points: drawn ? tailPoints({ p50: r.createP50Ms, p99: r.createP99Ms }) : [],
      },
      {
        label: `baseline: GET /healthz round trip, ${k} lab, ${int.format(r.baseline.requestsPerSec)} requests/s`,
        color: STORE_COLORS[k],
        width: 2,
        dash: DOTTED,
        marker: 'diamond',
        points: drawn ? tailPoints({ p50: r.baseline.p50Ms, p99: r.baseline.p99Ms }) : [],
      },
    ];
  });
  return {
    title: "ARROW circuit propagation: portal's 201 to every router's table, per store",
    subtitle:
      `${report.routers} routers (2 PoPs × 2), ${report.concurrency} creates in flight; ` +
      `${report.machine.cpus} CPUs, Node ${report.machine.node}; target p99 under ${target.p99Ms} ms and ` +
      `${int.format(target.createsPerSec)} creates/s: ` +
      stores
        .map((k) => `${k} ${report[k]!.valid ? (report[k]!.meetsTarget ? 'met' : 'NOT met') : 'not judged'}`)
        .join(', ') +
      (invalid.length
        ? `; INVALID, not drawn: ${invalid.join(', ')} (not results: reasons in the report)`
        : ''),
    legendColumns: 1,
    panels: [
      {
        title: '',
        x: tailX(series),
        y: { title: 'time', unit: 'ms', log: true },
        series,
        hlines: [{ y: target.p99Ms, label: `target: p99 under ${target.p99Ms} ms`, color: TARGET_COLOR }],
      },
    ],
  };
}

// --- bench liveness --------------------------------------------------------------------------

/**
 * `arrow bench liveness`: nothing failed, so every dead verdict is false (their count is the
 * title). How long answered keepalives waited (bucket upper bounds) beside the round trip of the
 * echoes over the same routers in the same soak, against the detection time a wait must reach to
 * make a verdict.
 */
export function livenessChart(report: LivenessBenchReport): Chart {
  const k = report.keepaliveWaitMs;
  const e = report.soak.echoes;
  const l = report.liveness;
  const series: Series[] = [
    {
      label: 'keepalive wait (histogram bucket upper bounds)',
      color: BLUE,
      width: 3,
      marker: 'circle',
      points: report.valid
        ? tailPoints({ p50: k.p50, p99: k.p99, p999: k.p999 }, { y: k.max, samples: k.samples })
        : [],
    },
    {
      label: 'echo round trip over the same routers (baseline)',
      color: GREY,
      width: 2,
      dash: DASHED,
      marker: 'square',
      points: report.valid
        ? tailPoints({ p50: e.rttMs.p50, p99: e.rttMs.p99 }, { y: e.rttMs.max, samples: e.received })
        : [],
    },
  ];
  return {
    title: `ARROW neighbour liveness soak, nothing failed: ${report.falseDeadVerdicts} false dead verdict(s) in ${report.soak.seconds} s`,
    subtitle:
      (l.enabled ? `liveness ${l.intervalMs} ms × ${l.multiplier}` : 'liveness off') +
      `; ${report.livenessVerdicts} verdict(s) by liveness, ${report.revivals} revival(s); ` +
      `${report.lab.routers} routers, ${report.soak.neighboursInUse} neighbours in use; ` +
      `echoes at ${report.soak.echoesPerSec}/s (${report.calibration.fraction} of ${report.calibration.capacityEchoesPerSec}/s)` +
      (report.valid ? '' : '; INVALID run, nothing drawn (not a result: reasons in the report)'),
    panels: [
      {
        title: '',
        x: tailX(series),
        y: { title: 'wait', unit: 'ms', log: true },
        series,
        hlines:
          l.enabled && report.detectionMs > 0
            ? [
                {
                  y: report.detectionMs,
                  label: `detection time ${l.intervalMs} ms × ${l.multiplier}: a wait this long is a dead verdict`,
                  color: RED,
                },
              ]
            : [],
      },
    ],
  };
}

// --- bench store-thread ----------------------------------------------------------------------

const MODE_LOOK = (storeThread: boolean): Omit<Series, 'points'> =>
  storeThread
    ? { label: 'store client on its own thread', color: BLUE, width: 3, marker: 'circle' }
    : {
        label: 'store client on the forwarding thread (baseline)',
        color: RED,
        width: 3,
        dash: DASHED,
        marker: 'square',
      };

/**
 * `arrow bench store-thread`: with the store client on the forwarding thread (the baseline) and
 * on its own thread, the forwarded packets' latency percentiles (left) and the router's own
 * event-loop delay, p50 and p99 of the median stats publish, and the worst publish's p99 (right).
 */
export function storeThreadChart(report: StoreThreadReport): Chart {
  const valid = report.results.filter((m) => m.valid);
  const invalid = report.results.filter((m) => !m.valid);
  const latency: Series[] = report.results.map((m) => ({
    ...MODE_LOOK(m.storeThread),
    points: m.valid
      ? tailPoints(
          { p50: m.latencyMs.p50, p99: m.latencyMs.p99, p999: m.latencyMs.p999 },
          { y: m.latencyMs.max, samples: m.received },
        )
      : [],
  }));
  const loop: Series[] = [
    ...report.results.map((m: ModeResult) => ({
      ...MODE_LOOK(m.storeThread),
      points: m.valid ? tailPoints({ p50: m.loopDelayMs.p50Median, p99: m.loopDelayMs.p99Median }) : [],
    })),
    ...valid.map((m): Series => ({
      label: `worst publish's p99, ${m.storeThread ? 'own thread' : 'forwarding thread'}`,
      color: m.storeThread ? BLUE : RED,
      width: 1,
      dash: DOTTED,
      marker: 'triangle',
      points: [{ x: ONE_IN.p99, y: m.loopDelayMs.p99Max }],
    })),
  ];
  const r = report.ratios;
  const o = report.options;
  return {
    title:
      'ARROW store work vs the forwarding thread: store client on its own thread vs on the forwarding thread',
    subtitle:
      `one router, ${int.format(o.circuits)} circuits, ${int.format(o.pps)} packets/s forwarded, ` +
      `${int.format(o.changes)} store changes/s, ${o.seconds} s per mode` +
      (r
        ? `; own thread / baseline: latency p99 ${ratioText(r.latencyP99)}, loop delay p99 ${ratioText(r.loopDelayP99)}`
        : '') +
      (invalid.length
        ? `; INVALID, not drawn: ${invalid.map((m) => (m.storeThread ? 'own thread' : 'forwarding thread')).join(', ')} (not results: reasons in the report)`
        : ''),
    width: 1400,
    legendColumns: 2,
    panels: [
      {
        title: 'forwarded packets: sent to forwarded back',
        x: tailX(latency),
        y: { title: 'latency', unit: 'ms', log: true },
        series: latency,
      },
      {
        title: "router's event-loop delay, median stats publish",
        x: tailX(loop),
        y: { title: 'event-loop delay', unit: 'ms', log: true },
        series: loop,
      },
    ],
  };
}

// --- bench atlas -----------------------------------------------------------------------------

const SHAPE_COLORS: Rgb[] = [BLUE, ORANGE, PURPLE, TEAL, RED, PINK, OLIVE, BROWN];
const SHAPE_MARKERS = ['circle', 'triangle', 'diamond', 'square'] as const;

/**
 * `arrow bench atlas`: p50 and p99 of the path-query time per query shape against plain Dijkstra
 * on latency over the same graph (the baseline), each shape's p50 ratio to it in the legend, and
 * the p50 target.
 */
export function atlasChart(report: AtlasBenchReport): Chart {
  const draw = (p: { p50Ms: number; p99Ms: number }): { x: number; y: number }[] =>
    report.valid ? tailPoints({ p50: p.p50Ms, p99: p.p99Ms }) : [];
  const series: Series[] = [
    {
      label: 'plain Dijkstra on latency (baseline)',
      color: GREY,
      width: 3,
      dash: DASHED,
      marker: 'square',
      points: draw(report.baseline),
    },
    ...report.shapes.map((s, i): Series => ({
      label: `${s.name}: p50 ${ratioText(s.ratio)} the baseline, ${s.answered}/${report.queries} answered`,
      color: SHAPE_COLORS[i % SHAPE_COLORS.length]!,
      width: 2,
      marker: SHAPE_MARKERS[i % SHAPE_MARKERS.length]!,
      points: draw(s),
    })),
    {
      label: 'all shapes together',
      color: BLACK,
      width: 3,
      dash: DOTTED,
      marker: 'circle',
      points: draw(report.overall),
    },
  ];
  return {
    title: `ARROW atlas path-query time vs plain Dijkstra: ${report.isps} ISPs, ${report.pops} PoPs, per query shape`,
    subtitle:
      `${report.queries} queries per shape, median of ${report.runs} run(s); ${report.offers} offers, ` +
      `${report.peerings} peerings, seed ${report.seed}; target p50 under ${report.target.p50Ms} ms ` +
      (report.valid
        ? report.target.met
          ? 'met'
          : 'NOT met'
        : 'not judged; INVALID run, nothing drawn (not a result: reasons in the report)'),
    legendColumns: 2,
    panels: [
      {
        title: '',
        x: tailX(series),
        y: { title: 'query time', unit: 'ms', log: true },
        series,
        hlines: [
          {
            y: report.target.p50Ms,
            label: `target: p50 under ${report.target.p50Ms} ms`,
            color: TARGET_COLOR,
          },
        ],
      },
    ],
  };
}

/** `arrow bench verify`: check time against circuits (log-log: linear is a slope of 1), vs brute force. */
export function verifyChart(report: VerifyBenchReport): Chart {
  const pts = (pick: (s: VerifyBenchReport['scaling'][number]) => number): { x: number; y: number }[] =>
    report.valid ? report.scaling.map((s) => ({ x: s.circuits, y: pick(s) })) : [];
  const series: Series[] = [
    {
      label: 'one packet per circuit through DataPlane.process (baseline)',
      color: GREY,
      width: 3,
      dash: DASHED,
      marker: 'square',
      points: pts((s) => s.injectMs),
    },
    {
      label: `arrow verify: every circuit checked (${ratioText(report.ratio)} the baseline at ${report.circuits})`,
      color: BLACK,
      width: 3,
      marker: 'circle',
      points: pts((s) => s.verifyMs),
    },
  ];
  return {
    title: `arrow verify: check time vs circuits, ${report.routers} routers of ${report.isps} ISPs, paths of ${report.pathLength}`,
    subtitle:
      `median of ${report.runs} run(s); with every single router failure at ${report.circuits}: ${report.failuresMs} ms; ` +
      `checker and routers agree on ${report.agree}/${report.circuits}; target under ${report.target.ms} ms ` +
      (report.valid
        ? report.target.met
          ? 'met'
          : 'NOT met'
        : 'not judged; INVALID run, nothing drawn (not a result: reasons in the report)'),
    legendColumns: 1,
    panels: [
      {
        title: '',
        x: { title: 'circuits', log: true },
        y: { title: 'time to check them all', unit: 'ms', log: true },
        series,
        hlines: [{ y: report.target.ms, label: `target: under ${report.target.ms} ms`, color: TARGET_COLOR }],
      },
    ],
  };
}

// --- writing -----------------------------------------------------------------------------------

export interface PlotFiles {
  svg: string;
  png: string;
}

/** Renders `chart` and writes it as `<out>/<name>.svg` and `<out>/<name>.png` (creating `out`); returns their paths. */
export async function writeBenchPlot(chart: Chart, out: string, name: string): Promise<PlotFiles> {
  const { svg, png } = await renderChart(chart);
  mkdirSync(out, { recursive: true });
  const files = { svg: resolve(out, `${name}.svg`), png: resolve(out, `${name}.png`) };
  writeFileSync(files.svg, svg);
  writeFileSync(files.png, png);
  return files;
}

/**
 * What a bench command does after printing its report: writes the plot, and in text mode names
 * the two files on stderr (stdout stays the report alone).
 */
export async function writeBenchPlotFor(
  chart: Chart,
  o: { out: string; json?: boolean | undefined },
  name: string,
): Promise<PlotFiles> {
  const files = await writeBenchPlot(chart, o.out, name);
  if (!o.json) console.error(`plot: ${files.svg}, ${files.png}`);
  return files;
}
