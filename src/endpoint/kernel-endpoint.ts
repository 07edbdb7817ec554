/**
 * The endpoint's kernel data path (src/endpoint/bpf/endpoint.bpf.c; docs/dataplane.md, "The
 * endpoint's data path"), owned from TypeScript as the router owns its maps: the TUN endpoint
 * writes the active circuit into `ep_tx` whenever it changes (a failover is one map update) and
 * lists its return circuits in `ep_rx`; the programs do the per-packet work.
 *
 * `src/endpoint/tun-kernel.ts` keeps these maps in step with the endpoint's Connection.
 */
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import {
  ipv4Bytes,
  KernelMapError,
  KernelUnavailable,
  loadNative,
  type BpfNative,
} from '../router/kernel.js';

export const ENDPOINT_OBJECT = fileURLToPath(new URL('../../native/endpoint.bpf.o', import.meta.url));

/** Where the endpoint sends now: the active circuit's ingress router and authenticator. */
export interface KernelTx {
  /** The underlay interface's index, and the endpoint's UDP address on it. */
  ifindex: number;
  srcIp: string;
  srcPort: number;
  dstIp: string;
  dstPort: number;
  /** 16 bytes. */
  auth: Buffer;
  hopLimit: number;
  /** The underlay interface's MAC and the next hop's (`aa:bb:cc:dd:ee:ff`). */
  srcMac: string;
  dstMac: string;
}

export interface KernelEndpointStats {
  sent: { packets: number; bytes: number };
  received: { packets: number; bytes: number };
  passedUp: { packets: number; bytes: number };
  /** Passed to the Node path because the kernel could not make room for the outer headers. */
  noRoom: { packets: number; bytes: number };
  /** GSO super-packets (TCP's, up to 64 KB) sent whole; their segments are counted in `sent`. */
  superPackets: { packets: number; bytes: number };
}

function ipv4(a: string, out: Buffer, at: number): void {
  if (!isIPv4(a)) throw new Error(`${a} is not an IPv4 address`);
  ipv4Bytes(a, out, at);
}

function mac(m: string): Buffer {
  const parts = m.split(':');
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-f]{2}$/i.test(p)))
    throw new Error(`${m} is not a MAC address`);
  return Buffer.from(parts.join(''), 'hex');
}

/** struct ep_tx (52 bytes). */
export function encodeTx(t: KernelTx | undefined): Buffer {
  const b = Buffer.alloc(52);
  if (t === undefined) return b; // active = 0: every packet to the Node path
  if (t.auth.length !== 16) throw new Error('an authenticator is 16 bytes');
  b.writeUInt32LE(1, 0);
  b.writeUInt32LE(t.ifindex, 4);
  ipv4(t.srcIp, b, 8);
  ipv4(t.dstIp, b, 12);
  b.writeUInt16BE(t.srcPort, 16);
  b.writeUInt16BE(t.dstPort, 18);
  b[20] = t.hopLimit;
  t.auth.copy(b, 24);
  mac(t.srcMac).copy(b, 40);
  mac(t.dstMac).copy(b, 46);
  return b;
}

/** struct ep_rx_config (12 bytes). */
export function encodeRxConfig(ip: string, udpPort: number, tunIfindex: number): Buffer {
  const b = Buffer.alloc(12);
  ipv4(ip, b, 0);
  b.writeUInt16BE(udpPort, 4);
  b.writeUInt32LE(tunIfindex, 8);
  return b;
}

const ZERO = Buffer.alloc(4);

export class KernelEndpoint {
  private readonly links: number[] = [];
  private readonly maps: { tx: number; rxConfig: number; rx: number; stats: number; sequence: number };
  /** Preallocated for the detector's reads, every few ms: the poll allocates nothing. */
  private readonly key = Buffer.alloc(4);
  private readonly counter = Buffer.alloc(16);

  private constructor(
    private readonly n: BpfNative,
    private readonly obj: object,
  ) {
    this.maps = {
      tx: n.mapFd(obj, 'ep_tx'),
      rxConfig: n.mapFd(obj, 'ep_rx_config'),
      rx: n.mapFd(obj, 'ep_rx'),
      stats: n.mapFd(obj, 'ep_stats'),
      sequence: n.mapFd(obj, 'ep_sequence'),
    };
  }

  /** Loads the programs and attaches them: encapsulation on the TUN's egress, decapsulation on the underlay's ingress. */
  static open(o: { tunIfindex: number; underlayIfindex: number }): KernelEndpoint {
    if (!existsSync(ENDPOINT_OBJECT))
      throw new KernelUnavailable(`${ENDPOINT_OBJECT} is not built: run npm run build (clang, libbpf-dev)`);
    const n = loadNative();
    const obj = n.open(ENDPOINT_OBJECT);
    try {
      n.load(obj);
      const ep = new KernelEndpoint(n, obj);
      ep.links.push(n.attachTc(n.programFd(obj, 'arrow_ep_encap'), o.tunIfindex, true));
      ep.links.push(n.attachTc(n.programFd(obj, 'arrow_ep_decap'), o.underlayIfindex, false));
      return ep;
    } catch (err) {
      n.close(obj);
      throw new KernelUnavailable(`the endpoint's kernel path: ${(err as Error).message}`);
    }
  }

  private update(fd: number, key: Buffer, value: Buffer): void {
    const r = this.n.mapUpdate(fd, key, value, 0);
    if (r !== 0) throw new KernelMapError(`endpoint map update: errno ${-r}`);
  }

  /** The endpoint's UDP address (where return circuits deliver) and its TUN interface. */
  setReceiver(ip: string, udpPort: number, tunIfindex: number): void {
    this.update(this.maps.rxConfig, ZERO, encodeRxConfig(ip, udpPort, tunIfindex));
  }

  /** The active circuit; undefined hands every packet to the Node path. One map update. */
  setTx(t: KernelTx | undefined): void {
    this.update(this.maps.tx, ZERO, encodeTx(t));
  }

  /** The next sequence number the encapsulation writes. */
  setSequence(next: bigint): void {
    const v = Buffer.alloc(8);
    v.writeBigUInt64LE(next, 0);
    this.update(this.maps.sequence, ZERO, v);
  }

  /** `ep_stats[i]` summed over the CPUs, into `this.counter`; false when it cannot be read. */
  private readStat(i: number): boolean {
    this.key.writeUInt32LE(i, 0);
    return this.n.percpuSum(this.maps.stats, this.key, 16, this.counter);
  }

  /** DATA packets the encapsulation sent, on every CPU. */
  sentPackets(): number {
    return this.readStat(0) ? Number(this.counter.readBigUInt64LE(0)) : 0;
  }

  /** DATA packets decapsulated on the return circuit `auth` (0 when it is not listed). */
  receivedOn(auth: Buffer): number {
    if (!this.n.mapLookup(this.maps.rx, auth, this.counter)) return 0;
    return Number(this.counter.readBigUInt64LE(0));
  }

  /** A return circuit whose DATA the kernel decapsulates (untagged only). */
  addReturn(auth: Buffer): void {
    this.update(this.maps.rx, auth, Buffer.alloc(16));
  }

  stats(): KernelEndpointStats {
    const read = (i: number): { packets: number; bytes: number } =>
      this.readStat(i)
        ? { packets: Number(this.counter.readBigUInt64LE(0)), bytes: Number(this.counter.readBigUInt64LE(8)) }
        : { packets: 0, bytes: 0 };
    return { sent: read(0), received: read(1), passedUp: read(2), noRoom: read(3), superPackets: read(4) };
  }

  close(): void {
    for (const l of this.links.splice(0)) this.n.detach(l);
    this.n.close(this.obj);
  }
}
