/**
 * The router's side of the kernel fast path once it is loaded (docs/dataplane.md, "In the router"):
 * the forwarding table mirrored into the kernel's maps, and the kernel's counters folded back into
 * the table's, so everything that reads the router's stats (SLA reports, `arrow circuits`) sees the
 * traffic the kernel forwarded as if the Node path had.
 *
 * Nothing here runs per packet: the table calls it when an entry changes (a store change or a
 * repair), and the router calls `fold` once per stats interval.
 */
import type { CircuitCounters } from '../store/circuit.js';
import type { Logger } from '../util/log.js';
import { KernelCircuits, kernelRefusal, type KernelProgram, type KernelStats } from './kernel.js';
import { newCircuitCounters, type Entry, type TableObserver } from './table.js';

/** What the mirror holds per circuit the kernel forwards. */
interface Mirrored {
  /** The table's counters object of the circuit: kernel traffic is added into it. */
  counters: CircuitCounters;
  /** The kernel's counters as last folded (KernelCircuits keeps them as running totals). */
  folded: CircuitCounters;
}

/** Why circuits stayed on the Node path, with how many, for the router's status. */
export type KernelRefusals = Record<string, number>;

export class KernelMirror implements TableObserver {
  readonly circuits: KernelCircuits;
  private readonly held = new Map<string, Mirrored>();
  /** Circuits the kernel does not take (the Node path forwards them), with why. */
  private readonly refused = new Map<string, string>();
  /** Map writes the kernel refused (an errno); the circuit then stays on the Node path. */
  mapErrors = 0;

  /**
   * @param decapsulates whether the kernel decapsulates a deliver-ip circuit now (the router's
   *   egress decides: IpEgress.decapsulates); `refresh` when that changes.
   */
  constructor(
    readonly program: KernelProgram,
    private readonly log: Logger,
    decapsulates?: (entry: Entry) => boolean,
  ) {
    this.circuits = new KernelCircuits(program, decapsulates);
  }

  get size(): number {
    return this.held.size;
  }

  compiled(key: string, entry: Entry): void {
    // A re-chain may change what the kernel's totals mean (`out` is not counted on an internal
    // hop) or take the circuit out of the kernel: take what it counted so far first.
    this.flush();
    if (this.held.has(entry.circuit)) this.foldOne(entry.circuit);
    this.write(key, entry, true);
  }

  moved(key: string, entry: Entry): void {
    // A repair: the same entry with another active address. Staged, and written with the rest of
    // the repair in one batch when the table flushes: a repair moves every circuit of a dead
    // neighbour at once on the router's thread, and 1000 map updates one by one (~20 µs each with
    // their encoding) held it past its neighbours' link timeouts (arrow bench failover, N = 1000).
    if (this.held.has(entry.circuit) && this.circuits.stage(entry)) return;
    this.flush();
    // An address the kernel cannot send to (IPv6) takes the circuit out: its counts are folded first.
    if (kernelRefusal(entry) !== undefined && this.held.has(entry.circuit)) this.foldOne(entry.circuit);
    this.write(key, entry, !this.held.has(entry.circuit));
  }

  /** The entry's CF_DECAP may have changed (the egress claimed or withdrew its customer): rewritten. */
  refresh(entry: Entry): void {
    this.flush();
    if (this.held.has(entry.circuit)) this.guard(entry.circuit, () => this.circuits.refresh(entry));
  }

  removed(circuit: string): void {
    // The table drops the circuit's counters with it: nothing to fold into.
    this.flush();
    this.held.delete(circuit);
    this.refused.delete(circuit);
    this.guard(circuit, () => this.circuits.remove(circuit));
  }

  /** Adds what the kernel counted since the last fold into the table's counters, for every circuit. */
  fold(): void {
    this.flush();
    for (const circuit of this.held.keys()) this.foldOne(circuit);
  }

  /**
   * Writes the repairs staged since the last call in one batch (the table calls it when a change is
   * complete, and every other call here first). A circuit the kernel refuses goes to the Node path.
   */
  flush(): void {
    for (const { circuit, error } of this.circuits.flush())
      this.guard(circuit, () => {
        throw error;
      });
  }

  /** How many circuits stay on the Node path, by why. */
  refusals(): KernelRefusals {
    const out: KernelRefusals = {};
    for (const why of this.refused.values()) out[why] = (out[why] ?? 0) + 1;
    return out;
  }

  /** The kernel's router-wide counters. */
  stats(): KernelStats {
    return this.program.stats();
  }

  close(): void {
    this.program.close();
  }

  /** Puts the entry into the maps; `rebase` takes the kernel's totals now as the last fold. */
  private write(key: string, entry: Entry, rebase: boolean): void {
    // A circuit new to the kernel gets a zeroed slot: its baseline is zero without a read.
    const fresh = !this.circuits.has(entry.circuit);
    const refusal = this.guard(entry.circuit, () => this.circuits.put(entry, Buffer.from(key, 'latin1')));
    if (refusal === undefined && this.circuits.has(entry.circuit)) {
      this.refused.delete(entry.circuit);
      const m = this.held.get(entry.circuit);
      if (m !== undefined && !rebase) {
        m.counters = entry.counters;
        return;
      }
      // Under the entry's (possibly new) kind, so the next fold adds only what is counted from now.
      const folded = fresh
        ? newCircuitCounters()
        : this.guard(entry.circuit, () => this.circuits.counters(entry.circuit));
      if (folded !== undefined) this.held.set(entry.circuit, { counters: entry.counters, folded });
      return;
    }
    this.held.delete(entry.circuit);
    const reason = refusal ?? 'a kernel map update failed'; // guard counted and logged it
    if (this.refused.get(entry.circuit) !== reason)
      this.log.debug({ circuit: entry.circuit, reason }, 'circuit stays on the Node path');
    this.refused.set(entry.circuit, reason);
  }

  private foldOne(circuit: string): void {
    const m = this.held.get(circuit);
    const now = m && this.guard(circuit, () => this.circuits.counters(circuit));
    if (m === undefined || now === undefined) return;
    addDelta(m.counters, m.folded, now);
    m.folded = now;
  }

  /**
   * A map call the kernel refused (KernelMapError: an errno such as ENOMEM) must not stop the
   * router: the circuit is counted, logged, and left to the Node path, which still has it.
   */
  private guard<T>(circuit: string, call: () => T): T | undefined {
    try {
      return call();
    } catch (err) {
      this.mapErrors++;
      this.log.warn(
        { circuit, err: (err as Error).message },
        'kernel map update failed: circuit on the Node path',
      );
      this.held.delete(circuit);
      try {
        this.circuits.remove(circuit);
      } catch (again) {
        this.log.error({ circuit, err: (again as Error).message }, 'kernel map: could not remove circuit');
      }
      return undefined;
    }
  }
}

/** `into += now - before`, field by field: the kernel's totals only grow between two folds. */
export function addDelta(into: CircuitCounters, before: CircuitCounters, now: CircuitCounters): void {
  into.packets += now.packets - before.packets;
  into.bytes += now.bytes - before.bytes;
  into.dropped += now.dropped - before.dropped;
  into.inPackets += now.inPackets - before.inPackets;
  into.inBytes += now.inBytes - before.inBytes;
  into.outPackets += now.outPackets - before.outPackets;
  into.outBytes += now.outBytes - before.outBytes;
  for (const [reason, n] of Object.entries(now.drops)) {
    const d = n - (before.drops[reason as keyof typeof before.drops] ?? 0);
    if (d !== 0)
      into.drops[reason as keyof typeof into.drops] =
        (into.drops[reason as keyof typeof into.drops] ?? 0) + d;
  }
}
