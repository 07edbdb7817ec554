import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import type { PortalConfig } from '../portal/config.js';
import type { RouterConfig, RouterConfigInput } from '../router/config.js';
import type { Topology } from './topology.js';
import type { StoreConfig } from '../store/config.js';
import { EtcdCluster } from './etcd-cluster.js';
import type { AtlasConfig } from '../atlas/config.js';
import { mustParseAddress } from '../wire/address.js';
import { startComponent, stopComponent, type Managed } from './process.js';

export interface LabRouter {
  isp: string;
  pop: string;
  name: string;
  address: string;
  configPath: string;
  managed: Managed | undefined;
}

export interface LabIsp {
  name: string;
  /** The ISP's etcd cluster, when its store is etcd. */
  etcd: EtcdCluster | undefined;
  store: StoreConfig;
  url: string;
  accounts: { name: string; apiKey: string }[];
  storePath: string;
  portalConfigPath: string;
  pops: { name: string; routers: LabRouter[] }[];
  managed: Managed;
}

/** What a router started with `announceTable` reports per applied change. */
export interface TableMessage {
  event: 'table';
  type: 'put' | 'delete' | 'resync';
  revision: number;
  auth?: string;
  /** Wall-clock ms (performance.timeOrigin + performance.now()) when the table had it. */
  at: number;
}

export interface LabServer {
  name: string;
  address: string;
  managed: Managed;
}

export interface LabOptions {
  /** Working directory for configs, stores and logs. Default: a fresh temp dir, removed on stop. */
  dir?: string;
  /** Keep the directory after stop (logs for post-mortems). */
  keep?: boolean;
  /** Routers report every table change to the lab over IPC (see Lab.onTable). */
  announceTable?: boolean;
}

/** Loopback addresses that read like a plan: 127.1.<isp>.<pop><router>, e.g. 127.1.2.12. */
function routerHost(ispIndex: number, popIndex: number, routerIndex: number): string {
  return `127.1.${ispIndex + 1}.${(popIndex + 1) * 10 + routerIndex + 1}`;
}

/**
 * A whole multi-ISP network on one machine: every router, portal and server a real
 * OS process on its own loopback address, one SQLite store per ISP.
 */
export class Lab {
  readonly isps: LabIsp[] = [];
  readonly servers: LabServer[] = [];
  /** The atlas, when the topology asks for one. */
  atlas: { url: string; managed: Managed; configPath: string } | undefined;
  private readonly clusters: EtcdCluster[] = [];
  private stopped = false;

  private constructor(
    readonly topology: Topology,
    readonly dir: string,
    private readonly keep: boolean,
    private readonly announceTable: boolean,
  ) {}

  /** Called for every table change a router reports, when started with `announceTable`. */
  onTable: ((router: string, msg: TableMessage) => void) | undefined;

  static async start(topology: Topology, opts: LabOptions = {}): Promise<Lab> {
    const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'arrow-lab-'));
    mkdirSync(join(dir, 'logs'), { recursive: true });
    const lab = new Lab(topology, dir, opts.keep ?? opts.dir !== undefined, opts.announceTable ?? false);
    const onExit = (): void => lab.killAllSync();
    process.once('exit', onExit);
    try {
      await lab.boot();
    } catch (err) {
      await lab.stop();
      throw err;
    }
    return lab;
  }

  get routers(): LabRouter[] {
    return this.isps.flatMap((i) => i.pops.flatMap((p) => p.routers));
  }

  router(name: string): LabRouter {
    const r = this.routers.find((x) => x.name === name);
    if (!r) throw new Error(`no router ${name}; routers: ${this.routers.map((x) => x.name).join(', ')}`);
    return r;
  }

  isp(name: string): LabIsp {
    const i = this.isps.find((x) => x.name === name);
    if (!i) throw new Error(`no ISP ${name}`);
    return i;
  }

  server(name: string): LabServer {
    const s = this.servers.find((x) => x.name === name);
    if (!s) throw new Error(`no server ${name}`);
    return s;
  }

  private async boot(): Promise<void> {
    const t = this.topology;
    for (const [si, s] of t.servers.entries()) {
      const managed = await startComponent(
        ['echo-server', '--listen', `127.1.0.${100 + si}:0`],
        join(this.dir, 'logs', `server-${s.name}.log`),
      );
      this.servers.push({ name: s.name, address: managed.ready.address!, managed });
    }
    // Routers first (they pick their ports), then each portal with the addresses they got.
    await Promise.all(t.isps.map((isp, ii) => this.bootIsp(isp, ii)));
    if (t.atlas) await this.bootAtlas(t.atlas);
  }

  /** An atlas over the whole lab: every portal, the topology's peerings, servers as targets. */
  private async bootAtlas(a: NonNullable<Topology['atlas']>): Promise<void> {
    const config: AtlasConfig = {
      listen: '127.1.0.2:0',
      isps: this.isps.map((i) => ({ name: i.name, portal: i.url })),
      peerings: this.topology.peerings ?? [],
      targets: this.topology.servers.flatMap((s) =>
        s.deliveredBy?.length
          ? [{ prefix: `${mustParseAddress(this.server(s.name).address).host}/32`, pops: s.deliveredBy }]
          : [],
      ),
      refreshMs: 2000,
      measure: { intervalMs: a.measureIntervalMs, echoes: a.echoes, timeoutMs: 500, history: a.history },
    };
    const path = join(this.dir, 'atlas.yaml');
    writeFileSync(path, stringify(config));
    const managed = await startComponent(['atlas', '--config', path], join(this.dir, 'logs', 'atlas.log'));
    this.atlas = { url: managed.ready.url!, managed, configPath: path };
  }

  private async bootIsp(isp: Topology['isps'][0], ii: number): Promise<void> {
    const storePath = join(this.dir, `${isp.name}.db`);
    let etcd: EtcdCluster | undefined;
    let store: StoreConfig = { kind: 'sqlite', path: storePath };
    if (isp.store.kind === 'etcd') {
      etcd = await EtcdCluster.start({ members: isp.store.members, dir: join(this.dir, `etcd-${isp.name}`) });
      this.clusters.push(etcd);
      store = { kind: 'etcd', endpoints: etcd.endpoints };
    }
    const pops: LabIsp['pops'] = [];
    for (const [pi, pop] of isp.pops.entries()) {
      const routers: LabRouter[] = [];
      for (let r = 0; r < pop.routers; r++) {
        const name = `${isp.name}-${pop.name}-${r + 1}`;
        // A PoP's own impairment replaces its ISP's.
        const impair = pop.impair ?? isp.impair;
        const config: RouterConfigInput = {
          isp: isp.name,
          pop: pop.name,
          name,
          listen: `${routerHost(ii, pi, r)}:0`,
          store,
          statsIntervalMs: this.topology.statsIntervalMs,
          storePollMs: 5,
          socketBufferBytes: 4 * 1024 * 1024,
          registrationTtlMs: 3000,
          announceTable: this.announceTable,
          ...(impair ? { impair } : {}),
          ...(this.topology.failover
            ? { failover: this.topology.failover as RouterConfigInput['failover'] }
            : {}),
        };
        const configPath = join(this.dir, `router-${name}.yaml`);
        writeFileSync(configPath, stringify(config));
        routers.push({ isp: isp.name, pop: pop.name, name, address: '', configPath, managed: undefined });
      }
      pops.push({ name: pop.name, routers });
    }
    // The first router creates the store's schema; the rest start together.
    const all = pops.flatMap((p) => p.routers);
    await this.startRouter(all[0]!);
    await Promise.all(all.slice(1).map((r) => this.startRouter(r)));

    const portalConfig: PortalConfig = {
      isp: isp.name,
      listen: `127.1.${ii + 1}.1:0`,
      store,
      pops: pops.map((p) => ({ name: p.name, routers: p.routers.map((r) => r.address) })),
      offers: isp.offers,
      accounts: isp.accounts,
    };
    const portalConfigPath = join(this.dir, `portal-${isp.name}.yaml`);
    writeFileSync(portalConfigPath, stringify(portalConfig));
    const managed = await startComponent(
      ['portal', '--config', portalConfigPath],
      join(this.dir, 'logs', `portal-${isp.name}.log`),
    );
    this.isps[ii] = {
      name: isp.name,
      url: managed.ready.url!,
      accounts: isp.accounts,
      storePath,
      etcd,
      store,
      portalConfigPath,
      pops,
      managed,
    };
  }

  private async startRouter(r: LabRouter): Promise<void> {
    r.managed = await startComponent(
      ['router', '--config', r.configPath],
      join(this.dir, 'logs', `router-${r.name}.log`),
    );
    r.managed.proc.on('message', (m: TableMessage) => {
      if (m?.event === 'table') this.onTable?.(r.name, m);
    });
    if (!r.address) {
      r.address = r.managed.ready.address!;
      // Pin the port it got, so a restart comes back on the same address.
      const cfg = parse(readFileSync(r.configPath, 'utf8')) as RouterConfig;
      writeFileSync(r.configPath, stringify({ ...cfg, listen: r.address }));
    }
  }

  /** Fault injection: SIGKILL (crash) or SIGSTOP (hang) a router. */
  kill(name: string, signal: 'SIGKILL' | 'SIGSTOP' | 'SIGTERM' = 'SIGKILL'): void {
    const r = this.router(name);
    r.managed?.proc.kill(signal);
  }

  /** Starts a stopped or killed router again, on the same address and store. */
  async restart(name: string): Promise<void> {
    const r = this.router(name);
    if (r.managed) {
      r.managed.proc.kill('SIGCONT');
      await stopComponent(r.managed.proc, 1000);
    }
    await this.startRouter(r);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const procs = [
      ...this.isps.filter(Boolean).map((i) => i.managed.proc),
      ...this.routers.flatMap((r) => (r.managed ? [r.managed.proc] : [])),
      ...this.servers.map((s) => s.managed.proc),
      ...(this.atlas ? [this.atlas.managed.proc] : []),
    ];
    for (const p of procs) p.kill('SIGCONT');
    await Promise.all(procs.map((p) => stopComponent(p)));
    await Promise.all(this.clusters.map((c) => c.stop()));
    if (!this.keep) rmSync(this.dir, { recursive: true, force: true });
  }

  private killAllSync(): void {
    for (const r of this.routers) r.managed?.proc.kill('SIGKILL');
    for (const i of this.isps) i?.managed.proc.kill('SIGKILL');
    for (const s of this.servers) s.managed.proc.kill('SIGKILL');
    this.atlas?.managed.proc.kill('SIGKILL');
  }
}
