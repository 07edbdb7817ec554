import { createSocket, type Socket } from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { ChangeEvent, RouterStats } from '../store/circuit.js';
import { formatAddress, mustParseAddress } from '../wire/address.js';
import type { Logger } from '../util/log.js';
import type { RouterConfig } from './config.js';
import { DataPlane } from './dataplane.js';
import { ForwardingTable } from './table.js';
import { UdpDelivery } from './udp-delivery.js';
import { Failover } from './failover.js';
import { RouterDiagnostics } from './diagnostics.js';
import { ImpairStage, impairActive } from './impair.js';
import { openStoreSync, type StoreSync } from './store-sync.js';

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
  /** Delay of this (the forwarding) thread's event loop: what store work would add to packets. */
  private readonly loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
  private statsTimer: NodeJS.Timeout | undefined;
  private delivery: UdpDelivery | undefined;
  private boundAddress = '';
  /** Observer of applied store changes, after the table has them. */
  onTableChange: ((event: ChangeEvent) => void) | undefined;

  readonly failover: Failover;
  /** Traceroute answers, the last-leg ping service, the relayed echo (docs/diagnostics.md). */
  readonly diagnostics: RouterDiagnostics;
  /** Lab fault injection in front of the data plane, when the config asks for it. */
  readonly impair: ImpairStage | undefined;

  constructor(
    readonly config: RouterConfig,
    private readonly log: Logger,
  ) {
    this.table = new ForwardingTable(config.pop, (k) => this.failover.isDead(k));
    const send = (b: Buffer, port: number, host: string): void => this.socket!.send(b, port, host);
    this.failover = new Failover(this.table, config.failover, send, () => this.sync, log);
    this.dataplane = new DataPlane(
      this.table,
      { send, deliverUdp: (entry, payload) => this.delivery!.deliver(entry, payload) },
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

  async start(): Promise<void> {
    const { config, log } = this;
    const listen = mustParseAddress(config.listen, { bind: true });
    // Said before anything that can wait (the store thread, a store that is down): a router that
    // never gets ready then shows how far it got.
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
        this.onTableChange?.(event);
      }
      log.debug({ changes: events.length, revision: events.at(-1)?.revision }, 'table changes');
    });
    log.info(
      { circuits: this.table.circuits, rejected: this.table.rejected.size, revision: snap.revision },
      'table loaded from store',
    );

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
    this.table.onRemove = (circuit) => this.delivery?.release(circuit);
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
    return {
      router: this.config.name,
      pop: this.config.pop,
      address: this.boundAddress,
      updatedAt: new Date().toISOString(),
      drops: { ...this.dataplane.drops.counts },
      handled: { ...this.dataplane.handled },
      failover: { ...this.failover.counters },
      neighbours: this.failover.neighbours.snapshot(),
      liveness: { keepaliveWaitMs: this.failover.keepaliveWait.snapshot() },
      circuits: this.table.snapshotCounters(),
      ...rejectionStats(this.table.snapshotRejections()),
      storeErrors: this.sync?.backgroundErrors ?? 0,
      loopDelayMs: this.takeLoopDelay(),
      ...(this.impair ? { impair: { ...this.impair.snapshot() } } : {}),
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
      await this.sync?.putRouterStats(this.stats());
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
    this.delivery?.close();
    await new Promise<void>((resolve) => (this.socket ? this.socket.close(() => resolve()) : resolve()));
    await this.sync?.close();
  }
}

function rejectionStats(r: { count: number; circuits: Record<string, string> }): Partial<RouterStats> {
  return { rejected: r.count, rejections: r.circuits };
}
