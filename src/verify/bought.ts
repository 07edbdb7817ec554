/**
 * The check `buyPath` runs on what it just bought (docs/verify.md): the bought circuits alone, as
 * their portals answered, with each circuit's ingress routers as the only routers its ISP has in
 * view. A path whose next hops do not lead into the next circuit, or that loops, is refused (and
 * relinquished) before any traffic is sent into it. Pure and cheap: no request beyond the buys.
 */
import type { CircuitView } from '../api/portal.js';
import { problemLines, verify, type Verdict } from './check.js';
import { customerModel, type PortalView } from './sources.js';

export interface BoughtForCheck {
  forward: { segment: { isp?: string | undefined; portal: string }; circuit: CircuitView }[];
  reverse: { segment: { isp?: string | undefined; portal: string }; circuit: CircuitView }[];
}

export function checkBoughtPath(path: BoughtForCheck): Verdict {
  const views = new Map<string, PortalView>();
  for (const b of [...path.forward, ...path.reverse]) {
    const isp = b.segment.isp ?? b.segment.portal;
    const v = views.get(isp) ?? { offers: { isp, pops: [], offers: [] }, circuits: [] };
    v.offers.pops.push({ name: b.circuit.ingressPop, routers: b.circuit.ingress });
    v.circuits.push(b.circuit);
    views.set(isp, v);
  }
  return verify(customerModel([...views.values()]), { failures: false });
}

/** One line per circuit whose packets do not arrive, with its witness; empty when the path checks. */
export function boughtPathProblems(v: Verdict): string[] {
  return problemLines(v.flows);
}
