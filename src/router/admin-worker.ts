/**
 * The router's admin thread (docs/operations.md, "The admin API"): serves `/metrics`, `/status` and
 * `/log/level` from the stats snapshot the forwarding thread posts every stats interval, so no
 * scrape ever runs on the thread that forwards. A level set here is posted back to the forwarding
 * thread, whose logger it is.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { LogLevel } from '../api/log-levels.js';
import { startAdmin } from '../admin/server.js';
import type { AdminConfig } from '../api/admin.js';
import type { RouterStats } from '../store/circuit.js';
import { LISTED_LINKS, RECENT_VERDICTS, type RouterLink, type RouterVerdict } from '../api/router-status.js';
import { createLogger } from '../util/log.js';
import { registerRouterMetrics } from './metrics.js';

/** Forwarding thread → admin thread. */
export type ToAdmin =
  { op: 'stats'; stats: RouterStats } | { op: 'verdict'; verdict: RouterVerdict } | { op: 'close' };

/** Admin thread → forwarding thread. */
export type FromAdmin =
  { ev: 'listening'; url: string } | { ev: 'failed'; message: string } | { ev: 'log-level'; level: LogLevel };

export interface AdminData {
  admin: AdminConfig;
  router: string;
  isp: string;
  pop: string;
  level: string;
  /** Circuits with series of their own (`metrics.circuits`). */
  circuits: string[];
  /** The API's OpenAPI document (adminOpenApi), built on the forwarding thread, which has the schemas loaded. */
  openapi: string;
}

/** `/status` detail from the latest snapshot: the router's identity, data path, store and table. */
export function routerStatus(
  d: AdminData,
  s: RouterStats | undefined,
  verdicts: readonly RouterVerdict[] = [],
): Record<string, unknown> {
  const neighbours = Object.values(s?.neighbours ?? {});
  const links: RouterLink[] = Object.entries(s?.neighbours ?? {})
    .slice(0, LISTED_LINKS)
    .map(([neighbour, n]) => ({ neighbour, rttMs: n.rttMs ?? null, dead: n.dead }));
  return {
    isp: d.isp,
    pop: d.pop,
    address: s?.address ?? '',
    statsAt: s?.updatedAt ?? null,
    dataplane: s?.dataplane ?? null,
    store: {
      tableRevision: s?.tableRevision ?? null,
      errors: s?.storeErrors ?? 0,
      threadRestarts: s?.storeThreadRestarts ?? 0,
    },
    circuits: s === undefined ? 0 : Object.keys(s.circuits).length,
    rejected: s?.rejected ?? 0,
    rejections: s?.rejections ?? {},
    neighbours: { total: neighbours.length, dead: neighbours.filter((n) => n.dead).length },
    links,
    // The recent verdicts, oldest first: who this router declared dead (or alive again), and when.
    verdicts,
    // Repairs so far: neighboursDown verdicts, hops moved and stranded (docs/failover.md).
    failover: s?.failover ?? {},
    ...(s?.egress ? { egress: { interface: s.egress.interface, serving: s.egress.serving ?? {} } } : {}),
  };
}

function main(): void {
  const port = parentPort!;
  const d = workerData as AdminData;
  const post = (m: FromAdmin): void => port.postMessage(m);
  let latest: RouterStats | undefined;
  const verdicts: RouterVerdict[] = [];
  let level = d.level;
  const log = createLogger(`router-${d.router}-admin`, level);
  const registry = new Registry();
  // Process-wide figures (CPU, memory, file descriptors). Their nodejs_eventloop_lag_* is this
  // thread's; the forwarding thread's is arrow_router_event_loop_delay_seconds.
  collectDefaultMetrics({ register: registry });
  registerRouterMetrics(registry, () => latest, { circuits: d.circuits });
  port.on('message', (m: ToAdmin) => {
    if (m.op === 'stats') latest = m.stats;
    else if (m.op === 'verdict') {
      verdicts.push(m.verdict);
      if (verdicts.length > RECENT_VERDICTS) verdicts.shift();
    } else if (m.op === 'close') process.exit(0);
  });
  startAdmin(
    d.admin,
    {
      service: 'router',
      name: d.router,
      openapi: d.openapi,
      registry,
      status: () => routerStatus(d, latest, verdicts),
      logLevel: () => level,
      setLogLevel: (l) => {
        level = l;
        log.level = l;
        post({ ev: 'log-level', level: l });
      },
    },
    log,
  ).then(
    (server) => post({ ev: 'listening', url: server.url }),
    (err: Error) => post({ ev: 'failed', message: err.message }),
  );
}

main();
