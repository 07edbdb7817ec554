// Pure logic of TUN mode: MTU arithmetic, IP packet checks, ICMP "too big" answers. No root needed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  checkIpPacket,
  internetChecksum,
  parseCidr,
  TOO_BIG_SCRATCH,
  tooBigReply,
  tunMtuFor,
} from '../src/endpoint/tun-packet.js';

/** An IPv4 packet of `total` bytes, from 10.0.0.1 to 10.0.0.2, with a valid header checksum. */
function ipv4(
  total: number,
  o: { df?: boolean; protocol?: number; fragOffset?: number; icmpType?: number } = {},
) {
  const p = Buffer.alloc(total);
  p[0] = 0x45;
  p.writeUInt16BE(total, 2);
  p.writeUInt16BE((o.df ? 0x4000 : 0) | (o.fragOffset ?? 0), 6);
  p[8] = 64;
  p[9] = o.protocol ?? 17;
  p.set([10, 0, 0, 1], 12);
  p.set([10, 0, 0, 2], 16);
  p.writeUInt16BE(internetChecksum(p, 0, 20), 10);
  if (o.icmpType !== undefined) p[20] = o.icmpType;
  for (let i = 28; i < total; i++) p[i] = i & 0xff;
  return p;
}

function ipv6(total: number, nextHeader = 17, firstPayloadByte = 0) {
  const p = Buffer.alloc(total);
  p[0] = 0x60;
  p.writeUInt16BE(total - 40, 4);
  p[6] = nextHeader;
  p[7] = 64;
  p[8] = 0xfd;
  p[23] = 1; // fd00::1
  p[24] = 0xfd;
  p[39] = 2; // fd00::2
  p[40] = firstPayloadByte;
  return p;
}

test('TUN MTU leaves room for IPv4 (20) + UDP (8) + ARROW (28): 1500 -> 1444', () => {
  assert.equal(tunMtuFor(1500), 1444);
  assert.equal(tunMtuFor(9000), 8944);
  assert.equal(tunMtuFor(1500, 2), 1412, 'and 16 bytes less per per-packet tag');
});

test('checkIpPacket accepts whole IPv4/IPv6 packets and names what is wrong with the rest', () => {
  assert.equal(checkIpPacket(ipv4(84)), 'ok');
  assert.equal(checkIpPacket(ipv6(104)), 'ok');
  assert.equal(checkIpPacket(Buffer.alloc(0)), 'empty');
  assert.equal(checkIpPacket(Buffer.from([0x50, 0, 0, 0])), 'version');
  assert.equal(checkIpPacket(ipv4(84).subarray(0, 19)), 'short');
  assert.equal(checkIpPacket(ipv4(84).subarray(0, 80)), 'length', 'a truncated packet');
  assert.equal(checkIpPacket(Buffer.concat([ipv4(84), Buffer.alloc(4)])), 'length', 'a padded packet');
  assert.equal(checkIpPacket(ipv6(104).subarray(0, 100)), 'length');
});

test('an oversized IPv4 packet with DF gets ICMP fragmentation-needed with the next-hop MTU', () => {
  const p = ipv4(1500, { df: true });
  const out = Buffer.alloc(TOO_BIG_SCRATCH);
  const n = tooBigReply(p, 1444, out);
  assert.equal(n, 576, 'quotes up to 576 bytes in all (RFC 1812)');
  const r = out.subarray(0, n);
  assert.equal(checkIpPacket(r), 'ok');
  assert.equal(internetChecksum(r, 0, 20), 0, 'IP header checksum');
  assert.equal(r[9], 1, 'ICMP');
  assert.deepEqual([...r.subarray(12, 16)], [10, 0, 0, 2], "from the packet's destination");
  assert.deepEqual([...r.subarray(16, 20)], [10, 0, 0, 1], 'to its source');
  assert.equal(r[20], 3, 'destination unreachable');
  assert.equal(r[21], 4, 'fragmentation needed and DF set');
  assert.equal(r.readUInt16BE(26), 1444, 'next-hop MTU');
  assert.equal(internetChecksum(r, 20, n), 0, 'ICMP checksum');
  assert.deepEqual(r.subarray(28, n), p.subarray(0, n - 28), 'quotes the offending packet');
});

test('no ICMP answer without DF, about an ICMP error, or about a non-first fragment', () => {
  const out = Buffer.alloc(TOO_BIG_SCRATCH);
  assert.equal(tooBigReply(ipv4(1500), 1444, out), 0, 'no DF: the caller drops and counts');
  assert.equal(tooBigReply(ipv4(1500, { df: true, protocol: 1, icmpType: 3 }), 1444, out), 0);
  assert.ok(tooBigReply(ipv4(1500, { df: true, protocol: 1, icmpType: 8 }), 1444, out) > 0, 'echo request');
  assert.equal(tooBigReply(ipv4(1500, { df: true, fragOffset: 100 }), 1444, out), 0);
});

test('an oversized IPv6 packet gets ICMPv6 Packet Too Big, at most 1280 bytes, with a valid checksum', () => {
  const p = ipv6(2000);
  const out = Buffer.alloc(TOO_BIG_SCRATCH);
  const n = tooBigReply(p, 1444, out);
  assert.equal(n, 1280);
  const r = out.subarray(0, n);
  assert.equal(checkIpPacket(r), 'ok');
  assert.equal(r[6], 58);
  assert.equal(r[40], 2, 'Packet Too Big');
  assert.equal(r.readUInt32BE(44), 1444);
  assert.deepEqual(r.subarray(8, 24), p.subarray(24, 40), "from the packet's destination");
  // The checksum covers a pseudo-header: source, destination, length, next header.
  const pseudo = Buffer.alloc(40 + n - 40);
  r.copy(pseudo, 0, 8, 40);
  pseudo.writeUInt32BE(n - 40, 32);
  pseudo[39] = 58;
  r.copy(pseudo, 40, 40, n);
  assert.equal(internetChecksum(pseudo), 0);
  assert.equal(tooBigReply(ipv6(2000, 58, 1), 1444, out), 0, 'never about an ICMPv6 error');
});

test('parseCidr takes IPv4 and IPv6 interface addresses only', () => {
  assert.deepEqual(parseCidr('10.200.0.1/24'), { address: '10.200.0.1', prefix: 24, family: 4 });
  assert.equal(parseCidr('fd00::1/64')?.family, 6);
  for (const bad of ['10.200.0.1', '10.200.0.1/33', 'fd00::1/129', 'host/24', '10.0.0.1/24 '])
    assert.equal(parseCidr(bad), undefined, bad);
});
