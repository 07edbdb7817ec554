import { setTimeout as sleep } from 'node:timers/promises';
import { TWO_ISPS, pingCounts, startExperimentLab, startTunPair } from './setup.js';
import { renderChart, type Chart } from '../../plot/chart.js';
import { machineLine, writeReport } from './report.js';
import { midMedian } from '../../util/stats.js';

export interface IcmpLossOptions {
  /** Kill trials (the issue: at least 20). */
  trials: number;
  /** Ping rate (the thesis: 100/s). */
  pps: number;
  out: string;
  progress?: (line: string) => void;
}

export interface IcmpLossResult {
  pps: number;
  trials: number;
  lost: { min: number; median: number; max: number };
  /** Per trial, in order. */
  perTrial: number[];
  /** Who carried the TUN endpoints' packets in the first trial (`kernel ...` or `node ...`), as the buyer said. */
  endpointDataplane: string;
}

/** Seconds of pinging per trial: the kill comes after the first. */
const TRIAL_S = 3;
const KILL_AFTER_MS = 1000;

/**
 * `arrow lab experiment icmp-loss` (the thesis seed's §5.1): ping at 100/s from the client host
 * to the server host through a 2-ISP circuit between TUN endpoints, SIGKILL the router every
 * forward circuit enters the middle ISP by, and count the pings lost. Each trial buys a fresh
 * pair of paths, so every trial kills the active router, and heals it afterwards.
 */
export async function runIcmpLoss(o: IcmpLossOptions): Promise<IcmpLossResult> {
  const say = o.progress ?? ((): void => {});
  const x = await startExperimentLab('expicmp');
  const perTrial: number[] = [];
  let endpointDataplane = 'not started';
  try {
    for (let t = 0; t < o.trials; t++) {
      const pair = await startTunPair(x, { subnet: 3, hops: TWO_ISPS });
      try {
        if (!pair.middle) throw new Error('no middle router on a 2-ISP path');
        if (t === 0) endpointDataplane = pair.dataplane.client;
        const count = o.pps * TRIAL_S;
        const ping = x.client.run(
          ['ping', '-q', '-c', String(count), '-i', String(1 / o.pps), '-W', '1', pair.serverIp],
          { timeoutMs: (TRIAL_S + 10) * 1000 },
        );
        await sleep(KILL_AFTER_MS);
        await x.lab.fail(pair.middle, 'kill');
        const { sent, received } = pingCounts((await ping).stdout);
        if (sent !== count) throw new Error(`ping sent ${sent} of ${count}`);
        perTrial.push(sent - received);
        say(`trial ${t + 1}/${o.trials}: killed ${pair.middle}, lost ${sent - received} of ${sent}`);
        await x.lab.heal(pair.middle);
      } finally {
        await pair.stop();
      }
      // Let the neighbours of the healed router see it alive again before the next trial buys.
      await sleep(600);
    }
  } finally {
    await x.lab.stop();
  }
  const result: IcmpLossResult = {
    pps: o.pps,
    trials: o.trials,
    lost: { min: Math.min(...perTrial), median: midMedian(perTrial), max: Math.max(...perTrial) },
    perTrial,
    endpointDataplane,
  };
  await report(o, result);
  return result;
}

/** Writes the report, plot and JSON from a result (also to re-render a saved one). */
export async function report(o: IcmpLossOptions, r: IcmpLossResult): Promise<void> {
  const ms = (n: number): string => `${((n * 1000) / r.pps).toFixed(0)} ms`;
  const md = `# Experiment \`icmp-loss\`: pings lost across a router failure (the thesis seed's §5.1)

\`arrow lab experiment icmp-loss --trials ${o.trials} --pps ${o.pps}\`. ${machineLine()}

\`ping -i ${1 / o.pps}\` from the client host to the server host's TUN address, through circuits
bought across two ISPs (alpha ams→fra, beta fra→par, and the return path) between two
\`arrow endpoint --tun\`s. ${KILL_AFTER_MS / 1000} s in, the router every forward circuit enters beta by
is SIGKILLed; ${TRIAL_S} s of pings per trial. Each trial buys fresh circuits (so it kills the router
in use) and restarts the killed router afterwards. The endpoints' detector: 50 ms without an
answer, probes every 10 ms. Liveness (BFD-style keepalives) is off.

| | lost pings at ${o.pps}/s (min / median / max) | outage |
|---|---|---|
| Arrow, ${r.trials} trials | ${r.lost.min} / ${r.lost.median} / ${r.lost.max} | ${ms(r.lost.median)} median |
| thesis (seed 002), 45 trials per environment | 20 – 110 for most runs (outliers 250, 430) | 0.2 – 1 s |
| target | median ≤ 5 | |

Per trial: ${r.perTrial.join(', ')}.

![pings lost per trial](icmp-loss.png)

**Why.** The endpoint notices 50 ms after the first unanswered packet, probes, and the routers
next to the dead one move every circuit to the other router of beta's PoP (docs/failover.md);
the return path is repaired when the probe, turned around at the far end, reaches it. At
${r.pps} pings/s, each lost ping is ${ms(1)} of outage.
`;
  const chart = await renderChart(
    lossChart(
      `icmp-loss: pings lost at ${r.pps}/s when the middle ISP's router is killed`,
      'Arrow: lost per trial',
      r.perTrial,
    ),
  );
  writeReport(o.out, 'icmp-loss', md, chart, {
    pps: r.pps,
    trials: r.trials,
    lost: r.lost,
    perTrial: r.perTrial,
  });
}

/** The icmp-loss plots: pings lost per trial, with the thesis's range and the target (pure; also for a saved result). */
export function lossChart(title: string, label: string, perTrial: number[]): Chart {
  return {
    title,
    subtitle: `${perTrial.length} trials; thesis: 20-110 lost (grey lines); target: median <= 5 (green)`,
    panels: [
      {
        title: '',
        x: { title: 'trial', ticks: perTrial.map((_, i) => i + 1).filter((i) => i === 1 || i % 5 === 0) },
        y: { title: 'pings lost' },
        series: [
          {
            label,
            color: [200, 40, 40],
            marker: 'circle',
            width: 2,
            points: perTrial.map((y, i) => ({ x: i + 1, y })),
          },
        ],
        hlines: [
          { y: 20, label: 'thesis, low', color: [150, 150, 150] },
          { y: 110, label: 'thesis, high', color: [150, 150, 150] },
          { y: 5, label: 'target median', color: [20, 140, 60] },
        ],
      },
    ],
  };
}
