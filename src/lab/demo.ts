import { randomInt } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Endpoint } from '../endpoint/endpoint.js';
import { Connection } from '../endpoint/connection.js';
import { formatAddress } from '../wire/address.js';
import { VerdictLog, wallNow, type Verdict } from './verdicts.js';
import { openStore } from '../store/open.js';
import { buyPath, releasePath, type BoughtPath, type SegmentSpec } from '../endpoint/path.js';
import { PortalClient } from '../endpoint/portal-client.js';
import { authPrefix } from '../wire/authenticator.js';
import { percentile, round } from '../util/stats.js';
import { dataplaneText } from '../router/dataplane-mode.js';
import { Lab } from './lab.js';
import { AtlasClient } from '../atlas/client.js';
import type { PathCandidate, PathQuery } from '../atlas/query.js';
import { formatAnswer } from '../atlas/format.js';
import { formatTraceroute } from '../endpoint/diagnostics-format.js';
import { specFromCandidate } from '../endpoint/connect.js';
import { DiagnosticSocket, hopSummary, traceroute } from '../endpoint/diagnostics.js';
import type { Topology } from './topology.js';
import type { DashboardMessage } from '../dashboard/ipc.js';
import type { TimelineEventT } from '../api/dashboard.js';
import { startComponent, stopComponent, type Managed } from './process.js';
import { join } from 'node:path';
import { progressReporter } from '../util/progress.js';

export interface DemoHop {
  isp: string;
  pop: string;
  router: string;
  address: string;
  /** Prefix of the authenticator the packet carries into this hop. */
  auth: string;
}

export interface DemoReport {
  isps: { name: string; portal: string; pops: { name: string; routers: string[] }[] }[];
  routers: { name: string; isp: string; pop: string; address: string }[];
  endpoint: string;
  server: string;
  path: DemoHop[];
  echo: { sent: number; received: number; rttMs: { min: number; p50: number; p99: number; max: number } };
  circuits: {
    isp: string;
    direction: 'forward' | 'return';
    auth: string;
    from: string;
    to: string;
    packets: number;
    bytes: number;
    dropped: number;
  }[];
  /** The atlas act: the candidates it found, the path bought, and the ISPs its measurements ruled out. */
  atlas?: {
    url: string;
    query: PathQuery;
    candidates: {
      isps: string[];
      latencyMs: number;
      lossPct: number;
      price: number;
      /** Why it was rejected; null for the paths that met every constraint. */
      rejected: string[] | null;
    }[];
    chosen: string[];
    avoided: string[];
  };
  /**
   * The routers' dead verdicts from the start up to the failover act (ms after the endpoint
   * opened). Nothing is killed before that act, so each is a false verdict, as a loaded machine
   * can make; it moves the hop to a sibling router, and the traceroute follows the move.
   */
  verdicts: Verdict[];
  /**
   * Times the endpoint moved to another ingress router of the first ISP before the traceroute
   * (a false failure of a busy machine, as for verdicts): the traceroute enters where it does now.
   */
  ingressMoves: number;
  /** Traceroute along the bought path after the echoes: every hop, in order, with its RTT. */
  traceroute?: {
    index: number;
    isp: string | null;
    pop: string | null;
    router: string | null;
    rttMs: number | null;
    direction: string;
  }[];
  /** The failover act: the router killed, the outage and repair seen by the customer. */
  failover?: {
    killed: string;
    outageMs: number | null;
    repairMs: number | null;
    recovered: boolean;
    lost: number;
  };
}

export interface DemoOptions {
  count?: number;
  /** Kill the middle ISP's active router after the echoes and show the repair (default true). */
  failover?: boolean;
  intervalMs?: number;
  print?: (line: string) => void;
  /** Serve the live dashboard here (`arrow dashboard`), e.g. 127.0.0.1:8080; a busy port falls back to one the kernel picks. */
  dashboard?: string;
  /** A progress bar (stderr, at a terminal) while the lab's processes start. */
  progress?: boolean;
  /** Keep a lab state file and control socket, so `arrow lab fail|heal|down` and `arrow status --lab` reach the demo. */
  state?: boolean;
}

/** Segments straight through the topology's ISPs in order: each ISP's first PoP to its last. */
export function throughSegments(lab: Lab): SegmentSpec[] {
  return lab.isps.map((i) => ({
    isp: i.name,
    portal: i.url,
    apiKey: i.accounts[0]!.apiKey,
    ingressPop: i.pops[0]!.name,
    egressPop: i.pops[i.pops.length - 1]!.name,
  }));
}

/** Echo traffic through a path: payload carries a sequence number so replies match sends. */
/** Anything that sends payloads into a path and emits what comes back: an Endpoint or a Connection. */
export interface EchoChannel {
  send(payload: Uint8Array): unknown;
  on(event: 'data', listener: (payload: Buffer) => void): unknown;
  off(event: 'data', listener: (payload: Buffer) => void): unknown;
}

export async function runEchoes(
  endpoint: EchoChannel,
  count: number,
  intervalMs: number,
  waitMs = 1000,
): Promise<{ sent: number; received: number; rtts: number[] }> {
  const sentAt = new Map<number, bigint>();
  const rtts: number[] = [];
  // A per-call run id, so a late reply from an earlier call is never matched to this one.
  const run = randomInt(0x7fffffff);
  const onData = (payload: Buffer): void => {
    if (payload.length < 12 || payload.readUInt32BE(0) !== 0xec40ec40 || payload.readUInt32BE(4) !== run)
      return;
    const seq = payload.readUInt32BE(8);
    const t = sentAt.get(seq);
    if (t === undefined) return;
    sentAt.delete(seq);
    rtts.push(Number(process.hrtime.bigint() - t) / 1e6);
  };
  endpoint.on('data', onData);
  for (let i = 0; i < count; i++) {
    const payload = Buffer.alloc(64);
    payload.writeUInt32BE(0xec40ec40, 0);
    payload.writeUInt32BE(run, 4);
    payload.writeUInt32BE(i, 8);
    sentAt.set(i, process.hrtime.bigint());
    endpoint.send(payload);
    await sleep(intervalMs);
  }
  const deadline = Date.now() + waitMs;
  while (sentAt.size > 0 && Date.now() < deadline) await sleep(10);
  endpoint.off('data', onData);
  return { sent: count, received: rtts.length, rtts };
}

async function hopsOf(
  lab: Lab,
  path: BoughtPath,
): Promise<{ hops: DemoHop[]; circuits: DemoReport['circuits'] }> {
  const hops: DemoHop[] = [];
  const circuits: DemoReport['circuits'] = [];
  const all = [
    ...path.forward.map((b) => ({ b, direction: 'forward' as const })),
    ...path.reverse.map((b) => ({ b, direction: 'return' as const })),
  ];
  for (const { b, direction } of all) {
    const isp = lab.isp(b.segment.isp!);
    const stats = await new PortalClient(isp.url, b.segment.apiKey).stats(b.circuit.auth);
    circuits.push({
      isp: isp.name,
      direction,
      auth: b.circuit.auth,
      from: b.circuit.ingressPop,
      to: b.circuit.egressPop,
      packets: stats.packets,
      bytes: stats.bytes,
      dropped: stats.dropped,
    });
    if (direction !== 'forward') continue;
    // Name the router that actually carried the traffic in each PoP, from its own counters.
    for (const pop of [b.circuit.ingressPop, b.circuit.egressPop]) {
      const carried = stats.routers.filter((r) => r.pop === pop).sort((x, y) => y.packets - x.packets)[0];
      const fallback = isp.pops.find((p) => p.name === pop)!.routers[0]!;
      hops.push({
        isp: isp.name,
        pop,
        router: carried?.router ?? fallback.name,
        address: carried?.address ?? fallback.address,
        auth: pop === b.circuit.ingressPop ? authPrefix(b.circuit.auth) : 'internal',
      });
    }
  }
  return { hops, circuits };
}

/**
 * The demo scenario: start the network, buy a path through every ISP (return path
 * first, each in reverse order), send echoes through it to an unmodified UDP echo
 * server, and report the path, RTTs and the routers' own counters.
 */
export async function runDemo(topology: Topology, opts: DemoOptions = {}): Promise<Demo> {
  const print = opts.print ?? (() => {});
  // Over HTTPS, as an ISP would run it: the lab makes a CA, and this process trusts it.
  // The dashboard reads the lab's state file (`arrow dashboard --lab`): a demo with one keeps it.
  const bar = opts.progress ? progressReporter() : undefined;
  const lab = await Lab.start(topology, {
    tls: true,
    state: (opts.state ?? false) || opts.dashboard !== undefined,
    ...(bar ? { onProgress: (line: string) => bar.say(line) } : {}),
  }).finally(() => bar?.done());
  let dashboard: DemoDashboard | undefined;
  try {
    if (opts.dashboard !== undefined) {
      dashboard = await startDemoDashboard(lab, opts.dashboard);
      print(
        `Dashboard: ${dashboard.url}/  (live: the network, the failover timeline, the customer's circuits)`,
      );
    }
    const server = lab.servers[0];
    if (!server) throw new Error('the topology needs a udp-echo server for the demo');
    print(
      `Arrow demo: ${lab.isps.length} ISPs, ${lab.routers.length} routers, ${lab.isps.length} portals, 1 UDP echo server; each its own process`,
    );
    for (const i of lab.isps)
      print(
        `  ${i.name.padEnd(6)} portal ${i.url}  ${i.pops.map((p) => `${p.name}[${p.routers.map((r) => r.address).join(' ')}]`).join('  ')}`,
      );
    // Each router's data plane (docs/dataplane.md): on loopback the Node path, and why.
    const planes = new Map<string, number>();
    for (const r of lab.routers)
      if (r.dataplane)
        planes.set(dataplaneText(r.dataplane), (planes.get(dataplaneText(r.dataplane)) ?? 0) + 1);
    for (const [text, n] of planes) print(`  data plane of ${n} router${n === 1 ? '' : 's'}: ${text}`);

    const endpoint = await Endpoint.open('127.0.0.1:0');
    const startedAt = wallNow();
    const verdictLog = new VerdictLog(lab, endpoint.address);
    // The customer's failure rule: no reply within 50 ms means the circuit is failing.
    const conn = new Connection(endpoint, { timeoutMs: 50, probeIntervalMs: 10, ackTimeoutMs: 40 });
    let ingressMoves = 0;
    conn.on('ingress', () => ingressMoves++);
    const chosen = lab.atlas ? await askAtlas(lab, lab.atlas.url, server.address, print) : undefined;
    const segments = chosen?.segments ?? throughSegments(lab);
    print(
      `\nBuying ${segments.length} forward and ${segments.length} return circuits, last segment first...`,
    );
    const path = await buyPath(
      { segments, target: { kind: 'udp', address: server.address } },
      { replyTo: conn.replyTo() },
    );
    conn.add(path);
    if (dashboard) {
      dashboard.send({
        op: 'customer',
        name: 'demo customer',
        path,
        ...(lab.ca ? { ca: lab.ca.pem } : {}),
        ...(chosen ? { atlas: { chosen: chosen.report.chosen, candidates: chosen.report.candidates } } : {}),
      });
      noteCustomerEvents(dashboard, conn);
    }
    // The first ingress router knows the circuit; the warm-up below then checks the whole path.
    await conn.waitReady(5000, 'ingress');
    for (const b of [...path.reverse].reverse())
      print(
        `  return  ${b.segment.isp!.padEnd(6)} ${b.circuit.ingressPop}->${b.circuit.egressPop}  auth ${authPrefix(b.circuit.auth)}`,
      );
    for (const b of [...path.forward].reverse())
      print(
        `  forward ${b.segment.isp!.padEnd(6)} ${b.circuit.ingressPop}->${b.circuit.egressPop}  auth ${authPrefix(b.circuit.auth)}`,
      );

    // Routers learn new circuits from the store within milliseconds of the portal's answer; check the
    // whole path end to end before measuring, so the figures describe the path and not its set-up.
    const warmup = Date.now();
    while ((await runEchoes(conn, 1, 0, 100)).received === 0) {
      if (Date.now() - warmup > 5000) throw new Error('no echo came back through the path within 5 s');
    }
    print(`Path verified end to end in ${Date.now() - warmup} ms.`);

    const count = opts.count ?? 100;
    print(`\nSending ${count} echoes through ${segments.length} ISPs to ${server.address}...`);
    const echo = await runEchoes(conn, count, opts.intervalMs ?? 5);
    dashboard?.send({ op: 'rtt', ms: echo.rtts.length ? round(percentile(echo.rtts, 50), 3) : null });
    // Routers publish counters every statsIntervalMs; wait for a fresh round.
    await sleep(topology.statsIntervalMs * 2 + 100);
    const { hops, circuits } = await hopsOf(lab, path);

    const report: DemoReport = {
      isps: lab.isps.map((i) => ({
        name: i.name,
        portal: i.url,
        pops: i.pops.map((p) => ({ name: p.name, routers: p.routers.map((r) => r.name) })),
      })),
      routers: lab.routers.map((r) => ({ name: r.name, isp: r.isp, pop: r.pop, address: r.address })),
      endpoint: endpoint.address,
      server: server.address,
      path: hops,
      echo: {
        sent: echo.sent,
        received: echo.received,
        rttMs: {
          min: round(Math.min(...echo.rtts)),
          p50: round(percentile(echo.rtts, 50)),
          p99: round(percentile(echo.rtts, 99)),
          max: round(Math.max(...echo.rtts)),
        },
      },
      circuits,
      ...(chosen ? { atlas: chosen.report } : {}),
      verdicts: [],
      ingressMoves: 0,
    };

    print('\nPath, hop by hop:');
    print(
      `  ${'#'.padEnd(3)}${'ISP'.padEnd(8)}${'PoP'.padEnd(6)}${'router'.padEnd(14)}${'address'.padEnd(20)}auth`,
    );
    print(`  ${'0'.padEnd(3)}${'(you)'.padEnd(28)}${endpoint.address.padEnd(20)}`);
    hops.forEach((h, i) =>
      print(
        `  ${String(i + 1).padEnd(3)}${h.isp.padEnd(8)}${h.pop.padEnd(6)}${h.router.padEnd(14)}${h.address.padEnd(20)}${h.auth}`,
      ),
    );
    print(`  ${String(hops.length + 1).padEnd(3)}${'(udp echo server)'.padEnd(28)}${server.address}`);
    const r = report.echo.rttMs;
    print(
      `\nEcho: ${echo.sent} sent, ${echo.received} received; RTT min ${r.min} / p50 ${r.p50} / p99 ${r.p99} / max ${r.max} ms`,
    );
    print('\nCounters, from the routers via each portal (GET /circuits/{auth}/stats):');
    for (const c of circuits)
      print(
        `  ${c.direction.padEnd(8)}${c.isp.padEnd(7)}${(c.from + '->' + c.to).padEnd(10)}${authPrefix(c.auth)}  packets ${c.packets}  bytes ${c.bytes}  dropped ${c.dropped}`,
      );
    report.traceroute = await demoTraceroute(path, conn, print);
    report.ingressMoves = ingressMoves;
    report.verdicts = verdictLog.relativeTo(startedAt);
    verdictLog.close();
    if (report.verdicts.length > 0) {
      print(`\nRouters' dead verdicts so far (nothing was killed yet: false verdicts of a busy machine):`);
      for (const v of report.verdicts)
        print(
          `  +${v.atMs} ms  ${v.router} declared ${v.neighbour} dead, ${v.moved} hops moved to a sibling`,
        );
    }
    const demo: Demo = { lab, endpoint, conn, path, report, dashboard };
    if (opts.failover ?? true) {
      report.failover = await demoFailover(demo, print);
      const f = report.failover;
      dashboard?.note({
        ...(f.outageMs !== null ? { outageMs: f.outageMs } : {}),
        text:
          f.outageMs === null
            ? `the customer's traffic did not recover after ${f.killed} was killed`
            : `the customer saw an outage of ${f.outageMs} ms (${f.lost} echo(es) lost) when ${f.killed} was killed`,
      });
    }
    return demo;
  } catch (err) {
    await dashboard?.stop();
    await lab.stop();
    throw err;
  }
}

/** Where the demo customer sits: every ISP with a PoP here is a way in. */
const CUSTOMER_POP = 'ams';
/** The customer's loss bound: anything lossier is not worth buying. */
const MAX_LOSS_PCT = 1;

/**
 * The atlas act: wait until the atlas has measured every PoP pair, ask it for a path from the
 * customer's PoP to the server that loses under 1%, show the candidates and the rejected ones.
 */
async function askAtlas(
  lab: Lab,
  url: string,
  server: string,
  print: (line: string) => void,
): Promise<{ segments: SegmentSpec[]; report: NonNullable<DemoReport['atlas']> }> {
  const atlas = new AtlasClient(url);
  print(`\nAtlas ${url}: learning offers from ${lab.isps.length} portals and measuring every PoP pair...`);
  // Enough relayed echoes per pair that flaky's 20% cannot hide by chance: all 50 come back
  // with probability 0.8^50 ≈ 1e-5 (at 10, one run in a hundred saw 0% and bought flaky).
  const enough = 50;
  const deadline = Date.now() + 20_000;
  for (;;) {
    const m = await atlas.measurements();
    if (m.pairs.length > 0 && m.pairs.every((p) => p.samples >= enough)) {
      for (const p of m.pairs)
        print(
          `  ${p.key.padEnd(24)} ${(p.latencyMs == null ? 'no echo' : `${p.latencyMs.toFixed(2)} ms`).padStart(10)}  loss ${p.lossPct?.toFixed(1)}%`,
        );
      break;
    }
    if (Date.now() > deadline)
      throw new Error(`the atlas measured too little within 20 s: ${JSON.stringify(m.pairs)}`);
    await sleep(200);
  }
  const query: PathQuery = { from: `*/${CUSTOMER_POP}`, to: server, maxLossPct: MAX_LOSS_PCT };
  print(`\nPaths from ${CUSTOMER_POP} to ${server} losing at most ${MAX_LOSS_PCT}% (arrow paths):`);
  const answer = await atlas.paths(query);
  for (const l of formatAnswer(answer)) print(`  ${l}`);
  const best = answer.paths[0];
  if (!best) throw new Error('the atlas found no path that meets the constraints');
  const map = await atlas.map();
  const keys = Object.fromEntries(lab.isps.map((i) => [i.name, i.accounts[0]!.apiKey]));
  const avoided = [...new Set(answer.rejected.flatMap((r) => r.path.isps))].filter(
    (i) => !best.isps.includes(i),
  );
  print(`Chosen: ${best.isps.join(' > ')}. Avoided: ${avoided.join(', ') || 'none'}.`);
  return {
    segments: specFromCandidate(best, map, keys, server).segments,
    report: {
      url,
      query,
      candidates: [
        ...answer.paths.map((p) => ({ ...summary(p), rejected: null })),
        ...answer.rejected.map((r) => ({ ...summary(r.path), rejected: r.reasons })),
      ],
      chosen: best.isps,
      avoided,
    },
  };
}

function summary(p: PathCandidate): { isps: string[]; latencyMs: number; lossPct: number; price: number } {
  return { isps: p.isps, latencyMs: round(p.latencyMs, 2), lossPct: round(p.lossPct, 2), price: p.price };
}

/** A traceroute along the bought path: each router answers, so the slow or lossy hop stands out. */
async function demoTraceroute(
  path: BoughtPath,
  conn: Connection,
  print: (line: string) => void,
): Promise<NonNullable<DemoReport['traceroute']>> {
  const first = path.forward[0]!.circuit;
  // Through the ingress router the echoes use now: a false failure on a busy machine may have
  // moved the connection to the first ISP's other one, and the traceroute shows the path in use.
  const c = conn.circuits.find((x) => x.auth.toString('hex') === first.auth);
  const ingress = c ? formatAddress(c.ingress[c.activeIngress]!) : first.ingress[0]!;
  const sock = await DiagnosticSocket.open({ toward: ingress });
  try {
    const t = await traceroute(sock, { ingress, auth: first.auth }, { queries: 3, timeoutMs: 500 });
    print(`\nTraceroute along the circuit (arrow traceroute):`);
    for (const l of formatTraceroute(t, 64)) print(`  ${l}`);
    return t.hops.map((h) => {
      const { index, isp, pop, router, rttMs, direction } = hopSummary(h, 3);
      return { index, isp, pop, router, rttMs, direction };
    });
  } finally {
    await sock.close();
  }
}

export interface Demo {
  dashboard: DemoDashboard | undefined;
  lab: Lab;
  endpoint: Endpoint;
  conn: Connection;
  path: BoughtPath;
  report: DemoReport;
}

/**
 * The failover act: with echoes flowing every 10 ms, kill the middle ISP's active
 * router and show the customer's detection, the probe, the repair and the outage.
 */
async function demoFailover(
  d: Demo,
  print: (line: string) => void,
): Promise<NonNullable<DemoReport['failover']>> {
  const middle = d.path.forward[Math.floor(d.path.forward.length / 2)]!;
  const victim = d.lab.routers.find((r) => r.address === middle.circuit.ingress[0])!;
  print(
    `\nFailover: echoes every 10 ms; killing ${victim.name} (${victim.address}), ${middle.segment.isp}'s active router, with SIGKILL...`,
  );
  const replies: number[] = [];
  const onData = (): void => void replies.push(performance.now());
  d.conn.on('data', onData);
  let sent = 0;
  let running = true;
  const loop = (async () => {
    const deadline = performance.now() + 10_000;
    while (running && performance.now() < deadline) {
      d.conn.send(Buffer.from(`failover echo ${sent++}`));
      await sleep(10);
    }
  })();
  await sleep(300);
  const killedAt = performance.now();
  const events: string[] = [];
  const t = (at: number): string => `t+${(at - killedAt).toFixed(1)} ms`;
  d.conn.once('failure', (_c, at) =>
    events.push(`${t(at)}  no reply for 50 ms: the endpoint probes the circuit`),
  );
  d.conn.once('ingress', (_c, addr) => events.push(`the first ISP did not ack: moved to ingress ${addr}`));
  const repaired = new Promise<number | undefined>((resolve) => {
    const timer = setTimeout(() => resolve(undefined), 5000);
    d.conn.once('repaired', (_c, repairMs, at) => {
      clearTimeout(timer);
      events.push(
        `${t(at)}  the probe came home around the circuit: repaired ${repairMs.toFixed(1)} ms after the first probe`,
      );
      resolve(repairMs);
    });
  });
  d.lab.kill(victim.name, 'SIGKILL');
  const repairMs = await repaired;
  await sleep(300);
  running = false;
  await loop;
  await sleep(100);
  d.conn.off('data', onData);
  const before = replies.filter((x) => x <= killedAt).at(-1) ?? killedAt;
  const after = replies.find((x) => x > killedAt);
  const outageMs = after === undefined ? undefined : after - before;
  const lost = sent - replies.length;
  for (const e of events) print(`  ${e}`);
  // Which router repaired what: from the routers' own published counters.
  await sleep(d.lab.topology.statsIntervalMs * 2 + 100);
  const moved: string[] = [];
  for (const isp of d.lab.isps) {
    const store = await openStore(isp.store, { isp: isp.name });
    try {
      for (const s of await store.listRouterStats())
        if ((s.failover?.hopsMoved ?? 0) > 0)
          moved.push(`${s.router} moved ${s.failover!.hopsMoved} circuit hop(s) off ${victim.name}`);
    } finally {
      await store.close();
    }
  }
  for (const m of moved) print(`  ${m}`);
  print(
    outageMs === undefined
      ? '  traffic did not recover'
      : `  outage ${outageMs.toFixed(1)} ms (last reply before the kill to the first after); ${lost} echo(es) lost`,
  );
  return {
    killed: victim.name,
    outageMs: outageMs === undefined ? null : round(outageMs, 1),
    repairMs: repairMs === undefined ? null : round(repairMs, 1),
    recovered: outageMs !== undefined,
    lost,
  };
}

export async function stopDemo(d: Demo): Promise<void> {
  await d.dashboard?.stop();
  await d.conn.close();
  await releasePath(d.path);
  await d.endpoint.close();
  await d.lab.stop();
}

/** `arrow dashboard --lab` over the demo's lab, in a process of its own: its polling never delays the customer's packets here. */
export class DemoDashboard {
  private constructor(
    private readonly managed: Managed,
    readonly url: string,
  ) {}

  /** A busy address falls back to a port the kernel picks. */
  static async start(lab: Lab, listen: string): Promise<DemoDashboard> {
    const log = join(lab.dir, 'logs', 'dashboard.log');
    const args = (at: string): string[] => ['dashboard', '--lab', lab.topology.name, '--listen', at];
    let managed: Managed;
    try {
      managed = await startComponent(args(listen), log);
    } catch (err) {
      if (!/EADDRINUSE/.test((err as Error).message)) throw err;
      managed = await startComponent(args(`${listen.slice(0, listen.lastIndexOf(':'))}:0`), log);
    }
    return new DemoDashboard(managed, managed.ready.url!);
  }

  send(m: DashboardMessage): void {
    if (this.managed.proc.connected) this.managed.proc.send(m);
  }

  note(e: Omit<TimelineEventT, 'at' | 'kind' | 'subject'>): void {
    this.send({ op: 'note', event: { at: Date.now(), kind: 'customer', subject: 'customer', ...e } });
  }

  async stop(): Promise<void> {
    await stopComponent(this.managed.proc);
  }
}

async function startDemoDashboard(lab: Lab, listen: string): Promise<DemoDashboard> {
  return DemoDashboard.start(lab, listen);
}

/** What the customer's connection sees goes on the dashboard's timeline as it happens. */
function noteCustomerEvents(d: DemoDashboard, conn: Connection): void {
  const note = (text: string): void => d.note({ text });
  conn.on('failure', () => note('no reply for 50 ms: the customer probes its circuit'));
  conn.on('ingress', (_c, addr) => note(`the first ISP did not ack: the customer moved to ingress ${addr}`));
  conn.on('repaired', (_c, repairMs) =>
    note(`the probe came home around the circuit: repaired ${repairMs.toFixed(1)} ms after the first probe`),
  );
}
