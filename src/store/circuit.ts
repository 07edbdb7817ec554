import type { HistogramSnapshot } from '../util/histogram.js';
import { parseAddress, parsePrefix } from '../wire/address.js';
import { isAuthenticatorHex } from '../wire/authenticator.js';

/**
 * The circuit record: what the ISP's store holds for one sold circuit, and what
 * every router of the ISP compiles its forwarding table from.
 */

/** Next hop in another ISP (or back into this one): ordered addresses, first live one in use, and the authenticator to write. */
export interface NextHop {
  addresses: string[];
  auth: string;
}

/** What the egress PoP does with the circuit's packets. */
export type EgressAction =
  | { kind: 'forward'; next: NextHop }
  /** Destination runs Arrow: it gets the packet with its header. `auth`, when set, is written so it can demultiplex. */
  | { kind: 'deliver-endpoint'; addresses: string[]; auth?: string }
  /** Unmodified UDP server: payload only, from a per-circuit socket. Replies enter the circuit `reply`. */
  | { kind: 'deliver-udp'; target: string; reply?: NextHop }
  /**
   * IP transit (docs/egress.md): the last router strips the envelope and hands the inner IP packet
   * to its host's network stack. Only packets to `prefixes` and from `source` leave; traffic the
   * host routes back to `source` enters the circuit `reply`.
   */
  | { kind: 'deliver-ip'; prefixes: string[]; source: string; reply?: NextHop };

/** Most destination prefixes one deliver-ip circuit may name: each inner packet is checked against them. */
export const MAX_DELIVER_PREFIXES = 64;

export interface CircuitInput {
  auth: string;
  owner: string;
  ingressPop: string;
  egressPop: string;
  bandwidthMbps: number;
  /** Authenticator used between the ingress and egress PoP routers; not known to the customer. */
  internalAuth: string;
  /** Routers of the egress PoP, in order of preference, for the internal hop. Empty when ingress == egress. */
  internalRouters: string[];
  action: EgressAction;
  /**
   * Which address of each hop list is in use, when not the first: set by failover
   * repair, so every router of the PoP uses the same one and a restart keeps it.
   */
  active?: ActiveHops;
  /**
   * Policing burst in bytes, set from the offer at sale (docs/operations.md). Absent (records from
   * older portals): DEFAULT_BURST_MS of the bandwidth, at least MIN_BURST_BYTES (src/router/police.ts).
   */
  burstBytes?: number;
  /**
   * The circuit's tag key, 32 hex digits, when its DATA must carry this ISP's per-packet tag
   * (docs/wire.md, "The tag stack"). Issued to the owner only, with the circuit.
   */
  tagKey?: string;
}

/** Index into `action.next.addresses` (or `action.addresses`), `internalRouters`, `action.reply.addresses`. */
export interface ActiveHops {
  next?: number;
  internal?: number;
  reply?: number;
}

export type HopKind = keyof ActiveHops;

export interface Circuit extends CircuitInput {
  createdAt: string;
  /** The create's `Idempotency-Key`, when it had one: the key is forgotten with the circuit. */
  idempotencyKey?: string;
  /** Store revision of the last change to this circuit (etcd's mod_revision). */
  revision: number;
}

/** Fields that `chain` and repair may change. Identity, owner, PoPs and bandwidth never change. */
export type CircuitPatch = Partial<Pick<CircuitInput, 'action' | 'internalRouters' | 'active'>>;

export type ChangeEvent =
  | { type: 'put'; revision: number; circuit: Circuit }
  | { type: 'delete'; revision: number; auth: string }
  /** The store could not replay changes from the requested point (compacted away): here is everything, replace your view. */
  | { type: 'resync'; revision: number; circuits: Circuit[] };

export interface Snapshot {
  revision: number;
  circuits: Circuit[];
}

/** Counters a router publishes periodically; the portal sums them per circuit. */
export interface RouterStats {
  router: string;
  pop: string;
  address: string;
  /** When the router began reading its counters. */
  updatedAt: string;
  /**
   * How long reading the counters took (ms): the instant they describe lies within
   * [updatedAt, updatedAt + countersReadMs]. A stalled router reads slowly, and the SLA's
   * in-vs-out balance widens its slack by this much (src/portal/sla.ts).
   */
  countersReadMs?: number;
  /** Packets dropped before any circuit was identified, by reason. */
  drops: Record<string, number>;
  /** Packets handled by type, e.g. echo replies sent. */
  handled: Record<string, number>;
  /** Per-circuit counters, keyed by the customer-facing authenticator (hex). */
  circuits: Record<string, PublishedCircuitCounters>;
  /** Failover: neighbours declared dead and revived, hops moved. */
  failover?: Record<string, number>;
  /** What the router knows of each neighbour: measured RTT, link timeout, dead or not. */
  neighbours?: Record<string, { rttMs: number | undefined; timeoutMs: number; dead: boolean }>;
  /** Lab fault injection at this router, when configured (src/router/impair.ts). */
  impair?: Record<string, number>;
  /** Liveness: how long each answered keepalive had waited (normally the RTT), ms, as a histogram. */
  liveness?: { keepaliveWaitMs: HistogramSnapshot };
  /** Circuit records this router could not compile and skipped (it forwards everything else). */
  rejected?: number;
  /** Why, by circuit authenticator (hex); bounded, so it may list fewer than `rejected`. */
  rejections?: Record<string, string>;
  /** Errors met by the store client in background work (watch delivery, lease renewal), counted. */
  storeErrors?: number;
  /** The router's admin API (/metrics, /status, /log/level): its base URL (docs/operations.md). */
  admin?: string;
  /** The store revision the forwarding table has applied: behind the store's for long means the table stopped following it. */
  tableRevision?: number;
  /** Store threads replaced because they stopped answering (docs/operations.md, "Threads"). */
  storeThreadRestarts?: number;
  /** The forwarding thread's event-loop delay since the previous publish (ms): what other work added to packets. */
  loopDelayMs?: { p50: number; p99: number; max: number };
  /** IP transit at this router (docs/egress.md): its TUN, what crossed it, and which circuit answers each customer prefix. */
  egress?: EgressCounters & {
    interface: string;
    customers: Record<string, string>;
    /** The EN-DN mapping as this router holds it: customer prefixes it serves and announces. */
    serving?: Record<string, { circuit: string; since: string }>;
  };
  /** Which data plane forwards DATA, and why (docs/dataplane.md); `drops`, `handled` and `circuits` cover both. */
  dataplane?: PublishedDataplane;
}

/** What crossed a router's egress TUN (src/router/egress.ts, docs/egress.md). */
export interface EgressCounters {
  /** Inner packets handed to the host's stack. */
  delivered: number;
  /** Packets routed back into the TUN and sent into a circuit's return path. */
  returned: number;
  /** Return packets for no customer prefix we hold, or whose circuit has no return path. */
  noReturnPath: number;
  /** IPv6 link-local and multicast the host itself sends into the TUN (neighbour discovery, MLD): not traffic. */
  ignored: number;
  /** Customer prefixes this router took over (on a first DATA packet or probe, or when the store named it) and announced. */
  takeovers: number;
  /** Claims withdrawn because the store named another router as the egress in use. */
  unclaims: number;
  /** Writes to the TUN that failed (errno counted, not logged: this is the packet path). */
  writeErrors: number;
  /** `ip route` changes that failed (logged). */
  routeErrors: number;
}

/** A router's data plane as it publishes it (src/router/dataplane-mode.ts). */
export interface PublishedDataplane {
  mode: 'kernel' | 'node';
  /** What the config or `--dataplane` asked for: auto, kernel or node. */
  requested: string;
  reason: string;
  /** Kernel mode: the interface and how the program is attached (xdp-native, xdp-generic, tc). */
  interface?: string;
  attach?: string;
  /** Kernel mode: the program's id (`bpftool prog show id N`). */
  programId?: number;
  /** net.ipv4.conf.<interface>.forwarding; off, the kernel passes everything up. */
  forwarding?: boolean;
  /** Kernel mode: the program's router-wide counters (`STAT_NAMES` in src/router/kernel.ts). */
  kernel?: Record<string, number>;
  /** Kernel mode: circuits in the kernel's maps, and those left to the Node path by why. */
  circuits?: number;
  refused?: Record<string, number>;
  /** Kernel map updates refused (an errno): those circuits are forwarded by the Node path. */
  mapErrors?: number;
}

/**
 * One router's counters for one circuit. `in` counts DATA entering the ISP (at an
 * ingress-PoP router) once admitted: DATA refused at the door (`over-rate`, `bad-tag`, `replay`) is
 * counted in `drops` only, never `in`, so it is never taken for the ISP's loss. `out` DATA leaving it (forwarded to the next ISP or delivered, at an
 * egress-PoP router); bytes are whole ARROW datagrams as they arrived. The portal derives
 * the segment's loss from in vs out (docs/api.md).
 */
export interface CircuitCounters {
  /** Packets of the circuit this router handled (DATA and probes), after the hop-limit check. */
  packets: number;
  bytes: number;
  /** All drops of the circuit's packets at this router; `drops` has them by reason. */
  dropped: number;
  inPackets: number;
  inBytes: number;
  outPackets: number;
  outBytes: number;
  /**
   * Drops by reason (`hop-limit`, `no-next-hop`, `probe-rate`, `impair`, `send-error`, and at the
   * ingress `over-rate`, `bad-tag`, `replay`); absent reasons are 0.
   */
  drops: Record<string, number>;
}

/** Counters as read back from the store: routers older than the in/out accounting publish only the first three. */
export type PublishedCircuitCounters = Pick<CircuitCounters, 'packets' | 'bytes' | 'dropped'> &
  Partial<CircuitCounters>;

/**
 * What is wrong with a circuit record, in words; empty when every router can compile it.
 * Every store checks this before a create or update is committed (and the portal checks
 * the same rules at its edge), so no record that a router would refuse is ever written.
 * Pure: the one address parser (src/wire/address.ts) decides addresses.
 */
export function circuitRecordProblems(
  c: Pick<CircuitInput, 'auth' | 'internalAuth' | 'internalRouters' | 'action' | 'burstBytes' | 'tagKey'>,
): string[] {
  const problems: string[] = [];
  const auth = (field: string, value: unknown, optional = false): void => {
    if (optional && (value === undefined || value === '')) return;
    if (typeof value !== 'string' || !isAuthenticatorHex(value))
      problems.push(`${field}: not a 128-bit hex authenticator`);
  };
  const addresses = (field: string, list: unknown): void => {
    if (!Array.isArray(list) || list.length === 0) {
      problems.push(`${field}: expected a non-empty list of addresses`);
      return;
    }
    list.forEach((a, i) => {
      const r = parseAddress(a);
      if (!r.ok) problems.push(`${field}[${i}]: ${r.message}`);
    });
  };
  auth('auth', c.auth);
  auth('internalAuth', c.internalAuth, true);
  if (c.tagKey !== undefined && !(typeof c.tagKey === 'string' && isAuthenticatorHex(c.tagKey)))
    problems.push('tagKey: not a 128-bit hex key');
  if (
    c.burstBytes !== undefined &&
    !(typeof c.burstBytes === 'number' && Number.isSafeInteger(c.burstBytes) && c.burstBytes > 0)
  )
    problems.push('burstBytes: expected a positive integer');
  if (!Array.isArray(c.internalRouters)) problems.push('internalRouters: expected a list of addresses');
  else if (c.internalRouters.length > 0) addresses('internalRouters', c.internalRouters);
  const a = c.action as EgressAction | undefined;
  switch (a?.kind) {
    case 'forward':
      addresses('action.next.addresses', a.next?.addresses);
      auth('action.next.auth', a.next?.auth);
      break;
    case 'deliver-endpoint':
      addresses('action.addresses', a.addresses);
      auth('action.auth', a.auth, true);
      break;
    case 'deliver-udp': {
      const r = parseAddress(a.target);
      if (!r.ok) problems.push(`action.target: ${r.message}`);
      if (a.reply) {
        addresses('action.reply.addresses', a.reply.addresses);
        auth('action.reply.auth', a.reply.auth);
      }
      break;
    }
    case 'deliver-ip': {
      if (!Array.isArray(a.prefixes) || a.prefixes.length === 0 || a.prefixes.length > MAX_DELIVER_PREFIXES)
        problems.push(`action.prefixes: expected 1-${MAX_DELIVER_PREFIXES} destination prefixes`);
      else
        a.prefixes.forEach((p, i) => {
          const r = parsePrefix(p);
          if (!r.ok) problems.push(`action.prefixes[${i}]: ${r.message}`);
        });
      const r = parsePrefix(a.source);
      if (!r.ok) problems.push(`action.source: ${r.message}`);
      if (a.reply) {
        addresses('action.reply.addresses', a.reply.addresses);
        auth('action.reply.auth', a.reply.auth);
      }
      break;
    }
    default:
      problems.push('action: expected kind forward, deliver-endpoint, deliver-udp or deliver-ip');
  }
  return problems;
}
