import { isIPv4 } from 'node:net';
import { runNft } from '../util/nft.js';

/**
 * DoS protection at the destination's host (ARROW §3.5, "the endpoint's ISP can drop all
 * non-ARROW traffic"; docs/services.md): an nftables table of our own that accepts, on input,
 * only what comes from the egress routers that deliver the destination's circuits, and drops and
 * counts everything else. Loopback and replies to connections the host opened itself
 * (conntrack established/related) pass, so the host can still reach its portals and DNS.
 *
 * The table is ours alone (`inet arrow_protect_NAME`): installing replaces a stale one of the same
 * name in one transaction, removing deletes it, and no other table or chain is touched.
 */

export interface ProtectOptions {
  /** The egress routers' IPv4 addresses: the only sources whose packets reach the host. */
  egress: string[];
  /** With ports: only UDP to these ports is accepted from the egress routers (the service's sockets). */
  ports?: number[];
  /** Names the table `arrow_protect_NAME` (letters, digits, `_`), so several services can coexist. */
  name?: string;
  /**
   * TUN interfaces of the destination's own `arrow endpoint --tun`: what arrives on them was
   * decapsulated from its circuits (ARROW by construction), and is counted as `arrow`.
   */
  tun?: string[];
}

export interface PacketCount {
  packets: number;
  bytes: number;
}

export interface ProtectCounters {
  /** From the egress routers: ARROW deliveries. */
  arrow: PacketCount;
  /** Replies to connections the host opened (conntrack established/related). */
  established: PacketCount;
  /** Everything else addressed to the host: dropped. */
  dropped: PacketCount;
}

const NAME = /^[A-Za-z0-9_]{1,32}$/;

/** Validates options and returns the nftables script that installs the table (pure, for tests). */
export function protectRuleset(o: ProtectOptions): { table: string; script: string } {
  const name = o.name ?? 'default';
  if (!NAME.test(name)) throw new Error(`protection name "${name}": use 1-32 letters, digits and "_"`);
  if (o.egress.length === 0) throw new Error('name at least one egress router address');
  for (const a of o.egress)
    if (!isIPv4(a)) throw new Error(`egress router "${a}" is not an IPv4 address (a host, no port)`);
  for (const p of o.ports ?? [])
    if (!Number.isInteger(p) || p < 1 || p > 65535) throw new Error(`port ${p} is not 1-65535`);
  for (const t of o.tun ?? [])
    if (!/^[A-Za-z0-9_.-]{1,15}$/.test(t))
      throw new Error(`tun "${t}" is not an interface name (1-15 letters, digits, _ . -)`);
  const table = `arrow_protect_${name}`;
  const ports = o.ports?.length ? ` udp dport { ${o.ports.join(', ')} }` : '';
  // `add` then `delete` then the definition, in one transaction: a table left by a crashed run is
  // replaced, and there is never a moment with half the rules.
  const script = `add table inet ${table}
delete table inet ${table}
table inet ${table} {
  set egress {
    type ipv4_addr
    elements = { ${o.egress.join(', ')} }
  }
  counter arrow { }
  counter established { }
  counter dropped { }
  chain input {
    type filter hook input priority filter - 10; policy accept;
    iif "lo" accept
    ip saddr @egress${ports} counter name "arrow" accept${(o.tun ?? [])
      .map(
        (t) => `
    iifname "${t}" counter name "arrow" accept`,
      )
      .join('')}
    ct state established,related counter name "established" accept
    counter name "dropped" drop
  }
}
`;
  return { table, script };
}

async function nft(args: string[], input?: string): Promise<string> {
  try {
    return await runNft(args, input);
  } catch (err) {
    throw new Error(`nft ${args.join(' ')}: ${(err as Error).message}`, { cause: err });
  }
}

/** An installed protection: read its counters, and remove it. */
export class Protection {
  private removed = false;

  private constructor(
    readonly table: string,
    readonly options: ProtectOptions,
  ) {}

  /** Installs the table (needs CAP_NET_ADMIN in the host's network namespace). */
  static async install(o: ProtectOptions): Promise<Protection> {
    const { table, script } = protectRuleset(o);
    await nft(['-f', '-'], script);
    return new Protection(table, o);
  }

  async counters(): Promise<ProtectCounters> {
    const out = await nft(['-j', 'list', 'counters', 'table', 'inet', this.table]);
    const parsed = JSON.parse(out) as { nftables: { counter?: { name: string } & PacketCount }[] };
    const get = (name: string): PacketCount => {
      const c = parsed.nftables.find((x) => x.counter?.name === name)?.counter;
      if (!c) throw new Error(`nft table ${this.table} has no counter ${name}: was it changed by hand?`);
      return { packets: c.packets, bytes: c.bytes };
    };
    return { arrow: get('arrow'), established: get('established'), dropped: get('dropped') };
  }

  /** Deletes the table; idempotent. */
  async remove(): Promise<void> {
    if (this.removed) return;
    await nft(['delete', 'table', 'inet', this.table]);
    this.removed = true;
  }
}

/** Whether a table of that name exists (for tests and `arrow protect` cleanup checks). */
export async function tableExists(table: string): Promise<boolean> {
  const out = await nft(['list', 'tables', 'inet']);
  return out.split('\n').some((l) => l.trim() === `table inet ${table}`);
}
