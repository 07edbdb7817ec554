/**
 * What a parent (`arrow demo`) tells the dashboard it started as a child process: the customer's
 * path, its RTTs and the events only the customer sees. The dashboard runs in a process of its own
 * so that its polling never delays the customer's packets in the parent.
 */
import type { CustomerViewT, TimelineEventT } from '../api/dashboard.js';
import { CustomerWatch, type WatchedPath } from './customer.js';
import type { Dashboard } from './start.js';

export type DashboardMessage =
  | { op: 'customer'; name: string; path: WatchedPath; ca?: string; atlas?: CustomerViewT['atlas'] }
  | { op: 'rtt'; ms: number | null }
  | { op: 'note'; event: TimelineEventT };

function isMessage(m: unknown): m is DashboardMessage {
  return (
    typeof m === 'object' &&
    m !== null &&
    ['customer', 'rtt', 'note'].includes((m as { op?: unknown }).op as string)
  );
}

/** Applies one message from the parent; anything else is ignored (the parent is our own code). */
export function applyDashboardMessage(d: Dashboard, m: unknown): void {
  if (!isMessage(m)) return;
  if (m.op === 'customer') {
    const watch = new CustomerWatch(m.path, { name: m.name, ...(m.ca ? { ca: m.ca } : {}) });
    if (m.atlas) watch.setAtlas(m.atlas);
    d.watchCustomer(watch);
  } else if (m.op === 'rtt') d.customer?.setRtt(m.ms);
  else d.collector.note(m.event);
}
