/**
 * Which data plane a router runs (`arrow router --dataplane kernel|node|auto`, docs/dataplane.md):
 * the kernel fast path where it can work, the Node path otherwise, and always the reason. The
 * decisions are pure functions of what the host looks like (its interfaces, `ip -j -d addr`);
 * `openKernelPath` does the I/O once, at start.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import type { Logger } from '../util/log.js';
import { KernelProgram, KernelUnavailable, type AttachMode } from './kernel.js';

export const DATAPLANE_MODES = ['auto', 'kernel', 'node'] as const;
export type DataplaneMode = (typeof DATAPLANE_MODES)[number];

/** How the program is attached: XDP in the driver, XDP in the stack (any interface), or tc ingress. */
export const KERNEL_ATTACHES = ['xdp-native', 'xdp-generic', 'tc'] as const;
export type KernelAttach = (typeof KERNEL_ATTACHES)[number];

/** What the router publishes about its data plane (in its stats, its log and its ready message). */
export interface DataplaneStatus {
  /** The path DATA of known circuits takes. */
  mode: 'kernel' | 'node';
  /** What the config or flag asked for. */
  requested: DataplaneMode;
  /** Why this mode: for `node` under `auto`, what kept the kernel path out. */
  reason: string;
  /** The interface the program is attached to (kernel mode). */
  interface?: string;
  attach?: KernelAttach;
  /** The attached program's id, for `bpftool prog show id N` (its map_ids lead to this router's maps). */
  programId?: number;
  /**
   * net.ipv4.conf.<interface>.forwarding: the kernel's route lookup refuses to forward without it,
   * so every packet would go up to the Node path (the `passNoRoute` counter).
   */
  forwarding?: boolean;
}

/** One line for people: `kernel (xdp-generic on eth0)` or `node (why)`. */
export function dataplaneText(d: {
  mode: 'kernel' | 'node';
  reason: string;
  attach?: string;
  interface?: string;
}): string {
  return d.mode === 'kernel' ? `kernel (${d.attach} on ${d.interface})` : `node (${d.reason})`;
}

/** Why the router runs the Node path under `auto` (or was told to). */
export interface NodeReason {
  reason: string;
  mode?: never;
  program?: never;
}

/** The one interface that holds the router's address. */
export interface RouterInterface {
  name: string;
  index: number;
  loopback: boolean;
  /** The link kind (`veth`, `bridge`, ...) from `ip -d`; undefined for plain hardware. */
  kind: string | undefined;
}

/** The part of `ip -j -d addr show` read here. */
interface IpAddrJson {
  ifindex: number;
  ifname: string;
  flags?: string[];
  link_type?: string;
  linkinfo?: { info_kind?: string };
  addr_info?: { family?: string; local?: string; prefixlen?: number }[];
}

/**
 * The interface holding IPv4 `host` in `ip -j -d addr show` output (pure). A loopback interface
 * holds its whole prefix (Linux answers for all of 127.0.0.0/8 on `lo`, as the loopback lab uses
 * 127.1.x.y without adding them); any other holds exactly its addresses.
 */
export function interfaceHolding(ipAddrJson: string, host: string): RouterInterface | undefined {
  const links = JSON.parse(ipAddrJson) as IpAddrJson[];
  for (const l of links) {
    const loopback = l.link_type === 'loopback' || (l.flags ?? []).includes('LOOPBACK');
    const holds = (a: { family?: string; local?: string; prefixlen?: number }): boolean =>
      a.family === 'inet' &&
      a.local !== undefined &&
      (a.local === host || (loopback && samePrefix(a.local, host, a.prefixlen ?? 32)));
    if (l.addr_info?.some(holds))
      return { name: l.ifname, index: l.ifindex, loopback, kind: l.linkinfo?.info_kind };
  }
  return undefined;
}

function ipv4Number(host: string): number {
  return host.split('.').reduce((n, part) => n * 256 + Number(part), 0);
}

function samePrefix(a: string, b: string, bits: number): boolean {
  const shift = 2 ** (32 - Math.min(32, Math.max(0, bits)));
  return Math.floor(ipv4Number(a) / shift) === Math.floor(ipv4Number(b) / shift);
}

/**
 * Why the router's listen address rules the kernel path out, before anything is loaded; undefined
 * when it is fine (pure). The program matches DATA by the router's own IPv4 address and sends it
 * with the kernel's route lookup, so it needs one address, on an interface that routes to others.
 */
export function addressRefusal(
  host: string,
  iface: RouterInterface | undefined,
  requested: DataplaneMode,
): string | undefined {
  if (host === '0.0.0.0')
    return 'the router listens on 0.0.0.0; the kernel path needs its own IPv4 address (listen on it)';
  if (!isIPv4(host)) return `the router listens on ${host}; the kernel path forwards over IPv4 only`;
  if (iface === undefined) return `no interface holds ${host}`;
  // `auto` wants an interface of the router's own. Loopback is shared by every process on the
  // host, so the kernel path there (tc on lo, one program per router) is asked for by name.
  if (iface.loopback && requested === 'auto')
    return `${host} is on the loopback interface (${iface.name}), shared with every process on the host: auto keeps the Node path (--dataplane kernel attaches tc to ${iface.name})`;
  return undefined;
}

/**
 * The attachments to try, in order. On a veth, tc first: a veth's native XDP_TX and redirects are
 * dropped unless its peer runs XDP or GRO, which the router cannot see or set from its namespace,
 * and XDP in the stack takes no GSO super-packets (the TUN endpoints' TCP, up to 64 KB: its route
 * lookup refuses their length), which tc forwards whole. Otherwise the driver first; tc last, for
 * interfaces without XDP.
 */
export function attachOrder(iface: RouterInterface, wanted: KernelAttach | 'auto'): KernelAttach[] {
  if (wanted !== 'auto') return [wanted];
  // tcx, because several routers share lo: each program passes on what is not its own (TCX_NEXT),
  // where an interface holds one XDP program only.
  if (iface.loopback) return ['tc'];
  return iface.kind === 'veth' ? ['tc', 'xdp-generic'] : ['xdp-native', 'xdp-generic', 'tc'];
}

const ATTACH_MODE: Record<KernelAttach, AttachMode> = {
  'xdp-native': 'native',
  'xdp-generic': 'generic',
  tc: 'tc',
};

export interface KernelPathOptions {
  requested: DataplaneMode;
  /** The router's listen host (an IP literal). */
  host: string;
  attach: KernelAttach | 'auto';
  maxCircuits: number;
  maxTagged: number;
}

/** The kernel path, loaded but not yet attached (the router attaches once its socket is bound). */
export interface KernelPath {
  program: KernelProgram;
  iface: RouterInterface;
}

/** `--dataplane kernel` and the kernel path cannot be used: the router does not start. */
export class KernelRequired extends Error {
  override name = 'KernelRequired';
}

/**
 * Loads the program for the router, or says why not. `node` never loads it; `auto` returns the
 * reason to use the Node path; `kernel` throws KernelRequired with the reason.
 */
export function openKernelPath(o: KernelPathOptions): KernelPath | NodeReason {
  if (o.requested === 'node') return { reason: 'configured: dataplane node' };
  const refuse = (reason: string): NodeReason => {
    if (o.requested === 'kernel') throw new KernelRequired(`--dataplane kernel: ${reason}`);
    return { reason };
  };
  if (process.platform !== 'linux') return refuse('the kernel path needs Linux (XDP)');
  let iface: RouterInterface | undefined;
  if (isIPv4(o.host) && o.host !== '0.0.0.0') {
    try {
      iface = interfaceHolding(
        execFileSync('ip', ['-j', '-d', 'addr', 'show'], { encoding: 'utf8' }),
        o.host,
      );
    } catch (err) {
      return refuse(`cannot list the interfaces (ip -j addr): ${(err as Error).message.split('\n')[0]}`);
    }
  }
  const bad = addressRefusal(o.host, iface, o.requested);
  if (bad !== undefined) return refuse(bad);
  try {
    const program = KernelProgram.load({
      maxCircuits: o.maxCircuits,
      maxTagged: o.maxTagged,
      loopback: iface!.loopback,
    });
    return { program, iface: iface! };
  } catch (err) {
    if (!(err instanceof KernelUnavailable)) throw err;
    const root = process.getuid?.() === 0 ? '' : 'not root (loading BPF needs CAP_BPF and CAP_NET_ADMIN): ';
    return refuse(`${root}${err.message}`);
  }
}

/**
 * Sets the router's address in the program and attaches it, trying `attachOrder`; the status on
 * success. On failure, KernelRequired under `kernel`, the reason otherwise; the caller closes the
 * program (it may hold it in other places, such as the table's observer).
 */
export function attachKernelPath(
  path: KernelPath,
  o: KernelPathOptions & { port: number },
  log: Logger,
): DataplaneStatus | NodeReason {
  const { program, iface } = path;
  const failures: string[] = [];
  for (const attach of attachOrder(iface, o.attach)) {
    try {
      // Set before attaching: until then the program passes everything up as not ours.
      program.setAddress(o.host, o.port);
      program.attach(iface.index, ATTACH_MODE[attach]);
      // On lo the program sends every frame back into lo itself: the kernel's forwarding is not used.
      const forwarding = iface.loopback ? undefined : readForwarding(iface.name, log);
      return {
        mode: 'kernel',
        requested: o.requested,
        reason:
          o.requested === 'kernel'
            ? 'configured: dataplane kernel'
            : `auto: BPF loaded and ${o.host} is on ${iface.name}`,
        interface: iface.name,
        attach,
        programId: program.programIds()[attach === 'tc' ? 'tc' : 'xdp'],
        ...(forwarding !== undefined ? { forwarding } : {}),
      };
    } catch (err) {
      failures.push(`${attach}: ${(err as Error).message}`);
    }
  }
  const reason = `cannot attach to ${iface.name} (${failures.join('; ')})`;
  if (o.requested === 'kernel') throw new KernelRequired(`--dataplane kernel: ${reason}`);
  return { reason };
}

/** net.ipv4.conf.<if>.forwarding, or undefined when it cannot be read (it is only reported). */
function readForwarding(ifname: string, log: Logger): boolean | undefined {
  try {
    return readFileSync(`/proc/sys/net/ipv4/conf/${ifname}/forwarding`, 'utf8').trim() === '1';
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'cannot read the interface forwarding setting');
    return undefined;
  }
}
