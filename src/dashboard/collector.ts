/**
 * The dashboard's view of a network (docs/operations.md, "The dashboard"): every poll it asks each
 * daemon's admin API for `/status` (and a router's `/metrics`), and folds the answers into a
 * snapshot: each router's state, data path, traffic and drops, the links between routers, and a
 * timeline of what happened: the routers' own dead verdicts (stamped when each router made it),
 * routers that stop or start answering, and what the customer saw. The page renders snapshots and
 * timeline events as they come (src/dashboard/server.ts streams them).
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import type { AdminStatus } from '../api/admin.js';
import type {
  CustomerViewT,
  DashboardSnapshotT,
  RouterStateName,
  RouterViewT,
  TimelineEventT,
} from '../api/dashboard.js';
import type { RouterLink, RouterVerdict } from '../api/router-status.js';
import { VERSION } from '../util/version.js';
import { adminGet, adminStatus, metricSum, parseMetrics, type AdminTarget } from '../admin/client.js';
import { hasCode, noteUnexpected } from '../util/errors.js';
import { ConfigError } from '../util/config.js';

export interface WatchedTarget extends AdminTarget {
  /** Its process, when known (a lab's state file): tells a hung router from a dead one. */
  pid?: number;
}

export interface CollectorOptions {
  /** The daemons to watch (or refreshTargets). */
  targets: WatchedTarget[];
  /** What it watches, for the page's header: `lab demo`, or the admin URLs. */
  source: string;
  /** How often every admin API is asked, ms. */
  pollMs?: number;
  /** Points of history kept for the charts. */
  historyPoints?: number;
  /** Timeline events kept. */
  timelineEvents?: number;
  /**
   * The targets now, asked before every poll: a restarted router has a new process and may have a
   * new admin port (a lab's state file, or the demo's lab). A name not listed any more is dropped.
   */
  refreshTargets?: () => WatchedTarget[];
}

/** A router whose stats are older than this answers but does not forward: `stalled`. */
const STALE_STATS_MS = 5000;

interface RouterDetail {
  isp?: string;
  pop?: string;
  address?: string;
  statsAt?: string | null;
  dataplane?: { mode?: string; attach?: string; interface?: string } | null;
  circuits?: number;
  neighbours?: { total: number; dead: number };
  failover?: Record<string, number>;
  links?: RouterLink[];
  verdicts?: RouterVerdict[];
}

interface Watch {
  target: WatchedTarget;
  service: string | undefined;
  router: RouterViewT | undefined;
  lastForwarded: { at: number; packets: number } | undefined;
  error: string | undefined;
}

/** A process's state letter from /proc (`T`: stopped), or undefined when there is no such process. */
function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may hold spaces: the state follows the last `)`.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch (err) {
    if (!hasCode(err, 'ENOENT') && !hasCode(err, 'ESRCH')) noteUnexpected(`reading /proc/${pid}/stat`, err);
    return undefined;
  }
}

function dataplaneText(d: RouterDetail['dataplane']): string {
  if (!d) return 'unknown';
  if (d.mode === 'kernel') return `kernel (${d.attach ?? '?'} on ${d.interface ?? '?'})`;
  return d.mode ?? 'unknown';
}

export class Collector extends EventEmitter<{ snapshot: [DashboardSnapshotT]; timeline: [TimelineEventT] }> {
  private readonly watches: Watch[];
  private readonly timeline: TimelineEventT[] = [];
  private readonly seenVerdicts = new Set<string>();
  private readonly history: DashboardSnapshotT['history'] = {
    at: [],
    pps: {},
    customerRttMs: [],
    customerPps: [],
  };
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  private latest: DashboardSnapshotT;
  /** The customer's view, set by whoever watches a customer (src/dashboard/customer.ts). */
  customer: (() => CustomerViewT) | undefined;
  /** Polls done so far (the first fills the page). */
  polls = 0;
  readonly pollMs: number;
  private readonly historyPoints: number;
  private readonly timelineEvents: number;

  constructor(private readonly o: CollectorOptions) {
    super();
    this.pollMs = o.pollMs ?? 500;
    this.historyPoints = o.historyPoints ?? 600;
    this.timelineEvents = o.timelineEvents ?? 200;
    this.watches = (o.refreshTargets?.() ?? o.targets).map((target) => ({
      target,
      service: undefined,
      router: undefined,
      lastForwarded: undefined,
      error: undefined,
    }));
    this.latest = this.build(Date.now());
  }

  start(): void {
    const tick = (): void => {
      void this.poll()
        .catch((err: unknown) => noteUnexpected('dashboard: polling the admin APIs', err))
        .finally(() => {
          if (this.timer !== undefined) this.timer = setTimeout(tick, this.pollMs);
        });
    };
    this.timer = setTimeout(tick, 0);
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  snapshot(): DashboardSnapshotT {
    return this.latest;
  }

  /** An event from outside the admin APIs (the customer's failover), on the timeline at once. */
  note(e: TimelineEventT): void {
    this.timeline.push(e);
    this.timeline.sort((a, b) => a.at - b.at);
    if (this.timeline.length > this.timelineEvents) this.timeline.shift();
    this.emit('timeline', e);
  }

  /** One round: every admin API at once; a slow one delays the round by at most its timeout. */
  async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      if (this.o.refreshTargets) {
        try {
          this.refresh(this.o.refreshTargets());
        } catch (err) {
          // The lab went away (its state file with it): keep watching what it had, shown as down.
          if (!(err instanceof ConfigError)) throw err;
        }
      }
      await Promise.all(this.watches.map((w) => this.pollOne(w)));
      const now = Date.now();
      this.foldVerdicts();
      this.latest = this.build(now);
      this.record(this.latest);
      this.polls++;
      this.emit('snapshot', this.latest);
    } finally {
      this.polling = false;
    }
  }

  private refresh(targets: WatchedTarget[]): void {
    const byName = new Map(targets.map((t) => [t.name, t]));
    for (let i = this.watches.length - 1; i >= 0; i--)
      if (!byName.has(this.watches[i]!.target.name)) this.watches.splice(i, 1);
    for (const t of targets) {
      const w = this.watches.find((x) => x.target.name === t.name);
      if (w) w.target = t;
      else
        this.watches.push({
          target: t,
          service: undefined,
          router: undefined,
          lastForwarded: undefined,
          error: undefined,
        });
    }
  }

  private async pollOne(w: Watch): Promise<void> {
    // A stopped process cannot answer: say so now rather than after a request's timeout.
    if (w.router && w.target.pid !== undefined && ['T', 't'].includes(processState(w.target.pid) ?? '')) {
      w.error = 'process stopped';
      this.routerState(w, 'hung');
      return;
    }
    let status: AdminStatus;
    try {
      status = await adminStatus(w.target, Math.max(this.pollMs * 2, 1000));
    } catch (err) {
      w.error = (err as Error).message;
      if (w.router) this.routerState(w, this.unanswered(w));
      return;
    }
    w.error = undefined;
    w.service = status.service;
    if (status.service !== 'router') return;
    const d = status.detail as RouterDetail;
    let metricsText: string;
    try {
      metricsText = await adminGet(w.target, '/metrics', Math.max(this.pollMs * 2, 1000));
    } catch (err) {
      w.error = `/metrics: ${(err as Error).message}`;
      return;
    }
    const m = parseMetrics(metricsText);
    const forwarded = metricSum(m, 'arrow_router_forwarded_packets_total');
    const drops: Record<string, number> = {};
    for (const s of m.get('arrow_router_dropped_packets_total') ?? [])
      drops[s.labels.reason ?? 'unknown'] = (drops[s.labels.reason ?? 'unknown'] ?? 0) + s.value;
    const now = Date.now();
    const prev = w.lastForwarded;
    const pps =
      prev && now > prev.at && forwarded >= prev.packets
        ? Math.round(((forwarded - prev.packets) * 1000) / (now - prev.at))
        : 0;
    w.lastForwarded = { at: now, packets: forwarded };
    const statsAge = d.statsAt ? now - Date.parse(d.statsAt) : Infinity;
    const view: RouterViewT = {
      name: status.name,
      isp: d.isp ?? '',
      pop: d.pop ?? '',
      address: d.address ?? '',
      state: w.router?.state ?? 'up',
      dataplane: dataplaneText(d.dataplane),
      circuits: d.circuits ?? 0,
      forwardedPackets: forwarded,
      droppedPackets: Object.values(drops).reduce((a, b) => a + b, 0),
      drops,
      pps,
      repairs: metricSum(m, 'arrow_router_repairs_total'),
      hopsMoved: metricSum(m, 'arrow_router_hops_moved_total'),
      neighbours: d.neighbours ?? { total: 0, dead: 0 },
      links: (d.links ?? []).map((l) => ({ to: l.neighbour, rttMs: l.rttMs, dead: l.dead })),
      admin: w.target.url,
    };
    w.router = view;
    this.pendingVerdicts.push(...(d.verdicts ?? []).map((v) => ({ router: status.name, v })));
    this.routerState(w, statsAge > STALE_STATS_MS ? 'stalled' : 'up');
  }

  private readonly pendingVerdicts: { router: string; v: RouterVerdict }[] = [];

  /** Why a router does not answer: its process stopped (hung), gone (dead), or unknown. */
  private unanswered(w: Watch): RouterStateName {
    if (w.target.pid === undefined) return 'no-answer';
    const state = processState(w.target.pid);
    if (state === undefined || state === 'Z' || state === 'X') return 'dead';
    if (state === 'T' || state === 't') return 'hung';
    return 'no-answer';
  }

  /** Sets a router's state; a change to or from `up` goes on the timeline. */
  private routerState(w: Watch, state: RouterStateName): void {
    const r = w.router!;
    const before = r.state;
    if (state !== 'up') r.pps = 0;
    r.state = state;
    if (state === 'up' && !w.error) r.error = undefined;
    else if (w.error) r.error = w.error;
    if (before === state) return;
    const down = before === 'up';
    if (!down && state !== 'up') return; // e.g. hung → dead: still down
    this.note({
      at: Date.now(),
      kind: down ? 'router-down' : 'router-up',
      subject: r.name,
      text: down
        ? `${r.name} ${state === 'dead' ? 'is dead: no process' : state === 'hung' ? 'is hung: its process is stopped' : state === 'stalled' ? 'is stalled: its stats stopped' : 'stopped answering'}`
        : `${r.name} is up again`,
    });
  }

  /** New verdicts from the routers' `/status`, each once, named by router where the address is known. */
  private foldVerdicts(): void {
    const names = new Map(
      this.watches.filter((w) => w.router).map((w) => [w.router!.address, w.router!.name] as const),
    );
    for (const w of this.watches)
      if (w.router) for (const l of w.router.links) l.to = names.get(l.to) ?? l.to;
    for (const { router, v } of this.pendingVerdicts.splice(0)) {
      const key = `${router}|${v.kind}|${v.neighbour}|${v.at}`;
      if (this.seenVerdicts.has(key)) continue;
      this.seenVerdicts.add(key);
      const neighbour = names.get(v.neighbour) ?? v.neighbour;
      this.note({
        at: v.at,
        kind: v.kind === 'dead' ? 'verdict-dead' : 'verdict-alive',
        subject: router,
        object: neighbour,
        hopsMoved: v.hopsMoved,
        text:
          v.kind === 'dead'
            ? `${router} declared ${neighbour} dead (${v.by ?? 'probe'}): ${v.hopsMoved} hop(s) moved${v.hopsStranded ? `, ${v.hopsStranded} stranded` : ''}`
            : `${router} heard ${neighbour} again`,
      });
    }
  }

  private build(now: number): DashboardSnapshotT {
    const routers = this.watches.flatMap((w) => (w.router ? [w.router] : []));
    const isps = new Map<string, Map<string, string[]>>();
    for (const r of routers) {
      const pops = isps.get(r.isp) ?? new Map<string, string[]>();
      isps.set(r.isp, pops);
      pops.set(r.pop, [...(pops.get(r.pop) ?? []), r.name]);
    }
    return {
      at: now,
      source: this.o.source,
      version: VERSION,
      isps: [...isps].map(([name, pops]) => ({
        name,
        pops: [...pops].map(([pop, names]) => ({ name: pop, routers: names })),
      })),
      routers,
      components: this.watches.map((w) => ({
        name: w.target.name,
        service: w.service ?? 'unknown',
        up: w.error === undefined && w.service !== undefined,
        admin: w.target.url,
        ...(w.error ? { error: w.error } : {}),
      })),
      customer: this.customer?.() ?? null,
      timeline: [...this.timeline],
      history: this.history,
    };
  }

  private record(s: DashboardSnapshotT): void {
    const h = this.history;
    h.at.push(s.at);
    const names = new Set([...Object.keys(h.pps), ...s.routers.map((r) => r.name)]);
    for (const name of names) {
      const series = (h.pps[name] ??= new Array<number | null>(h.at.length - 1).fill(null));
      const r = s.routers.find((x) => x.name === name);
      series.push(r && r.state === 'up' ? r.pps : null);
    }
    h.customerRttMs.push(s.customer?.rttMs ?? null);
    h.customerPps.push(s.customer?.pps ?? null);
    if (h.at.length > this.historyPoints) {
      h.at.shift();
      for (const series of Object.values(h.pps)) series.shift();
      h.customerRttMs.shift();
      h.customerPps.shift();
    }
  }
}
