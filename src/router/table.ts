import type { ChangeEvent, Circuit, CircuitCounters, HopKind } from '../store/circuit.js';
import { authKeyFromHex, authToBytes } from '../wire/authenticator.js';
import { formatAddress, parseAddress, type UdpAddress } from '../wire/address.js';
import { ingressGuard, type IngressGuard } from './ingress.js';
import { PrefixSet } from '../wire/prefix-set.js';

/** A next hop as the data plane uses it: parsed addresses, the one in use, and the authenticator to write. */
export interface Hop {
  /** The circuit (customer authenticator, hex) and which of its hop lists this is. */
  circuit: string;
  kind: HopKind;
  addresses: UdpAddress[];
  /** `host:port` of each address: the neighbour's identity for liveness and repair. */
  keys: string[];
  /** Index of the address in use: the first live one. */
  active: number;
  /** 16 raw bytes written over the packet's authenticator, or undefined to keep it. */
  auth: Buffer | undefined;
}

interface EntryBase {
  /** The circuit's customer-facing authenticator (hex): the key for counters and stats. */
  circuit: string;
  /** The account that owns the circuit: probes are rate-limited per account too. */
  owner: string;
  counters: CircuitCounters;
  /** This router is in the circuit's ingress PoP: its DATA enters the ISP here (counted `in`). */
  ingress: boolean;
  /** At the ingress entry only: policing, and the tag and replay checks when the circuit requires tags. */
  guard: IngressGuard | undefined;
}
export type Entry =
  | (EntryBase & { kind: 'forward' | 'internal' | 'deliver-endpoint'; next: Hop })
  | (EntryBase & { kind: 'deliver-udp'; target: UdpAddress; reply: Hop | undefined })
  | (EntryBase & {
      kind: 'deliver-ip';
      /** Where inner packets may go: anything else is dropped (`outside-prefixes`), never relayed. */
      prefixes: PrefixSet;
      /** The customer's own prefix: inner sources outside it are dropped (`spoofed-source`); return traffic to it enters `reply`. */
      source: PrefixSet;
      /** `source` as the record gives it, for the route into the egress TUN. */
      sourcePrefix: string;
      reply: Hop | undefined;
    });

export type EntryKind = Entry['kind'];

/** A hop moved off a dead neighbour by repair. */
export interface HopMove {
  circuit: string;
  kind: HopKind;
  from: string;
  to: string;
  active: number;
}

/**
 * Told of every change to the table's entries, as it happens, off the packet path: the kernel
 * fast path mirrors the table into its maps through this (src/router/kernel-mirror.ts). A router
 * holds at most one entry per circuit (the one of the PoP it sits in).
 */
export interface TableObserver {
  /** The circuit's entry was compiled from a record: new, re-chained or re-keyed. */
  compiled(key: string, entry: Entry): void;
  /** Only the active address of the entry's hop changed (a repair, or the store's record of one). */
  moved(key: string, entry: Entry): void;
  /** The circuit left this router's table. */
  removed(circuit: string): void;
  /**
   * A change is complete (a repair, a record): the `moved` calls since the last flush may be applied
   * now, as one batch.
   */
  flush?(): void;
}

/**
 * A circuit record this router cannot turn into table entries: the record is skipped
 * (the rest of the table is unaffected) and the reason is reported in the router's stats.
 */
export class CompileError extends Error {
  override name = 'CompileError';
}

/**
 * An address the data plane can send to without any lookup: an IP literal and a port 1–65535.
 * A host name would be resolved by DNS on the packet path; port 0 cannot be sent to.
 */
function compileAddress(text: unknown, what: string): UdpAddress {
  // The one parser the API, configs and stores use: IP literals, ports 1-65535.
  const r = parseAddress(text);
  if (!r.ok) throw new CompileError(`${what}: ${r.message}`);
  return r.address;
}

function compilePrefixes(texts: unknown, what: string): PrefixSet {
  if (!Array.isArray(texts) || texts.length === 0)
    throw new CompileError(`${what}: expected a non-empty list of prefixes`);
  try {
    return PrefixSet.parse(texts as string[]);
  } catch (err) {
    throw new CompileError(`${what}: ${(err as Error).message}`);
  }
}

function compileAuth(hex: unknown, what: string): Buffer {
  if (typeof hex !== 'string')
    throw new CompileError(`${what}: expected a hex authenticator, got ${typeof hex}`);
  try {
    return authToBytes(hex);
  } catch (err) {
    throw new CompileError(`${what}: ${(err as Error).message}`);
  }
}

function hop(
  circuit: Circuit,
  kind: HopKind,
  addresses: string[],
  auth: string | undefined,
  isDead: (key: string) => boolean,
): Hop {
  if (!Array.isArray(addresses) || addresses.length === 0)
    throw new CompileError(`${kind} hop: no addresses`);
  const parsed = addresses.map((a, i) => compileAddress(a, `${kind} hop address ${i}`));
  const keys = parsed.map(formatAddress);
  const h: Hop = {
    circuit: circuit.auth,
    kind,
    addresses: parsed,
    keys,
    active: 0,
    auth: auth ? compileAuth(auth, `${kind} hop authenticator`) : undefined,
  };
  h.active = activeIndex(keys, circuit.active?.[kind], isDead);
  return h;
}

/** The address a hop should use: the recorded one if valid, else the first; never one we hold dead if another lives. */
function activeIndex(keys: string[], recorded: number | undefined, isDead: (key: string) => boolean): number {
  const i = recorded !== undefined && recorded >= 0 && recorded < keys.length ? recorded : 0;
  // The store may not know yet what this router knows: never start on a neighbour we hold dead.
  return isDead(keys[i]!) ? (nextLiveFrom(keys, i, isDead) ?? i) : i;
}

/** Two records of one circuit that differ at most in which addresses are active (and revision). */
function sameRoute(a: Circuit, b: Circuit): boolean {
  return (
    a.owner === b.owner &&
    a.ingressPop === b.ingressPop &&
    a.egressPop === b.egressPop &&
    a.internalAuth === b.internalAuth &&
    sameList(a.internalRouters, b.internalRouters) &&
    sameAction(a.action, b.action)
  );
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function sameAction(a: Circuit['action'], b: Circuit['action']): boolean {
  switch (a.kind) {
    case 'forward':
      return (
        b.kind === 'forward' && a.next.auth === b.next.auth && sameList(a.next.addresses, b.next.addresses)
      );
    case 'deliver-endpoint':
      return b.kind === 'deliver-endpoint' && a.auth === b.auth && sameList(a.addresses, b.addresses);
    case 'deliver-udp':
      return (
        b.kind === 'deliver-udp' &&
        a.target === b.target &&
        a.reply?.auth === b.reply?.auth &&
        sameList(a.reply?.addresses ?? [], b.reply?.addresses ?? [])
      );
    case 'deliver-ip':
      return (
        b.kind === 'deliver-ip' &&
        a.source === b.source &&
        sameList(a.prefixes, b.prefixes) &&
        a.reply?.auth === b.reply?.auth &&
        sameList(a.reply?.addresses ?? [], b.reply?.addresses ?? [])
      );
  }
}

/** The next address after the active one, in list order and wrapping, that is not dead. */
function nextLive(h: Hop, isDead: (key: string) => boolean): number | undefined {
  return nextLiveFrom(h.keys, h.active, isDead);
}

export function nextLiveFrom(
  keys: string[],
  from: number,
  isDead: (key: string) => boolean,
): number | undefined {
  for (let step = 1; step < keys.length; step++) {
    const i = (from + step) % keys.length;
    if (!isDead(keys[i]!)) return i;
  }
  return undefined;
}

/**
 * The entries one router holds for a circuit, by the PoP it sits in. A circuit from
 * PoP P to PoP Q gives P's routers an `internal` entry (keyed by the customer's
 * authenticator, rewriting to the internal one) and Q's routers the egress action
 * (keyed by the internal authenticator). When P == Q there is a single entry.
 * Pure: no I/O. Throws CompileError for a record it cannot turn into entries (a bad
 * address or authenticator, an unknown action): records can reach the store from older
 * portals or direct writes, and the table must survive them.
 */
export function compileCircuit(
  circuit: Circuit,
  pop: string,
  counters: CircuitCounters,
  isDead: (key: string) => boolean = () => false,
  previousGuard?: IngressGuard,
): Array<{ key: string; entry: Entry }> {
  const out: Array<{ key: string; entry: Entry }> = [];
  if (typeof circuit !== 'object' || circuit === null) throw new CompileError('record is not an object');
  compileAuth(circuit.auth, 'circuit authenticator');
  if (circuit.ingressPop !== pop && circuit.egressPop !== pop) return out;
  const sameCircuit = circuit.ingressPop === circuit.egressPop;
  const ingress = pop === circuit.ingressPop;
  const mbps: unknown = circuit.bandwidthMbps;
  if (ingress && !(typeof mbps === 'number' && Number.isFinite(mbps) && mbps > 0))
    throw new CompileError(
      `bandwidthMbps: expected a positive number to police at, got ${JSON.stringify(mbps)}`,
    );
  const guard = ingress ? ingressGuard(circuit, previousGuard) : undefined;
  const base = { circuit: circuit.auth, owner: circuit.owner, counters, ingress, guard };
  if (ingress && !sameCircuit) {
    out.push({
      key: authKeyFromHex(circuit.auth),
      entry: {
        ...base,
        kind: 'internal',
        next: hop(circuit, 'internal', circuit.internalRouters, circuit.internalAuth, isDead),
      },
    });
  }
  if (pop === circuit.egressPop) {
    // The egress entry of a circuit across PoPs is keyed by the internal authenticator: its
    // DATA has been checked at the ingress PoP already.
    if (!sameCircuit) base.guard = undefined;
    const key = compileAuth(
      sameCircuit ? circuit.auth : circuit.internalAuth,
      sameCircuit ? 'circuit authenticator' : 'internal authenticator',
    ).toString('latin1');
    const a = circuit.action as Circuit['action'] | undefined;
    if (typeof a !== 'object' || a === null) throw new CompileError('record has no action');
    let entry: Entry;
    switch (a.kind) {
      case 'forward':
        entry = {
          ...base,
          kind: 'forward',
          next: hop(circuit, 'next', a.next.addresses, a.next.auth, isDead),
        };
        break;
      case 'deliver-endpoint':
        entry = {
          ...base,
          kind: 'deliver-endpoint',
          next: hop(circuit, 'next', a.addresses, a.auth, isDead),
        };
        break;
      case 'deliver-udp':
        entry = {
          ...base,
          kind: 'deliver-udp',
          target: compileAddress(a.target, 'deliver-udp target'),
          reply: a.reply ? hop(circuit, 'reply', a.reply.addresses, a.reply.auth, isDead) : undefined,
        };
        break;
      case 'deliver-ip':
        entry = {
          ...base,
          kind: 'deliver-ip',
          prefixes: compilePrefixes(a.prefixes, 'deliver-ip prefixes'),
          source: compilePrefixes([a.source], 'deliver-ip source'),
          sourcePrefix: a.source,
          reply: a.reply ? hop(circuit, 'reply', a.reply.addresses, a.reply.auth, isDead) : undefined,
        };
        break;
      default:
        throw new CompileError(`unknown action kind ${JSON.stringify((a as { kind: unknown }).kind)}`);
    }
    out.push({ key, entry });
  }
  return out;
}

/** Fresh per-circuit counters; they live as long as the circuit is in the table, across re-chains. */
export function newCircuitCounters(): CircuitCounters {
  return {
    packets: 0,
    bytes: 0,
    dropped: 0,
    inPackets: 0,
    inBytes: 0,
    outPackets: 0,
    outBytes: 0,
    drops: {},
  };
}

/** Rejections listed by name in a router's published stats; the count covers all. */
export const MAX_PUBLISHED_REJECTIONS = 256;

function hopsOf(entry: Entry): Hop[] {
  if (entry.kind === 'deliver-udp' || entry.kind === 'deliver-ip') return entry.reply ? [entry.reply] : [];
  return [entry.next];
}

/**
 * Authenticator → action, for one router. Updated from store change events; read
 * by the packet loop with a single Map lookup. Counters live per circuit and
 * survive re-chaining, so a `chain` never resets a customer's accounting.
 *
 * It also indexes every hop by the neighbour it currently uses, so that repair is
 * per neighbour: one call moves every circuit off a dead next hop at once.
 */
export class ForwardingTable {
  private readonly entries = new Map<string, Entry>();
  /** circuit auth (hex) → keys it occupies in `entries`. */
  private readonly keysByCircuit = new Map<string, string[]>();
  private readonly counters = new Map<string, CircuitCounters>();
  /** Ingress policing and replay state per circuit, kept across re-chains like the counters. */
  private readonly guards = new Map<string, IngressGuard>();
  /** The store's record each circuit was compiled from, to tell a change of active hop from a new route. */
  private readonly records = new Map<string, Circuit>();
  /** neighbour `host:port` → hops whose active address it is. */
  private readonly byNeighbour = new Map<string, Set<Hop>>();
  revision = 0;
  /** Called when a circuit leaves this router's table, so per-circuit resources can be released. */
  onRemove: ((circuit: string) => void) | undefined;
  /** Told of every entry change (the kernel maps follow the table through it). */
  observer: TableObserver | undefined;
  /** Called when a record is rejected (see put), so the router can log it. */
  onReject: ((circuit: string, reason: string) => void) | undefined;
  private readonly rejections = new Map<string, string>();

  constructor(
    readonly pop: string,
    /** Which neighbours this router currently holds dead; consulted when compiling entries. */
    private readonly isDead: (key: string) => boolean = () => false,
  ) {}

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

  /** Neighbours some circuit currently sends to, with how many hops use each. */
  neighboursInUse(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [k, hops] of this.byNeighbour) if (hops.size > 0) out.set(k, hops.size);
    return out;
  }

  /**
   * Compiles a circuit record into the table. A record this router cannot compile is
   * skipped: any entries of an earlier version go (every router of the PoP, restarted or
   * not, then agrees on what the store says), the reason is kept for the router's stats,
   * and the call returns it. A later valid put replaces the rejection; a delete clears it.
   */
  put(circuit: Circuit): string | undefined {
    const auth = typeof circuit?.auth === 'string' ? circuit.auth : String(circuit?.auth);
    try {
      this.compileInto(circuit);
      this.observer?.flush?.();
      this.rejections.delete(auth);
      return undefined;
    } catch (err) {
      const reason =
        err instanceof CompileError ? err.message : `malformed record: ${(err as Error).message}`;
      this.remove(auth);
      this.rejections.set(auth, reason);
      this.onReject?.(auth, reason);
      return reason;
    }
  }

  private compileInto(circuit: Circuit): void {
    // Failover records (and our own repairs coming back by watch) change only which address is
    // active. A thousand of them arrive at once after a repair: move the hops in place rather than
    // recompiling every circuit, so the packet loop is not held up.
    const known = this.records.get(circuit.auth);
    if (known && sameRoute(known, circuit)) {
      this.records.set(circuit.auth, circuit);
      return this.applyActive(circuit);
    }
    let counters = this.counters.get(circuit.auth);
    // Compile before touching the table: a record that fails leaves nothing half-applied.
    const compiled = compileCircuit(
      circuit,
      this.pop,
      counters ?? newCircuitCounters(),
      this.isDead,
      this.guards.get(circuit.auth),
    );
    const had = this.keysByCircuit.has(circuit.auth);
    this.remove(circuit.auth, false);
    if (compiled.length === 0) {
      this.counters.delete(circuit.auth);
      this.guards.delete(circuit.auth);
      this.records.delete(circuit.auth);
      if (had) this.observer?.removed(circuit.auth);
      return;
    }
    const guard = compiled.find((c) => c.entry.guard)?.entry.guard;
    if (guard) this.guards.set(circuit.auth, guard);
    else this.guards.delete(circuit.auth);
    this.records.set(circuit.auth, circuit);
    counters ??= compiled[0]!.entry.counters;
    this.counters.set(circuit.auth, counters);
    for (const { key, entry } of compiled) {
      this.entries.set(key, entry);
      for (const h of hopsOf(entry)) this.index(h);
    }
    this.keysByCircuit.set(
      circuit.auth,
      compiled.map((c) => c.key),
    );
    if (this.observer) for (const { key, entry } of compiled) this.observer.compiled(key, entry);
  }

  /** Records skipped because they could not be compiled: circuit auth → reason. */
  get rejected(): ReadonlyMap<string, string> {
    return this.rejections;
  }

  /** Rejections for publishing: the count, and the first `limit` with their reasons (stats stay small). */
  snapshotRejections(limit = MAX_PUBLISHED_REJECTIONS): { count: number; circuits: Record<string, string> } {
    const circuits: Record<string, string> = {};
    let n = 0;
    for (const [auth, reason] of this.rejections) {
      if (n++ >= limit) break;
      circuits[auth] = reason;
    }
    return { count: this.rejections.size, circuits };
  }

  remove(circuitAuth: string, forget = true): void {
    if (forget) this.rejections.delete(circuitAuth);
    const keys = this.keysByCircuit.get(circuitAuth);
    if (keys)
      for (const k of keys) {
        const e = this.entries.get(k);
        if (e) for (const h of hopsOf(e)) this.unindex(h);
        this.entries.delete(k);
      }
    this.keysByCircuit.delete(circuitAuth);
    if (forget) {
      this.records.delete(circuitAuth);
      this.guards.delete(circuitAuth);
      const had = this.counters.delete(circuitAuth);
      if (keys) this.observer?.removed(circuitAuth);
      if (had || keys) this.onRemove?.(circuitAuth);
    }
  }

  replaceAll(circuits: Circuit[], revision: number): void {
    const keep = new Set(circuits.map((c) => c.auth));
    for (const auth of [...this.keysByCircuit.keys()]) if (!keep.has(auth)) this.remove(auth);
    for (const auth of [...this.rejections.keys()]) if (!keep.has(auth)) this.rejections.delete(auth);
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

  /**
   * Per-neighbour repair: moves every hop whose active address is `neighbour` to its
   * next live alternative, at once. Hops with no live alternative stay (and are
   * returned as stranded): there is nowhere better to send.
   */
  repairNeighbour(neighbour: string): { moved: HopMove[]; stranded: number } {
    const hops = this.byNeighbour.get(neighbour);
    const moved: HopMove[] = [];
    let stranded = 0;
    if (!hops) return { moved, stranded };
    for (const h of [...hops]) {
      const to = nextLive(h, this.isDead);
      if (to === undefined) {
        stranded++;
        continue;
      }
      this.unindex(h);
      h.active = to;
      this.index(h);
      this.tellMoved(h.circuit);
      moved.push({ circuit: h.circuit, kind: h.kind, from: neighbour, to: h.keys[to]!, active: to });
    }
    this.observer?.flush?.();
    return { moved, stranded };
  }

  /** Points each hop of the circuit at the address its record names active (skipping any we hold dead). */
  private applyActive(circuit: Circuit): void {
    for (const key of this.keysByCircuit.get(circuit.auth) ?? []) {
      const entry = this.entries.get(key);
      if (!entry) continue;
      let changed = false;
      for (const h of hopsOf(entry)) {
        const target = activeIndex(h.keys, circuit.active?.[h.kind], this.isDead);
        if (target === h.active) continue;
        this.unindex(h);
        h.active = target;
        this.index(h);
        changed = true;
      }
      if (changed) this.observer?.moved(key, entry);
    }
  }

  /** Tells the observer that a hop of `circuit` moved: one call per entry. */
  private tellMoved(circuit: string): void {
    if (!this.observer) return;
    for (const key of this.keysByCircuit.get(circuit) ?? []) this.observer.moved(key, this.entries.get(key)!);
  }

  /** Per-circuit counters for publishing, keyed by customer authenticator. */
  snapshotCounters(): Record<string, CircuitCounters> {
    const out: Record<string, CircuitCounters> = {};
    for (const [auth, c] of this.counters) out[auth] = { ...c, drops: { ...c.drops } };
    return out;
  }

  private index(h: Hop): void {
    const k = h.keys[h.active];
    if (k === undefined) return;
    let set = this.byNeighbour.get(k);
    if (!set) this.byNeighbour.set(k, (set = new Set()));
    set.add(h);
  }

  private unindex(h: Hop): void {
    const k = h.keys[h.active];
    if (k !== undefined) this.byNeighbour.get(k)?.delete(h);
  }
}
