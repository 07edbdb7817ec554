import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { BLACK, Canvas, drawChart, drawLegend, GREY, type ChartSpec, type Series } from '../../plot/png.js';

const SCALE = 2;

/** The experiments' plots: a title, a subtitle, one or more panels side by side, one legend below. */
export function chartPng(o: { title: string; subtitle: string; panels: ChartSpec[] }): Buffer {
  const width = o.panels.length > 1 ? 1400 : 1000;
  const height = 700;
  const canvas = new Canvas(width, height);
  canvas.text(o.title, width / 2, 14, BLACK, SCALE, 'center');
  canvas.text(o.subtitle, width / 2, 40, GREY, SCALE, 'center');
  const w = (width - 20) / o.panels.length;
  o.panels.forEach((spec, i) => drawChart(canvas, { x: 10 + i * w, y: 66, w: w - 10, h: 480 }, spec, SCALE));
  const series: Series[] = o.panels.flatMap((p) => p.series);
  drawLegend(canvas, { x: 60, y: 570, w: width - 80, h: 120 }, series, o.panels.length > 1 ? 3 : 2, SCALE);
  return canvas.toPng();
}

/** Writes `DIR/NAME.md` and `DIR/NAME.png` (and `DIR/NAME.json`): what `--out` promises. */
export function writeReport(
  dir: string,
  name: string,
  markdown: string,
  png: Buffer,
  json: unknown,
): string[] {
  mkdirSync(dir, { recursive: true });
  const files = [join(dir, `${name}.md`), join(dir, `${name}.png`), join(dir, `${name}.json`)];
  writeFileSync(files[0]!, markdown);
  writeFileSync(files[1]!, png);
  writeFileSync(files[2]!, JSON.stringify(json, null, 2) + '\n');
  return files;
}

/** The machine line every report carries: results on 2 shared cores are not results on a router. */
export function machineLine(): string {
  return `Measured on ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${availableParallelism()} CPUs.`;
}
