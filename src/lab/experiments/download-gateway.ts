import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { renderChart, type Chart } from '../../plot/chart.js';
import { machineLine, writeReport } from './report.js';
import {
  CUSTOMER,
  killServingRouter,
  startGateway,
  startGatewayLab,
  warmUp,
  type GatewayLab,
  type Takeover,
} from './gateway.js';
import { downloadRun, randomFile, type DownloadOptions, type DownloadRun } from './download.js';
import { sizeOf } from './setup.js';
import { midMedian } from '../../util/stats.js';

export type DownloadGatewayOptions = DownloadOptions;

export interface DownloadGatewayRun extends DownloadRun {
  /** Per failure run: kill → the sibling's claim, and kill → the edge router's route via the sibling. */
  takeovers: Takeover[];
}

export interface DownloadGatewayResult {
  mode: 'gateway';
  runs: DownloadGatewayRun[];
  /** Every download (with and without a failure) completed on its first TCP connection. */
  sameConnection: boolean;
}

const KILL_AT = 0.4;
const PORT = 8080;
/** The thesis seed's Table 5.1: added seconds (failure − typical, means) across its environments. */
const THESIS_ADDED = { min: 1.2, max: 2.7 };

/**
 * `arrow lab experiment download --mode gateway` (the thesis seed's §5.2, in its own setting): curl
 * on the customer's host downloads from busybox httpd on a web host that runs nothing of ours,
 * through the customer's `arrow endpoint --tun` gateway and a 2-ISP path whose last circuit is
 * deliver-ip. In the failure runs the egress router serving the customer (the thesis's active
 * decapsulation node) is SIGKILLed at 40%. Every download is checked (size, SHA-256, and one TCP
 * connection: curl's num_connects).
 */
export async function runDownloadGateway(o: DownloadGatewayOptions): Promise<DownloadGatewayResult> {
  const say = o.progress ?? ((): void => {});
  const g = await startGatewayLab('expdlgw', { keep: process.env.ARROW_EXPERIMENT_KEEP === '1' });
  const www = join(g.lab.dir, 'www');
  mkdirSync(www, { recursive: true });
  const httpd = g.web.exec(['busybox', 'httpd', '-f', '-p', `0.0.0.0:${PORT}`, '-h', www], {
    stdio: 'ignore',
  });
  const runs: DownloadGatewayRun[] = [];
  try {
    for (const mb of o.sizesMB) {
      const name = `file-${mb}MB.bin`;
      say(`making a ${mb} MB file of random bytes...`);
      const sha = await randomFile(g.web, join(www, name), mb);
      const baseline: number[] = [];
      const failover: number[] = [];
      const takeovers: Takeover[] = [];
      for (let i = 0; i < o.runs * 2; i++) {
        const fail = i % 2 === 1;
        const { seconds, takeover } = await oneDownload(g, { www, name, mb, sha, fail, tag: `${mb}-${i}` });
        (fail ? failover : baseline).push(seconds);
        if (takeover) takeovers.push(takeover);
        say(
          `${mb} MB ${fail ? 'with failure' : 'baseline'} ${Math.floor(i / 2) + 1}/${o.runs}: ${seconds.toFixed(2)} s` +
            (takeover
              ? `; killed ${takeover.killed}, ${takeover.sibling} took over ${takeover.takeoverMs ?? 'before'} ms after, the edge router's route moved to it ${takeover.routeMs} ms after the kill`
              : ''),
        );
      }
      rmSync(join(www, name), { force: true });
      runs.push({ ...downloadRun(mb, baseline, failover), takeovers });
    }
  } finally {
    httpd.kill('SIGTERM');
    await g.lab.stop();
  }
  // oneDownload throws on a second connection, so every run that reached here kept its first.
  const result: DownloadGatewayResult = { mode: 'gateway', runs, sameConnection: true };
  await report(o, result);
  return result;
}

async function oneDownload(
  g: GatewayLab,
  o: { www: string; name: string; mb: number; sha: string; fail: boolean; tag: string },
): Promise<{ seconds: number; takeover?: Takeover }> {
  const gateway = await startGateway(g, { tag: o.tag });
  const dest = join(g.lab.dir, `got-${o.name}`);
  rmSync(dest, { force: true });
  try {
    await warmUp(g);
    const bytes = o.mb * 1_000_000;
    const curl = g.client.run(
      [
        'curl',
        '-sS',
        '--fail',
        '--interface',
        CUSTOMER,
        '-o',
        dest,
        '-w',
        '%{time_total} %{size_download} %{num_connects}',
        `http://${g.web.address}:${PORT}/${o.name}`,
      ],
      { timeoutMs: 600_000 },
    );
    let kill: Awaited<ReturnType<typeof killServingRouter>> | undefined;
    if (o.fail) {
      const deadline = Date.now() + 600_000;
      while (Date.now() < deadline && sizeOf(dest) < KILL_AT * bytes) await sleep(5);
      kill = await killServingRouter(g);
    }
    const r = await curl;
    if (r.code !== 0) throw new Error(`curl failed (${r.code}): ${r.stderr}`);
    const [time, size, connects] = r.stdout.trim().split(' ').map(Number) as [number, number, number];
    if (size !== bytes) throw new Error(`downloaded ${size} bytes of ${bytes}`);
    if (connects !== 1) throw new Error(`curl made ${connects} TCP connections: the first one broke`);
    const got = await g.web.run(['sha256sum', dest], { timeoutMs: 300_000 });
    if (got.stdout.split(' ')[0] !== o.sha)
      throw new Error(`${o.name}: the download's SHA-256 differs from the file's`);
    const takeover = await kill?.done();
    if (takeover) await g.lab.heal(takeover.killed);
    return { seconds: time, ...(takeover ? { takeover } : {}) };
  } finally {
    rmSync(dest, { force: true });
    await gateway.stop();
    await sleep(600);
  }
}

/** Median of the non-null values, or null when there are none. */
export function medianOf(xs: (number | null)[]): number | null {
  const v = xs.filter((x): x is number => x !== null);
  return v.length > 0 ? midMedian(v) : null;
}

/** Writes the report, plot and JSON from a result. */
export async function report(o: DownloadGatewayOptions, r: DownloadGatewayResult): Promise<void> {
  const rows = r.runs.map(
    (run) =>
      `| ${run.fileMB} MB | ${run.baselineS.mean.toFixed(2)} / ${run.baselineS.median.toFixed(2)} | ${run.failoverS.mean.toFixed(2)} / ${run.failoverS.median.toFixed(2)} | **${run.addedS.toFixed(2)}** | ${medianOf(run.takeovers.map((t) => t.takeoverMs)) ?? '–'} | ${medianOf(run.takeovers.map((t) => t.routeMs)) ?? '–'} |`,
  );
  const md = `# Experiment \`download --mode gateway\`: a download from a host that runs nothing of ours, across the death of the egress router (the thesis seed's §5.2)

\`arrow lab experiment download --mode gateway --sizes ${o.sizesMB.join(',')} --runs ${o.runs}\`. ${machineLine()}

\`curl --interface ${CUSTOMER}\` on the customer's host downloads a file of random bytes from
\`busybox httpd\` on a web host that runs nothing of ours. The customer's \`arrow endpoint --tun\`
gateway routes the web host into a path bought across two ISPs (alpha ams→fra, beta fra→lon) whose
last circuit is \`deliver-ip\`: one of beta's two egress routers at lon strips the envelope, and the
web host's answers, routed to the customer's address, reach it through the PoP's edge router (BIRD,
fed over iBGP by the egress router serving the customer). In the failure runs, once 40% has
arrived, that router (the thesis's active decapsulation node) is SIGKILLed. Baseline and failure
runs alternate; each starts a new gateway, which buys new circuits. Every download is checked
against the file's size and SHA-256, and curl's \`num_connects\` must be 1: **all
${o.runs * 2 * o.sizesMB.length} completed on their first TCP connection.**

| file | baseline s (mean / median) | with the egress router killed s (mean / median) | added s (median) | kill → the sibling's takeover ms (median) | kill → the edge router's route via the sibling ms (median) |
|---|---|---|---|---|---|
${rows.join('\n')}

Target: under 0.3 s added (median). The thesis added ${THESIS_ADDED.min}–${THESIS_ADDED.max} s.

Per run (s): ${r.runs.map((run) => `${run.fileMB} MB baseline ${run.baseline.join(', ')}; with failure ${run.failover.join(', ')}`).join('. ')}.

Per failure run (kill → the sibling's claim ms / kill → the edge router's route via the sibling ms): ${r.runs
    .flatMap((run) => run.takeovers.map((t) => `${t.takeoverMs ?? 'earlier'}/${t.routeMs ?? '–'}`))
    .join(', ')}. "earlier": the sibling had claimed the customer before the kill (a false verdict
on the busy machine had moved packets there), and the edge router fell back to its claim when the
dead router's route was withdrawn.

![download times with and without the egress router's death](download-gateway.png)

**Reading it.** Two repairs run at once. Forward: the gateway notices the loss, probes, and the
router before the dead one moves the circuit to its sibling, which takes the customer over on the
first DATA packet or probe it decapsulates (the first figure column). Return: the dead router's
TUN closes with it, the kernel drops its routes, BIRD withdraws its claim, and the edge router
falls back to the sibling's standby announcement (every egress router announces every customer it
holds a circuit for at the lowest preference), without waiting for the takeover (the second).
TCP sees one loss episode: a retransmission timeout, never a broken connection, because neither
end's address changed (no NAT).
`;
  writeReport(o.out, 'download-gateway', md, await renderChart(downloadGatewayChart(r)), r);
}

/** The download --mode gateway plot: each run's download time, one panel per file size (pure; also for a saved result). */
export function downloadGatewayChart(r: DownloadGatewayResult): Chart {
  return {
    title: 'download --mode gateway: HTTP download time, with and without the egress router killed at 40%',
    subtitle: `per run, one panel per file size; thesis added ${THESIS_ADDED.min}-${THESIS_ADDED.max} s`,
    panels: r.runs.map((run) => ({
      title: `${run.fileMB} MB`,
      x: { title: 'run', ticks: run.baseline.map((_, i) => i + 1) },
      y: { title: 'download time', unit: 's' },
      series: [
        {
          label: `${run.fileMB} MB baseline`,
          color: [30, 90, 200] as [number, number, number],
          marker: 'circle' as const,
          width: 2,
          points: run.baseline.map((y, i) => ({ x: i + 1, y })),
        },
        {
          label: `${run.fileMB} MB, egress router killed at 40%`,
          color: [200, 40, 40] as [number, number, number],
          marker: 'square' as const,
          width: 2,
          dash: [6, 4],
          points: run.failover.map((y, i) => ({ x: i + 1, y })),
        },
      ],
    })),
  };
}
