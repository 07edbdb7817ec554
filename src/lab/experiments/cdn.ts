import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ChildProcess } from 'node:child_process';
import { Lab, type LabHost } from '../lab.js';
import type { Topology } from '../topology.js';
import { renderChart, type Chart } from '../../plot/chart.js';
import { machineLine, writeReport } from './report.js';
import { randomFile } from './download.js';
import { TUN_PAIR_MBPS, parsePingRtt, startTunPair, type Hop, type TunPair } from './setup.js';
import { midMedian, round } from '../../util/stats.js';

/**
 * `arrow lab experiment cdn` (the ARROW paper's §4.4 CDN): cities in a row, each pair of
 * neighbours joined by one ISP whose `transitDelayMs` is their distance. Clients, caches and the
 * origin are hosts beside a city's PoP; between two cities every packet crosses ARROW circuits
 * (a TUN pair: `arrow endpoint --tun` at each end, host routes into it), so the routers' delay
 * stage gives TCP and ICMP alike the distance. Hosts in the same city reach each other directly.
 * The controller is reached directly by everyone (it is the control plane; see the report).
 */

/** The row of cities and the one-way delay (ms) of the ISP between each and the next. */
export const CITIES = ['ams', 'fra', 'par', 'lon', 'nyc'] as const;
export type City = (typeof CITIES)[number];
// fra's two caches are 4 and 16 ms away: a 24 ms difference in RTT, so the noise of a loaded
// 2-core lab (a few ms on a Node-path TUN pair) cannot flip the choice; 8 and 12 ms once did.
const LINKS: { isp: string; delayMs: number }[] = [
  { isp: 'alpha', delayMs: 4 },
  { isp: 'beta', delayMs: 16 },
  { isp: 'gamma', delayMs: 10 },
  { isp: 'delta', delayMs: 30 },
];
export const CACHES: { name: string; city: City }[] = [
  { name: 'ams', city: 'ams' },
  { name: 'par', city: 'par' },
];
export const CLIENTS: City[] = ['fra', 'par', 'lon'];
export const ORIGIN: City = 'nyc';
/** The cache killed in the failure phase: the nearest for two of the three clients. */
export const KILLED = 'par';
const ORIGIN_PORT = 8080;
const CACHE_PORT = 8081;
const CONTROLLER_PORT = 8082;

/** One-way distance between two cities, ms: the ISPs' delays between them. */
export function distanceMs(a: City, b: City): number {
  const [i, j] = [CITIES.indexOf(a), CITIES.indexOf(b)].sort((x, y) => x - y) as [number, number];
  return LINKS.slice(i, j).reduce((s, l) => s + l.delayMs, 0);
}

/** The segments of a path from city `a` to city `b` along the row: one ISP per neighbour pair. */
export function hopsBetween(a: City, b: City): Hop[] {
  const i = CITIES.indexOf(a);
  const j = CITIES.indexOf(b);
  const step = j > i ? 1 : -1;
  const hops: Hop[] = [];
  for (let k = i; k !== j; k += step) {
    const link = LINKS[Math.min(k, k + step)]!;
    hops.push([link.isp, CITIES[k]!, CITIES[k + step]!]);
  }
  return hops;
}

/** The experiment's network: one ISP per link of the row, one router per PoP. */
export function cdnTopology(name: string): Topology {
  return {
    name,
    statsIntervalMs: 500,
    servers: [],
    isps: LINKS.map((l, k) => {
      const pops = [CITIES[k]!, CITIES[k + 1]!];
      const offer = (from: string, to: string): Topology['isps'][0]['offers'][0] => ({
        from,
        to,
        // Up to 8 TUN pairs cross one PoP pair, each buying TUN_PAIR_MBPS: the policer never binds.
        capacityMbps: 10 * TUN_PAIR_MBPS,
        latencyMs: { min: l.delayMs, max: l.delayMs + 5 },
        maxLossPct: 0.1,
        uptimePct: 99.99,
        pricePerMbps: 1,
      });
      return {
        name: l.isp,
        accounts: [{ name: 'demo', apiKey: `demo-key-${l.isp}-0000000000` }],
        store: { kind: 'sqlite' as const },
        pops: pops.map((p) => ({ name: p, routers: 1 })),
        offers: [offer(pops[0]!, pops[1]!), offer(pops[1]!, pops[0]!)],
        transitDelayMs: l.delayMs,
      };
    }),
  };
}

/** Which caches are nearest to `client` among `live` (all of equal least distance). */
export function nearestCaches(client: City, live: { name: string; city: City }[]): string[] {
  const d = live.map((c) => distanceMs(client, c.city));
  const min = Math.min(...d);
  return live.filter((_, i) => d[i] === min).map((c) => c.name);
}

export interface CdnOptions {
  /** Requests per client through the CDN (and as many from the origin). */
  runs: number;
  /** File size, MB. */
  sizeMB: number;
  out: string;
  progress?: (line: string) => void;
}

/** One download as curl reported it. */
export interface Download {
  client: City;
  via: 'cdn' | 'origin';
  /** The cache the controller chose (cdn), or 'origin'. */
  server: string;
  ttfbMs: number;
  totalMs: number;
  /** cdn: the controller's answer (redirect) included in ttfbMs. */
  redirectMs: number;
  /** cdn: of that, the controller's measurement and choice (its x-arrow-cdn-took-ms). */
  chooseMs: number;
  /** cdn: each cache's RTT to the client as measured for this request (ms; null: no answer). */
  measured: Record<string, number | null>;
  nearest: boolean;
}

export interface ClientFigures {
  client: City;
  nearestCache: string;
  distanceMs: { nearestCache: number; origin: number };
  cdn: { ttfbMs: number; totalMs: number; redirectMs: number; chooseMs: number };
  origin: { ttfbMs: number; totalMs: number };
}

export interface CdnResult {
  runs: number;
  sizeMB: number;
  /** Requests through the CDN and how many went to a nearest cache. */
  requests: number;
  nearest: number;
  nearestShare: number;
  target: { share: number; met: boolean };
  clients: ClientFigures[];
  /** Each pair's round trip measured with ping before the run, against 2 × the distance. */
  calibration: { pair: string; expectedMs: number; minMs: number }[];
  /** After SIGKILL of one cache: every next request went to the nearest live cache. */
  deadCache: { killed: string; requests: number; toNextNearest: number; skippedBy: string | null };
  valid: boolean;
  invalidReason: string | null;
  downloads: Download[];
}

interface Host {
  city: City;
  host: LabHost;
}

/** Runs the whole experiment on its own netns lab; writes the report, plot and JSON. */
export async function runCdn(o: CdnOptions): Promise<CdnResult> {
  const say = o.progress ?? ((): void => {});
  if (typeof process.getuid !== 'function' || process.getuid() !== 0)
    throw new Error(
      'the cdn experiment needs root: it makes network namespaces, veth links and TUN interfaces',
    );
  say('starting the lab: 4 ISPs in a row, 8 routers...');
  const lab = await Lab.start(cdnTopology('expcdn'), {
    netns: true,
    keep: process.env.ARROW_EXPERIMENT_KEEP === '1',
  });
  const pairs: TunPair[] = [];
  const procs: ChildProcess[] = [];
  try {
    // Every host has a service address (on lo) besides its lab address: the service address is
    // what the others reach it by, routed into a TUN pair or straight to its lab address; the lab
    // address carries only the TUN endpoints' own traffic to the routers, and never enters a TUN.
    const serviceHost = async (name: string, service: string): Promise<LabHost & { service: string }> => {
      const h = await lab.addHost(name);
      await mustRun(h, ['ip', 'link', 'set', 'lo', 'up']);
      await mustRun(h, ['ip', 'addr', 'add', `${service}/32`, 'dev', 'lo']);
      return Object.assign(h, { service });
    };
    const clients: (Host & { host: { service: string } })[] = [];
    for (const [i, c] of CLIENTS.entries())
      clients.push({ city: c, host: await serviceHost(`client-${c}`, `10.98.0.${i + 1}`) });
    const caches: (Host & { name: string; host: { service: string } })[] = [];
    for (const [i, c] of CACHES.entries())
      caches.push({ ...c, host: await serviceHost(`cache-${c.name}`, `10.97.0.${i + 1}`) });
    const origin = { city: ORIGIN, host: await serviceHost('origin', '10.97.0.100') };
    const ctl = await serviceHost('controller', '10.96.0.1');
    const servers = [...caches, origin];
    // The controller is reached directly by everyone, and reaches the caches directly.
    for (const c of clients) {
      await route(c.host, ctl.service, ['via', ctl.address, 'src', c.host.service]);
      await route(ctl, c.host.service, ['via', c.host.address]);
    }
    for (const s of caches) {
      await route(ctl, s.host.service, ['via', s.host.address]);
      await route(s.host, ctl.service, ['via', ctl.address]);
    }

    // The origin: busybox httpd, which knows nothing of us. The caches fill from its lab address.
    const www = join(lab.dir, 'www');
    mkdirSync(www, { recursive: true });
    const name = `file-${o.sizeMB}MB.bin`;
    const sha = await randomFile(origin.host, join(www, name), o.sizeMB);
    procs.push(
      origin.host.exec(['busybox', 'httpd', '-f', '-p', `0.0.0.0:${ORIGIN_PORT}`, '-h', www], {
        stdio: 'ignore',
      }),
    );
    const cacheProcs = new Map<string, ChildProcess>();
    // The caches ping for the controller only (a lab secret: the processes' arguments are ours to see).
    const token = randomBytes(16).toString('hex');
    for (const c of caches) {
      const proc = await startDaemon(lab, c.host, `cache-${c.name}`, [
        'cdn',
        'cache',
        '--name',
        c.name,
        '--listen',
        `0.0.0.0:${CACHE_PORT}`,
        '--allow-plain-http',
        '--origin',
        `http://${origin.host.address}:${ORIGIN_PORT}`,
        '--store',
        join(lab.dir, `store-${c.name}`),
        '--token',
        token,
      ]);
      procs.push(proc);
      cacheProcs.set(c.name, proc);
    }

    // Distance: every client reaches every server in another city through a TUN pair; in its
    // own city, directly. Each path is checked with ping (its RTT against the distance) and a
    // TCP request before the run.
    let subnet = 0;
    const calibration: CdnResult['calibration'] = [];
    for (const c of clients)
      for (const s of servers) {
        const svc = s.host.service;
        if (s.city === c.city) {
          await route(c.host, svc, ['via', s.host.address, 'src', c.host.service]);
          await route(s.host, c.host.service, ['via', c.host.address]);
          continue;
        }
        subnet++;
        say(
          `TUN pair ${subnet}: client ${c.city} <-> ${s.host.name} (${hopsBetween(c.city, s.city).length} ISPs)...`,
        );
        const pair = await startTunPair(
          { lab, client: c.host, server: s.host },
          {
            subnet,
            hops: hopsBetween(c.city, s.city),
            detectTimeoutMs: 1000,
            probeIntervalMs: 100,
            // The kernel path of the TUN endpoints lost every TCP segment over these routers
            // (which forward in Node, for their delay stage) while ICMP passed: see docs/services.md.
            dataplane: 'node',
          },
        );
        pairs.push(pair);
        await route(c.host, svc, ['dev', `arrc${subnet}`, 'src', c.host.service]);
        await route(s.host, c.host.service, ['dev', `arrs${subnet}`]);
        const p = await c.host.run(['ping', '-n', '-q', '-c', '5', '-i', '0.05', '-W', '2', svc]);
        const rtt = parsePingRtt(p.stdout);
        if (!rtt)
          throw new Error(
            `no ping from client ${c.city} to ${s.host.name} (${svc}) through TUN pair ${subnet}:\n${p.stdout}${p.stderr}`,
          );
        const port = s === origin ? ORIGIN_PORT : CACHE_PORT;
        const tcp = await c.host.run([
          'curl',
          '-sS',
          '-o',
          '/dev/null',
          '-m',
          '10',
          `http://${svc}:${port}/`,
        ]);
        if (tcp.code !== 0)
          throw new Error(
            `no TCP from client ${c.city} to ${s.host.name} (${svc}) through TUN pair ${subnet}: ${tcp.stderr}`,
          );
        calibration.push({
          pair: `${c.city}-${s.host.name}`,
          expectedMs: 2 * distanceMs(c.city, s.city),
          minMs: round(rtt.min / 1000, 2),
        });
      }

    procs.push(
      await startDaemon(lab, ctl, 'controller', [
        'cdn',
        'controller',
        '--listen',
        `${ctl.service}:${CONTROLLER_PORT}`,
        '--allow-plain-http',
        ...caches.flatMap((c) => ['--cache', `${c.name}=http://${c.host.service}:${CACHE_PORT}`]),
        '--skip-ms',
        '60000',
        '--token',
        token,
      ]),
    );
    const controllerUrl = `http://${ctl.service}:${CONTROLLER_PORT}`;
    const originUrl = `http://${origin.host.service}:${ORIGIN_PORT}`;
    // Each replica holds a copy of each file, as in the paper: one fill per cache before the run.
    for (const c of caches) {
      const fill = await ctl.run(
        ['curl', '-sS', '--fail', '-o', '/dev/null', `http://${c.host.service}:${CACHE_PORT}/files/${name}`],
        { timeoutMs: 300_000 },
      );
      if (fill.code !== 0) throw new Error(`filling cache ${c.name}: ${fill.stderr}`);
    }

    const cacheAt = new Map(caches.map((c) => [c.host.service, c.name]));
    const bytes = o.sizeMB * 1_000_000;
    const downloads: Download[] = [];
    const fetch = async (
      c: (typeof clients)[0],
      via: 'cdn' | 'origin',
      live: typeof caches,
    ): Promise<Download> => {
      const url = via === 'cdn' ? `${controllerUrl}/files/${name}` : `${originUrl}/${name}`;
      const d = await curl(c.host, c.host.service, url, join(lab.dir, `got-${c.city}.bin`), bytes, sha);
      const server = via === 'cdn' ? (cacheAt.get(new URL(d.effective).hostname) ?? d.effective) : 'origin';
      return {
        client: c.city,
        via,
        server,
        ttfbMs: d.ttfbMs,
        totalMs: d.totalMs,
        redirectMs: d.redirectMs,
        chooseMs: d.chooseMs,
        measured: d.measured,
        nearest: via === 'cdn' ? nearestCaches(c.city, live).includes(server) : true,
      };
    };
    for (let r = 0; r < o.runs; r++)
      for (const c of clients)
        // Alternate, so the machine's drift touches both alike.
        for (const via of r % 2 === 0 ? (['cdn', 'origin'] as const) : (['origin', 'cdn'] as const)) {
          const d = await fetch(c, via, caches);
          downloads.push(d);
          say(
            `run ${r + 1}/${o.runs} client ${c.city} ${via}: ${d.server}, first byte ${d.ttfbMs} ms, done ${d.totalMs} ms${via === 'cdn' ? ` (measured ${JSON.stringify(d.measured)})` : ''}`,
          );
        }

    // A dead cache: SIGKILL it; every next request must go to the nearest cache still alive.
    say(`killing cache ${KILLED}...`);
    const victim = cacheProcs.get(KILLED)!;
    const gone = new Promise((resolve) => victim.once('exit', resolve));
    victim.kill('SIGKILL');
    await gone;
    const live = caches.filter((c) => c.name !== KILLED);
    const after: Download[] = [];
    for (let r = 0; r < 2; r++)
      for (const c of clients) {
        const d = await fetch(c, 'cdn', live);
        after.push(d);
        say(`after the kill, client ${c.city}: ${d.server} (measured ${JSON.stringify(d.measured)})`);
      }
    const view = await ctl.run(['curl', '-sS', `${controllerUrl}/caches`]);
    const skipped = (JSON.parse(view.stdout) as { name: string; skippedUntil: string | null }[]).find(
      (c) => c.name === KILLED,
    );

    const result = summarise(o, downloads, after, calibration, skipped?.skippedUntil ?? null);
    await report(o, result);
    return result;
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    for (const p of pairs) await p.stop();
    await lab.stop();
  }
}

/** The figures, the share of nearest picks, and whether the run measured anything (pure). */
export function summarise(
  o: Pick<CdnOptions, 'runs' | 'sizeMB'>,
  downloads: Download[],
  after: Download[],
  calibration: CdnResult['calibration'],
  skippedUntil: string | null,
): CdnResult {
  const cdn = downloads.filter((d) => d.via === 'cdn');
  const nearest = cdn.filter((d) => d.nearest).length;
  const med = (xs: number[]): number => round(midMedian(xs), 1);
  const clients: ClientFigures[] = CLIENTS.map((client) => {
    const mine = (via: 'cdn' | 'origin'): Download[] =>
      downloads.filter((d) => d.client === client && d.via === via);
    const near = nearestCaches(client, CACHES)[0]!;
    return {
      client,
      nearestCache: near,
      distanceMs: {
        nearestCache: distanceMs(client, CACHES.find((c) => c.name === near)!.city),
        origin: distanceMs(client, ORIGIN),
      },
      cdn: {
        ttfbMs: med(mine('cdn').map((d) => d.ttfbMs)),
        totalMs: med(mine('cdn').map((d) => d.totalMs)),
        redirectMs: med(mine('cdn').map((d) => d.redirectMs)),
        chooseMs: med(mine('cdn').map((d) => d.chooseMs)),
      },
      origin: {
        ttfbMs: med(mine('origin').map((d) => d.ttfbMs)),
        totalMs: med(mine('origin').map((d) => d.totalMs)),
      },
    };
  });
  const share = cdn.length ? nearest / cdn.length : 0;
  // The run measured distance only if every pair's round trip carried it, and not much more:
  // under 90% of it, the delay stage was not on the path; over 2× + 20 ms, the machine was.
  const off = calibration.find((c) => !(c.minMs >= 0.9 * c.expectedMs) || c.minMs > 2 * c.expectedMs + 20);
  const toNext = after.filter((d) => d.nearest).length;
  let invalidReason: string | null = null;
  if (off)
    invalidReason = `pair ${off.pair}: ping's lowest RTT ${off.minMs} ms against ${off.expectedMs} ms of distance (broken or overloaded)`;
  else if (cdn.length === 0) invalidReason = 'no request through the CDN';
  return {
    runs: o.runs,
    sizeMB: o.sizeMB,
    requests: cdn.length,
    nearest,
    nearestShare: round(share, 3),
    target: { share: 0.95, met: share >= 0.95 },
    clients,
    calibration,
    deadCache: { killed: KILLED, requests: after.length, toNextNearest: toNext, skippedBy: skippedUntil },
    valid: invalidReason === null,
    invalidReason,
    downloads: [...downloads, ...after],
  };
}

/** A host route to `dest` (/32) on `host`: `via GW` or `dev TUN`, maybe with `src`. */
function route(host: LabHost, dest: string, how: string[]): Promise<void> {
  return mustRun(host, ['ip', 'route', 'replace', `${dest}/32`, ...how]);
}

async function mustRun(host: LabHost, command: string[]): Promise<void> {
  const r = await host.run(command, { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`${command.join(' ')} in ${host.ns}: exit ${r.code}: ${r.stderr.trim()}`);
}

/** Starts `arrow ARGS` on a host, logging to logs/NAME.log, and waits for its "listening on" line. */
async function startDaemon(lab: Lab, host: LabHost, name: string, args: string[]): Promise<ChildProcess> {
  const logPath = join(lab.dir, 'logs', `${name}.log`);
  const fd = openSync(logPath, 'w');
  const proc = host.arrow(args, { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  for (let waited = 0; !/listening on/.test(readFileSync(logPath, 'utf8')); waited += 100) {
    if (proc.exitCode !== null || waited > 60_000) {
      proc.kill('SIGKILL');
      throw new Error(`${name} did not come up:\n${readFileSync(logPath, 'utf8').slice(-2000)}`);
    }
    await sleep(100);
  }
  return proc;
}

/**
 * One download with curl (following the controller's redirect), checked by size and SHA-256.
 * Times are curl's, summed over the redirect as curl does: first byte and total, ms.
 */
async function curl(
  host: LabHost,
  from: string,
  url: string,
  dest: string,
  bytes: number,
  sha: string,
): Promise<{
  ttfbMs: number;
  totalMs: number;
  redirectMs: number;
  chooseMs: number;
  effective: string;
  measured: Record<string, number | null>;
}> {
  const r = await host.run(
    [
      'curl',
      '-sS',
      '--fail',
      '-L',
      '--interface',
      from,
      '-D',
      '-',
      '-o',
      dest,
      '-w',
      '\nRESULT %{time_starttransfer} %{time_total} %{time_redirect} %{size_download} %{url_effective}\n',
      url,
    ],
    { timeoutMs: 300_000 },
  );
  if (r.code !== 0) throw new Error(`curl ${url} failed (${r.code}): ${r.stderr}`);
  const m = /^RESULT (\S+) (\S+) (\S+) (\d+) (\S+)$/m.exec(r.stdout);
  if (!m) throw new Error(`curl ${url}: no RESULT line in ${r.stdout.slice(-300)}`);
  if (Number(m[4]) !== bytes) throw new Error(`curl ${url}: got ${m[4]} bytes of ${bytes}`);
  const got = await host.run(['sha256sum', dest], { timeoutMs: 120_000 });
  if (got.stdout.split(' ')[0] !== sha)
    throw new Error(`curl ${url}: the download's SHA-256 differs from the file's`);
  const measured: Record<string, number | null> = {};
  const hdr = /^x-arrow-cdn-measurements: (.*)$/im.exec(r.stdout);
  for (const kv of hdr?.[1]?.trim().split(',').filter(Boolean) ?? []) {
    const [k, v] = kv.split('=');
    measured[k!] = v === 'x' || v === undefined ? null : Number(v);
  }
  const ms = (s: string): number => round(Number(s) * 1000, 1);
  const took = /^x-arrow-cdn-took-ms: ([\d.]+)/im.exec(r.stdout);
  return {
    ttfbMs: ms(m[1]!),
    totalMs: ms(m[2]!),
    redirectMs: ms(m[3]!),
    chooseMs: took ? round(Number(took[1]), 1) : 0,
    effective: m[5]!,
    measured,
  };
}

/** Writes the report, plot and JSON from a result. */
export async function report(o: CdnOptions, r: CdnResult): Promise<void> {
  const rows = r.clients.map(
    (c) =>
      `| ${c.client} | ${c.nearestCache} (${c.distanceMs.nearestCache} ms) | ${c.distanceMs.origin} ms | **${c.cdn.ttfbMs}** (${c.cdn.redirectMs} to the redirect, ${c.cdn.chooseMs} of it measuring) | **${c.origin.ttfbMs}** | ${c.cdn.totalMs} | ${c.origin.totalMs} |`,
  );
  const ahead = (k: 'ttfbMs' | 'totalMs'): string =>
    r.clients
      .filter((c) => c.cdn[k] < c.origin[k])
      .map((c) => c.client)
      .join(', ') || 'none';
  const behind = r.clients.filter((c) => c.cdn.ttfbMs >= c.origin.ttfbMs);
  const verdict = r.valid
    ? `**${r.nearest} of ${r.requests} requests (${(r.nearestShare * 100).toFixed(1)}%) went to the nearest cache**: target ≥ 95% ${r.target.met ? '**met**' : '**missed**'}.`
    : `**INVALID run: ${r.invalidReason}.** The figures below are not results.`;
  const md = `# Experiment \`cdn\`: a simple CDN over ARROW (the ARROW paper's §4.4)

\`arrow lab experiment cdn --runs ${o.runs} --sizes ${o.sizeMB}\`. ${machineLine()}

**What the paper built.** "A simple CDN offering a traffic cache at each Transit Portal PoP. The
CDN consists of a controller and a group of geo-replicated cache nodes. [...] each replica stores a
copy of each file. After receiving a client request, the controller instructs the cache nodes to
measure their RTT latencies to the client and picks the one with the lowest RTT to serve the
content to the client." The paper gives no figures for it.

**Ours.** Five cities in a row, ${CITIES.join(' — ')}, each neighbour pair joined by one ISP whose
\`transitDelayMs\` is its one-way distance: ${LINKS.map((l, k) => `${l.isp} ${CITIES[k]}–${CITIES[k + 1]} ${l.delayMs} ms`).join(', ')}.
Clients sit at ${CLIENTS.join(', ')}; \`arrow cdn cache\` nodes at ${CACHES.map((c) => c.city).join(' and ')}; the origin,
\`busybox httpd\`, at ${ORIGIN}. Between two cities every packet (TCP, and the caches' ICMP echoes) crosses
ARROW circuits: each client has a TUN pair (\`arrow endpoint --tun\` at both ends, bought across the
ISPs between the two cities) to each cache and to the origin, and host routes send the other host's
address into it, so the routers' delay stage gives the path its distance. A client and a cache in
the same city talk directly. \`curl -L\` asks \`arrow cdn controller\` for a ${o.sizeMB} MB file; the
controller has both caches ping the client now (3 echoes, lowest RTT) and redirects to the lower;
curl follows to the cache. "From the origin" is the same curl straight to the origin. Each cache was
filled once before the run (each replica holds each file, as in the paper); every download is checked
by size and SHA-256. ${r.runs} requests per client each way, alternating.

${verdict}

| client | nearest cache (one way) | origin (one way) | first byte via CDN, ms | first byte from origin, ms | download via CDN, ms | download from origin, ms |
|---|---|---|---|---|---|---|
${rows.join('\n')}

(Medians. The CDN's first byte includes the request to the controller, and in it the controller's
measurement: every cache pings the client, and the controller waits for the slowest.) The CDN's
first byte came sooner than the origin's for: ${ahead('ttfbMs')}; its download finished sooner for:
${ahead('totalMs')}.${behind.length ? ` For ${behind.map((c) => `${c.client} (origin ${c.distanceMs.origin} ms away, nearest cache ${c.distanceMs.nearestCache} ms)`).join(', ')}, the measurement cost more than the distance it saved on the first byte.` : ''} A download pays the round trip many times over (TCP's slow start), so the nearer server wins by more on the whole file than on its first byte.

![time to first byte and download time, CDN and origin](cdn.png)

**A dead cache.** Cache \`${r.deadCache.killed}\` was SIGKILLed after the run; ${r.deadCache.toNextNearest} of
${r.deadCache.requests} following requests went to the nearest cache still alive (the first request
found it dead, its measurement refused; the controller then skipped it${r.deadCache.skippedBy ? `, until ${r.deadCache.skippedBy}` : ''}).

**Calibration** (ping across each TUN pair before the run, lowest RTT of 5, against 2 × the
distance): ${r.calibration.map((c) => `${c.pair} ${c.minMs}/${c.expectedMs}`).join(', ')} ms. A pair under 90% of its
distance (delay not on the path) or over 2 × + 20 ms (an overloaded machine) makes the run invalid.

**Limits.** The controller is reached directly, without distance: in a deployment the controller's
own RTT adds to the CDN's first byte. The measurement costs the slowest cache's 3 echoes (about
2 × 5 ms + its RTT, plus starting \`ping\`) on every request; the paper measured per request too. See docs/services.md.
`;
  writeReport(o.out, 'cdn', md, await renderChart(cdnChart(r)), r);
}

/** Time to first byte and download time against the client's distance to the origin (pure). */
export function cdnChart(r: CdnResult): Chart {
  const by = [...r.clients].sort((a, b) => a.distanceMs.origin - b.distanceMs.origin);
  const x = (c: ClientFigures): number => c.distanceMs.origin;
  const panel = (
    title: string,
    pick: (c: ClientFigures, via: 'cdn' | 'origin') => number,
  ): Chart['panels'][0] => ({
    title,
    x: { title: "client's one-way distance to the origin", unit: 'ms', ticks: by.map(x) },
    y: { title, unit: 'ms' },
    series: [
      {
        label: 'through the CDN',
        color: [40, 120, 200],
        marker: 'circle',
        width: 3,
        points: by.map((c) => ({ x: x(c), y: pick(c, 'cdn') })),
      },
      {
        label: 'from the origin',
        color: [200, 40, 40],
        marker: 'square',
        dash: [6, 4],
        points: by.map((c) => ({ x: x(c), y: pick(c, 'origin') })),
      },
    ],
  });
  return {
    title: `cdn: ${r.sizeMB} MB through arrow cdn (nearest cache by RTT) and from the origin`,
    subtitle: `${r.nearest}/${r.requests} requests to the nearest cache${r.valid ? '' : ' — INVALID run'}; medians of ${r.runs} per client`,
    panels: [
      panel('time to first byte', (c, via) => c[via].ttfbMs),
      panel('download time', (c, via) => c[via].totalMs),
    ],
  };
}
