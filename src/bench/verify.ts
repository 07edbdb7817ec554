/**
 * `arrow bench verify` (docs/verify.md): how long `arrow verify` takes on a generated network of
 * many ISPs' stitched paths (issue 14's target: 10,000 circuits over 200 routers in under 1 s),
 * against brute force in the same run: one DATA packet per circuit through every router's own
 * `DataPlane.process` (src/verify/inject.ts). The two must agree on where every circuit ends, or
 * the run is INVALID.
 */
import { mulberry32 } from '../atlas/generate.js';
import type { Circuit } from '../store/circuit.js';
import type { RouterRegistration } from '../store/store.js';
import { median, round } from '../util/stats.js';
import { landingOf, verify } from '../verify/check.js';
import { Injector, type InjectNetwork } from '../verify/inject.js';
import { ispModel, mergeModels } from '../verify/sources.js';
import type { Model } from '../verify/model.js';
import { Checks, type Validity } from './validity.js';

export const VERIFY_TARGET_MS = 1000;
/** Runs further apart than this (max / min) measured the machine's noise. */
export const MAX_RUN_SPREAD = 1.5;

export interface VerifyBenchReport extends Validity {
  circuits: number;
  routers: number;
  isps: number;
  /** Circuits per stitched path. */
  pathLength: number;
  runs: number;
  /** States the checker visited (linear in the network: about two per circuit). */
  states: number;
  /** The check of every circuit, each run, ms. */
  runMs: number[];
  verifyMs: number;
  /** The same with every single router failure replayed. */
  failuresMs: number;
  /** Brute force: one packet per circuit through DataPlane.process, ms. */
  injectMs: number;
  /** verifyMs / injectMs. */
  ratio: number;
  /** Circuits whose outcome the checker and the routers agree on (all, or the run is INVALID). */
  agree: number;
  delivered: number;
  target: { ms: number; met: boolean };
  /** Smaller networks of the same shape: linear means time in proportion to circuits. */
  scaling: { circuits: number; states: number; verifyMs: number; injectMs: number }[];
}

/** A network of `isps` ISPs, each with 5 PoPs of `routers / isps / 5` routers, and paths of 3 circuits. */
export function generateVerifyNetwork(o: { circuits: number; routers: number; isps: number; seed: number }): {
  net: InjectNetwork;
  model: Model;
  pathLength: number;
} {
  const rand = mulberry32(o.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const popsPer = 5;
  const perPop = Math.max(1, Math.round(o.routers / o.isps / popsPer));
  const isps = Array.from({ length: o.isps }, (_, i) => {
    const routers: RouterRegistration[] = [];
    for (let p = 0; p < popsPer; p++)
      for (let r = 0; r < perPop; r++)
        routers.push({
          name: `isp${i}-p${p}-${r}`,
          pop: `p${p}`,
          address: `10.${(i >> 8) & 255}.${i & 255}.${p * 16 + r + 1}:4000`,
        });
    return { name: `isp${i}`, routers, circuits: [] as Circuit[] };
  });
  const pathLength = 3;
  let n = 0;
  const hex = (x: number): string => x.toString(16).padStart(32, '0');
  while (n < o.circuits) {
    // A path through `pathLength` different ISPs, last circuit first (as customers buy them).
    const through: number[] = [];
    while (through.length < Math.min(pathLength, o.isps)) {
      const i = Math.floor(rand() * o.isps);
      if (!through.includes(i)) through.push(i);
    }
    let next: Circuit['action'] = { kind: 'deliver-udp', target: `192.0.2.${(n % 250) + 1}:53` };
    for (let k = through.length - 1; k >= 0 && n < o.circuits; k--) {
      const isp = isps[through[k]!]!;
      const ingressPop = pick(['p0', 'p1', 'p2', 'p3', 'p4']);
      const egressPop = pick(['p0', 'p1', 'p2', 'p3', 'p4']);
      const pop = (p: string): string[] => isp.routers.filter((r) => r.pop === p).map((r) => r.address);
      const c: Circuit = {
        auth: hex(0x1000000 + n),
        owner: 'bench',
        ingressPop,
        egressPop,
        bandwidthMbps: 1,
        internalAuth: hex(0x2000000 + n),
        internalRouters: ingressPop === egressPop ? [] : pop(egressPop),
        action: next,
        createdAt: '2026-12-03T00:00:00Z',
        revision: 1,
      };
      isp.circuits.push(c);
      next = { kind: 'forward', next: { addresses: pop(ingressPop), auth: c.auth } };
      n++;
    }
  }
  const model = mergeModels(isps.map((i) => ispModel(i.name, i.circuits, i.routers)));
  return { net: { isps }, model, pathLength };
}

export function validateVerify(r: {
  runMs: number[];
  agree: number;
  circuits: number;
  delivered: number;
}): Validity {
  const spread = r.runMs.length ? Math.max(...r.runMs) / Math.max(1e-6, Math.min(...r.runMs)) : Infinity;
  return new Checks()
    .check(r.runMs.length >= 3, `${r.runMs.length} run(s): at least 3 are needed to see noise`)
    .check(spread <= MAX_RUN_SPREAD, `runs ${round(spread, 2)}x apart (> ${MAX_RUN_SPREAD}x): a busy machine`)
    .check(
      r.agree === r.circuits,
      `the checker and the routers disagree on ${r.circuits - r.agree} circuit(s): a bug, not a result`,
    )
    .check(r.delivered > 0, 'no circuit delivers: the generated network is broken').result;
}

export function runVerifyBench(o: {
  circuits: number;
  routers: number;
  isps: number;
  runs: number;
  seed: number;
}): VerifyBenchReport {
  const { net, model, pathLength } = generateVerifyNetwork(o);
  const runMs: number[] = [];
  let v = verify(model, { failures: false });
  for (let i = 0; i < o.runs; i++) {
    const t = performance.now();
    v = verify(model, { failures: false });
    runMs.push(performance.now() - t);
  }
  const tf = performance.now();
  verify(model, { failures: true });
  const failuresMs = performance.now() - tf;
  // Brute force in the same run: tables built first (as routers hold them), then one packet per circuit.
  const injector = new Injector(net);
  const ti = performance.now();
  const landings = v.flows.map((f) =>
    injector.inject(f.entry.hop.addresses[f.entry.hop.active]!, f.entry.circuit),
  );
  const injectMs = performance.now() - ti;
  const agree = v.flows.filter((f, i) => landingOf(f.outcome) === landings[i]).length;
  const delivered = v.flows.filter((f) => f.outcome.kind === 'delivered').length;
  const verifyMs = median(runMs);
  const circuits = net.isps.reduce((a, i) => a + i.circuits.length, 0);
  const scaling = [8, 4, 2].map((d) => {
    const small = generateVerifyNetwork({ ...o, circuits: Math.max(1, Math.round(o.circuits / d)) });
    const times: number[] = [];
    let sv = verify(small.model, { failures: false });
    for (let i = 0; i < o.runs; i++) {
      const t = performance.now();
      sv = verify(small.model, { failures: false });
      times.push(performance.now() - t);
    }
    const inj = new Injector(small.net);
    const t = performance.now();
    for (const f of sv.flows) inj.inject(f.entry.hop.addresses[f.entry.hop.active]!, f.entry.circuit);
    return {
      circuits: small.net.isps.reduce((a, i) => a + i.circuits.length, 0),
      states: sv.states,
      verifyMs: round(median(times), 2),
      injectMs: round(performance.now() - t, 2),
    };
  });
  scaling.push({ circuits, states: v.states, verifyMs: round(verifyMs, 2), injectMs: round(injectMs, 2) });
  return {
    ...validateVerify({ runMs, agree, circuits, delivered }),
    circuits,
    routers: net.isps.reduce((a, i) => a + i.routers.length, 0),
    isps: o.isps,
    pathLength,
    runs: o.runs,
    states: v.states,
    runMs: runMs.map((x) => round(x, 2)),
    verifyMs: round(verifyMs, 2),
    failuresMs: round(failuresMs, 1),
    injectMs: round(injectMs, 2),
    ratio: round(verifyMs / injectMs, 2),
    agree,
    delivered,
    target: { ms: VERIFY_TARGET_MS, met: verifyMs < VERIFY_TARGET_MS },
    scaling,
  };
}

export interface VerifyBenchFlags {
  circuits: number;
  routers: number;
  isps: number;
  runs: number;
  seed: number;
  json?: boolean;
  out: string;
}

export async function runVerifyBenchCommand(o: VerifyBenchFlags): Promise<void> {
  if (o.routers < o.isps * 5)
    throw new Error(`--routers must be at least 5 × --isps (${o.isps * 5}), got ${o.routers}`);
  const r = runVerifyBench(o);
  if (!r.valid) process.exitCode = 1;
  if (o.json) console.log(JSON.stringify(r, null, 2));
  else {
    console.log(
      `arrow verify on ${r.circuits} circuits over ${r.routers} routers of ${r.isps} ISPs (paths of ${r.pathLength}): ${r.states} states`,
    );
    console.log(
      `  check:        ${r.verifyMs} ms (median of ${r.runs}: ${r.runMs.join(', ')})  target < ${r.target.ms} ms: ${r.target.met ? 'met' : 'NOT met'}`,
    );
    console.log(`  with every single router failure: ${r.failuresMs} ms`);
    console.log(
      `  baseline, one packet per circuit through DataPlane.process: ${r.injectMs} ms (ratio ${r.ratio})`,
    );
    console.log(`  agree on ${r.agree} of ${r.circuits} circuits; ${r.delivered} delivered`);
    if (!r.valid) console.log(`INVALID: ${r.invalidReason}`);
  }
  const { verifyChart, writeBenchPlotFor } = await import('./plots.js');
  await writeBenchPlotFor(verifyChart(r), o, 'verify');
}
