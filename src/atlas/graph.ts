import type { AtlasMap, AtlasOffer } from './model.js';
import { linkKey, popId, segmentKey } from './model.js';

/**
 * An AtlasMap compiled to integer indices and CSR adjacency, so that a path search touches typed
 * arrays instead of strings and Maps. Topology only: measurements and query filters are applied
 * per query on top of it (they change between queries; the topology rarely does).
 */
export interface CompiledAtlas {
  /** PoP ids (`isp/pop`) by index; a PoP named only by an offer or peering gets an index too. */
  popIds: string[];
  popIndex: Map<string, number>;
  popIsp: Int32Array;
  popRouters: string[][];
  isps: string[];
  ispIndex: Map<string, number>;
  /** PoP indices per ISP index. */
  ispPops: number[][];
  /** Offers as the map lists them; segment i is offers[i]. */
  offers: AtlasOffer[];
  segFrom: Int32Array;
  segTo: Int32Array;
  segKey: string[];
  /** Segments out of PoP v: segOut[segOutStart[v] .. segOutStart[v+1]). */
  segOutStart: Int32Array;
  segOut: Int32Array;
  /** Segments into PoP v (for reverse searches). */
  segInStart: Int32Array;
  segIn: Int32Array;
  /** Peering links kept (both ends known, different ISPs); link i joins linkA[i] and linkB[i]. */
  linkA: Int32Array;
  linkB: Int32Array;
  linkKey: string[];
  linkLatencyMs: Float64Array;
  /** Links at PoP v, both directions: linkAt[linkAtStart[v] ..) are link indices. */
  linkAtStart: Int32Array;
  linkAt: Int32Array;
  /** Targets parsed to integers: network address (unsigned), prefix length, PoP indices. */
  targets: { prefix: string; network: number; length: number; pops: number[] }[];
}

interface CacheEntry {
  pops: AtlasMap['pops'];
  offers: AtlasMap['offers'];
  peerings: AtlasMap['peerings'];
  targets: AtlasMap['targets'];
  sizes: string;
  compiled: CompiledAtlas;
}

// Compiling 1000 PoPs costs about a millisecond; a service answers many queries per map, so the
// compiled form is kept per map object and rebuilt when any topology array is replaced or resized.
const cache = new WeakMap<AtlasMap, CacheEntry>();

export function compileAtlas(map: AtlasMap): CompiledAtlas {
  const sizes = `${map.pops.length},${map.offers.length},${map.peerings.length},${map.targets.length}`;
  const hit = cache.get(map);
  if (
    hit &&
    hit.pops === map.pops &&
    hit.offers === map.offers &&
    hit.peerings === map.peerings &&
    hit.targets === map.targets &&
    hit.sizes === sizes
  )
    return hit.compiled;
  const compiled = build(map);
  cache.set(map, {
    pops: map.pops,
    offers: map.offers,
    peerings: map.peerings,
    targets: map.targets,
    sizes,
    compiled,
  });
  return compiled;
}

function build(map: AtlasMap): CompiledAtlas {
  const popIds: string[] = [];
  const popIndex = new Map<string, number>();
  const popIspList: number[] = [];
  const popRouters: string[][] = [];
  const isps: string[] = [];
  const ispIndex = new Map<string, number>();
  const ispPops: number[][] = [];
  const ispIdx = (isp: string): number => {
    let i = ispIndex.get(isp);
    if (i === undefined) {
      i = isps.length;
      isps.push(isp);
      ispIndex.set(isp, i);
      ispPops.push([]);
    }
    return i;
  };
  const popIdx = (isp: string, pop: string, routers: string[]): number => {
    const id = popId(isp, pop);
    let i = popIndex.get(id);
    if (i === undefined) {
      i = popIds.length;
      popIds.push(id);
      popIndex.set(id, i);
      const ii = ispIdx(isp);
      popIspList.push(ii);
      ispPops[ii]!.push(i);
      popRouters.push(routers);
    }
    return i;
  };
  for (const p of map.pops) popIdx(p.isp, p.pop, p.routers);

  const offers = map.offers;
  const segFrom = new Int32Array(offers.length);
  const segTo = new Int32Array(offers.length);
  const segKey: string[] = [];
  offers.forEach((o, i) => {
    segFrom[i] = popIdx(o.isp, o.from, o.ingress);
    segTo[i] = popIdx(o.isp, o.to, o.egress);
    segKey.push(segmentKey(o.isp, o.from, o.to));
  });

  const la: number[] = [];
  const lb: number[] = [];
  const lk: string[] = [];
  const ll: number[] = [];
  for (const p of map.peerings) {
    const a = popIndex.get(p.a);
    const b = popIndex.get(p.b);
    // A peering must join two known PoPs of different ISPs; anything else cannot be on a path.
    if (a === undefined || b === undefined || popIspList[a] === popIspList[b]) continue;
    la.push(a);
    lb.push(b);
    lk.push(linkKey(p.a, p.b));
    ll.push(Math.max(0, p.latencyMs ?? 0));
  }

  const n = popIds.length;
  const segOutStart = new Int32Array(n + 1);
  const segInStart = new Int32Array(n + 1);
  for (let i = 0; i < offers.length; i++) {
    segOutStart[segFrom[i]! + 1]!++;
    segInStart[segTo[i]! + 1]!++;
  }
  for (let v = 0; v < n; v++) {
    segOutStart[v + 1]! += segOutStart[v]!;
    segInStart[v + 1]! += segInStart[v]!;
  }
  const segOut = new Int32Array(offers.length);
  const segIn = new Int32Array(offers.length);
  const outFill = segOutStart.slice(0, n);
  const inFill = segInStart.slice(0, n);
  for (let i = 0; i < offers.length; i++) {
    segOut[outFill[segFrom[i]!]!++] = i;
    segIn[inFill[segTo[i]!]!++] = i;
  }

  const linkAtStart = new Int32Array(n + 1);
  for (let i = 0; i < la.length; i++) {
    linkAtStart[la[i]! + 1]!++;
    linkAtStart[lb[i]! + 1]!++;
  }
  for (let v = 0; v < n; v++) linkAtStart[v + 1]! += linkAtStart[v]!;
  const linkAt = new Int32Array(la.length * 2);
  const atFill = linkAtStart.slice(0, n);
  for (let i = 0; i < la.length; i++) {
    linkAt[atFill[la[i]!]!++] = i;
    linkAt[atFill[lb[i]!]!++] = i;
  }

  const targets: CompiledAtlas['targets'] = [];
  for (const t of map.targets) {
    const cidr = parseCidr(t.prefix);
    if (!cidr) continue;
    const pops = t.pops.map((id) => popIndex.get(id)).filter((i): i is number => i !== undefined);
    targets.push({ prefix: t.prefix, network: cidr.network, length: cidr.length, pops });
  }

  return {
    popIds,
    popIndex,
    popIsp: Int32Array.from(popIspList),
    popRouters,
    isps,
    ispIndex,
    ispPops,
    offers,
    segFrom,
    segTo,
    segKey,
    segOutStart,
    segOut,
    segInStart,
    segIn,
    linkA: Int32Array.from(la),
    linkB: Int32Array.from(lb),
    linkKey: lk,
    linkLatencyMs: Float64Array.from(ll),
    linkAtStart,
    linkAt,
    targets,
  };
}

/** Dotted-quad IPv4 to an unsigned 32-bit integer, or undefined. */
export function parseIpv4(s: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  let v = 0;
  for (let i = 1; i <= 4; i++) {
    const octet = Number(m[i]);
    if (octet > 255) return undefined;
    v = v * 256 + octet;
  }
  return v;
}

export function parseCidr(s: string): { network: number; length: number } | undefined {
  const [addr, len, extra] = s.split('/');
  if (addr === undefined || len === undefined || extra !== undefined || !/^\d{1,2}$/.test(len))
    return undefined;
  const ip = parseIpv4(addr);
  const length = Number(len);
  if (ip === undefined || length > 32) return undefined;
  return { network: maskTo(ip, length), length };
}

/** The first `length` bits of `ip`, as an unsigned integer. */
export function maskTo(ip: number, length: number): number {
  if (length === 0) return 0;
  return (ip & (0xffffffff << (32 - length))) >>> 0;
}
