import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
/** The compiled CLI, as a user runs it: this file is compiled to dist/test/helpers/, the CLI to dist/src/cli/. */
const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/**
 * Throws unless `DIR/NAME.svg` and `DIR/NAME.png` are a drawn plot: an SVG with text in it and a
 * PNG. A benchmark whose plot failed still printed its report, so its exit code alone cannot say.
 */
export function assertPlot(dir: string, name: string): void {
  const svg = readFileSync(join(dir, `${name}.svg`), 'utf8');
  if (!svg.includes('<svg') || !svg.includes('<text'))
    throw new Error(`${name}.svg is not a drawn plot: ${svg.slice(0, 200)}`);
  const png = readFileSync(join(dir, `${name}.png`));
  if (png.length < 1000 || !png.subarray(0, 8).equals(PNG_SIGNATURE))
    throw new Error(`${name}.png is not a PNG (${png.length} bytes)`);
}

/** A temp directory for a benchmark's `--out`, checked for its plot and removed by `done`. */
export function plotDir(name: string): { dir: string; done(): void } {
  const dir = mkdtempSync(join(tmpdir(), `arrow-bench-${name}-`));
  return {
    dir,
    done() {
      try {
        assertPlot(dir, name);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/**
 * Runs `arrow <args>` (a benchmark with --json) and returns its stdout. A benchmark exits 1 with its
 * report when the run was INVALID (a busy machine); that report is returned too, for the caller to
 * check its figures and reasons. Any other failure throws with the command's stderr. With `plot`,
 * the benchmark writes into a temp `--out`, and its NAME.svg and NAME.png must be there.
 */
export async function benchReport(args: string[], timeoutMs: number, plot?: string): Promise<string> {
  const out = plot === undefined ? undefined : plotDir(plot);
  const stdout = await run(process.execPath, [CLI, ...args, ...(out ? ['--out', out.dir] : [])], {
    timeout: timeoutMs,
    maxBuffer: 4 * 1024 * 1024,
  }).then(
    (r) => r.stdout,
    (err: Error & { code?: unknown; stdout?: string; stderr?: string }) => {
      if (err.code !== 1 || !err.stdout) throw new Error(`${err.message}\n${err.stderr ?? ''}`);
      return err.stdout;
    },
  );
  out?.done();
  return stdout;
}
