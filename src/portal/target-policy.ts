import { BlockList } from 'node:net';
import { Type, type Static } from '@sinclair/typebox';
import { PrefixString } from '../util/address-schema.js';
import { canonicalHost, parsePrefix, type IpPrefix, type UdpAddress } from '../wire/address.js';

/**
 * Where this ISP's routers may be told to send customer packets: deliver targets, deliver
 * endpoint addresses, next hops and reply hops. Customers choose these addresses, so without
 * a policy one API call could aim the egress at multicast groups, at broadcast, or at the
 * ISP's own infrastructure. Order of the rules (docs/api.md, docs/operations.md):
 *
 * 1. always refused, whatever `allow` says: unspecified/this-network (0.0.0.0/8, ::),
 *    multicast (224.0.0.0/4, ff00::/8), limited broadcast (255.255.255.255);
 * 2. `deny` prefixes: refused;
 * 3. `allow` prefixes: accepted (this is how a lab on loopback opens 127.0.0.0/8);
 * 4. refused by default: loopback (127.0.0.0/8, ::1), the `internal` prefixes, and the ISP's own
 *    hosts: its routers, its portal and its store members;
 * 5. everything else: accepted.
 */
export const TargetPolicySchema = Type.Object(
  {
    allow: Type.Array(PrefixString(), {
      default: [],
      description:
        'prefixes accepted even though refused by default (loopback, internal, own hosts); never multicast, broadcast or unspecified',
    }),
    deny: Type.Array(PrefixString(), {
      default: [],
      description: 'prefixes always refused; deny wins over allow',
    }),
    internal: Type.Array(PrefixString(), {
      default: [],
      description: "the ISP's internal prefixes (management, back end): refused unless allowed",
    }),
  },
  {
    additionalProperties: false,
    default: {},
    description: 'which addresses customers may make this ISP send to (docs/operations.md)',
  },
);
export type TargetPolicyConfig = Static<typeof TargetPolicySchema>;

/** Why an address was refused: the rule's name (stable, for clients) and a sentence. */
export interface TargetRefusal {
  rule: string;
  message: string;
}

interface Rule {
  rule: string;
  why: string;
  prefixes: string[];
  list: BlockList;
}

function blockList(prefixes: Array<IpPrefix | string>): BlockList {
  const list = new BlockList();
  for (const p of prefixes) {
    const prefix = typeof p === 'string' ? mustParsePrefix(p) : p;
    list.addSubnet(prefix.network, prefix.length, prefix.family === 4 ? 'ipv4' : 'ipv6');
  }
  return list;
}

function mustParsePrefix(text: string): IpPrefix {
  const r = parsePrefix(text);
  if (!r.ok) throw new Error(r.message);
  return r.prefix;
}

function familyOf(host: string): 'ipv4' | 'ipv6' {
  return host.includes(':') ? 'ipv6' : 'ipv4';
}

/** The classes no policy can open: sending customer payloads there is never transit. */
const ALWAYS_REFUSED: Rule[] = [
  {
    rule: 'unspecified',
    why: 'unspecified and this-network addresses (0.0.0.0/8, ::) are not destinations',
    prefixes: ['0.0.0.0/8', '::/128'],
    list: blockList(['0.0.0.0/8', '::/128']),
  },
  {
    rule: 'multicast',
    why: 'multicast addresses (224.0.0.0/4, ff00::/8) would copy customer payloads to a group',
    prefixes: ['224.0.0.0/4', 'ff00::/8'],
    list: blockList(['224.0.0.0/4', 'ff00::/8']),
  },
  {
    rule: 'broadcast',
    why: 'the broadcast address (255.255.255.255; IPv6 has only multicast) would flood a network',
    prefixes: ['255.255.255.255/32'],
    list: blockList(['255.255.255.255/32']),
  },
];

const LOOPBACK_PREFIXES = ['127.0.0.0/8', '::1/128'];
const LOOPBACK = blockList(LOOPBACK_PREFIXES);

/** Two CIDR prefixes overlap exactly when one holds the other's network address. */
export function prefixesOverlap(a: IpPrefix, b: IpPrefix): boolean {
  return a.family === b.family && (holds(a, b.network) || holds(b, a.network));
}

/** `inner` lies wholly inside `outer`. */
export function prefixWithin(inner: IpPrefix, outer: IpPrefix): boolean {
  return inner.family === outer.family && outer.length <= inner.length && holds(outer, inner.network);
}

function holds(p: IpPrefix, host: string): boolean {
  return familyOf(host) === (p.family === 4 ? 'ipv4' : 'ipv6') && blockList([p]).check(host, familyOf(host));
}

function prefixText(p: IpPrefix): string {
  return `${p.network}/${p.length}`;
}

/** The ISP's own hosts, as the portal knows them when a request arrives. */
export interface Infrastructure {
  routers: string[];
  portal: string[];
  store: string[];
}

/** Hosts (IP literals) of `addresses` like `host:port`, `[v6]:port` or URLs; names are skipped (they are not addresses a circuit can hold). */
export function hostsOf(addresses: string[]): string[] {
  const hosts: string[] = [];
  for (const a of addresses) {
    const m = /^(?:[a-z]+:\/\/)?(?:\[([^\]]+)\]|([^:/]+))/i.exec(a);
    const host = m?.[1] ?? m?.[2];
    if (host && parsePrefix(host).ok) hosts.push(canonicalHost(host));
  }
  return hosts;
}

export class TargetPolicy {
  private readonly deny: Array<{ prefix: string; list: BlockList }>;
  private readonly allow: BlockList;
  private readonly internal: Array<{ prefix: string; list: BlockList }>;

  private readonly allowPrefixes: IpPrefix[];

  constructor(config: Partial<TargetPolicyConfig> = {}) {
    this.allowPrefixes = (config.allow ?? []).map(mustParsePrefix);
    this.deny = (config.deny ?? []).map((prefix) => ({ prefix, list: blockList([prefix]) }));
    this.allow = blockList(config.allow ?? []);
    this.internal = (config.internal ?? []).map((prefix) => ({ prefix, list: blockList([prefix]) }));
  }

  /** Undefined when `address` may be sent to; otherwise the rule that refuses it. Pure. */
  check(address: UdpAddress, infra: Infrastructure): TargetRefusal | undefined {
    const host = canonicalHost(address.host);
    const family = familyOf(host);
    for (const r of ALWAYS_REFUSED)
      if (r.list.check(host, family)) return { rule: r.rule, message: `${r.why}; no policy allows them` };
    for (const d of this.deny)
      if (d.list.check(host, family))
        return { rule: 'deny', message: `${host} is in the ISP's denied prefix ${d.prefix}` };
    if (this.allow.check(host, family)) return undefined;
    const allowHint = 'refused unless the ISP allows it (targetPolicy.allow)';
    if (LOOPBACK.check(host, family))
      return { rule: 'loopback', message: `${host} is a loopback address, ${allowHint}` };
    for (const i of this.internal)
      if (i.list.check(host, family))
        return {
          rule: 'internal',
          message: `${host} is in the ISP's internal prefix ${i.prefix}, ${allowHint}`,
        };
    const own: Array<[keyof Infrastructure, string]> = [
      ['routers', 'one of its routers'],
      ['portal', 'its portal'],
      ['store', 'a member of its circuit store'],
    ];
    for (const [kind, what] of own)
      if (hostsOf(infra[kind]).includes(host))
        return {
          rule: 'infrastructure',
          message: `${host} is ${what}: the ISP's own infrastructure is ${allowHint}`,
        };
    return undefined;
  }

  /**
   * Undefined when a deliver-ip circuit may send to every address of `prefix`; otherwise the rule
   * that refuses some of them. The rules are those of `check`, applied to the whole range: a prefix
   * may not overlap what is always refused or denied, and may overlap loopback, the internal
   * prefixes or the ISP's own hosts only when it lies wholly inside an allowed prefix. Pure.
   */
  checkPrefix(prefix: IpPrefix, infra: Infrastructure): TargetRefusal | undefined {
    const text = prefixText(prefix);
    for (const r of ALWAYS_REFUSED)
      for (const q of r.prefixes)
        if (prefixesOverlap(prefix, mustParsePrefix(q)))
          return { rule: r.rule, message: `${text} overlaps ${q}: ${r.why}; no policy allows them` };
    for (const d of this.deny)
      if (prefixesOverlap(prefix, mustParsePrefix(d.prefix)))
        return { rule: 'deny', message: `${text} overlaps the ISP's denied prefix ${d.prefix}` };
    if (this.allowPrefixes.some((a) => prefixWithin(prefix, a))) return undefined;
    const allowHint = 'refused unless the ISP allows the whole prefix (targetPolicy.allow)';
    for (const q of LOOPBACK_PREFIXES)
      if (prefixesOverlap(prefix, mustParsePrefix(q)))
        return { rule: 'loopback', message: `${text} overlaps loopback ${q}, ${allowHint}` };
    for (const i of this.internal)
      if (prefixesOverlap(prefix, mustParsePrefix(i.prefix)))
        return {
          rule: 'internal',
          message: `${text} overlaps the ISP's internal prefix ${i.prefix}, ${allowHint}`,
        };
    const own: Array<[keyof Infrastructure, string]> = [
      ['routers', 'one of its routers'],
      ['portal', 'its portal'],
      ['store', 'a member of its circuit store'],
    ];
    for (const [kind, what] of own)
      for (const host of hostsOf(infra[kind]))
        if (holds(prefix, host))
          return {
            rule: 'infrastructure',
            message: `${text} holds ${host}, ${what}: the ISP's own infrastructure is ${allowHint}`,
          };
    return undefined;
  }
}
