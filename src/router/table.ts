import type { ChangeEvent, Circuit, CircuitCounters } from '../store/circuit.js';
import { authKeyFromHex, authToBytes } from '../wire/authenticator.js';
import { mustParseAddress, type UdpAddress } from '../wire/address.js';

/** A next hop as the data plane uses it: parsed addresses, the one in use, and the authenticator to write. */
export interface Hop {
  addresses: UdpAddress[];
  /** Index of the address in use: the first live one. */
  active: number;
  /** 16 raw bytes written over the packet's authenticator, or undefined to keep it. */
  auth: Buffer | undefined;
}

interface EntryBase {
  /** The circuit's customer-facing authenticator (hex): the key for counters and stats. */
  circuit: string;
  counters: CircuitCounters;
}
export type Entry =
  | (EntryBase & { kind: 'forward' | 'internal' | 'deliver-endpoint'; next: Hop })
  | (EntryBase & { kind: 'deliver-udp'; target: UdpAddress; reply: Hop | undefined });

export type EntryKind = Entry['kind'];

function hop(addresses: string[], auth: string | undefined): Hop {
  return {
    addresses: addresses.map(mustParseAddress),
    active: 0,
    auth: auth === undefined ? undefined : authToBytes(auth),
  };
}

/**
 * The entries one router holds for a circuit, by the PoP it sits in. A circuit from
 * PoP P to PoP Q gives P's routers an `internal` entry (keyed by the customer's
 * authenticator, rewriting to the internal one) and Q's routers the egress action
 * (keyed by the internal authenticator). When P == Q there is a single entry.
 * Pure: no I/O.
 */
export function compileCircuit(
  circuit: Circuit,
  pop: string,
  counters: CircuitCounters,
): Array<{ key: string; entry: Entry }> {
  const out: Array<{ key: string; entry: Entry }> = [];
  const sameCircuit = circuit.ingressPop === circuit.egressPop;
  if (pop === circuit.ingressPop && !sameCircuit) {
    out.push({
      key: authKeyFromHex(circuit.auth),
      entry: {
        kind: 'internal',
        circuit: circuit.auth,
        counters,
        next: hop(circuit.internalRouters, circuit.internalAuth),
      },
    });
  }
  if (pop === circuit.egressPop) {
    const key = authKeyFromHex(sameCircuit ? circuit.auth : circuit.internalAuth);
    const a = circuit.action;
    const base = { circuit: circuit.auth, counters };
    let entry: Entry;
    switch (a.kind) {
      case 'forward':
        entry = { ...base, kind: 'forward', next: hop(a.next.addresses, a.next.auth) };
        break;
      case 'deliver-endpoint':
        entry = { ...base, kind: 'deliver-endpoint', next: hop(a.addresses, a.auth) };
        break;
      case 'deliver-udp':
        entry = {
          ...base,
          kind: 'deliver-udp',
          target: mustParseAddress(a.target),
          reply: a.reply ? hop(a.reply.addresses, a.reply.auth) : undefined,
        };
        break;
    }
    out.push({ key, entry });
  }
  return out;
}

/**
 * Authenticator → action, for one router. Updated from store change events; read
 * by the packet loop with a single Map lookup. Counters live per circuit and
 * survive re-chaining, so a `chain` never resets a customer's accounting.
 */
export class ForwardingTable {
  private readonly entries = new Map<string, Entry>();
  /** circuit auth (hex) → keys it occupies in `entries`. */
  private readonly keysByCircuit = new Map<string, string[]>();
  private readonly counters = new Map<string, CircuitCounters>();
  revision = 0;
  /** Called when a circuit leaves this router's table, so per-circuit resources can be released. */
  onRemove: ((circuit: string) => void) | undefined;

  constructor(readonly pop: string) {}

  get size(): number {
    return this.entries.size;
  }

  get circuits(): number {
    return this.keysByCircuit.size;
  }

  lookup(key: string): Entry | undefined {
    return this.entries.get(key);
  }

  has(circuitAuth: string): boolean {
    return this.keysByCircuit.has(circuitAuth);
  }

  entriesOf(circuitAuth: string): Entry[] {
    return (this.keysByCircuit.get(circuitAuth) ?? []).map((k) => this.entries.get(k)!);
  }

  put(circuit: Circuit): void {
    this.remove(circuit.auth, false);
    let counters = this.counters.get(circuit.auth);
    const compiled = compileCircuit(circuit, this.pop, counters ?? { packets: 0, bytes: 0, dropped: 0 });
    if (compiled.length === 0) {
      this.counters.delete(circuit.auth);
      return;
    }
    counters ??= compiled[0]!.entry.counters;
    this.counters.set(circuit.auth, counters);
    for (const { key, entry } of compiled) this.entries.set(key, entry);
    this.keysByCircuit.set(
      circuit.auth,
      compiled.map((c) => c.key),
    );
  }

  remove(circuitAuth: string, forget = true): void {
    const keys = this.keysByCircuit.get(circuitAuth);
    if (keys) for (const k of keys) this.entries.delete(k);
    this.keysByCircuit.delete(circuitAuth);
    if (forget) {
      const had = this.counters.delete(circuitAuth);
      if (had || keys) this.onRemove?.(circuitAuth);
    }
  }

  replaceAll(circuits: Circuit[], revision: number): void {
    const keep = new Set(circuits.map((c) => c.auth));
    for (const auth of [...this.keysByCircuit.keys()]) if (!keep.has(auth)) this.remove(auth);
    for (const c of circuits) this.put(c);
    this.revision = revision;
  }

  apply(event: ChangeEvent): void {
    switch (event.type) {
      case 'put':
        this.put(event.circuit);
        break;
      case 'delete':
        this.remove(event.auth);
        break;
      case 'resync':
        this.replaceAll(event.circuits, event.revision);
        break;
    }
    this.revision = Math.max(this.revision, event.revision);
  }

  /** Per-circuit counters for publishing, keyed by customer authenticator. */
  snapshotCounters(): Record<string, CircuitCounters> {
    const out: Record<string, CircuitCounters> = {};
    for (const [auth, c] of this.counters) out[auth] = { ...c };
    return out;
  }
}
