import { createSocket, type Socket } from 'node:dgram';
import type { AddressInfo } from 'node:net';
import type { CircuitStore, Registration, Watcher } from '../store/store.js';
import type { ChangeEvent, Circuit, RouterStats } from '../store/circuit.js';
import { openStore } from '../store/open.js';
import { formatAddress, mustParseAddress } from '../wire/address.js';
import type { Logger } from '../util/log.js';
import type { RouterConfig } from './config.js';
import { DataPlane } from './dataplane.js';
import { ForwardingTable } from './table.js';
import { UdpDelivery } from './udp-delivery.js';
import { Failover } from './failover.js';
import { RouterDiagnostics } from './diagnostics.js';
import { ImpairStage, impairActive } from './impair.js';

/**
 * One ARROW router: a UDP socket, a forwarding table synced from the ISP's store,
 * and a timer that publishes counters. The store is read at start and then followed
 * by watch; the packet handler only ever touches the in-memory table.
 */
export class Router {
  readonly table: ForwardingTable;
  readonly dataplane: DataPlane;
  private socket: Socket | undefined;
  private store: CircuitStore | undefined;
  private watcher: Watcher | undefined;
  private registration: Registration | undefined;
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
    this.failover = new Failover(this.table, config.failover, send, () => this.store, log);
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
    const listen = mustParseAddress(config.listen);
    // Routers never block their loop waiting for a write lock (busy_timeout 0): a skipped stats flush is retried.
    try {
      this.store = await openStore(config.store, {
        busyTimeoutMs: 0,
        pollMs: config.storePollMs,
        isp: config.isp,
      });
    } catch (err) {
      throw new Error(`cannot open the circuit store (${describeStore(config)}): ${(err as Error).message}`, {
        cause: err,
      });
    }
    this.store.background.report = rateLimitedReport(log);
    // One bad record is skipped and reported, never fatal (docs/operations.md, "Rejected records").
    this.table.onReject = (circuit, reason) =>
      log.warn({ circuit, reason }, 'circuit record rejected: not forwarding this circuit');

    // Table first, then traffic: a consistent snapshot, then every change after it.
    // A store that is down at start is waited for: forwarding with an empty table would drop everything.
    const snap = await this.initialSnapshot(this.store);
    this.table.replaceAll(snap.circuits, snap.revision);
    this.watcher = this.store.watch(snap.revision, (event) => {
      this.table.apply(event);
      this.onTableChange?.(event);
      log.debug({ event: event.type, revision: event.revision }, 'table change');
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
    this.registration = this.store.registerRouter(
      { name: config.name, pop: config.pop, address: this.boundAddress },
      config.registrationTtlMs,
    );
    this.failover.start(this.boundAddress);
    this.scheduleStats();
    await this.publishStats();
    log.info({ address: this.boundAddress, router: config.name, pop: config.pop }, 'router up');
  }

  private async initialSnapshot(store: CircuitStore): Promise<{ revision: number; circuits: Circuit[] }> {
    for (let delay = 100; ; delay = Math.min(delay * 2, 2000)) {
      try {
        return await store.snapshot();
      } catch (err) {
        this.log.warn(
          { err: (err as Error).message, retryMs: delay },
          'circuit store unavailable at start; waiting',
        );
        await new Promise((r) => setTimeout(r, delay));
      }
    }
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
      circuits: this.table.snapshotCounters(),
      ...rejectionStats(this.table.snapshotRejections()),
      storeErrors: this.store?.background.count ?? 0,
      ...(this.impair ? { impair: { ...this.impair.snapshot() } } : {}),
    };
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
      await this.store?.putRouterStats(this.stats());
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
    this.watcher?.close();
    await this.registration?.close().catch((err: unknown) =>
      // The registration lapses within its TTL anyway; say why it was not withdrawn at once.
      this.log.warn({ err: (err as Error).message }, 'router registration not withdrawn; it expires by TTL'),
    );
    await this.publishStats();
    this.delivery?.close();
    await new Promise<void>((resolve) => (this.socket ? this.socket.close(() => resolve()) : resolve()));
    await this.store?.close();
  }
}

function describeStore(config: RouterConfig): string {
  const s = config.store;
  return s.kind === 'sqlite'
    ? `sqlite ${s.path}`
    : s.kind === 'etcd'
      ? `etcd ${s.endpoints.join(',')}`
      : s.kind;
}

function rejectionStats(r: { count: number; circuits: Record<string, string> }): Partial<RouterStats> {
  return { rejected: r.count, rejections: r.circuits };
}

/**
 * Logs store background errors without flooding: a poll that fails every 5 ms logs once a
 * second, with how many were folded in. Every one is counted in the store's `background`.
 */
function rateLimitedReport(log: Logger): (err: Error, context: string) => void {
  let lastAt = 0;
  let folded = 0;
  return (err, context) => {
    const now = Date.now();
    if (now - lastAt < 1000) {
      folded++;
      return;
    }
    lastAt = now;
    log.warn({ err: err.message, context, suppressed: folded }, 'circuit store background error');
    folded = 0;
  };
}
