/**
 * Reading a daemon's admin API (docs/operations.md, "The admin API") from another program: `arrow
 * status` and the dashboard. A netns lab's admin APIs listen on their namespace's loopback, which is
 * not ours: those are asked from inside the namespace with curl.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Value } from '@sinclair/typebox/value';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { AdminStatusSchema, type AdminStatus } from '../api/admin.js';

const run = promisify(execFile);

export interface AdminTarget {
  name: string;
  url: string;
  /** The network namespace its admin API is reachable in (a netns lab). */
  ns?: string;
}

export const ADMIN_TIMEOUT_MS = 3000;

/** GET `path` of a target's admin API: its body, or an error that says why not in one line. */
export async function adminGet(t: AdminTarget, path: string, timeoutMs = ADMIN_TIMEOUT_MS): Promise<string> {
  const at = `${t.url}${path}`;
  try {
    if (t.ns) {
      const secs = String(timeoutMs / 1000);
      const r = await run('ip', ['netns', 'exec', t.ns, 'curl', '-sS', '--fail', '--max-time', secs, at]);
      return r.stdout;
    }
    const r = await fetch(at, { signal: AbortSignal.timeout(timeoutMs) });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    return await r.text();
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error((e.stderr?.trim() || e.message).split('\n')[0]!, { cause: err });
  }
}

/** A target's `/status`, checked against the schema its server answers with. */
export async function adminStatus(t: AdminTarget, timeoutMs = ADMIN_TIMEOUT_MS): Promise<AdminStatus> {
  const status: unknown = JSON.parse(await adminGet(t, '/status', timeoutMs));
  if (!Value.Check(AdminStatusSchema, status)) throw new Error('not an Arrow admin /status answer');
  return status;
}

/** Samples of a `/metrics` answer by metric name: each with its labels and value. */
export type MetricSamples = Map<string, { labels: Record<string, string>; value: number }[]>;

export function parseMetrics(text: string): MetricSamples {
  const out: MetricSamples = new Map();
  for (const family of parsePrometheusTextFormat(text))
    out.set(
      family.name,
      family.metrics
        .filter((m) => m.value !== undefined)
        .map((m) => ({ labels: m.labels ?? {}, value: Number(m.value) })),
    );
  return out;
}

/** The sum of a metric's samples (all label values), 0 when absent. */
export function metricSum(m: MetricSamples, name: string): number {
  return (m.get(name) ?? []).reduce((a, s) => a + s.value, 0);
}
