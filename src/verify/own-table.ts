/**
 * The check a portal runs on its own table for every create and chain (docs/verify.md): the new or
 * changed circuit, and every circuit of this ISP its packets reach, walked over this ISP's routers
 * as they compile it (src/verify/sources.ts ispModel). It generalises the portal's loop check
 * (a next hop into its own routers is refused before this runs, docs/security.md): whatever got
 * past that, a circuit whose packets would loop or vanish inside the ISP is never written.
 *
 * Incremental: the walk reads only the circuits it reaches, one `get` by authenticator each, so
 * its cost is the circuit's path inside the ISP (bounded by the hop limit), whatever the size of
 * the table. Pure apart from the injected `get`.
 */
import type { CircuitInput } from '../store/circuit.js';
import { DEFAULT_HOP_LIMIT } from '../wire/header.js';
import { isProblem, problemLines, verify } from './check.js';
import { ispModel } from './sources.js';

export interface OwnTableCheck {
  /** Loops and black holes of the circuit inside the ISP, each with its witness: refuse. */
  problems: string[];
  /** Routers whose failure alone would strand the circuit (no live alternative): sound, but weak. */
  singlePoints: string[];
  /** Circuits read from the store by the walk (the cost of the check). */
  read: number;
}

export async function checkOwnCircuit(
  isp: string,
  circuit: CircuitInput,
  routers: readonly { pop: string; address: string; name?: string }[],
  get: (auth: string) => Promise<CircuitInput | undefined>,
): Promise<OwnTableCheck> {
  const own = new Set(routers.map((r) => r.address));
  const reached = new Map<string, CircuitInput>([[circuit.auth, circuit]]);
  const pending = [circuit];
  let read = 0;
  // Follow next hops that lead back into this ISP (only a bug or a race lets one through) to the
  // circuits they name; a hop-limit's worth of circuits is as far as any packet could go.
  while (pending.length > 0 && reached.size < DEFAULT_HOP_LIMIT) {
    const c = pending.pop()!;
    if (c.action.kind !== 'forward') continue;
    const next = c.action.next;
    if (!next.addresses.some((a) => own.has(a)) || reached.has(next.auth)) continue;
    read++;
    const found = await get(next.auth);
    if (found) {
      reached.set(found.auth, found);
      pending.push(found);
    }
  }
  const model = ispModel(isp, [...reached.values()], routers);
  model.entries = model.entries.filter((e) => e.circuit === circuit.auth);
  const v = verify(model, { failures: true });
  const singlePoints = v.failures
    .filter((f) => f.flows.some((x) => isProblem(x.outcome)))
    .map((f) => f.router ?? f.failed);
  return { problems: problemLines(v.flows), singlePoints, read };
}
