/**
 * `arrow status`: the state of a running lab or host, from its daemons' admin APIs (`/status`,
 * docs/operations.md, "Monitoring"): each router's data path, circuits, neighbours, repairs and
 * store; each portal and the atlas. A component that does not answer is shown as such, and the
 * command then exits 1.
 */
import type { AdminStatus } from '../api/admin.js';
import { adminStatus, type AdminTarget } from '../admin/client.js';
import { readState, statePath } from '../lab/control.js';
import { ConfigError } from '../util/config.js';

export interface StatusFlags {
  lab?: string;
  admin?: string[];
  json?: boolean;
}

export interface ComponentStatus {
  name: string;
  url: string;
  status?: AdminStatus;
  error?: string;
}

/** One component's `/status`, or why it did not answer. */
async function fetchStatus(t: AdminTarget): Promise<ComponentStatus> {
  try {
    return { name: t.name, url: t.url, status: await adminStatus(t) };
  } catch (err) {
    return { name: t.name, url: t.url, error: (err as Error).message };
  }
}

/** The admin APIs named by `--lab` (its state file) or `--admin` URLs. */
export function adminTargets(o: StatusFlags): AdminTarget[] {
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
  const rows = await Promise.all(adminTargets(o).map(fetchStatus));
  if (o.json) console.log(JSON.stringify(rows, null, 2));
  else console.log(statusTable(rows));
  if (rows.some((r) => r.error !== undefined)) process.exitCode = 1;
}
