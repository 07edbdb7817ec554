// Pure logic of the endpoint's kernel path: when it is refused and why, the next hop (with MACs)
// read from `ip -j` answers, and the map value the encapsulation program reads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseNextHop } from '../src/endpoint/next-hop.js';
import { endpointKernelRefusal } from '../src/endpoint/tun-kernel.js';
import { encodeTx } from '../src/endpoint/kernel-endpoint.js';
import { isHardware, mustFinish, txChecksumming } from '../src/endpoint/underlay-checksums.js';

const veth = { name: 'veth0', loopback: false };

test('the endpoint kernel path is refused, with the reason, where it cannot work', () => {
  const ok = { listenHost: '10.0.0.1', underlay: veth, tunNetns: undefined };
  assert.equal(endpointKernelRefusal(ok), undefined);
  assert.match(endpointKernelRefusal({ ...ok, listenHost: '0.0.0.0' })!, /one IPv4 address/);
  assert.match(endpointKernelRefusal({ ...ok, listenHost: '::1' })!, /one IPv4 address/);
  assert.match(endpointKernelRefusal({ ...ok, underlay: undefined })!, /no interface holds 10.0.0.1/);
  assert.match(
    endpointKernelRefusal({ ...ok, listenHost: '127.0.0.1', underlay: { name: 'lo', loopback: true } })!,
    /loopback interface \(lo\)/,
  );
  assert.match(endpointKernelRefusal({ ...ok, tunNetns: 'blue' })!, /namespace blue/);
});

test('the next hop comes from ip route/link/neigh: the gateway when there is one, else the host', () => {
  const link = [{ ifindex: 7, address: '02:00:00:00:00:01', link_type: 'ether' }];
  const neigh = [
    { dst: '10.0.0.254', lladdr: '02:00:00:00:00:fe', state: ['STALE'] },
    { dst: '10.0.0.9', lladdr: '02:00:00:00:00:09', state: ['REACHABLE'] },
  ];
  const viaGw = parseNextHop('192.0.2.1', [{ dev: 'eth0', gateway: '10.0.0.254' }], link, neigh);
  assert.deepEqual(viaGw, {
    ifindex: 7,
    ifname: 'eth0',
    srcMac: '02:00:00:00:00:01',
    dstMac: '02:00:00:00:00:fe',
    via: '10.0.0.254',
  });
  const direct = parseNextHop('10.0.0.9', [{ dev: 'eth0' }], link, neigh);
  assert.equal(direct.dstMac, '02:00:00:00:00:09');
  // Unresolved (or failed) neighbours leave the MAC undefined: the Node path sends meanwhile.
  assert.equal(parseNextHop('10.0.0.5', [{ dev: 'eth0' }], link, neigh).dstMac, undefined);
  const failed = [{ dst: '10.0.0.5', lladdr: '02:00:00:00:00:05', state: ['FAILED'] }];
  assert.equal(parseNextHop('10.0.0.5', [{ dev: 'eth0' }], link, failed).dstMac, undefined);
  assert.throws(() => parseNextHop('10.0.0.5', [], link, neigh), /no route to 10.0.0.5/);
  assert.throws(
    () => parseNextHop('10.0.0.5', [{ dev: 'wg0' }], [{ ifindex: 3, address: 'x', link_type: 'none' }], []),
    /needs Ethernet/,
  );
});

test('struct ep_tx: 52 bytes, in the layout endpoint.bpf.c reads', () => {
  const b = encodeTx({
    ifindex: 5,
    srcIp: '10.0.0.1',
    srcPort: 7000,
    dstIp: '10.0.0.2',
    dstPort: 443,
    auth: Buffer.alloc(16, 0xab),
    hopLimit: 9,
    srcMac: '02:00:00:00:00:01',
    dstMac: '02:00:00:00:00:02',
  });
  assert.equal(b.length, 52);
  assert.equal(b.readUInt32LE(0), 1, 'active');
  assert.equal(b.readUInt32LE(4), 5);
  assert.deepEqual([...b.subarray(8, 12)], [10, 0, 0, 1]);
  assert.deepEqual([...b.subarray(12, 16)], [10, 0, 0, 2]);
  assert.equal(b.readUInt16BE(16), 7000);
  assert.equal(b.readUInt16BE(18), 443);
  assert.equal(b[20], 9);
  assert.deepEqual(b.subarray(24, 40), Buffer.alloc(16, 0xab));
  assert.equal(b.subarray(40, 46).toString('hex'), '020000000001');
  assert.equal(b.subarray(46, 52).toString('hex'), '020000000002');
  assert.equal(encodeTx(undefined).readUInt32LE(0), 0, 'inactive: every packet to the Node path');
  const good = {
    ifindex: 5,
    srcIp: '10.0.0.1',
    srcPort: 7000,
    dstIp: '10.0.0.2',
    dstPort: 443,
    auth: Buffer.alloc(16),
    hopLimit: 9,
    srcMac: '02:00:00:00:00:01',
    dstMac: '02:00:00:00:00:02',
  };
  assert.throws(() => encodeTx({ ...good, dstMac: '02:00:00:00:00' }), /not a MAC address/);
  assert.throws(() => encodeTx({ ...good, dstIp: '10.0.0.256' }), /not an IPv4 address/);
  assert.throws(() => encodeTx({ ...good, auth: Buffer.alloc(8) }), /16 bytes/);
});

test('who finishes the checksums: the stack on a virtual interface under auto, always under finish, never under keep; read from ethtool -k', () => {
  assert.equal(mustFinish('auto', { hardware: false }), true);
  assert.equal(mustFinish('auto', { hardware: true }), false);
  assert.equal(mustFinish('finish', { hardware: true }), true);
  assert.equal(mustFinish('keep', { hardware: false }), false);
  const show = (tx: string): string =>
    `Features for veth0:\nrx-checksumming: on\ntx-checksumming: ${tx}\n\ttx-checksum-ipv4: off [fixed]\n\ttx-checksum-ip-generic: ${tx}\n`;
  assert.equal(txChecksumming(show('on')), true);
  assert.equal(txChecksumming(show('off')), false);
  assert.equal(txChecksumming(show('off [fixed]')), false);
  assert.equal(txChecksumming('Features for x:\nrx-checksumming: on\n'), undefined);
  // The lab's loopback has no device behind it; neither does a veth.
  assert.equal(isHardware('lo'), false);
});
