import { setTimeout as sleep } from 'node:timers/promises';
import { pingCounts } from './setup.js';
import { renderChart } from '../../plot/chart.js';
import { machineLine, writeReport } from './report.js';
import { lossChart } from './icmp-loss.js';
import {
  CUSTOMER,
  killServingRouter,
  startGateway,
  startGatewayLab,
  warmUp,
  type Takeover,
} from './gateway.js';
import { medianOf } from './download-gateway.js';
import { midMedian } from '../../util/stats.js';

export interface IcmpLossGatewayOptions {
  trials: number;
  pps: number;
  out: string;
  progress?: (line: string) => void;
}

export interface IcmpLossGatewayResult {
  mode: 'gateway';
  pps: number;
  trials: number;
  lost: { min: number; median: number; max: number };
  perTrial: number[];
  /** Per trial: kill → the sibling's claim, and claim → the edge router's route. */
  takeovers: Takeover[];
  takeoverMs: number | null;
  routeMs: number | null;
}

const TRIAL_S = 3;
const KILL_AFTER_MS = 1000;

/**
 * `arrow lab experiment icmp-loss --mode gateway` (the thesis seed's §5.1 in its own setting): ping
 * at 100/s from the customer's tunnel address to a web host that runs nothing of ours, through the
 * customer's gateway and a 2-ISP path ending in deliver-ip; 1 s in, the egress router serving the
 * customer is SIGKILLed. Each trial starts a new gateway (new circuits) and heals the killed router.
 */
export async function runIcmpLossGateway(o: IcmpLossGatewayOptions): Promise<IcmpLossGatewayResult> {
  const say = o.progress ?? ((): void => {});
  const g = await startGatewayLab('expicmpgw', { keep: process.env.ARROW_EXPERIMENT_KEEP === '1' });
  const perTrial: number[] = [];
  const takeovers: Takeover[] = [];
  try {
    for (let t = 0; t < o.trials; t++) {
      const gateway = await startGateway(g, { tag: `icmp-${t}` });
      try {
        await warmUp(g);
        const count = o.pps * TRIAL_S;
        const ping = g.client.run(
          [
            'ping',
            '-q',
            '-c',
            String(count),
            '-i',
            String(1 / o.pps),
            '-W',
            '1',
            '-I',
            CUSTOMER,
            g.web.address,
          ],
          { timeoutMs: (TRIAL_S + 10) * 1000 },
        );
        await sleep(KILL_AFTER_MS);
        const kill = await killServingRouter(g);
        const { sent, received } = pingCounts((await ping).stdout);
        if (sent !== count) throw new Error(`ping sent ${sent} of ${count}`);
        const takeover = await kill.done();
        perTrial.push(sent - received);
        takeovers.push(takeover);
        say(
          `trial ${t + 1}/${o.trials}: killed ${takeover.killed}, lost ${sent - received} of ${sent}; ` +
            `${takeover.sibling} took over ${takeover.takeoverMs ?? 'before'} ms after, the edge router's route moved to it ${takeover.routeMs} ms after the kill`,
        );
        await g.lab.heal(takeover.killed);
      } finally {
        await gateway.stop();
      }
      await sleep(600);
    }
  } finally {
    await g.lab.stop();
  }
  const result: IcmpLossGatewayResult = {
    mode: 'gateway',
    pps: o.pps,
    trials: o.trials,
    lost: { min: Math.min(...perTrial), median: midMedian(perTrial), max: Math.max(...perTrial) },
    perTrial,
    takeovers,
    takeoverMs: medianOf(takeovers.map((t) => t.takeoverMs)),
    routeMs: medianOf(takeovers.map((t) => t.routeMs)),
  };
  await report(o, result);
  return result;
}

export async function report(o: IcmpLossGatewayOptions, r: IcmpLossGatewayResult): Promise<void> {
  const ms = (n: number): string => `${((n * 1000) / r.pps).toFixed(0)} ms`;
  const md = `# Experiment \`icmp-loss --mode gateway\`: pings lost when the egress router dies (the thesis seed's §5.1)

\`arrow lab experiment icmp-loss --mode gateway --trials ${o.trials} --pps ${o.pps}\`. ${machineLine()}

\`ping -i ${1 / o.pps} -I ${CUSTOMER}\` from the customer's host to a web host that runs nothing of
ours, through the customer's \`arrow endpoint --tun\` gateway and a path across two ISPs (alpha
ams→fra, beta fra→lon) whose last circuit is \`deliver-ip\`. ${KILL_AFTER_MS / 1000} s in, the egress
router serving the customer (the thesis's active decapsulation node, \`arrow lab fail egress:beta\`) is
SIGKILLed; ${TRIAL_S} s of pings per trial. Each trial starts a new gateway (new circuits) and
restarts the killed router afterwards. The gateway's detector: 50 ms without an answer, probes
every 10 ms.

| | lost pings at ${o.pps}/s (min / median / max) | outage | kill → the sibling's takeover (median) | kill → the edge router's route via the sibling (median) |
|---|---|---|---|---|
| Arrow gateway, ${r.trials} trials | ${r.lost.min} / ${r.lost.median} / ${r.lost.max} | ${ms(r.lost.median)} median | ${r.takeoverMs ?? '–'} ms | ${r.routeMs ?? '–'} ms |
| thesis (seed 002), 45 trials per environment | 20 – 110 for most runs | 0.2 – 1 s | | |
| target | median ≤ 5 | | | |

Per trial (lost): ${r.perTrial.join(', ')}. Per trial (kill → the sibling's claim ms / kill → the edge router's route via the sibling ms):
${r.takeovers.map((t) => `${t.takeoverMs ?? 'earlier'}/${t.routeMs ?? '–'}`).join(', ')}.

![pings lost per trial](icmp-loss-gateway.png)

**Why.** A ping is lost on the way out until the customer's failover moves the circuit to the
sibling (as in peer mode: detection, probe, the upstream router's repair), and on the way back
until the edge router routes the customer's address to the sibling. The second does not wait for
the first: the dead router's routes vanish with its TUN, BIRD withdraws its claim, and the edge
router falls back to the sibling's standby announcement, which returns the answers too. Peer mode
(\`icmp-loss.md\`) repairs the return path like the forward one.
`;
  const chart = await renderChart(
    lossChart(
      `icmp-loss --mode gateway: pings lost at ${r.pps}/s when the egress router is killed`,
      'Arrow gateway: lost per trial',
      r.perTrial,
    ),
  );
  writeReport(o.out, 'icmp-loss-gateway', md, chart, r);
}
