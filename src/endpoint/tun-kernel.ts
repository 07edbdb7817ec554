/**
 * The TUN endpoint on the kernel path (`arrow endpoint --tun --dataplane kernel|auto`): the
 * programs of src/endpoint/bpf/endpoint.bpf.c carry the IP packets, and this module keeps them in
 * step with the Connection, which stays the control plane (docs/dataplane.md, "The endpoint's data
 * path"):
 * - the active circuit and ingress router go into `ep_tx` whenever the Connection switches or moves
 *   (a failover is one map update);
 * - every return circuit goes into `ep_rx`;
 * - the failure detector hears of the kernel's traffic from its counters, read every few ms: DATA
 *   sent starts the wait for an answer, DATA decapsulated on a return circuit ends it.
 * Packets the programs leave alone (tagged circuits, IPv6, anything unusual) reach the Node path
 * as before, so the endpoint works the same whichever path carries a packet.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { isIPv4 } from 'node:net';
import { KernelUnavailable } from '../router/kernel.js';
import { interfaceHolding } from '../router/dataplane-mode.js';
import type { DataplaneMode } from '../router/dataplane-mode.js';
import { formatAddress, mustParseAddress, type UdpAddress } from '../wire/address.js';
import { DEFAULT_HOP_LIMIT } from '../wire/header.js';
import type { Connection, PathCircuit } from './connection.js';
import { KernelEndpoint, type KernelEndpointStats } from './kernel-endpoint.js';
import { ifindexOf, nextHopTo, type NextHop } from './next-hop.js';
import { finishChecksums, isHardware, mustFinish, type UnderlayChecksums } from './underlay-checksums.js';

/** How often the detector reads the programs' counters. */
export const KERNEL_POLL_MS = 5;

/** What the endpoint's data path is, and why; `kernel` carries the counters of its programs. */
export type TunDataplane =
  | { mode: 'node'; requested: DataplaneMode; reason: string }
  | {
      mode: 'kernel';
      requested: DataplaneMode;
      reason: string;
      underlay: string;
      /**
       * Who finishes TCP's checksums and cuts its super-packets (`--underlay-checksums`): the
       * stack on the interfaces named, or the devices (docs/endpoint.md, "Checksums and super-packets").
       */
      checksums: string;
      /** Why the active circuit is on the Node path now (tags, an unresolved next hop), if it is. */
      activeOnNode?: string;
      counters: KernelEndpointStats;
    };

/** `--dataplane kernel` and the endpoint's kernel path cannot be used: the endpoint does not start. */
export class EndpointKernelRequired extends Error {
  override name = 'EndpointKernelRequired';
}

/**
 * Why the endpoint's kernel path cannot be used, before anything is loaded (pure); undefined when
 * it can. `underlay` is the interface holding the ARROW socket's address.
 */
export function endpointKernelRefusal(o: {
  listenHost: string;
  underlay: { name: string; loopback: boolean } | undefined;
  tunNetns: string | undefined;
}): string | undefined {
  if (!isIPv4(o.listenHost) || o.listenHost === '0.0.0.0')
    return `the ARROW socket listens on ${o.listenHost}; the kernel path needs one IPv4 address of the machine (--listen ADDRESS:PORT)`;
  if (o.underlay === undefined) return `no interface holds ${o.listenHost}`;
  if (o.underlay.loopback)
    return `${o.listenHost} is on the loopback interface (${o.underlay.name}): the kernel path sends through a real interface`;
  if (o.tunNetns !== undefined)
    return `the TUN is moved into network namespace ${o.tunNetns}; the kernel path needs the TUN and the ARROW socket in one namespace`;
  return undefined;
}

/**
 * The TUN's largest GSO super-packet: with the outer IPv4/UDP and ARROW headers (64 bytes) it must
 * fit IPv4's 16-bit total length, which the programs write whole (segmentation rewrites it).
 */
export const TUN_GSO_MAX_SIZE = 65_000;
/**
 * While the next hop's MAC is unresolved, look again after this long, doubling up to the maximum
 * (each look runs `ip` three times; the Node path sends meanwhile, which resolves it).
 */
const RESOLVE_RETRY_MS = 100;
const RESOLVE_RETRY_MAX_MS = 2000;

export class KernelTunPath {
  /** Next hops by ingress router address, resolved once each; a failure of the circuit resolves again. */
  private readonly nextHops = new Map<string, NextHop>();
  private retry: NodeJS.Timeout | undefined;
  private retryMs = RESOLVE_RETRY_MS;
  /** Per return circuit: its authenticator's bytes and what the kernel had decapsulated on it. */
  private readonly returns = new Map<PathCircuit, { auth: Buffer; received: number }>();
  private sent = 0;
  private timer: NodeJS.Timeout | undefined;
  private activeOnNode: string | undefined;
  private readonly onChange = (): void => this.syncTx();
  /** Interfaces the packets leave by whose checksums are settled (finished or left to the device), and how. */
  private readonly settled = new Map<string, string>();
  /** The active circuit failed: its next hop may have a new MAC (or be gone); look it up again. */
  private readonly onFailure = (c: PathCircuit): void => {
    if (c !== this.connection.active) return;
    this.nextHops.delete(formatAddress(c.ingress[c.activeIngress]!));
    this.syncTx();
  };
  private readonly onRebuy = (c: PathCircuit): void => {
    this.addReturn(c);
    this.syncTx();
  };

  private constructor(
    private readonly ep: KernelEndpoint,
    private readonly connection: Connection,
    private readonly self: UdpAddress,
    readonly underlay: string,
    readonly requested: DataplaneMode,
    readonly reason: string,
    private readonly checksumMode: UnderlayChecksums,
  ) {}

  /**
   * Loads and attaches the programs for a TUN endpoint whose Connection is set up, or says why
   * not: `node` never loads them, `auto` returns the reason, `kernel` throws EndpointKernelRequired.
   */
  static open(o: {
    requested: DataplaneMode;
    tun: string;
    tunNetns: string | undefined;
    listen: string;
    connection: Connection;
    /** Default auto (src/endpoint/underlay-checksums.ts). */
    underlayChecksums?: UnderlayChecksums;
  }): KernelTunPath | { reason: string } {
    if (o.requested === 'node') return { reason: 'configured: dataplane node' };
    const refuse = (reason: string): { reason: string } => {
      if (o.requested === 'kernel') throw new EndpointKernelRequired(`--dataplane kernel: ${reason}`);
      return { reason };
    };
    if (process.platform !== 'linux') return refuse('the kernel path needs Linux (tc BPF)');
    const self = mustParseAddress(o.listen);
    let underlay: ReturnType<typeof interfaceHolding>;
    try {
      underlay = isIPv4(self.host)
        ? interfaceHolding(execFileSync('ip', ['-j', '-d', 'addr', 'show'], { encoding: 'utf8' }), self.host)
        : undefined;
    } catch (err) {
      return refuse(`cannot list the interfaces (ip -j addr): ${(err as Error).message.split('\n')[0]}`);
    }
    const bad = endpointKernelRefusal({ listenHost: self.host, underlay, tunNetns: o.tunNetns });
    if (bad !== undefined) return refuse(bad);
    let ep: KernelEndpoint;
    try {
      // TCP's GSO super-packets reach the program whole and cross as one (docs/dataplane.md); with
      // the outer headers they must still fit IPv4's 16-bit length.
      execFileSync('ip', ['link', 'set', 'dev', o.tun, 'gso_max_size', String(TUN_GSO_MAX_SIZE)]);
      const tunIfindex = ifindexOf(o.tun);
      ep = KernelEndpoint.open({ tunIfindex, underlayIfindex: underlay!.index });
      try {
        ep.setReceiver(self.host, self.port, tunIfindex);
        // Apart from the Node endpoint's numbers (random below 2^48), so the two never meet.
        ep.setSequence((1n << 56n) + BigInt(`0x${randomBytes(6).toString('hex')}`));
      } catch (err) {
        ep.close();
        throw err;
      }
    } catch (err) {
      const root = process.getuid?.() === 0 ? '' : 'not root (tc BPF needs CAP_BPF and CAP_NET_ADMIN): ';
      const message =
        err instanceof KernelUnavailable ? err.message : `${(err as Error).message.split('\n')[0]}`;
      return refuse(`${root}${message}`);
    }
    const checksumMode = o.underlayChecksums ?? 'auto';
    // Once the programs are loaded (a refusal above leaves the interface as it was), before
    // anything is sent: without it TCP would not pass a user-space reader on this host.
    const settled = settleChecksums(checksumMode, underlay!.name);
    if (settled instanceof Error) {
      ep.close();
      return refuse(settled.message);
    }
    const reason =
      o.requested === 'kernel'
        ? 'configured: dataplane kernel'
        : `auto: BPF loaded and ${self.host} is on ${underlay!.name}`;
    const path = new KernelTunPath(ep, o.connection, self, underlay!.name, o.requested, reason, checksumMode);
    path.settled.set(underlay!.name, settled);
    path.start();
    return path;
  }

  private start(): void {
    for (const c of this.connection.circuits) this.addReturn(c);
    this.syncTx();
    this.connection.on('switch', this.onChange);
    this.connection.on('ingress', this.onChange);
    this.connection.on('rebuy', this.onRebuy);
    this.connection.on('failure', this.onFailure);
    this.timer = setInterval(() => this.poll(), KERNEL_POLL_MS);
    this.timer.unref();
  }

  private addReturn(c: PathCircuit): void {
    const auth = Buffer.from(c.replyAuth, 'hex');
    this.ep.addReturn(auth);
    this.returns.set(c, { auth, received: 0 });
  }

  /**
   * Points `ep_tx` at the active circuit's ingress router in use. The Node path carries the packets
   * instead while the circuit is tagged (the program computes no tags) or the next hop's MAC is not
   * resolved yet (looked up again, backing off from RESOLVE_RETRY_MS; the Node path's sends resolve it).
   */
  private syncTx(): void {
    clearTimeout(this.retry);
    this.retry = undefined;
    const c = this.connection.active;
    if (c.tags.length > 0) {
      this.activeOnNode = `the active circuit carries ${c.tags.length} tag(s), which the Node path computes`;
      this.ep.setTx(undefined);
      return;
    }
    const to = c.ingress[c.activeIngress]!;
    const key = formatAddress(to);
    let hop = this.nextHops.get(key);
    if (hop?.dstMac === undefined) {
      try {
        hop = nextHopTo(to.host);
      } catch (err) {
        hop = undefined;
        this.activeOnNode = `no next hop to ${to.host}: ${(err as Error).message.split('\n')[0]}`;
      }
      if (hop) this.nextHops.set(key, hop);
    }
    if (hop?.dstMac === undefined) {
      if (hop) this.activeOnNode = `the MAC of ${hop.via} on ${hop.ifname} is not resolved yet`;
      this.ep.setTx(undefined);
      this.retry = setTimeout(() => this.syncTx(), this.retryMs);
      this.retry.unref();
      this.retryMs = Math.min(RESOLVE_RETRY_MAX_MS, this.retryMs * 2);
      return;
    }
    this.retryMs = RESOLVE_RETRY_MS;
    // The next hop is on another interface than the underlay (a host with several): settle it too.
    if (!this.settled.has(hop.ifname)) {
      const settled = settleChecksums(this.checksumMode, hop.ifname);
      if (settled instanceof Error) {
        this.activeOnNode = settled.message;
        this.ep.setTx(undefined);
        return;
      }
      this.settled.set(hop.ifname, settled);
    }
    this.activeOnNode = undefined;
    this.ep.setTx({
      ifindex: hop.ifindex,
      srcIp: this.self.host,
      srcPort: this.self.port,
      dstIp: to.host,
      dstPort: to.port,
      auth: c.auth,
      hopLimit: DEFAULT_HOP_LIMIT,
      srcMac: hop.srcMac,
      dstMac: hop.dstMac,
    });
  }

  /** Tells the detector what the kernel sent and received since the last look. */
  private poll(): void {
    const sent = this.ep.sentPackets();
    if (sent !== this.sent) {
      this.sent = sent;
      this.connection.sentOutside();
    }
    for (const [c, r] of this.returns) {
      const n = this.ep.receivedOn(r.auth);
      if (n === r.received) continue;
      r.received = n;
      this.connection.receivedOutside(c);
    }
  }

  status(): TunDataplane {
    return {
      mode: 'kernel',
      requested: this.requested,
      reason: this.reason,
      underlay: this.underlay,
      checksums: [...this.settled.values()].join('; '),
      ...(this.activeOnNode ? { activeOnNode: this.activeOnNode } : {}),
      counters: this.ep.stats(),
    };
  }

  close(): void {
    clearInterval(this.timer);
    clearTimeout(this.retry);
    this.connection.off('failure', this.onFailure);
    this.connection.off('switch', this.onChange);
    this.connection.off('ingress', this.onChange);
    this.connection.off('rebuy', this.onRebuy);
    this.ep.close();
  }
}

/**
 * Has the stack finish the checksums on the interface the packets leave by, or leaves them to it,
 * per `--underlay-checksums`; what it did, or an Error saying why the kernel path cannot send there.
 */
function settleChecksums(mode: UnderlayChecksums, ifname: string): string | Error {
  const hardware = isHardware(ifname);
  if (!mustFinish(mode, { hardware }))
    return `left to ${ifname} (${mode === 'keep' ? 'configured: keep' : 'auto: a NIC finishes them'})`;
  try {
    const f = finishChecksums(ifname);
    const why = mode === 'finish' ? 'configured: finish' : 'auto: a virtual interface';
    return `finished by the stack on ${ifname} (${why}; ${f.turnedOff ? `turned tx checksumming off: ethtool -K ${ifname} tx on restores it` : 'tx checksumming was off'})`;
  } catch (err) {
    return new Error(
      `cannot have the stack finish TCP's checksums on ${ifname} (ethtool -K ${ifname} tx off): ${(err as Error).message.split('\n')[0]}; --underlay-checksums keep if only kernels read this host's datagrams`,
    );
  }
}
