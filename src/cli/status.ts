/**
 * `arrow status`: the state of a running lab or host, from its daemons' admin APIs (`/status`,
 * docs/operations.md, "Monitoring"): each router's data path, circuits, neighbours, repairs and
 * store; each portal and the atlas. A component that does not answer is shown as such, and the
 * command then exits 1.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Value } from '@sinclair/typebox/value';
import { AdminStatusSchema, type AdminStatus } from '../api/admin.js';
import { readState, statePath } from '../lab/control.js';
import { ConfigError } from '../util/config.js';

const run = promisify(execFile);

export interface StatusFlags {
  lab?: string;
  admin?: string[];
  json?: boolean;
}

interface Target {
  name: string;
  url: string;
  /** The network namespace its admin API is reachable in (a netns lab). */
  ns?: string;
}

export interface ComponentStatus {
  name: string;
  url: string;
  status?: AdminStatus;
  error?: string;
}

const TIMEOUT_MS = 3000;

/** One component's `/status`, validated against the schema its server answers with. */
async function fetchStatus(t: Target): Promise<ComponentStatus> {
  const at = `${t.url}/status`;
  try {
    let body: string;
    if (t.ns) {
      // Its namespace's loopback is not this one's: ask from inside.
      const r = await run('ip', ['netns', 'exec', t.ns, 'curl', '-sS', '--fail', '--max-time', '3', at]);
      body = r.stdout;
    } else {
      const r = await fetch(at, { signal: AbortSignal.timeout(TIMEOUT_MS) });
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      body = await r.text();
    }
    const status: unknown = JSON.parse(body);
    if (!Value.Check(AdminStatusSchema, status)) throw new Error('not an Arrow admin /status answer');
    return { name: t.name, url: t.url, status };
  } catch (err) {
    const e = err as Error & { stderr?: string };
    return { name: t.name, url: t.url, error: (e.stderr?.trim() || e.message).split('\n')[0]! };
  }
}

function targets(o: StatusFlags): Target[] {
  if (o.lab !== undefined) {
    const state = readState(o.lab);
    if (!state) throw new ConfigError(`no running lab named ${o.lab} (no state file ${statePath(o.lab)})`);
    const admin = state.admin ?? {};
    if (Object.keys(admin).length === 0)
      throw new ConfigError(`lab ${o.lab} recorded no admin APIs (started by an older Arrow?)`);
    return Object.entries(admin).map(([name, a]) => ({ name, url: a.url, ...(a.ns ? { ns: a.ns } : {}) }));
  }
  if (o.admin && o.admin.length > 0)
    return o.admin.map((url) => {
      if (!/^https?:\/\/[^/\s]+$/.test(url))
        throw new ConfigError(`--admin ${url}: expected an admin API base URL such as http://127.0.0.1:9180`);
      return { name: url, url };
    });
  throw new ConfigError('give --lab NAME or one or more --admin URL');
}

type Detail = Record<string, unknown> & {
  dataplane?: { mode?: string; attach?: string; interface?: string } | null;
  circuits?: number;
  neighbours?: { total: number; dead: number };
  failover?: Record<string, number>;
  store?: { tableRevision?: number | null; errors?: number };
  isp?: string;
  pop?: string;
};

/** One line per component, for people. */
export function statusTable(rows: ComponentStatus[]): string {
  const header = [
    'component',
    'service',
    'up',
    'data path',
    'circuits',
    'neighbours dead',
    'repairs',
    'store rev',
  ];
  const lines = rows.map((r) => {
    if (!r.status) return [r.name, '-', 'NO ANSWER', r.error ?? '', '', '', '', ''];
    const s = r.status;
    const d = s.detail as Detail;
    const path = d.dataplane
      ? d.dataplane.mode === 'kernel'
        ? `kernel (${d.dataplane.attach} on ${d.dataplane.interface})`
        : (d.dataplane.mode ?? '')
      : '';
    return [
      r.name,
      s.service,
      `${Math.round(s.uptimeSeconds)} s`,
      path,
      d.circuits === undefined ? '' : String(d.circuits),
      d.neighbours ? `${d.neighbours.dead}/${d.neighbours.total}` : '',
      d.failover?.neighboursDown === undefined
        ? ''
        : `${d.failover.neighboursDown} (${d.failover.hopsMoved ?? 0} hops)`,
      d.store?.tableRevision === undefined || d.store.tableRevision === null
        ? ''
        : String(d.store.tableRevision),
    ];
  });
  const all = [header, ...lines];
  const widths = header.map((_, i) => Math.max(...all.map((l) => l[i]!.length)));
  return all
    .map((l) =>
      l
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export async function runStatus(o: StatusFlags): Promise<void> {
  const rows = await Promise.all(targets(o).map(fetchStatus));
  if (o.json) console.log(JSON.stringify(rows, null, 2));
  else console.log(statusTable(rows));
  if (rows.some((r) => r.error !== undefined)) process.exitCode = 1;
}
