import type { Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { newAuthenticator, authToBytes } from '../wire/authenticator.js';
import { mustParseAddress, type UdpAddress } from '../wire/address.js';
import { decode, DEFAULT_HOP_LIMIT, encode, PacketType, type Packet } from '../wire/header.js';
import { bindUdp } from './local-port.js';
import type { BoughtPath } from './path.js';
import { blankTags, fillTags, tagChain, type TagLink } from './tags.js';

export interface EndpointEvents {
  /** A DATA packet arrived: its payload and header. */
  data: [payload: Buffer, packet: Packet, from: UdpAddress];
  /** A datagram that is not ARROW was counted and dropped. */
  malformed: [reason: string];
  /** A router acked one of our probes. */
  probeAck: [sequence: bigint, from: UdpAddress];
  /** A probe reached us (already acked): one of ours coming home around its circuit, or a sender's. */
  probe: [packet: Packet, from: UdpAddress];
}

/**
 * A customer's ARROW socket. It sends DATA into a bought path's first ingress
 * router and receives what the return path delivers. One UDP socket; no store,
 * no portal calls on the send path.
 *
 * An Endpoint on its own does **not** fail over: it has no detector, sends no probes and never
 * changes ingress router, so a dead router loses all traffic until it is healed. Carry traffic
 * through a `Connection` over it (or a `Forwarder`, `AtlasConnection` or `TunEndpoint`, which
 * run one). Sending on the Endpoint itself (`useUnprotected` then `send`) is for diagnostics and
 * measurements of the bare path.
 */
export class Endpoint extends EventEmitter<EndpointEvents> {
  /** Authenticator the return path writes on packets it delivers here. */
  readonly replyAuth = newAuthenticator();
  /**
   * Sequence numbers start at a random point, so two endpoints of one path (which both probe it)
   * never number their probes alike and mistake the other's for their own.
   */
  private sequence = BigInt(`0x${randomBytes(6).toString('hex')}`);
  private ingress: UdpAddress[] = [];
  private activeIngress = 0;
  private auth: Buffer | undefined;
  /** Tags the circuit in use needs (useUnprotected), in path order. */
  private tags: TagLink[] = [];
  private readonly pendingEchoes = new Map<bigint, (rttMs: number) => void>();
  private readonly pendingProbes = new Map<bigint, () => void>();
  /** `socketErrors`: errors the socket reported, e.g. ICMP unreachable from a dead router (not fatal). */
  readonly counters = { sent: 0, received: 0, malformed: 0, socketErrors: 0 };

  private constructor(
    private readonly socket: Socket,
    readonly address: string,
  ) {
    super();
    socket.on('message', (msg, rinfo) => this.receive(msg, { host: rinfo.address, port: rinfo.port }));
    // ICMP unreachable from a dead router arrives as a socket error; it is not fatal: counted, and
    // the failover driver finds the dead router by its own probes.
    socket.on('error', () => {
      this.counters.socketErrors++;
    });
  }

  static async open(bind = '127.0.0.1:0'): Promise<Endpoint> {
    const { socket, address } = await bindUdp(bind);
    return new Endpoint(socket, address);
  }

  /** Where the return path should deliver: pass this to buyPath as `replyTo`. */
  get replyTo(): { addresses: string[]; auth: string } {
    return { addresses: [this.address], auth: this.replyAuth };
  }

  /**
   * UNPROTECTED: `send` and `probe` go through this path's first circuit from now on, with no
   * failover at all (no detection, no probe, no ingress change): a dead router loses all traffic
   * until it is healed. For diagnostics and measurements of the bare path; carry traffic through a
   * `Connection` (or `Forwarder`) instead.
   */
  useUnprotected(path: BoughtPath): void {
    const first = path.forward[0];
    if (!first) throw new Error('path has no circuits');
    this.useCircuitUnprotected(first.circuit.ingress, first.circuit.auth);
    this.tags = tagChain(path.forward);
  }

  /** UNPROTECTED, like `useUnprotected`: one circuit given by its ingress routers and authenticator. */
  useCircuitUnprotected(ingress: string[], auth: string): void {
    this.ingress = ingress.map((a) => mustParseAddress(a));
    this.activeIngress = 0;
    this.auth = authToBytes(auth);
    this.tags = [];
  }

  /** Next sequence number for a packet we originate. */
  nextSequence(): bigint {
    return this.sequence++;
  }

  /**
   * Sends a DATA or PROBE packet on an explicit circuit: `auth` at router `to`. DATA carries a
   * tag for every link of `tags` (the path's tag-checking ISPs, in order).
   */
  sendOn(
    to: UdpAddress,
    auth: Buffer,
    type: PacketType.Data | PacketType.Probe,
    payload: Uint8Array,
    sequence = this.nextSequence(),
    tags: readonly TagLink[] = [],
  ): bigint {
    this.socket.send(this.packet(type, DEFAULT_HOP_LIMIT, auth, sequence, payload, tags), to.port, to.host);
    if (type === PacketType.Data) this.counters.sent++;
    return sequence;
  }

  /**
   * Sends one payload as a DATA packet on the circuit chosen with `useUnprotected`, with no
   * failover. Returns its sequence number.
   */
  send(payload: Uint8Array, hopLimit = DEFAULT_HOP_LIMIT): bigint {
    const to = this.ingress[this.activeIngress];
    if (!to || !this.auth)
      throw new Error(
        'no circuit in use: send through a Connection, or call useUnprotected(path) for the bare path',
      );
    const seq = this.sequence++;
    this.socket.send(
      this.packet(PacketType.Data, hopLimit, this.auth, seq, payload, this.tags),
      to.port,
      to.host,
    );
    this.counters.sent++;
    return seq;
  }

  /** An encoded packet; DATA with the tags of `chain` (docs/wire.md, "The tag stack"). */
  private packet(
    type: PacketType,
    hopLimit: number,
    authenticator: Buffer,
    sequence: bigint,
    payload: Uint8Array,
    chain: readonly TagLink[],
  ): Buffer {
    const n = type === PacketType.Data ? chain.length : 0;
    const buf = encode({ type, hopLimit, authenticator, sequence, payload, tags: blankTags(n) });
    if (n > 0) fillTags(buf, chain);
    return buf;
  }

  /** ECHO to one router; resolves with the round-trip time in ms, or undefined on timeout. */
  echo(
    router: string,
    timeoutMs = 1000,
    payload: Uint8Array = new Uint8Array(0),
  ): Promise<number | undefined> {
    const to = mustParseAddress(router);
    const seq = this.sequence++;
    const started = process.hrtime.bigint();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pendingEchoes.delete(seq);
        resolve(undefined);
      }, timeoutMs);
      this.pendingEchoes.set(seq, () => {
        clearTimeout(timer);
        resolve(Number(process.hrtime.bigint() - started) / 1e6);
      });
      this.socket.send(
        encode({
          type: PacketType.Echo,
          hopLimit: 1,
          authenticator: new Uint8Array(16),
          sequence: seq,
          payload,
        }),
        to.port,
        to.host,
      );
    });
  }

  /** PROBE along the circuit in use; resolves true when the ingress router acks it (it knows the circuit). */
  probe(timeoutMs = 200): Promise<boolean> {
    const to = this.ingress[this.activeIngress];
    if (!to || !this.auth) throw new Error('no circuit in use: call useUnprotected(path) first');
    const seq = this.sequence++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pendingProbes.delete(seq);
        resolve(false);
      }, timeoutMs);
      this.pendingProbes.set(seq, () => {
        clearTimeout(timer);
        resolve(true);
      });
      this.socket.send(
        encode({
          type: PacketType.Probe,
          hopLimit: DEFAULT_HOP_LIMIT,
          authenticator: this.auth!,
          sequence: seq,
          payload: new Uint8Array(0),
        }),
        to.port,
        to.host,
      );
    });
  }

  /**
   * Waits until the ingress router has the circuit in its table. A portal answers
   * as soon as the circuit is committed; routers learn it from the store a few
   * milliseconds later, and packets sent before that are dropped as unknown.
   */
  async waitReady(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline)
      if (await this.probe(Math.min(100, Math.max(1, deadline - Date.now())))) return;
    throw new Error(`circuit not active at its ingress router within ${timeoutMs} ms`);
  }

  private receive(msg: Buffer, from: UdpAddress): void {
    const r = decode(msg);
    if (!r.ok) {
      this.counters.malformed++;
      this.emit('malformed', r.error.code);
      return;
    }
    const p = r.packet;
    if (p.type === PacketType.EchoReply) {
      this.pendingEchoes.get(p.sequence)?.(0);
      this.pendingEchoes.delete(p.sequence);
      return;
    }
    if (p.type === PacketType.Keepalive) {
      // A router with liveness on checks the endpoints it delivers to, like any neighbour.
      this.socket.send(encode({ ...p, type: PacketType.KeepaliveAck }), from.port, from.host);
      return;
    }
    if (p.type === PacketType.ProbeAck) {
      this.pendingProbes.get(p.sequence)?.();
      this.pendingProbes.delete(p.sequence);
      this.emit('probeAck', p.sequence, from);
      return;
    }
    if (p.type === PacketType.Probe) {
      // We are the last hop of a circuit delivering to us: ack to the router that sent it.
      this.socket.send(
        encode({ ...p, type: PacketType.ProbeAck, payload: new Uint8Array(0) }),
        from.port,
        from.host,
      );
      this.emit('probe', p, from);
      return;
    }
    if (p.type === PacketType.Data) {
      this.counters.received++;
      this.emit('data', Buffer.from(p.payload.buffer, p.payload.byteOffset, p.payload.byteLength), p, from);
    }
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}
