import { createSocket, type Socket } from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { ChangeEvent, Circuit, RouterStats } from '../store/circuit.js';
import { formatAddress, mustParseAddress } from '../wire/address.js';
import type { Logger } from '../util/log.js';
import type { RouterConfig } from './config.js';
import { DataPlane } from './dataplane.js';
import { ForwardingTable } from './table.js';
import { UdpDelivery } from './udp-delivery.js';
import { IpEgress } from './egress.js';
import { Failover, type NeighbourDeadEvent } from './failover.js';
import { RouterDiagnostics } from './diagnostics.js';
import { ImpairStage, impairActive } from './impair.js';
import { openStoreSync, type StoreSync } from './store-sync.js';
import {
  attachKernelPath,
  dataplaneText,
  KernelRequired,
  openKernelPath,
  type DataplaneStatus,
  type KernelPathOptions,
  type NodeReason,
} from './dataplane-mode.js';
import { KernelMirror } from './kernel-mirror.js';
import { RouterAdmin } from './admin-thread.js';
import { adminOpenApi } from '../api/admin.js';
import type { KernelStats } from './kernel.js';

/**
 * One ARROW router: a UDP socket, a forwarding table synced from the ISP's store,
 * and a timer that publishes counters. The store is read at start and then followed
 * by watch; the packet handler only ever touches the in-memory table.
 *
 * Threads (docs/operations.md, "Threads"): this thread forwards (socket, table, failover,
 * diagnostics). The store client runs on its own worker thread (store-sync.ts): it polls
 * SQLite or holds etcd's watch, decodes records, and encodes and writes the stats, and
 * posts table changes here, where they are compiled into the table between packets.
 */
export class Router {
  readonly table: ForwardingTable;
  readonly dataplane: DataPlane;
  private socket: Socket | undefined;
  private sync: StoreSync | undefined;
  /** The admin API's thread (/metrics, /status, /log/level): fed the stats snapshot. */
  private admin: RouterAdmin | undefined;
  /** Delay of this (the forwarding) thread's event loop: what store work would add to packets. */
  private readonly loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
  private statsTimer: NodeJS.Timeout | undefined;
  private delivery: UdpDelivery | undefined;
  /** IP transit: the TUN that deliver-ip circuits decapsulate into, when configured (docs/egress.md). */
  private egress: IpEgress | undefined;
  private boundAddress = '';
  /** Observer of applied store changes, after the table has them. */
  onTableChange: ((event: ChangeEvent) => void) | undefined;
  /** Told of every dead verdict (`arrow bench failover` and the lab get it over IPC); the admin API keeps the recent ones. */
  onNeighbourDead: ((e: NeighbourDeadEvent) => void) | undefined;

  readonly failover: Failover;
  /** Traceroute answers, the last-leg ping service, the relayed echo (docs/diagnostics.md). */
  readonly diagnostics: RouterDiagnostics;
  /** Lab fault injection in front of the data plane, when the config asks for it. */
  readonly impair: ImpairStage | undefined;
  /** The kernel fast path's maps, mirroring the table, when the router runs it. */
  private kernel: KernelMirror | undefined;
  private dataplaneNow: DataplaneStatus = { mode: 'node', requested: 'auto', reason: 'not started' };

  constructor(
    readonly config: RouterConfig,
    private readonly log: Logger,
  ) {
    this.table = new ForwardingTable(config.pop, (k) => this.failover.isDead(k));
    const send = (b: Buffer, port: number, host: string, offset = 0): void =>
      this.socket!.send(b, offset, b.length - offset, port, host);
    this.failover = new Failover(this.table, config.failover, send, () => this.sync, log);
    // Verdicts go to the admin thread as they are made: the dashboard's failover timeline.
    this.failover.onNeighbourDead = (e) => {
      this.admin?.verdict({ kind: 'dead', ...e, at: Date.now() });
      this.onNeighbourDead?.(e);
    };
    this.failover.onNeighbourAlive = (neighbour) =>
      this.admin?.verdict({ kind: 'alive', neighbour, hopsMoved: 0, hopsStranded: 0, at: Date.now() });
    this.dataplane = new DataPlane(
      this.table,
      {
        send,
        deliverUdp: (entry, payload) => this.delivery!.deliver(entry, payload),
        deliverIp: (entry, packet) => this.egress?.deliver(entry, packet) ?? false,
        probedIp: (entry) => this.egress?.arrived(entry),
      },
      this.failover,
      (this.diagnostics = new RouterDiagnostics(
        { isp: config.isp, pop: config.pop, router: config.name },
        () => this.boundAddress,
        (b, port, host) => void this.dataplane.trySend(b, port, host),
      )),
    );
    if (impairActive(config.impair))
      this.impair = new ImpairStage(
        config.impair,
        (b, port, host) => this.dataplane.process(b, port, host),
        (b) => this.dataplane.discard(b, 'impair'),
      );
  }

  get address(): string {
    return this.boundAddress;
  }

  /** Which data plane forwards DATA of known circuits, and why (decided by start). */
  /** The admin API's base URL (/metrics, /status, /log/level), once started. */
  get adminUrl(): string | undefined {
    return this.admin?.url;
  }

  get dataplaneStatus(): DataplaneStatus {
    return this.dataplaneNow;
  }

  async start(): Promise<void> {
    const { config, log } = this;
    const listen = mustParseAddress(config.listen, { bind: true });
    // Before the store: `--dataplane kernel` that cannot work fails at once, and the table's
    // snapshot below goes straight into the kernel's maps.
    const kernelOpts: KernelPathOptions = {
      requested: config.dataplane,
      host: listen.host,
      attach: config.kernel.attach,
      maxCircuits: config.kernel.maxCircuits,
      maxTagged: config.kernel.maxTagged,
    };
    const kernelPath = impairActive(config.impair)
      ? this.impairRefusal(config.dataplane)
      : openKernelPath(kernelOpts);
    if (kernelPath.program !== undefined) {
      this.kernel = new KernelMirror(
        kernelPath.program,
        log,
        (entry) => this.egress?.decapsulates(entry) ?? false,
      );
      this.table.observer = this.kernel;
    }
    // Said before anything that can wait (the store thread, a store that is down): a router that
    // never gets ready then shows how far it got. After the kernel path's check, so that a
    // `--dataplane kernel` that cannot work fails in one line.
    // The admin thread (its own thread: no scrape runs here) starts while the store loads.
    const adminStarting = RouterAdmin.start(
      {
        admin: config.admin,
        router: config.name,
        isp: config.isp,
        pop: config.pop,
        level: log.level,
        circuits: config.metrics.circuits,
        openapi: adminOpenApi('router'),
      },
      log,
      (level) => {
        log.level = level;
      },
    );
    // Awaited after the bind, which reports a failure; one that comes while the start has already
    // failed for another reason is only logged.
    adminStarting.catch((err: Error) => log.debug({ err: err.message }, 'admin API did not start'));
    log.info({ router: config.name, store: config.store.kind }, 'router starting: reading the circuit store');
    this.sync = openStoreSync(
      { store: config.store, isp: config.isp, pollMs: config.storePollMs, thread: config.storeThread },
      log,
    );
    // One bad record is skipped and reported, never fatal (docs/operations.md, "Rejected records").
    this.table.onReject = (circuit, reason) =>
      log.warn({ circuit, reason }, 'circuit record rejected: not forwarding this circuit');

    // Table first, then traffic: a consistent snapshot, then every change after it.
    // A store that is down at start is waited for: forwarding with an empty table would drop everything.
    const snap = await this.sync.start();
    this.table.replaceAll(snap.circuits, snap.revision);
    this.sync.follow((events) => {
      for (const event of events) {
        this.table.apply(event);
        if (event.type === 'put') this.holdIpCircuits([event.circuit.auth], event.circuit);
        else if (event.type === 'resync') this.holdIpCircuits(event.circuits.map((c) => c.auth));
        this.onTableChange?.(event);
      }
      log.debug({ changes: events.length, revision: events.at(-1)?.revision }, 'table changes');
    });
    log.info(
      { circuits: this.table.circuits, rejected: this.table.rejected.size, revision: snap.revision },
      'table loaded from store',
    );

    if (config.egress) {
      const egress = new IpEgress(
        config.egress,
        (b, port, host) => this.dataplane.trySend(b, port, host),
        this.dataplane.drops,
        log,
      );
      this.egress = egress;
      this.holdIpCircuits(snap.circuits.map((c) => c.auth));
      // Before traffic: a deliver-ip circuit's first packet needs the TUN (TunError says why not).
      await egress.open();
      // The kernel path decapsulates into the same TUN, for customers the egress serves.
      const kernel = this.kernel;
      if (kernel !== undefined) {
        egress.onDecapChange = (entry) => kernel.refresh(entry);
        kernel.program.setEgress(egress.interfaceIndex ?? 0);
      }
      log.info({ tun: config.egress.tun }, 'IP egress up: deliver-ip circuits decapsulate here');
    }
    const socket = createSocket({
      type: 'udp4',
      recvBufferSize: config.socketBufferBytes,
      sendBufferSize: config.socketBufferBytes,
    });
    this.socket = socket;
    this.delivery = new UdpDelivery(
      listen.host,
      (b, port, host) => socket.send(b, port, host),
      this.dataplane.drops,
    );
    this.table.onRemove = (circuit) => {
      this.delivery?.release(circuit);
      this.egress?.released(circuit);
    };
    this.diagnostics.attach(this.delivery);
    const impair = this.impair;
    if (impair) {
      log.warn({ impair: config.impair }, 'impairment on: dropping and delaying carried packets (lab only)');
      socket.on('message', (msg, rinfo) => impair.accept(msg, rinfo.port, rinfo.address));
    } else socket.on('message', (msg, rinfo) => this.dataplane.process(msg, rinfo.port, rinfo.address));
    await new Promise<void>((resolve, reject) => {
      socket.once('error', (err) => reject(new Error(`cannot listen on ${config.listen}: ${err.message}`)));
      socket.bind(listen.port, listen.host, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    // An ICMP unreachable from a dead next hop surfaces here; it must not stop the router.
    // (Bound after bind: a bind failure is the start's error, said once.)
    socket.on('error', (err) => log.warn({ err: err.message }, 'socket error'));
    const a = socket.address() as AddressInfo;
    this.boundAddress = formatAddress({ host: a.address, port: a.port });
    const self = mustParseAddress(this.boundAddress);
    this.delivery.self = self;
    if (this.egress) this.egress.self = self;
    // Attached only now: the program needs the bound port, and a packet it passes up needs the socket.
    const attached =
      kernelPath.program !== undefined
        ? attachKernelPath(kernelPath, { ...kernelOpts, port: a.port }, log)
        : kernelPath;
    if (attached.mode !== undefined) this.dataplaneNow = attached;
    else {
      this.useNodePath();
      this.dataplaneNow = { mode: 'node', requested: config.dataplane, reason: attached.reason };
    }
    // A listen address that cannot be had stops the start, said once.
    this.admin = await adminStarting;
    const d = this.dataplaneNow;
    log.info(
      { ...d, circuits: this.kernel?.size, refused: this.kernel?.refusals() },
      `data plane: ${dataplaneText(d)}`,
    );
    if (d.forwarding === false)
      log.warn(
        { interface: d.interface },
        `forwarding is off on ${d.interface}: the kernel path passes every packet up (sysctl -w net.ipv4.conf.${d.interface}.forwarding=1)`,
      );

    // Announce ourselves only once we forward: portals offer live routers as ingress and backups.
    this.sync.registerRouter(
      { name: config.name, pop: config.pop, address: this.boundAddress },
      config.registrationTtlMs,
    );
    this.loopDelay.enable();
    this.failover.start(this.boundAddress);
    this.scheduleStats();
    await this.publishStats();
    log.info({ address: this.boundAddress, router: config.name, pop: config.pop }, 'router up');
  }

  stats(): RouterStats {
    // The counters first, between two clock readings: the portal balances one router's `in`
    // against another's `out` at common instants, so it must know when these were taken, and how
    // uncertain that is when the process stalled while reading (a busy or stolen CPU).
    const readFrom = Date.now();
    // The kernel's per-circuit counts go into the table's first, so `circuits` covers both paths.
    this.kernel?.fold();
    const kernel = this.kernel?.stats();
    const circuits = this.table.snapshotCounters();
    const countersReadMs = Date.now() - readFrom;
    return {
      router: this.config.name,
      pop: this.config.pop,
      address: this.boundAddress,
      updatedAt: new Date(readFrom).toISOString(),
      countersReadMs,
      drops: withKernelDrops({ ...this.dataplane.drops.counts }, kernel),
      handled: withKernelData({ ...this.dataplane.handled }, kernel),
      dataplane: {
        ...this.dataplaneNow,
        ...(this.kernel && kernel
          ? {
              kernel,
              circuits: this.kernel.size,
              refused: this.kernel.refusals(),
              mapErrors: this.kernel.mapErrors,
            }
          : {}),
      },
      failover: { ...this.failover.counters },
      neighbours: this.failover.neighbours.snapshot(),
      liveness: { keepaliveWaitMs: this.failover.keepaliveWait.snapshot() },
      circuits,
      ...rejectionStats(this.table.snapshotRejections()),
      storeErrors: this.sync?.backgroundErrors ?? 0,
      tableRevision: this.table.revision,
      ...(this.admin ? { admin: this.admin.url } : {}),
      storeThreadRestarts: this.sync?.restarts ?? 0,
      loopDelayMs: this.takeLoopDelay(),
      ...(this.impair ? { impair: { ...this.impair.snapshot() } } : {}),
      ...(this.egress
        ? {
            egress: {
              interface: this.egress.interfaceName ?? '',
              ...this.egress.counters,
              // Decapsulated in the kernel, or written to the TUN here: the same packets to the host.
              delivered: this.egress.counters.delivered + (kernel?.decap ?? 0),
              customers: this.egress.mapping(),
              serving: this.egress.claims(),
            },
          }
        : {}),
    };
  }

  /** The forwarding thread's event-loop delay since the last publish, in ms; then starts afresh. */
  private takeLoopDelay(): { p50: number; p99: number; max: number } {
    const h = this.loopDelay;
    const ms = (ns: number): number => Math.round(ns / 1e3) / 1e3;
    const out =
      h.count > 0
        ? { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max) }
        : { p50: 0, p99: 0, max: 0 };
    h.reset();
    return out;
  }

  /**
   * Publishes on wall-clock multiples of the interval, so all routers of an ISP snapshot their
   * counters at nearly the same instants: the portal balances one router's `in` against
   * another's `out` (SLA loss), and aligned snapshots leave little to interpolate.
   */
  private scheduleStats(): void {
    const every = this.config.statsIntervalMs;
    const wait = every - (Date.now() % every);
    // A timer that fired a little early must not publish twice around the same instant.
    this.statsTimer = setTimeout(
      () => {
        void this.publishStats();
        this.scheduleStats();
      },
      wait < every / 4 ? wait + every : wait,
    );
    this.statsTimer.unref();
  }

  private async publishStats(): Promise<void> {
    try {
      const stats = this.stats();
      this.admin?.publish(stats);
      await this.sync?.putRouterStats(stats);
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'stats flush skipped');
    }
  }

  async stop(): Promise<void> {
    clearTimeout(this.statsTimer);
    this.statsTimer = undefined;
    this.failover.stop();
    this.diagnostics.close();
    this.impair?.stop();
    this.loopDelay.disable();
    await this.publishStats();
    await this.admin?.close();
    // Detaching ends the kernel's forwarding with the Node path's, as a crash would.
    this.useNodePath();
    this.delivery?.close();
    await this.egress?.close();
    await new Promise<void>((resolve) => (this.socket ? this.socket.close(() => resolve()) : resolve()));
    await this.sync?.close();
  }

  /** Tells the egress which deliver-ip circuits this router now holds (their prefixes are routed to it). */
  /** Hands deliver-ip entries to the egress; with a changed record, whether it names us as the egress in use. */
  private holdIpCircuits(auths: string[], record?: Circuit): void {
    const egress = this.egress;
    if (!egress) return;
    const inUse = record?.internalRouters[record.active?.internal ?? 0];
    const designated =
      inUse === undefined || this.boundAddress === '' ? undefined : inUse === this.boundAddress;
    for (const auth of auths)
      for (const e of this.table.entriesOf(auth)) if (e.kind === 'deliver-ip') egress.held(e, designated);
  }

  /** Fault injection happens in this process, so the kernel must not forward past it. */
  private impairRefusal(requested: RouterConfig['dataplane']): NodeReason {
    const reason = 'impairment is configured, and it runs in the Node path';
    if (requested === 'kernel') throw new KernelRequired(`--dataplane kernel: ${reason}`);
    return { reason };
  }

  /** Detaches and unloads the kernel path (the table stays whole: the Node path has every entry). */
  private useNodePath(): void {
    this.table.observer = undefined;
    this.kernel?.close();
    this.kernel = undefined;
  }
}

/** The router's drops by reason, with the kernel's (the same reasons, counted where they happened). */
function withKernelDrops(drops: Record<string, number>, k: KernelStats | undefined): Record<string, number> {
  if (k === undefined) return drops;
  drops['hop-limit'] = (drops['hop-limit'] ?? 0) + k.dropHopLimit;
  drops['over-rate'] = (drops['over-rate'] ?? 0) + k.dropOverRate;
  drops['bad-tag'] = (drops['bad-tag'] ?? 0) + k.dropBadTag;
  drops.replay = (drops.replay ?? 0) + k.dropReplay;
  drops['not-ip'] = (drops['not-ip'] ?? 0) + k.dropNotIp;
  drops['outside-prefixes'] = (drops['outside-prefixes'] ?? 0) + k.dropOutsidePrefixes;
  drops['spoofed-source'] = (drops['spoofed-source'] ?? 0) + k.dropSpoofedSource;
  return drops;
}

/** DATA the router forwarded: the Node path's count and the kernel's sends. */
function withKernelData(handled: Record<string, number>, k: KernelStats | undefined): Record<string, number> {
  // As DataPlane counts `data`: every DATA past admission, a deliver-ip refusal of its inner packet too.
  if (k !== undefined)
    handled.data =
      (handled.data ?? 0) +
      k.tx +
      k.redirect +
      k.decap +
      k.dropNotIp +
      k.dropOutsidePrefixes +
      k.dropSpoofedSource;
  return handled;
}

function rejectionStats(r: { count: number; circuits: Record<string, string> }): Partial<RouterStats> {
  return { rejected: r.count, rejections: r.circuits };
}
