/**
 * Brute force, for checking the checker: one DATA packet at a time through every router's own
 * `DataPlane.process` (the reference semantics, src/router/dataplane.ts), hop by hop, in memory.
 * The property tests and `arrow bench verify` compare `verify` with it. No sockets: each router's
 * output is captured and handed to the router it names.
 */
import { DataPlane, type Output } from '../router/dataplane.js';
import { ForwardingTable } from '../router/table.js';
import type { Circuit } from '../store/circuit.js';
import type { RouterRegistration } from '../store/store.js';
import { DEFAULT_HOP_LIMIT, encode, PacketType } from '../wire/header.js';
import { authToBytes } from '../wire/authenticator.js';

export interface InjectNetwork {
  isps: { name: string; routers: RouterRegistration[]; circuits: Circuit[] }[];
  /** A router held dead by every other (its hops moved) and silent itself. */
  dead?: string | undefined;
  /** Addresses of endpoints: a packet sent there is delivered. */
  endpoints?: readonly string[];
}

/** Where a packet ended, in the checker's classes (check.ts `classOf`). */
export type Landing = string;

class Capture implements Output {
  sent: { packet: Buffer; to: string } | undefined;
  udp: string | undefined;
  send(packet: Buffer, port: number, host: string, offset = 0): void {
    this.sent = { packet: Buffer.from(packet.subarray(offset)), to: `${host}:${port}` };
  }
  deliverUdp(entry: { circuit: string }): void {
    this.udp = entry.circuit;
  }
  deliverIp(): boolean {
    return false;
  }
  /** What the last `process` did, cleared for the next. */
  take(): { sent: { packet: Buffer; to: string } | undefined; udp: string | undefined } {
    const r = { sent: this.sent, udp: this.udp };
    this.sent = undefined;
    this.udp = undefined;
    return r;
  }
}

export class Injector {
  private readonly routers = new Map<string, { dp: DataPlane; out: Capture }>();
  private readonly udpTargets = new Map<string, string>();

  constructor(private readonly net: InjectNetwork) {
    const isDead = (k: string): boolean => k === net.dead;
    for (const isp of net.isps) {
      for (const c of isp.circuits) if (c.action.kind === 'deliver-udp') udpTargets(this.udpTargets, c);
      for (const r of isp.routers) {
        // Each router holds its own table, as a real one does.
        const table = new ForwardingTable(r.pop, isDead);
        table.replaceAll(isp.circuits, 1);
        const out = new Capture();
        this.routers.set(r.address, { dp: new DataPlane(table, out), out });
      }
    }
  }

  /** Sends one DATA packet carrying `auth` to `ingress` and follows it to where it ends. */
  inject(ingress: string, auth: string): Landing {
    let at = ingress;
    let packet = encode({
      type: PacketType.Data,
      hopLimit: DEFAULT_HOP_LIMIT,
      authenticator: authToBytes(auth),
      sequence: 1n,
      payload: Buffer.from('payload'),
    });
    for (let hops = 0; hops <= DEFAULT_HOP_LIMIT + 1; hops++) {
      if (at === this.net.dead) return 'lost';
      const r = this.routers.get(at);
      if (!r) return this.net.endpoints?.includes(at) ? `delivered endpoint ${at}` : 'lost';
      const drops = { unknown: r.dp.drops.counts['unknown-auth'], hopLimit: r.dp.drops.counts['hop-limit'] };
      r.dp.process(packet, 5000, '10.0.0.1');
      const { sent, udp } = r.out.take();
      if (udp !== undefined) return `delivered udp ${this.udpTargets.get(udp) ?? '?'}`;
      if (sent === undefined) {
        if (r.dp.drops.counts['unknown-auth'] > drops.unknown) return 'unknown-auth';
        if (r.dp.drops.counts['hop-limit'] > drops.hopLimit) return 'hop-limit';
        return 'dropped';
      }
      packet = sent.packet;
      at = sent.to;
    }
    return 'runaway';
  }
}

function udpTargets(m: Map<string, string>, c: Circuit): void {
  if (c.action.kind === 'deliver-udp') m.set(c.auth, c.action.target);
}
