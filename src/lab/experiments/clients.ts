import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { UdpClientsEvent, UdpClientsResult } from '../udp-clients.js';
import { THREE_ISPS, startExperimentLab, startTunPair } from './setup.js';
import { renderChart, type Chart } from '../../plot/chart.js';
import { machineLine, writeReport } from './report.js';
import { midMedian } from '../../util/stats.js';

export interface ClientsOptions {
  counts: number[];
  out: string;
  progress?: (line: string) => void;
}

export interface ClientsRun {
  clients: number;
  /** All echoes before the failure came back. */
  allEchoesBefore: boolean;
  /** Per-client failover time: the longest reply gap around the link-down, ms. */
  failoverMs: { median: number; max: number };
  recovered: number;
  /** From spawning the clients' process to its first datagrams: Node's start-up, slow on a cold machine. */
  clientsStartMs: number;
  /** From the first datagrams to every client's first reply. */
  firstRepliesMs: number;
}

const INTERVAL_MS = 10;
/**
 * The failure comes this long after every client has had its first reply, so the second that
 * `allEchoesBefore` checks (1100 ms to 100 ms before the failure) is all steady traffic. It
 * used to be counted from spawning the clients' process, whose start-up (300 ms warm, over
 * 400 ms cold or busy) then ate into that second: the cause of a flaky `allEchoesBefore: false`.
 */
const FAIL_AFTER_REPLIES_MS = 1300;
/** The clients send for this long from their first datagram. */
const DURATION_MS = 4200;
/** Every client must have had a reply by then, or the path is broken. */
const FIRST_REPLIES_TIMEOUT_MS = 15_000;
const BASE_PORT = 9000;

/**
 * `arrow lab experiment clients` (seed 000's evaluation, its Fig. 2): 5, 20 and 40 plain UDP
 * clients on the client host talk to as many echo servers on the server host over one 3-ISP path
 * (TUN endpoints at both ends); the middle ISP's router on the path gets `link-down` (its
 * interface taken down, as the seed's experiment did) and each client's failover time is the
 * longest gap between its echo replies.
 */
export async function runClients(o: ClientsOptions): Promise<{ runs: ClientsRun[] }> {
  const say = o.progress ?? ((): void => {});
  const x = await startExperimentLab('expcli');
  const runs: ClientsRun[] = [];
  try {
    for (const n of o.counts) {
      const pair = await startTunPair(x, { subnet: 5, hops: THREE_ISPS });
      const servers = x.server.arrow(
        ['echo-server', '--listen', `${pair.serverIp}:${BASE_PORT}`, '--count', String(n)],
        {
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
      try {
        await once(servers.stdout!, 'data');
        if (!pair.middle) throw new Error('no middle router on a 3-ISP path');
        const clients = x.client.arrow(
          [
            'udp-clients',
            '--target',
            pair.serverIp,
            '--base-port',
            String(BASE_PORT),
            '--count',
            String(n),
            '--interval',
            String(INTERVAL_MS),
            '--duration',
            String(DURATION_MS),
          ],
          { stdio: ['ignore', 'pipe', 'inherit'] },
        );
        const spawnedAt = wallNow();
        // One JSON object a line: `sending`, `answered`, then the result.
        const lines: string[] = [];
        const events: UdpClientsEvent[] = [];
        let answered: () => void = () => undefined;
        const allAnswered = new Promise<void>((resolve) => (answered = resolve));
        let buffered = '';
        clients.stdout!.on('data', (d: Buffer) => {
          buffered += d.toString();
          const parts = buffered.split('\n');
          buffered = parts.pop()!;
          for (const line of parts.filter((l) => l.trim())) {
            lines.push(line);
            const e = JSON.parse(line) as Partial<UdpClientsEvent>;
            if (e.event === 'sending' || e.event === 'answered') events.push(e as UdpClientsEvent);
            if (e.event === 'answered') answered();
          }
        });
        const exited = once(clients, 'exit');
        const timedOut = sleep(FIRST_REPLIES_TIMEOUT_MS, undefined, { ref: false }).then(
          () => 'timeout' as const,
        );
        if ((await Promise.race([allAnswered, exited, timedOut])) !== undefined)
          throw new Error(
            `not every UDP client had a reply within ${FIRST_REPLIES_TIMEOUT_MS} ms of starting (events: ${JSON.stringify(events)})`,
          );
        await sleep(FAIL_AFTER_REPLIES_MS);
        // Wall clock, as the clients note their replies: they run in another process.
        const failAt = wallNow();
        await x.lab.fail(pair.middle, 'link-down');
        await exited;
        await x.lab.heal(pair.middle);
        if (buffered.trim()) lines.push(buffered);
        const r = JSON.parse(lines.at(-1) ?? '{}') as UdpClientsResult;
        const sendingAt = events.find((e) => e.event === 'sending')!.at;
        const answeredAt = events.find((e) => e.event === 'answered')!.at;
        const gaps = r.replies.map((times) => gapAround(times, failAt));
        // Every echo sent in the second before the failure (but the last 100 ms, maybe still in
        // flight) came back: judged by round number, so a client or server descheduled for a few
        // ms (replies read late, in a bunch) is not mistaken for loss.
        const window = r.roundsAt.flatMap((at, n) => (at > failAt - 1100 && at <= failAt - 100 ? [n] : []));
        const before =
          window.length > 0 &&
          r.echoed.every((seen) => {
            const back = new Set(seen);
            return window.every((n) => back.has(n));
          });
        const ok = gaps.filter((g): g is number => g !== undefined);
        runs.push({
          clients: n,
          allEchoesBefore: before,
          failoverMs: { median: Math.round(midMedian(ok)), max: Math.round(Math.max(...ok)) },
          recovered: ok.length,
          clientsStartMs: Math.round(sendingAt - spawnedAt),
          firstRepliesMs: Math.round(answeredAt - sendingAt),
        });
        say(
          `${n} clients: failover median ${Math.round(midMedian(ok))} ms, max ${Math.round(Math.max(...ok))} ms; ${ok.length}/${n} recovered`,
        );
      } finally {
        servers.kill('SIGTERM');
        await pair.stop();
        await sleep(600);
      }
    }
  } finally {
    await x.lab.stop();
  }
  await report(o, runs);
  return { runs };
}

const wallNow = (): number => performance.timeOrigin + performance.now();

/** The longest gap between consecutive replies that spans `at`; undefined if none came after. */
function gapAround(times: number[], at: number): number | undefined {
  const before = times.filter((t) => t <= at).at(-1);
  const after = times.find((t) => t > at);
  if (after === undefined) return undefined;
  let gap = after - (before ?? at);
  // The failure may bite a little after `at`: take the longest gap in the 2 s after it.
  for (let i = 1; i < times.length; i++)
    if (times[i]! > at && times[i - 1]! < at + 2000) gap = Math.max(gap, times[i]! - times[i - 1]!);
  return gap;
}

/** Writes the report, plot and JSON from a result (also to re-render a saved one). */
export async function report(o: ClientsOptions, runs: ClientsRun[]): Promise<void> {
  const md = `# Experiment \`clients\`: failover time against the number of clients (seed 000's evaluation)

\`arrow lab experiment clients --counts ${o.counts.join(',')}\`. ${machineLine()}

N plain UDP clients on the client host each send a datagram every ${INTERVAL_MS} ms to their own
echo server on the server host, over one path through three ISPs (alpha, beta, gamma) between two
\`arrow endpoint --tun\`s. ${FAIL_AFTER_REPLIES_MS / 1000} s after every client's first reply, the middle ISP's router on the path gets
\`link-down\`: its network interface is taken down, as in the seed's experiment. A client's
failover time is the longest gap between its echo replies around the failure.

| clients | all echoes before the failure | failover ms (median / max) | recovered | seed 000 |
|---|---|---|---|---|
${runs.map((r) => `| ${r.clients} | ${r.allEchoesBefore ? 'yes' : 'no'} | ${r.failoverMs.median} / ${r.failoverMs.max} | ${r.recovered}/${r.clients} | tens of seconds, growing with N |`).join('\n')}

![failover time vs clients](clients.png)

**Why it does not grow with N.** The router before the dead one declares that neighbour dead once
and moves every circuit using it in one step (per-neighbour repair, docs/failover.md); here all
clients share one circuit pair, as the seed's clients shared one path. The seed repaired circuit by
circuit through its store, which is where its tens of seconds came from. For 1000 circuits each
with its own clients, see \`arrow bench failover\` in docs/performance.md.
`;
  writeReport(o.out, 'clients', md, await renderChart(clientsChart(runs)), { runs });
}

/** The clients plot: failover time against the number of clients (pure; also for a saved result). */
export function clientsChart(runs: ClientsRun[]): Chart {
  return {
    title: "clients: failover time vs number of UDP clients, link-down on the middle ISP's router",
    subtitle: 'each client echoes every 10 ms; seed 000 measured tens of seconds',
    panels: [
      {
        title: '',
        x: { title: 'clients', log: true, ticks: runs.map((r) => r.clients) },
        y: { title: 'failover time', unit: 'ms', log: true },
        series: [
          {
            label: 'median',
            color: [200, 40, 40],
            marker: 'circle',
            width: 3,
            points: runs.map((r) => ({ x: r.clients, y: r.failoverMs.median })),
          },
          {
            label: 'max',
            color: [200, 40, 40],
            marker: 'square',
            dash: [6, 4],
            points: runs.map((r) => ({ x: r.clients, y: r.failoverMs.max })),
          },
        ],
        hlines: [{ y: 10_000, label: 'seed 000: tens of seconds', color: [150, 150, 150] }],
      },
    ],
  };
}
