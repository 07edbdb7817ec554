import { existsSync, readFileSync } from 'node:fs';
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

/**
 * The benches' and experiments' plots: a small declarative description of line charts (one or
 * more panels side by side, one legend below), turned into a Vega-Lite spec ({@link vegaLiteSpec},
 * pure, so a web page could draw the same spec), compiled to Vega, drawn as SVG by Vega's headless
 * renderer and rasterised to PNG by resvg ({@link renderChart}), with a font file given explicitly
 * so the output does not depend on the machine's fonts.
 */

export type Rgb = readonly [number, number, number];
export type MarkerShape = 'circle' | 'square' | 'triangle' | 'diamond';

export const GREY: Rgb = [150, 150, 150];

export interface Axis {
  /** What is measured, e.g. "RTT"; drawn with the unit and the scale: "RTT (µs, log scale)". */
  title: string;
  /** The unit, e.g. "ms"; none for counts (clients, trials). */
  unit?: string;
  /** Log10 scale; points at or below 0 are left out. */
  log?: boolean;
  /** Where ticks (and grid lines) go. Default: the x values of the series on x; on a log y, 1, 2, 5 × 10^k. */
  ticks?: number[];
}

export interface Series {
  /** The legend's label; series of the same label in several panels must look the same. */
  label: string;
  color: Rgb;
  points: { x: number; y: number }[];
  /** Line width in px (default 2). */
  width?: number;
  /** [on, off] in px draws the line dashed. */
  dash?: readonly [number, number];
  marker?: MarkerShape;
}

/** A horizontal reference line across a panel, labelled at its right end. */
export interface HLine {
  y: number;
  label: string;
  color: Rgb;
}

/** One panel: a line chart. */
export interface ChartSpec {
  /** Above the panel; '' for none. */
  title: string;
  x: Axis;
  y: Axis;
  series: Series[];
  hlines?: HLine[];
}

/** A whole figure: a title, a subtitle, panels side by side, one legend below for every panel's series. */
export interface Chart {
  title: string;
  subtitle: string;
  panels: ChartSpec[];
  /** The PNG's width in px (default 1000 for one panel, 1400 for more). */
  width?: number;
  /** Legend columns (default 2 for one panel, 3 for more). */
  legendColumns?: number;
}

/** The font every text is drawn in: its family name and the files resvg loads it from. */
export interface ChartFont {
  family: string;
  /** TrueType files of the family's regular and bold (titles) faces. */
  regular: string;
  bold: string;
}

/** DejaVu Sans, from Debian's fonts-dejavu-core (scripts/provision.mjs installs it). */
export const DEFAULT_FONT: ChartFont = {
  family: 'DejaVu Sans',
  regular: '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf',
  bold: '/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf',
};

/** Tick labels: up to 6 significant digits, plain decimals (10, 0.5, 2000), no trailing zeros. */
const TICK_FORMAT = '.6~r';
const PANEL_HEIGHT = 430;
/** Room a panel takes besides its plot area (y axis labels and title), for sizing the plot areas. */
const PANEL_OVERHEAD = 95;
const SPACING = 30;
const PADDING = 16;

/** "RTT (µs, log scale)", "clients (log scale)", "trial". */
export function axisTitle(a: Axis): string {
  const notes = [...(a.unit ? [a.unit] : []), ...(a.log ? ['log scale'] : [])];
  return notes.length ? `${a.title} (${notes.join(', ')})` : a.title;
}

function hex(c: Rgb): string {
  return (
    '#' +
    c
      .map((v) =>
        Math.max(0, Math.min(255, Math.round(v)))
          .toString(16)
          .padStart(2, '0'),
      )
      .join('')
  );
}

/** 1, 2, 5 × 10^k from `lo` to `hi`. */
export function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let k = Math.floor(Math.log10(lo)); k <= Math.ceil(Math.log10(hi)); k++)
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** k;
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(Number(v.toPrecision(6)));
    }
  return out;
}

/** 1, 2 or 5 × 10^k: the smallest such step giving at most `count` intervals up to `max`. */
export function niceStep(max: number, count = 5): number {
  if (!(max > 0)) return 1;
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

type AxisRange = [domain: [number, number], ticks: number[]];

function logAxis(values: number[]): AxisRange {
  const steps = logTicks(1e-9, 1e12);
  const lowest = values.length ? Math.min(...values) : 1;
  const highest = values.length ? Math.max(...values) : 10;
  const lo = [...steps].reverse().find((v) => v <= lowest) ?? lowest;
  let hi = steps.find((v) => v >= highest) ?? highest;
  if (hi <= lo) hi = lo * 10;
  return [[lo, hi], logTicks(lo, hi)];
}

function linearAxis(values: number[]): AxisRange {
  const top = Math.max(1, ...values) * 1.08;
  const step = niceStep(top);
  const max = Math.ceil(top / step) * step;
  const ticks: number[] = [];
  for (let v = 0; v <= max + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  return [[0, max], ticks];
}

/** The markers in a legend sample, in its units (4 px). */
const MARKER_PATHS: Record<MarkerShape, string> = {
  circle: 'M-1.2,0A1.2,1.2,0,1,0,1.2,0A1.2,1.2,0,1,0,-1.2,0Z',
  square: 'M-1,-1H1V1H-1Z',
  triangle: 'M0,-1.3L1.2,0.9H-1.2Z',
  diamond: 'M0,-1.4L1.4,0L0,1.4L-1.4,0Z',
};

const SHAPES: Record<MarkerShape, string> = {
  circle: 'circle',
  square: 'square',
  triangle: 'triangle-up',
  diamond: 'diamond',
};

function sameLook(a: Series, b: Series): boolean {
  return (
    hex(a.color) === hex(b.color) &&
    (a.width ?? 2) === (b.width ?? 2) &&
    String(a.dash ?? '') === String(b.dash ?? '') &&
    a.marker === b.marker
  );
}

/** Every panel's series, one per label, in order: what the legend lists. */
function legendSeries(chart: Chart): Series[] {
  const byLabel = new Map<string, Series>();
  for (const s of chart.panels.flatMap((p) => p.series)) {
    const seen = byLabel.get(s.label);
    if (!seen) byLabel.set(s.label, s);
    else if (!sameLook(seen, s))
      throw new Error(`chart "${chart.title}": two series are labelled "${s.label}" but drawn differently`);
  }
  return [...byLabel.values()];
}

type HConcat = Extract<TopLevelSpec, { hconcat: unknown }>;
type Panel = HConcat['hconcat'][number];
type Layer = Extract<TopLevelSpec, { layer: unknown }>['layer'][number];

/**
 * The Vega-Lite spec of `chart` (pure: no I/O, plain JSON). Series are told apart by a nominal
 * field whose colour and dash scales list every label and are shared by the panels, so one legend
 * serves them all; line widths and markers are marks' properties (a layer per width and per marker
 * shape). Reference lines are rules with their label in their colour, outside the legend.
 */
export function vegaLiteSpec(chart: Chart, font: string = DEFAULT_FONT.family): TopLevelSpec {
  if (chart.panels.length === 0) throw new Error(`chart "${chart.title}" has no panel`);
  const width = chart.width ?? (chart.panels.length > 1 ? 1400 : 1000);
  const columns = chart.legendColumns ?? (chart.panels.length > 1 ? 3 : 2);
  const n = chart.panels.length;
  const plotWidth = Math.max(150, Math.floor((width - 2 * PADDING - (n - 1) * SPACING) / n - PANEL_OVERHEAD));
  const all = legendSeries(chart);
  const domain = all.map((s) => s.label);
  const series = { field: 'series', type: 'nominal' as const, title: null };
  const strokeDash = {
    ...series,
    scale: { domain, range: all.map((s) => (s.dash ? [...s.dash] : [1, 0])) },
  };
  // A legend entry is a sample of the series: a 36 px line in its dash with its marker in the middle.
  // Vega draws a custom symbol path scaled by sqrt(symbolSize) / 2 (4 px here, see config.legend).
  const samples = all.map((s) => 'M-4.5,0H4.5' + (s.marker ? MARKER_PATHS[s.marker] : ''));
  const legend = {
    encode: {
      symbols: {
        update: {
          shape: { signal: `${JSON.stringify(samples)}[indexof(${JSON.stringify(domain)}, datum.value)]` },
        },
      },
    },
  };
  const color = { ...series, scale: { domain, range: all.map((s) => hex(s.color)) }, legend };

  const panel = (p: ChartSpec): Panel => {
    const ok = (v: { x: number; y: number }): boolean =>
      Number.isFinite(v.x) && Number.isFinite(v.y) && (!p.x.log || v.x > 0) && (!p.y.log || v.y > 0);
    const rows = p.series.flatMap((s) =>
      s.points.filter(ok).map((v) => ({ x: v.x, y: v.y, series: s.label })),
    );
    const xs = rows.map((r) => r.x);
    const xTicks = p.x.ticks ?? [...new Set(xs)].sort((a, b) => a - b);
    const ys = [...rows.map((r) => r.y), ...(p.hlines ?? []).map((h) => h.y)].filter(
      (y) => Number.isFinite(y) && (!p.y.log || y > 0),
    );
    const xPadding = Math.round(plotWidth * 0.06);
    const x = {
      field: 'x',
      type: 'quantitative' as const,
      title: axisTitle(p.x),
      // The data's extent and a margin, as the ticks are the data's x values.
      scale: {
        ...(p.x.log ? { type: 'log' as const } : { zero: false }),
        nice: false,
        padding: xPadding,
        // A panel with nothing to draw still gets axes.
        ...(xs.length + xTicks.length === 0 ? { domain: p.x.log ? [1, 10] : [0, 1] } : {}),
      },
      axis: { values: xTicks, format: TICK_FORMAT },
    };
    // Log: from the 1, 2 or 5 × 10^k below the data to the one above; linear: from 0 to a round
    // number 8% above the data, in at most 5 steps of 1, 2 or 5 × 10^k.
    const [yDomain, yTicks] = p.y.log ? logAxis(ys) : linearAxis(ys);
    const y = {
      field: 'y',
      type: 'quantitative' as const,
      title: axisTitle(p.y),
      scale: { ...(p.y.log ? { type: 'log' as const } : {}), domain: yDomain, nice: false },
      axis: { format: TICK_FORMAT, values: p.y.ticks ?? yTicks },
    };
    // One line layer per line width: a width encoded by the series field would take the legend away.
    const widths = [...new Set(p.series.map((s) => s.width ?? 2))];
    const layers: Layer[] = [
      ...widths.map((w): Layer => {
        const labels = new Set(p.series.filter((s) => (s.width ?? 2) === w).map((s) => s.label));
        return {
          data: { values: rows.filter((r) => labels.has(r.series)) },
          mark: { type: 'line', strokeWidth: w },
          encoding: { x, y, color, strokeDash },
        };
      }),
      // One point layer per marker shape, for the same reason.
      ...(Object.keys(SHAPES) as MarkerShape[]).flatMap((m): Layer[] => {
        const labels = new Set(p.series.filter((s) => s.marker === m).map((s) => s.label));
        if (labels.size === 0) return [];
        return [
          {
            data: { values: rows.filter((r) => labels.has(r.series)) },
            mark: { type: 'point', shape: SHAPES[m], filled: true, opacity: 1, size: 70 },
            encoding: { x, y, color },
          },
        ];
      }),
    ];
    for (const h of p.hlines ?? []) {
      if (!Number.isFinite(h.y) || (p.y.log && h.y <= 0)) continue;
      layers.push(
        {
          data: { values: [{ y: h.y }] },
          mark: { type: 'rule', color: hex(h.color), strokeWidth: 2, strokeDash: [8, 6] },
          encoding: { y: { field: 'y', type: 'quantitative' } },
        },
        {
          data: { values: [{ y: h.y, label: h.label }] },
          mark: {
            type: 'text',
            color: hex(h.color),
            align: 'right',
            baseline: 'bottom',
            dx: -6,
            dy: -4,
            fontSize: 13,
          },
          encoding: {
            x: { value: plotWidth },
            y: { field: 'y', type: 'quantitative' },
            text: { field: 'label' },
          },
        },
      );
    }
    return {
      ...(p.title ? { title: p.title } : {}),
      width: plotWidth,
      height: PANEL_HEIGHT,
      layer: layers,
    };
  };

  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: chart.title,
      subtitle: chart.subtitle,
      anchor: 'middle',
      fontSize: 17,
      subtitleFontSize: 14,
      subtitleColor: '#666666',
      offset: 14,
    },
    background: 'white',
    padding: PADDING,
    spacing: SPACING,
    hconcat: chart.panels.map(panel),
    resolve: {
      scale: { color: 'shared', strokeDash: 'shared' },
      legend: { color: 'shared', strokeDash: 'shared' },
    },
    config: {
      font,
      view: { stroke: '#444444' },
      axis: { labelFontSize: 13, titleFontSize: 14, titleFontWeight: 'normal', gridColor: '#e4e4e4' },
      title: { fontSize: 15 },
      legend: {
        orient: 'bottom',
        direction: 'horizontal',
        columns,
        labelFontSize: 13,
        labelLimit: 1000,
        symbolSize: 64,
        symbolStrokeWidth: 2,
        symbolOffset: 14,
        labelOffset: 22,
        columnPadding: 24,
        rowPadding: 8,
      },
    },
  };
}

export interface RenderedChart {
  svg: string;
  png: Buffer;
}

/** Advance widths of a TrueType font, in em: what Vega lays text out with (legend columns, axis room). */
export interface FontMetrics {
  advance(codePoint: number): number;
}

/**
 * Reads `file`'s advance widths (tables head, hhea, hmtx, and a Unicode BMP cmap of format 4);
 * kerning is left out. Throws on a file that is not such a font.
 */
export function readFontMetrics(file: string): FontMetrics {
  const b = readFileSync(file);
  const fail = (why: string): never => {
    throw new Error(`font ${file}: not a TrueType font Arrow can read (${why})`);
  };
  try {
    return parseMetrics(b, fail);
  } catch (err) {
    // A table that points outside the file.
    if (err instanceof RangeError) fail(err.message);
    throw err;
  }
}

function parseMetrics(b: Buffer, fail: (why: string) => never): FontMetrics {
  if (b.length < 12) fail('too short');
  const tables = new Map<string, number>();
  const count = b.readUInt16BE(4);
  for (let i = 0; i < count; i++) {
    const at = 12 + 16 * i;
    if (at + 16 > b.length) fail('truncated table directory');
    tables.set(b.toString('latin1', at, at + 4), b.readUInt32BE(at + 8));
  }
  const table = (tag: string): number => tables.get(tag) ?? fail(`no ${tag} table`);
  const unitsPerEm = b.readUInt16BE(table('head') + 18);
  const hMetrics = b.readUInt16BE(table('hhea') + 34);
  const hmtx = table('hmtx');
  const cmap = table('cmap');
  let sub = -1;
  for (let i = 0; i < b.readUInt16BE(cmap + 2); i++) {
    const at = cmap + 4 + 8 * i;
    const [platform, encoding] = [b.readUInt16BE(at), b.readUInt16BE(at + 2)];
    const offset = cmap + b.readUInt32BE(at + 4);
    if ((platform === 3 && encoding === 1) || platform === 0)
      if (b.readUInt16BE(offset) === 4) {
        sub = offset;
        break;
      }
  }
  if (sub < 0 || unitsPerEm === 0 || hMetrics === 0) fail('no Unicode cmap of format 4');
  const segments = b.readUInt16BE(sub + 6) / 2;
  const ends = sub + 14;
  const starts = ends + 2 * segments + 2;
  const deltas = starts + 2 * segments;
  const rangeOffsets = deltas + 2 * segments;
  const glyph = (c: number): number => {
    for (let i = 0; i < segments; i++) {
      if (c > b.readUInt16BE(ends + 2 * i)) continue;
      const start = b.readUInt16BE(starts + 2 * i);
      if (c < start) return 0;
      const delta = b.readUInt16BE(deltas + 2 * i);
      const range = b.readUInt16BE(rangeOffsets + 2 * i);
      if (range === 0) return (c + delta) & 0xffff;
      const g = b.readUInt16BE(rangeOffsets + 2 * i + range + 2 * (c - start));
      return g === 0 ? 0 : (g + delta) & 0xffff;
    }
    return 0;
  };
  const cache = new Map<number, number>();
  return {
    advance(c: number): number {
      let w = cache.get(c);
      if (w === undefined) {
        const g = c > 0xffff ? 0 : glyph(c);
        w = b.readUInt16BE(hmtx + 4 * Math.min(g, hMetrics - 1)) / unitsPerEm;
        cache.set(c, w);
      }
      return w;
    },
  };
}

const metricsCache = new Map<string, FontMetrics>();

function metricsOf(file: string): FontMetrics {
  let m = metricsCache.get(file);
  if (!m) metricsCache.set(file, (m = readFontMetrics(file)));
  return m;
}

/** Vega's text metrics object (vega-scenegraph's, exported by vega but not in its types). */
interface VegaTextMetrics {
  width: (item: { fontSize?: number | string; fontWeight?: string | number }, text?: unknown) => number;
}

/** Vega measures text with a canvas, which Node lacks, or guesses 0.8 em a character: measure `font` instead. */
function measureWith(font: ChartFont): void {
  const regular = metricsOf(font.regular);
  const bold = metricsOf(font.bold);
  (vega as unknown as { textMetrics: VegaTextMetrics }).textMetrics.width = (item, text) => {
    const size = item.fontSize != null ? Number(item.fontSize) || 0 : 11;
    const w = item.fontWeight;
    const m = w === 'bold' || w === 'bolder' || Number(w) >= 600 ? bold : regular;
    let em = 0;
    for (const ch of text == null ? '' : String(text).trim()) em += m.advance(ch.codePointAt(0)!);
    return em * size;
  };
}

/**
 * The figure as SVG (text as text, in `font`) and as a PNG `chart.width` px wide (the SVG's own
 * size is close to it: resvg scales it to fit). A font file that is missing or not a TrueType font
 * is an error: resvg would draw the plot without its text.
 */
export async function renderChart(chart: Chart, font: ChartFont = DEFAULT_FONT): Promise<RenderedChart> {
  const files = [font.regular, font.bold];
  const missing = files.filter((f) => !existsSync(f));
  if (missing.length)
    throw new Error(
      `plot "${chart.title}": font ${font.family} not found: no ${missing.join(', ')} ` +
        '(Debian: apt-get install fonts-dejavu-core)',
    );
  measureWith(font);
  const vg = compile(vegaLiteSpec(chart, font.family)).spec;
  const view = new vega.View(vega.parse(vg), { renderer: 'none' });
  let svg: string;
  try {
    svg = await view.toSVG();
  } finally {
    view.finalize();
  }
  const width = chart.width ?? (chart.panels.length > 1 ? 1400 : 1000);
  const png = new Resvg(svg, {
    font: { fontFiles: files, loadSystemFonts: false, defaultFontFamily: font.family },
    fitTo: { mode: 'width', value: width },
    background: 'white',
  })
    .render()
    .asPng();
  return { svg, png };
}
