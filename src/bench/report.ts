import { median, round } from '../util/stats.js';

/** The three paths measured, each against the same sender and sink. */
export type ConfigName = 'baseline' | 'hop1' | 'hop2';
export const CONFIG_NAMES: readonly ConfigName[] = ['baseline', 'hop1', 'hop2'];

const CONFIG_LABELS: Record<ConfigName, string> = {
  baseline: 'plain Node UDP relay',
  hop1: '1 ARROW router',
  hop2: '2 ARROW routers',
};

/** The size whose pps ratios are the headline: 1400 bytes, the common tunnelled MTU-sized datagram. */
export const HEADLINE_SIZE = 1400;

/** One measured run of one (config, size). */
export interface RunFigures {
  /** Datagrams per second counted at the sink during the window. */
  pps: number;
  /** UDP payload bits per second at the sink: size * 8 * pps / 1e6. */
  mbps: number;
  /** Offered load: the sender's rate over its whole blast. Far above `pps` means the relay path dropped the rest. */
  sentPps: number;
  /**
   * Percent of one core used during the window, per process role (sender, relay, routerA, routerB, sink),
   * plus the machine's interrupt (`irq`, mostly loopback delivery) and `idle` time. Linux only.
   */
  cpu: Record<string, number>;
}

export interface PointResult {
  pps: number;
  mbps: number;
  sentPps: number;
  cpu: Record<string, number>;
  perRun: RunFigures[];
}

/** Results of one config, keyed by datagram size as a string ("64", "1400"). */
export type ConfigResult = Record<string, PointResult>;

export interface ForwardBenchReport {
  baseline: ConfigResult;
  hop1: ConfigResult;
  hop2: ConfigResult;
  /** hop1 pps / baseline pps at 1400 bytes (or the largest size measured). */
  ratio1: number;
  /** hop2 pps / baseline pps at the same size. */
  ratio2: number;
  ratios: Record<string, { hop1: number; hop2: number }>;
  sizes: number[];
  runs: number;
  durationS: number;
  machine: { cpus: number; node: string };
}

export type Measurements = Record<ConfigName, Map<number, RunFigures[]>>;

export function emptyMeasurements(): Measurements {
  return { baseline: new Map(), hop1: new Map(), hop2: new Map() };
}

export function headlineSize(sizes: number[]): number {
  return sizes.includes(HEADLINE_SIZE) ? HEADLINE_SIZE : Math.max(...sizes);
}

/** Median per key over the runs; a key missing from some runs is taken over the runs that have it. */
function medianCpu(runs: RunFigures[]): Record<string, number> {
  const keys = new Set(runs.flatMap((r) => Object.keys(r.cpu)));
  const out: Record<string, number> = {};
  for (const k of keys) out[k] = round(median(runs.flatMap((r) => (k in r.cpu ? [r.cpu[k]!] : []))), 0);
  return out;
}

function summarise(runs: RunFigures[]): PointResult {
  return {
    pps: Math.round(median(runs.map((r) => r.pps))),
    mbps: round(median(runs.map((r) => r.mbps)), 1),
    sentPps: Math.round(median(runs.map((r) => r.sentPps))),
    cpu: medianCpu(runs),
    perRun: runs,
  };
}

function ratio(a: number, b: number): number {
  return round(a / b, 3);
}

export function buildReport(
  m: Measurements,
  opts: { sizes: number[]; runs: number; durationS: number; machine: { cpus: number; node: string } },
): ForwardBenchReport {
  const byConfig = (name: ConfigName): ConfigResult => {
    const out: ConfigResult = {};
    for (const size of opts.sizes) out[String(size)] = summarise(m[name].get(size) ?? []);
    return out;
  };
  const baseline = byConfig('baseline');
  const hop1 = byConfig('hop1');
  const hop2 = byConfig('hop2');
  const ratios: ForwardBenchReport['ratios'] = {};
  for (const size of opts.sizes) {
    const k = String(size);
    ratios[k] = { hop1: ratio(hop1[k]!.pps, baseline[k]!.pps), hop2: ratio(hop2[k]!.pps, baseline[k]!.pps) };
  }
  const head = ratios[String(headlineSize(opts.sizes))]!;
  return {
    baseline,
    hop1,
    hop2,
    ratio1: head.hop1,
    ratio2: head.hop2,
    ratios,
    sizes: opts.sizes,
    runs: opts.runs,
    durationS: opts.durationS,
    machine: opts.machine,
  };
}

const int = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

function cpuText(cpu: Record<string, number>): string {
  return Object.entries(cpu)
    .map(([role, pct]) => `${role} ${pct}`)
    .join(', ');
}

/** The human-readable report: absolute figures per (config, size), then the ratios. */
export function formatReport(r: ForwardBenchReport): string {
  const header = [
    'size',
    'config',
    'pps',
    'Mb/s',
    'x base',
    'sent pps',
    'CPU % of a core (median)',
    'pps per run',
  ];
  const rows: string[][] = [];
  for (const size of r.sizes) {
    const k = String(size);
    for (const name of CONFIG_NAMES) {
      const p = r[name][k]!;
      rows.push([
        `${size} B`,
        name,
        int.format(p.pps),
        p.mbps.toFixed(1),
        (p.pps / r.baseline[k]!.pps).toFixed(3),
        int.format(p.sentPps),
        cpuText(p.cpu),
        p.perRun.map((x) => int.format(x.pps)).join(' / '),
      ]);
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i <= 1 || i >= 6 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  const head = headlineSize(r.sizes);
  return [
    `ARROW forwarding vs a plain Node UDP relay: median of ${r.runs} run(s) x ${r.durationS} s per point`,
    `machine: ${r.machine.cpus} CPU(s), Node ${r.machine.node}; every box below is its own process on 127.0.0.0/8`,
    ...CONFIG_NAMES.map((n) => `  ${n.padEnd(8)} sender -> ${CONFIG_LABELS[n]} -> sink`),
    '',
    line(header),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
    '',
    'pps ratio to baseline:',
    ...r.sizes.map((s) => {
      const x = r.ratios[String(s)]!;
      return `  ${String(s).padStart(5)} B  hop1/baseline ${x.hop1.toFixed(3)}  hop2/baseline ${x.hop2.toFixed(3)}`;
    }),
    `headline (${head} B): ratio1 ${r.ratio1.toFixed(3)}, ratio2 ${r.ratio2.toFixed(3)}`,
  ].join('\n');
}
