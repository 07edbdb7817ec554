import { appendFileSync, closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { Lab, type LabHost } from '../lab.js';
import type { Topology } from '../topology.js';
import { renderChart, type Chart } from '../../plot/chart.js';
import { machineLine, writeReport } from './report.js';
import type { ProtectCounters } from '../../services/protect.js';
import type { DataplaneMode } from '../../router/dataplane-mode.js';

/**
 * `arrow lab experiment dos` (ARROW §3.5, Phalanx in §4.4; docs/experiments/dos.md): a destination
 * reached through K = 4 ingress points (two PoPs of each of two ISPs, converging on each ISP's
 * `dst` PoP), protected by `arrow protect`; a legitimate UDP flow of LEGIT_PPS datagrams/s through
 * `arrow forward`, with and without `--spread`; an attacker namespace flooding one, then two of
 * the ingress routers' access links (each given LINK_KBIT of capacity) at a rate calibrated in the
 * same run; then the destination's real address flooded directly, as if it had leaked.
 */

export interface DosOptions {
  /** Length of each measured window, s. */
  seconds: number;
  out: string;
  progress?: (line: string) => void;
  /** The routers' data plane (default: the lab's, auto). */
  dataplane?: DataplaneMode;
}

export interface DosPhase {
  flooded: number;
  /** The ingress routers flooded. */
  routers: string[];
  /** Legitimate datagrams sent and received in the measured window (after the settle time). */
  sent: number;
  received: number;
  /** received / sent: the share of the no-attack rate (the flow is sent at a fixed rate). */
  goodput: number;
  /** The same over the whole flood, its onset included. */
  onsetGoodput: number;
  /** The flooder's rate per target, datagrams/s. */
  floodPps: number[];
  /** Per flooded access link: the share of what arrived that its queue dropped. */
  linkDropShare: number[];
  /** Spreading: ms from the flood's start to each flooded ingress leaving the sequence (null: it never did). */
  dropOutMs: (number | null)[];
}

/** A TCP download (iperf3 -R) through `arrow endpoint --tun` while ingress points are flooded. */
export interface DosTcpPhase {
  flooded: number;
  routers: string[];
  /** Goodput over the measured window (after the settle time), Mb/s; 0 when the download failed. */
  mbps: number;
  /** mbps / the same mode's no-attack mbps. */
  share: number;
  /** Why the download failed, when it did (iperf3's own words). */
  error: string | null;
}

export interface DosTarget {
  value: number;
  target: string;
  met: boolean;
}

export interface DosResult {
  k: number;
  legitPps: number;
  linkKbit: number;
  seconds: number;
  calibration: {
    /** What one flooding process sent here, datagrams/s (at the ceiling asked). */
    attackerPps: number;
    /** What an ingress access link carried of 1000-byte datagrams, /s. */
    linkPps: number;
    /** The flood used: per flooded link, datagrams/s. */
    floodPps: number;
  };
  spread: DosPhase[];
  single: DosPhase[];
  /** The TCP download through the gateway mode's TUN endpoints, with and without spreading. */
  tcp: { spread: DosTcpPhase[]; single: DosTcpPhase[] };
  destination: {
    egress: string[];
    /** nft counters of `arrow protect` at its exit. */
    nft: ProtectCounters;
    /** Datagrams the attacker sent straight to the destination's address. */
    directFloodSent: number;
    /** Datagrams the application got that were not the legitimate flow. */
    appForeign: number;
    /** Senders the application heard from, with counts: the egress routers only. */
    appSources: Record<string, number>;
    /** The table was gone after `arrow protect` exited. */
    tableRemoved: boolean;
  };
  targets: Record<string, DosTarget>;
  valid: boolean;
  invalidReason: string | null;
}

export const K = 4;
export const LEGIT_PPS = 1000;
/**
 * Each ingress router's access link: room for the whole legitimate flow (~1.2 Mb/s on the wire)
 * through one ingress, with a queue of LINK_QUEUE packets.
 */
export const LINK_KBIT = 4000;
export const LINK_QUEUE = 10;
/** Each circuit buys this: the whole flow fits one circuit, so policing never binds the legitimate flow. */
const CIRCUIT_MBPS = 2;
/** The flood aims at this many times what a link carries... */
const FLOOD_FACTOR = 8;
/** ...and must reach at least this many times, or it does not saturate the link: invalid. */
const MIN_FLOOD_FACTOR = 3;
const FLOOD_SIZE = 1000;
const CALIBRATION_PPS = 30_000;
/** From the flood's start to the measured window: detection and the drop-out. */
const SETTLE_S = 1.5;
/** After a flood, before the next phase: the flooded ingresses rejoin. */
const RECOVER_S = 2.5;
const APP_PORT = 9000;
/** The server's TUN endpoint's ARROW socket (let in by \`arrow protect\` beside the application's port). */
const TUN_PORT = 7000;
const TUN_CLIENT = '10.203.0.1';
const TUN_SERVER = '10.203.0.2';
const LISTEN_PORT = 5000;
/** Which ingress (path index) each phase floods: one, then one of each ISP. */
const FLOODS: number[][] = [[], [0], [0, 2]];

/** The legitimate sender (client host): numbered datagrams at a fixed rate, counted per 100 ms of send time. */
const SENDER_PY = `
import socket, sys, time, json, struct
host, port, pps, seconds, run = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
pad = bytes(64 - 24)
buckets = {}
seq = 0
echoes = 0
start = time.time()
while True:
    el = time.time() - start
    if el >= seconds:
        break
    due = int(el * pps)
    while seq < due:
        t = time.time()
        try:
            s.sendto(b'ARWL' + struct.pack('>IQd', run, seq, t * 1000) + pad, (host, port))
        except BlockingIOError:
            pass
        seq += 1
        b = int(t * 10)
        buckets[b] = buckets.get(b, 0) + 1
    try:
        while True:
            s.recv(2048)
            echoes += 1
    except BlockingIOError:
        pass
    time.sleep(0.001)
print(json.dumps({"sent": seq, "echoes": echoes, "buckets": buckets}), flush=True)
`;

/** The destination's application (server host): echoes the legitimate flow, counts it by send time, and counts anything else. */
const SINK_PY = `
import socket, sys, json, struct, signal
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind((host, port))
s.settimeout(0.1)
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
buckets = {}
seen = set()
foreign = 0
sources = {}
print(json.dumps({"event": "listening"}), flush=True)
while not stop:
    try:
        data, addr = s.recvfrom(4096)
    except (socket.timeout, InterruptedError):
        continue
    sources[addr[0]] = sources.get(addr[0], 0) + 1
    if len(data) >= 24 and data[:4] == b'ARWL':
        run, seq, ms = struct.unpack('>IQd', data[4:24])
        if (run, seq) in seen:
            continue
        seen.add((run, seq))
        b = int(ms // 100)
        buckets[b] = buckets.get(b, 0) + 1
        s.sendto(data, addr)
    else:
        foreign += 1
print(json.dumps({"buckets": buckets, "foreign": foreign, "sources": sources}), flush=True)
`;

type Buckets = Record<string, number>;

/** One phase's timing and the flood's figures, as the run saw them (wall-clock ms). */
interface Window {
  from: number;
  to: number;
  onsetFrom: number;
  onsetTo: number;
  flood?: { at: number; sent: number[]; seconds: number };
  routers: string[];
  linkDrop: number[];
}

interface ModeRun {
  spread: boolean;
  windows: Window[];
  senderBuckets: Buckets;
  /** What `arrow forward` printed: its failover and sequence events. */
  fwdLines: string[];
}

/** Sum of the 100 ms buckets (keys: wall ms / 100) within [fromMs, toMs). */
export function inWindow(b: Buckets, fromMs: number, toMs: number): number {
  let n = 0;
  for (const [k, v] of Object.entries(b)) {
    const at = Number(k) * 100;
    if (at >= fromMs && at + 100 <= toMs) n += v;
  }
  return n;
}

/** The lab: alpha and beta, each with ingress PoPs (one router each) converging on its `dst` PoP. */
export function dosTopology(name: string): Topology {
  const isp = (n: string, ins: string[]): Topology['isps'][0] => ({
    name: n,
    accounts: [{ name: 'dest', apiKey: `dest-key-${n}-0000000000000` }],
    store: { kind: 'sqlite' },
    pops: [...ins, 'dst'].map((p) => ({ name: p, routers: 1 })),
    offers: ins.flatMap((p) =>
      [
        [p, 'dst'],
        ['dst', p],
      ].map(([from, to]) => ({
        from: from!,
        to: to!,
        capacityMbps: 1000,
        latencyMs: { min: 1, max: 20 },
        maxLossPct: 0.1,
        uptimePct: 99.99,
        pricePerMbps: 1,
      })),
    ),
  });
  return {
    name,
    isps: [isp('alpha', ['in1', 'in2']), isp('beta', ['in3', 'in4'])],
    servers: [],
    statsIntervalMs: 500,
  };
}

const wallNow = (): number => performance.timeOrigin + performance.now();

/** Lines of a child's stdout, parsed as JSON objects as they come. */
function jsonLines(p: ChildProcess): {
  lines: Record<string, unknown>[];
  next: (
    pred: (l: Record<string, unknown>) => boolean,
    ms: number,
    what: string,
  ) => Promise<Record<string, unknown>>;
} {
  const lines: Record<string, unknown>[] = [];
  let buf = '';
  const waiters: (() => void)[] = [];
  p.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    for (const l of parts) {
      if (!l.trim().startsWith('{')) continue;
      lines.push(JSON.parse(l) as Record<string, unknown>);
    }
    for (const w of waiters.splice(0)) w();
  });
  const next = async (
    pred: (l: Record<string, unknown>) => boolean,
    ms: number,
    what: string,
  ): Promise<Record<string, unknown>> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = lines.find(pred);
      if (found) return found;
      if (p.exitCode !== null || Date.now() > deadline)
        throw new Error(`${what}: not within ${ms} ms (exit ${p.exitCode})`);
      await Promise.race([new Promise<void>((r) => waiters.push(r)), sleep(100)]);
    }
  };
  return { lines, next };
}

async function stopProc(p: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill(signal);
  await Promise.race([exited, sleep(8000).then(() => p.kill('SIGKILL'))]);
}

export async function runDos(o: DosOptions): Promise<DosResult> {
  const say = o.progress ?? ((): void => {});
  if (typeof process.getuid !== 'function' || process.getuid() !== 0)
    throw new Error(
      'the dos experiment needs root: it makes network namespaces, tc queues and nftables rules',
    );
  const lab = await Lab.start(dosTopology('expdos'), {
    netns: true,
    keep: process.env.ARROW_EXPERIMENT_KEEP === '1',
    ...(o.dataplane ? { dataplane: o.dataplane } : {}),
  });
  const procs: ChildProcess[] = [];
  try {
    const client = await lab.addHost('client');
    const server = await lab.addHost('server');
    const attacker = await lab.addHost('attacker');
    const dir = lab.dir;
    writeFileSync(join(dir, 'dos-sender.py'), SENDER_PY);
    writeFileSync(join(dir, 'dos-sink.py'), SINK_PY);
    const ingress = ['alpha-in1-1', 'alpha-in2-1', 'beta-in3-1', 'beta-in4-1'].map((n) => lab.router(n));
    const egress = ['alpha-dst-1', 'beta-dst-1'].map((n) => lab.router(n).address.split(':')[0]!);
    // The paths: one per ingress PoP, each to the application's real address.
    const pathFiles = ingress.map((r, i) => {
      const f = join(dir, `dos-path-${i}.json`);
      const isp = lab.isp(r.isp);
      writeFileSync(
        f,
        JSON.stringify({
          segments: [
            {
              isp: r.isp,
              portal: isp.url,
              apiKey: isp.accounts[0]!.apiKey,
              ingressPop: r.pop,
              egressPop: 'dst',
              bandwidthMbps: CIRCUIT_MBPS,
            },
          ],
          target: { kind: 'udp', address: `${server.address}:${APP_PORT}` },
        }),
      );
      return f;
    });
    // The same four ingress points for the TUN endpoints: the target is the server's endpoint.
    const tunPathFiles = pathFiles.map((f, i) => {
      const t = join(dir, `dos-tun-path-${i}.json`);
      const spec = JSON.parse(readFileSync(f, 'utf8')) as { target: unknown };
      spec.target = { kind: 'endpoint', addresses: [`${server.address}:${TUN_PORT}`] };
      writeFileSync(t, JSON.stringify(spec));
      return t;
    });
    for (const r of ingress) await lab.limitInbound(r.name, LINK_KBIT, LINK_QUEUE);
    const logFd = (name: string): number => openSync(join(dir, 'logs', name), 'a');
    const spawnIn = (host: LabHost, args: string[], log: string, python = false): ChildProcess => {
      const fd = logFd(log);
      const p = python
        ? host.exec(['python3', ...args], { stdio: ['ignore', 'pipe', fd] })
        : host.arrow(args, { stdio: ['ignore', 'pipe', fd] });
      closeSync(fd);
      procs.push(p);
      return p;
    };

    // The destination: its nftables table, then its application.
    const protect = spawnIn(
      server,
      [
        'protect',
        '--egress',
        egress.join(','),
        '--port',
        String(APP_PORT),
        '--port',
        String(TUN_PORT),
        '--tun',
        'dostun',
        '--name',
        'dos',
        '--json',
        '--interval',
        '500',
      ],
      'dos-protect.log',
    );
    const protectOut = jsonLines(protect);
    await protectOut.next((l) => l.event === 'installed', 10_000, 'arrow protect installing its table');
    const sink = spawnIn(
      server,
      [join(dir, 'dos-sink.py'), server.address, String(APP_PORT)],
      'dos-sink.log',
      true,
    );
    const sinkOut = jsonLines(sink);
    await sinkOut.next((l) => l.event === 'listening', 10_000, 'the application listening');

    // Calibration: what one flooding process sends here, and what an access link carries.
    const floodOnce = async (
      targets: string[],
      pps: number,
      seconds: number,
      host = attacker,
    ): Promise<{ at: number; sent: number[]; seconds: number }> => {
      const p = spawnIn(
        host,
        [
          'flood',
          ...targets.flatMap((t) => ['--target', t]),
          '--pps',
          String(pps),
          '--seconds',
          String(seconds),
          '--size',
          String(FLOOD_SIZE),
        ],
        'dos-flood.log',
      );
      const out = jsonLines(p);
      const started = await out.next((l) => l.event === 'flooding', 15_000, 'the flood starting');
      const done = await out.next((l) => Array.isArray(l.sent), (seconds + 15) * 1000, 'the flood ending');
      return { at: started.at as number, sent: done.sent as number[], seconds: done.seconds as number };
    };
    say('calibrating: the attacker floods ingress 0 at its ceiling for 1 s');
    const before = await lab.inboundStats(ingress[0]!.name);
    const cal = await floodOnce([ingress[0]!.address], CALIBRATION_PPS, 1);
    await sleep(200);
    const after = await lab.inboundStats(ingress[0]!.name);
    const attackerPps = Math.round(cal.sent[0]! / cal.seconds);
    const linkPps = Math.round((after.packets - before.packets) / cal.seconds);
    // Two links flooded at once from one process: each gets under half of what it can send.
    const floodPps = Math.min(FLOOD_FACTOR * linkPps, Math.floor(0.45 * attackerPps));
    say(
      `calibration: the attacker sends ${attackerPps}/s; an access link carries ${linkPps}/s; flood ${floodPps}/s per link`,
    );
    await sleep(RECOVER_S * 1000);

    const runMode = async (spread: boolean, run: number): Promise<ModeRun> => {
      const paths = spread ? pathFiles : [pathFiles[0]!];
      const fwdLog = `dos-forward-${spread ? 'spread' : 'single'}.log`;
      const fwd = spawnIn(
        client,
        [
          'forward',
          '--listen',
          `${client.address}:${LISTEN_PORT}`,
          ...paths.flatMap((p) => ['--path', p]),
          ...(spread ? ['--spread'] : []),
        ],
        fwdLog,
      );
      const fwdLines: string[] = [];
      let partial = '';
      fwd.stdout!.on('data', (d: Buffer) => {
        const parts = (partial + d.toString()).split('\n');
        partial = parts.pop()!;
        fwdLines.push(...parts);
        appendFileSync(join(dir, 'logs', fwdLog), parts.map((l) => `${l}\n`).join(''));
      });
      for (let waited = 0; !fwdLines.some((l) => l.startsWith('forwarding UDP')); waited += 100) {
        if (fwd.exitCode !== null || waited > 30_000)
          throw new Error(
            `arrow forward did not start: ${readFileSync(join(dir, 'logs', fwdLog), 'utf8').slice(-2000)}`,
          );
        await sleep(100);
      }
      await sleep(1000);
      const total = 1.5 + o.seconds + (FLOODS.length - 1) * (SETTLE_S + o.seconds + RECOVER_S) + 1;
      const sender = spawnIn(
        client,
        [
          join(dir, 'dos-sender.py'),
          client.address,
          String(LISTEN_PORT),
          String(LEGIT_PPS),
          String(total),
          String(run),
        ],
        'dos-sender.log',
        true,
      );
      const senderOut = jsonLines(sender);
      await sleep(1500);
      const windows: Window[] = [];
      for (const f of FLOODS) {
        if (f.length === 0) {
          const from = wallNow();
          await sleep(o.seconds * 1000);
          windows.push({
            from,
            to: wallNow(),
            onsetFrom: from,
            onsetTo: wallNow(),
            routers: [],
            linkDrop: [],
          });
          continue;
        }
        const routers = f.map((i) => ingress[i]!);
        say(`${spread ? 'spread' : 'single'}: flooding ${routers.map((r) => r.name).join(' and ')}`);
        const b = await Promise.all(routers.map((r) => lab.inboundStats(r.name)));
        const fl = await floodOnce(
          routers.map((r) => r.address),
          floodPps,
          SETTLE_S + o.seconds,
        );
        const a = await Promise.all(routers.map((r) => lab.inboundStats(r.name)));
        const end = fl.at + fl.seconds * 1000;
        windows.push({
          from: fl.at + SETTLE_S * 1000,
          to: end,
          onsetFrom: fl.at,
          onsetTo: end,
          flood: fl,
          routers: routers.map((r) => r.name),
          linkDrop: a.map((x, i) => {
            const arrived = x.packets + x.dropped - b[i]!.packets - b[i]!.dropped;
            return arrived > 0 ? (x.dropped - b[i]!.dropped) / arrived : 0;
          }),
        });
        await sleep(RECOVER_S * 1000);
      }
      const sent = await senderOut.next(
        (l) => typeof l.sent === 'number',
        (total + 20) * 1000,
        'the sender finishing',
      );
      await sleep(500);
      await stopProc(fwd);
      // The application counts across both modes; its counts are read at the end, by window.
      return { spread, windows, senderBuckets: sent.buckets as Buckets, fwdLines };
    };
    say('spread: arrow forward --spread over 4 ingress points');
    const spreadRun = await runMode(true, 1);
    say('single: arrow forward over one ingress point');
    const singleRun = await runMode(false, 2);

    /** Waits for a line of a child's stdout that matches, or fails with its log. */
    const waitLine = async (p: ChildProcess, re: RegExp, log: string, what: string): Promise<void> => {
      let seen = '';
      p.stdout!.on('data', (d: Buffer) => {
        seen += d.toString();
        appendFileSync(join(dir, 'logs', log), d);
      });
      for (let waited = 0; !re.test(seen); waited += 100) {
        if (p.exitCode !== null || waited > 30_000)
          throw new Error(
            `${what} did not start: ${readFileSync(join(dir, 'logs', log), 'utf8').slice(-2000)}`,
          );
        await sleep(100);
      }
    };
    const runTcp = async (spread: boolean): Promise<DosTcpPhase[]> => {
      const mode = spread ? 'spread' : 'single';
      const peerFile = join(dir, `dos-tun-peer-${mode}.json`);
      const tunArgs = (address: string): string[] => [
        'endpoint',
        '--tun',
        'dostun',
        '--address',
        `${address}/30`,
        '--dataplane',
        'node',
        '--detect-timeout',
        '50',
        '--probe-interval',
        '10',
      ];
      const buyer = spawnIn(
        client,
        [
          ...tunArgs(TUN_CLIENT),
          ...(spread ? tunPathFiles : [tunPathFiles[0]!]).flatMap((f) => ['--path', f]),
          ...(spread ? ['--spread'] : []),
          '--listen',
          `${client.address}:0`,
          '--write-peer',
          peerFile,
        ],
        `dos-tun-buyer-${mode}.log`,
      );
      await waitLine(
        buyer,
        /^tun dostun up/m,
        `dos-tun-buyer-${mode}.log`,
        `the client's TUN endpoint (${mode})`,
      );
      // The server's side spreads too: the download's data goes back over every ingress point's
      // return path, and one whose probes are lost (its router's link flooded) leaves the sequence.
      const answerer = spawnIn(
        server,
        [...tunArgs(TUN_SERVER), '--peer-file', peerFile, ...(spread ? ['--spread'] : [])],
        `dos-tun-answerer-${mode}.log`,
      );
      await waitLine(
        answerer,
        /^tun dostun up/m,
        `dos-tun-answerer-${mode}.log`,
        "the server's TUN endpoint",
      );
      const iperfd = server.exec(['iperf3', '-s', '-B', TUN_SERVER], { stdio: 'ignore' });
      procs.push(iperfd);
      await client.run(['ping', '-c', '5', '-i', '0.2', '-W', '1', TUN_SERVER], { timeoutMs: 10_000 });
      const phases: Omit<DosTcpPhase, 'share'>[] = [];
      for (const f of FLOODS) {
        const routers = f.map((i) => ingress[i]!);
        say(
          `tcp ${mode}: download${routers.length ? ` while flooding ${routers.map((r) => r.name).join(' and ')}` : ''}`,
        );
        // A download in progress when the flood starts (-R: the server sends), in half-second
        // intervals. Measured from SETTLE_S after the flood's start to its end, as for the datagrams.
        const lead = 1;
        const iperfAt = wallNow();
        const download = client.run(
          [
            'iperf3',
            '-c',
            TUN_SERVER,
            '-B',
            TUN_CLIENT,
            '-R',
            '-t',
            String(lead + 0.5 + SETTLE_S + o.seconds + 0.5),
            '-i',
            '0.5',
            '-J',
            '--connect-timeout',
            '3000',
          ],
          { timeoutMs: (SETTLE_S + o.seconds + 25) * 1000 },
        );
        await sleep(lead * 1000);
        // Without a flood, the same span of the download, so that the shares compare like with like.
        const fl = routers.length
          ? await floodOnce(
              routers.map((r) => r.address),
              floodPps,
              SETTLE_S + o.seconds,
            )
          : { at: wallNow(), seconds: SETTLE_S + o.seconds };
        if (!routers.length) await sleep((SETTLE_S + o.seconds) * 1000);
        const r = await download;
        const from = (fl.at - iperfAt) / 1000 + SETTLE_S;
        const to = (fl.at - iperfAt) / 1000 + fl.seconds;
        let mbps = 0;
        let error: string | null = null;
        try {
          const j = JSON.parse(r.stdout) as {
            error?: string;
            intervals?: { sum: { start: number; end: number; bytes: number } }[];
          };
          if (j.error) error = j.error;
          // iperf3's clock starts at its connect, a little after the spawn: the window is that much generous.
          const measured = (j.intervals ?? []).filter(
            (x) => x.sum.start >= from - 0.25 && x.sum.end <= to + 0.25,
          );
          const secs = measured.reduce((a, x) => a + (x.sum.end - x.sum.start), 0);
          const bytes = measured.reduce((a, x) => a + x.sum.bytes, 0);
          if (secs > 0) mbps = Math.round(((bytes * 8) / secs / 1e6) * 1000) / 1000;
        } catch (err) {
          if (!(err instanceof SyntaxError)) throw err;
          error = `iperf3 printed no JSON (exit ${r.code}): ${r.stderr.trim().slice(0, 200)}`;
        }
        phases.push({ flooded: f.length, routers: routers.map((x) => x.name), mbps, error });
        await sleep(RECOVER_S * 1000);
      }
      await stopProc(iperfd);
      await stopProc(answerer);
      await stopProc(buyer);
      const base = phases[0]!.mbps;
      return phases.map((p) => ({ ...p, share: base > 0 ? Math.round((p.mbps / base) * 1000) / 1000 : 0 }));
    };
    say('tcp: a download through arrow endpoint --tun --spread over 4 ingress points, then over one');
    const tcp = { spread: await runTcp(true), single: await runTcp(false) };

    // The destination's real address, as if it had leaked: flooded directly, on the app's port and another.
    say('flooding the destination directly');
    const direct = await floodOnce([`${server.address}:${APP_PORT}`, `${server.address}:22`], 2000, 1);
    await sleep(1200);
    await stopProc(sink);
    const sinkResult = await sinkOut.next(
      (l) => l.buckets !== undefined,
      10_000,
      'the application reporting',
    );
    await stopProc(protect);
    const removed = await protectOut
      .next((l) => l.event === 'removed', 10_000, 'arrow protect removing its table')
      .catch((err: Error) => {
        // Its own words, which the lab directory takes with it when it goes.
        const log = readFileSync(join(dir, 'logs', 'dos-protect.log'), 'utf8').slice(-2000);
        throw new Error(`${err.message}; its stderr:\n${log}`, { cause: err });
      });
    const tables = await server.run(['nft', 'list', 'tables']);
    const tableRemoved = tables.code === 0 && !tables.stdout.includes('arrow_protect_dos');
    const sinkBuckets = sinkResult.buckets as Buckets;

    const phases = (p: ModeRun): DosPhase[] => {
      const log = p.fwdLines;
      return p.windows.map((w, i) => {
        const sentN = inWindow(p.senderBuckets, w.from, w.to);
        const got = inWindow(sinkBuckets, w.from, w.to);
        const onsetSent = inWindow(p.senderBuckets, w.onsetFrom, w.onsetTo);
        const onsetGot = inWindow(sinkBuckets, w.onsetFrom, w.onsetTo);
        const floodIdx = FLOODS[i]!;
        const dropOutMs = p.spread
          ? floodIdx.map((k) => {
              for (const l of log) {
                const m = /^(\S+) sequence ingress (\d+) .*out of the sequence$/.exec(l);
                if (!m || Number(m[2]) !== k) continue;
                const at = Date.parse(m[1]!);
                if (at >= w.onsetFrom && at <= w.onsetTo) return Math.round(at - w.onsetFrom);
              }
              return null;
            })
          : [];
        return {
          flooded: floodIdx.length,
          routers: w.routers,
          sent: sentN,
          received: got,
          goodput: sentN > 0 ? Math.round((got / sentN) * 1000) / 1000 : 0,
          onsetGoodput: onsetSent > 0 ? Math.round((onsetGot / onsetSent) * 1000) / 1000 : 0,
          floodPps: w.flood ? w.flood.sent.map((n) => Math.round(n / w.flood!.seconds)) : [],
          linkDropShare: w.linkDrop.map((x) => Math.round(x * 1000) / 1000),
          dropOutMs,
        };
      });
    };
    const spreadPhases = phases(spreadRun);
    const singlePhases = phases(singleRun);
    const nft = {
      arrow: removed.arrow as ProtectCounters['arrow'],
      established: removed.established as ProtectCounters['established'],
      dropped: removed.dropped as ProtectCounters['dropped'],
    };
    const sources = sinkResult.sources as Record<string, number>;
    const destination: DosResult['destination'] = {
      egress,
      nft,
      directFloodSent: direct.sent.reduce((a, b) => a + b, 0),
      appForeign: sinkResult.foreign as number,
      appSources: sources,
      tableRemoved,
    };
    const result = verdict({
      k: K,
      legitPps: LEGIT_PPS,
      linkKbit: LINK_KBIT,
      seconds: o.seconds,
      calibration: { attackerPps, linkPps, floodPps },
      spread: spreadPhases,
      single: singlePhases,
      tcp,
      destination,
    });
    await report(o, result);
    return result;
  } finally {
    for (const p of procs) await stopProc(p, 'SIGKILL');
    await lab.stop();
  }
}

/** Judges the targets and the run's validity from the figures (pure; also for a saved result). */
export function verdict(r: Omit<DosResult, 'targets' | 'valid' | 'invalidReason'>): DosResult {
  const targets: Record<string, DosTarget> = {};
  for (const p of r.spread) {
    if (p.flooded === 0) continue;
    const want = (r.k - p.flooded) / r.k;
    targets[`spread${p.flooded}`] = {
      value: p.goodput,
      target: `≥ ${want} ((K − ${p.flooded}) / K)`,
      met: p.goodput >= want,
    };
  }
  for (const p of r.single) {
    if (p.flooded === 0) continue;
    targets[`single${p.flooded}Collapses`] = {
      value: p.goodput,
      target: '< 0.5 (without spreading the flow collapses)',
      met: p.goodput < 0.5,
    };
  }
  for (const [mode, ps] of [
    ['Spread', r.tcp.spread],
    ['Single', r.tcp.single],
  ] as const)
    for (const p of ps) {
      if (p.flooded === 0) continue;
      targets[`tcp${mode}${p.flooded}`] =
        mode === 'Spread'
          ? { value: p.share, target: '≥ 0.5 (the download keeps most of its goodput)', met: p.share >= 0.5 }
          : {
              value: p.share,
              target: '< 0.5 (without spreading the download collapses)',
              met: p.share < 0.5,
            };
    }
  const d = r.destination;
  targets.noForeignPacket = {
    value: d.appForeign,
    target: '0 datagrams that were not the legitimate flow, from the egress routers only',
    met: d.appForeign === 0 && Object.keys(d.appSources).every((s) => d.egress.includes(s)),
  };
  targets.directFloodDropped = {
    value: d.nft.dropped.packets,
    target: `≥ ${Math.floor(0.9 * d.directFloodSent)} (90% of the ${d.directFloodSent} sent straight to the destination) dropped by nft`,
    met: d.nft.dropped.packets >= 0.9 * d.directFloodSent,
  };
  const problems: string[] = [];
  const c = r.calibration;
  if (c.floodPps < MIN_FLOOD_FACTOR * c.linkPps)
    problems.push(
      `the attacker reached ${c.attackerPps}/s here, so the flood (${c.floodPps}/s) is not ${MIN_FLOOD_FACTOR}x what a link carries (${c.linkPps}/s): it would not saturate`,
    );
  for (const [mode, ps] of [
    ['spread', r.spread],
    ['single', r.single],
  ] as const) {
    for (const p of ps) {
      if (p.sent < 0.9 * r.legitPps * r.seconds)
        problems.push(
          `${mode}, ${p.flooded} flooded: the sender managed ${p.sent} datagrams in ${r.seconds} s, under 90% of ${r.legitPps}/s: this machine was overloaded`,
        );
      if (p.flooded === 0 && p.goodput < 0.97)
        problems.push(
          `${mode}: with no attack only ${Math.round(p.goodput * 100)}% arrived: the path is broken or the machine overloaded`,
        );
      for (const [i, pps] of p.floodPps.entries())
        if (pps < 0.9 * c.floodPps)
          problems.push(
            `${mode}, ${p.flooded} flooded: the flood on ${p.routers[i]} reached ${pps}/s of the ${c.floodPps}/s asked`,
          );
      for (const [i, share] of p.linkDropShare.entries())
        if (share < 0.5)
          problems.push(
            `${mode}, ${p.flooded} flooded: ${p.routers[i]}'s link dropped only ${Math.round(share * 100)}% of what arrived: not saturated`,
          );
    }
  }
  for (const [mode, ps] of [
    ['spread', r.tcp.spread],
    ['single', r.tcp.single],
  ] as const) {
    const base = ps.find((p) => p.flooded === 0);
    if (!base || base.mbps < 0.5)
      problems.push(
        `tcp ${mode}: with no attack the download made ${base?.mbps ?? 0} Mb/s${base?.error ? ` (${base.error})` : ''}: the path is broken or the machine overloaded`,
      );
  }
  if (!d.tableRemoved) problems.push('arrow protect left its nft table behind');
  return {
    ...r,
    targets,
    valid: problems.length === 0,
    invalidReason: problems.length ? problems.join('; ') : null,
  };
}

export async function report(o: DosOptions, r: DosResult): Promise<void> {
  const pct = (x: number): string => `${Math.round(x * 1000) / 10}%`;
  const row = (mode: string, p: DosPhase): string =>
    `| ${mode} | ${p.flooded} ${p.routers.length ? `(${p.routers.join(', ')})` : ''} | ${pct(p.goodput)} | ${pct(p.onsetGoodput)} | ${p.received} / ${p.sent} | ${p.floodPps.join(', ') || '–'} | ${p.linkDropShare.map(pct).join(', ') || '–'} | ${p.dropOutMs.map((x) => (x === null ? 'never' : `${x} ms`)).join(', ') || '–'} |`;
  const t = r.targets;
  const d = r.destination;
  const md = `# Experiment \`dos\`: spreading over ingress points against a flood (ARROW §3.5, Phalanx in §4.4)

\`arrow lab experiment dos --seconds ${r.seconds}\`. ${machineLine()}

**The paper.** ARROW §3.5 (seed 003): "ARROW paths can be set up to resemble swarms of packet
forwarders [Phalanx] … attackers have to overwhelm all provided ingress points simultaneously in
order to stop traffic to the destination. If the destination endpoint's IP address is kept secret
… the endpoint's ISP can drop all non-ARROW traffic." §4.4 (seed 001): Phalanx clients
"interleave packets to the server through a predetermined sequence of bandwidth-limiting proxy
nodes (called mailboxes) … Since the attacker does not know this sequence, they can affect only a
fraction of the traffic." The paper gives no figure for it.

**Here.** A netns lab: ISPs alpha (ingress PoPs in1, in2) and beta (in3, in4), one router each,
every ingress PoP's circuit converging on its ISP's \`dst\` PoP, which delivers to the destination's
application (a python3 UDP echo server) on the server host. The destination runs \`arrow protect\`
(an nftables table that lets in only its two egress routers). Each ingress router's access link
carries ${r.linkKbit / 1000} Mb/s with a queue of ${LINK_QUEUE} packets (tc tbf with a pfifo under it, on the lab bridge's side; the
legitimate flow needs ~1.2 Mb/s, so one ingress carries all of it). A python3 client sends ${r.legitPps} datagrams/s of 64 bytes to \`arrow forward\`
on the client host, which carries them over **one** ingress (\`single\`) or spreads them over
all **${r.k}** (\`--spread\`: SipHash-2-4 of each datagram's sequence number under a secret key picks
the ingress; an overloaded or failing one leaves the sequence). The attacker host floods one, then
two ingress routers with ${FLOOD_SIZE}-byte datagrams.

**Calibration (this run).** One flooding process sent ${c(r.calibration.attackerPps)}/s here; an access link carried
${c(r.calibration.linkPps)} of its datagrams/s; each flooded link got **${c(r.calibration.floodPps)}/s**, ${Math.round((r.calibration.floodPps / Math.max(1, r.calibration.linkPps)) * 10) / 10}x what it carries.

Goodput is what the application received of what was sent in the window, i.e. the share of the
no-attack rate (the flow is sent at a fixed rate). "steady" starts ${SETTLE_S} s after the flood began;
"with onset" is the whole flood.

| mode | flooded ingresses | goodput (steady) | with onset | received / sent | flood /s per link | link queue dropped | left the sequence after |
|---|---|---|---|---|---|---|---|
${r.spread.map((p) => row('spread', p)).join('\n')}
${r.single.map((p) => row('single', p)).join('\n')}

![goodput against flooded ingresses](dos.png)

**Targets.**
${Object.entries(t)
  .map(
    ([k, v]) =>
      `- \`${k}\`: ${typeof v.value === 'number' && v.value <= 1 && k !== 'noForeignPacket' ? pct(v.value) : v.value}, target ${v.target}: **${v.met ? 'met' : 'not met'}**`,
  )
  .join('\n')}

**The destination.** \`arrow protect\` accepted ${c(d.nft.arrow.packets)} packets from the egress routers
(${d.egress.join(', ')}) and dropped ${c(d.nft.dropped.packets)}; at the end the attacker sent ${c(d.directFloodSent)} datagrams
straight to the destination's address (its application port and port 22), as if the address had
leaked. The application received ${d.appForeign} datagrams that were not the legitimate flow, and heard
only from ${Object.entries(d.appSources)
    .map(([s, n]) => `${s} (${c(n)})`)
    .join(
      ', ',
    )}. The nft table was ${d.tableRemoved ? 'removed' : '**not** removed'} when \`arrow protect\` exited.

**Run: ${r.valid ? 'valid' : `INVALID: ${r.invalidReason}`}.** A run is invalid when the flood did not reach ${MIN_FLOOD_FACTOR}x a
link's capacity or its rate, when a flooded link's queue dropped under half of what arrived (not
saturated), when the sender fell under 90% of its rate (the machine was overloaded), when under
97% arrived with no attack, or when the nft table was left behind.

**Reading it.** Without spreading, the flow enters by one ingress; a flood on it leaves the
flow what the saturated link lets through. The failover of \`arrow forward\` cannot help: the
ingress router is alive (it acks now and then) and there is no other ingress to go to. With
spreading, a flooded ingress loses its probes and its answers, leaves the sequence within
the detection time, and the others carry its share: the steady goodput stays near 100%, above the
(K − flooded)/K the paper's argument promises, since that bound assumes the flooded share is lost. The "with onset" column is what the detection
costs. Spreading raises the attack's price, it does not make it impossible: an attacker who floods
all K access links stops the flow, as the paper says; ingress points at several ISPs (two here)
make that a larger and more visible attack.

**A TCP download.** Then the same floods on a download in progress: iperf3 -R (the server sends)
between the client's and the server's \`arrow endpoint --tun\` (the Node data path), through the same four
ingress points and their return paths, each circuit bought at ${CIRCUIT_MBPS} Mb/s. With spreading, both
endpoints spread (\`--spread\`: the client's ACKs over the four forward circuits, the server's data over the
four return paths, each leaving the sequence when its probes are lost); without, both use the one
path of ingress 0. Goodput over the same measured window as above, as a share of the same mode's
download with no attack:

| mode | flooded ingresses | Mb/s | share | (K − flooded)/K |
|---|---|---|---|---|
${[...r.tcp.spread.map((p) => ['spread', p] as const), ...r.tcp.single.map((p) => ['single', p] as const)]
  .map(
    ([mode, p]) =>
      `| ${mode} | ${p.flooded} ${p.routers.length ? `(${p.routers.join(', ')})` : ''} | ${p.mbps}${p.error ? ` (${p.error})` : ''} | ${pct(p.share)} | ${mode === 'spread' ? pct((r.k - p.flooded) / r.k) : '–'} |`,
  )
  .join('\n')}

Unlike the datagram flow, which fits in one circuit, the download fills every circuit it may use:
its goodput with no attack is about K times a circuit's bought rate (policing holds each to
${CIRCUIT_MBPS} Mb/s), so with f ingress points out of the sequence its ceiling is (K − f)/K, the bound itself,
less what the onset costs (TCP halves its window on the losses before the flooded ingress leaves the
sequence) and the reordering of one connection's segments over paths of different queueing delay.
Without spreading the download stops: every segment or every ACK crosses the saturated link.

**Not measured.** Policing (docs/wire.md) is not exercised by this flood, which carries no valid
authenticator and is dropped at the saturated link or as unknown at the ingress router. A flood
inside one circuit (an insider with its authenticator, e.g. a client flooding its own mailbox) is
policed at that circuit's bought rate: test/mailboxes.test.ts and test/policing-lab.test.ts show it.
TCP spreading runs on the endpoints' Node data path; their kernel path sends on one circuit.
`;
  writeReport(o.out, 'dos', md, await renderChart(dosChart(r)), r);
}

const c = (n: number): string => n.toLocaleString('en-US');

/** The plot: goodput share against flooded ingresses, with and without spreading, and the (K − f)/K line. */
export function dosChart(r: DosResult): Chart {
  const pts = (ps: DosPhase[]): { x: number; y: number }[] =>
    ps.map((p) => ({ x: p.flooded, y: p.goodput * 100 }));
  const ticks = [...new Set(r.spread.map((p) => p.flooded))];
  return {
    title: `dos: legitimate goodput under a flood of ${ticks.at(-1)} of K = ${r.k} ingress points`,
    subtitle: `${r.legitPps} datagrams/s; each flooded ${r.linkKbit / 1000} Mb/s access link gets ${r.calibration.floodPps} datagrams/s of ${FLOOD_SIZE} B${r.valid ? '' : ' — INVALID run'}`,
    panels: [
      {
        title: '',
        x: { title: 'flooded ingress points', ticks },
        y: { title: 'goodput, share of the no-attack rate', unit: '%' },
        series: [
          {
            label: 'spread over K (arrow forward --spread)',
            color: [40, 120, 200],
            marker: 'circle',
            width: 3,
            points: pts(r.spread),
          },
          {
            label: "spread, the flood's onset included",
            color: [40, 120, 200],
            marker: 'circle',
            dash: [4, 3],
            points: r.spread.map((p) => ({ x: p.flooded, y: p.onsetGoodput * 100 })),
          },
          {
            label: 'one ingress (no spreading)',
            color: [200, 40, 40],
            marker: 'square',
            width: 3,
            points: pts(r.single),
          },
          {
            label: 'target (K − flooded) / K',
            color: [150, 150, 150],
            dash: [6, 4],
            points: ticks.map((f) => ({ x: f, y: ((r.k - f) / r.k) * 100 })),
          },
        ],
      },
    ],
  };
}
