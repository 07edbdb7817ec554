// The benches' plots (src/bench/plots.ts): each bench's report, here synthetic, drawn beside its
// same-run baseline, rendered to SVG and PNG. No bench runs: pure rendering and one write.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AtlasBenchReport } from '../src/bench/atlas.js';
import type { DataPlaneBenchReport } from '../src/bench/dataplane.js';
import type { KernelPoint, KernelRow, KernelRows } from '../src/bench/forward-kernel.js';
import type { ForwardBenchOutput } from '../src/bench/forward.js';
import type { LivenessBenchReport } from '../src/bench/liveness.js';
import {
  atlasChart,
  dataPlaneChart,
  forwardChart,
  livenessChart,
  propagationChart,
  storeThreadChart,
  writeBenchPlot,
} from '../src/bench/plots.js';
import type { PropagationReport, StoreResult } from '../src/bench/propagation.js';
import type { ConfigResult, PointResult } from '../src/bench/report.js';
import type { ModeResult, StoreThreadReport } from '../src/bench/store-thread.js';
import { renderChart, type Chart } from '../src/plot/chart.js';
import { decodePng, PNG_SIGNATURE } from './helpers/png.js';

const MACHINE = { cpus: 2, node: 'v20.0.0' };
const VALID = { valid: true, invalidReason: null };

/** Text as Vega writes it into the SVG: one <text> element per string. */
function hasText(svg: string, text: string): boolean {
  const escaped = text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/'/g, '&#39;');
  return svg.includes(`>${escaped}</text>`) || svg.includes(`>${text}</text>`);
}

/** Renders `chart` and checks its texts are in the SVG and the PNG is one. */
async function checkRendered(chart: Chart, texts: string[]): Promise<string> {
  const { svg, png } = await renderChart(chart);
  assert.match(svg, /^<svg /);
  for (const text of [chart.title, chart.subtitle, ...texts])
    assert.ok(hasText(svg, text), `the SVG has the text "${text}"`);
  assert.equal(svg.match(/role-legend"/g)?.length, 1, 'one legend');
  assert.ok(!svg.includes('NaN'), 'no point was placed at NaN');
  assert.deepEqual(png.subarray(0, 8), PNG_SIGNATURE);
  assert.equal(decodePng(png).width, chart.width ?? (chart.panels.length > 1 ? 1400 : 1000));
  return svg;
}

function point(pps: number, size: number, valid = true): PointResult {
  return {
    ...(valid ? VALID : { valid: false, invalidReason: 'run 1: other processes took 80% of a core (> 30%)' }),
    pps,
    mbps: (size * 8 * pps) / 1e6,
    sentPps: pps * 1.2,
    cpu: { sender: 90, relay: 95, sink: 60 },
    perRun: [{ pps, mbps: (size * 8 * pps) / 1e6, sentPps: pps * 1.2, packets: pps, cpu: {} }],
  };
}

function kernelPoint(pps: number, size: number): KernelPoint {
  return { ...VALID, pps, mbps: (size * 8 * pps) / 1e6, sentPps: pps, perRun: [] };
}

function kernelRow(pps64: number, pps1400: number): KernelRow {
  return { '64': kernelPoint(pps64, 64), '1400': kernelPoint(pps1400, 1400) };
}

function forwardReport(kernel: boolean): ForwardBenchOutput {
  const row = (p64: number, p1400: number, valid1400 = true): ConfigResult => ({
    '64': point(p64, 64),
    '1400': point(p1400, 1400, valid1400),
  });
  const rows: KernelRows = {
    kernelAttach: 'xdp-native',
    kernelGenerator: kernelRow(3_000_000, 1_500_000),
    kernelGeneratorTag: kernelRow(2_200_000, 1_200_000),
    kernelBaseline: kernelRow(1_800_000, 1_000_000),
    kernel1: kernelRow(1_500_000, 900_000),
    kernel2: kernelRow(1_100_000, 700_000),
    kernel1Tag: kernelRow(1_000_000, 650_000),
    kernelRatio1: 0.833,
    kernelRatioTag: 0.556,
    kernelRatios: { '64': { kernel1: 0.833, kernel2: 0.611, kernel1Tag: 0.556 } },
    kernelNsPerPacket: { '64': { kernelBaseline: 200, kernel1: 300, kernel2: 250, kernel1Tag: 500 } },
    kernelTargets: { ratio1Met: true, pps1Met: true, ratioTagMet: false, size: 64 },
    kernelRouterCounters: { dropBadTag: 0, dropReplay: 0, dropOverRate: 0, passedUp: 0 },
  };
  return {
    ...(kernel ? VALID : { valid: false, invalidReason: 'hop2 1400 B: run 1: other processes took 80%' }),
    baseline: row(80_000, 72_000),
    hop1: row(60_000, 55_000),
    // An INVALID point: left out of the plot, counted in the subtitle.
    hop2: row(45_000, 40_000, kernel),
    ratio1: 0.764,
    ratio2: 0.556,
    ratios: { '64': { hop1: 0.75, hop2: 0.563 }, '1400': { hop1: 0.764, hop2: 0.556 } },
    sizes: [64, 1400],
    runs: 3,
    durationS: 2,
    machine: MACHINE,
    ...(kernel
      ? { ...rows, kernelValid: true, kernelInvalidReason: null }
      : { kernelUnavailable: 'not root' }),
  };
}

test('bench forward: packets/s per size and path, the Node rows vs the relay and the kernel rows vs the XDP forwarder', async () => {
  const chart = forwardChart(forwardReport(true));
  assert.equal(chart.panels.length, 2);
  await checkRendered(chart, [
    'Node path: UDP sockets on loopback',
    'kernel path: XDP on veth between namespaces',
    'UDP payload size (B, log scale)',
    'rate at the sink (packets/s, log scale)',
    'plain Node UDP relay (baseline)',
    '1 ARROW router',
    '2 ARROW routers',
    'plain XDP forwarder (kernel baseline)',
    '1 router in XDP',
    '2 routers in XDP',
    '1 router in XDP checking tags',
    'XDP generator alone to the sink (ceiling)',
  ]);

  // Without the kernel rows, one panel; an INVALID point is not drawn and the subtitle says so.
  const node = forwardChart(forwardReport(false));
  assert.equal(node.panels.length, 1);
  assert.match(node.subtitle, /kernel rows not measured: not root/);
  assert.match(node.subtitle, /1 INVALID point\(s\) not drawn/);
  const hop2 = node.panels[0]!.series.find((s) => s.label === '2 ARROW routers')!;
  assert.deepEqual(hop2.points, [{ x: 64, y: 45_000 }]);
  await checkRendered(node, ['2 ARROW routers']);
});

test('bench forward with one size: the single point is drawn, not NaN', async () => {
  const r = forwardReport(false);
  const one: ForwardBenchOutput = { ...r, sizes: [64] };
  const chart = forwardChart(one);
  assert.equal(chart.panels[0]!.series[0]!.points.length, 1);
  await checkRendered(chart, ['plain Node UDP relay (baseline)']);
});

const DATAPLANE: DataPlaneBenchReport = {
  ...VALID,
  circuits: 10_000,
  packets: 2_000_000,
  runs: 3,
  nsPerPacket: 154.8,
  perRunNs: [163, 154.8, 153.9],
  baselineNs: 6.1,
  ratio: 25.38,
  memory: {
    circuits: 10_000,
    nodeBytesPerCircuit: 400,
    kernel: { unavailable: 'not root' },
    target: { bytesPerCircuit: 512, nodeMet: true, kernelMet: null },
  },
};

test('bench dataplane: ns per packet of each run, the median and the same-run baseline', async () => {
  await checkRendered(dataPlaneChart(DATAPLANE), [
    'run',
    'time per packet (ns, log scale)',
    'DataPlane.process: check, lookup, rewrite (each run)',
    'median 154.8 ns',
    'baseline: the same loop with no ARROW work, median 6.1 ns',
  ]);
  // INVALID: nothing drawn, and the subtitle says so.
  const bad = dataPlaneChart({ ...DATAPLANE, valid: false, invalidReason: 'runs 2x apart' });
  assert.match(bad.subtitle, /^INVALID run, nothing drawn/);
  assert.deepEqual(bad.panels[0]!.series[0]!.points, []);
  await checkRendered(bad, ['time per packet (ns, log scale)']);
});

function storeResult(p50: number, p99: number): StoreResult {
  return {
    ...VALID,
    baseline: { requestsPerSec: 5200, p50Ms: 1.2, p99Ms: 4.5 },
    ratio: 0.22,
    p50Ms: p50,
    p99Ms: p99,
    maxMs: p99 * 2,
    createsPerSec: 1150,
    circuits: 1000,
    alreadyPropagated: 3,
    missing: 0,
    failed: 0,
    resyncs: 0,
    resynced: 0,
    createP50Ms: 20,
    createP99Ms: 60,
    cpu: {},
    meetsTarget: p99 < 50,
  };
}

test('bench propagation: 201 to every router, the create round trip and the GET /healthz baseline, per store', async () => {
  const report: PropagationReport = {
    sqlite: storeResult(3.1, 12),
    etcd: storeResult(9.5, 61),
    routers: 4,
    concurrency: 32,
    machine: MACHINE,
  };
  const chart = propagationChart(report);
  assert.match(chart.subtitle, /sqlite met, etcd NOT met/);
  await checkRendered(chart, [
    'percentile as 1 in N: p50 = 2, p99 = 100 (log scale)',
    'time (ms, log scale)',
    "propagation, sqlite: 1,150 creates/s, 0.22× the baseline's requests/s",
    "propagation, etcd: 1,150 creates/s, 0.22× the baseline's requests/s",
    'create round trip (POST /circuits), sqlite',
    'baseline: GET /healthz round trip, etcd lab, 5,200 requests/s',
    'target: p99 under 50 ms',
  ]);
  const bad = propagationChart({
    ...report,
    etcd: { ...storeResult(1, 2), valid: false, invalidReason: 'x' },
  });
  assert.match(bad.subtitle, /INVALID, not drawn: etcd/);
  assert.ok(
    bad.panels[0]!.series.filter((s) => s.label.includes('etcd')).every((s) => s.points.length === 0),
  );
});

const LIVENESS: LivenessBenchReport = {
  ...VALID,
  liveness: { enabled: true, intervalMs: 200, multiplier: 3 },
  detectionMs: 600,
  calibration: { capacityEchoesPerSec: 800, fraction: 0.1, steps: [] },
  lab: { isps: 3, routers: 12, paths: 4 },
  healthCheck: { sent: 80, received: 80 },
  soak: {
    seconds: 600,
    echoesPerSec: 80,
    echoes: { sent: 48_000, received: 48_000, lost: 0, rttMs: { p50: 0.8, p99: 4.2, max: 40 } },
    neighboursInUse: 29,
    keepalivesSent: 86_793,
    packetsPerNeighbourPerSec: 10,
  },
  falseDeadVerdicts: 0,
  livenessVerdicts: 0,
  revivals: 0,
  setupVerdicts: 0,
  routersWithVerdicts: [],
  keepaliveWaitMs: { samples: 86_000, p50: 1, p99: 20, p999: 50, max: 96 },
  machine: { cores: 2, loadAvg1: 1.2, idlePct: 60, routersCpuPct: 30 },
};

test('bench liveness: false verdicts in the title, keepalive waits vs the echo round trip and the detection time', async () => {
  const chart = livenessChart(LIVENESS);
  assert.match(chart.title, /0 false dead verdict\(s\) in 600 s/);
  const waits = chart.panels[0]!.series[0]!.points;
  assert.deepEqual(
    waits.map((p) => p.x),
    [2, 100, 1000, 86_000],
    'p50, p99, p99.9 and the max at N samples',
  );
  // The keepalives' N (86,000) is a tick; the echoes' (48,000) would run into its label.
  assert.deepEqual(chart.panels[0]!.x.ticks, [2, 100, 1000, 86_000]);
  await checkRendered(chart, [
    'percentile as 1 in N: p50 = 2, p99 = 100, p99.9 = 1000, max = N samples (log scale)',
    'wait (ms, log scale)',
    'keepalive wait (histogram bucket upper bounds)',
    'echo round trip over the same routers (baseline)',
    'detection time 200 ms × 3: a wait this long is a dead verdict',
  ]);
  const bad = livenessChart({ ...LIVENESS, valid: false, invalidReason: 'router(s) exited' });
  assert.match(bad.subtitle, /INVALID run, nothing drawn/);
  await checkRendered(bad, ['keepalive wait (histogram bucket upper bounds)']);
});

function mode(storeThread: boolean, scale: number): ModeResult {
  return {
    ...VALID,
    storeThread,
    sent: 20_000,
    received: 20_000,
    latencyMs: { p50: 0.2 * scale, p99: 2 * scale, p999: 8 * scale, max: 30 * scale },
    loopDelayMs: {
      p50Median: 0.5 * scale,
      p99Median: 5 * scale,
      p99Max: 20 * scale,
      max: 40 * scale,
      publishes: 50,
    },
    storeChanges: 4000,
  };
}

test('bench store-thread: latency and loop delay with the store client on the forwarding thread vs its own', async () => {
  const report: StoreThreadReport = {
    options: { circuits: 2000, pps: 2000, changes: 400, seconds: 10 },
    results: [mode(false, 3), mode(true, 1)],
    ...VALID,
    ratios: { latencyP99: 0.333, latencyP999: 0.333, latencyMax: 0.333, loopDelayP99: 0.333 },
  };
  const chart = storeThreadChart(report);
  assert.match(chart.subtitle, /latency p99 0\.333×, loop delay p99 0\.333×/);
  await checkRendered(chart, [
    'forwarded packets: sent to forwarded back',
    "router's event-loop delay, median stats publish",
    'latency (ms, log scale)',
    'event-loop delay (ms, log scale)',
    'percentile as 1 in N: p50 = 2, p99 = 100, p99.9 = 1000, max = N samples (log scale)',
    'store client on the forwarding thread (baseline)',
    'store client on its own thread',
    "worst publish's p99, own thread",
  ]);
  const bad = storeThreadChart({
    ...report,
    results: [{ ...mode(false, 3), valid: false, invalidReason: 'lost' }, mode(true, 1)],
    valid: false,
    invalidReason: 'storeThread false: lost',
    ratios: null,
  });
  assert.match(bad.subtitle, /INVALID, not drawn: forwarding thread/);
  await checkRendered(bad, ['store client on its own thread']);
});

test('bench atlas: query time per shape vs plain Dijkstra, and the p50 target', async () => {
  const shape = (name: string, p50: number): AtlasBenchReport['shapes'][number] => ({
    name,
    p50Ms: p50,
    p99Ms: p50 * 4,
    ratio: p50 / 0.5,
    answered: 100,
  });
  const report: AtlasBenchReport = {
    ...VALID,
    runP50Ms: [4, 4.1, 3.9],
    isps: 200,
    pops: 1000,
    offers: 1800,
    peerings: 900,
    runs: 3,
    queries: 100,
    seed: 1,
    baseline: { p50Ms: 0.5, p99Ms: 1.5 },
    shapes: [shape('unconstrained', 2), shape('k2-isp', 6), shape('sort-price', 3)],
    overall: { p50Ms: 3, p99Ms: 20 },
    target: { p50Ms: 100, met: true },
  };
  await checkRendered(atlasChart(report), [
    'percentile as 1 in N: p50 = 2, p99 = 100 (log scale)',
    'query time (ms, log scale)',
    'plain Dijkstra on latency (baseline)',
    'unconstrained: p50 4× the baseline, 100/100 answered',
    'k2-isp: p50 12× the baseline, 100/100 answered',
    'all shapes together',
    'target: p50 under 100 ms',
  ]);
});

test('writeBenchPlot writes NAME.svg and NAME.png into --out, creating it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'arrow-bench-plots-'));
  try {
    const out = join(dir, 'nested', 'bench-out');
    const files = await writeBenchPlot(dataPlaneChart(DATAPLANE), out, 'dataplane');
    assert.deepEqual(files, { svg: join(out, 'dataplane.svg'), png: join(out, 'dataplane.png') });
    assert.ok(existsSync(files.svg) && existsSync(files.png), 'both files exist');
    assert.match(readFileSync(files.svg, 'utf8'), /^<svg /);
    assert.deepEqual(readFileSync(files.png).subarray(0, 8), PNG_SIGNATURE);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
