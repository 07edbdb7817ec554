/**
 * A portal's Prometheus metrics (docs/operations.md, "Monitoring"): its HTTP requests by route and
 * status, circuit creates and refusals by reason, capacity sold and available per PoP pair, and
 * the SLA verdicts it gave. Routes are the templates (`/circuits/:auth`), never the URLs, so the
 * series stay bounded whatever clients send.
 */
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, type Registry } from 'prom-client';
import { countHttpRequests } from '../admin/http-metrics.js';
import type { CircuitStore } from '../store/store.js';
import type { PortalConfig } from './config.js';

/** Why a create was refused, by the status the portal answered (docs/api.md lists the messages). */
const REFUSAL_BY_STATUS: Record<number, string> = {
  400: 'invalid',
  401: 'unauthorized',
  403: 'policy',
  409: 'conflict',
  413: 'too-large',
  415: 'invalid',
  422: 'idempotency-mismatch',
  429: 'rate-limited',
  503: 'unavailable',
};

/** What the check of the portal's own table said of a created or re-chained circuit (docs/verify.md). */
export type TableCheckResult = 'ok' | 'single-point' | 'refused';

export interface PortalMetrics {
  /** An SLA report was given for a circuit: `ok` its verdict. */
  slaVerdict(ok: boolean): void;
  /** The own-table check ran on a create or chain. */
  tableCheck(result: TableCheckResult): void;
}

export function registerPortalMetrics(
  app: FastifyInstance,
  registry: Registry,
  o: { config: PortalConfig; store: CircuitStore },
): PortalMetrics {
  const creates = new Counter({
    name: 'arrow_portal_circuit_creates_total',
    help: 'Circuits sold (POST /circuits answered 201)',
    registers: [registry],
  });
  const refusals = new Counter({
    name: 'arrow_portal_circuit_refusals_total',
    help: 'POST /circuits refused, by reason (from the status: invalid, unauthorized, policy, conflict, unavailable, ...)',
    labelNames: ['reason'],
    registers: [registry],
  });
  const verdicts = new Counter({
    name: 'arrow_portal_sla_verdicts_total',
    help: 'SLA verdicts given with circuit stats, by result',
    labelNames: ['verdict'],
    registers: [registry],
  });
  for (const verdict of ['met', 'breached']) verdicts.inc({ verdict }, 0);
  const checks = new Counter({
    name: 'arrow_portal_table_checks_total',
    help: "Checks of the portal's own table on create and chain (docs/verify.md): ok, single-point (sound, but one router's failure strands the circuit), refused (a loop or black hole: 409, nothing written)",
    labelNames: ['result'],
    registers: [registry],
  });
  for (const result of ['ok', 'single-point', 'refused']) checks.inc({ result }, 0);
  countHttpRequests(app, registry, 'arrow_portal', (req, reply, route) => {
    if (req.method !== 'POST' || route !== '/circuits') return;
    const status = reply.statusCode;
    if (status === 201) creates.inc();
    else if (status >= 400) refusals.inc({ reason: REFUSAL_BY_STATUS[status] ?? String(status) });
  });

  // Capacity: the offers' against what the store says is sold, read at each scrape.
  const sold = async (): Promise<Map<string, number>> => {
    const byPair = new Map<string, number>();
    for (const c of await o.store.list()) {
      const k = `${c.ingressPop}->${c.egressPop}`;
      byPair.set(k, (byPair.get(k) ?? 0) + c.bandwidthMbps);
    }
    return byPair;
  };
  new Gauge({
    name: 'arrow_portal_capacity_mbps',
    help: 'Capacity offered per PoP pair, and what is sold and still available of it',
    labelNames: ['from', 'to', 'kind'],
    registers: [registry],
    async collect() {
      const byPair = await sold();
      this.reset();
      for (const offer of o.config.offers) {
        const s = byPair.get(`${offer.from}->${offer.to}`) ?? 0;
        const at = { from: offer.from, to: offer.to };
        this.set({ ...at, kind: 'offered' }, offer.capacityMbps);
        this.set({ ...at, kind: 'sold' }, s);
        this.set({ ...at, kind: 'available' }, Math.max(0, offer.capacityMbps - s));
      }
    },
  });
  return {
    slaVerdict: (ok) => verdicts.inc({ verdict: ok ? 'met' : 'breached' }),
    tableCheck: (result) => checks.inc({ result }),
  };
}
