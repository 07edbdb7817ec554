/**
 * `arrow supervise`'s Prometheus metrics (docs/operations.md, "Monitoring"): what it started,
 * restarted and killed, and each child's health as its detector sees it. Children are the routers
 * it was given on the command line: a bounded set.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Supervisor } from './supervisor.js';

export function registerSupervisorMetrics(registry: Registry, sup: Supervisor): void {
  const total = (name: string, help: string, value: () => number): void => {
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        const v = value();
        if (v > 0) this.inc(v);
      },
    });
  };
  total('arrow_supervisor_starts_total', 'Children started, restarts included', () => sup.counters.starts);
  total(
    'arrow_supervisor_restarts_total',
    'Children started again after dying or being killed',
    () => sup.counters.restarts,
  );
  total('arrow_supervisor_crashes_total', 'Children that died on their own', () => sup.counters.crashes);
  new Counter({
    name: 'arrow_supervisor_kills_total',
    help: 'Children the detector killed, by verdict (hung, stalled, leaking, not-ready)',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(sup.counters.kills)) this.inc({ reason }, n);
    },
  });
  const perChild = (
    name: string,
    help: string,
    value: (c: ReturnType<Supervisor['snapshot']>[0]) => number | undefined,
  ): void => {
    new Gauge({
      name,
      help,
      labelNames: ['child'],
      registers: [registry],
      collect() {
        this.reset();
        for (const c of sup.snapshot()) {
          const v = value(c);
          if (v !== undefined) this.set({ child: c.name }, v);
        }
      },
    });
  };
  perChild('arrow_supervisor_child_up', 'Whether the child runs and said it is ready (1) or not (0)', (c) =>
    c.ready ? 1 : 0,
  );
  perChild(
    'arrow_supervisor_child_rss_bytes',
    "The child's resident memory, from its heartbeat",
    (c) => c.rssBytes,
  );
  perChild(
    'arrow_supervisor_child_loop_lag_seconds',
    "The child's event-loop lag, from its heartbeat",
    (c) => c.loopLagMs / 1000,
  );
  perChild(
    'arrow_supervisor_child_backoff_seconds',
    'The wait before the child is started again, while it is down',
    (c) => (c.backoffMs === undefined || c.ready ? undefined : c.backoffMs / 1000),
  );
}
