import { deflateSync } from 'node:zlib';

/**
 * A tiny raster plotting kit for the benches, with no dependency: an RGB canvas with
 * lines, markers and a 5×7 bitmap font, a line chart on top of it (linear or log x),
 * and a PNG encoder (node:zlib deflate plus CRC-32, per the PNG specification).
 */

export type Rgb = readonly [number, number, number];

export const WHITE: Rgb = [255, 255, 255];
export const BLACK: Rgb = [0, 0, 0];
export const GREY: Rgb = [150, 150, 150];
export const LIGHT_GREY: Rgb = [225, 225, 225];

// ---------------------------------------------------------------------------------------------
// Font: 5×7 glyphs, '#' = ink, rows separated by '|'; g j p q y have two more rows below
// the baseline. Unknown characters render as a hollow box.

const GLYPH_W = 5;
/** Cap height: what layout uses as the height of a line of text. */
const GLYPH_H = 7;
/** Rows a glyph may have, descender included. */
const GLYPH_ROWS = 9;
/** Horizontal advance and line height, in font pixels. */
const ADVANCE = 6;
const LINE = 11;

const G: Record<string, string> = {
  ' ': '     |     |     |     |     |     |     ',
  '0': ' ### |#   #|#  ##|# # #|##  #|#   #| ### ',
  '1': '  #  | ##  |  #  |  #  |  #  |  #  | ### ',
  '2': ' ### |#   #|    #|   # |  #  | #   |#####',
  '3': '#####|   # |  #  |   # |    #|#   #| ### ',
  '4': '   # |  ## | # # |#  # |#####|   # |   # ',
  '5': '#####|#    |#### |    #|    #|#   #| ### ',
  '6': '  ## | #   |#    |#### |#   #|#   #| ### ',
  '7': '#####|    #|   # |  #  | #   | #   | #   ',
  '8': ' ### |#   #|#   #| ### |#   #|#   #| ### ',
  '9': ' ### |#   #|#   #| ####|    #|   # | ##  ',
  a: '     |     | ### |    #| ####|#   #| ####',
  b: '#    |#    |# ## |##  #|#   #|#   #|#### ',
  c: '     |     | ### |#    |#    |#   #| ### ',
  d: '    #|    #| ## #|#  ##|#   #|#   #| ####',
  e: '     |     | ### |#   #|#####|#    | ### ',
  f: '  ## | #  #| #   |###  | #   | #   | #   ',
  g: '     |     | ####|#   #|#   #|#   #| ####|    #| ### ',
  h: '#    |#    |# ## |##  #|#   #|#   #|#   #',
  i: '  #  |     | ##  |  #  |  #  |  #  | ### ',
  j: '   # |     |  ## |   # |   # |   # |   # |#  # | ##  ',
  k: '#    |#    |#  # |# #  |##   |# #  |#  # ',
  l: ' ##  |  #  |  #  |  #  |  #  |  #  | ### ',
  m: '     |     |## # |# # #|# # #|#   #|#   #',
  n: '     |     |# ## |##  #|#   #|#   #|#   #',
  o: '     |     | ### |#   #|#   #|#   #| ### ',
  p: '     |     |#### |#   #|#   #|#   #|#### |#    |#    ',
  q: '     |     | ####|#   #|#   #|#   #| ####|    #|    #',
  r: '     |     |# ## |##  #|#    |#    |#    ',
  s: '     |     | ####|#    | ### |    #|#### ',
  t: ' #   | #   |###  | #   | #   | #  #|  ## ',
  u: '     |     |#   #|#   #|#   #|#  ##| ## #',
  v: '     |     |#   #|#   #|#   #| # # |  #  ',
  w: '     |     |#   #|#   #|# # #|# # #| # # ',
  x: '     |     |#   #| # # |  #  | # # |#   #',
  y: '     |     |#   #|#   #|#   #|#   #| ####|    #| ### ',
  z: '     |     |#####|   # |  #  | #   |#####',
  A: ' ### |#   #|#   #|#####|#   #|#   #|#   #',
  B: '#### |#   #|#   #|#### |#   #|#   #|#### ',
  C: ' ### |#   #|#    |#    |#    |#   #| ### ',
  D: '#### |#   #|#   #|#   #|#   #|#   #|#### ',
  E: '#####|#    |#    |#### |#    |#    |#####',
  F: '#####|#    |#    |#### |#    |#    |#    ',
  G: ' ### |#   #|#    |# ###|#   #|#   #| ####',
  H: '#   #|#   #|#   #|#####|#   #|#   #|#   #',
  I: ' ### |  #  |  #  |  #  |  #  |  #  | ### ',
  J: '  ###|   # |   # |   # |   # |#  # | ##  ',
  K: '#   #|#  # |# #  |##   |# #  |#  # |#   #',
  L: '#    |#    |#    |#    |#    |#    |#####',
  M: '#   #|## ##|# # #|# # #|#   #|#   #|#   #',
  N: '#   #|#   #|##  #|# # #|#  ##|#   #|#   #',
  O: ' ### |#   #|#   #|#   #|#   #|#   #| ### ',
  P: '#### |#   #|#   #|#### |#    |#    |#    ',
  Q: ' ### |#   #|#   #|#   #|# # #|#  # | ## #',
  R: '#### |#   #|#   #|#### |# #  |#  # |#   #',
  S: ' ####|#    |#    | ### |    #|    #|#### ',
  T: '#####|  #  |  #  |  #  |  #  |  #  |  #  ',
  U: '#   #|#   #|#   #|#   #|#   #|#   #| ### ',
  V: '#   #|#   #|#   #|#   #|#   #| # # |  #  ',
  W: '#   #|#   #|#   #|# # #|# # #|# # #| # # ',
  X: '#   #|#   #| # # |  #  | # # |#   #|#   #',
  Y: '#   #|#   #|#   #| # # |  #  |  #  |  #  ',
  Z: '#####|    #|   # |  #  | #   |#    |#####',
  '.': '     |     |     |     |     | ##  | ##  ',
  ',': '     |     |     |     | ##  |  #  | #   ',
  ':': '     | ##  | ##  |     | ##  | ##  |     ',
  ';': '     | ##  | ##  |     | ##  |  #  | #   ',
  '-': '     |     |     |#####|     |     |     ',
  '+': '     |  #  |  #  |#####|  #  |  #  |     ',
  '=': '     |     |#####|     |#####|     |     ',
  '/': '     |    #|   # |  #  | #   |#    |     ',
  '(': '   # |  #  | #   | #   | #   |  #  |   # ',
  ')': ' #   |  #  |   # |   # |   # |  #  | #   ',
  '[': ' ### | #   | #   | #   | #   | #   | ### ',
  ']': ' ### |   # |   # |   # |   # |   # | ### ',
  '%': '##   |##  #|   # |  #  | #   |#  ##|   ##',
  '<': '   # |  #  | #   |#    | #   |  #  |   # ',
  '>': ' #   |  #  |   # |    #|   # |  #  | #   ',
  _: '     |     |     |     |     |     |#####',
  "'": '  #  |  #  | #   |     |     |     |     ',
  '!': '  #  |  #  |  #  |  #  |  #  |     |  #  ',
  '?': ' ### |#   #|    #|   # |  #  |     |  #  ',
  '*': '     |  #  |# # #| ### |# # #|  #  |     ',
  '#': ' # # | # # |#####| # # |#####| # # | # # ',
  '×': '     |#   #| # # |  #  | # # |#   #|     ',
  '≤': '   # |  #  | #   |  #  |   # |     |#####',
  '→': '     |  #  |   # |#####|   # |  #  |     ',
};

const BOX = '#####|#   #|#   #|#   #|#   #|#   #|#####';

/** Glyph bitmaps as rows of booleans, parsed once. */
const GLYPHS = new Map<string, boolean[][]>();
function glyph(ch: string): boolean[][] {
  let g = GLYPHS.get(ch);
  if (!g) {
    g = (G[ch] ?? BOX).split('|').map((row) => [...row].map((c) => c === '#'));
    if (g.length !== GLYPH_H && g.length !== GLYPH_ROWS) throw new Error(`glyph ${ch}: ${g.length} rows`);
    GLYPHS.set(ch, g);
  }
  return g;
}

// ---------------------------------------------------------------------------------------------
// Canvas

export type Align = 'left' | 'center' | 'right';
export type MarkerShape = 'circle' | 'square' | 'triangle' | 'diamond';

export class Canvas {
  readonly pixels: Uint8Array;

  constructor(
    readonly width: number,
    readonly height: number,
    background: Rgb = WHITE,
  ) {
    if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1)
      throw new Error(`canvas size ${width}x${height} is not a positive integer size`);
    this.pixels = new Uint8Array(width * height * 3);
    this.fillRect(0, 0, width, height, background);
  }

  set(x: number, y: number, c: Rgb): void {
    x = Math.round(x);
    y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    const i = (y * this.width + x) * 3;
    this.pixels[i] = c[0];
    this.pixels[i + 1] = c[1];
    this.pixels[i + 2] = c[2];
  }

  fillRect(x: number, y: number, w: number, h: number, c: Rgb): void {
    const x0 = Math.max(0, Math.round(x));
    const y0 = Math.max(0, Math.round(y));
    const x1 = Math.min(this.width, Math.round(x + w));
    const y1 = Math.min(this.height, Math.round(y + h));
    for (let yy = y0; yy < y1; yy++) for (let xx = x0; xx < x1; xx++) this.set(xx, yy, c);
  }

  strokeRect(x: number, y: number, w: number, h: number, c: Rgb): void {
    this.line(x, y, x + w, y, c);
    this.line(x + w, y, x + w, y + h, c);
    this.line(x + w, y + h, x, y + h, c);
    this.line(x, y + h, x, y, c);
  }

  /** A line `thickness` px wide; `dash` = [on, off] in px draws it dashed. */
  line(x0: number, y0: number, x1: number, y1: number, c: Rgb, thickness = 1, dash?: [number, number]): void {
    const steps = Math.max(1, Math.ceil(Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0))));
    const r = (thickness - 1) / 2;
    for (let s = 0; s <= steps; s++) {
      if (dash && s % (dash[0] + dash[1]) >= dash[0]) continue;
      const x = x0 + ((x1 - x0) * s) / steps;
      const y = y0 + ((y1 - y0) * s) / steps;
      if (r <= 0) this.set(x, y, c);
      else this.fillRect(x - r, y - r, thickness, thickness, c);
    }
  }

  marker(x: number, y: number, shape: MarkerShape, size: number, c: Rgb): void {
    const r = size / 2;
    for (let dy = -Math.ceil(r); dy <= Math.ceil(r); dy++)
      for (let dx = -Math.ceil(r); dx <= Math.ceil(r); dx++) {
        let inside: boolean;
        switch (shape) {
          case 'circle':
            inside = dx * dx + dy * dy <= r * r;
            break;
          case 'square':
            inside = Math.abs(dx) <= r * 0.85 && Math.abs(dy) <= r * 0.85;
            break;
          case 'diamond':
            inside = Math.abs(dx) + Math.abs(dy) <= r;
            break;
          case 'triangle':
            // Point up: the half-width grows from 0 at the top to r at the bottom.
            inside = dy >= -r && dy <= r && Math.abs(dx) <= (dy + r) / 2;
            break;
        }
        if (inside) this.set(x + dx, y + dy, c);
      }
  }

  /** Width in px of `text` at `scale`. */
  static textWidth(text: string, scale = 1): number {
    const n = [...text].length;
    return n === 0 ? 0 : (n * ADVANCE - (ADVANCE - GLYPH_W)) * scale;
  }

  static textHeight(scale = 1): number {
    return GLYPH_H * scale;
  }

  static lineHeight(scale = 1): number {
    return LINE * scale;
  }

  /** Draws `text` with its top at `y`; `x` is its left edge, centre or right edge by `align`. */
  text(text: string, x: number, y: number, c: Rgb = BLACK, scale = 1, align: Align = 'left'): void {
    const w = Canvas.textWidth(text, scale);
    let cx = Math.round(align === 'left' ? x : align === 'center' ? x - w / 2 : x - w);
    const top = Math.round(y);
    for (const ch of text) {
      const g = glyph(ch);
      for (let gy = 0; gy < g.length; gy++)
        for (let gx = 0; gx < GLYPH_W; gx++)
          if (g[gy]![gx]) this.fillRect(cx + gx * scale, top + gy * scale, scale, scale, c);
      cx += ADVANCE * scale;
    }
  }

  /** Draws `text` rotated a quarter turn anticlockwise (reading bottom to top), centred on (x, y). */
  textUp(text: string, x: number, y: number, c: Rgb = BLACK, scale = 1): void {
    const w = Canvas.textWidth(text, scale);
    const left = Math.round(x - Canvas.textHeight(scale) / 2);
    let base = Math.round(y + w / 2);
    for (const ch of text) {
      const g = glyph(ch);
      for (let gy = 0; gy < g.length; gy++)
        for (let gx = 0; gx < GLYPH_W; gx++)
          if (g[gy]![gx]) this.fillRect(left + gy * scale, base - (gx + 1) * scale, scale, scale, c);
      base -= ADVANCE * scale;
    }
  }

  toPng(): Buffer {
    return encodePng(this.width, this.height, this.pixels);
  }
}

// ---------------------------------------------------------------------------------------------
// PNG

const CRC_TABLE = ((): Uint32Array => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (ISO 3309, as PNG uses it). */
export function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** An 8-bit RGB PNG from `rgb` (width × height × 3 bytes, rows top to bottom). */
export function encodePng(width: number, height: number, rgb: Uint8Array): Buffer {
  if (rgb.length !== width * height * 3)
    throw new Error(`encodePng: ${rgb.length} bytes is not ${width}x${height} RGB`);
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: truecolour
  ihdr[10] = 0; // compression: deflate
  ihdr[11] = 0; // filter method 0
  ihdr[12] = 0; // no interlace
  // Each scanline starts with its filter type; 0 (None) keeps the encoder trivial.
  const stride = width * 3;
  const raw = Buffer.alloc((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (stride + 1)] = 0;
    raw.set(rgb.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  }
  return Buffer.concat([
    PNG_SIGNATURE,
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

// ---------------------------------------------------------------------------------------------
// Line chart

export interface Series {
  label: string;
  color: Rgb;
  points: { x: number; y: number }[];
  /** Line width in px (default 2). */
  width?: number;
  dash?: [number, number];
  marker?: MarkerShape;
}

export interface HLine {
  y: number;
  label: string;
  color: Rgb;
}

export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  /** Log10 x axis (ticks at `xTicks`). */
  xLog: boolean;
  /** Log10 y axis, ticks at 1, 2, 5 × 10^k; points with y <= 0 are left out. */
  yLog?: boolean;
  /** Where x ticks go; default: the distinct x values of the series. */
  xTicks?: number[];
  series: Series[];
  hlines?: HLine[];
}

export interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** 1, 2 or 5 × 10^k: the smallest such step giving at most `count` intervals up to `max`. */
export function niceStep(max: number, count = 5): number {
  if (!(max > 0)) return 1;
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

function formatTick(v: number): string {
  if (v === 0) return '0';
  if (Math.abs(v) >= 100_000 && v % 1000 === 0) return `${v / 1000}k`;
  return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(3)));
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

/** Draws a chart into `r` of `canvas`: frame, grid, ticks, labels, series, horizontal reference lines. */
export function drawChart(canvas: Canvas, r: Rect, spec: ChartSpec, scale = 2): void {
  const th = Canvas.textHeight(scale);
  const pad = { left: 16 + 6 * ADVANCE * scale, right: 12, top: th * 2 + 10, bottom: th * 2 + 26 };
  const plot: Rect = {
    x: r.x + pad.left,
    y: r.y + pad.top,
    w: r.w - pad.left - pad.right,
    h: r.h - pad.top - pad.bottom,
  };
  canvas.text(spec.title, r.x + r.w / 2, r.y, BLACK, scale, 'center');

  const xs = spec.series.flatMap((s) => s.points.map((p) => p.x));
  const xTicks = spec.xTicks ?? [...new Set(xs)].sort((a, b) => a - b);
  const xAll = [...xs, ...xTicks].filter((x) => Number.isFinite(x) && (!spec.xLog || x > 0));
  let xMin = xAll.length ? Math.min(...xAll) : 1;
  let xMax = xAll.length ? Math.max(...xAll) : 10;
  const tx = (x: number): number => (spec.xLog ? Math.log10(x) : x);
  let lo = tx(xMin);
  let hi = tx(xMax);
  if (hi - lo < 1e-9) {
    lo -= spec.xLog ? 0.5 : 1;
    hi += spec.xLog ? 0.5 : 1;
  }
  const margin = (hi - lo) * 0.08;
  lo -= margin;
  hi += margin;
  xMin = lo;
  xMax = hi;
  const px = (x: number): number => plot.x + ((tx(x) - xMin) / (xMax - xMin)) * plot.w;

  const ys = [
    ...spec.series.flatMap((s) => s.points.map((p) => p.y)),
    ...(spec.hlines ?? []).map((h) => h.y),
  ].filter((y) => Number.isFinite(y) && (!spec.yLog || y > 0));
  let yTicks: number[];
  let py: (y: number) => number;
  if (spec.yLog) {
    // Bounds at 1, 2 or 5 × 10^k just outside the data.
    const steps = logTicks(1e-6, 1e9);
    const lowest = ys.length ? Math.min(...ys) : 1;
    const highest = ys.length ? Math.max(...ys) : 10;
    const loV = [...steps].reverse().find((v) => v <= lowest) ?? lowest;
    let hiV = steps.find((v) => v >= highest) ?? highest;
    if (hiV <= loV) hiV = loV * 10;
    const [a, b] = [Math.log10(loV), Math.log10(hiV)];
    yTicks = logTicks(loV, hiV);
    py = (y: number): number => plot.y + plot.h - ((Math.log10(y) - a) / (b - a)) * plot.h;
  } else {
    const yTop = Math.max(1, ...ys) * 1.08;
    const step = niceStep(yTop);
    const yMax = Math.ceil(yTop / step) * step;
    yTicks = [];
    for (let v = 0; v <= yMax + step / 2; v += step) yTicks.push(v);
    py = (y: number): number => plot.y + plot.h - (y / yMax) * plot.h;
  }

  // Grid and ticks.
  for (const v of yTicks) {
    const y = py(v);
    canvas.line(plot.x, y, plot.x + plot.w, y, LIGHT_GREY);
    canvas.line(plot.x - 5, y, plot.x, y, BLACK);
    canvas.text(formatTick(v), plot.x - 8, y - th / 2, BLACK, scale, 'right');
  }
  for (const v of xTicks) {
    const x = px(v);
    canvas.line(x, plot.y, x, plot.y + plot.h, LIGHT_GREY);
    canvas.line(x, plot.y + plot.h, x, plot.y + plot.h + 5, BLACK);
    canvas.text(formatTick(v), x, plot.y + plot.h + 9, BLACK, scale, 'center');
  }
  canvas.strokeRect(plot.x, plot.y, plot.w, plot.h, BLACK);
  canvas.text(spec.xLabel, plot.x + plot.w / 2, plot.y + plot.h + 15 + th, BLACK, scale, 'center');
  canvas.textUp(spec.yLabel, r.x + th / 2 + 2, plot.y + plot.h / 2, BLACK, scale);

  for (const h of spec.hlines ?? []) {
    const y = py(h.y);
    canvas.line(plot.x, y, plot.x + plot.w, y, h.color, 2, [8, 6]);
    canvas.text(h.label, plot.x + plot.w - 6, y - th - 4, h.color, scale, 'right');
  }
  for (const s of spec.series) {
    const pts = s.points.filter(
      (p) =>
        Number.isFinite(p.x) && Number.isFinite(p.y) && (!spec.xLog || p.x > 0) && (!spec.yLog || p.y > 0),
    );
    for (let i = 1; i < pts.length; i++)
      canvas.line(
        px(pts[i - 1]!.x),
        py(pts[i - 1]!.y),
        px(pts[i]!.x),
        py(pts[i]!.y),
        s.color,
        s.width ?? 2,
        s.dash,
      );
    if (s.marker) for (const p of pts) canvas.marker(px(p.x), py(p.y), s.marker, 4 * scale + 1, s.color);
  }
}

/** A legend: one row per series, a line sample and its label, laid out in `columns`. */
export function drawLegend(canvas: Canvas, r: Rect, series: Series[], columns: number, scale = 2): void {
  const rowH = Canvas.lineHeight(scale) + 6;
  const colW = r.w / columns;
  series.forEach((s, i) => {
    const x = r.x + (i % columns) * colW;
    const y = r.y + Math.floor(i / columns) * rowH;
    const mid = y + Canvas.textHeight(scale) / 2;
    canvas.line(x, mid, x + 36, mid, s.color, s.width ?? 2, s.dash);
    if (s.marker) canvas.marker(x + 18, mid, s.marker, 4 * scale + 1, s.color);
    canvas.text(s.label, x + 44, y, BLACK, scale);
  });
}
