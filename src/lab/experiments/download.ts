import { rmSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TWO_ISPS, sizeOf, startExperimentLab, startTunPair, type ExperimentLab } from './setup.js';
import type { LabHost } from '../lab.js';
import { renderChart, type Chart } from '../../plot/chart.js';
import { machineLine, writeReport } from './report.js';
import { mean, midMedian, round } from '../../util/stats.js';

export interface DownloadOptions {
  /** File sizes in MB (the thesis: 63 and 625). */
  sizesMB: number[];
  /** Runs with a failure and runs without, per size (the issue: at least 10 each). */
  runs: number;
  out: string;
  progress?: (line: string) => void;
}

export interface DownloadRun {
  fileMB: number;
  baselineS: { mean: number; median: number };
  failoverS: { mean: number; median: number };
  /** failover median − baseline median. */
  addedS: number;
  baseline: number[];
  failover: number[];
}

export interface DownloadResult {
  runs: DownloadRun[];
  /** Who carried the TUN endpoints' packets (`kernel ...` or `node ...`), as the buyer said in the last download. */
  endpointDataplane: string;
}

/** The thesis seed's Table 5.1 (UDP channel): mean download time, typical and with a failure. */
const THESIS: Record<number, { env: string; typical: number; failure: number }[]> = {
  63: [
    { env: 'V/V', typical: 4.326, failure: 5.784 },
    { env: 'P/V', typical: 11.823, failure: 14.06 },
    { env: 'P/P', typical: 13.656, failure: 15.342 },
  ],
  625: [
    { env: 'V/V', typical: 40.284, failure: 42.993 },
    { env: 'P/V', typical: 123.296, failure: 123.605 },
    { env: 'P/P', typical: 141.18, failure: 142.603 },
  ],
};

const KILL_AT = 0.4;
const PORT = 8080;

/**
 * `arrow lab experiment download` (the thesis seed's §5.2): curl downloads a file from busybox
 * httpd through a 2-ISP circuit between TUN endpoints; in the failure runs the router every
 * forward circuit enters the middle ISP by is SIGKILLed once 40% has arrived. Every download is
 * checked byte for byte (size and SHA-256) against the served file.
 */
export async function runDownload(o: DownloadOptions): Promise<DownloadResult> {
  const say = o.progress ?? ((): void => {});
  const x = await startExperimentLab('expdl');
  const www = join(x.lab.dir, 'www');
  mkdirSync(www, { recursive: true });
  const httpd = x.server.exec(['busybox', 'httpd', '-f', '-p', `0.0.0.0:${PORT}`, '-h', www], {
    stdio: 'ignore',
  });
  const runs: DownloadRun[] = [];
  const seen = { dataplane: 'not started' };
  try {
    for (const mb of o.sizesMB) {
      const name = `file-${mb}MB.bin`;
      say(`making a ${mb} MB file of random bytes...`);
      const sha = await randomFile(x.server, join(www, name), mb);
      const baseline: number[] = [];
      const failover: number[] = [];
      // Alternate, so slow drift of the machine affects both kinds alike.
      for (let i = 0; i < o.runs * 2; i++) {
        const fail = i % 2 === 1;
        const s = await oneDownload(x, www, name, mb, sha, fail, say, seen);
        (fail ? failover : baseline).push(s);
        say(
          `${mb} MB ${fail ? 'with failure' : 'baseline'} ${Math.floor(i / 2) + 1}/${o.runs}: ${s.toFixed(2)} s`,
        );
      }
      rmSync(join(www, name), { force: true });
      runs.push(downloadRun(mb, baseline, failover));
    }
  } finally {
    httpd.kill('SIGTERM');
    await x.lab.stop();
  }
  const result = { runs, endpointDataplane: seen.dataplane };
  await report(o, result);
  return result;
}

/** The SHA-256 of a file on `host`. */
async function sha256(host: LabHost, path: string): Promise<string> {
  const r = await host.run(['sha256sum', path], { timeoutMs: 300_000 });
  return r.stdout.split(' ')[0]!;
}

/** Makes a file of `mb` MB of random bytes on `host`; its SHA-256. */
export async function randomFile(host: LabHost, path: string, mb: number): Promise<string> {
  const made = await host.run(['sh', '-c', `head -c ${mb * 1_000_000} /dev/urandom > ${path}`], {
    timeoutMs: 300_000,
  });
  if (made.code !== 0) throw new Error(`could not make ${path}: ${made.stderr}`);
  return sha256(host, path);
}

/** One file size's times, summed up: means, medians, and the median added by the failure. */
export function downloadRun(fileMB: number, baseline: number[], failover: number[]): DownloadRun {
  return {
    fileMB,
    baselineS: { mean: round(mean(baseline)), median: round(midMedian(baseline)) },
    failoverS: { mean: round(mean(failover)), median: round(midMedian(failover)) },
    addedS: round(midMedian(failover) - midMedian(baseline)),
    baseline: baseline.map((v) => round(v)),
    failover: failover.map((v) => round(v)),
  };
}

async function oneDownload(
  x: ExperimentLab,
  www: string,
  name: string,
  mb: number,
  sha: string,
  fail: boolean,
  say: (l: string) => void,
  seen: { dataplane: string },
): Promise<number> {
  const pair = await startTunPair(x, { subnet: 4, hops: TWO_ISPS });
  seen.dataplane = pair.dataplane.client;
  const dest = join(x.lab.dir, `got-${name}`);
  rmSync(dest, { force: true });
  try {
    const bytes = mb * 1_000_000;
    const curl = x.client.run(
      [
        'curl',
        '-sS',
        '--fail',
        '-o',
        dest,
        '-w',
        '%{time_total} %{size_download}',
        `http://${pair.serverIp}:${PORT}/${name}`,
      ],
      { timeoutMs: 600_000 },
    );
    let killed: string | undefined;
    if (fail) {
      if (!pair.middle) throw new Error('no middle router on a 2-ISP path');
      const deadline = Date.now() + 600_000;
      while (Date.now() < deadline) {
        const got = sizeOf(dest);
        if (got >= KILL_AT * bytes) break;
        await sleep(5);
      }
      await x.lab.fail(pair.middle, 'kill');
      killed = pair.middle;
    }
    const r = await curl;
    if (r.code !== 0) throw new Error(`curl failed (${r.code}): ${r.stderr}`);
    const [time, size] = r.stdout.trim().split(' ').map(Number) as [number, number];
    if (size !== bytes) throw new Error(`downloaded ${size} bytes of ${bytes}`);
    if ((await sha256(x.server, dest)) !== sha)
      throw new Error(`${name}: the download's SHA-256 differs from the file's`);
    if (killed) {
      await x.lab.heal(killed);
      say(`  killed ${killed} at 40%; restarted`);
    }
    return time;
  } finally {
    rmSync(dest, { force: true });
    await pair.stop();
    await sleep(600);
  }
}

/** Writes the report, plot and JSON from a result (also to re-render a saved one). */
export async function report(o: DownloadOptions, r: DownloadResult): Promise<void> {
  const rows = r.runs.flatMap((run) => {
    const thesis = THESIS[run.fileMB] ?? [];
    return [
      `| ${run.fileMB} MB | **Arrow** | ${run.baselineS.mean.toFixed(2)} / ${run.baselineS.median.toFixed(2)} | ${run.failoverS.mean.toFixed(2)} / ${run.failoverS.median.toFixed(2)} | **${run.addedS.toFixed(2)}** (median) |`,
      ...thesis.map(
        (t) =>
          `| ${run.fileMB} MB | thesis ${t.env} | ${t.typical.toFixed(2)} (mean) | ${t.failure.toFixed(2)} (mean) | ${(t.failure - t.typical).toFixed(2)} (mean) |`,
      ),
    ];
  });
  const md = `# Experiment \`download\`: an HTTP download across a router failure (the thesis seed's §5.2)

\`arrow lab experiment download --sizes ${o.sizesMB.join(',')} --runs ${o.runs}\`. ${machineLine()}

\`curl\` on the client host downloads a file of random bytes from \`busybox httpd\` on the server
host, through circuits bought across two ISPs (alpha ams→fra, beta fra→par, and the return path)
between two \`arrow endpoint --tun\`s; every router and portal is its own process in its own network
namespace. In the failure runs, once 40% of the file has arrived, the router every forward circuit
enters beta by is SIGKILLed. Baseline and failure runs alternate; each buys fresh circuits. Every
download is checked against the served file's size and SHA-256: all ${o.runs * 2 * o.sizesMB.length} matched.

| file | | baseline s (mean / median) | with failure s (mean / median) | added s |
|---|---|---|---|---|
${rows.join('\n')}

Target: under 0.5 s added (median). The thesis added 1.2–2.7 s.

Per run (s): ${r.runs
    .map(
      (run) =>
        `${run.fileMB} MB baseline ${run.baseline.join(', ')}; with failure ${run.failover.join(', ')}`,
    )
    .join('. ')}.

![download times with and without a failure](download.png)

**Reading it.** TCP sees the failover as ~100 ms of loss (the endpoint's 50 ms detection, then
probe and per-neighbour repair, docs/failover.md): a retransmission timeout and a congestion
window restart, not a broken connection. Absolute times are set by the throughput of Node routers
and TUN endpoints on 2 shared cores (see \`hops\`), not by the links.
`;
  writeReport(o.out, 'download', md, await renderChart(downloadChart(r)), {
    runs: r.runs.map(({ fileMB, baselineS, failoverS, addedS }) => ({
      fileMB,
      baselineS,
      failoverS,
      addedS,
    })),
  });
}

/** The download plot: median download time by file size, with and without a failure, the thesis's beside (pure; also for a saved result). */
export function downloadChart(r: { runs: Pick<DownloadRun, 'fileMB' | 'baselineS' | 'failoverS'>[] }): Chart {
  return {
    title: 'download: HTTP download time, with and without a router failure at 40%',
    subtitle: 'median per file size; thesis means in grey',
    panels: [
      {
        title: '',
        x: { title: 'file size', unit: 'MB', log: true, ticks: r.runs.map((x) => x.fileMB) },
        y: { title: 'download time', unit: 's', log: true },
        series: [
          {
            label: 'Arrow, baseline',
            color: [30, 90, 200],
            marker: 'circle',
            width: 3,
            points: r.runs.map((x) => ({ x: x.fileMB, y: x.baselineS.median })),
          },
          {
            label: 'Arrow, router killed at 40%',
            color: [200, 40, 40],
            marker: 'square',
            width: 3,
            dash: [6, 4],
            points: r.runs.map((x) => ({ x: x.fileMB, y: x.failoverS.median })),
          },
          {
            label: 'thesis V/V, typical',
            color: [150, 150, 150],
            marker: 'diamond',
            points: r.runs
              .filter((x) => THESIS[x.fileMB])
              .map((x) => ({ x: x.fileMB, y: THESIS[x.fileMB]![0]!.typical })),
          },
          {
            label: 'thesis V/V, failure',
            color: [110, 110, 110],
            marker: 'triangle',
            dash: [3, 3],
            points: r.runs
              .filter((x) => THESIS[x.fileMB])
              .map((x) => ({ x: x.fileMB, y: THESIS[x.fileMB]![0]!.failure })),
          },
        ],
      },
    ],
  };
}
