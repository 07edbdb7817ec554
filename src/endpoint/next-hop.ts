/**
 * Where the kernel sends a packet to `host`, with both MAC addresses, from `ip -j route get` and
 * `ip -j neigh`: what the endpoint's encapsulation program needs to write an Ethernet header and
 * redirect (it cannot ask the kernel's FIB itself without IP forwarding on; endpoint.bpf.c).
 */
import { execFileSync } from 'node:child_process';

export interface NextHop {
  ifindex: number;
  ifname: string;
  srcMac: string;
  /** The next hop's MAC; undefined while the kernel has not resolved it (the Node path sends meanwhile, which resolves it). */
  dstMac: string | undefined;
  /** The address whose MAC that is: the gateway, or `host` itself on a connected network. */
  via: string;
}

interface RouteJson {
  dev?: string;
  gateway?: string;
}
interface LinkJson {
  ifindex?: number;
  address?: string;
  link_type?: string;
}
interface NeighJson {
  dst?: string;
  lladdr?: string;
  state?: string[];
}

const ip = (args: string[]): unknown =>
  JSON.parse(execFileSync('ip', ['-j', ...args], { encoding: 'utf8' }) || '[]');

/** Neighbour states whose MAC the kernel itself would send to. */
const USABLE = new Set(['REACHABLE', 'STALE', 'DELAY', 'PROBE', 'PERMANENT', 'NOARP']);

/** The index of interface `name` (`ip -j link show`). */
export function ifindexOf(name: string): number {
  const l = (ip(['link', 'show', 'dev', name]) as LinkJson[])[0];
  if (l?.ifindex === undefined) throw new Error(`no interface ${name}`);
  return l.ifindex;
}

/** Pure: the next hop from the three `ip -j` answers (exported for tests). */
export function parseNextHop(host: string, route: unknown, link: unknown, neigh: unknown): NextHop {
  const r = (route as RouteJson[])[0];
  if (!r?.dev) throw new Error(`no route to ${host}`);
  const l = (link as LinkJson[])[0];
  if (l?.ifindex === undefined || !l.address) throw new Error(`interface ${r.dev} has no index or MAC`);
  if (l.link_type !== undefined && l.link_type !== 'ether')
    throw new Error(
      `the route to ${host} leaves by ${r.dev}, a ${l.link_type} interface: the kernel path needs Ethernet`,
    );
  const via = r.gateway ?? host;
  const n = (neigh as NeighJson[]).find(
    (x) => x.dst === via && x.lladdr && (x.state ?? []).some((s) => USABLE.has(s)),
  );
  return { ifindex: l.ifindex, ifname: r.dev, srcMac: l.address, dstMac: n?.lladdr, via };
}

/** The next hop towards `host` now (runs `ip` three times: for control-plane moments only). */
export function nextHopTo(host: string): NextHop {
  const route = ip(['route', 'get', host]);
  const dev = (route as RouteJson[])[0]?.dev;
  if (!dev) throw new Error(`no route to ${host}`);
  const link = ip(['link', 'show', 'dev', dev]);
  const via = (route as RouteJson[])[0]?.gateway ?? host;
  return parseNextHop(host, route, link, ip(['neigh', 'show', 'to', via, 'dev', dev]));
}
