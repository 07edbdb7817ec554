import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, readFileSync, closeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ReadyMessage } from '../util/ready.js';
import { hasCode } from '../util/errors.js';

export type { ReadyMessage };

/** The compiled CLI entry point, so every component runs as its own OS process. */
export const CLI_PATH = fileURLToPath(new URL('../cli/main.js', import.meta.url));

export interface Managed {
  proc: ChildProcess;
  ready: ReadyMessage;
  logPath: string;
}

/**
 * Starts `arrow <args>` as a child process with an IPC channel, logs to a file, and
 * waits for its ready message. The child exits on its own if the parent dies (IPC
 * disconnect), so a crashed lab leaves no orphans.
 */
export async function startComponent(
  args: string[],
  logPath: string,
  timeoutMs = 20_000,
  opts: { netns?: string } = {},
): Promise<Managed> {
  const fd = openSync(logPath, 'a');
  // In a network namespace: `ip netns exec` execs node in place (same PID) and keeps the IPC fd.
  const [cmd, ...argv] = opts.netns
    ? ['ip', 'netns', 'exec', opts.netns, process.execPath, CLI_PATH, ...args]
    : [process.execPath, CLI_PATH, ...args];
  const proc = spawn(cmd!, argv, {
    stdio: ['ignore', fd, fd, 'ipc'],
    env: { ...process.env },
  });
  closeSync(fd);
  const ready = await new Promise<ReadyMessage>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(
        new Error(
          `arrow ${args.join(' ')} not ready within ${timeoutMs} ms; log ${logPath}:\n${tail(logPath)}`,
        ),
      );
    }, timeoutMs);
    proc.on('message', (m: ReadyMessage) => {
      if (m?.event === 'ready') {
        clearTimeout(timer);
        resolve(m);
      }
    });
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(
        new Error(
          `arrow ${args.join(' ')} exited (${signal ?? code}) before ready; log ${logPath}:\n${tail(logPath)}`,
        ),
      );
    });
  });
  proc.removeAllListeners('exit');
  return { proc, ready, logPath };
}

/** Stops a child: SIGTERM, then SIGKILL if it lingers. */
export async function stopComponent(proc: ChildProcess, graceMs = 3000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

function tail(path: string, lines = 15): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch (err) {
    // Only for an error message: say why there is no log rather than fail the report.
    if (hasCode(err, 'ENOENT')) return '(no log)';
    return `(log unreadable: ${(err as Error).message})`;
  }
}
