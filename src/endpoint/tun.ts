// TUN mode (`arrow endpoint --tun`): every IP packet the kernel routes into a TUN interface travels
// as the payload of an ARROW DATA packet through a bought circuit, and what the circuit delivers is
// written back into the TUN. One side (the buyer) buys both directions; the other (the answerer)
// learns them from a peer file. Both drive their half through a Connection, so failover works for
// TUN traffic exactly as for UDP forwarding.
import { EventEmitter } from 'node:events';
import { renameSync, writeFileSync } from 'node:fs';
import { Type, type Static } from '@sinclair/typebox';
import { validateConfig } from '../util/config.js';
import { AddressString } from '../util/address-schema.js';
import { newAuthenticator } from '../wire/authenticator.js';
import type { CircuitView } from '../api/portal.js';
import { Connection, type DetectorOptions, type PathCircuit, type SpreadOptions } from './connection.js';
import { PacketType, type Packet } from '../wire/header.js';
import { Endpoint } from './endpoint.js';
import {
  abandonPaths,
  buyPath,
  releasePath,
  type BoughtCircuit,
  type BoughtPath,
  type PathSpec,
} from './path.js';
import { TunDevice, TunError, type TunConfig } from '../util/tun-device.js';
import type { DataplaneMode } from '../router/dataplane-mode.js';
import type { UnderlayChecksums } from './underlay-checksums.js';
import { EndpointKernelRequired, KernelTunPath, type TunDataplane } from './tun-kernel.js';
import {
  checkIpPacket,
  DEFAULT_UNDERLAY_MTU,
  isInterfaceName,
  MIN_IPV4_MTU,
  parseCidr,
  TOO_BIG_SCRATCH,
  tooBigReply,
  tunMtuFor,
} from './tun-packet.js';

export { TunError } from '../util/tun-device.js';

/** How long `start` waits for the first ingress router of every circuit to ack. */
export const READY_TIMEOUT_MS = 3000;

/** The payload of a probe sent back to the peer: never reflected again. */
const REFLECTED = new Uint8Array([0x52]);

const Auth = Type.String({ pattern: '^[0-9a-f]{32}$' });
const PeerCircuit = Type.Object(
  {
    isp: Type.Optional(Type.String()),
    ingressPop: Type.String(),
    egressPop: Type.String(),
    ingress: Type.Array(AddressString(), { minItems: 1 }),
    auth: Auth,
    /** The circuit's tag key when it was bought with tags: the answerer tags what it sends on it. */
    tagKey: Type.Optional(Auth), // 32 hex digits, written like an authenticator
  },
  { additionalProperties: false },
);

/**
 * What the buyer tells the answerer (`--write-peer` / `--peer-file`): the circuits of every bought
 * path as the answerer sees them. The answerer sends on `forward` (the buyer's return circuits) and
 * recognises traffic for a path by `replyAuth` (the authenticator the buyer's forward path writes
 * when it delivers). No API key: the buyer owns and relinquishes the circuits.
 */
export const TunPeerSchema = Type.Object(
  {
    kind: Type.Literal('arrow-tun-peer'),
    version: Type.Literal(1),
    /** Where the answerer must listen: the address the buyer's forward paths deliver to. */
    listen: AddressString(),
    /** The buyer's endpoint address, where the return paths deliver (informational). */
    buyer: AddressString(),
    /** Primary first, then standbys. */
    paths: Type.Array(
      Type.Object(
        {
          forward: Type.Array(PeerCircuit, { minItems: 1 }),
          reverse: Type.Array(PeerCircuit, { minItems: 1 }),
          replyAuth: Auth,
        },
        { additionalProperties: false },
      ),
      { minItems: 1 },
    ),
  },
  { additionalProperties: false },
);
export type TunPeer = Static<typeof TunPeerSchema>;

export interface TunEndpointOptions {
  /** TUN interface name (at most 15 characters). */
  name: string;
  /** Addresses of the TUN interface in CIDR notation, e.g. `10.200.0.1/24`; the prefix is routed into it. */
  addresses: string[];
  /** More destinations (CIDR) to route into the TUN. */
  routes?: string[];
  /** Move the TUN into this existing network namespace; the endpoint's UDP socket stays where the process is. */
  netns?: string;
  /** MTU of the underlay (the path between the endpoint and the routers). TUN MTU = this − 56. Default 1500. */
  underlayMtu?: number;
  /** UDP address of this endpoint's ARROW socket. Buyer default 127.0.0.1:0; answerer default `peer.listen`. */
  listen?: string;
  /**
   * Buyer: the paths to buy, primary first, then standbys. Each path's target is the peer endpoint:
   * `peerAddress` when given, else the path's own `{kind: 'endpoint'}` target; or, for a gateway,
   * `{kind: 'ip'}`: the last ISP decapsulates to hosts that run nothing of ours (docs/egress.md).
   */
  paths?: PathSpec[];
  /** Buyer: the answerer's ARROW address (`host:port`), overriding each path's target. */
  peerAddress?: string;
  /** Answerer: what the buyer wrote (`TunEndpoint.peer`). */
  peer?: TunPeer;
  detector?: Partial<DetectorOptions>;
  /**
   * Who carries the IP packets (docs/dataplane.md, "The endpoint's data path"): `kernel` tc
   * programs that encapsulate and decapsulate, with this process as the control plane, or `node`,
   * this process for every packet. Default `auto`: the kernel where it can (root, BPF, an IPv4
   * listen address on a real interface, the TUN in this namespace), else Node, saying why.
   */
  dataplane?: DataplaneMode;
  /** Spread over every path (each an ingress point) by a keyed PRF (docs/services.md); the Node data path. */
  spread?: SpreadOptions;
  /**
   * Kernel path: who finishes TCP's checksums and cuts its super-packets on the interface the
   * packets leave by (src/endpoint/underlay-checksums.ts). Default `auto`: the stack on a virtual
   * interface, the NIC on a real one.
   */
  underlayChecksums?: UnderlayChecksums;
}

/** What the endpoint counted. Every packet not carried is counted under one drop reason. */
export interface TunCounters {
  /** IP packets read from the TUN and sent into the circuit, and their bytes. */
  fromTun: number;
  fromTunBytes: number;
  /** IP packets the circuit delivered and the endpoint wrote into the TUN, and their bytes. */
  toTun: number;
  toTunBytes: number;
  /** ICMP "fragmentation needed" / ICMPv6 "packet too big" answers written into the TUN. */
  icmpTooBig: number;
  drops: {
    /** Read from the TUN but larger than the circuit carries (each DF/IPv6 one also got an ICMP answer). */
    tooBig: number;
    /** Read from the TUN but not an IPv4/IPv6 packet. */
    notIpFromTun: number;
    /** Delivered by the circuit but not one whole IP packet (bad version, or its length field disagrees). */
    notIpFromCircuit: number;
    /** The kernel refused to take a packet written into the TUN. */
    tunWrite: number;
  };
}

export interface TunEndpointEvents {
  /** The TUN device failed; the endpoint stops reading it. */
  error: [error: Error];
}

/** Validates what a caller or a CLI passed, with messages naming the field. */
function checkOptions(o: TunEndpointOptions): void {
  if (!isInterfaceName(o.name))
    throw new TunError(`tun name ${JSON.stringify(o.name)}: 1-15 letters, digits, '_', '-' or '.'`);
  if (o.addresses.length === 0) throw new TunError('the TUN needs at least one address (CIDR)');
  for (const a of [...o.addresses, ...(o.routes ?? [])])
    if (!parseCidr(a)) throw new TunError(`${JSON.stringify(a)} is not an address in CIDR notation`);
  const u = o.underlayMtu ?? DEFAULT_UNDERLAY_MTU;
  if (!Number.isInteger(u) || tunMtuFor(u) < MIN_IPV4_MTU || u > 65535)
    throw new TunError(`underlay MTU ${u}: must be an integer from ${MIN_IPV4_MTU + 56} to 65535`);
  if (!!o.paths === !!o.peer)
    throw new TunError(
      'give either paths to buy (the buyer) or the peer file the buyer wrote (the answerer)',
    );
  if (o.paths && o.paths.length === 0) throw new TunError('paths: at least one path to buy');
  // Before anything is bought: the kernel path asked for and ruled out.
  const nodeOnly = nodePathReason(o);
  if (nodeOnly !== undefined && o.dataplane === 'kernel')
    throw new EndpointKernelRequired(`--dataplane kernel: ${nodeOnly}`);
}

function toPeerCircuit(b: BoughtCircuit): TunPeer['paths'][0]['forward'][0] {
  const c = b.circuit;
  return {
    ...(b.segment.isp ? { isp: b.segment.isp } : {}),
    ingressPop: c.ingressPop,
    egressPop: c.egressPop,
    ingress: c.ingress,
    auth: c.auth,
    ...(c.tagKey ? { tagKey: c.tagKey } : {}),
  };
}

/** The answerer's view of one path as a BoughtPath for its Connection; it owns nothing it could relinquish. */
function fromPeerCircuit(c: TunPeer['paths'][0]['forward'][0]): BoughtCircuit {
  const circuit: CircuitView = {
    auth: c.auth,
    ingressPop: c.ingressPop,
    egressPop: c.egressPop,
    bandwidthMbps: 0,
    ingress: c.ingress,
    createdAt: '',
    revision: 0,
    ...(c.tagKey ? { tagKey: c.tagKey } : {}),
  };
  return {
    segment: { isp: c.isp, portal: '', apiKey: '', ingressPop: c.ingressPop, egressPop: c.egressPop },
    circuit,
  };
}

/**
 * Why this endpoint's packets must go through this process, or undefined when the kernel path may
 * carry them.
 * - A gateway: the tc program on the TUN sees TCP's packets before their checksums are done
 *   (CHECKSUM_PARTIAL: the device is to finish them), and veth or lo carry them unfinished into the
 *   next namespace, where an egress router that decapsulates in user space (docs/egress.md) would
 *   read garbage checksums. Read from the TUN, they arrive finished.
 * - Spreading: the keyed PRF that picks each packet's ingress point runs here, not in BPF.
 */
function nodePathReason(o: TunEndpointOptions): string | undefined {
  if (o.paths?.some((p) => p.target.kind === 'ip'))
    return 'a gateway (target kind ip): the egress decapsulates in user space, which needs the checksums the TUN read finishes';
  if (o.spread)
    return "spreading: each packet's ingress point is a keyed PRF of its sequence number, chosen in Node";
  return undefined;
}

/**
 * An Arrow endpoint in TUN mode. `start` opens and configures the TUN, binds the ARROW socket,
 * buys the paths (buyer) or adopts the peer's (answerer), and carries packets both ways until `stop`.
 */
export class TunEndpoint extends EventEmitter<TunEndpointEvents> {
  readonly counters: TunCounters = {
    fromTun: 0,
    fromTunBytes: 0,
    toTun: 0,
    toTunBytes: 0,
    icmpTooBig: 0,
    drops: { tooBig: 0, notIpFromTun: 0, notIpFromCircuit: 0, tunWrite: 0 },
  };
  /** Buyer only: what the answerer needs (write it with `writePeerFile`). */
  readonly peer: TunPeer | undefined;
  private readonly scratch = Buffer.alloc(TOO_BIG_SCRATCH);
  /** Our circuits by the authenticator the peer's traffic arrives with: the two directions of one path. */
  private readonly pairs = new Map<string, PathCircuit>();
  private stopped = false;

  private constructor(
    readonly device: TunDevice,
    readonly endpoint: Endpoint,
    readonly connection: Connection,
    /** The largest IP packet carried: the TUN MTU. */
    readonly mtu: number,
    /** Paths this side bought and relinquishes on stop (empty on the answerer). */
    readonly bought: BoughtPath[],
    peer: TunPeer | undefined,
    /** Circuits whose first ingress router did not ack a probe while starting; the driver keeps probing them. */
    readonly notReady: PathCircuit[],
    private readonly kernel: KernelTunPath | { reason: string; requested: DataplaneMode },
  ) {
    super();
    this.peer = peer;
    connection.on('data', (payload) => this.fromCircuit(payload));
    for (const c of connection.circuits) this.pairs.set(c.replyAuth, c);
    endpoint.on('probe', (packet) => this.reflect(packet));
    device.start(
      (p) => this.fromTun(p),
      (errno) => this.emit('error', new TunError(`reading TUN ${device.name} failed (errno ${errno})`)),
    );
  }

  get name(): string {
    return this.device.name;
  }

  /** This endpoint's ARROW socket address. */
  get address(): string {
    return this.endpoint.address;
  }

  static async start(o: TunEndpointOptions): Promise<TunEndpoint> {
    checkOptions(o);
    let mtu = tunMtuFor(o.underlayMtu ?? DEFAULT_UNDERLAY_MTU);
    const listen = o.listen ?? o.peer?.listen ?? '127.0.0.1:0';
    const device = TunDevice.open(o.name);
    let endpoint: Endpoint | undefined;
    let connection: Connection | undefined;
    const bought: BoughtPath[] = [];
    try {
      const config: TunConfig = { addresses: o.addresses, mtu, routes: o.routes ?? [] };
      if (o.netns) config.netns = o.netns;
      await device.configure(config);
      endpoint = await Endpoint.open(listen);
      // No re-buy: the answerer could not learn a replacement path. Standbys (more paths) cover a dead ISP.
      connection = new Connection(endpoint, o.detector, undefined, o.spread);
      let peer: TunPeer | undefined;
      if (o.paths) {
        const paths: TunPeer['paths'] = [];
        let peerListen: string | undefined;
        for (const spec of o.paths) {
          if (spec.target.kind === 'ip' && !o.peerAddress) {
            // A gateway (docs/egress.md): the last ISP decapsulates; nothing of ours at the far end.
            const path = await buyPath(spec, { replyTo: connection.replyTo() });
            bought.push(path);
            connection.add(path);
            continue;
          }
          const targetAuth = newAuthenticator();
          const target = o.peerAddress
            ? { kind: 'endpoint' as const, addresses: [o.peerAddress], auth: targetAuth }
            : spec.target.kind === 'endpoint'
              ? { ...spec.target, auth: spec.target.auth ?? targetAuth }
              : undefined;
          if (!target)
            throw new TunError(
              'a TUN path delivers to the peer endpoint (give peerAddress, --peer, or a target of kind endpoint) or is a gateway (a target of kind ip)',
            );
          peerListen ??= target.addresses[0];
          const path = await buyPath({ ...spec, target }, { replyTo: connection.replyTo() });
          bought.push(path);
          connection.add(path);
          paths.push({
            forward: path.reverse.map(toPeerCircuit),
            reverse: path.forward.map(toPeerCircuit),
            replyAuth: target.auth,
          });
        }
        if (peerListen !== undefined)
          peer = { kind: 'arrow-tun-peer', version: 1, listen: peerListen, buyer: endpoint.address, paths };
      } else {
        for (const p of o.peer!.paths)
          connection.add({
            forward: p.forward.map(fromPeerCircuit),
            reverse: p.reverse.map(fromPeerCircuit),
            replyAuth: p.replyAuth,
          });
      }
      // Each tag-checking ISP of a path adds a 16-byte tag to every packet we send: the TUN takes
      // that much less, so that the kernel's path MTU (and TCP's MSS) leave room for it.
      const tags = Math.max(...connection.circuits.map((c) => c.tags.length));
      if (tags > 0) {
        mtu = tunMtuFor(o.underlayMtu ?? DEFAULT_UNDERLAY_MTU, tags);
        if (mtu < MIN_IPV4_MTU)
          throw new TunError(
            `underlay MTU ${o.underlayMtu ?? DEFAULT_UNDERLAY_MTU} leaves ${mtu} bytes for IP packets once ${tags} tags are on them: below the ${MIN_IPV4_MTU} IPv4 needs`,
          );
        await device.setMtu(mtu);
      }
      // Only the first ingress router is awaited: the peer may not be up yet, so nothing comes home.
      // Not fatal when it times out: the circuit may still come up, and the detector repairs; the
      // caller sees which circuits did not answer in `notReady`.
      const notReady = await connection.waitReady(READY_TIMEOUT_MS, 'ingress');
      const requested = o.dataplane ?? 'auto';
      const nodeOnly = nodePathReason(o);
      const opened =
        nodeOnly !== undefined
          ? { reason: nodeOnly }
          : KernelTunPath.open({
              requested,
              tun: device.name,
              tunNetns: o.netns,
              listen: endpoint.address,
              connection,
              ...(o.underlayChecksums ? { underlayChecksums: o.underlayChecksums } : {}),
            });
      const kernel = opened instanceof KernelTunPath ? opened : { ...opened, requested };
      return new TunEndpoint(device, endpoint, connection, mtu, bought, peer, notReady, kernel);
    } catch (err) {
      device.close();
      await connection?.close();
      await endpoint?.close();
      return abandonPaths(bought, err);
    }
  }

  /**
   * A probe from the peer reached us. For a plain UDP server the egress router turns probes into the
   * return path; an endpoint must do it itself, or the peer's probe never comes home and one-way
   * traffic looks like a dead circuit. We send it back along the paired direction with its sequence,
   * marked so the peer does not send it back again.
   */
  private reflect(packet: Packet): void {
    if (packet.payload.length !== 0) return; // already a reflection
    const c = this.pairs.get(Buffer.from(packet.authenticator).toString('hex'));
    if (!c) return;
    this.endpoint.sendOn(c.ingress[c.activeIngress]!, c.auth, PacketType.Probe, REFLECTED, packet.sequence);
  }

  /** One packet the kernel routed into the TUN: into the circuit, or answered and dropped when too big. */
  private fromTun(p: Buffer): void {
    const c = this.counters;
    const version = p[0]! >> 4;
    if (version !== 4 && version !== 6) {
      c.drops.notIpFromTun++;
      return;
    }
    if (p.length > this.mtu) {
      c.drops.tooBig++;
      const n = tooBigReply(p, this.mtu, this.scratch);
      if (n > 0 && this.device.write(this.scratch.subarray(0, n)) === n) c.icmpTooBig++;
      return;
    }
    this.connection.send(p);
    c.fromTun++;
    c.fromTunBytes += p.length;
  }

  /** One payload the circuit delivered: into the TUN if it is one whole IP packet. */
  private fromCircuit(p: Buffer): void {
    const c = this.counters;
    if (checkIpPacket(p) !== 'ok') {
      c.drops.notIpFromCircuit++;
      return;
    }
    if (this.device.write(p) !== p.length) {
      c.drops.tunWrite++;
      return;
    }
    c.toTun++;
    c.toTunBytes += p.length;
  }

  /** Who carries the packets, and why; on the kernel path, the programs' counters. */
  get dataplane(): TunDataplane {
    const k = this.kernel;
    return k instanceof KernelTunPath
      ? k.status()
      : { mode: 'node', requested: k.requested, reason: k.reason };
  }

  /**
   * A snapshot for `--stats`, SIGUSR1 and experiments: counters (of this process's path; the kernel
   * path's are in `dataplane`), the circuit in use, the ARROW socket's counters.
   */
  stats(): {
    tun: string;
    mtu: number;
    address: string;
    dataplane: TunDataplane;
    counters: TunCounters;
    endpoint: Endpoint['counters'];
    circuits: { isps: string[]; state: string; ingress: string; active: boolean }[];
  } {
    const active = this.connection.active;
    return {
      tun: this.name,
      mtu: this.mtu,
      address: this.address,
      dataplane: this.dataplane,
      counters: structuredClone(this.counters),
      endpoint: { ...this.endpoint.counters },
      circuits: this.connection.circuits.map((c) => ({
        isps: c.isps,
        state: c.state,
        ingress: `${c.ingress[c.activeIngress]!.host}:${c.ingress[c.activeIngress]!.port}`,
        active: c === active,
      })),
    };
  }

  /** Removes the TUN, and on the buyer relinquishes every circuit. Returns what could not be relinquished. */
  async stop(): Promise<Error[]> {
    if (this.stopped) return [];
    this.stopped = true;
    if (this.kernel instanceof KernelTunPath) this.kernel.close();
    this.device.close();
    await this.connection.close();
    const failures: Error[] = [];
    for (const p of this.bought) failures.push(...(await releasePath(p)));
    await this.endpoint.close();
    return failures;
  }
}

/** Writes the peer file atomically, so an answerer waiting for it never reads half of it. */
export function writePeerFile(path: string, peer: TunPeer): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(peer, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

/** Validates a parsed peer file. */
export function parsePeer(raw: unknown, source: string): TunPeer {
  return validateConfig(TunPeerSchema, raw, source);
}
