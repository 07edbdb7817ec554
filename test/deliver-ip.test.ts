import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BlockList } from 'node:net';
import fc from 'fast-check';
import { DataPlane, DropCounters, type Output } from '../src/router/dataplane.js';
import { IpEgress } from '../src/router/egress.js';
import { ReturnPathSender } from '../src/router/return-path.js';
import type { Hop } from '../src/router/table.js';
import { createLogger } from '../src/util/log.js';
import { ForwardingTable } from '../src/router/table.js';
import { circuitRecordProblems, type Circuit } from '../src/store/circuit.js';
import { PrefixSet } from '../src/wire/prefix-set.js';
import { mustParseAddress, parsePrefix } from '../src/wire/address.js';
import { TargetPolicy, prefixesOverlap } from '../src/portal/target-policy.js';
import { decode, encode, PacketType } from '../src/wire/header.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildPortal } from '../src/portal/server.js';
import type { PortalConfig } from '../src/portal/config.js';
import { SqliteStore } from '../src/store/sqlite.js';
import { hashApiKey } from '../src/portal/accounts.js';
import { authToBytes, newAuthenticator } from '../src/wire/authenticator.js';

// Issue 12, part 1: the deliver-ip action's pure logic. The egress strips the envelope and hands
// the inner IP packet to its host only when it is a whole IP packet, to the circuit's prefixes,
// from the customer's own prefix; everything else is dropped and counted by reason.

class Recorder implements Output {
  sent: { packet: Buffer; to: string }[] = [];
  ip: { circuit: string; packet: Buffer }[] = [];
  egress = true;
  send(packet: Buffer, port: number, host: string, offset = 0): void {
    this.sent.push({ packet: Buffer.from(packet.subarray(offset)), to: `${host}:${port}` });
  }
  deliverUdp(): void {}
  deliverIp(entry: { circuit: string }, packet: Buffer): boolean {
    if (this.egress) this.ip.push({ circuit: entry.circuit, packet: Buffer.from(packet) });
    return this.egress;
  }
  probed: string[] = [];
  probedIp(entry: { circuit: string }): void {
    this.probed.push(entry.circuit);
  }
}

function ipCircuit(over: Partial<Circuit> = {}): Circuit {
  return {
    auth: newAuthenticator(),
    owner: 'acme',
    ingressPop: 'fra',
    egressPop: 'fra',
    bandwidthMbps: 10,
    internalAuth: '',
    internalRouters: [],
    action: {
      kind: 'deliver-ip',
      prefixes: ['198.51.100.0/24', '2001:db8:5::/48'],
      source: '100.64.0.2/32',
      reply: { addresses: ['127.0.0.41:4000'], auth: newAuthenticator() },
    },
    createdAt: new Date().toISOString(),
    revision: 1,
    ...over,
  };
}

/** A minimal IPv4 header (ICMP echo, checksum not checked by the egress) with `extra` payload bytes. */
function ipv4(src: string, dst: string, extra = 8): Buffer {
  const b = Buffer.alloc(20 + extra);
  b[0] = 0x45;
  b.writeUInt16BE(b.length, 2);
  b[8] = 64;
  b[9] = 1;
  src.split('.').forEach((x, i) => (b[12 + i] = Number(x)));
  dst.split('.').forEach((x, i) => (b[16 + i] = Number(x)));
  return b;
}

function ipv6(src: string, dst: string, extra = 8): Buffer {
  const b = Buffer.alloc(40 + extra);
  b[0] = 0x60;
  b.writeUInt16BE(extra, 4);
  b[6] = 58;
  b[7] = 64;
  v6Bytes(src).copy(b, 8);
  v6Bytes(dst).copy(b, 24);
  return b;
}

function v6Bytes(text: string): Buffer {
  const [head = '', tail = ''] = text.split('::');
  const l = head ? head.split(':') : [];
  const r = tail ? tail.split(':') : [];
  const groups = [...l, ...Array<string>(8 - l.length - r.length).fill('0'), ...r];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

function data(auth: string, payload: Buffer): Buffer {
  return encode({
    type: PacketType.Data,
    hopLimit: 9,
    authenticator: authToBytes(auth),
    sequence: 1n,
    payload,
  });
}

function setup(over: Partial<Circuit> = {}): {
  c: Circuit;
  dp: DataPlane;
  out: Recorder;
  table: ForwardingTable;
} {
  const c = ipCircuit(over);
  const table = new ForwardingTable('fra');
  assert.equal(table.put(c), undefined);
  const out = new Recorder();
  return { c, dp: new DataPlane(table, out), out, table };
}

test('deliver-ip hands the inner IPv4 and IPv6 packets to the host, byte for byte, and counts them out', () => {
  const { c, dp, out, table } = setup();
  const four = ipv4('100.64.0.2', '198.51.100.7', 100);
  const six = ipv6('::', '2001:db8:5::9');
  dp.process(data(c.auth, four), 1, '127.0.0.1');
  assert.deepEqual(out.ip, [{ circuit: c.auth, packet: four }]);
  // The IPv6 packet's source (::) is outside the customer's IPv4 prefix: refused, not delivered.
  dp.process(data(c.auth, six), 1, '127.0.0.1');
  assert.equal(out.ip.length, 1);
  assert.equal(dp.drops.counts['spoofed-source'], 1);
  // A customer with an IPv6 tunnel prefix gets its IPv6 packets through.
  const v6 = ipCircuit({
    action: { kind: 'deliver-ip', prefixes: ['2001:db8:5::/48'], source: 'fd00:64::/64' },
  });
  table.put(v6);
  const mine = ipv6('fd00:64::2', '2001:db8:5::9', 30);
  dp.process(data(v6.auth, mine), 1, '127.0.0.1');
  assert.deepEqual(out.ip[1], { circuit: v6.auth, packet: mine });
  const counters = table.snapshotCounters()[c.auth]!;
  assert.equal(counters.outPackets, 1);
  assert.equal(counters.outBytes, 28 + four.length);
  assert.deepEqual(counters.drops, { 'spoofed-source': 1 });
});

test('deliver-ip drops what would make the circuit an open relay, a spoofer or a carrier of garbage, by reason', () => {
  const { c, dp, out, table } = setup();
  const cases: [Buffer, string][] = [
    [ipv4('100.64.0.2', '10.0.0.1'), 'outside-prefixes'],
    [ipv4('100.64.0.2', '198.51.101.1'), 'outside-prefixes'],
    [ipv4('100.64.0.3', '198.51.100.1'), 'spoofed-source'],
    [Buffer.from('not an ip packet at all'), 'not-ip'],
    [Buffer.alloc(0), 'not-ip'],
    [ipv4('100.64.0.2', '198.51.100.1').subarray(0, 19), 'not-ip'],
  ];
  // A length field that disagrees with what arrived: a truncated or padded packet.
  const lying = ipv4('100.64.0.2', '198.51.100.1');
  lying.writeUInt16BE(lying.length + 4, 2);
  cases.push([lying, 'not-ip']);
  const v5 = ipv4('100.64.0.2', '198.51.100.1');
  v5[0] = 0x55;
  cases.push([v5, 'not-ip']);
  for (const [payload, reason] of cases) {
    const before = dp.drops.counts[reason as 'not-ip'];
    dp.process(data(c.auth, payload), 1, '127.0.0.1');
    assert.equal(dp.drops.counts[reason as 'not-ip'], before + 1, `${payload.toString('hex')}: ${reason}`);
  }
  assert.equal(out.ip.length, 0);
  assert.equal(table.snapshotCounters()[c.auth]!.outPackets, 0);
});

test('deliver-ip without an egress TUN on this router drops as no-egress', () => {
  const { c, dp, out } = setup();
  out.egress = false;
  dp.process(data(c.auth, ipv4('100.64.0.2', '198.51.100.7')), 1, '127.0.0.1');
  assert.equal(dp.drops.counts['no-egress'], 1);
});

test('a probe at a deliver-ip egress turns into the return path, as at deliver-udp', () => {
  const { c, dp, out } = setup();
  const probe = encode({
    type: PacketType.Probe,
    hopLimit: 9,
    authenticator: authToBytes(c.auth),
    sequence: 7n,
    payload: Buffer.alloc(0),
  });
  dp.process(probe, 5000, '127.0.0.1');
  const onwards = out.sent.find((s) => s.to === '127.0.0.41:4000');
  assert.ok(onwards, JSON.stringify(out.sent.map((s) => s.to)));
  const p = decode(onwards.packet);
  assert.ok(p.ok && c.action.kind === 'deliver-ip');
  assert.equal(Buffer.from(p.packet.authenticator).toString('hex'), c.action.reply!.auth);
  assert.equal(out.ip.length, 0, 'a probe never leaves as IP');
  // The probe says the customer's path leads here now: the egress may take the customer over.
  assert.deepEqual(out.probed, [c.auth]);
});

test('EN-DN mapping: the egress router the store names claims the customer, anew when traffic comes back to it, and withdraws when the store names its sibling', () => {
  const { c, table } = setup();
  const entry = table.entriesOf(c.auth).find((e) => e.kind === 'deliver-ip')!;
  assert.equal(entry.kind, 'deliver-ip');
  // No TUN opened: route changes are skipped, the mapping is pure state.
  const egress = new IpEgress(
    { tun: 'arrow-unit', underlayMtu: 1500, announceTable: 100 },
    () => {},
    new DropCounters(),
    createLogger('test', 'silent'),
  );
  egress.held(entry);
  assert.deepEqual(egress.claims(), {}, 'nothing known: no claim before DATA or the store says');
  egress.held(entry, true);
  const first = egress.claims()['100.64.0.2/32'];
  assert.equal(first?.circuit, c.auth, 'designated by the store: claimed');
  egress.held(entry, true);
  assert.equal(egress.claims()['100.64.0.2/32']?.since, first!.since, 'the same record again: no new claim');
  egress.held(entry, false);
  assert.deepEqual(egress.claims(), {}, 'the store names the sibling: withdrawn');
  assert.equal(egress.counters.unclaims, 1);
  egress.arrived(entry);
  const byData = egress.claims()['100.64.0.2/32'];
  assert.ok(byData, 'a first DATA packet or probe claims at once, before the store says');
  egress.held(entry, true);
  assert.equal(
    egress.claims()['100.64.0.2/32']?.since,
    byData.since,
    'the store then naming it keeps that claim',
  );
  assert.equal(egress.counters.takeovers, 2);
  // Stray DATA while the store names the sibling: the claim goes with the next record.
  egress.held(entry, false);
  egress.arrived(entry);
  assert.ok(egress.claims()['100.64.0.2/32']);
  egress.held(entry, false);
  assert.deepEqual(egress.claims(), {});
  assert.equal(egress.counters.unclaims, 3);
});

test('return traffic enters the return circuit at this router when it is one of its ingress routers, not at a sibling that may be dead', () => {
  const sent: string[] = [];
  const rp = new ReturnPathSender((_b, port, host) => sent.push(`${host}:${port}`));
  const reply: Hop = {
    circuit: 'c',
    kind: 'reply',
    addresses: [mustParseAddress('10.0.0.1:4000'), mustParseAddress('10.0.0.2:4000')],
    keys: ['10.0.0.1:4000', '10.0.0.2:4000'],
    active: 0,
    auth: Buffer.alloc(16, 7),
  };
  assert.equal(rp.wrapAndSend(reply, 1n, Buffer.from('answer')), true);
  rp.self = mustParseAddress('10.0.0.2:4000');
  assert.equal(rp.wrapAndSend(reply, 2n, Buffer.from('answer')), true);
  rp.self = mustParseAddress('10.0.0.3:4000');
  assert.equal(rp.wrapAndSend(reply, 3n, Buffer.from('answer')), true);
  assert.deepEqual(sent, ['10.0.0.1:4000', '10.0.0.2:4000', '10.0.0.1:4000']);
});

test('deliver-ip records: prefixes and source are checked by the one prefix parser', () => {
  const ok = ipCircuit();
  assert.deepEqual(circuitRecordProblems(ok), []);
  const bad = (action: unknown): string[] =>
    circuitRecordProblems({ ...ok, action: action as Circuit['action'] });
  assert.match(bad({ kind: 'deliver-ip', prefixes: [], source: '100.64.0.2/32' }).join(), /action.prefixes/);
  assert.match(
    bad({ kind: 'deliver-ip', prefixes: ['10.0.0.0/33'], source: '100.64.0.2/32' }).join(),
    /prefixes\[0\]/,
  );
  assert.match(bad({ kind: 'deliver-ip', prefixes: ['10.0.0.0/8'], source: 'me' }).join(), /action.source/);
  assert.match(
    bad({ kind: 'deliver-ip', prefixes: Array(65).fill('10.0.0.0/8'), source: '100.64.0.2/32' }).join(),
    /1-64/,
  );
  // The table refuses what the store would: one bad record never stops a router.
  const table = new ForwardingTable('fra');
  assert.match(
    table.put({ ...ok, action: { kind: 'deliver-ip', prefixes: ['x'], source: '1.2.3.4' } }) ?? '',
    /prefixes/,
  );
  assert.equal(table.circuits, 0);
});

test('PrefixSet agrees with node:net BlockList on random IPv4 and IPv6 addresses and prefixes (property)', () => {
  const v4 = fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 32 }));
  const v6 = fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 128 }));
  fc.assert(
    fc.property(
      fc.array(fc.oneof(v4, v6), { minLength: 1, maxLength: 6 }),
      fc.oneof(fc.ipV4(), fc.ipV6()),
      (ps, host) => {
        const texts = ps.map(([a, l]) => `${a}/${l}`).filter((t) => parsePrefix(t).ok);
        fc.pre(texts.length > 0);
        const set = PrefixSet.parse(texts);
        // Per family, as packets are: BlockList alone would also match IPv4 hosts against IPv6
        // rules through IPv4-mapped addresses, which an IPv4 header never carries.
        const family = host.includes(':') ? 'ipv6' : 'ipv4';
        const list = new BlockList();
        for (const t of texts) {
          const p = parsePrefix(t);
          assert.ok(p.ok);
          const f = p.prefix.family === 4 ? 'ipv4' : 'ipv6';
          if (f === family) list.addSubnet(p.prefix.network, p.prefix.length, f);
        }
        assert.equal(set.hasAddress(host), list.check(host, family), `${host} in ${texts.join(' ')}`);
      },
    ),
    { numRuns: 2000 },
  );
});

test('egress policy for prefixes: a prefix may not overlap what is refused, unless wholly allowed', () => {
  const infra = { routers: ['192.0.2.10:4000'], portal: ['192.0.2.20:8080'], store: [] };
  const policy = new TargetPolicy({
    deny: ['203.0.113.0/24'],
    internal: ['10.0.0.0/8'],
    allow: ['10.9.0.0/16'],
  });
  const check = (t: string): string | undefined => {
    const p = parsePrefix(t);
    assert.ok(p.ok);
    return policy.checkPrefix(p.prefix, infra)?.rule;
  };
  assert.equal(check('198.51.100.0/24'), undefined);
  assert.equal(check('0.0.0.0/0'), 'unspecified', 'the default route overlaps everything refused');
  assert.equal(check('224.0.0.0/3'), 'multicast');
  assert.equal(check('203.0.113.128/25'), 'deny');
  assert.equal(check('203.0.0.0/16'), 'deny', 'a prefix holding a denied one');
  assert.equal(check('10.1.0.0/16'), 'internal');
  assert.equal(check('10.9.3.0/24'), undefined, 'wholly inside an allowed prefix');
  assert.equal(check('127.0.0.0/8'), 'loopback');
  assert.equal(check('192.0.2.0/24'), 'infrastructure', 'holds a router');
  assert.equal(check('192.0.2.10/32'), 'infrastructure');
  assert.equal(check('192.0.2.128/25'), undefined);
  const overlap = (a: string, b: string): boolean => {
    const x = parsePrefix(a);
    const y = parsePrefix(b);
    assert.ok(x.ok && y.ok);
    return prefixesOverlap(x.prefix, y.prefix);
  };
  assert.equal(overlap('100.64.0.0/24', '100.64.0.2/32'), true);
  assert.equal(overlap('100.64.0.2/32', '100.64.0.0/24'), true);
  assert.equal(overlap('100.64.0.0/24', '100.64.1.0/24'), false);
  assert.equal(overlap('100.64.0.0/24', '2001:db8::/32'), false);
});

/** A portal on a fresh SQLite store, given to `use`, closed and removed after. */
async function withPortal(
  config: (db: string) => Promise<PortalConfig>,
  use: (app: Awaited<ReturnType<typeof buildPortal>>, store: SqliteStore) => Promise<void>,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'arrow-deliver-ip-portal-'));
  const store = new SqliteStore(join(dir, 'isp.db'));
  const app = await buildPortal({ config: await config(join(dir, 'isp.db')), store });
  try {
    await use(app, store);
  } finally {
    await app.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

test("the portal sells deliver-ip only where configured, checks prefixes whole and keeps accounts off each other's tunnel prefixes", async () => {
  const config = async (db: string): Promise<PortalConfig> => ({
    isp: 'beta',
    listen: '127.0.0.1:0',
    store: { kind: 'sqlite', path: db },
    pops: [
      { name: 'fra', routers: ['127.0.0.21:4000'] },
      { name: 'lon', routers: ['127.0.0.31:4000'] },
    ],
    offers: [
      {
        from: 'fra',
        to: 'lon',
        capacityMbps: 100,
        latencyMs: { min: 1, max: 9 },
        maxLossPct: 0.1,
        uptimePct: 99.9,
        pricePerMbps: 1,
      },
      {
        from: 'fra',
        to: 'fra',
        capacityMbps: 100,
        latencyMs: { min: 1, max: 9 },
        maxLossPct: 0.1,
        uptimePct: 99.9,
        pricePerMbps: 1,
      },
    ],
    accounts: [
      { name: 'acme', apiKeyHash: await hashApiKey('acme-key-0000000000') },
      { name: 'zeta', apiKeyHash: await hashApiKey('zeta-key-0000000000') },
    ],
    targetPolicy: { allow: ['127.0.0.0/8'], deny: ['203.0.113.0/24'], internal: ['10.0.0.0/8'] },
    ipTransit: { pops: ['lon'], customerPrefixes: ['100.64.0.0/10'] },
  });
  await withPortal(config, async (app, store) => {
    const create = async (
      deliver: object,
      who = 'acme',
      egressPop = 'lon',
    ): Promise<{ status: number; message: string; json: Record<string, unknown> }> => {
      const r = await app.inject({
        method: 'POST',
        url: '/circuits',
        headers: { authorization: `Bearer ${who}-key-0000000000` },
        payload: { ingressPop: 'fra', egressPop, bandwidthMbps: 1, deliver },
      });
      const json = r.json() as Record<string, unknown>;
      return { status: r.statusCode, message: String(json.message ?? ''), json };
    };
    const ip = (over: object = {}): object => ({
      kind: 'ip',
      prefixes: ['198.51.100.0/24'],
      source: '100.64.0.2/32',
      ...over,
    });

    const ok = await create(ip());
    assert.equal(ok.status, 201, ok.message);
    assert.deepEqual(ok.json.deliver, { kind: 'ip', prefixes: ['198.51.100.0/24'], source: '100.64.0.2/32' });
    const stored = await store.get(String(ok.json.auth));
    assert.equal(stored?.action.kind, 'deliver-ip');

    const refused: [object, string, number, RegExp][] = [
      [ip(), 'fra', 403, /no IP egress at PoP fra/],
      [ip({ prefixes: ['10.1.0.0/16'] }), 'lon', 403, /internal/],
      [ip({ prefixes: ['0.0.0.0/0'] }), 'lon', 403, /unspecified/],
      [ip({ prefixes: ['203.0.0.0/16'] }), 'lon', 403, /denied prefix 203.0.113.0\/24/],
      [ip({ source: '192.0.2.0/24' }), 'lon', 403, /not inside this ISP's customer prefixes/],
      [ip({ prefixes: ['198.51.100.0/33'] }), 'lon', 400, /prefixes/],
      [ip({ prefixes: [] }), 'lon', 400, /prefixes/],
      [ip({ source: undefined }), 'lon', 400, /source/],
    ];
    for (const [body, pop, status, why] of refused) {
      const r = await create(body, 'acme', pop);
      assert.equal(r.status, status, `${JSON.stringify(body)} at ${pop}: ${r.message}`);
      assert.match(r.message, why);
    }
    // Another account may not claim a tunnel prefix that overlaps acme's: the egress would route
    // acme's answers to it. Acme itself may (a standby path for the same tunnel).
    const theft = await create(ip({ source: '100.64.0.0/24' }), 'zeta');
    assert.equal(theft.status, 409, theft.message);
    assert.match(theft.message, /overlaps another account's tunnel prefix/);
    assert.equal((await create(ip(), 'acme')).status, 201);
    assert.equal((await create(ip({ source: '100.64.1.0/24' }), 'zeta')).status, 201);
  });
});

test('an ISP without ipTransit refuses deliver-ip with 403', async () => {
  await withPortal(
    async (db): Promise<PortalConfig> => ({
      isp: 'gamma',
      listen: '127.0.0.1:0',
      store: { kind: 'sqlite', path: db },
      pops: [{ name: 'lon', routers: ['127.0.0.31:4000'] }],
      offers: [
        {
          from: 'lon',
          to: 'lon',
          capacityMbps: 100,
          latencyMs: { min: 1, max: 9 },
          maxLossPct: 0.1,
          uptimePct: 99.9,
          pricePerMbps: 1,
        },
      ],
      accounts: [{ name: 'acme', apiKeyHash: await hashApiKey('acme-key-0000000000') }],
    }),
    async (app) => {
      const r = await app.inject({
        method: 'POST',
        url: '/circuits',
        headers: { authorization: 'Bearer acme-key-0000000000' },
        payload: {
          ingressPop: 'lon',
          egressPop: 'lon',
          bandwidthMbps: 1,
          deliver: { kind: 'ip', prefixes: ['198.51.100.0/24'], source: '100.64.0.2/32' },
        },
      });
      assert.equal(r.statusCode, 403);
      assert.match(r.json().message, /sells no IP transit/);
    },
  );
});
