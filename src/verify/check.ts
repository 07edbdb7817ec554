/**
 * The checker (docs/verify.md): reachability as the fixed point of applying every rule that
 * matches, Symnet's way, over symbolic packets `(address, authenticator)`. Every rule is
 * deterministic once each hop's active alternative is fixed, so the fixed point is one walk per
 * entry, and each state's outcome is remembered: every state is visited once, and the whole check
 * is linear in rules + states. Each finding comes with a concrete witness: the hops a packet takes.
 *
 * Failures: for every router a flow uses, the same walk with that router dead and every hop on it
 * moved to its next live alternative, as the routers' repair does (src/router/table.ts).
 * Pure: no I/O.
 */
import { DEFAULT_HOP_LIMIT } from '../wire/header.js';
import { nextLiveFrom } from '../router/table.js';
import type { Entry, Model, NextHopChoice, Rule } from './model.js';

/** One step of a witness: a packet carrying `auth` at `address` (and who that is). */
export interface WitnessStep {
  address: string;
  auth: string;
  isp?: string;
  pop?: string;
  router?: string;
}

export type Outcome =
  | { kind: 'delivered'; how: 'endpoint' | 'udp' | 'ip'; target: string }
  /** Leaves the model: an ISP whose table it does not hold (an ISP's own view). */
  | { kind: 'leaves'; address: string; isp?: string }
  | {
      kind: 'black-hole';
      reason: 'unknown-authenticator' | 'no-router' | 'stranded';
      address: string;
      detail: string;
    }
  | { kind: 'loop'; cycle: WitnessStep[] }
  | { kind: 'hop-limit'; hops: number };

/**
 * Flow state a delivery leaves at the router that made it, carried with the flow as Symnet carries
 * state in the packet: the answers to it must come back there (docs/verify.md, "Flow state").
 * - `en-dn`: deliver-ip with the customer's own address; the router serving the customer prefix
 *   (the EN-DN mapping, docs/egress.md) puts the answers into the return path;
 * - `nat`: deliver-ip at an ISP whose egress source-NATs (`egress.snat`): the answers come to this
 *   router's address, and only its conntrack can turn them back;
 * - `socket`: deliver-udp: the server answers this router's per-circuit UDP socket.
 */
export interface FlowState {
  kind: 'en-dn' | 'nat' | 'socket';
  /** The router holding it: where the flow was delivered. */
  holder: string;
  router?: string;
}

export interface FlowResult {
  entry: Entry;
  outcome: Outcome;
  witness: WitnessStep[];
  /** ISPs the flow crosses, in order. */
  isps: string[];
  /** The state its delivery leaves, for deliveries the target answers (ip, udp). */
  state?: FlowState;
}

/** What a failure does to a flow's state: its delivery moved to another router. */
export interface StateMove {
  circuit: string;
  from: FlowState;
  /** The new holder; undefined when the flow is no longer delivered at all. */
  to: FlowState | undefined;
  /**
   * Established flows (a TCP connection, a pending exchange): `kept` when the answers follow the
   * customer's address to the new holder (EN-DN takeover on the first packet, then the routing
   * daemon's convergence); `lost` when they go to the dead router's own address (NAT, socket).
   */
  established: 'kept' | 'lost';
}

export interface FailureResult {
  /** The router address held dead. */
  failed: string;
  router?: string;
  flows: FlowResult[];
  /** Flows whose state was at the dead router. */
  stateMoves: StateMove[];
}

export interface Verdict {
  flows: FlowResult[];
  /** Each sound flow's outcome with each single router it uses dead (only flows that use it). */
  failures: FailureResult[];
  /** Loops and black holes, in the normal state and under single failures. */
  problems: number;
  /** States visited in the normal check: linear in the model's size. */
  states: number;
}

const key = (address: string, auth: string): string => `${address}|${auth}`;

function isProblem(o: Outcome): boolean {
  return o.kind === 'black-hole' || o.kind === 'loop' || o.kind === 'hop-limit';
}

/** Index: address → authenticator → rule. */
function index(model: Model): Map<string, Map<string, Rule>> {
  const byAddress = new Map<string, Map<string, Rule>>();
  for (const r of model.rules)
    for (const a of r.at) {
      let m = byAddress.get(a);
      if (!m) byAddress.set(a, (m = new Map()));
      m.set(r.auth, r);
    }
  return byAddress;
}

/** Where a hop sends now: its active address, or the next live one when that is dead. */
function choose(hop: NextHopChoice, dead: ReadonlySet<string>): string | undefined {
  const a = hop.addresses[hop.active];
  if (a === undefined) return undefined;
  if (!dead.has(a)) return a;
  const i = nextLiveFrom(hop.addresses, hop.active, (x) => dead.has(x));
  return i === undefined ? undefined : hop.addresses[i];
}

interface Memo {
  outcome: Outcome;
  /** The state after this one, for the witness; undefined at the end. */
  next: string | undefined;
  step: WitnessStep;
  /** Hops from here to the end (a loop: the loop's length). */
  length: number;
}

class Walker {
  private readonly memo = new Map<string, Memo>();
  private readonly rules: Map<string, Map<string, Rule>>;
  visited = 0;

  constructor(
    private readonly model: Model,
    private readonly dead: ReadonlySet<string>,
    private readonly hopLimit: number,
  ) {
    this.rules = index(model);
  }

  private step(address: string, auth: string): WitnessStep {
    const p = this.model.routers.get(address);
    return {
      address,
      auth,
      ...(p ? { isp: p.isp, pop: p.pop, ...(p.name ? { router: p.name } : {}) } : {}),
    };
  }

  /** One rule application: the outcome if the packet ends here, else the next state. */
  private apply(address: string, auth: string): { end: Outcome } | { next: [string, string] } {
    const place = this.model.routers.get(address);
    if (this.dead.has(address))
      return {
        end: {
          kind: 'black-hole',
          reason: 'stranded',
          address,
          detail: `${place?.name ?? address} is dead and the hop has no live alternative`,
        },
      };
    if (!place)
      return this.model.closed
        ? {
            end: {
              kind: 'black-hole',
              reason: 'no-router',
              address,
              detail: `no router of the ISPs in view serves ${address}`,
            },
          }
        : { end: { kind: 'leaves', address } };
    if (!this.model.tables.has(place.isp)) return { end: { kind: 'leaves', address, isp: place.isp } };
    const rule = this.rules.get(address)?.get(auth);
    if (!rule)
      return {
        end: {
          kind: 'black-hole',
          reason: 'unknown-authenticator',
          address,
          detail: `${place.isp}/${place.pop}/${place.name ?? address} knows no circuit with authenticator ${auth.slice(0, 8)}`,
        },
      };
    const a = rule.action;
    if (a.kind === 'deliver') return { end: { kind: 'delivered', how: a.how, target: a.target } };
    const to = choose(a.hop, this.dead);
    if (to === undefined)
      return {
        end: {
          kind: 'black-hole',
          reason: 'stranded',
          address,
          detail: `every alternative of ${rule.isp}'s ${a.via} hop (${a.hop.addresses.join(', ')}) is dead`,
        },
      };
    return { next: [to, a.hop.auth] };
  }

  /** The outcome of a packet in state (address, auth), walking until a known state or an end. */
  outcome(address: string, auth: string): Memo {
    const start = key(address, auth);
    const path: string[] = [];
    const onPath = new Map<string, number>();
    const steps = new Map<string, WitnessStep>();
    let cur: [string, string] = [address, auth];
    let end: { outcome: Outcome; next: string | undefined; length: number } | undefined;
    for (;;) {
      const k = key(cur[0], cur[1]);
      const known = this.memo.get(k);
      if (known) {
        end = { outcome: known.outcome, next: k, length: known.length };
        break;
      }
      if (onPath.has(k)) {
        // A loop: every state on it loops; the witness is the cycle from its first state.
        const from = onPath.get(k)!;
        const cycle = path.slice(from).map((s) => steps.get(s)!);
        const outcome: Outcome = { kind: 'loop', cycle: [...cycle, steps.get(k)!] };
        for (let i = from; i < path.length; i++)
          this.memo.set(path[i]!, {
            outcome,
            next: path[i + 1] ?? k,
            step: steps.get(path[i]!)!,
            length: path.length - from,
          });
        path.length = from;
        end = { outcome, next: k, length: cycle.length };
        break;
      }
      this.visited++;
      onPath.set(k, path.length);
      path.push(k);
      steps.set(k, this.step(cur[0], cur[1]));
      const r = this.apply(cur[0], cur[1]);
      if ('end' in r) {
        end = { outcome: r.end, next: undefined, length: 0 };
        break;
      }
      cur = r.next;
    }
    // Unwind: each state on the path learns its outcome and successor.
    for (let i = path.length - 1; i >= 0; i--) {
      const k = path[i]!;
      const next = i + 1 < path.length ? path[i + 1] : end.next;
      const length = (next === undefined ? 0 : (this.memo.get(next)?.length ?? 0)) + 1;
      const outcome: Outcome =
        end.outcome.kind !== 'loop' && length > this.hopLimit
          ? { kind: 'hop-limit', hops: length }
          : end.outcome;
      this.memo.set(k, { outcome, next, step: steps.get(k)!, length });
    }
    return this.memo.get(start)!;
  }

  /** The hops a packet takes from a state: follows the remembered successors (a loop once round). */
  witness(address: string, auth: string): WitnessStep[] {
    const out: WitnessStep[] = [];
    const seen = new Set<string>();
    let k: string | undefined = key(address, auth);
    while (k !== undefined && !seen.has(k)) {
      seen.add(k);
      const m = this.memo.get(k);
      if (!m) break;
      out.push(m.step);
      k = m.next;
    }
    return out;
  }
}

function runFlows(model: Model, entries: Entry[], dead: ReadonlySet<string>, hopLimit: number) {
  const w = new Walker(model, dead, hopLimit);
  const flows: FlowResult[] = [];
  for (const entry of entries) {
    const first = choose(entry.hop, dead);
    if (first === undefined) {
      flows.push({
        entry,
        outcome: {
          kind: 'black-hole',
          reason: 'stranded',
          address: entry.hop.addresses.join(', '),
          detail: `every ingress router of ${entry.circuit.slice(0, 8)} is dead`,
        },
        witness: [],
        isps: [],
      });
      continue;
    }
    const m = w.outcome(first, entry.hop.auth);
    const witness = w.witness(first, entry.hop.auth);
    const isps: string[] = [];
    for (const s of witness) if (s.isp && isps.at(-1) !== s.isp) isps.push(s.isp);
    const state = stateOf(model, m.outcome, witness);
    flows.push({ entry, outcome: m.outcome, witness, isps, ...(state ? { state } : {}) });
  }
  return { flows, visited: w.visited };
}

/** The state a delivered flow leaves at its last router (the witness's last step). */
function stateOf(model: Model, o: Outcome, witness: WitnessStep[]): FlowState | undefined {
  if (o.kind !== 'delivered' || o.how === 'endpoint') return undefined;
  const at = witness.at(-1);
  if (!at) return undefined;
  const kind = o.how === 'udp' ? 'socket' : at.isp !== undefined && model.snat?.has(at.isp) ? 'nat' : 'en-dn';
  return { kind, holder: at.address, ...(at.router ? { router: at.router } : {}) };
}

/** Each flow whose state the failure moved, and whether its established flows survive the move. */
function stateMoves(
  normal: ReadonlyMap<Entry, FlowState | undefined>,
  failed: readonly FlowResult[],
  dead: string,
): StateMove[] {
  const moves: StateMove[] = [];
  for (const f of failed) {
    const before = normal.get(f.entry);
    if (!before || before.holder !== dead) continue;
    moves.push({
      circuit: f.entry.circuit,
      from: before,
      to: f.state,
      established: f.state !== undefined && before.kind === 'en-dn' ? 'kept' : 'lost',
    });
  }
  return moves;
}

/**
 * Checks every entry of the model: where its packets end (delivered, or a black hole or loop with
 * its witness), the ISPs they cross, and the same under every single failure of a router they use.
 */
export function verify(
  model: Model,
  o: {
    hopLimit?: number;
    failures?: boolean;
    /** Routers (addresses) held dead throughout: "what if these die". */
    dead?: readonly string[];
  } = {},
): Verdict {
  const hopLimit = o.hopLimit ?? DEFAULT_HOP_LIMIT;
  const dead = new Set(o.dead ?? []);
  const normal = runFlows(model, model.entries, dead, hopLimit);
  const failures: FailureResult[] = [];
  if (o.failures ?? true) {
    // Every router some sound flow passes through (its ingress included), each alone: a flow
    // already broken is reported once, as it is.
    const normalState = new Map(normal.flows.map((f) => [f.entry, f.state]));
    const used = new Map<string, Entry[]>();
    for (const f of normal.flows.filter((x) => !isProblem(x.outcome)))
      for (const s of f.witness)
        if (model.routers.has(s.address)) {
          const list = used.get(s.address) ?? [];
          if (list.at(-1) !== f.entry) list.push(f.entry);
          used.set(s.address, list);
        }
    for (const [address, entries] of used) {
      if (dead.has(address)) continue;
      const r = runFlows(model, entries, new Set([...dead, address]), hopLimit);
      const name = model.routers.get(address)?.name;
      failures.push({
        failed: address,
        ...(name ? { router: name } : {}),
        flows: r.flows,
        stateMoves: stateMoves(normalState, r.flows, address),
      });
    }
  }
  const problems =
    normal.flows.filter((f) => isProblem(f.outcome)).length +
    failures.reduce((n, f) => n + f.flows.filter((x) => isProblem(x.outcome)).length, 0);
  return { flows: normal.flows, failures, problems, states: normal.visited };
}

export { isProblem };

/** One line per flow whose packets do not arrive, with its witness. */
export function problemLines(flows: readonly FlowResult[]): string[] {
  return flows
    .filter((f) => isProblem(f.outcome))
    .map(
      (f) =>
        `${f.entry.isp} circuit ${f.entry.circuit.slice(0, 8)}: ${f.outcome.kind}${'detail' in f.outcome ? ` (${f.outcome.detail})` : ''} via ${f.witness.map((s) => s.address).join(' -> ')}`,
    );
}

/**
 * Where a flow's packet ends, as the routers themselves can show it (src/verify/inject.ts): a
 * loop and an overlong path both end at the hop limit; a dead or unknown next hop loses it.
 */
export function landingOf(o: Outcome): string {
  if (o.kind === 'delivered') return `delivered ${o.how} ${o.target}`;
  if (o.kind === 'loop' || o.kind === 'hop-limit') return 'hop-limit';
  if (o.kind === 'black-hole') return o.reason === 'unknown-authenticator' ? 'unknown-auth' : 'lost';
  return `leaves ${o.address}`;
}
