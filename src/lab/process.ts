import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, readFileSync, closeSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
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
  opts: {
    netns?: string;
    /** Called with the process as soon as it is spawned, before it is ready: an owner that must stop it. */
    onSpawn?: (proc: ChildProcess) => void;
  } = {},
): Promise<Managed> {
  const fd = openSync(logPath, 'a');
  // A component that never gets ready is asked for a Node diagnostic report (its stacks and
  // handles) before it is killed, next to its log: a hang is then a bug with a stack, not a mystery.
  const reportDir = dirname(logPath);
  const node = [
    process.execPath,
    '--report-on-signal',
    `--report-signal=${REPORT_SIGNAL}`,
    `--report-directory=${reportDir}`,
    CLI_PATH,
  ];
  // In a network namespace: `ip netns exec` execs node in place (same PID) and keeps the IPC fd.
  const [cmd, ...argv] = opts.netns
    ? ['ip', 'netns', 'exec', opts.netns, ...node, ...args]
    : [...node, ...args];
  const proc = spawn(cmd!, argv, {
    stdio: ['ignore', fd, fd, 'ipc'],
    env: { ...process.env },
  });
  closeSync(fd);
  opts.onSpawn?.(proc);
  let onExit = (_code: number | null, _signal: NodeJS.Signals | null): void => undefined;
  const ready = await new Promise<ReadyMessage>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill(REPORT_SIGNAL);
      // The report is written synchronously on the signal; give it a moment, then kill.
      setTimeout(() => {
        proc.kill('SIGKILL');
        reject(
          new Error(
            `arrow ${args.join(' ')} not ready within ${timeoutMs} ms; log ${logPath}:\n${tail(logPath)}\n` +
              `a diagnostic report (stacks, handles) of pid ${proc.pid} is in ${reportDir}: ${reports(reportDir, proc.pid)}`,
          ),
        );
      }, 1000);
    }, timeoutMs);
    proc.on('message', (m: ReadyMessage) => {
      if (m?.event === 'ready') {
        clearTimeout(timer);
        resolve(m);
      }
    });
    onExit = (code, signal): void => {
      clearTimeout(timer);
      reject(
        new Error(
          `arrow ${args.join(' ')} exited (${signal ?? code}) before ready; log ${logPath}:\n${tail(logPath)}`,
        ),
      );
    };
    proc.once('exit', onExit);
  }).finally(() => proc.off('exit', onExit));
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

/**
 * Whether a component still runs, and the end of its log: what a test's failure message needs when
 * a component stopped doing its part (a lab's folder is removed after the test).
 */
export function componentState(m: Managed, lines = 15): string {
  const { proc } = m;
  const state =
    proc.exitCode !== null || proc.signalCode !== null
      ? `exited (${proc.signalCode ?? proc.exitCode})`
      : 'running';
  return `pid ${proc.pid} ${state}; log ${m.logPath}:\n${tail(m.logPath, lines)}`;
}

/** The signal that makes a lab component write its Node diagnostic report. */
const REPORT_SIGNAL = 'SIGUSR2';

/**
 * The report's file name and the gist of it: the main thread's and each worker's JavaScript stack,
 * and the libuv handles by type. The gist goes into the error, as a test's lab folder is removed.
 */
function reports(dir: string, pid: number | undefined): string {
  try {
    const mine = readdirSync(dir).filter((f) => f.startsWith('report.') && f.includes(`.${pid}.`));
    if (mine.length === 0) return '(none written: its event loop was blocked, or it had not started)';
    return mine.map((f) => `${f}\n${reportGist(join(dir, f))}`).join('\n');
  } catch (err) {
    return `(unreadable: ${(err as Error).message})`;
  }
}

interface NodeReport {
  javascriptStack?: { message?: string; stack?: string[] };
  libuv?: { type?: string; is_active?: boolean }[];
  workers?: NodeReport[];
}

function reportGist(path: string): string {
  const r = JSON.parse(readFileSync(path, 'utf8')) as NodeReport;
  const stack = (x: NodeReport, who: string): string =>
    `${who}: ${x.javascriptStack?.message ?? ''}\n    ${(x.javascriptStack?.stack ?? []).slice(0, 12).join('\n    ')}`;
  const handles = new Map<string, number>();
  for (const h of r.libuv ?? [])
    if (h.is_active && h.type) handles.set(h.type, (handles.get(h.type) ?? 0) + 1);
  return [
    stack(r, 'main thread'),
    ...(r.workers ?? []).map((w, i) => stack(w, `worker ${i + 1}`)),
    `active handles: ${[...handles].map(([t, n]) => `${t} ${n}`).join(', ') || 'none'}`,
  ].join('\n');
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
