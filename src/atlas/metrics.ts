/**
 * The atlas's Prometheus metrics (docs/operations.md, "Monitoring"): what it measured per PoP pair
 * (one-way latency, loss), its probe errors, and how long path queries take. Pairs are the PoP
 * pairs it measures, a bounded set, never circuits.
 */
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { countHttpRequests } from '../admin/http-metrics.js';
import type { Atlas } from './atlas.js';

export function registerAtlasMetrics(app: FastifyInstance, registry: Registry, atlas: Atlas): void {
  const pairGauge = (
    name: string,
    help: string,
    value: (m: { latencyMs: number; lossPct: number }) => number,
  ): void => {
    new Gauge({
      name,
      help,
      labelNames: ['kind', 'pair'],
      registers: [registry],
      collect() {
        this.reset();
        for (const p of atlas.pairs()) {
          const m = atlas.measurement(p.key);
          if (m !== undefined) this.set({ kind: p.kind, pair: p.key }, value(m));
        }
      },
    });
  };
  pairGauge(
    'arrow_atlas_pair_latency_seconds',
    'Measured one-way latency per PoP pair (offer segment or peering link)',
    (m) => m.latencyMs / 1000,
  );
  pairGauge('arrow_atlas_pair_loss_ratio', 'Measured loss per PoP pair, 0 to 1', (m) => m.lossPct / 100);
  new Counter({
    name: 'arrow_atlas_probe_errors_total',
    help: 'Measurement probes that failed (a PoP unreachable, a router not answering)',
    registers: [registry],
    collect() {
      this.reset();
      if (atlas.probeErrors > 0) this.inc(atlas.probeErrors);
    },
  });
  const queries = new Histogram({
    name: 'arrow_atlas_query_duration_seconds',
    help: 'Path queries (POST /paths), from request to answer',
    labelNames: ['status'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  countHttpRequests(app, registry, 'arrow_atlas', (req, reply, route) => {
    if (req.method === 'POST' && route === '/paths')
      queries.observe({ status: String(reply.statusCode) }, reply.elapsedTime / 1000);
  });
}
