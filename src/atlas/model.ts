/**
 * The atlas's map of the ARROW Internet: ISPs' PoPs, their PoP-to-PoP offers, the peering links
 * between ISPs, which PoPs can deliver to which prefixes, and live measurements. Pure data: the
 * service fills it from portals and probes; the query engine (query.ts) reads it.
 */

/** A PoP of one ISP. Its id is `${isp}/${pop}`. */
export interface AtlasPop {
  isp: string;
  pop: string;
  /** Router addresses host:port, primary first. */
  routers: string[];
}

/** One ISP's PoP-to-PoP offer, as the portal's GET /offers lists it. */
export interface AtlasOffer {
  isp: string;
  /** Ingress PoP name inside `isp`. */
  from: string;
  /** Egress PoP name inside `isp`. */
  to: string;
  capacityMbps: number;
  availableMbps: number;
  /** SLA latency bound. */
  latencyMs: { min: number; max: number };
  maxLossPct: number;
  uptimePct: number;
  pricePerMbps: number;
  /** Router addresses of the ingress and egress PoPs, primary first. */
  ingress: string[];
  egress: string[];
}

/** A peering link between PoPs of two different ISPs; usable in both directions. */
export interface AtlasPeering {
  /** PoP ids (`isp/pop`). */
  a: string;
  b: string;
  /** Configured one-way latency, used when no fresh measurement exists (0 when absent). */
  latencyMs?: number;
}

export interface Measurement {
  latencyMs: number;
  lossPct: number;
  samples: number;
  /** When it was taken, ms since the epoch. */
  at: number;
}

/** A destination prefix and the PoPs that can deliver to it. */
export interface AtlasTarget {
  /** IPv4 CIDR, e.g. 127.0.0.0/24. */
  prefix: string;
  /** PoP ids (`isp/pop`). */
  pops: string[];
}

export interface AtlasMap {
  pops: AtlasPop[];
  offers: AtlasOffer[];
  peerings: AtlasPeering[];
  targets: AtlasTarget[];
  /** Live measurements: key segmentKey(...) for an offer's segment, linkKey(...) for a peering link. */
  measured: { segments: Map<string, Measurement>; links: Map<string, Measurement> };
  /**
   * A measurement older than this (ms, relative to the query's `now`) is stale and the SLA is used
   * instead. Default DEFAULT_MEASUREMENT_MAX_AGE_MS.
   */
  measurementMaxAgeMs?: number;
}

export const DEFAULT_MEASUREMENT_MAX_AGE_MS = 60_000;

/** `${isp}/${pop}`. */
export function popId(isp: string, pop: string): string {
  return `${isp}/${pop}`;
}

/** The ISP part of a PoP id. */
export function ispOf(id: string): string {
  const i = id.indexOf('/');
  return i < 0 ? id : id.slice(0, i);
}

/** Measurement key of an offer's segment: `${isp}:${from}->${to}` (PoP names inside the ISP). */
export function segmentKey(isp: string, from: string, to: string): string {
  return `${isp}:${from}->${to}`;
}

/** Measurement key of a peering link: the two PoP ids sorted and joined by `|` (direction-free). */
export function linkKey(a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}
