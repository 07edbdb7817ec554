import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { listNamespaces, NETNS_PREFIX, removeNamespacesSync } from './netns.js';
import { hasCode, noteUnexpected } from '../util/errors.js';

/**
 * A running lab seen from other shells: a state file (`RUN_DIR/NAME.json`) naming its
 * namespaces, processes and control socket, so `arrow lab fail|heal` can reach it and
 * `arrow lab down` can clean up after a crash.
 */

export type FailKind = 'kill' | 'hang' | 'link-down';
export const FAIL_KINDS: readonly FailKind[] = ['kill', 'hang', 'link-down'];

export interface LabState {
  name: string;
  /** The process running the lab (`arrow lab up` or a test). */
  pid: number;
  dir: string;
  netns: boolean;
  namespaces: string[];
  /** Component name → PID (routers, portals, servers, atlas). */
  processes: Record<string, number>;
  /** Unix socket of `arrow lab up`'s control server, when it has one. */
  control?: string;
  /** Component name → its admin API (`arrow status --lab`), and the namespace it is reachable in. */
  admin?: Record<string, { url: string; ns?: string }>;
}

/** Where state files live: $ARROW_LAB_RUN_DIR, else /run/arrow-lab as root, else a per-user temp dir. */
export function runDir(): string {
  const env = process.env.ARROW_LAB_RUN_DIR;
  if (env) return env;
  return process.getuid?.() === 0
    ? '/run/arrow-lab'
    : join(tmpdir(), `arrow-lab-${process.getuid?.() ?? 'user'}`);
}

export function statePath(name: string): string {
  return join(runDir(), `${name}.json`);
}

export function writeState(state: LabState): void {
  mkdirSync(runDir(), { recursive: true });
  writeFileSync(statePath(state.name), JSON.stringify(state, null, 2));
}

export function readState(name: string): LabState | undefined {
  let text: string;
  try {
    text = readFileSync(statePath(name), 'utf8');
  } catch (err) {
    if (!hasCode(err, 'ENOENT')) noteUnexpected(`reading lab state ${statePath(name)}`, err); // ENOENT: no such lab
    return undefined;
  }
  try {
    return JSON.parse(text) as LabState;
  } catch (err) {
    // A torn or hand-edited state file: treated as no state, as before, but said.
    noteUnexpected(`reading lab state ${statePath(name)}`, err);
    return undefined;
  }
}

export function removeState(name: string): void {
  rmSync(statePath(name), { force: true });
}

/** Names of the labs with a state file. */
export function listStates(): string[] {
  if (!existsSync(runDir())) return [];
  return readdirSync(runDir())
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -'.json'.length));
}

/** Whether process `pid` exists (owned by anyone). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    if (hasCode(err, 'ESRCH')) return false;
    if (hasCode(err, 'EPERM')) return true; // exists, owned by someone else
    noteUnexpected(`checking pid ${pid}`, err);
    return false;
  }
}

/** True if `pid` still runs an `arrow` command (not a PID the kernel reused). */
function isArrow(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('main.js');
  } catch (err) {
    if (!hasCode(err, 'ENOENT', 'ESRCH')) noteUnexpected(`reading /proc/${pid}/cmdline`, err); // ENOENT: exited
    return false;
  }
}

/** A request to a running lab's control socket, and its answer. */
export type ControlRequest = { op: 'fail'; node: string; kind: FailKind } | { op: 'heal'; node: string };
export type ControlReply = { ok: true; message: string } | { ok: false; error: string };

/** What a lab does for its control server. */
export interface ControlTarget {
  /** Returns the router failed (a role such as `egress:beta` names one). */
  fail(node: string, kind: FailKind): Promise<string>;
  heal(node: string): Promise<void>;
}

/** Serves one JSON request per connection (a line each way) on a Unix socket. */
export async function serveControl(target: ControlTarget, socketPath: string): Promise<Server> {
  rmSync(socketPath, { force: true });
  const server = createServer((conn) => {
    let buf = '';
    conn.setEncoding('utf8');
    conn.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) {
        if (buf.length > 4096) conn.destroy();
        return;
      }
      void answer(target, buf.slice(0, nl)).then((reply) => conn.end(`${JSON.stringify(reply)}\n`));
    });
    conn.on('error', () => {});
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  return server;
}

async function answer(target: ControlTarget, line: string): Promise<ControlReply> {
  try {
    const req = JSON.parse(line) as Partial<ControlRequest>;
    if (typeof req.node !== 'string') return { ok: false, error: 'no node' };
    if (req.op === 'fail') {
      if (!FAIL_KINDS.includes(req.kind as FailKind))
        return { ok: false, error: `--kind must be one of ${FAIL_KINDS.join(', ')}` };
      const router = await target.fail(req.node, req.kind as FailKind);
      const role = router === req.node ? '' : ` (${req.node})`;
      return { ok: true, message: `${router}${role}: ${req.kind as string}` };
    }
    if (req.op === 'heal') {
      await target.heal(req.node);
      return { ok: true, message: `${req.node}: healed` };
    }
    return { ok: false, error: `unknown op ${String(req.op)}` };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
}

/** Sends one request to the lab named `name` (or the only running one). Bounded by `timeoutMs`. */
export async function sendControl(
  name: string | undefined,
  req: ControlRequest,
  timeoutMs = 30_000,
): Promise<ControlReply> {
  const labName = name ?? onlyLab();
  const state = readState(labName);
  if (!state?.control)
    throw new Error(
      `no running \`arrow lab up\` named ${labName} (no control socket in ${statePath(labName)})`,
    );
  if (!alive(state.pid))
    throw new Error(
      `lab ${labName} is not running (pid ${state.pid}); \`arrow lab down ${labName}\` cleans up`,
    );
  return new Promise<ControlReply>((resolve, reject) => {
    const conn = createConnection(state.control!);
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new Error(`lab ${labName} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    let buf = '';
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(`${JSON.stringify(req)}\n`));
    conn.on('data', (d: string) => (buf += d));
    conn.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(buf) as ControlReply);
      } catch (err) {
        if (!(err instanceof SyntaxError)) throw err;
        reject(new Error(`lab ${labName} answered nonsense (${err.message}): ${buf.slice(0, 200)}`));
      }
    });
    conn.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`lab ${labName}: ${err.message}`));
    });
  });
}

function onlyLab(): string {
  const names = listStates();
  if (names.length === 1) return names[0]!;
  throw new Error(
    names.length
      ? `several labs are up (${names.join(', ')}): name one with --lab`
      : `no lab is up (${runDir()})`,
  );
}

export interface DownReport {
  lab: string;
  stoppedPid: number | undefined;
  killed: number[];
  namespaces: string[];
}

/**
 * Cleans up a lab that crashed (or stops one that runs): stops its lab process, kills its
 * components, deletes every `arrow-NAME-*` namespace and the state file. Without a name,
 * every lab with a state file.
 */
export async function labDown(name?: string): Promise<DownReport[]> {
  const names = name ? [name] : listStates();
  const reports: DownReport[] = [];
  for (const lab of names) {
    const state = readState(lab);
    const report: DownReport = { lab, stoppedPid: undefined, killed: [], namespaces: [] };
    if (state && state.pid !== process.pid && alive(state.pid) && isArrow(state.pid)) {
      // A live lab stops itself cleanly on SIGTERM; wait (bounded) for it, then force.
      process.kill(state.pid, 'SIGTERM');
      for (let i = 0; i < 100 && alive(state.pid); i++) await sleep(100);
      if (alive(state.pid)) process.kill(state.pid, 'SIGKILL');
      report.stoppedPid = state.pid;
    }
    for (const pid of Object.values(state?.processes ?? {}))
      if (alive(pid) && isArrow(pid)) {
        process.kill(pid, 'SIGKILL');
        report.killed.push(pid);
      }
    const namespaces = [
      ...new Set([...(state?.namespaces ?? []), ...listNamespacesSafe(`${NETNS_PREFIX}${lab}-`)]),
    ].filter((ns) => ns.startsWith(`${NETNS_PREFIX}${lab}-`));
    // Nodes first, the core (with the bridge) last.
    namespaces.sort((a, b) => Number(a.endsWith('-core')) - Number(b.endsWith('-core')));
    removeNamespacesSync(namespaces);
    report.namespaces = namespaces;
    if (state?.control) rmSync(state.control, { force: true });
    removeState(lab);
    reports.push(report);
  }
  return reports;
}

function listNamespacesSafe(prefix: string): string[] {
  try {
    return listNamespaces(prefix);
  } catch (err) {
    if (hasCode(err, 'ENOENT')) return []; // no `ip` (not a netns host): nothing to remove
    noteUnexpected('listing network namespaces', err);
    return [];
  }
}
