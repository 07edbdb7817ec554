import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI_PATH } from '../../src/lab/process.js';

/**
 * Starts `arrow ARGS` (this build's CLI) and resolves once its stdout or stderr matches `ready`;
 * fails the test with what it printed if it exits or takes longer than `timeoutMs`.
 */
export async function startCli(
  args: string[],
  ready: RegExp,
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<{ proc: ChildProcess; output: () => string }> {
  const proc = spawn(process.execPath, [CLI_PATH, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(opts.env ? { env: opts.env } : {}),
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  for (let waited = 0; !ready.test(out); waited += 50) {
    if (proc.exitCode !== null || waited > (opts.timeoutMs ?? 60_000)) {
      proc.kill('SIGKILL');
      assert.fail(`arrow ${args.join(' ')} did not come up:\n${out}`);
    }
    await sleep(50);
  }
  return { proc, output: () => out };
}
