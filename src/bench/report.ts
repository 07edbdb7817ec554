import { median, round } from '../util/stats.js';
import { Checks, MAX_OTHER_CPU_PCT, type Validity } from './validity.js';

export { MAX_OTHER_CPU_PCT };

/** Runs of one point further apart than this (max / min pps) measured noise, not forwarding. */
export const MAX_RUN_SPREAD = 1.5;
/** A window that counted fewer datagrams than this is too short to be a rate. */
export const MIN_PACKETS = 1000;

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
  /** Datagrams the sink counted in the window. */
  packets: number;
  /**
   * Percent of one core used during the window, per process role (sender, relay, routerA, routerB, sink),
   * plus the machine's interrupt (`irq`, mostly loopback delivery) and `idle` time. Linux only.
   */
  cpu: Record<string, number>;
}

export interface PointResult extends Validity {
  pps: number;
  mbps: number;
  sentPps: number;
  cpu: Record<string, number>;
  perRun: RunFigures[];
}

/** Results of one config, keyed by datagram size as a string ("64", "1400"). */
export type ConfigResult = Record<string, PointResult>;

export interface ForwardBenchReport extends Validity {
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

/**
 * The checks a point must pass to be a result: a quiet machine, windows long enough to count,
 * and runs that agree. Pure, so the rules are tested on their own.
 */
export function validatePoint(runs: RunFigures[]): Validity {
  const checks = new Checks().check(runs.length > 0, 'no run');
  for (const [i, r] of runs.entries()) {
    const other = r.cpu.other;
    checks
      .check(r.packets >= MIN_PACKETS, `run ${i + 1}: ${r.packets} datagrams counted (< ${MIN_PACKETS})`)
      .check(
        other === undefined || other <= MAX_OTHER_CPU_PCT,
        `run ${i + 1}: other processes took ${other}% of a core (> ${MAX_OTHER_CPU_PCT}%)`,
      );
  }
  const pps = runs.map((r) => r.pps);
  if (pps.length > 1) {
    const spread = Math.max(...pps) / Math.min(...pps);
    checks.check(spread <= MAX_RUN_SPREAD, `runs ${round(spread, 2)}x apart (> ${MAX_RUN_SPREAD}x)`);
  }
  return checks.result;
}

function summarise(runs: RunFigures[]): PointResult {
  return {
    ...validatePoint(runs),
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
  const checks = new Checks();
  for (const name of CONFIG_NAMES)
    for (const size of opts.sizes) {
      const p = { baseline, hop1, hop2 }[name][String(size)]!;
      checks.check(p.valid, `${name} ${size} B: ${p.invalidReason ?? ''}`);
    }
  return {
    ...checks.result,
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
      if (!p.valid) {
        rows.push([`${size} B`, name, `INVALID: ${p.invalidReason ?? ''}`, '', '', '', '', '']);
        continue;
      }
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
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.filter((row) => !row[2]!.startsWith('INVALID')).map((row) => row[i]!.length)),
  );
  const line = (cells: string[]): string =>
    cells
      .map((c, i) =>
        i <= 1 || i >= 6 || c.startsWith('INVALID') ? c.padEnd(widths[i]!) : c.padStart(widths[i]!),
      )
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
    `a point is INVALID (shown instead of its figures) when other processes took more than ${MAX_OTHER_CPU_PCT}% of a core,`,
    `a window counted fewer than ${MIN_PACKETS} datagrams, or its runs were more than ${MAX_RUN_SPREAD}x apart`,
    '',
    'pps ratio to baseline:',
    ...r.sizes.map((s) => {
      const x = r.ratios[String(s)]!;
      return `  ${String(s).padStart(5)} B  hop1/baseline ${x.hop1.toFixed(3)}  hop2/baseline ${x.hop2.toFixed(3)}`;
    }),
    `headline (${head} B): ratio1 ${r.ratio1.toFixed(3)}, ratio2 ${r.ratio2.toFixed(3)}` +
      (r.valid ? '' : ' -- INVALID: ratios of invalid points are not results'),
  ].join('\n');
}
