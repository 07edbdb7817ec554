import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import { registerRouterMetrics } from '../src/router/metrics.js';

// deploy/grafana/arrow.json draws the daemons' metrics: every name it queries must be one the code
// exports (the router's, from its registry) and docs/operations.md lists, or a panel is silently
// empty. Every router metric must be documented, too.

const dashboard = JSON.parse(
  readFileSync(new URL('../../deploy/grafana/arrow.json', import.meta.url), 'utf8'),
) as {
  panels: { type: string; title: string; targets?: { expr: string }[] }[];
};
const docs = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8');

/**
 * Metric names in docs/operations.md's tables. A row may shorten the names after its first
 * (`arrow_router_input_packets_total`, `_bytes_total`): a shorthand stands for the first name with
 * some of its last segments replaced, so each such replacement counts as listed.
 */
function documented(): Set<string> {
  const names = new Set<string>();
  for (const line of docs.split('\n')) {
    if (!line.startsWith('| `arrow_')) continue;
    const [first, ...more] = [...line.split('|')[1]!.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]!);
    names.add(first!);
    const segments = first!.split('_');
    for (const name of more) {
      if (!name.startsWith('_')) names.add(name);
      else
        for (let keep = 2; keep < segments.length; keep++)
          names.add(segments.slice(0, keep).join('_') + name);
    }
  }
  return names;
}

test('the Grafana dashboard queries only metrics the daemons export and docs/operations.md lists; every router metric is documented', async () => {
  const registry = new Registry();
  registerRouterMetrics(registry, () => undefined, { circuits: ['aa'.repeat(16)] });
  const routerMetrics = registry.getMetricsAsArray().map((m) => m.name);
  const known = documented();
  for (const name of routerMetrics) assert.ok(known.has(name), `${name} is not in docs/operations.md`);
  const used = new Set<string>();
  for (const p of dashboard.panels)
    for (const t of p.targets ?? [])
      for (const m of t.expr.matchAll(/\barrow_[a-z_]+/g)) used.add(m[0].replace(/_(bucket|count|sum)$/, ''));
  assert.ok(used.size >= 20, `the dashboard queries ${used.size} metrics`);
  for (const name of used) {
    assert.ok(known.has(name), `the dashboard queries ${name}, which docs/operations.md does not list`);
    if (name.startsWith('arrow_router_'))
      assert.ok(routerMetrics.includes(name), `the dashboard queries ${name}, which routers do not export`);
  }
});
