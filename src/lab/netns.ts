import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { hasCode, isExitStatus, noteUnexpected } from '../util/errors.js';

/**
 * The lab's network of namespaces (`arrow lab up --netns`): one namespace per node, each
 * with one veth into a bridge that lives in the lab's own "core" namespace. Every address
 * and link is made inside the lab's namespaces, never in the root namespace, so deleting
 * them removes everything:
 *
 *   arrow-LAB-alpha-ams-1        arrow-LAB-portal-beta       arrow-LAB-host-client
 *   [arrow-TAG-n1 10.77.1.11]    [arrow-TAG-n5 10.77.2.1]    [arrow-TAG-n9 10.77.250.1]
 *            |                            |                           |
 *   arrow-LAB-core: arrow-TAG-c1 ---- arrow-TAG-br (bridge) ---- arrow-TAG-c9
 *
 * One L2 segment and one /16, so no routes are needed. Pure naming and addressing first,
 * then the `ip` calls.
 */

/** Every namespace of every lab starts with this; `arrow lab down` and the tests look for it. */
export const NETNS_PREFIX = 'arrow-';
/** The lab's private address plan (only inside the lab's namespaces). */
export const LAB_NET = '10.77';
export const LAB_NET_BITS = 16;

/**
 * Lab names become namespace names and (their first 4 characters) link names. No dashes:
 * `arrow-demo-*` must never match the namespaces of a lab named `demo-2`.
 */
const LAB_NAME = /^[a-z0-9]{1,16}$/;
/** Interface names are at most 15 characters: `arrow-` + 4 + `-` + side + 3 base-36 digits. */
const MAX_NODES = 36 ** 3;

export function assertLabName(name: string): void {
  if (!LAB_NAME.test(name))
    throw new Error(
      `lab name "${name}" cannot name network namespaces: use 1-16 lowercase letters and digits (no "-")`,
    );
}

/** `arrow-<lab>-<node>`: a node's namespace. */
export function namespaceName(lab: string, node: string): string {
  return `${NETNS_PREFIX}${lab}-${node}`;
}

/** The namespace that holds the bridge. Node names never equal `core` (routers have dashes, others a kind prefix). */
export function coreNamespace(lab: string): string {
  return namespaceName(lab, 'core');
}

/** The per-lab part of link names: the lab name's first 4 characters. */
export function linkTag(lab: string): string {
  return lab.slice(0, 4);
}

/** The two ends of node `index`'s veth (`n` in the node, `c` in the core) and the bridge. */
export function linkNames(lab: string, index: number): { node: string; core: string; bridge: string } {
  if (!Number.isInteger(index) || index < 0 || index >= MAX_NODES)
    throw new Error(`a netns lab holds at most ${MAX_NODES} nodes`);
  const tag = `${NETNS_PREFIX}${linkTag(lab)}-`;
  const i = index.toString(36);
  return { node: `${tag}n${i}`, core: `${tag}c${i}`, bridge: `${tag}br` };
}

/** A node in the lab network: its namespace, its one interface, its address (no prefix length). */
export interface NetnsNode {
  node: string;
  ns: string;
  link: string;
  address: string;
}

/** Namespaces whose name starts with `prefix`, from `ip netns list` ("name (id: 3)" lines). */
export function listNamespaces(prefix = NETNS_PREFIX): string[] {
  const out = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.startsWith(prefix));
}

/**
 * Kills every process inside each namespace, then deletes it. Deleting the core namespace
 * destroys the bridge and every veth pair with it. Missing namespaces are not an error.
 */
export function removeNamespacesSync(names: string[]): void {
  for (const ns of names) {
    let pids: number[];
    try {
      pids = execFileSync('ip', ['netns', 'pids', ns], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      })
        .split('\n')
        .filter(Boolean)
        .map(Number);
    } catch (err) {
      // `ip` exiting non-zero: the namespace is already gone. Anything else is noted.
      if (!isExitStatus(err)) noteUnexpected(`listing the processes of namespace ${ns}`, err);
      continue;
    }
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch (err) {
        if (!hasCode(err, 'ESRCH')) noteUnexpected(`killing pid ${pid} in namespace ${ns}`, err); // ESRCH: exited meanwhile
      }
    }
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch (err) {
      if (!isExitStatus(err)) noteUnexpected(`deleting namespace ${ns}`, err); // exit status: gone meanwhile
    }
  }
}

const execIp = promisify(execFile);

async function ip(...args: string[]): Promise<void> {
  try {
    await execIp('ip', args);
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(' ')}: ${(e.stderr ?? e.message).trim()}`, { cause: err });
  }
}

/** The namespaces, veths and bridge of one lab. */
export class LabNetwork {
  private readonly nodes = new Map<string, NetnsNode>();
  private nextIndex = 1;
  private destroyed = false;

  private constructor(
    readonly lab: string,
    readonly core: string,
    readonly bridge: string,
  ) {}

  /** Makes the core namespace and its bridge. Refuses when the lab's namespaces exist already. */
  static async create(lab: string): Promise<LabNetwork> {
    assertLabName(lab);
    if (process.getuid?.() !== 0)
      throw new Error('--netns needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN to make network namespaces)');
    const left = listNamespaces(`${NETNS_PREFIX}${lab}-`);
    if (left.length)
      throw new Error(
        `namespaces of a lab named "${lab}" exist (${left[0]}${left.length > 1 ? `, +${left.length - 1}` : ''}): ` +
          `is it running, or did it crash? \`arrow lab down ${lab}\` removes them`,
      );
    const net = new LabNetwork(lab, coreNamespace(lab), linkNames(lab, 0).bridge);
    try {
      await ip('netns', 'add', net.core);
      await ip('-n', net.core, 'link', 'set', 'lo', 'up');
      await ip('-n', net.core, 'link', 'add', net.bridge, 'type', 'bridge');
      await ip('-n', net.core, 'link', 'set', net.bridge, 'up');
    } catch (err) {
      net.destroySync();
      throw err;
    }
    return net;
  }

  /** Every namespace made so far, core first. */
  get namespaces(): string[] {
    return [this.core, ...[...this.nodes.values()].map((n) => n.ns)];
  }

  node(name: string): NetnsNode {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no node ${name} in lab network ${this.lab}`);
    return n;
  }

  /** A namespace for `node` with one veth into the bridge, addressed `address`/16 and up. */
  async addNode(node: string, address: string): Promise<NetnsNode> {
    if (this.nodes.has(node)) throw new Error(`node ${node} exists in lab network ${this.lab}`);
    if (!address.startsWith(`${LAB_NET}.`))
      throw new Error(`${address} is outside ${LAB_NET}.0.0/${LAB_NET_BITS}`);
    const links = linkNames(this.lab, this.nextIndex++);
    const n: NetnsNode = { node, ns: namespaceName(this.lab, node), link: links.node, address };
    // Recorded before it exists, so a failure half-way is still cleaned up.
    this.nodes.set(node, n);
    await ip('netns', 'add', n.ns);
    await ip('-n', n.ns, 'link', 'set', 'lo', 'up');
    await ip(
      '-n',
      this.core,
      'link',
      'add',
      links.core,
      'type',
      'veth',
      'peer',
      'name',
      n.link,
      'netns',
      n.ns,
    );
    await ip('-n', this.core, 'link', 'set', links.core, 'master', this.bridge, 'up');
    await ip('-n', n.ns, 'addr', 'add', `${address}/${LAB_NET_BITS}`, 'dev', n.link);
    await ip('-n', n.ns, 'link', 'set', n.link, 'up');
    return n;
  }

  /**
   * Lets the kernel forward on the node's interface (net.ipv4.conf.<link>.forwarding=1, inside its
   * namespace only): the kernel fast path's route lookup (bpf_fib_lookup) refuses to forward
   * otherwise, and passes every packet up to the Node router (docs/dataplane.md).
   */
  async enableForwarding(node: string, everyInterface = false): Promise<void> {
    const n = this.node(node);
    // An egress router's host forwards between its TUN and its link: every interface, the TUN
    // (made later by the router) included, which `ip_forward` sets through conf.all and conf.default.
    const key = everyInterface ? 'net.ipv4.ip_forward' : `net.ipv4.conf.${n.link}.forwarding`;
    try {
      await execIp('ip', ['netns', 'exec', n.ns, 'sysctl', '-qw', `${key}=1`]);
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`enabling forwarding on ${n.link} in ${n.ns}: ${(e.stderr ?? e.message).trim()}`, {
        cause: err,
      });
    }
  }

  /**
   * Gives the link into `node` a capacity (lab only: an access link a flood can saturate): a token
   * bucket (tc tbf) on the bridge's side of its veth, so what the bridge sends the node beyond
   * `rateKbit` waits in a FIFO of `queuePackets` packets (pfifo under the bucket) and is dropped
   * when it is full, whatever its size: a router port's queue counted in packets (one counted in
   * bytes would favour small packets). The other direction is not limited.
   */
  async limitInbound(node: string, rateKbit: number, queuePackets = 10): Promise<void> {
    const dev = this.coreLink(node);
    const tc = async (args: string[]): Promise<void> => {
      try {
        await execIp('tc', ['-n', this.core, 'qdisc', 'replace', 'dev', dev, ...args]);
      } catch (err) {
        const e = err as { stderr?: string; message: string };
        throw new Error(`tc qdisc on ${dev}: ${(e.stderr ?? e.message).trim()}`, { cause: err });
      }
    };
    // A bucket of a few full-size frames; the latency bound is moot, the pfifo below holds the queue.
    await tc(['root', 'handle', '1:', 'tbf', 'rate', `${rateKbit}kbit`, 'burst', '8000', 'latency', '1s']);
    await tc(['parent', '1:1', 'handle', '10:', 'pfifo', 'limit', String(queuePackets)]);
  }

  /** What the link into `node` carried and dropped since `limitInbound` (its bucket's counters). */
  async inboundStats(node: string): Promise<{ packets: number; bytes: number; dropped: number }> {
    const dev = this.coreLink(node);
    const { stdout } = await execIp('tc', ['-n', this.core, '-s', '-j', 'qdisc', 'show', 'dev', dev]);
    const q = (
      JSON.parse(stdout) as { kind: string; root?: boolean; packets: number; bytes: number; drops: number }[]
    ).find((x) => x.kind === 'tbf' && x.root);
    if (!q) throw new Error(`no tbf on ${dev}: call limitInbound first`);
    return { packets: q.packets, bytes: q.bytes, dropped: q.drops };
  }

  /** The bridge's end of the node's veth (in the core namespace). */
  private coreLink(node: string): string {
    const n = this.node(node);
    const prefix = `${NETNS_PREFIX}${linkTag(this.lab)}-`;
    return `${prefix}c${n.link.slice(prefix.length + 1)}`;
  }

  /** Takes the node's interface down or up (its address stays; `link-down` fault injection). */
  async setLink(node: string, up: boolean): Promise<void> {
    const n = this.node(node);
    await ip('-n', n.ns, 'link', 'set', n.link, up ? 'up' : 'down');
  }

  /** Kills what runs in the lab's namespaces and deletes them all (nodes first, core last). */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    removeNamespacesSync([...this.namespaces.slice(1), this.core]);
  }
}
