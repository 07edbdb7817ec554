/**
 * The kernel rows of `arrow bench forward` (docs/performance.md): datagrams per second through
 * routers whose DATA never leaves the kernel, on veth between network namespaces, against this
 * machine's ceiling measured in the same run.
 *
 *              g0 ---- a0  A (router a, XDP on a0)  a1 ---- b0  B (router b, XDP on b0)
 *   G (gen)    g1 ---- a3  A (bench_forward on a3)                                b1 ---- k0
 *              g2 ---------------------------------------------------------- k2   K (sink)
 *                          A a2 ------------------------------------------------ k1
 *
 *   kernelGenerator  G -> K directly: the generator's own rate into the sink.
 *   kernelGeneratorTag  the same, the generator computing a tag per frame as for kernel1Tag.
 *   kernelBaseline   G -> A (bench_forward: route lookup, MACs, redirect; no ARROW) -> K.
 *   kernel1          G -> router a (one ARROW hop, in XDP) -> K.
 *   kernel2          G -> router a -> router b -> K.
 *   kernel1Tag       G -> router a, a circuit that requires tags (SipHash-2-4 per packet) -> K.
 *
 * The routers are real `arrow router` processes with `--dataplane kernel`, each with its own
 * SQLite store; the generator is arrow-udpgen --xdp (an XDP program run in live-frames mode, which
 * numbers, tags and sends each frame in the kernel: src/bench/udpgen.c); the sink is an XDP program
 * that counts and drops (bench.bpf.c). Every link is a veth pair with XDP in the driver (native).
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { startComponent, stopComponent, type Managed } from '../lab/process.js';
import type { RouterConfigInput } from '../router/config.js';
import { ADDON, OBJECT, STAT_NAMES } from '../router/kernel.js';
import type { CircuitInput } from '../store/circuit.js';
import { SqliteStore } from '../store/sqlite.js';
import { newAuthenticator } from '../wire/authenticator.js';
import { encode, OFFSET_TAG, PacketType, TAG_LENGTH } from '../wire/header.js';
import { median, round } from '../util/stats.js';
import { machinePercent, sampleCpu } from '../util/cpu.js';
import { MAX_RUN_SPREAD, MIN_PACKETS } from './report.js';
import { Checks, type Validity } from './validity.js';
import { BENCH_OBJECT, type SinkCount } from './xdp-holder.js';

export const UDPGEN = fileURLToPath(new URL('../../native/arrow-udpgen', import.meta.url));

export const KERNEL_ROWS = [
  'kernelGenerator',
  'kernelGeneratorTag',
  'kernelBaseline',
  'kernel1',
  'kernel2',
  'kernel1Tag',
] as const;
export type KernelRowName = (typeof KERNEL_ROWS)[number];

/** The issue's targets on a 2-core machine (docs/performance.md). */
export const KERNEL_TARGETS = { ratio1: 0.7, pps1: 1_000_000, ratioTag: 0.6 } as const;

/** The generator's time before the window (queues and caches settle), and after it. */
const WARMUP_S = 0.3;
const TAIL_S = 0.2;
/** A row carried mostly by the Node path measured the wrong thing: the ingress router's kernel must have sent this share. */
const MIN_KERNEL_SHARE = 0.95;
/** The generator alone must be this much faster than the fastest forwarder, or it is what was measured. */
const MIN_GENERATOR_LEAD = 1.2;
/** Idle over the machine before the rows, percent of one core summed over cores: less means other work is running. */
const MIN_QUIET_IDLE_PCT_PER_CPU = 85;
/** Routers publish stats this often; the bench waits a few intervals for the last run's. */
const STATS_INTERVAL_MS = 100;

export interface KernelRun {
  pps: number;
  mbps: number;
  /** The generator's rate over its whole blast. */
  sentPps: number;
  packets: number;
  /** Of the datagrams the sink counted over the whole blast, the share the ingress router sent in the kernel (ARROW rows). */
  kernelShare?: number;
}

export interface KernelPoint extends Validity {
  pps: number;
  mbps: number;
  sentPps: number;
  perRun: KernelRun[];
}

export type KernelRow = Record<string, KernelPoint>;

/** The kernel rows; flattened into `arrow bench forward --json` beside the Node rows. */
export interface KernelRows {
  kernelAttach: 'xdp-native';
  kernelGenerator: KernelRow;
  kernelGeneratorTag: KernelRow;
  kernelBaseline: KernelRow;
  kernel1: KernelRow;
  kernel2: KernelRow;
  kernel1Tag: KernelRow;
  /** kernel1 / kernelBaseline pps at 64 B (or the smallest size measured). */
  kernelRatio1: number;
  /** kernel1Tag / kernelBaseline pps at the same size. */
  kernelRatioTag: number;
  kernelRatios: Record<string, { kernel1: number; kernel2: number; kernel1Tag: number }>;
  /**
   * Nanoseconds each forwarder adds per packet, per size: the generator, the forwarder and the sink
   * all run on the CPU that sends (veth hands a frame to its peer's XDP in the same softirq), so a
   * row's time per packet minus its generator's (kernelGenerator, or kernelGeneratorTag for the
   * tagged row) is what the forwarder cost. `kernel2` is per router.
   */
  kernelNsPerPacket: Record<
    string,
    { kernelBaseline: number; kernel1: number; kernel2: number; kernel1Tag: number }
  >;
  kernelTargets: { ratio1Met: boolean; pps1Met: boolean; ratioTagMet: boolean; size: number };
  /** What router a's kernel counters said over all runs: drops of honest traffic would be a bug. */
  kernelRouterCounters: { dropBadTag: number; dropReplay: number; dropOverRate: number; passedUp: number };
}

export type KernelReport = KernelRows & Validity;

/** Why the kernel rows cannot run here, or undefined. */
export function kernelRowsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'the kernel rows need Linux';
  if (process.getuid?.() !== 0) return 'the kernel rows need root (network namespaces, XDP)';
  for (const f of [ADDON, OBJECT, BENCH_OBJECT, UDPGEN])
    if (!existsSync(f)) return `${f} is not built: npm run build needs clang, libbpf-dev and a C compiler`;
  return undefined;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function inNs(ns: string, ...cmd: string[]): void {
  execFileSync('ip', ['netns', 'exec', ns, ...cmd], { stdio: ['ignore', 'ignore', 'pipe'] });
}

const ADDR = {
  g0: '10.77.1.2',
  a0: '10.77.1.1',
  a1: '10.77.2.1',
  b0: '10.77.2.2',
  a2: '10.77.3.1',
  k1: '10.77.3.2',
  b1: '10.77.4.1',
  k0: '10.77.4.2',
  g2: '10.77.5.1',
  k2: '10.77.5.2',
  g1: '10.77.6.2',
  a3: '10.77.6.1',
} as const;
const LINKS: [string, string][] = [
  ['g0', 'a0'],
  ['a1', 'b0'],
  ['a2', 'k1'],
  ['b1', 'k0'],
  ['g2', 'k2'],
  ['g1', 'a3'],
];
const ROUTER_PORT = 4000;
const SINK_PORT = 9000;

interface Row {
  name: KernelRowName;
  /** The generator's interface the row's frames leave by, and the interface at its other end. */
  dev: 'g0' | 'g1' | 'g2';
  peer: 'a0' | 'a3' | 'k2';
  host: string;
  port: number;
  /** The ingress router's store, whose published kernel counters show who carried the row. */
  router?: 'a';
  auth?: Buffer;
  tagKey?: Buffer;
}

/** The namespaces, the routers and the XDP holders; everything goes away in `stop`, however the run ends. */
class KernelRig {
  readonly dir = mkdtempSync(join(tmpdir(), 'arrow-bench-kernel-'));
  private readonly prefix = `arrowkb${process.pid}`;
  readonly ns = { g: `${this.prefix}g`, a: `${this.prefix}a`, b: `${this.prefix}b`, k: `${this.prefix}k` };
  private readonly procs: Managed[] = [];
  private sink: Managed | undefined;
  private nsMade: string[] = [];
  private nextId = 1;
  private generator: ReturnType<typeof spawn> | undefined;

  mac(dev: string): string {
    const out = execFileSync('ip', ['-n', this.nsOf(dev), '-j', 'link', 'show', 'dev', dev], {
      encoding: 'utf8',
    });
    const address = (JSON.parse(out) as { address?: string }[])[0]?.address;
    if (!address) throw new Error(`ip link show ${dev}: no MAC address`);
    return address;
  }

  private nsOf(dev: string): string {
    return this.ns[dev[0] as 'g' | 'a' | 'b' | 'k'];
  }

  async boot(): Promise<Row[]> {
    for (const ns of Object.values(this.ns)) {
      ip('netns', 'add', ns);
      this.nsMade.push(ns);
    }
    for (const [x, y] of LINKS)
      ip('link', 'add', x, 'netns', this.nsOf(x), 'type', 'veth', 'peer', 'name', y, 'netns', this.nsOf(y));
    for (const [dev, addr] of Object.entries(ADDR)) {
      ip('-n', this.nsOf(dev), 'addr', 'add', `${addr}/24`, 'dev', dev);
      ip('-n', this.nsOf(dev), 'link', 'set', dev, 'up');
    }
    for (const ns of Object.values(this.ns)) ip('-n', ns, 'link', 'set', 'lo', 'up');
    // Permanent neighbours on both ends of every link: the route lookup in XDP passes a packet up
    // without one, the sink's XDP drops the ARP that would resolve it, and traffic that never
    // leaves XDP never refreshes an entry the kernel would then expire.
    for (const [x, y] of LINKS) {
      ip(
        '-n',
        this.nsOf(x),
        'neigh',
        'replace',
        ADDR[y as keyof typeof ADDR],
        'lladdr',
        this.mac(y),
        'dev',
        x,
        'nud',
        'permanent',
      );
      ip(
        '-n',
        this.nsOf(y),
        'neigh',
        'replace',
        ADDR[x as keyof typeof ADDR],
        'lladdr',
        this.mac(x),
        'dev',
        y,
        'nud',
        'permanent',
      );
    }
    for (const ns of [this.ns.a, this.ns.b]) inNs(ns, 'sysctl', '-qw', 'net.ipv4.conf.all.forwarding=1');
    // The baseline's datagrams are addressed to the sink and routed through A's a3.
    ip('-n', this.ns.g, 'route', 'add', '10.77.3.0/24', 'via', ADDR.a3);

    const sinkAuth = newAuthenticator();
    const auth1 = newAuthenticator();
    const auth2 = newAuthenticator();
    const authTag = newAuthenticator();
    const authB = newAuthenticator();
    const tagKey = newAuthenticator(); // 128 random bits, the same shape as a tag key
    const sinkAt = (host: string): string => `${host}:${SINK_PORT}`;
    await this.startRouter('b', ADDR.b0, [forwardCircuit(authB, sinkAt(ADDR.k0), sinkAuth)]);
    await this.startRouter('a', ADDR.a0, [
      forwardCircuit(auth1, sinkAt(ADDR.k1), sinkAuth),
      forwardCircuit(auth2, `${ADDR.b0}:${ROUTER_PORT}`, authB),
      { ...forwardCircuit(authTag, sinkAt(ADDR.k1), sinkAuth), tagKey },
    ]);
    this.sink = await this.holder('sink', this.ns.k, ['k0', 'k1', 'k2']);
    await this.holder('forward', this.ns.a, ['a3']);

    const hex = (a: string): Buffer => Buffer.from(a, 'hex');
    return [
      { name: 'kernelGenerator', dev: 'g2', peer: 'k2', host: ADDR.k2, port: SINK_PORT },
      {
        name: 'kernelGeneratorTag',
        dev: 'g2',
        peer: 'k2',
        host: ADDR.k2,
        port: SINK_PORT,
        auth: hex(authTag),
        tagKey: hex(tagKey),
      },
      { name: 'kernelBaseline', dev: 'g1', peer: 'a3', host: ADDR.k1, port: SINK_PORT },
      {
        name: 'kernel1',
        dev: 'g0',
        peer: 'a0',
        host: ADDR.a0,
        port: ROUTER_PORT,
        router: 'a',
        auth: hex(auth1),
      },
      {
        name: 'kernel2',
        dev: 'g0',
        peer: 'a0',
        host: ADDR.a0,
        port: ROUTER_PORT,
        router: 'a',
        auth: hex(auth2),
      },
      {
        name: 'kernel1Tag',
        dev: 'g0',
        peer: 'a0',
        host: ADDR.a0,
        port: ROUTER_PORT,
        router: 'a',
        auth: hex(authTag),
        tagKey: hex(tagKey),
      },
    ];
  }

  private async startRouter(name: 'a' | 'b', host: string, circuits: CircuitInput[]): Promise<void> {
    const storePath = join(this.dir, `router-${name}.db`);
    const store = new SqliteStore(storePath);
    try {
      for (const c of circuits) await store.create(c);
    } finally {
      await store.close();
    }
    const config: RouterConfigInput = {
      isp: 'bench',
      pop: 'p',
      name,
      listen: `${host}:${ROUTER_PORT}`,
      store: { kind: 'sqlite', path: storePath },
      statsIntervalMs: STATS_INTERVAL_MS,
      dataplane: 'kernel',
      kernel: { attach: 'xdp-native' },
    };
    const configPath = join(this.dir, `router-${name}.json`);
    writeFileSync(configPath, JSON.stringify(config, null, 2));
    this.procs.push(
      await startComponent(['router', '--config', configPath], join(this.dir, `router-${name}.log`), 20_000, {
        netns: name === 'a' ? this.ns.a : this.ns.b,
      }),
    );
  }

  private async holder(program: 'sink' | 'forward', ns: string, ifaces: string[]): Promise<Managed> {
    const m = await startComponent(
      ['bench-xdp', '--program', program, '--interfaces', ifaces.join(',')],
      join(this.dir, `xdp-${program}.log`),
      20_000,
      { netns: ns },
    );
    this.procs.push(m);
    return m;
  }

  /** The sink's counts so far. */
  async count(): Promise<{ packets: number; at: number }> {
    const proc = this.sink!.proc;
    const id = this.nextId++;
    const reply = await new Promise<SinkCount>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the XDP sink did not answer within 5 s')), 5000);
      const onMessage = (m: unknown): void => {
        const r = m as SinkCount;
        if (r?.op !== 'count' || r.id !== id) return;
        clearTimeout(timer);
        proc.off('message', onMessage);
        resolve(r);
      };
      proc.on('message', onMessage);
      proc.send({ op: 'count', id });
    });
    return { packets: reply.packets, at: performance.now() };
  }

  /** The ingress router a's kernel counters, as it last published them. */
  async routerCounters(): Promise<Record<string, number>> {
    await sleep(3 * STATS_INTERVAL_MS);
    const store = new SqliteStore(join(this.dir, 'router-a.db'));
    try {
      const stats = (await store.listRouterStats()).find((s) => s.router === 'a');
      return { ...(stats?.dataplane?.kernel ?? {}) } as Record<string, number>;
    } finally {
      await store.close();
    }
  }

  /** The next sequence number of each row's circuit: a replay window refuses numbers it has seen. */
  private readonly sequences = new Map<KernelRowName, bigint>();

  /** One run: the generator blasts for warm-up + window + tail; the sink is read at the window's edges. */
  async measure(row: Row, size: number, durationS: number): Promise<KernelRun> {
    const arrow = datagram(size, row.auth ?? Buffer.alloc(16), row.tagKey !== undefined);
    const frame = ethernetFrame({
      srcMac: this.mac(row.dev),
      dstMac: this.mac(row.peer),
      src: ADDR[row.dev],
      dst: row.host,
      srcPort: 40000,
      dstPort: row.port,
      payload: arrow,
    });
    const first = this.sequences.get(row.name) ?? 1n;
    const args = [
      '--xdp',
      BENCH_OBJECT,
      row.dev,
      String(WARMUP_S + durationS + TAIL_S),
      String(first),
      frame.toString('hex'),
    ];
    if (row.tagKey) args.push(row.tagKey.toString('hex'));
    const before = row.router ? await this.routerCounters() : undefined;
    const total0 = await this.count();
    const gen = spawn('ip', ['netns', 'exec', this.ns.g, UDPGEN, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.generator = gen;
    let out = '';
    let err = '';
    gen.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    gen.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => gen.once('exit', resolve));
    await sleep(WARMUP_S * 1000);
    const c0 = await this.count();
    await sleep(durationS * 1000);
    const c1 = await this.count();
    const code = await exited;
    this.generator = undefined;
    if (code !== 0) throw new Error(`arrow-udpgen exited ${code}: ${err.trim()}`);
    const blast = JSON.parse(out) as { sent: number; errors: number; seconds: number; nextSequence: number };
    this.sequences.set(row.name, BigInt(blast.nextSequence));
    await sleep(50);
    const total1 = await this.count();
    const packets = c1.packets - c0.packets;
    const pps = packets / ((c1.at - c0.at) / 1000);
    const run: KernelRun = {
      pps: Math.round(pps),
      mbps: round((size * 8 * pps) / 1e6, 1),
      sentPps: Math.round(blast.sent / blast.seconds),
      packets,
    };
    if (before) {
      const after = await this.routerCounters();
      const sent = (k: Record<string, number>): number => (k.tx ?? 0) + (k.redirect ?? 0);
      const sunk = total1.packets - total0.packets;
      run.kernelShare = sunk > 0 ? round(Math.min(1, (sent(after) - sent(before)) / sunk), 4) : 0;
    }
    return run;
  }

  async stop(opts: { keepDir: boolean }): Promise<void> {
    this.generator?.kill('SIGKILL');
    await Promise.all(this.procs.map((m) => stopComponent(m.proc)));
    for (const ns of this.nsMade) {
      try {
        ip('netns', 'del', ns);
      } catch (err) {
        process.stderr.write(`arrow bench forward: removing namespace ${ns}: ${(err as Error).message}\n`);
      }
    }
    if (!opts.keepDir) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** An Ethernet frame carrying one IPv4/UDP datagram (UDP checksum 0, allowed on IPv4). */
export function ethernetFrame(o: {
  srcMac: string;
  dstMac: string;
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  payload: Buffer;
}): Buffer {
  const mac = (m: string): Buffer => Buffer.from(m.replaceAll(':', ''), 'hex');
  const ipv4 = (a: string): Buffer => Buffer.from(a.split('.').map(Number));
  const f = Buffer.alloc(14 + 20 + 8 + o.payload.length);
  mac(o.dstMac).copy(f, 0);
  mac(o.srcMac).copy(f, 6);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x45; // IPv4, 20-byte header
  f.writeUInt16BE(20 + 8 + o.payload.length, 16);
  f[22] = 64; // TTL
  f[23] = 17; // UDP
  ipv4(o.src).copy(f, 26);
  ipv4(o.dst).copy(f, 30);
  let sum = 0;
  for (let i = 14; i < 34; i += 2) sum += f.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  f.writeUInt16BE(~sum & 0xffff, 24);
  f.writeUInt16BE(o.srcPort, 34);
  f.writeUInt16BE(o.dstPort, 36);
  f.writeUInt16BE(8 + o.payload.length, 38);
  o.payload.copy(f, 42);
  return f;
}

/** A DATA datagram of `size` bytes on circuit `auth`, with room for one tag when `tagged`. */
export function datagram(size: number, auth: Buffer, tagged: boolean): Buffer {
  const fixed = tagged ? OFFSET_TAG + TAG_LENGTH : OFFSET_TAG;
  if (size < fixed) throw new Error(`a ${tagged ? 'tagged ' : ''}datagram needs at least ${fixed} bytes`);
  return encode({
    type: PacketType.Data,
    hopLimit: 16,
    authenticator: auth,
    sequence: 1n,
    tags: tagged ? [Buffer.alloc(TAG_LENGTH)] : undefined,
    payload: Buffer.alloc(size - fixed, 0x61),
  });
}

function forwardCircuit(auth: string, next: string, nextAuth: string): CircuitInput {
  return {
    auth,
    owner: 'bench',
    ingressPop: 'p',
    egressPop: 'p',
    bandwidthMbps: 100_000,
    internalAuth: newAuthenticator(),
    internalRouters: [],
    action: { kind: 'forward', next: { addresses: [next], auth: nextAuth } },
  };
}

function point(runs: KernelRun[], arrow: boolean): KernelPoint {
  const checks = new Checks().check(runs.length > 0, 'no run');
  for (const [i, r] of runs.entries()) {
    checks.check(r.packets >= MIN_PACKETS, `run ${i + 1}: ${r.packets} datagrams counted (< ${MIN_PACKETS})`);
    if (arrow)
      checks.check(
        (r.kernelShare ?? 0) >= MIN_KERNEL_SHARE,
        `run ${i + 1}: the router's kernel sent ${Math.round((r.kernelShare ?? 0) * 100)}% of what the sink got (< ${MIN_KERNEL_SHARE * 100}%): the Node path carried the rest`,
      );
  }
  const pps = runs.map((r) => r.pps);
  if (pps.length > 1) {
    const spread = Math.max(...pps) / Math.max(1, Math.min(...pps));
    checks.check(spread <= MAX_RUN_SPREAD, `runs ${round(spread, 2)}x apart (> ${MAX_RUN_SPREAD}x)`);
  }
  return {
    ...checks.result,
    pps: Math.round(median(pps)),
    mbps: round(median(runs.map((r) => r.mbps)), 1),
    sentPps: Math.round(median(runs.map((r) => r.sentPps))),
    perRun: runs,
  };
}

export async function runKernelRows(opts: {
  sizes: number[];
  runs: number;
  durationS: number;
  progress?: (line: string) => void;
}): Promise<KernelReport> {
  const small = opts.sizes.filter((n) => n < OFFSET_TAG + TAG_LENGTH);
  if (small.length)
    throw new Error(
      `the kernel rows need datagrams of ${OFFSET_TAG + TAG_LENGTH} bytes or more (ARROW header and a tag): not ${small.join(', ')} (or --kernel off)`,
    );
  const rig = new KernelRig();
  const onSigint = (): void => {
    void rig.stop({ keepDir: false }).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSigint);
  let failed = true;
  try {
    const rows = await rig.boot();
    // A machine already busy measures its other work: a short look before the rows.
    const q0 = sampleCpu([]);
    await sleep(500);
    const quiet = machinePercent(q0, sampleCpu([]));
    const cpus = availableParallelism();
    const before = await rig.routerCounters();
    const measured = new Map<KernelRowName, Map<number, KernelRun[]>>(KERNEL_ROWS.map((n) => [n, new Map()]));
    for (const size of opts.sizes)
      for (let run = 1; run <= opts.runs; run++)
        for (const row of rows) {
          const r = await rig.measure(row, size, opts.durationS);
          const list = measured.get(row.name)!.get(size) ?? [];
          list.push(r);
          measured.get(row.name)!.set(size, list);
          opts.progress?.(
            `${row.name.padEnd(15)} ${String(size).padStart(5)} B  run ${run}/${opts.runs}: ${r.pps} pps` +
              ` (generator ${r.sentPps}${r.kernelShare !== undefined ? `, kernel share ${r.kernelShare}` : ''})`,
          );
        }
    const after = await rig.routerCounters();
    failed = false;
    const delta = (k: string): number => (after[k] ?? 0) - (before[k] ?? 0);
    const byRow = (name: KernelRowName): KernelRow => {
      const out: KernelRow = {};
      for (const size of opts.sizes)
        out[String(size)] = point(measured.get(name)!.get(size) ?? [], /\d/.test(name));
      return out;
    };
    const report = {
      kernelGenerator: byRow('kernelGenerator'),
      kernelGeneratorTag: byRow('kernelGeneratorTag'),
      kernelBaseline: byRow('kernelBaseline'),
      kernel1: byRow('kernel1'),
      kernel2: byRow('kernel2'),
      kernel1Tag: byRow('kernel1Tag'),
    };
    const ratios: KernelReport['kernelRatios'] = {};
    for (const size of opts.sizes) {
      const k = String(size);
      const base = report.kernelBaseline[k]!.pps;
      ratios[k] = {
        kernel1: round(report.kernel1[k]!.pps / base, 3),
        kernel2: round(report.kernel2[k]!.pps / base, 3),
        kernel1Tag: round(report.kernel1Tag[k]!.pps / base, 3),
      };
    }
    const nsPer: KernelReport['kernelNsPerPacket'] = {};
    for (const size of opts.sizes) {
      const k = String(size);
      const ns = (row: KernelRowName): number => 1e9 / Math.max(1, report[row][k]!.pps);
      nsPer[k] = {
        kernelBaseline: Math.round(ns('kernelBaseline') - ns('kernelGenerator')),
        kernel1: Math.round(ns('kernel1') - ns('kernelGenerator')),
        kernel2: Math.round((ns('kernel2') - ns('kernelGenerator')) / 2),
        kernel1Tag: Math.round(ns('kernel1Tag') - ns('kernelGeneratorTag')),
      };
    }
    const head = Math.min(...opts.sizes);
    const h = ratios[String(head)]!;
    const routerCounters = {
      dropBadTag: delta('dropBadTag'),
      dropReplay: delta('dropReplay'),
      dropOverRate: delta('dropOverRate'),
      passedUp: STAT_NAMES.filter((n) => n.startsWith('pass'))
        .map(delta)
        .reduce((a, b) => a + b, 0),
    };
    const checks = new Checks()
      .check(
        (quiet?.idle ?? 0) >= MIN_QUIET_IDLE_PCT_PER_CPU * cpus,
        `the machine was busy before the rows (idle ${Math.round(quiet?.idle ?? 0)}% of ${cpus} core(s))`,
      )
      .check(
        routerCounters.dropBadTag + routerCounters.dropReplay + routerCounters.dropOverRate === 0,
        `the router dropped honest traffic (bad-tag ${routerCounters.dropBadTag}, replay ${routerCounters.dropReplay}, over-rate ${routerCounters.dropOverRate})`,
      );
    for (const size of opts.sizes) {
      const k = String(size);
      const gen = report.kernelGenerator[k]!.pps;
      const base = report.kernelBaseline[k]!.pps;
      checks.check(
        gen >= MIN_GENERATOR_LEAD * base,
        `${size} B: the generator alone (${gen} pps) is not ${MIN_GENERATOR_LEAD}x the baseline (${base} pps): it, not the forwarders, set the rates`,
      );
    }
    for (const name of KERNEL_ROWS)
      for (const size of opts.sizes) {
        const p = report[name][String(size)]!;
        checks.check(p.valid, `${name} ${size} B: ${p.invalidReason ?? ''}`);
      }
    // Each row's reference (the generator alone, or computing tags) bounds it from above: a row that
    // ran faster than its own reference means the machine's speed moved between rows (steal on a
    // VM; CI saw kernel1Tag 1400 B "add" -5818 ns), so no difference of this run is a cost.
    for (const size of opts.sizes)
      for (const [row, ns] of Object.entries(nsPer[String(size)]!))
        checks.check(
          ns > 0,
          `${size} B: ${row} ran faster than its reference (${ns} ns per packet): the machine's speed moved between rows`,
        );
    return {
      ...checks.result,
      kernelAttach: 'xdp-native',
      ...report,
      kernelRatio1: h.kernel1,
      kernelRatioTag: h.kernel1Tag,
      kernelRatios: ratios,
      kernelNsPerPacket: nsPer,
      kernelTargets: {
        size: head,
        ratio1Met: h.kernel1 >= KERNEL_TARGETS.ratio1,
        pps1Met: report.kernel1[String(head)]!.pps >= KERNEL_TARGETS.pps1,
        ratioTagMet: h.kernel1Tag >= KERNEL_TARGETS.ratioTag,
      },
      kernelRouterCounters: routerCounters,
    };
  } finally {
    process.off('SIGINT', onSigint);
    await rig.stop({ keepDir: failed });
    if (failed) process.stderr.write(`arrow bench forward: the kernel rows' logs are in ${rig.dir}\n`);
  }
}

/** The kernel rows as text. */
export function formatKernelRows(r: KernelReport, sizes: number[]): string {
  const int = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
  const lines = [
    `kernel rows (XDP native on veth between namespaces; generator arrow-udpgen --xdp, sink an XDP counter):`,
    '  kernelGenerator  generator -> sink            kernelBaseline  generator -> XDP route+redirect -> sink',
    '  kernelGeneratorTag  generator computing a tag per frame -> sink',
    '  kernel1          generator -> router -> sink  kernel2         generator -> router -> router -> sink',
    '  kernel1Tag       generator -> router checking a SipHash tag per packet -> sink',
  ];
  for (const size of sizes)
    for (const name of KERNEL_ROWS) {
      const p = r[name][String(size)]!;
      const added = (r.kernelNsPerPacket[String(size)] as Record<string, number | undefined>)[name];
      lines.push(
        `  ${String(size).padStart(5)} B  ${name.padEnd(18)} ` +
          (p.valid
            ? `${int.format(p.pps).padStart(11)} pps ${p.mbps.toFixed(1).padStart(9)} Mb/s` +
              (added === undefined
                ? ''
                : `  ${added} ns/packet ${name === 'kernel2' ? 'per router' : 'added'}`)
            : `INVALID: ${p.invalidReason ?? ''}`),
      );
    }
  const t = r.kernelTargets;
  lines.push(
    `  at ${t.size} B: kernelRatio1 ${r.kernelRatio1.toFixed(3)} (target >= ${KERNEL_TARGETS.ratio1}: ${t.ratio1Met ? 'met' : 'missed'}), ` +
      `kernel1 ${int.format(r.kernel1[String(t.size)]!.pps)} pps (target >= ${int.format(KERNEL_TARGETS.pps1)}: ${t.pps1Met ? 'met' : 'missed'}), ` +
      `kernelRatioTag ${r.kernelRatioTag.toFixed(3)} (target >= ${KERNEL_TARGETS.ratioTag}: ${t.ratioTagMet ? 'met' : 'missed'})`,
  );
  if (!r.valid) lines.push(`  kernel rows INVALID: ${r.invalidReason}`);
  return lines.join('\n');
}
