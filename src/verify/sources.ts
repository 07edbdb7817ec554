/**
 * Building the checker's model (model.ts) from what a customer or an ISP can read, without
 * sending a packet: a customer's circuits from each ISP's portal (`GET /offers` for the routers,
 * `GET /circuits` for the circuits, their next hops, alternatives and the ones in use), or one
 * ISP's whole table from its store, internal hops included. Pure functions of the data read.
 */
import type { CircuitView } from '../api/portal.js';
import type { Offers } from '../endpoint/portal-client.js';
import type { CircuitInput } from '../store/circuit.js';
import type { RouterRegistration } from '../store/store.js';
import type { Entry, Model, NextHopChoice, Rule, RouterPlace } from './model.js';

export interface PortalView {
  offers: Offers;
  circuits: CircuitView[];
}

const choice = (addresses: string[], auth: string, active: number | undefined): NextHopChoice => ({
  addresses,
  auth,
  active: active !== undefined && active < addresses.length ? active : 0,
});

/**
 * A customer's view: each circuit is one rule at its ingress routers (the ISP's internal hop is
 * its own business and invisible here). Entries: every circuit (`customer` where nothing in view
 * leads to it), and each delivery's `reply` as the target sends into it.
 */
export function customerModel(views: PortalView[]): Model {
  const routers = new Map<string, RouterPlace>();
  const tables = new Set<string>();
  const rules: Rule[] = [];
  const entries: Entry[] = [];
  for (const v of views) {
    const isp = v.offers.isp;
    tables.add(isp);
    for (const p of v.offers.pops) for (const a of p.routers) routers.set(a, { isp, pop: p.name });
  }
  const led = new Set<string>();
  // Where each target's answers enter: the reply hop as the target sends it (its active address).
  const replies: Entry[] = [];
  for (const v of views) {
    const isp = v.offers.isp;
    for (const c of v.circuits) {
      const at = c.ingress;
      if (c.next) {
        rules.push({
          isp,
          circuit: c.auth,
          at,
          auth: c.auth,
          action: { kind: 'hop', via: 'next', hop: choice(c.next.addresses, c.next.auth, c.active?.next) },
        });
        led.add(c.next.auth);
      } else if (c.deliver) {
        const d = c.deliver;
        const reply =
          'reply' in d && d.reply ? choice(d.reply.addresses, d.reply.auth, c.active?.reply) : undefined;
        const target =
          d.kind === 'endpoint'
            ? (d.addresses[c.active?.next ?? 0] ?? d.addresses[0]!)
            : d.kind === 'udp'
              ? d.target
              : d.prefixes.join(' ');
        rules.push({
          isp,
          circuit: c.auth,
          at,
          auth: c.auth,
          action: { kind: 'deliver', how: d.kind, target, ...(reply ? { reply } : {}) },
        });
        if (reply) {
          led.add(reply.auth);
          replies.push({ from: `the target of ${c.auth.slice(0, 8)}`, circuit: reply.auth, isp, hop: reply });
        }
      }
    }
  }
  // Every circuit the customer holds is checked from its ingress: where the customer sends (circuits
  // nothing in view leads to) and those it chained (a loop has no head at all).
  for (const v of views)
    for (const c of v.circuits)
      entries.push({
        from: led.has(c.auth) ? 'a chain' : 'customer',
        circuit: c.auth,
        isp: v.offers.isp,
        hop: choice(c.ingress, c.auth, 0),
      });
  // And where each target's answers enter: a circuit of the ISP that holds it.
  for (const e of replies) {
    const owner = views.find((v) => v.circuits.some((c) => c.auth === e.circuit));
    if (owner) e.isp = owner.offers.isp;
    entries.push(e);
  }
  return { rules, routers, tables, closed: true, entries };
}

/**
 * One ISP's view from its store: every circuit's entries as its routers compile them
 * (src/router/table.ts): the ingress PoP's routers rewrite to the internal authenticator and send
 * to an egress PoP router, which takes the egress action. Other ISPs' addresses leave the view.
 */
export function ispModel(
  isp: string,
  circuits: readonly CircuitInput[],
  registered: readonly (Omit<RouterRegistration, 'name'> & { name?: string })[],
): Model {
  const routers = new Map<string, RouterPlace>();
  for (const r of registered)
    routers.set(r.address, { isp, pop: r.pop, ...(r.name ? { name: r.name } : {}) });
  const byPop = new Map<string, string[]>();
  for (const r of registered) byPop.set(r.pop, [...(byPop.get(r.pop) ?? []), r.address]);
  const rules: Rule[] = [];
  const entries: Entry[] = [];
  for (const c of circuits) {
    const ingress = byPop.get(c.ingressPop) ?? [];
    const egress = byPop.get(c.egressPop) ?? [];
    const a = c.action;
    const egressAction: Rule['action'] =
      a.kind === 'forward'
        ? { kind: 'hop', via: 'next', hop: choice(a.next.addresses, a.next.auth, c.active?.next) }
        : {
            kind: 'deliver',
            how: a.kind === 'deliver-endpoint' ? 'endpoint' : a.kind === 'deliver-udp' ? 'udp' : 'ip',
            target:
              a.kind === 'deliver-endpoint'
                ? (a.addresses[c.active?.next ?? 0] ?? a.addresses[0]!)
                : a.kind === 'deliver-udp'
                  ? a.target
                  : a.prefixes.join(' '),
            ...(a.kind !== 'deliver-endpoint' && a.reply
              ? { reply: choice(a.reply.addresses, a.reply.auth, c.active?.reply) }
              : {}),
          };
    if (c.ingressPop === c.egressPop) {
      rules.push({ isp, circuit: c.auth, at: ingress, auth: c.auth, action: egressAction });
    } else {
      const internal = c.internalRouters.length > 0 ? c.internalRouters : egress;
      rules.push({
        isp,
        circuit: c.auth,
        at: ingress,
        auth: c.auth,
        action: { kind: 'hop', via: 'internal', hop: choice(internal, c.internalAuth, c.active?.internal) },
      });
      rules.push({ isp, circuit: c.auth, at: egress, auth: c.internalAuth, action: egressAction });
    }
    entries.push({ from: 'outside the ISP', circuit: c.auth, isp, hop: choice(ingress, c.auth, 0) });
  }
  return { rules, routers, tables: new Set([isp]), closed: false, entries };
}

/**
 * Several ISPs' views as one network (an operator of several, or a test): every table in view, so
 * an address none of them serves is a black hole.
 */
export function mergeModels(models: Model[]): Model {
  const out: Model = { rules: [], routers: new Map(), tables: new Set(), closed: true, entries: [] };
  for (const m of models) {
    out.rules.push(...m.rules);
    for (const [a, p] of m.routers) out.routers.set(a, p);
    for (const t of m.tables) out.tables.add(t);
    out.entries.push(...m.entries);
  }
  return out;
}
