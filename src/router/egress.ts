import { execFile } from 'node:child_process';
import { runNft } from '../util/nft.js';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { HEADER_LENGTH } from '../wire/header.js';
import { ReturnPathSender } from './return-path.js';
import type { UdpAddress } from '../wire/address.js';
import type { EgressCounters } from '../store/circuit.js';
import { ipv4Word, maskWord, PrefixSet } from '../wire/prefix-set.js';
import { parsePrefix } from '../wire/address.js';
import type { Logger } from '../util/log.js';
import { TunDevice } from '../util/tun-device.js';
import type { DropCounters } from './dataplane.js';
import type { Entry } from './table.js';

const run = promisify(execFile);

type IpEntry = Entry & { kind: 'deliver-ip' };

/** Room the envelope takes on the underlay: outer IPv4 and UDP headers and the ARROW header. */
export const EGRESS_OVERHEAD = 20 + 8 + HEADER_LENGTH;

export interface EgressConfig {
  /** The TUN interface decapsulated packets enter the host's stack by, and return traffic leaves it by. */
  tun: string;
  /** The underlay's MTU: the TUN's MTU is this less EGRESS_OVERHEAD, so return packets fit one datagram. */
  underlayMtu: number;
  /**
   * The kernel routing table this router announces the customer prefixes it serves in, for the
   * host's routing daemon (BIRD) to export to the PoP's edge router. Unset: no announcements.
   */
  announceTable?: number;
  /**
   * The kernel routing table this router announces every customer prefix it holds a circuit for
   * in, at metric 1: a standby the edge router falls back to the moment the serving router's
   * claim is withdrawn, before any sibling has claimed the customer. Unset: no standbys.
   */
  standbyTable?: number;
  /**
   * Source NAT instead of the customers' own addresses: `masquerade` (the address of the interface
   * a packet leaves by) or an IPv4 address of this host. Unset: no NAT (docs/egress.md).
   */
  snat?: string;
}

/** Claims are stamped in deciseconds since this instant, as the route's metric (docs/egress.md). */
const CLAIM_EPOCH_MS = Date.UTC(2026, 0, 1);

/**
 * A claim's route metric: deciseconds since 2026-01-01, so a later claim (a takeover) has a higher
 * one, and the routing daemon turns it into the BGP LOCAL_PREF the edge router picks the newest by.
 * Below 2^31 until 2032, as BIRD's integers are signed 32-bit.
 */
export function claimMetric(nowMs: number): number {
  return Math.max(1, Math.min(2 ** 31 - 1, Math.floor((nowMs - CLAIM_EPOCH_MS) / 100)));
}

/** One customer prefix routed into the TUN, and the circuit whose return path its traffic takes now. */
interface Source {
  prefix: string;
  /** Circuits that name this prefix as their source; the route stays while any does. */
  circuits: Map<string, IpEntry>;
  /** The circuit that carried the prefix's most recent DATA: its return path gets the answers. */
  active: IpEntry;
  sequence: bigint;
  /** Whether the store's record of the active circuit names this router as the egress in use (undefined: not known yet). */
  designated: boolean | undefined;
  /** When the store last named another router (ms since the epoch; 0: never). */
  undesignatedAt: number;
}

/**
 * The decapsulation node's I/O (docs/egress.md): a TUN interface on the egress router's host.
 * Decapsulated packets are written to it, and the host routes them on to their destinations like
 * any other packet. Each customer prefix of a deliver-ip circuit held here is routed into the TUN,
 * so the destinations' answers come back through it; they are wrapped in an ARROW header and sent
 * into the return path of the circuit that last carried that customer's DATA (the thesis's
 * "takes over on the first data packet": the EN-DN mapping, kept per router).
 */
export class IpEgress {
  readonly counters: EgressCounters = {
    delivered: 0,
    returned: 0,
    noReturnPath: 0,
    ignored: 0,
    takeovers: 0,
    unclaims: 0,
    writeErrors: 0,
    routeErrors: 0,
  };
  private device: TunDevice | undefined;
  private ifindex = 0;
  private readonly sources = new Map<string, Source>();
  /** IPv4 customer prefixes by length (longest first), each a map of masked network → source. */
  private v4: { length: number; mask: number; byNetwork: Map<number, Source> }[] = [];
  /** IPv6 customer prefixes, longest first (few: scanned). */
  private v6: { set: PrefixSet; source: Source }[] = [];
  private readonly returnPath: ReturnPathSender;
  /** Route changes run one at a time, in order. */
  private routes: Promise<void> = Promise.resolve();
  /**
   * The EN-DN mapping's half held here: customer prefixes this router serves as the decapsulation
   * node, announced in `announceTable`, with the circuit whose DATA made it take over and when.
   */
  private readonly serving = new Map<string, { circuit: string; since: number }>();
  /**
   * Told when `decapsulates` may have changed for a circuit (a claim, a withdrawal, a new circuit
   * for the answers): the kernel fast path rewrites its CF_DECAP flag (kernel-mirror.ts).
   */
  onDecapChange: ((entry: IpEntry) => void) | undefined;

  constructor(
    private readonly config: EgressConfig,
    send: (packet: Buffer, port: number, host: string) => void,
    private readonly drops: DropCounters,
    private readonly log: Logger,
  ) {
    this.returnPath = new ReturnPathSender(send);
  }

  /** This router's bound address: return traffic enters the return circuit here when it can (ReturnPathSender). */
  set self(address: UdpAddress) {
    this.returnPath.self = address;
  }

  get interfaceName(): string | undefined {
    return this.device?.name;
  }

  /** The TUN's interface index once open (the kernel fast path redirects decapsulated packets to it). */
  get interfaceIndex(): number | undefined {
    return this.device === undefined ? undefined : this.ifindex;
  }

  /**
   * Whether the kernel fast path may decapsulate this circuit's DATA without this process seeing
   * it: the router serves the customer (its claim stands) and the circuit is the one the answers
   * take. Anything else must come here first: a first packet claims, another circuit's moves the
   * answers (`deliver`).
   */
  decapsulates(entry: Entry): boolean {
    if (entry.kind !== 'deliver-ip' || this.device === undefined) return false;
    const s = this.sources.get(entry.sourcePrefix);
    return s !== undefined && s.active.circuit === entry.circuit && this.serving.has(entry.sourcePrefix);
  }

  /** Creates and brings up the TUN (needs CAP_NET_ADMIN), and starts reading return traffic. */
  async open(): Promise<void> {
    const device = TunDevice.open(this.config.tun);
    await device.configure({ addresses: [], mtu: this.config.underlayMtu - EGRESS_OVERHEAD });
    device.start(
      (packet) => this.returnPacket(packet),
      (errno) => this.log.error({ errno, tun: device.name }, 'egress TUN read failed'),
    );
    this.device = device;
    this.ifindex = Number(readFileSync(`/sys/class/net/${device.name}/ifindex`, 'utf8').trim());
    if (this.config.snat !== undefined) await this.installSnat(this.config.snat);
    // Prefixes of circuits compiled before the TUN existed (the table's snapshot).
    for (const prefix of this.sources.keys()) {
      this.route('replace', prefix);
      this.standby('replace', prefix);
    }
  }

  /** The packet path: one decapsulated, checked IP packet to the host. False without a TUN. */
  deliver(entry: IpEntry, packet: Buffer): boolean {
    const device = this.device;
    if (!device) return false;
    const s = this.sources.get(entry.sourcePrefix);
    // The customer's DATA now arrives on this circuit: its answers take this circuit's return path.
    if (s !== undefined && s.active !== entry && s.circuits.has(entry.circuit)) {
      const moved = s.active.circuit !== entry.circuit;
      s.active = entry;
      if (moved) this.decapChanged(s);
    }
    this.arrived(entry);
    if (device.write(packet) < 0) {
      this.counters.writeErrors++;
      this.drops.add('send-error');
      return true;
    }
    this.counters.delivered++;
    return true;
  }

  /**
   * The customer's DATA, or its failover probe, arrived on `entry`: the first for a prefix this
   * router does not serve makes it take the customer over (the thesis's secondary DN) and announce
   * the prefix, newer than any earlier claim.
   */
  arrived(entry: IpEntry): void {
    if (!this.serving.has(entry.sourcePrefix)) this.claim(entry);
  }

  /**
   * The table holds `entry` (new or recompiled): its customer prefix is routed into the TUN.
   * `designated`: whether the circuit's record in the store names this router as the egress its
   * ingress PoP uses now (`internalRouters[active.internal]`, which the upstream router's repair
   * writes). Becoming designated claims the customer anew, so a claim follows the traffic back
   * to a router that had served it before; ceasing to be withdraws the claim (the standby stays).
   */
  held(entry: IpEntry, designated?: boolean): void {
    let s = this.sources.get(entry.sourcePrefix);
    if (s === undefined) {
      s = {
        prefix: entry.sourcePrefix,
        circuits: new Map(),
        active: entry,
        sequence: 0n,
        designated: undefined,
        undesignatedAt: 0,
      };
      this.sources.set(entry.sourcePrefix, s);
      this.index();
      this.route('replace', entry.sourcePrefix);
      this.standby('replace', entry.sourcePrefix);
    }
    s.circuits.set(entry.circuit, entry);
    if (s.active.circuit === entry.circuit || !s.circuits.has(s.active.circuit)) {
      const moved = s.active.circuit !== entry.circuit;
      s.active = entry;
      if (moved) this.decapChanged(s);
    }
    if (designated === undefined || s.active.circuit !== entry.circuit) return;
    const was = s.designated;
    s.designated = designated;
    if (!designated) {
      // Withdrawn on every record that names another router, so a claim made on stray DATA
      // does not outlive the store's word; DATA arriving here again claims again at once.
      if (was !== false) s.undesignatedAt = Date.now();
      this.unclaim(entry.sourcePrefix);
      return;
    }
    if (was === true) return;
    // A claim made since the store last named another router (the customer's DATA got here
    // first) stands: it is already newer than any claim the sibling made meanwhile.
    const mine = this.serving.get(entry.sourcePrefix);
    if (mine === undefined || mine.since < s.undesignatedAt) this.claim(entry);
  }

  /** The circuit left the table: its prefix's route goes with the last circuit naming it. */
  released(circuit: string): void {
    for (const s of [...this.sources.values()]) {
      if (!s.circuits.delete(circuit)) continue;
      const next = s.circuits.values().next();
      if (next.done) {
        this.sources.delete(s.prefix);
        this.index();
        this.route('del', s.prefix);
        this.standby('del', s.prefix);
        if (this.serving.delete(s.prefix)) this.announce('del', s.prefix);
      } else if (s.active.circuit === circuit) {
        s.active = next.value;
        this.decapChanged(s);
      }
    }
  }

  /** Customer prefixes this router announces, the circuit that made it take each over, and when (ISO). */
  claims(): Record<string, { circuit: string; since: string }> {
    return Object.fromEntries(
      [...this.serving].map(([p, c]) => [p, { circuit: c.circuit, since: new Date(c.since).toISOString() }]),
    );
  }

  /** The store names another router as the egress in use: withdraw the claim (the standby stays). */
  private unclaim(prefix: string): void {
    if (!this.serving.delete(prefix)) return;
    this.counters.unclaims++;
    this.announce('del', prefix);
    const s = this.sources.get(prefix);
    if (s !== undefined) this.decapChanged(s);
  }

  private claim(entry: IpEntry): void {
    const now = Date.now();
    this.serving.set(entry.sourcePrefix, { circuit: entry.circuit, since: now });
    this.counters.takeovers++;
    this.announce('replace', entry.sourcePrefix, claimMetric(now));
    const s = this.sources.get(entry.sourcePrefix);
    if (s !== undefined) this.decapChanged(s);
  }

  /** Every circuit of the customer prefix: whether the kernel may decapsulate it may have changed. */
  private decapChanged(s: Source): void {
    const tell = this.onDecapChange;
    if (tell === undefined) return;
    for (const e of s.circuits.values()) tell(e);
  }

  /** Customer prefixes routed here, and the circuit answering each (for stats and tests). */
  mapping(): Record<string, string> {
    return Object.fromEntries([...this.sources].map(([p, s]) => [p, s.active.circuit]));
  }

  /** Waits for the route changes asked for so far. */
  settled(): Promise<void> {
    return this.routes;
  }

  async close(): Promise<void> {
    await this.routes;
    this.device?.close();
    this.device = undefined;
    // After a SIGKILL the table stays, matching nothing (its TUN is gone); the next start replaces it.
    if (this.config.snat !== undefined)
      await nft(`delete table ip ${snatTable(this.config.tun)}\n`).catch((err: Error) =>
        this.log.warn({ err: err.message }, 'source NAT table not removed'),
      );
  }

  /**
   * Source NAT for everything the host forwards out of the TUN (nftables, one table per TUN):
   * conntrack turns the answers back to the customer's address before routing, so they come back
   * into the TUN and the return path as without NAT. Replaced whole, in one transaction.
   */
  private async installSnat(snat: string): Promise<void> {
    const table = snatTable(this.config.tun);
    const action = snat === 'masquerade' ? 'masquerade' : `snat to ${snat}`;
    try {
      await nft(
        `table ip ${table}\ndelete table ip ${table}\ntable ip ${table} {\n` +
          `  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n` +
          `    iifname "${this.config.tun}" ${action}\n  }\n}\n`,
      );
    } catch (err) {
      throw new Error(`egress source NAT (${snat}) on ${this.config.tun}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    this.log.info({ tun: this.config.tun, snat }, 'egress source NAT on');
  }

  /** Return traffic the host routed into the TUN: into the return path of the customer it is for. */
  private returnPacket(packet: Buffer): void {
    if (hostChatter(packet)) {
      this.counters.ignored++;
      return;
    }
    const s = this.lookup(packet);
    if (s === undefined || !this.returnPath.wrapAndSend(s.active.reply, s.sequence++, packet)) {
      this.counters.noReturnPath++;
      this.drops.add('no-reply-path');
      return;
    }
    this.counters.returned++;
  }

  /** The customer prefix (longest match) holding the packet's destination. */
  private lookup(packet: Buffer): Source | undefined {
    const version = packet.length > 0 ? packet[0]! >> 4 : 0;
    if (version === 4 && packet.length >= 20) {
      const dst = packet.readUInt32BE(16);
      for (const l of this.v4) {
        const s = l.byNetwork.get((dst & l.mask) >>> 0);
        if (s !== undefined) return s;
      }
      return undefined;
    }
    if (version === 6 && packet.length >= 40) {
      for (const p of this.v6) if (p.set.hasV6(packet, 24)) return p.source;
    }
    return undefined;
  }

  /** Rebuilds the lookup structures (control plane: on a new or gone customer prefix). */
  private index(): void {
    const v4 = new Map<number, Map<number, Source>>();
    const v6: { set: PrefixSet; length: number; source: Source }[] = [];
    for (const s of this.sources.values()) {
      const r = parsePrefix(s.prefix);
      if (!r.ok) continue; // the table compiled it with the same parser: cannot happen
      const { network, length, family } = r.prefix;
      if (family === 6) {
        v6.push({ set: new PrefixSet([r.prefix]), length, source: s });
        continue;
      }
      const mask = maskWord(length);
      if (!v4.has(length)) v4.set(length, new Map());
      v4.get(length)!.set((ipv4Word(network) & mask) >>> 0, s);
    }
    this.v4 = [...v4]
      .sort(([a], [b]) => b - a)
      .map(([length, byNetwork]) => ({ length, mask: maskWord(length), byNetwork }));
    this.v6 = v6.sort((a, b) => b.length - a.length);
  }

  /** The announcement of a served prefix: a route in `announceTable`, its metric the claim's time. */
  private announce(op: 'replace' | 'del', prefix: string, metric = 0): void {
    this.tableRoute(this.config.announceTable, op, prefix, metric);
  }

  /** A held customer prefix as a standby announcement: metric 1, below every claim. */
  private standby(op: 'replace' | 'del', prefix: string): void {
    this.tableRoute(this.config.standbyTable, op, prefix, 1);
  }

  /** A route into the TUN in an announcement table (none configured: nothing to do). */
  private tableRoute(table: number | undefined, op: 'replace' | 'del', prefix: string, metric: number): void {
    if (table === undefined) return;
    const t = String(table);
    this.route(op, prefix, op === 'replace' ? ['table', t, 'metric', String(metric)] : ['table', t]);
  }

  private route(op: 'replace' | 'del', prefix: string, extra: string[] = []): void {
    const name = this.config.tun;
    this.routes = this.routes.then(async () => {
      if (!this.device) return;
      const family = prefix.includes(':') ? '-6' : '-4';
      try {
        // `del` names the table alone: the metric of a claim need not be known to withdraw it.
        await run('ip', [family, 'route', op, prefix, 'dev', name, ...extra]);
        this.log.info({ prefix, tun: name, op, extra }, 'customer prefix route');
      } catch (err) {
        this.counters.routeErrors++;
        this.log.warn(
          {
            prefix,
            tun: name,
            op,
            err: ((err as { stderr?: string }).stderr ?? (err as Error).message).trim(),
          },
          'customer prefix route change failed',
        );
      }
    });
  }
}

/** The nftables table that holds a TUN's source NAT rule. */
export function snatTable(tun: string): string {
  return `arrow_snat_${tun.replace(/[^A-Za-z0-9_]/g, '_')}`;
}

/** Runs an nftables script (`nft -f -`); rejects with nft's own message. */
async function nft(script: string): Promise<void> {
  await runNft(['-f', '-'], script);
}

/** An IPv6 packet to a multicast (ff00::/8) or link-local (fe80::/10) address: the host's own chatter on the TUN. */
function hostChatter(packet: Buffer): boolean {
  if (packet.length < 40 || packet[0]! >> 4 !== 6) return false;
  const first = packet[24]!;
  return first === 0xff || (first === 0xfe && (packet[25]! & 0xc0) === 0x80);
}
