import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
/** The compiled CLI, as a user runs it: this file is compiled to dist/test/helpers/, the CLI to dist/src/cli/. */
const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

/**
 * Runs `arrow <args>` (a benchmark with --json) and returns its stdout. A benchmark exits 1 with its
 * report when the run was INVALID (a busy machine); that report is returned too, for the caller to
 * check its figures and reasons. Any other failure throws with the command's stderr.
 */
export async function benchReport(args: string[], timeoutMs: number): Promise<string> {
  return run(process.execPath, [CLI, ...args], { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 }).then(
    (r) => r.stdout,
    (err: Error & { code?: unknown; stdout?: string; stderr?: string }) => {
      if (err.code !== 1 || !err.stdout) throw new Error(`${err.message}\n${err.stderr ?? ''}`);
      return err.stdout;
    },
  );
}
