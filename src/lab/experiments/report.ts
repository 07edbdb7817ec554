import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { RenderedChart } from '../../plot/chart.js';

/**
 * Writes `DIR/NAME.md`, the plot as `DIR/NAME.svg` and `DIR/NAME.png`, and `DIR/NAME.json`: what
 * `--out` promises. Returns the files' paths in that order.
 */
export function writeReport(
  dir: string,
  name: string,
  markdown: string,
  chart: RenderedChart,
  json: unknown,
): string[] {
  mkdirSync(dir, { recursive: true });
  const files = ['md', 'svg', 'png', 'json'].map((ext) => join(dir, `${name}.${ext}`));
  writeFileSync(files[0]!, markdown);
  writeFileSync(files[1]!, chart.svg);
  writeFileSync(files[2]!, chart.png);
  writeFileSync(files[3]!, JSON.stringify(json, null, 2) + '\n');
  return files;
}

/** The machine line every report carries: results on 2 shared cores are not results on a router. */
export function machineLine(): string {
  return `Measured on ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${availableParallelism()} CPUs.`;
}
