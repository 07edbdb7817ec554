/**
 * The kernel fast path's user-space side (docs/dataplane.md): loading the program
 * (src/router/bpf/arrow.bpf.c, built for XDP and for tc) with libbpf through the addon
 * src/router/bpf-native.c, attaching it, and owning its maps. The router writes its table into them (`KernelCircuits`), a repair is one map update per
 * circuit, and the kernel's counters are read back as the Node table's CircuitCounters.
 *
 * The encoders and decoders at the top are pure: they fix the byte layout of the map values, which
 * must match the C structs, and are tested without BPF (test/kernel-encode.test.ts).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isIPv4 } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { CircuitCounters } from '../store/circuit.js';
import { AUTH_LENGTH } from '../wire/header.js';
import { SIP_KEY_LENGTH } from '../wire/siphash.js';
import type { DropReason } from './dataplane.js';
import type { Entry, EntryKind } from './table.js';
import type { IpPrefix } from '../wire/address.js';
import { ipv4Word, maskWord } from '../wire/prefix-set.js';

// ---- Layout of the map values (keep in step with arrow.bpf.c) ------------------------------------

/** struct arrow_circuit. */
export const CIRCUIT_VALUE_SIZE = 48;
/** struct arrow_slot. */
export const SLOT_VALUE_SIZE = 72;
/** struct arrow_tag_guard. */
export const TAG_GUARD_SIZE = 288;
/** struct arrow_config. */
export const CONFIG_SIZE = 24;
/** struct arrow_prefix_key: prefix length (u32), slot (4, big-endian), role (1), IPv4 address (4). */
export const PREFIX_KEY_SIZE = 13;
/** The key bits before the address: the slot and the role. */
const PREFIX_KEY_BASE_BITS = 40;
export const PrefixRole = { destination: 0, source: 1 } as const;

export const KernelKind = { forward: 1, internal: 2, 'deliver-endpoint': 3, 'deliver-ip': 4 } as const;
export type KernelEntryKind = keyof typeof KernelKind;

export const CF_INGRESS = 0x01;
export const CF_POLICE = 0x02;
export const CF_TAGGED = 0x04;
export const CF_REWRITE = 0x08;
export const CF_DECAP = 0x10;

/** BPF_F_LOCK, BPF_ANY: map update flags. */
const BPF_ANY = 0;

/** Router-wide counters of the `stats` map, by index (enum arrow_stat). */
export const STAT_NAMES = [
  'passNotOurs',
  'passMalformed',
  'passNotData',
  'passUnknown',
  'passNoRoute',
  'passBig',
  'tx',
  'redirect',
  'dropHopLimit',
  'dropOverRate',
  'dropBadTag',
  'dropReplay',
  'error',
  'passEgress',
  'decap',
  'dropNotIp',
  'dropOutsidePrefixes',
  'dropSpoofedSource',
] as const;
export type KernelStatName = (typeof STAT_NAMES)[number];
export type KernelStats = Record<KernelStatName, number>;

/** XDP verdicts (enum xdp_action). */
export const XdpAction = { aborted: 0, drop: 1, pass: 2, tx: 3, redirect: 4 } as const;
/**
 * tc verdicts (TC_ACT_*). The program passes with `unspec` (-1, TCX_NEXT: the next program on the
 * hook, then the stack), so that the routers of a loopback lab can share lo's hook.
 */
export const TcAction = { unspec: -1, ok: 0, shot: 2, redirect: 7 } as const;

/** The two builds of the same path: XDP, or tc (clsact) ingress where the interface has no XDP. */
export type ProgramKind = 'xdp' | 'tc';

/** What a program did with a frame, in the same words for both: `sent` is XDP_TX or a redirect. */
export type Verdict = 'pass' | 'drop' | 'sent' | 'other';

export function verdictOf(program: ProgramKind, action: number): Verdict {
  if (program === 'xdp')
    return action === XdpAction.pass
      ? 'pass'
      : action === XdpAction.drop
        ? 'drop'
        : action === XdpAction.tx || action === XdpAction.redirect
          ? 'sent'
          : 'other';
  return action === TcAction.unspec || action === TcAction.ok
    ? 'pass'
    : action === TcAction.shot
      ? 'drop'
      : action === TcAction.redirect
        ? 'sent'
        : 'other';
}

/** Why an entry stays on the Node path; undefined when the kernel can take it. */
export function kernelRefusal(entry: Entry): string | undefined {
  if (entry.kind === 'deliver-udp') return 'deliver-udp circuits are delivered by the Node router';
  if (entry.kind === 'deliver-ip') return undefined;
  const to = entry.next.addresses[entry.next.active];
  if (to === undefined) return 'no active next hop';
  if (!isIPv4(to.host)) return 'the kernel path forwards over IPv4 only';
  return undefined;
}

/** IPv4 dotted quad → 4 bytes in network order (the caller has checked it is one). */
export function ipv4Bytes(host: string, out: Buffer, at: number): void {
  const parts = host.split('.');
  for (let i = 0; i < 4; i++) out[at + i] = Number(parts[i]);
}

/**
 * struct arrow_circuit for a table entry in slot `slot`: what the program reads per packet.
 * Throws for an entry the kernel cannot take (check kernelRefusal first). Integers are in host
 * (little-endian) order except the next hop's address and port, which are as on the wire.
 */
export function encodeCircuit(entry: Entry, slot: number, decap = false): Buffer {
  return encodeCircuitInto(entry, slot, Buffer.alloc(CIRCUIT_VALUE_SIZE), decap);
}

/** A u64 in host order from a JS integer below 2^53, without BigInt (a repair writes thousands). */
function writeU64(v: Buffer, n: number, at: number): void {
  v.writeUInt32LE(n % 0x1_0000_0000, at);
  v.writeUInt32LE(Math.floor(n / 0x1_0000_0000), at + 4);
}

/**
 * encodeCircuit into `v` (CIRCUIT_VALUE_SIZE bytes, overwritten whole): no allocation. `decap`:
 * a deliver-ip circuit the kernel decapsulates (CF_DECAP: the egress serves its customer and this
 * is the circuit the answers take); without it the kernel passes its DATA up to the Node router.
 */
export function encodeCircuitInto(entry: Entry, slot: number, v: Buffer, decap = false): Buffer {
  const refusal = kernelRefusal(entry);
  if (refusal !== undefined || entry.kind === 'deliver-udp')
    throw new Error(`not a kernel entry: ${refusal}`);
  v.fill(0);
  v.writeUInt32LE(slot, 0);
  v[4] = KernelKind[entry.kind];
  let flags = 0;
  if (entry.ingress) flags |= CF_INGRESS;
  if (entry.guard !== undefined) flags |= CF_POLICE;
  if (entry.guard?.tagKey !== undefined) flags |= CF_TAGGED;
  if (entry.kind === 'deliver-ip') {
    // Not a circuit that enters the ISP here (policed, maybe tagged): its bucket and replay window
    // must live in one place, and some of its packets (inner IPv6, GSO, before a claim) go up to
    // Node, which would check them against a window of its own. Such circuits decapsulate in Node.
    if (decap && entry.guard === undefined) flags |= CF_DECAP;
  } else {
    const next = entry.next;
    const to = next.addresses[next.active]!;
    if (next.auth !== undefined) flags |= CF_REWRITE;
    v.writeUInt16BE(to.port, 6);
    ipv4Bytes(to.host, v, 8);
    next.auth?.copy(v, 12, 0, AUTH_LENGTH);
  }
  v[5] = flags;
  // 28-31: padding before the u64s.
  if (entry.guard !== undefined) {
    writeU64(v, entry.guard.police.nsPerByteQ16, 32);
    writeU64(v, entry.guard.police.burstNs, 40);
  }
  return v;
}

/** A fresh struct arrow_tag_guard for a tag key (16 bytes): an empty replay window. */
export function encodeTagGuard(tagKey: Buffer): Buffer {
  if (tagKey.length !== SIP_KEY_LENGTH) throw new Error('a tag key is 16 bytes');
  const v = Buffer.alloc(TAG_GUARD_SIZE);
  tagKey.copy(v, 16);
  return v;
}

/**
 * struct arrow_config: the router's own IPv4 address and UDP port, the egress TUN's ifindex
 * (0: none), and the test clock.
 */
export function encodeConfig(host: string, port: number, testNowNs = 0n, egressIfindex = 0): Buffer {
  if (!isIPv4(host)) throw new Error(`the kernel path needs the router's IPv4 address, got ${host}`);
  const v = Buffer.alloc(CONFIG_SIZE);
  ipv4Bytes(host, v, 0);
  v.writeUInt16BE(port, 4);
  v.writeUInt32LE(egressIfindex, 8);
  v.writeBigUInt64LE(testNowNs, CONFIG_CLOCK_AT);
  return v;
}

const CONFIG_CLOCK_AT = 16;

/**
 * The LPM keys of a deliver-ip circuit in slot `slot`: its destination prefixes and its customer's
 * source prefix, IPv4 only (the kernel passes inner IPv6 up to the Node router).
 */
export function encodePrefixKeys(entry: Entry & { kind: 'deliver-ip' }, slot: number): Buffer[] {
  const keys: Buffer[] = [];
  const add = (role: number, prefixes: readonly IpPrefix[]): void => {
    for (const p of prefixes) {
      if (p.family !== 4) continue;
      const k = Buffer.alloc(PREFIX_KEY_SIZE);
      k.writeUInt32LE(PREFIX_KEY_BASE_BITS + p.length, 0);
      k.writeUInt32BE(slot, 4);
      k[8] = role;
      // Bits past the prefix length are ignored by the trie, but zero keeps equal keys equal.
      k.writeUInt32BE((ipv4Word(p.network) & maskWord(p.length)) >>> 0, 9);
      keys.push(k);
    }
  };
  add(PrefixRole.destination, entry.prefixes.prefixes);
  add(PrefixRole.source, entry.source.prefixes);
  return keys;
}

/** The kernel's counters of one circuit (struct arrow_slot, without the lock and the bucket). */
export interface SlotCounters {
  packets: number;
  bytes: number;
  outBytes: number;
  hopLimitBytes: number;
  /** u32 in the kernel: see foldSlot. */
  hopLimit: number;
  overRate: number;
  badTag: number;
  replay: number;
  /** deliver-ip refusals of the inner packet. */
  notIp: number;
  outsidePrefixes: number;
  spoofedSource: number;
}

export function decodeSlot(v: Buffer): SlotCounters {
  return {
    hopLimit: v.readUInt32LE(4),
    packets: Number(v.readBigUInt64LE(16)),
    bytes: Number(v.readBigUInt64LE(24)),
    outBytes: Number(v.readBigUInt64LE(32)),
    hopLimitBytes: Number(v.readBigUInt64LE(40)),
    overRate: v.readUInt32LE(48),
    badTag: v.readUInt32LE(52),
    replay: v.readUInt32LE(56),
    notIp: v.readUInt32LE(60),
    outsidePrefixes: v.readUInt32LE(64),
    spoofedSource: v.readUInt32LE(68),
  };
}

const U32_FIELDS = [
  'hopLimit',
  'overRate',
  'badTag',
  'replay',
  'notIp',
  'outsidePrefixes',
  'spoofedSource',
] as const;

/**
 * Totals from a new raw read: the kernel's drop counters are u32 (they keep a circuit's kernel
 * state at 64 bytes), so each is folded in as its change since the last read, modulo 2^32. Exact
 * as long as a counter is read before it moves by 2^32 (71 minutes of drops at 1 Mpps); the router
 * reads every stats interval. The u64 counters are taken as they are.
 */
export function foldSlot(total: SlotCounters, lastRaw: SlotCounters, raw: SlotCounters): SlotCounters {
  const out = { ...raw };
  for (const f of U32_FIELDS) out[f] = total[f] + ((raw[f] - lastRaw[f]) >>> 0);
  return out;
}

export const ZERO_SLOT: SlotCounters = {
  packets: 0,
  bytes: 0,
  outBytes: 0,
  hopLimitBytes: 0,
  hopLimit: 0,
  overRate: 0,
  badTag: 0,
  replay: 0,
  notIp: 0,
  outsidePrefixes: 0,
  spoofedSource: 0,
};

/**
 * The Node table's counters of a circuit from the kernel's: the same accounting as DataPlane
 * (`in` at an ingress router, admitted packets plus hop-limit drops; `out` except on an internal
 * hop; refusals at the door never `in`).
 */
export function circuitCounters(s: SlotCounters, kind: EntryKind, ingress: boolean): CircuitCounters {
  const drops: Partial<Record<DropReason, number>> = {};
  if (s.hopLimit > 0) drops['hop-limit'] = s.hopLimit;
  if (s.overRate > 0) drops['over-rate'] = s.overRate;
  if (s.badTag > 0) drops['bad-tag'] = s.badTag;
  if (s.replay > 0) drops.replay = s.replay;
  if (s.notIp > 0) drops['not-ip'] = s.notIp;
  if (s.outsidePrefixes > 0) drops['outside-prefixes'] = s.outsidePrefixes;
  if (s.spoofedSource > 0) drops['spoofed-source'] = s.spoofedSource;
  const out = kind !== 'internal';
  // deliver-ip counts a packet before checking its inner header (DataPlane.process): the refused
  // ones are in `packets` but never `out`.
  const refusedInside = s.notIp + s.outsidePrefixes + s.spoofedSource;
  return {
    packets: s.packets,
    bytes: s.bytes,
    dropped: s.hopLimit + s.overRate + s.badTag + s.replay + refusedInside,
    inPackets: ingress ? s.packets + s.hopLimit : 0,
    inBytes: ingress ? s.bytes + s.hopLimitBytes : 0,
    outPackets: out ? s.packets - refusedInside : 0,
    outBytes: out ? s.outBytes : 0,
    drops,
  };
}

// ---- The addon ---------------------------------------------------------------------------------

/** The addon's functions (src/router/bpf-native.c). */
export interface BpfNative {
  open(path: string): object;
  close(obj: object): void;
  setConst(obj: object, name: string, value: number): void;
  setMaxEntries(obj: object, map: string, n: number): void;
  load(obj: object): void;
  mapFd(obj: object, map: string): number;
  mapValueSize(obj: object, map: string): number;
  programFd(obj: object, program: string): number;
  programId(fd: number): number;
  mapUpdate(fd: number, key: Buffer, value: Buffer, flags: number): number;
  mapUpdateBatch(fd: number, keys: Buffer, values: Buffer, count: number): number;
  mapDelete(fd: number, key: Buffer): number;
  mapLookup(fd: number, key: Buffer, value: Buffer): boolean;
  percpuSum(fd: number, key: Buffer, valueSize: number, out: Buffer): boolean;
  possibleCpus(): number;
  attachXdp(progFd: number, ifindex: number, mode: XdpMode): number;
  attachTc(progFd: number, ifindex: number, egress: boolean): number;
  detach(linkFd: number): void;
  testRun(
    progFd: number,
    dataIn: Buffer,
    dataOut: Buffer,
    ifindex: number,
    repeat: number,
    gsoSegs: number,
    gsoSize: number,
  ): [retval: number, size: number, nsPerRun: number];
}

/** The kernel path cannot be used here; the message says why (the router then uses the Node path). */
export class KernelUnavailable extends Error {
  override name = 'KernelUnavailable';
}

/** A map call the kernel refused. */
export class KernelMapError extends Error {
  override name = 'KernelMapError';
}

export const ADDON = fileURLToPath(new URL('../../native/arrow-bpf.node', import.meta.url));
export const OBJECT = fileURLToPath(new URL('../../native/arrow.bpf.o', import.meta.url));

let native: BpfNative | undefined;

/** The libbpf addon, loaded once; KernelUnavailable when it is not built or not on Linux. */
export function loadNative(): BpfNative {
  if (native) return native;
  if (process.platform !== 'linux') throw new KernelUnavailable('the kernel path needs Linux');
  for (const f of [ADDON, OBJECT])
    if (!existsSync(f))
      throw new KernelUnavailable(
        `${f} is not built: run npm run build (it needs clang and libbpf-dev: docs/dataplane.md)`,
      );
  native = createRequire(import.meta.url)(ADDON) as BpfNative;
  return native;
}

/** XDP in the driver, generic (in the stack, any interface), either; or tc ingress (tcx). */
export type XdpMode = 'native' | 'generic' | 'auto';
export type AttachMode = XdpMode | 'tc';

export interface KernelOptions {
  /** Map capacity in circuits (the circuits and slots maps). Default 65536. */
  maxCircuits?: number;
  /**
   * Capacity of the tags map: ingress circuits that require tags. Default maxCircuits. The map is
   * preallocated (360 bytes an entry), so a router that sells few tagged circuits sets it lower.
   */
  maxTagged?: number;
  /**
   * Tests only: policing reads the clock from the config map (setTestClock) instead of
   * bpf_ktime_get_ns, and frames go back out with their MACs swapped instead of through
   * bpf_fib_lookup, which BPF_PROG_TEST_RUN cannot route.
   */
  testMode?: boolean;
  /**
   * The router's address is on loopback: no route lookup (every next hop is a local address, which
   * the kernel does not forward to); the frame goes back out of lo and comes in for the next hop.
   */
  loopback?: boolean;
}

export interface TestRunResult {
  /** The program's return code (XdpAction or TcAction). */
  action: number;
  verdict: Verdict;
  /** The frame as the program left it (after any bpf_xdp_adjust_head). */
  frame: Buffer;
  /** Mean time of one run, ns, as the kernel measured it (over `repeat` runs). */
  nsPerRun: number;
}

/** The loaded XDP program and its maps. */
export class KernelProgram {
  private readonly n: BpfNative;
  private readonly obj: object;
  readonly programs: Record<ProgramKind, number>;
  readonly maps: {
    circuits: number;
    slots: number;
    tags: number;
    prefixes: number;
    config: number;
    stats: number;
  };
  private links = new Map<number, number>();
  private config: Buffer = Buffer.alloc(CONFIG_SIZE);

  private constructor(
    n: BpfNative,
    obj: object,
    /** Circuits the maps hold at most. */
    readonly capacity: number,
  ) {
    this.n = n;
    this.obj = obj;
    this.programs = { xdp: n.programFd(obj, 'arrow_xdp'), tc: n.programFd(obj, 'arrow_tc') };
    this.maps = {
      circuits: n.mapFd(obj, 'circuits'),
      slots: n.mapFd(obj, 'slots'),
      tags: n.mapFd(obj, 'tags'),
      prefixes: n.mapFd(obj, 'prefixes'),
      config: n.mapFd(obj, 'config'),
      stats: n.mapFd(obj, 'stats'),
    };
  }

  /** Opens, sizes and loads the program: throws KernelUnavailable (no addon, no BPF, no root, a verifier refusal). */
  static load(opts: KernelOptions = {}): KernelProgram {
    const n = loadNative();
    const obj = n.open(OBJECT);
    try {
      const max = opts.maxCircuits ?? 65536;
      n.setMaxEntries(obj, 'circuits', max);
      n.setMaxEntries(obj, 'slots', max);
      n.setMaxEntries(obj, 'tags', opts.maxTagged ?? max);
      // A deliver-ip circuit has a few prefixes; the trie allocates only what is used.
      n.setMaxEntries(obj, 'prefixes', max * 4);
      if (opts.testMode) n.setConst(obj, 'clock_from_map', 1);
      if (opts.testMode || opts.loopback) n.setConst(obj, 'use_fib', 0);
      // The encoders here and the structs there must agree, or every map update is garbage.
      const sizes = {
        circuits: CIRCUIT_VALUE_SIZE,
        slots: SLOT_VALUE_SIZE,
        tags: TAG_GUARD_SIZE,
        config: CONFIG_SIZE,
        prefixes: PREFIX_PRESENT.length,
      };
      for (const [m, size] of Object.entries(sizes))
        if (n.mapValueSize(obj, m) !== size)
          throw new Error(
            `map ${m}: the object's values are ${n.mapValueSize(obj, m)} bytes, kernel.ts writes ${size}`,
          );
      n.load(obj);
      return new KernelProgram(n, obj, max);
    } catch (err) {
      n.close(obj);
      throw new KernelUnavailable(`loading the XDP program: ${(err as Error).message}`);
    }
  }

  /** The kernel's ids of the two programs, for `bpftool prog show id N` and the router's status. */
  programIds(): Record<ProgramKind, number> {
    return { xdp: this.n.programId(this.programs.xdp), tc: this.n.programId(this.programs.tc) };
  }

  /** The router's own address: DATA to anything else goes up untouched. */
  setAddress(host: string, port: number): void {
    this.config = encodeConfig(
      host,
      port,
      this.config.readBigUInt64LE(CONFIG_CLOCK_AT),
      this.config.readUInt32LE(8),
    );
    this.update(this.maps.config, u32(0), this.config);
  }

  /** The egress TUN deliver-ip circuits decapsulate into (its ifindex); 0: none, all go up to Node. */
  setEgress(ifindex: number): void {
    this.config.writeUInt32LE(ifindex, 8);
    this.update(this.maps.config, u32(0), this.config);
  }

  /** Tests only (testMode): the time policing sees, ns. */
  setTestClock(ns: number): void {
    this.config.writeBigUInt64LE(BigInt(ns), CONFIG_CLOCK_AT);
    this.update(this.maps.config, u32(0), this.config);
  }

  /**
   * Attaches to an interface (XDP, or tc ingress); the program stays attached while this process
   * holds the link, so a router that dies stops forwarding as it would without the kernel path.
   */
  attach(ifindex: number, mode: AttachMode = 'auto'): void {
    if (this.links.has(ifindex)) return;
    const link =
      mode === 'tc'
        ? this.n.attachTc(this.programs.tc, ifindex, false)
        : this.n.attachXdp(this.programs.xdp, ifindex, mode);
    this.links.set(ifindex, link);
  }

  detach(ifindex: number): void {
    const link = this.links.get(ifindex);
    if (link === undefined) return;
    this.links.delete(ifindex);
    this.n.detach(link);
  }

  /**
   * BPF_PROG_TEST_RUN: a frame through the program, no network needed; as if it arrived on
   * `ifindex` when given (the route lookup needs it). With `repeat`, the same frame that many times
   * (state such as counters and the replay window moves each time), for a timing.
   */
  testRun(
    frame: Buffer,
    opts: {
      program?: ProgramKind;
      ifindex?: number;
      repeat?: number;
      /** tc only: the frame is a GSO super-packet of `segs` segments of `size` bytes. */
      gso?: { segs: number; size: number };
    } = {},
  ): TestRunResult {
    const program = opts.program ?? 'xdp';
    // The addon passes an xdp_md for the arrival interface; a tc run has no such context.
    if (program === 'tc' && opts.ifindex !== undefined) throw new Error('testRun: ifindex is for XDP only');
    if (program === 'xdp' && opts.gso !== undefined) throw new Error('testRun: gso is for tc only');
    const out = Buffer.alloc(frame.length + 256);
    const [retval, size, nsPerRun] = this.n.testRun(
      this.programs[program],
      frame,
      out,
      opts.ifindex ?? 0,
      opts.repeat ?? 1,
      opts.gso?.segs ?? 0,
      opts.gso?.size ?? 0,
    );
    // The addon hands back the u32 retval; tc verdicts are signed (TC_ACT_UNSPEC is -1).
    const action = program === 'tc' ? retval | 0 : retval;
    return { action, verdict: verdictOf(program, action), frame: out.subarray(0, size), nsPerRun };
  }

  /** The router-wide counters, summed over CPUs. */
  stats(): KernelStats {
    const out = Buffer.alloc(8);
    const s = {} as KernelStats;
    STAT_NAMES.forEach((name, i) => {
      s[name] = this.n.percpuSum(this.maps.stats, u32(i), 8, out) ? Number(out.readBigUInt64LE(0)) : 0;
    });
    return s;
  }

  update(fd: number, key: Buffer, value: Buffer, flags = BPF_ANY): void {
    const r = this.n.mapUpdate(fd, key, value, flags);
    if (r !== 0) throw new KernelMapError(`map update: errno ${-r}`);
  }

  /** `count` updates in one BPF_MAP_UPDATE_BATCH: keys and values packed back to back. */
  updateBatch(fd: number, keys: Buffer, values: Buffer, count: number): void {
    const r = this.n.mapUpdateBatch(fd, keys, values, count);
    if (r !== 0) throw new KernelMapError(`map batch update of ${count}: errno ${-r}`);
  }

  /** An update that may find the map full (E2BIG): false then. */
  tryUpdate(fd: number, key: Buffer, value: Buffer, flags = BPF_ANY): boolean {
    const r = this.n.mapUpdate(fd, key, value, flags);
    if (r === -7) return false; // E2BIG: a full hash map
    if (r !== 0) throw new KernelMapError(`map update: errno ${-r}`);
    return true;
  }

  delete(fd: number, key: Buffer): boolean {
    const r = this.n.mapDelete(fd, key);
    if (r === 0) return true;
    if (r === -2) return false; // ENOENT
    throw new KernelMapError(`map delete: errno ${-r}`);
  }

  lookup(fd: number, key: Buffer, size: number): Buffer | undefined {
    const v = Buffer.alloc(size);
    return this.n.mapLookup(fd, key, v) ? v : undefined;
  }

  close(): void {
    for (const ifindex of [...this.links.keys()]) this.detach(ifindex);
    this.n.close(this.obj);
  }
}

/** The prefixes map's value: presence is all the program reads. */
const PREFIX_PRESENT = Buffer.from([1]);

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n, 0);
  return b;
}

interface Held {
  key: Buffer;
  slot: number;
  kind: KernelEntryKind;
  ingress: boolean;
  tagKeyHex: string | undefined;
  /** A deliver-ip circuit's keys in the prefixes map (hex). */
  prefixKeys: Set<string>;
  lastRaw: SlotCounters;
  total: SlotCounters;
}

/**
 * The router's circuits in the kernel maps, one entry per circuit, keyed by the customer's
 * authenticator (hex) as the Node table is. A circuit keeps its slot (its counters and its
 * policing bucket) across re-chains, and its replay window while its tag key stays the same,
 * exactly as ForwardingTable keeps counters and guards.
 */
export class KernelCircuits {
  private readonly held = new Map<string, Held>();
  private readonly free: number[] = [];
  private nextSlot = 0;
  /** Every circuit value is encoded here: the kernel copies it in the update. */
  private readonly scratch = Buffer.alloc(CIRCUIT_VALUE_SIZE);
  /** Repoints waiting for `flush`: keys and values packed as BPF_MAP_UPDATE_BATCH takes them. */
  private staged = {
    keys: Buffer.alloc(64 * AUTH_LENGTH),
    values: Buffer.alloc(64 * CIRCUIT_VALUE_SIZE),
    circuits: [] as string[],
  };

  /**
   * @param decapsulates whether the kernel decapsulates a deliver-ip circuit now (CF_DECAP): the
   *   router's egress serves its customer and the circuit is the one its answers take. Read at
   *   every write of the circuit; `refresh` rewrites one when the answer changes.
   */
  constructor(
    private readonly prog: KernelProgram,
    private readonly decapsulates: (entry: Entry) => boolean = () => false,
  ) {}

  get size(): number {
    return this.held.size;
  }

  /**
   * Writes (or replaces) a circuit's entry: `key` is the 16-byte authenticator packets carry to this
   * router. Returns why the kernel cannot take it (the Node path keeps it), or undefined. A change of
   * active next hop is this same call: one update of the circuit's map value.
   */
  put(entry: Entry, key: Buffer): string | undefined {
    const refusal = kernelRefusal(entry);
    if (refusal !== undefined || entry.kind === 'deliver-udp') {
      this.remove(entry.circuit);
      return refusal;
    }
    let h = this.held.get(entry.circuit);
    if (h !== undefined && !h.key.equals(key)) {
      // Re-keyed (a new internal authenticator): the old key must stop matching.
      this.prog.delete(this.prog.maps.circuits, h.key);
      h.key = Buffer.from(key);
    }
    if (h === undefined) {
      const slot = this.free.pop() ?? this.nextSlot++;
      if (slot >= this.prog.capacity) {
        this.nextSlot--;
        return `the kernel maps are full (${this.prog.capacity} circuits)`;
      }
      // A fresh slot: zero counters, a full bucket.
      this.prog.update(this.prog.maps.slots, u32(slot), Buffer.alloc(SLOT_VALUE_SIZE));
      h = {
        key: Buffer.from(key),
        slot,
        kind: entry.kind,
        ingress: entry.ingress,
        tagKeyHex: undefined,
        prefixKeys: new Set(),
        lastRaw: { ...ZERO_SLOT },
        total: { ...ZERO_SLOT },
      };
      this.held.set(entry.circuit, h);
    }
    h.kind = entry.kind;
    h.ingress = entry.ingress;
    const tagKeyHex = entry.guard?.tagKeyHex;
    if (tagKeyHex !== h.tagKeyHex) {
      // A new key restarts the window (ingress.ts); a circuit that stops requiring tags drops it.
      if (tagKeyHex === undefined) this.prog.delete(this.prog.maps.tags, u32(h.slot));
      else if (
        !this.prog.tryUpdate(this.prog.maps.tags, u32(h.slot), encodeTagGuard(Buffer.from(tagKeyHex, 'hex')))
      ) {
        this.remove(entry.circuit);
        return 'the kernel tags map is full (KernelOptions.maxTagged)';
      }
      h.tagKeyHex = tagKeyHex;
    }
    // A deliver-ip circuit's prefixes before its value, so the program never checks an inner
    // packet against a half-written set; those it no longer has go after.
    const stale = this.writePrefixes(h, entry);
    // Last, so the program never sees the circuit before its slot and tag guard are ready. For a
    // circuit already held with the same tag key (a repair), this is the only map update.
    this.prog.update(
      this.prog.maps.circuits,
      h.key,
      encodeCircuitInto(entry, h.slot, this.scratch, this.decapsulates(entry)),
    );
    for (const k of stale) this.deletePrefix(h, k);
    return undefined;
  }

  /** Rewrites a held circuit's value (its CF_DECAP changed); false when it is not held. */
  refresh(entry: Entry): boolean {
    const h = this.held.get(entry.circuit);
    if (h === undefined) return false;
    return this.put(entry, h.key) === undefined;
  }

  /** Adds the entry's prefix keys; returns the held ones it no longer has (to delete after). */
  private writePrefixes(h: Held, entry: Entry): string[] {
    const want = entry.kind === 'deliver-ip' ? encodePrefixKeys(entry, h.slot) : [];
    const wanted = new Set<string>();
    for (const k of want) {
      const hex = k.toString('hex');
      wanted.add(hex);
      if (h.prefixKeys.has(hex)) continue;
      this.prog.update(this.prog.maps.prefixes, k, PREFIX_PRESENT);
      h.prefixKeys.add(hex);
    }
    return [...h.prefixKeys].filter((k) => !wanted.has(k));
  }

  private deletePrefix(h: Held, hex: string): void {
    this.prog.delete(this.prog.maps.prefixes, Buffer.from(hex, 'hex'));
    h.prefixKeys.delete(hex);
  }

  /**
   * A repair of a circuit already held under the same key and tag key: its value, with the entry's
   * active next hop, staged for `flush`, which writes every staged one in a single
   * BPF_MAP_UPDATE_BATCH (a repair moves thousands at once on the router's thread). False when the
   * circuit is not held so: then `put`. Until `flush`, the caller makes no other call here.
   */
  stage(entry: Entry): boolean {
    const h = this.held.get(entry.circuit);
    if (h === undefined || kernelRefusal(entry) !== undefined || entry.guard?.tagKeyHex !== h.tagKeyHex)
      return false;
    const n = this.staged.circuits.length;
    if ((n + 1) * CIRCUIT_VALUE_SIZE > this.staged.values.length) {
      const keys = Buffer.alloc(this.staged.keys.length * 2);
      const values = Buffer.alloc(this.staged.values.length * 2);
      this.staged.keys.copy(keys);
      this.staged.values.copy(values);
      this.staged.keys = keys;
      this.staged.values = values;
    }
    h.key.copy(this.staged.keys, n * AUTH_LENGTH);
    encodeCircuitInto(entry, h.slot, this.scratch, this.decapsulates(entry)).copy(
      this.staged.values,
      n * CIRCUIT_VALUE_SIZE,
    );
    this.staged.circuits.push(entry.circuit);
    return true;
  }

  /**
   * Writes what `stage` staged: one batch; if the kernel refuses it, each one alone, so that only
   * the circuits it refuses fail. Returns those, with the error.
   */
  flush(): { circuit: string; error: KernelMapError }[] {
    const circuits = this.staged.circuits;
    if (circuits.length === 0) return [];
    this.staged.circuits = [];
    const fd = this.prog.maps.circuits;
    try {
      this.prog.updateBatch(
        fd,
        this.staged.keys.subarray(0, circuits.length * AUTH_LENGTH),
        this.staged.values.subarray(0, circuits.length * CIRCUIT_VALUE_SIZE),
        circuits.length,
      );
      return [];
    } catch (err) {
      if (!(err instanceof KernelMapError)) throw err;
    }
    const failed: { circuit: string; error: KernelMapError }[] = [];
    for (const [i, circuit] of circuits.entries()) {
      const key = this.staged.keys.subarray(i * AUTH_LENGTH, (i + 1) * AUTH_LENGTH);
      const value = this.staged.values.subarray(i * CIRCUIT_VALUE_SIZE, (i + 1) * CIRCUIT_VALUE_SIZE);
      try {
        this.prog.update(fd, key, value);
      } catch (err) {
        if (!(err instanceof KernelMapError)) throw err;
        failed.push({ circuit, error: err });
      }
    }
    return failed;
  }

  remove(circuit: string): void {
    const h = this.held.get(circuit);
    if (h === undefined) return;
    this.held.delete(circuit);
    this.prog.delete(this.prog.maps.circuits, h.key);
    if (h.tagKeyHex !== undefined) this.prog.delete(this.prog.maps.tags, u32(h.slot));
    // After the value: no packet finds the circuit any more, so none sees its prefixes go.
    for (const k of [...h.prefixKeys]) this.deletePrefix(h, k);
    this.free.push(h.slot);
  }

  has(circuit: string): boolean {
    return this.held.has(circuit);
  }

  /** The circuit's counters as the Node table keeps them, from the kernel's; undefined if not held. */
  counters(circuit: string): CircuitCounters | undefined {
    const h = this.held.get(circuit);
    if (h === undefined) return undefined;
    const v = this.prog.lookup(this.prog.maps.slots, u32(h.slot), SLOT_VALUE_SIZE);
    if (v === undefined) throw new KernelMapError(`slot ${h.slot} of circuit ${circuit} is missing`);
    const raw = decodeSlot(v);
    h.total = foldSlot(h.total, h.lastRaw, raw);
    h.lastRaw = raw;
    return circuitCounters(h.total, h.kind, h.ingress);
  }
}
