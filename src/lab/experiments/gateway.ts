import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { Lab, LAB_CUSTOMER_PREFIXES, type LabHost } from '../lab.js';
import { defaultTopology, type Topology } from '../topology.js';
import { throughSegments } from '../demo.js';
import type { RouterStats } from '../../store/circuit.js';
import { openStore } from '../../store/open.js';
import type { DataplaneMode } from '../../router/dataplane-mode.js';
import { EXPERIMENT_CAPACITY_MBPS, TUN_PAIR_MBPS } from './setup.js';

/**
 * IP transit in the netns lab (issue 12, docs/egress.md): two ISPs, alpha ams→fra and beta
 * fra→lon, where lon is an egress PoP (2 routers, each with a TUN, BIRD, and the PoP's edge
 * router `esr-beta`). Hosts: `client`, the customer's, and `web`, which runs nothing of ours and
 * routes customer addresses to the edge router. The experiments' `--mode gateway` and
 * test/ip-transit.test.ts both run on it.
 */
export interface GatewayLab {
  lab: Lab;
  client: LabHost;
  web: LabHost;
  esr: LabHost;
}

/** The customer's tunnel address: the gateway's `--address`, the path's `source`. */
export const CUSTOMER = '100.64.0.2';
/** The egress ISP, as `arrow lab fail egress:beta` names its serving router. */
export const EGRESS_ISP = 'beta';

/** `snat`: the egress routers source-NAT instead of announcing customers (docs/egress.md). */
export function gatewayTopology(name: string, snat = false): Topology {
  const t = defaultTopology();
  const [alpha, beta] = t.isps;
  return {
    ...t,
    name,
    statsIntervalMs: 500,
    isps: [
      alpha!,
      {
        ...beta!,
        pops: [
          { name: 'fra', routers: 2 },
          { name: 'lon', routers: 2, egress: true, ...(snat ? { egressSnat: true } : {}) },
        ],
        offers: beta!.offers.map((o) => ({
          ...o,
          from: o.from === 'par' ? 'lon' : o.from,
          to: o.to === 'par' ? 'lon' : o.to,
        })),
      },
    ].map((isp) => ({
      ...isp,
      // As in the other experiments: the policer never binds (each gateway buys TUN_PAIR_MBPS).
      offers: isp.offers.map((o) => ({ ...o, capacityMbps: EXPERIMENT_CAPACITY_MBPS })),
    })),
    servers: [],
    hosts: ['client', 'web'],
  };
}

export async function startGatewayLab(
  name: string,
  o: { dataplane?: DataplaneMode; keep?: boolean; snat?: boolean } = {},
): Promise<GatewayLab> {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0)
    throw new Error('IP transit in the lab needs root: it makes network namespaces, veth links and TUNs');
  const lab = await Lab.start(gatewayTopology(name, o.snat), {
    netns: true,
    ...(o.keep ? { keep: true } : {}),
    ...(o.dataplane ? { dataplane: o.dataplane } : {}),
  });
  try {
    const client = lab.hosts.find((h) => h.name === 'client')!;
    const web = lab.hosts.find((h) => h.name === 'web')!;
    const esr = lab.esr(EGRESS_ISP);
    // The web host knows nothing of Arrow: an ordinary route sends customer addresses to the
    // edge router, which BGP tells which egress router serves each. With source NAT it needs
    // none: it answers the egress router's own address.
    if (o.snat) return { lab, client, web, esr };
    const route = await web.run(['ip', 'route', 'replace', LAB_CUSTOMER_PREFIXES, 'via', esr.address]);
    if (route.code !== 0) throw new Error(`route to the customers on the web host: ${route.stderr}`);
    return { lab, client, web, esr };
  } catch (err) {
    await lab.stop();
    throw err;
  }
}

/** A customer gateway (`arrow endpoint --tun --route … --path …` on the client host), up. */
export interface Gateway {
  proc: ChildProcess;
  /** Its stdout and stderr so far. */
  output(): string;
  stop(): Promise<void>;
}

/**
 * Starts the customer's gateway: a path through alpha and beta whose last circuit is deliver-ip
 * to `prefixes`, with `routes` into its TUN (defaults: the web host alone). Resolves once its TUN
 * is up.
 */
export async function startGateway(
  g: GatewayLab,
  o: { tag: string; prefixes?: string[]; routes?: string[] },
): Promise<Gateway> {
  const dir = g.lab.dir;
  const prefixes = o.prefixes ?? [`${g.web.address}/32`];
  const pathFile = join(dir, `gateway-${o.tag}-path.yaml`);
  writeFileSync(
    pathFile,
    stringify({
      segments: throughSegments(g.lab).map((s) => ({ ...s, bandwidthMbps: TUN_PAIR_MBPS })),
      target: { kind: 'ip', prefixes },
    }),
  );
  const logPath = join(dir, 'logs', `gateway-${o.tag}.log`);
  const fd = openSync(logPath, 'w');
  const proc = g.client.arrow(
    [
      'endpoint',
      '--tun',
      'arw0',
      '--address',
      `${CUSTOMER}/32`,
      ...(o.routes ?? prefixes).flatMap((r) => ['--route', r]),
      '--path',
      pathFile,
      '--listen',
      `${g.client.address}:0`,
      // The peer-mode experiments' detector (src/lab/experiments/setup.ts), for like-for-like figures.
      '--detect-timeout',
      '50',
      '--probe-interval',
      '10',
    ],
    { stdio: ['ignore', fd, fd] },
  );
  closeSync(fd);
  const output = (): string => readFileSync(logPath, 'utf8');
  const stop = async (): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    // SIGINT: the gateway relinquishes its circuits, and the egress routers withdraw the customer.
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGINT');
    await Promise.race([exited, sleep(10_000).then(() => proc.kill('SIGKILL'))]);
  };
  for (let waited = 0; !/^tun arw0 up/m.test(output()); waited += 50) {
    if (proc.exitCode !== null || waited > 30_000) {
      await stop();
      throw new Error(`the customer's gateway did not come up:\n${output()}`);
    }
    await sleep(50);
  }
  return { proc, output, stop };
}

/** The egress PoP's routers' last published stats. */
export async function egressStats(lab: Lab): Promise<RouterStats[]> {
  const isp = lab.isp(EGRESS_ISP);
  const store = await openStore(isp.store, { busyTimeoutMs: 1000, isp: isp.name });
  try {
    return (await store.listRouterStats()).filter((s) => s.pop === 'lon');
  } finally {
    await store.close();
  }
}

/** The edge router's route to the customer: the egress router's address it goes via, or undefined. */
export async function esrNextHop(esr: LabHost, prefix = `${CUSTOMER}/32`): Promise<string | undefined> {
  const r = await esr.run(['ip', '-4', 'route', 'show', prefix]);
  return /via (\S+)/.exec(r.stdout)?.[1];
}

/** The host part of `host:port`. */
export function hostOf(address: string): string {
  return address.slice(0, address.lastIndexOf(':'));
}

/**
 * Polls the edge router every 10 ms until its route to the customer goes via `to`; the time it
 * did (ms since the epoch), or undefined after `ms`.
 */
export async function esrMovedTo(esr: LabHost, to: string, ms: number): Promise<number | undefined> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if ((await esrNextHop(esr)) === to) return Date.now();
    await sleep(10);
  }
  return undefined;
}

/** What one kill of the serving egress router showed (docs/egress.md, "Reliable decapsulation"). */
export interface Takeover {
  killed: string;
  sibling: string;
  /** Kill → the sibling's claim (its first DATA packet or probe for the customer), ms; null if it had claimed before. */
  takeoverMs: number | null;
  /**
   * Kill → the edge router's route to the customer via the sibling, ms (polled every 10 ms): the
   * return path's convergence. With standby announcements it does not wait for the takeover.
   */
  routeMs: number | null;
}

/**
 * SIGKILLs the egress router that serves the customer now (`arrow lab fail egress:beta`) and
 * follows the edge router's route as it moves to the sibling. `done()` (after the traffic) says
 * when the sibling took over and when the route followed.
 */
export async function killServingRouter(g: GatewayLab): Promise<{ done: () => Promise<Takeover> }> {
  // The active DN: the router the edge router routes the customer's answers to (with source NAT,
  // where there is no route, the newest claim: `arrow lab fail egress:beta`).
  const stats = await egressStats(g.lab);
  const via = await esrNextHop(g.esr);
  const killed =
    stats.find((s) => via !== undefined && hostOf(s.address) === via)?.router ??
    (await g.lab.resolveRole(`egress:${EGRESS_ISP}`));
  const sibling = stats.find((s) => s.router !== killed);
  if (!sibling) throw new Error(`no sibling of ${killed} published stats`);
  const killedAt = Date.now();
  await g.lab.fail(killed, 'kill');
  const moved = esrMovedTo(g.esr, hostOf(sibling.address), 20_000);
  return {
    done: async () => {
      const movedAt = await moved;
      const claim = (await egressStats(g.lab)).find((s) => s.router === sibling.router)?.egress?.serving?.[
        `${CUSTOMER}/32`
      ];
      const since = claim ? Date.parse(claim.since) : undefined;
      return {
        killed,
        sibling: sibling.router,
        takeoverMs: since !== undefined && since >= killedAt ? since - killedAt : null,
        routeMs: movedAt !== undefined ? movedAt - killedAt : null,
      };
    },
  };
}

/** A few pings from the customer: its first packets make an egress router take it over (and announce it). */
export async function warmUp(g: GatewayLab): Promise<void> {
  const warm = await g.client.run(['ping', '-c', '3', '-i', '0.1', '-W', '2', '-I', CUSTOMER, g.web.address]);
  if (!/ [1-3] received/.test(warm.stdout)) throw new Error(`no ping through the gateway: ${warm.stdout}`);
}
