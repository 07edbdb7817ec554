import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { parse, stringify } from 'yaml';
import { SlaConfigSchema, type PortalConfig } from '../portal/config.js';
import { Value } from '@sinclair/typebox/value';
import type { Static } from '@sinclair/typebox';
import type { RouterConfig, RouterConfigInput } from '../router/config.js';
import type { Topology } from './topology.js';
import type { StoreConfig } from '../store/config.js';
import { openStore } from '../store/open.js';
import { EtcdCluster } from './etcd-cluster.js';
import type { AtlasConfig } from '../atlas/config.js';
import { mustParseAddress } from '../wire/address.js';
import { CLI_PATH, componentState, startComponent, stopComponent, type Managed } from './process.js';
import { LAB_NET, LabNetwork } from './netns.js';
import { ANNOUNCE_TABLE, STANDBY_TABLE, egressRouterBird, esrBird, labAsn } from './bird.js';
import { removeState, writeState, type FailKind, type LabState } from './control.js';
import { LabCa } from './certs.js';
import { hashApiKey, newApiKey } from '../portal/accounts.js';
import { trustCa } from '../util/http-client.js';
import type { ReadyMessage } from '../util/ready.js';
import type { DataplaneMode } from '../router/dataplane-mode.js';

export interface LabRouter {
  isp: string;
  pop: string;
  name: string;
  address: string;
  configPath: string;
  managed: Managed | undefined;
  /** Its network namespace, in a netns lab. */
  ns: string | undefined;
  /** The data plane it reported at start: `kernel` or `node`, and why. */
  dataplane: ReadyMessage['dataplane'];
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
  /** The portal's network namespace, in a netns lab. */
  ns: string | undefined;
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
  ns: string | undefined;
}

/**
 * An extra namespace in a netns lab for programs that know nothing of the lab (curl,
 * iperf3, ping, an HTTP server, `arrow endpoint --tun`): one veth into the lab network.
 */
export interface LabHost {
  name: string;
  /** Its namespace: `ip netns exec <ns> …` runs a program there. */
  ns: string;
  /** Its interface inside `ns` (for TUN routes or link-down). */
  link: string;
  /** Its IPv4 address on the lab network (a /16), e.g. 10.77.250.1. */
  address: string;
  /** Starts `command` inside the namespace (`ip netns exec`); the lab kills it on stop. */
  exec(command: string[], opts?: SpawnOptions): ChildProcess;
  /** Runs `command` inside the namespace to the end, killed after `timeoutMs` (default 60 s). */
  run(
    command: string[],
    opts?: { timeoutMs?: number },
  ): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** Starts `arrow <args>` (this build's CLI) inside the namespace. */
  arrow(args: string[], opts?: SpawnOptions): ChildProcess;
}

export interface LabOptions {
  /** Working directory for configs, stores and logs. Default: a fresh temp dir, removed on stop. */
  dir?: string;
  /** Keep the directory after stop (logs for post-mortems). */
  keep?: boolean;
  /** Routers report every table change to the lab over IPC (see Lab.onTable). */
  announceTable?: boolean;
  /**
   * Every router, portal, server and the atlas in its own network namespace on 10.77.0.0/16
   * (docs/lab.md, "--netns"). Needs root; SQLite stores only. The topology's name names the
   * namespaces (1-16 lowercase letters and digits), so two labs up at once need two names.
   */
  netns?: boolean;
  /** Keep a state file for `arrow lab down|fail|heal` (always with `netns`). */
  state?: boolean;
  /**
   * Serve the portals and the atlas over HTTPS, with certificates from a CA made for this lab
   * (`<dir>/ca.pem`, trusted by this process's clients and passed to the lab's components).
   */
  tls?: boolean;
  /**
   * The routers' data plane (`arrow router --dataplane`). Default `auto`: the kernel fast path in a
   * netns lab (each router has an interface of its own), the Node path on loopback, each saying why.
   */
  dataplane?: DataplaneMode;
  /** Told of each component as it comes up while the lab starts, as `NAME ready (i/N)` (a progress bar). */
  onProgress?: (line: string) => void;
}

/** Where each kind of node sits in the address plan: loopback 127.1.x.y, or 10.77.x.y in a netns lab. */
function planHost(netns: boolean, third: number, fourth: number): string {
  return `${netns ? LAB_NET : '127.1'}.${third}.${fourth}`;
}

/** The egress TUN of a router in an egress PoP (each router has a namespace of its own). */
export const EGRESS_TUN = 'arrow-egress';
/** Where lab customers' tunnel addresses come from (deliver-ip `source`): the shared address space of RFC 6598. */
export const LAB_CUSTOMER_PREFIXES = '100.64.0.0/10';

/** Hosts added with `addHost` are at 10.77.250.1 and up. */
const HOST_SUBNET = 250;

/** Addresses that read like a plan: 127.1.<isp>.<pop><router>, e.g. 127.1.2.12 (10.77.2.12 with netns). */
function routerHost(netns: boolean, ispIndex: number, popIndex: number, routerIndex: number): string {
  return planHost(netns, ispIndex + 1, (popIndex + 1) * 10 + routerIndex + 1);
}

/**
 * A whole multi-ISP network on one machine: every router, portal and server a real
 * OS process on its own loopback address, one SQLite store per ISP.
 */
export class Lab {
  readonly isps: LabIsp[] = [];
  readonly servers: LabServer[] = [];
  /** The atlas, when the topology asks for one. */
  atlas: { url: string; managed: Managed; configPath: string; ns: string | undefined } | undefined;
  /** Extra namespaces made with `addHost` (netns labs). */
  readonly hosts: LabHost[] = [];
  /** Each ISP's edge router behind its egress PoPs (netns labs with `egress`): BIRD, and its control socket. */
  private readonly esrs = new Map<string, { host: LabHost; socket: string }>();
  private readonly clusters: EtcdCluster[] = [];
  private readonly hostProcs = new Set<ChildProcess>();
  /** Every component process spawned and not yet exited, ready or not: what `stop` must end. */
  private readonly components = new Set<ChildProcess>();
  /** What `fail` did to each node, so `heal` can undo it. */
  private readonly failed = new Map<string, FailKind>();
  private stopped = false;
  private net: LabNetwork | undefined;
  private onExit: (() => void) | undefined;
  /** Set once this lab wrote its state file: only then is the file (named after the lab) ours to remove. */
  private stateSaved = false;
  /** The control socket of `arrow lab up`, recorded in the state file. */
  control: string | undefined;
  /** The lab's CA, when it serves HTTPS: `ca.path` is what `--ca` takes. */
  ca: LabCa | undefined;

  private constructor(
    readonly topology: Topology,
    readonly dir: string,
    private readonly keep: boolean,
    private readonly announceTable: boolean,
    private readonly stateful: boolean,
    private readonly dataplane: DataplaneMode | undefined,
  ) {}

  /** True when every node runs in its own network namespace. */
  get netns(): boolean {
    return this.net !== undefined;
  }

  /** Called for every table change a router reports, when started with `announceTable`. */
  onTable: ((router: string, msg: TableMessage) => void) | undefined;

  static async start(topology: Topology, opts: LabOptions = {}): Promise<Lab> {
    const egress = topology.isps.flatMap((i) =>
      i.pops.filter((p) => p.egress).map((p) => `${i.name}/${p.name}`),
    );
    // An egress router makes a TUN and routes customer prefixes into it: only inside a namespace of its own.
    if (egress.length > 0 && !opts.netns)
      throw new Error(
        `egress PoPs (${egress.join(', ')}) need a netns lab (--netns): their routers add interfaces and routes`,
      );
    const natOnly = topology.isps.flatMap((i) =>
      i.pops.filter((p) => p.egressSnat && !p.egress).map((p) => `${i.name}/${p.name}`),
    );
    if (natOnly.length > 0)
      throw new Error(`egressSnat needs egress: true on the same PoP (${natOnly.join(', ')})`);
    const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'arrow-lab-'));
    mkdirSync(join(dir, 'logs'), { recursive: true });
    const lab = new Lab(
      topology,
      dir,
      opts.keep ?? opts.dir !== undefined,
      opts.announceTable ?? false,
      (opts.state ?? false) || (opts.netns ?? false),
      opts.dataplane,
    );
    lab.onExit = (): void => lab.killAllSync();
    if (opts.onProgress) {
      const t = topology;
      lab.progress = {
        say: opts.onProgress,
        done: 0,
        total:
          t.servers.length +
          t.isps.reduce((n, i) => n + 1 + i.pops.reduce((m, p) => m + p.routers, 0), 0) +
          (t.atlas ? 1 : 0),
      };
    }
    process.once('exit', lab.onExit);
    try {
      if (opts.netns) {
        const etcd = topology.isps.find((i) => i.store.kind === 'etcd');
        if (etcd)
          throw new Error(
            `--netns runs SQLite stores only (ISP ${etcd.name} asks for etcd, which listens on loopback)`,
          );
        lab.net = await LabNetwork.create(topology.name);
      }
      if (opts.tls) {
        lab.ca = await LabCa.create(dir, topology.name);
        trustCa(lab.ca.pem);
      }
      lab.saveState();
      await lab.boot();
      lab.progress = undefined;
      if (lab.net) for (const h of topology.hosts ?? []) await lab.addHost(h);
      if (lab.net) await lab.startEgressRouting();
      lab.saveState();
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

  /** A router's process state and the end of its log, for a failure message. */
  routerState(name: string): string {
    const m = this.router(name).managed;
    return m ? componentState(m) : 'not started';
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

  /** In a netns lab, makes the node's namespace (address `host`) and returns its name. */
  private async place(node: string, host: string): Promise<string | undefined> {
    if (!this.net) return undefined;
    return (await this.net.addNode(node, host)).ns;
  }

  private async boot(): Promise<void> {
    const t = this.topology;
    const netns = this.netns;
    for (const [si, s] of t.servers.entries()) {
      const host = planHost(netns, 0, 100 + si);
      const ns = await this.place(`server-${s.name}`, host);
      const managed = await this.startOwned(
        ['echo-server', '--listen', `${host}:0`],
        join(this.dir, 'logs', `server-${s.name}.log`),
        undefined,
        { netns: ns },
      );
      this.servers.push({ name: s.name, address: managed.ready.address!, managed, ns });
    }
    // Routers first (they pick their ports), then each portal with the addresses they got.
    await allSettledOrThrow(t.isps.map((isp, ii) => this.bootIsp(isp, ii)));
    if (t.atlas) await this.bootAtlas(t.atlas);
  }

  /** An atlas over the whole lab: every portal, the topology's peerings, servers as targets. */
  private async bootAtlas(a: NonNullable<Topology['atlas']>): Promise<void> {
    const host = planHost(this.netns, 0, 2);
    const ns = await this.place('atlas', host);
    const config: AtlasConfig = {
      listen: `${host}:0`,
      isps: this.isps.map((i) => ({ name: i.name, portal: i.url })),
      peerings: this.topology.peerings ?? [],
      targets: this.topology.servers.flatMap((s) =>
        s.deliveredBy?.length
          ? [{ prefix: `${mustParseAddress(this.server(s.name).address).host}/32`, pops: s.deliveredBy }]
          : [],
      ),
      refreshMs: 2000,
      measure: { intervalMs: a.measureIntervalMs, echoes: a.echoes, timeoutMs: 500, history: a.history },
      // Without TLS, a netns lab's 10.77/16 is a private network of namespaces: plain HTTP is allowed there.
      ...(this.ca
        ? { tls: await this.ca.issue('atlas', host), ca: this.ca.path }
        : { allowPlainHttp: this.netns }),
    };
    const path = join(this.dir, 'atlas.yaml');
    writeFileSync(path, stringify(config));
    const managed = await this.startOwned(
      ['atlas', '--config', path],
      join(this.dir, 'logs', 'atlas.log'),
      undefined,
      {
        netns: ns,
      },
    );
    this.atlas = { url: managed.ready.url!, managed, configPath: path, ns };
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
        const impair = routerImpair(isp, pop);
        const host = routerHost(this.netns, ii, pi, r);
        const config: RouterConfigInput = {
          isp: isp.name,
          pop: pop.name,
          name,
          listen: `${host}:0`,
          store,
          statsIntervalMs: this.topology.statsIntervalMs,
          storePollMs: 5,
          socketBufferBytes: 4 * 1024 * 1024,
          registrationTtlMs: 3000,
          announceTable: this.announceTable,
          ...(this.dataplane ? { dataplane: this.dataplane } : {}),
          ...(impair ? { impair } : {}),
          ...(pop.egress
            ? {
                egress: {
                  tun: EGRESS_TUN,
                  ...(pop.egressSnat
                    ? { snat: 'masquerade' }
                    : { announceTable: ANNOUNCE_TABLE, standbyTable: STANDBY_TABLE }),
                },
              }
            : {}),
          ...(this.topology.failover
            ? { failover: this.topology.failover as RouterConfigInput['failover'] }
            : {}),
        };
        const configPath = join(this.dir, `router-${name}.yaml`);
        writeFileSync(configPath, stringify(config));
        const ns = await this.place(name, host);
        // The kernel fast path routes with the kernel's FIB, which forwards only where allowed.
        if (this.net) await this.net.enableForwarding(name, pop.egress === true);
        routers.push({
          isp: isp.name,
          pop: pop.name,
          name,
          address: '',
          configPath,
          managed: undefined,
          ns,
          dataplane: undefined,
        });
      }
      pops.push({ name: pop.name, routers });
    }
    // The first router creates the store's schema; the rest start together.
    const all = pops.flatMap((p) => p.routers);
    await this.startRouter(all[0]!);
    await allSettledOrThrow(all.slice(1).map((r) => this.startRouter(r)));

    const accounts = isp.accounts.map((a) => ({ name: a.name, apiKey: a.apiKey ?? newApiKey() }));
    const portalHost = planHost(this.netns, ii + 1, 1);
    const portalNs = await this.place(`portal-${isp.name}`, portalHost);
    const portalConfig: PortalConfig = {
      isp: isp.name,
      listen: `${portalHost}:0`,
      store,
      pops: pops.map((p) => ({ name: p.name, routers: p.routers.map((r) => r.address) })),
      offers: isp.offers,
      // The portal gets hashes only; the lab keeps the keys, as the customer would.
      accounts: await Promise.all(
        accounts.map(async (a) => ({ name: a.name, apiKeyHash: await hashApiKey(a.apiKey) })),
      ),
      // The SLA history reads each of the routers' publishes once (portal/sla.ts, SlaSampler).
      sla: {
        ...(Value.Default(SlaConfigSchema, {}) as Static<typeof SlaConfigSchema>),
        sampleMs: this.topology.statsIntervalMs,
      },
      // Benchmarks drive thousands of creates a second through one account.
      rateLimit: { max: 100_000, windowMs: 1000 },
      ...(this.ca
        ? { tls: await this.ca.issue(`portal-${isp.name}`, portalHost) }
        : { allowPlainHttp: this.netns }),
      // The whole lab lives on one address plan that a production policy refuses (loopback, or
      // the netns lab's private net): open it explicitly. Production ISPs keep the default.
      targetPolicy: { allow: [this.netns ? `${LAB_NET}.0.0/16` : '127.0.0.0/8'], deny: [], internal: [] },
      ...(isp.pops.some((p) => p.egress)
        ? {
            ipTransit: {
              pops: isp.pops.filter((p) => p.egress).map((p) => p.name),
              customerPrefixes: [LAB_CUSTOMER_PREFIXES],
            },
          }
        : {}),
    };
    const portalConfigPath = join(this.dir, `portal-${isp.name}.yaml`);
    writeFileSync(portalConfigPath, stringify(portalConfig));
    const managed = await this.startOwned(
      ['portal', '--config', portalConfigPath],
      join(this.dir, 'logs', `portal-${isp.name}.log`),
      undefined,
      { netns: portalNs },
    );
    this.isps[ii] = {
      name: isp.name,
      url: managed.ready.url!,
      accounts,
      storePath,
      etcd,
      store,
      portalConfigPath,
      pops,
      managed,
      ns: portalNs,
    };
  }

  /** While the lab boots: who to tell of each component that is ready, and how many of how many. */
  private progress: { say: (line: string) => void; done: number; total: number } | undefined;

  /** `startComponent`, with the process owned by the lab from its spawn: a failed boot leaves no orphan. */
  private async startOwned(
    args: string[],
    logPath: string,
    timeoutMs: number | undefined,
    opts: { netns?: string | undefined },
  ): Promise<Managed> {
    const managed = await startComponent(args, logPath, timeoutMs, {
      ...(opts.netns ? { netns: opts.netns } : {}),
      onSpawn: (proc) => {
        this.components.add(proc);
        proc.once('exit', () => this.components.delete(proc));
      },
    });
    const p = this.progress;
    if (p) p.say(`${basename(logPath, '.log')} ready (${++p.done}/${p.total})`);
    return managed;
  }

  private async startRouter(r: LabRouter): Promise<void> {
    r.managed = await this.startOwned(
      ['router', '--config', r.configPath],
      join(this.dir, 'logs', `router-${r.name}.log`),
      undefined,
      { netns: r.ns },
    );
    r.dataplane = r.managed.ready.dataplane;
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

  /** Fault injection: SIGKILL (crash) or SIGSTOP (hang) a router; SIGCONT resumes it. */
  kill(name: string, signal: 'SIGKILL' | 'SIGSTOP' | 'SIGCONT' | 'SIGTERM' = 'SIGKILL'): void {
    const r = this.router(name);
    r.managed?.proc.kill(signal);
  }

  /**
   * Waits until a killed router's process is gone (at most `ms`): only then are its sockets and its
   * kernel program's link closed, which on a busy machine can come well after the signal.
   */
  async exited(name: string, ms = 5000): Promise<void> {
    const proc = this.router(name).managed?.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise<boolean>((resolve) => proc.once('exit', () => resolve(true)));
    const timer = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms).unref());
    if (!(await Promise.race([gone, timer])))
      throw new Error(`router ${name} still runs ${ms} ms after its signal`);
  }

  /** Starts a stopped or killed router again, on the same address and store. */
  async restart(name: string): Promise<void> {
    const r = this.router(name);
    if (r.managed) {
      r.managed.proc.kill('SIGCONT');
      await stopComponent(r.managed.proc, 1000);
    }
    await this.startRouter(r);
    this.saveState();
  }

  /**
   * Failure injection on a router: `kill` (SIGKILL), `hang` (SIGSTOP) or `link-down` (its
   * interface down; netns labs only). `heal` undoes it.
   */
  async fail(node: string, kind: FailKind): Promise<string> {
    const name = await this.resolveRole(node);
    this.router(name);
    const already = this.failed.get(name);
    if (already) throw new Error(`${name} is already failed (${already}); heal it first`);
    if (kind === 'link-down') {
      if (!this.net) throw new Error('link-down needs a netns lab (arrow lab up --netns)');
      await this.net.setLink(name, false);
    } else if (kind === 'kill') this.kill(name, 'SIGKILL');
    else if (kind === 'hang') this.kill(name, 'SIGSTOP');
    else throw new Error(`unknown failure kind ${String(kind)}: kill, hang or link-down`);
    this.failed.set(name, kind);
    return name;
  }

  /**
   * A router name as given, or the router a role names: `egress:ISP` is the egress router of ISP
   * that took a customer over most recently (the active decapsulation node, from the routers'
   * published `egress.serving`).
   */
  async resolveRole(node: string): Promise<string> {
    const m = /^egress:([a-z][a-z0-9-]*)$/.exec(node);
    if (!m) return node;
    const isp = this.isp(m[1]!);
    const store = await openStore(isp.store, { busyTimeoutMs: 1000, isp: isp.name });
    try {
      let best: { router: string; since: number } | undefined;
      for (const s of await store.listRouterStats()) {
        if (this.failed.has(s.router)) continue;
        for (const c of Object.values(s.egress?.serving ?? {})) {
          const since = Date.parse(c.since);
          if (!best || since > best.since) best = { router: s.router, since };
        }
      }
      if (!best)
        throw new Error(`no egress router of ${isp.name} serves a customer now (egress:${isp.name})`);
      return best.router;
    } finally {
      await store.close();
    }
  }

  /** Undoes `fail`: a killed router restarts on the same address, a hung one continues, a link comes up. */
  async heal(name: string): Promise<void> {
    this.router(name);
    const kind = this.failed.get(name);
    if (!kind) throw new Error(`${name} is not failed (nothing to heal)`);
    if (kind === 'link-down') await this.net!.setLink(name, true);
    else if (kind === 'hang') this.kill(name, 'SIGCONT');
    else await this.restart(name);
    this.failed.delete(name);
  }

  /** The failures injected with `fail` and not healed yet. */
  get failures(): Record<string, FailKind> {
    return Object.fromEntries(this.failed);
  }

  /**
   * An extra namespace on the lab network (netns labs), for unmodified programs and TUN
   * endpoints. Its namespace is `arrow-<lab>-host-<name>`, its address 10.77.250.N.
   */
  /** The edge router (ESR) of `isp`'s egress PoPs: route the customers' prefixes via its address. */
  esr(isp: string): LabHost {
    const e = this.esrs.get(isp);
    if (!e) throw new Error(`ISP ${isp} has no egress PoP (topology: egress: true), so no edge router`);
    return e.host;
  }

  /** `birdc show route` style questions to an ISP's edge router: its BIRD's control socket. */
  esrSocket(isp: string): string {
    this.esr(isp);
    return this.esrs.get(isp)!.socket;
  }

  /**
   * For each ISP with egress PoPs: an edge router namespace (`esr-<isp>`) running BIRD, and BIRD on
   * every egress router's host, peering over iBGP (src/lab/bird.ts). Waits until every session is
   * up, so the first takeover is announced at once.
   */
  private async startEgressRouting(): Promise<void> {
    for (const [ii, isp] of this.topology.isps.entries()) {
      const egress = isp.pops.filter((p) => p.egress).map((p) => p.name);
      if (egress.length === 0) continue;
      const routers = this.isp(isp.name)
        .pops.filter((p) => egress.includes(p.name))
        .flatMap((p) => p.routers);
      const esr = await this.addHost(`esr-${isp.name}`);
      // It forwards the answers to the egress routers, on the same link: no redirects, which
      // would teach the servers a router that may since have died.
      // (The kernel sends redirects when `all` or the interface says so: both off.)
      for (const key of [
        'net.ipv4.ip_forward=1',
        'net.ipv4.conf.all.send_redirects=0',
        `net.ipv4.conf.${esr.link}.send_redirects=0`,
      ])
        await this.mustRun(esr, ['sysctl', '-qw', key]);
      const asn = labAsn(ii);
      const dir = join(this.dir, 'bird');
      mkdirSync(dir, { recursive: true });
      const socket = join(dir, `esr-${isp.name}.ctl`);
      const conf = join(dir, `esr-${isp.name}.conf`);
      const hosts = routers.map((r) => mustParseAddress(r.address).host);
      writeFileSync(
        conf,
        esrBird({
          routerId: esr.address,
          asn,
          routers: hosts,
          log: join(this.dir, 'logs', `bird-esr-${isp.name}.log`),
        }),
      );
      this.trackBird(esr.exec(['bird', '-f', '-c', conf, '-s', socket]), `esr-${isp.name}`);
      for (const [i, r] of routers.entries()) {
        const rconf = join(dir, `${r.name}.conf`);
        writeFileSync(
          rconf,
          egressRouterBird({
            routerId: hosts[i]!,
            asn,
            esr: esr.address,
            log: join(this.dir, 'logs', `bird-${r.name}.log`),
          }),
        );
        const proc = spawn(
          'ip',
          ['netns', 'exec', r.ns!, 'bird', '-f', '-c', rconf, '-s', join(dir, `${r.name}.ctl`)],
          {
            stdio: 'pipe',
          },
        );
        this.hostProcs.add(proc);
        proc.once('exit', () => this.hostProcs.delete(proc));
        this.trackBird(proc, r.name);
      }
      this.esrs.set(isp.name, { host: esr, socket });
      await this.waitBgp(esr, socket, routers.length);
    }
  }

  /** A BIRD that exits while the lab runs is an error worth a line in the log. */
  private trackBird(proc: ChildProcess, where: string): void {
    let err = '';
    proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    proc.stdout?.resume();
    proc.once('exit', (code, signal) => {
      if (!this.stopped) console.error(`lab: BIRD on ${where} exited (${code ?? signal}): ${err.trim()}`);
    });
  }

  private async waitBgp(esr: LabHost, socket: string, sessions: number, ms = 20_000): Promise<void> {
    const deadline = Date.now() + ms;
    let last = '';
    while (Date.now() < deadline) {
      const r = await esr.run(['birdc', '-s', socket, 'show', 'protocols'], { timeoutMs: 5000 });
      last = r.stdout + r.stderr;
      if ((last.match(/Established/g) ?? []).length >= sessions) return;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    throw new Error(`the edge router's BGP sessions did not come up in ${ms} ms:\n${last}`);
  }

  private async mustRun(host: LabHost, command: string[]): Promise<void> {
    const r = await host.run(command, { timeoutMs: 10_000 });
    if (r.code !== 0)
      throw new Error(`${command.join(' ')} in ${host.ns}: exit ${r.code}: ${r.stderr.trim()}`);
  }

  /** The link into router or host `node` gets a capacity (netns labs; see LabNetwork.limitInbound). */
  async limitInbound(node: string, rateKbit: number, queuePackets?: number): Promise<void> {
    if (!this.net) throw new Error('limitInbound needs a netns lab');
    await this.net.limitInbound(node, rateKbit, queuePackets);
  }

  /** What the limited link into `node` carried and dropped (LabNetwork.inboundStats). */
  async inboundStats(node: string): Promise<{ packets: number; bytes: number; dropped: number }> {
    if (!this.net) throw new Error('inboundStats needs a netns lab');
    return this.net.inboundStats(node);
  }

  async addHost(name: string): Promise<LabHost> {
    if (!this.net) throw new Error('addHost needs a netns lab (Lab.start(topology, { netns: true }))');
    if (!/^[a-z][a-z0-9-]*$/.test(name)) throw new Error(`host name "${name}": use a-z, 0-9 and "-"`);
    if (this.hosts.some((h) => h.name === name)) throw new Error(`host ${name} exists`);
    if (this.hosts.length >= 254) throw new Error('at most 254 hosts');
    const node = await this.net.addNode(`host-${name}`, planHost(true, HOST_SUBNET, this.hosts.length + 1));
    const exec = (command: string[], opts: SpawnOptions = {}): ChildProcess => {
      const proc = spawn('ip', ['netns', 'exec', node.ns, ...command], { stdio: 'pipe', ...opts });
      this.hostProcs.add(proc);
      proc.once('exit', () => this.hostProcs.delete(proc));
      return proc;
    };
    const host: LabHost = {
      name,
      ns: node.ns,
      link: node.link,
      address: node.address,
      exec,
      arrow: (args, opts) => exec([process.execPath, CLI_PATH, ...args], opts),
      run: (command, opts = {}) =>
        new Promise((resolve, reject) => {
          const proc = exec(command, { stdio: ['ignore', 'pipe', 'pipe'] });
          let stdout = '';
          let stderr = '';
          proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
          proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
          const timer = setTimeout(() => proc.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
          proc.once('error', (err) => {
            clearTimeout(timer);
            reject(err);
          });
          proc.once('close', (code) => {
            clearTimeout(timer);
            resolve({ code, stdout, stderr });
          });
        }),
    };
    this.hosts.push(host);
    this.saveState();
    return host;
  }

  host(name: string): LabHost {
    const h = this.hosts.find((x) => x.name === name);
    if (!h) throw new Error(`no host ${name}`);
    return h;
  }

  /** Every component's admin API (`arrow status`, the dashboard), with its process and namespace. */
  adminTargets(): { name: string; url: string; ns?: string; pid?: number }[] {
    const out: { name: string; url: string; ns?: string; pid?: number }[] = [];
    const add = (name: string, m: Managed | undefined, ns: string | undefined): void => {
      if (m?.ready.admin)
        out.push({
          name,
          url: m.ready.admin,
          ...(ns ? { ns } : {}),
          ...(m.proc.pid !== undefined ? { pid: m.proc.pid } : {}),
        });
    };
    for (const r of this.routers) add(r.name, r.managed, r.ns);
    for (const i of this.isps) if (i) add(`portal-${i.name}`, i.managed, i.ns);
    if (this.atlas) add('atlas', this.atlas.managed, this.atlas.ns);
    return out;
  }

  /** Writes the state file `arrow lab down|fail|heal` read (when the lab keeps one). */
  saveState(): void {
    if (!this.stateful || this.stopped) return;
    const processes: Record<string, number> = {};
    for (const r of this.routers) if (r.managed?.proc.pid) processes[r.name] = r.managed.proc.pid;
    for (const i of this.isps) if (i?.managed.proc.pid) processes[`portal-${i.name}`] = i.managed.proc.pid;
    for (const s of this.servers) if (s.managed.proc.pid) processes[`server-${s.name}`] = s.managed.proc.pid;
    if (this.atlas?.managed.proc.pid) processes.atlas = this.atlas.managed.proc.pid;
    const admin: NonNullable<LabState['admin']> = {};
    for (const t of this.adminTargets()) admin[t.name] = { url: t.url, ...(t.ns ? { ns: t.ns } : {}) };
    const state: LabState = {
      name: this.topology.name,
      pid: process.pid,
      dir: this.dir,
      netns: this.netns,
      namespaces: this.net?.namespaces ?? [],
      processes,
      admin,
      ...(this.control ? { control: this.control } : {}),
    };
    writeState(state);
    this.stateSaved = true;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.onExit) process.removeListener('exit', this.onExit);
    for (const p of this.hostProcs) p.kill('SIGKILL');
    const procs = [...this.components];
    for (const p of procs) p.kill('SIGCONT');
    await Promise.all(procs.map((p) => stopComponent(p)));
    await Promise.all(this.clusters.map((c) => c.stop()));
    this.net?.destroySync();
    if (this.stateSaved) removeState(this.topology.name);
    if (!this.keep) rmSync(this.dir, { recursive: true, force: true });
  }

  private killAllSync(): void {
    for (const p of this.components) p.kill('SIGKILL');
    for (const p of this.hostProcs) p.kill('SIGKILL');
    this.net?.destroySync();
    if (this.stateSaved && !this.stopped) removeState(this.topology.name);
  }
}

/**
 * A router's impairment: its PoP's own `impair` replaces its ISP's, and the ISP's
 * `transitDelayMs` adds half at every router (a crossing passes an ingress and an egress PoP).
 */
function routerImpair(
  isp: Topology['isps'][0],
  pop: Topology['isps'][0]['pops'][0],
): RouterConfigInput['impair'] | undefined {
  const impair = pop.impair ?? isp.impair;
  const transit = (isp.transitDelayMs ?? 0) / 2;
  if (!transit) return impair;
  return { ...impair, delayMs: (impair?.delayMs ?? 0) + transit };
}

/**
 * Waits for every start to settle, then throws the first failure: stopping a lab while some of
 * its components are still starting would leave those running, unseen by the stop.
 */
async function allSettledOrThrow(starts: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(starts);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
