// Which data plane a router picks (src/router/dataplane-mode.ts), from what the host looks like:
// pure functions, no BPF or root needed. The real processes are in test/kernel-lab.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addressRefusal, attachOrder, interfaceHolding } from '../src/router/dataplane-mode.js';
import { RouterConfigSchema } from '../src/router/config.js';
import { ConfigError, loadConfig } from '../src/util/config.js';

/** `ip -j -d addr show` as iproute2 prints it, cut to what is read: loopback, a veth, a NIC. */
const IP_ADDR = JSON.stringify([
  {
    ifindex: 1,
    ifname: 'lo',
    flags: ['LOOPBACK', 'UP', 'LOWER_UP'],
    link_type: 'loopback',
    addr_info: [
      { family: 'inet', local: '127.0.0.1', prefixlen: 8 },
      { family: 'inet6', local: '::1', prefixlen: 128 },
    ],
  },
  {
    ifindex: 7,
    ifname: 'arrow-ns-n1',
    flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'],
    link_type: 'ether',
    linkinfo: { info_kind: 'veth' },
    addr_info: [{ family: 'inet', local: '10.77.1.11', prefixlen: 16 }],
  },
  {
    ifindex: 2,
    ifname: 'eth0',
    flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'],
    link_type: 'ether',
    addr_info: [
      { family: 'inet', local: '192.0.2.10', prefixlen: 24 },
      { family: 'inet6', local: '2001:db8::10', prefixlen: 64 },
    ],
  },
]);

test('the interface that holds the router’s address, and whether it can carry the kernel path', () => {
  const veth = interfaceHolding(IP_ADDR, '10.77.1.11');
  assert.deepEqual(veth, { name: 'arrow-ns-n1', index: 7, loopback: false, kind: 'veth' });
  assert.equal(addressRefusal('10.77.1.11', veth, 'auto'), undefined);
  const nic = interfaceHolding(IP_ADDR, '192.0.2.10');
  assert.deepEqual(nic, { name: 'eth0', index: 2, loopback: false, kind: undefined });

  const lo = interfaceHolding(IP_ADDR, '127.0.0.1');
  assert.equal(lo?.loopback, true);
  // The loopback lab's 127.1.x.y: lo answers for all of 127/8 without listing them.
  assert.equal(interfaceHolding(IP_ADDR, '127.1.2.12')?.name, 'lo');
  assert.equal(interfaceHolding(IP_ADDR, '10.77.1.12'), undefined, 'other interfaces: exact addresses only');
  // lo is everybody's: auto keeps the Node path there; asked for by name, tc on lo carries it.
  assert.match(addressRefusal('127.0.0.1', lo, 'auto') ?? '', /loopback interface \(lo\), shared/);
  assert.equal(addressRefusal('127.1.2.12', lo, 'kernel'), undefined);
  assert.match(addressRefusal('0.0.0.0', undefined, 'kernel') ?? '', /listens on 0\.0\.0\.0/);
  assert.match(addressRefusal('2001:db8::10', undefined, 'kernel') ?? '', /IPv4 only/);
  assert.equal(interfaceHolding(IP_ADDR, '198.51.100.1'), undefined);
  assert.match(addressRefusal('198.51.100.1', undefined, 'auto') ?? '', /no interface holds 198\.51\.100\.1/);
});

test('attach order: XDP in the driver first, except on a veth; tc on loopback; a configured mode only', () => {
  const iface = { name: 'eth0', index: 2, loopback: false, kind: undefined };
  assert.deepEqual(attachOrder(iface, 'auto'), ['xdp-native', 'xdp-generic', 'tc']);
  assert.deepEqual(attachOrder({ ...iface, kind: 'veth' }, 'auto'), ['tc', 'xdp-generic']);
  assert.deepEqual(attachOrder({ ...iface, kind: 'veth' }, 'xdp-native'), ['xdp-native']);
  assert.deepEqual(attachOrder(iface, 'tc'), ['tc']);
  // lo holds one XDP program but a chain of tcx ones: every router of a loopback lab attaches there.
  assert.deepEqual(attachOrder({ name: 'lo', index: 1, loopback: true, kind: undefined }, 'auto'), ['tc']);
});

test('router config: dataplane defaults to auto, and anything but auto|kernel|node is refused', () => {
  const dir = mkdtempSync(join(tmpdir(), 'arrow-dp-'));
  try {
    const base = 'isp: a\npop: p\nname: r\nlisten: 127.0.0.1:0\nstore: { kind: memory }\n';
    const file = join(dir, 'r.yaml');
    writeFileSync(file, base);
    const c = loadConfig(RouterConfigSchema, file);
    assert.equal(c.dataplane, 'auto');
    assert.deepEqual(c.kernel, { attach: 'auto', maxCircuits: 65536, maxTagged: 16384 });
    writeFileSync(file, `${base}dataplane: kernel\nkernel: { attach: tc }\n`);
    assert.equal(loadConfig(RouterConfigSchema, file).kernel.attach, 'tc');
    writeFileSync(file, `${base}dataplane: fast\n`);
    assert.throws(
      () => loadConfig(RouterConfigSchema, file),
      (e: unknown) => e instanceof ConfigError && /dataplane/.test(e.message),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
