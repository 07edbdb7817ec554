import { closeSync, existsSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { Lab, type LabHost } from '../lab.js';
import { defaultTopology, type Topology } from '../topology.js';
import { hasCode } from '../../util/errors.js';
import type { DataplaneMode } from '../../router/dataplane-mode.js';
import type { TunEndpoint } from '../../endpoint/tun.js';
import type { UnderlayChecksums } from '../../endpoint/underlay-checksums.js';

/**
 * The experiments' network: the demo's ISPs in a row (alpha ams→fra, beta fra→par, gamma
 * par→lon), two routers per PoP, every router and portal in its own network namespace
 * (`arrow lab up --netns`), and two hosts, `client` and `server`, for unmodified programs.
 */
export interface ExperimentLab {
  lab: Lab;
  client: LabHost;
  server: LabHost;
}

export async function startExperimentLab(
  name: string,
  o: { transitDelayMs?: number; dataplane?: DataplaneMode } = {},
): Promise<ExperimentLab> {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0)
    throw new Error('the experiments need root: they make network namespaces, veth links and TUN interfaces');
  const t: Topology = defaultTopology();
  t.name = name;
  t.servers = [];
  t.statsIntervalMs = 500;
  if (o.transitDelayMs) for (const isp of t.isps) isp.transitDelayMs = o.transitDelayMs;
  // The experiments measure the data path, as the seeds did (no policing there): every PoP pair
  // sells more than this machine's veth carries, and each TUN pair buys TUN_PAIR_MBPS of it, so
  // the policer never binds. (What policing does to TCP: docs/dataplane.md.)
  for (const isp of t.isps) for (const offer of isp.offers) offer.capacityMbps = EXPERIMENT_CAPACITY_MBPS;
  // ARROW_EXPERIMENT_KEEP=1 keeps the lab's configs and logs for a post-mortem.
  const lab = await Lab.start(t, {
    netns: true,
    keep: process.env.ARROW_EXPERIMENT_KEEP === '1',
    ...(o.dataplane ? { dataplane: o.dataplane } : {}),
  });
  if (lab.dir && process.env.ARROW_EXPERIMENT_KEEP === '1') process.stderr.write(`lab dir: ${lab.dir}\n`);
  try {
    const client = await lab.addHost('client');
    const server = await lab.addHost('server');
    return { lab, client, server };
  } catch (err) {
    await lab.stop();
    throw err;
  }
}

/** A segment of the experiments' paths: [isp, ingress PoP, egress PoP]. */
export type Hop = [isp: string, ingressPop: string, egressPop: string];
export const ONE_ISP: Hop[] = [['alpha', 'ams', 'fra']];
export const TWO_ISPS: Hop[] = [...ONE_ISP, ['beta', 'fra', 'par']];
export const THREE_ISPS: Hop[] = [...TWO_ISPS, ['gamma', 'par', 'lon']];

/**
 * Two `arrow endpoint --tun` processes, one in each host, joined by circuits bought through
 * `hops` (both directions): the client's TUN is 10.99.<subnet>.1, the server's 10.99.<subnet>.2.
 */
export interface TunPair {
  clientIp: string;
  serverIp: string;
  /** The router every forward circuit enters the middle ISP by (the one to fail), when there is one. */
  middle: string | undefined;
  /** The two TUN endpoint processes (buyer, answerer), for CPU figures. */
  pids(): number[];
  /** Who carries each endpoint's packets, as its `data path:` line says: `kernel` or `node`, and why. */
  dataplane: { client: string; server: string };
  /** Each endpoint's counters now (SIGUSR1 makes it print a stats line to its log). */
  stats(): Promise<{ client: TunPairStats; server: TunPairStats }>;
  stop(): Promise<void>;
}

/** What an experiment reads of a TUN endpoint's stats line: IP packets carried by its process and by its kernel path. */
export interface TunPairStats {
  node: { fromTun: number; toTun: number };
  /** `superPackets`: TCP's GSO super-packets the kernel path sent whole (their segments are in `sent`). */
  kernel?: { sent: number; received: number; passedUp: number; superPackets: number };
}

/** What each segment of an experiment's TUN pair buys: above what the path carries here (tens of Gb/s direct). */
export const TUN_PAIR_MBPS = 40_000;
/** What each PoP pair of the experiments' lab sells: room for two TUN pairs across one PoP pair (hops). */
export const EXPERIMENT_CAPACITY_MBPS = 100_000;

export async function startTunPair(
  x: ExperimentLab,
  o: {
    subnet: number;
    hops: Hop[];
    detectTimeoutMs?: number;
    probeIntervalMs?: number;
    /** The endpoints' `--dataplane` (default: theirs, auto). */
    dataplane?: DataplaneMode;
    /** The endpoints' `--underlay-checksums` (default: keep when every router is on the kernel path, else theirs). */
    underlayChecksums?: UnderlayChecksums;
  },
): Promise<TunPair> {
  const { lab, client, server } = x;
  const dir = lab.dir;
  const tag = `${o.subnet}`;
  const port = 7000 + o.subnet;
  const pathFile = join(dir, `tun-${tag}-path.json`);
  const peerFile = join(dir, `tun-${tag}-peer.json`);
  writeFileSync(
    pathFile,
    JSON.stringify({
      segments: o.hops.map(([isp, ingressPop, egressPop]) => ({
        isp,
        portal: lab.isp(isp).url,
        apiKey: lab.isp(isp).accounts[0]!.apiKey,
        ingressPop,
        egressPop,
        // Every circuit is policed at what it bought: more than the path carries, and two pairs
        // across alpha (hops) still fit its EXPERIMENT_CAPACITY_MBPS offers.
        bandwidthMbps: TUN_PAIR_MBPS,
      })),
      target: { kind: 'endpoint', addresses: [`${server.address}:${port}`] },
    }),
  );
  const detector = [
    '--detect-timeout',
    String(o.detectTimeoutMs ?? 50),
    '--probe-interval',
    String(o.probeIntervalMs ?? 10),
    ...(o.dataplane ? ['--dataplane', o.dataplane] : []),
    // Every router here on the kernel path: no process on this host reads a datagram's bytes, so
    // TCP's super-packets may cross the veths whole and unfinished (the figures of docs/dataplane.md);
    // with any router on the Node path, the endpoints' default has the stack finish them.
    ...(o.underlayChecksums
      ? ['--underlay-checksums', o.underlayChecksums]
      : lab.routers.every((r) => r.dataplane?.mode === 'kernel')
        ? ['--underlay-checksums', 'keep']
        : []),
  ];
  const log = (who: string): number => openSync(join(dir, 'logs', `tun-${tag}-${who}.log`), 'a');
  // Where this pair's lines start: the logs are appended to by every pair with this tag.
  const logStart = (who: string): number => sizeOf(join(dir, 'logs', `tun-${tag}-${who}.log`));
  const from = { client: logStart('client'), server: logStart('server') };
  const spawnLogged = (host: LabHost, who: string, args: string[]): ChildProcess => {
    const fd = log(who);
    const p = host.arrow(args, { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    return p;
  };
  // A peer file left by an earlier pair would name relinquished circuits.
  rmSync(peerFile, { force: true });
  const buyer = spawnLogged(client, 'client', [
    'endpoint',
    '--tun',
    `arrc${tag}`,
    '--address',
    `10.99.${o.subnet}.1/24`,
    '--listen',
    `${client.address}:0`,
    '--path',
    pathFile,
    '--peer',
    `${server.address}:${port}`,
    '--write-peer',
    peerFile,
    ...detector,
  ]);
  const procs: ChildProcess[] = [buyer];
  const stop = async (): Promise<void> => {
    // The answerer first: the buyer relinquishes the circuits on SIGTERM.
    for (const p of [...procs].reverse()) {
      if (p.exitCode !== null || p.signalCode !== null) continue;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await Promise.race([exited, sleep(5000).then(() => p.kill('SIGKILL'))]);
    }
  };
  try {
    for (let waited = 0; !existsSync(peerFile); waited += 50) {
      if (buyer.exitCode !== null || waited > 20_000)
        throw new Error(
          `the client's TUN endpoint did not buy its paths:\n${tail(join(dir, 'logs', `tun-${tag}-client.log`))}`,
        );
      await sleep(50);
    }
    procs.push(
      spawnLogged(server, 'server', [
        'endpoint',
        '--tun',
        `arrs${tag}`,
        '--address',
        `10.99.${o.subnet}.2/24`,
        '--peer-file',
        peerFile,
        ...detector,
      ]),
    );
    const serverIp = `10.99.${o.subnet}.2`;
    let up = false;
    for (let i = 0; i < 40 && !up; i++)
      up = (await client.run(['ping', '-c', '1', '-W', '1', serverIp])).code === 0;
    if (!up) throw new Error(`no ping across the TUN pair ${tag} within 40 tries`);
    const peer = JSON.parse(readFileSync(peerFile, 'utf8')) as {
      paths: { reverse: { ingress: string[] }[] }[];
    };
    // The buyer's forward circuits are the peer's `reverse`; the second one's first ingress is the middle router.
    const middleAddress = o.hops.length >= 2 ? peer.paths[0]!.reverse[1]!.ingress[0] : undefined;
    const middle = middleAddress ? lab.routers.find((r) => r.address === middleAddress)?.name : undefined;
    const pids = (): number[] => procs.flatMap((p) => (p.pid === undefined ? [] : [p.pid]));
    const logs = {
      client: join(dir, 'logs', `tun-${tag}-client.log`),
      server: join(dir, 'logs', `tun-${tag}-server.log`),
    };
    // Waited for: on the kernel path the programs answer pings before `start` has returned and
    // the endpoint has printed anything (a clean run once found the server's log still empty).
    const dataplane = {
      client: await dataPathLine(logs.client, from.client),
      server: await dataPathLine(logs.server, from.server),
    };
    const stats = async (): Promise<{ client: TunPairStats; server: TunPairStats }> => {
      const before = { client: statsLines(logs.client).length, server: statsLines(logs.server).length };
      for (const p of procs) p.kill('SIGUSR1');
      for (let waited = 0; ; waited += 20) {
        const now = { client: statsLines(logs.client), server: statsLines(logs.server) };
        if (now.client.length > before.client && now.server.length > before.server)
          return { client: now.client.at(-1)!, server: now.server.at(-1)! };
        if (waited > 5000)
          throw new Error(`the TUN endpoints printed no stats line within 5 s (${logs.client})`);
        await sleep(20);
      }
    };
    return { clientIp: `10.99.${o.subnet}.1`, serverIp, middle, pids, dataplane, stats, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The stats lines an endpoint printed to its log (`{"event":"stats",...}`), oldest first. */
function statsLines(log: string): TunPairStats[] {
  return readFileSync(log, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{"event":"stats"'))
    .map((l) => {
      const s = JSON.parse(l) as ReturnType<TunEndpoint['stats']>;
      const k = s.dataplane.mode === 'kernel' ? s.dataplane.counters : undefined;
      return {
        node: { fromTun: s.counters.fromTun, toTun: s.counters.toTun },
        ...(k
          ? {
              kernel: {
                sent: k.sent.packets,
                received: k.received.packets,
                passedUp: k.passedUp.packets,
                superPackets: k.superPackets.packets,
              },
            }
          : {}),
      };
    });
}

/** What an endpoint's `data path: MODE ...: REASON` line says, from its log, waiting up to 10 s for it. */
async function dataPathLine(log: string, from: number): Promise<string> {
  for (let waited = 0; ; waited += 50) {
    const m = /^data path: (.*)$/m.exec(readFileSync(log).subarray(from).toString('utf8'));
    if (m) return m[1]!;
    if (waited >= 10_000) throw new Error(`no "data path:" line in ${log} within 10 s:\n${tail(log)}`);
    await sleep(50);
  }
}

/** A file's size, 0 when it does not exist yet (a log no pair wrote to, a download curl has not begun). */
export function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch (err) {
    if (hasCode(err, 'ENOENT')) return 0;
    throw err;
  }
}

function tail(path: string): string {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-15).join('\n');
  } catch (err) {
    // Only for an error message: say why there is no log rather than fail the report.
    if (hasCode(err, 'ENOENT')) return '(no log)';
    return `(log unreadable: ${(err as Error).message})`;
  }
}

/** `rtt min/avg/max/mdev = a/b/c/d ms` from ping's summary, in µs. */
export function parsePingRtt(out: string): { min: number; avg: number; max: number } | undefined {
  const m = /= ([\d.]+)\/([\d.]+)\/([\d.]+)\/[\d.]+ ms/.exec(out);
  if (!m) return undefined;
  return { min: Number(m[1]) * 1000, avg: Number(m[2]) * 1000, max: Number(m[3]) * 1000 };
}

export function pingCounts(out: string): { sent: number; received: number } {
  const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
  return { sent: Number(m?.[1] ?? 0), received: Number(m?.[2] ?? 0) };
}
