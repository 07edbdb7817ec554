import { isIPv4 } from 'node:net';
import { parsePrefix, type IpPrefix } from './address.js';

/**
 * A set of IP prefixes that answers "does this address, read straight from a packet, fall in
 * one of them?" without allocating: the packet path of `deliver-ip` checks every inner packet's
 * destination and source against its circuit's prefixes (docs/egress.md). Each prefix is kept as
 * 32-bit words and masks, so a lookup compares integers. Circuits hold a handful of prefixes;
 * the scan is linear in them.
 */
export class PrefixSet {
  /** IPv4: network and mask per prefix, as unsigned 32-bit integers. */
  private readonly v4: Uint32Array;
  /** IPv6: four network words then four mask words per prefix. */
  private readonly v6: Uint32Array;

  constructor(readonly prefixes: readonly IpPrefix[]) {
    const four = prefixes.filter((p) => p.family === 4);
    const six = prefixes.filter((p) => p.family === 6);
    this.v4 = new Uint32Array(four.length * 2);
    four.forEach((p, i) => {
      const mask = maskWord(p.length);
      this.v4[i * 2] = (ipv4Word(p.network) & mask) >>> 0;
      this.v4[i * 2 + 1] = mask;
    });
    this.v6 = new Uint32Array(six.length * 8);
    six.forEach((p, i) => {
      const words = ipv6Words(p.network);
      for (let w = 0; w < 4; w++) {
        const mask = maskWord(Math.max(0, Math.min(32, p.length - w * 32)));
        this.v6[i * 8 + w] = (words[w]! & mask) >>> 0;
        this.v6[i * 8 + 4 + w] = mask;
      }
    });
  }

  /** Parses prefixes with the one prefix parser (src/wire/address.ts); throws naming the bad one. */
  static parse(texts: readonly string[]): PrefixSet {
    return new PrefixSet(
      texts.map((t) => {
        const r = parsePrefix(t);
        if (!r.ok) throw new Error(r.message);
        return r.prefix;
      }),
    );
  }

  /** The IPv4 address at `buf[offset..offset+4]` is in the set. */
  hasV4(buf: Buffer, offset: number): boolean {
    const a = buf.readUInt32BE(offset);
    for (let i = 0; i < this.v4.length; i += 2) if ((a & this.v4[i + 1]!) >>> 0 === this.v4[i]) return true;
    return false;
  }

  /** The IPv6 address at `buf[offset..offset+16]` is in the set. */
  hasV6(buf: Buffer, offset: number): boolean {
    outer: for (let i = 0; i < this.v6.length; i += 8) {
      for (let w = 0; w < 4; w++)
        if ((buf.readUInt32BE(offset + w * 4) & this.v6[i + 4 + w]!) >>> 0 !== this.v6[i + w]) continue outer;
      return true;
    }
    return false;
  }

  /** An address given as text (control plane: routes, tests). */
  hasAddress(host: string): boolean {
    if (isIPv4(host)) {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(ipv4Word(host));
      return this.hasV4(b, 0);
    }
    const b = Buffer.alloc(16);
    ipv6Words(host).forEach((w, i) => b.writeUInt32BE(w, i * 4));
    return this.hasV6(b, 0);
  }
}

/** The top `length` bits set, of 32. */
export function maskWord(length: number): number {
  return length === 0 ? 0 : (0xffffffff << (32 - length)) >>> 0;
}

export function ipv4Word(text: string): number {
  const [a, b, c, d] = text.split('.').map(Number) as [number, number, number, number];
  return ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
}

/** The four 32-bit words of an IPv6 literal (with `::` and an embedded IPv4 tail expanded). */
export function ipv6Words(text: string): number[] {
  let t = text;
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(t);
  if (dotted) {
    const w = ipv4Word(dotted[1]!);
    t = `${t.slice(0, -dotted[1]!.length)}${(w >>> 16).toString(16)}:${(w & 0xffff).toString(16)}`;
  }
  const [head = '', tail] = t.split('::');
  const left = head ? head.split(':') : [];
  const right = tail === undefined ? [] : tail ? tail.split(':') : [];
  const groups = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right].map((g) =>
    parseInt(g, 16),
  );
  return [0, 1, 2, 3].map((i) => ((groups[i * 2]! << 16) | groups[i * 2 + 1]!) >>> 0);
}
