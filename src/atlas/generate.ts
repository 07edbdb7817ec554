import type { AtlasMap, AtlasOffer, AtlasPeering, AtlasPop, AtlasTarget, Measurement } from './model.js';
import { linkKey, popId, segmentKey } from './model.js';

/**
 * A deterministic synthetic atlas for benchmarks and property tests. Cities are scattered over the
 * globe; each ISP has PoPs in distinct cities (popular cities draw more ISPs, so hubs emerge), sells
 * offers over a sparse mesh between its PoPs (its nearest neighbours plus a spanning tree, both
 * directions), and peers with other ISPs' PoPs in the same city. Latencies follow great-circle
 * distance over fibre; some segments and links carry measurements, a few of them lossy.
 */
export interface GenerateOptions {
  isps: number;
  pops: number;
  seed: number;
  /** Default 150. */
  cities?: number;
  /** Timestamp of the measurements (ms epoch); default 0, so query with the same `now`. */
  now?: number;
}

export function generateAtlas(opts: GenerateOptions): AtlasMap {
  const { isps } = opts;
  const cityCount = opts.cities ?? 150;
  if (!Number.isInteger(isps) || isps < 1) throw new RangeError('isps must be a positive integer');
  if (!Number.isInteger(opts.pops) || opts.pops < 2 * isps)
    throw new RangeError('pops must be at least 2 × isps');
  if (cityCount < 2) throw new RangeError('cities must be at least 2');
  if (opts.pops > isps * cityCount)
    throw new RangeError('pops must be at most isps × cities (one PoP per city per ISP)');
  const rnd = mulberry32(opts.seed);
  const now = opts.now ?? 0;

  const cities = Array.from({ length: cityCount }, (_, i) => ({
    name: `c${String(i).padStart(3, '0')}`,
    lat: Math.asin(2 * rnd() - 1) * (180 / Math.PI) * 0.8,
    lon: rnd() * 360 - 180,
    // Zipf-like popularity: a few hub cities, a long tail.
    weight: 1 / (i + 1) ** 0.8,
  }));

  // PoPs per ISP: two each, the rest spread with a skew (a few large ISPs).
  const perIsp = new Array<number>(isps).fill(2);
  const ispWeight = Array.from({ length: isps }, (_, i) => 1 / (i + 1) ** 0.7);
  for (let left = opts.pops - 2 * isps; left > 0;) {
    const i = pickWeighted(ispWeight, rnd);
    if (perIsp[i]! >= cityCount) continue; // one PoP per city per ISP
    perIsp[i]!++;
    left--;
  }

  const ispNames = Array.from({ length: isps }, (_, i) => `isp${String(i).padStart(3, '0')}`);
  const pops: AtlasPop[] = [];
  const popCity: number[] = [];
  const popsOfIsp: number[][] = [];
  const popsOfCity: number[][] = cities.map(() => []);
  let routerSerial = 0;
  for (let i = 0; i < isps; i++) {
    const chosen = new Set<number>();
    const weights = cities.map((c) => c.weight);
    while (chosen.size < perIsp[i]!) {
      const c = pickWeighted(weights, rnd);
      chosen.add(c);
      weights[c] = 0;
    }
    popsOfIsp.push([]);
    for (const c of [...chosen].sort((a, b) => a - b)) {
      const idx = pops.length;
      const routers = [0, 1].map(() => {
        const n = routerSerial++;
        return `127.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}:7000`;
      });
      pops.push({ isp: ispNames[i]!, pop: cities[c]!.name, routers });
      popCity.push(c);
      popsOfIsp[i]!.push(idx);
      popsOfCity[c]!.push(idx);
    }
  }

  const km = (a: number, b: number): number => distanceKm(cities[popCity[a]!]!, cities[popCity[b]!]!);
  // One way over fibre, about 200 km per ms, with 1.3× route stretch, plus 0.5 ms of equipment.
  const fibreMs = (a: number, b: number): number => 0.5 + (km(a, b) * 1.3) / 200;

  const offers: AtlasOffer[] = [];
  const segments = new Map<string, Measurement>();
  const addOffer = (a: number, b: number, isp: number, quality: number): void => {
    const base = fibreMs(a, b);
    const capacityMbps = 1000 * (1 + Math.floor(rnd() * 100));
    const offer: AtlasOffer = {
      isp: ispNames[isp]!,
      from: pops[a]!.pop,
      to: pops[b]!.pop,
      capacityMbps,
      availableMbps: Math.round(capacityMbps * (0.05 + 0.95 * rnd())),
      latencyMs: { min: round2(base), max: round2(base * (1.1 + 0.4 * rnd())) },
      maxLossPct: round2(0.05 + 0.95 * rnd()),
      uptimePct: [99.9, 99.95, 99.99, 99.999][Math.floor(rnd() * 4)]!,
      pricePerMbps: round2(quality * (0.2 + km(a, b) / 2000) * (0.5 + rnd())),
      ingress: pops[a]!.routers,
      egress: pops[b]!.routers,
    };
    offers.push(offer);
    if (rnd() < 0.5) {
      const lossy = rnd() < 0.05;
      segments.set(segmentKey(offer.isp, offer.from, offer.to), {
        latencyMs: round2(offer.latencyMs.min + (offer.latencyMs.max - offer.latencyMs.min) * rnd()),
        lossPct: lossy ? round2(2 + 18 * rnd()) : round2(0.1 * rnd()),
        samples: 20,
        at: now,
      });
    }
  };
  for (let i = 0; i < isps; i++) {
    const mine = popsOfIsp[i]!;
    const quality = 0.5 + rnd();
    const pairs = new Set<string>();
    const connect = (a: number, b: number): void => {
      const key = a < b ? `${a},${b}` : `${b},${a}`;
      if (a === b || pairs.has(key)) return;
      pairs.add(key);
      addOffer(a, b, i, quality);
      addOffer(b, a, i, quality);
    };
    if (mine.length <= 6) {
      // Small ISPs sell every pair.
      for (const a of mine) for (const b of mine) if (a < b) connect(a, b);
    } else {
      // Prim's spanning tree keeps the ISP connected; the 4 nearest neighbours add a mesh.
      const inTree = new Set([mine[0]!]);
      while (inTree.size < mine.length) {
        let best: [number, number, number] = [-1, -1, Infinity];
        for (const a of inTree)
          for (const b of mine) if (!inTree.has(b) && km(a, b) < best[2]) best = [a, b, km(a, b)];
        connect(best[0], best[1]);
        inTree.add(best[1]);
      }
      for (const a of mine) {
        const near = mine.filter((b) => b !== a).sort((x, y) => km(a, x) - km(a, y));
        for (const b of near.slice(0, 4)) connect(a, b);
        // A long-haul offer or two, as real backbones have.
        if (rnd() < 0.3) connect(a, near[near.length - 1 - Math.floor(rnd() * Math.min(5, near.length))]!);
      }
    }
  }

  const peerings: AtlasPeering[] = [];
  const links = new Map<string, Measurement>();
  const peered = new Set<number>();
  const addPeering = (a: number, b: number): void => {
    const p: AtlasPeering = { a: popId(pops[a]!.isp, pops[a]!.pop), b: popId(pops[b]!.isp, pops[b]!.pop) };
    p.latencyMs = round2(km(a, b) > 0 ? fibreMs(a, b) : 0.1 + 0.9 * rnd());
    peerings.push(p);
    peered.add(a);
    peered.add(b);
    if (rnd() < 0.3)
      links.set(linkKey(p.a, p.b), {
        latencyMs: round2(p.latencyMs * (0.8 + 0.4 * rnd())),
        lossPct: rnd() < 0.05 ? round2(1 + 9 * rnd()) : 0,
        samples: 20,
        at: now,
      });
  };
  for (const here of popsOfCity)
    for (let x = 0; x < here.length; x++)
      for (let y = x + 1; y < here.length; y++) if (rnd() < 0.6) addPeering(here[x]!, here[y]!);
  // Every ISP peers somewhere: an ISP with no peering gets one to the nearest PoP of another ISP.
  for (let i = 0; i < isps; i++) {
    if (popsOfIsp[i]!.some((p) => peered.has(p))) continue;
    const a = popsOfIsp[i]![0]!;
    let best = -1;
    for (let b = 0; b < pops.length; b++)
      if (pops[b]!.isp !== pops[a]!.isp && (best < 0 || km(a, b) < km(a, best))) best = b;
    if (best >= 0) addPeering(a, best);
  }

  // Targets: a /16 behind three PoPs and a /24 inside it behind one more (longest prefix wins),
  // and a few /24s behind one or two PoPs each.
  const somePop = (): string => {
    const p = pops[Math.floor(rnd() * pops.length)]!;
    return popId(p.isp, p.pop);
  };
  const targets: AtlasTarget[] = [
    { prefix: '10.1.0.0/16', pops: [somePop(), somePop(), somePop()] },
    { prefix: '10.1.2.0/24', pops: [somePop()] },
    { prefix: '192.0.2.0/24', pops: [somePop(), somePop()] },
    { prefix: '198.51.100.0/24', pops: [somePop()] },
    { prefix: '203.0.113.0/24', pops: [somePop(), somePop()] },
  ];

  return { pops, offers, peerings, targets, measured: { segments, links } };
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

function distanceKm(a: { lat: number; lon: number }, b: { lat: number; lon: number }): number {
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLon = (b.lon - a.lon) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * 6371 * Math.asin(Math.min(1, Math.sqrt(h)));
}

function pickWeighted(weights: number[], rnd: () => number): number {
  let total = 0;
  for (const w of weights) total += w;
  let x = rnd() * total;
  for (let i = 0; i < weights.length; i++) {
    x -= weights[i]!;
    if (x < 0 && weights[i]! > 0) return i;
  }
  for (let i = weights.length - 1; i >= 0; i--) if (weights[i]! > 0) return i;
  return 0;
}

/** A small, fast, seeded PRNG (Mulberry32): uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
