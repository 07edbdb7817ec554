import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { Lab } from '../src/lab/lab.js';
import { defaultTopology } from '../src/lab/topology.js';

import { CLI_PATH } from '../src/lab/process.js';
import { Endpoint } from '../src/endpoint/endpoint.js';
import { type BoughtPath } from '../src/endpoint/path.js';
import { PortalClient } from '../src/endpoint/portal-client.js';
import {
  DiagnosticSocket,
  echoRouter,
  lastLegPing,
  measureLink,
  measureRelay,
  ping,
  summarize,
  traceroute,
  type CircuitRef,
  type TraceResult,
} from '../src/endpoint/diagnostics.js';
import { resolveCircuit } from '../src/cli/diagnostics.js';
import {
  decodeLastLegReply,
  decodeProbeRequest,
  decodeRelayReply,
  decodeRelayRequest,
  decodeTraceReply,
  encodeLastLegReply,
  encodeProbeRequest,
  encodeRelayReply,
  encodeRelayRequest,
  encodeTraceReply,
  type HopAction,
  type TraceHop,
} from '../src/wire/diagnostics.js';
import { authToBytes, newAuthenticator } from '../src/wire/authenticator.js';
import { decode, encode, PacketType } from '../src/wire/header.js';
import { DataPlane, type Output } from '../src/router/dataplane.js';
import { RouterDiagnostics } from '../src/router/diagnostics.js';
import { ForwardingTable } from '../src/router/table.js';
import type { Circuit } from '../src/store/circuit.js';
import { eventually, routerStats, sendRaw, statsOf } from './helpers/network.js';
import { LAB_DATAPLANES, kernelSent, startLabWithPath, stopLabWithPath } from './helpers/dataplanes.js';

// ---- pure codecs ---------------------------------------------------------------------------------

const ipv4 = fc
  .tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255), fc.integer({ min: 1, max: 65535 }))
  .map(([a, b, c, d, port]) => ({ host: `${a}.${b}.${c}.${d}`, port }));
const text = fc.string({ maxLength: 40 });
const action = fc.constantFrom<HopAction>('internal', 'forward', 'deliver-endpoint', 'deliver-udp', 'return');

test('diagnostic payloads round-trip (property)', () => {
  fc.assert(
    fc.property(
      fc.boolean(),
      fc.integer({ min: 1, max: 255 }),
      fc.integer({ min: 0, max: 5000 }),
      ipv4,
      fc.uint8Array({ maxLength: 100 }),
      fc.boolean(),
      (everyHop, initialHopLimit, timeoutMs, originator, body, digest) => {
        const req = { everyHop, initialHopLimit, timeoutMs, originator, ...(digest ? { digest } : {}) };
        assert.deepEqual(decodeProbeRequest(encodeProbeRequest(req, body)), req);
      },
    ),
    { numRuns: 300 },
  );
  fc.assert(
    fc.property(
      fc.record({
        hopIndex: fc.nat(255),
        hopLimit: fc.nat(255),
        action,
        turning: fc.boolean(),
        end: fc.boolean(),
        isp: text,
        pop: text,
        router: text,
        address: text,
        next: text,
        digest: fc.option(
          fc.uint8Array({ minLength: 8, maxLength: 8 }).map((b) => Buffer.from(b).toString('hex')),
          {
            nil: undefined,
          },
        ),
      }),
      (h) => {
        const { digest, ...rest } = h;
        const hop: TraceHop = digest === undefined ? rest : { ...rest, digest };
        assert.deepEqual(decodeTraceReply(encodeTraceReply(hop)), { ...hop });
      },
    ),
    { numRuns: 300 },
  );
  fc.assert(
    fc.property(ipv4, fc.integer({ min: 0, max: 4_000_000 }), (target, us) => {
      assert.deepEqual(decodeRelayRequest(encodeRelayRequest(target)), target);
      assert.deepEqual(decodeRelayReply(encodeRelayReply({ rttMs: us / 1000, target })), {
        rttMs: us / 1000,
        target,
      });
    }),
    { numRuns: 300 },
  );
  fc.assert(
    fc.property(
      fc.constantFrom('reply', 'timeout', 'busy', 'not-udp' as const),
      fc.integer({ min: 0, max: 4_000_000 }),
      text,
      fc.uint8Array({ maxLength: 64 }),
      (status, us, target, reply) => {
        const r = { status, rttMs: us / 1000, target, replyLength: reply.length, reply };
        const d = decodeLastLegReply(encodeLastLegReply(r));
        assert.ok(d);
        assert.deepEqual({ ...d, reply: [...d.reply] }, { ...r, reply: [...reply] });
      },
    ),
    { numRuns: 300 },
  );
});

test('diagnostic payload decoders never throw on arbitrary bytes (property)', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
      decodeProbeRequest(bytes);
      decodeTraceReply(bytes);
      decodeRelayRequest(bytes);
      decodeRelayReply(bytes);
      decodeLastLegReply(bytes);
      // Valid first bytes, random rest: the likeliest malformed input.
      const b = Uint8Array.from(bytes);
      if (b.length > 0) b[0] = 1;
      decodeProbeRequest(b);
      decodeTraceReply(b);
      decodeRelayRequest(b);
      decodeLastLegReply(b);
    }),
    { numRuns: 3000 },
  );
  // Every truncation of a valid request is refused, not misread.
  const req = encodeProbeRequest({
    everyHop: true,
    initialHopLimit: 64,
    timeoutMs: 0,
    originator: { host: '127.0.0.1', port: 4000 },
  });
  for (let n = 0; n < req.length; n++) assert.equal(decodeProbeRequest(req.subarray(0, n)), undefined);
  const relay = encodeRelayRequest({ host: '127.0.0.1', port: 4000 });
  for (let n = 0; n < relay.length; n++) assert.equal(decodeRelayRequest(relay.subarray(0, n)), undefined);
});

test('the data plane counts and drops malformed diagnostics and never throws (property)', () => {
  const auth = newAuthenticator();
  const circuit: Circuit = {
    auth,
    owner: 'demo',
    ingressPop: 'ams',
    egressPop: 'ams',
    bandwidthMbps: 1,
    internalAuth: '',
    internalRouters: [],
    action: { kind: 'forward', next: { addresses: ['127.0.0.21:4000'], auth: newAuthenticator() } },
    createdAt: new Date().toISOString(),
    revision: 1,
  };
  const table = new ForwardingTable('ams');
  table.put(circuit);
  const sent: { to: string; bytes: Buffer }[] = [];
  const send = (b: Buffer, port: number, host: string): void =>
    void sent.push({ to: `${host}:${port}`, bytes: b });
  const out: Output = { send, deliverUdp: () => {}, deliverIp: () => false };
  const diag = new RouterDiagnostics(
    { isp: 'alpha', pop: 'ams', router: 'alpha-ams-1' },
    () => '127.0.0.11:4000',
    send,
  );
  // Rate limits out of the way: the property is about parsing, not budgets.
  const dp = new DataPlane(
    table,
    out,
    { heard: () => {}, probeForwarded: () => {}, admitProbe: () => true },
    diag,
  );
  let n = 0;
  fc.assert(
    fc.property(
      fc.constantFrom(PacketType.Trace, PacketType.Relay, PacketType.EchoReply, PacketType.LastLeg),
      fc.uint8Array({ maxLength: 60 }),
      fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
      (type, payload, sequence) => {
        n++;
        const p = Buffer.from(payload);
        if (p.length > 0) p[0] = 1; // the format byte, so decoding gets past it
        dp.process(
          encode({ type, hopLimit: 64, authenticator: authToBytes(auth), sequence, payload: p }),
          5000,
          '127.0.0.1',
        );
      },
    ),
    { numRuns: 3000 },
  );
  // Every packet was either handled (and answered or forwarded) or counted as a drop.
  const h = dp.handled;
  assert.equal(dp.drops.total + h.traces + h.relays + h.lastLegs, n);
  assert.ok(dp.drops.counts['bad-payload'] > 0 && dp.drops.counts['unsolicited-reply'] > 0);
  // Replies never carry an authenticator (an internal one must not reach customers).
  for (const s of sent) {
    const d = decode(s.bytes);
    if (d.ok && d.packet.type === PacketType.TraceReply)
      assert.deepEqual([...d.packet.authenticator], new Array(16).fill(0));
  }
  diag.close();
});

test('ping statistics are computed like ping (min/avg/max/mdev)', () => {
  assert.deepEqual(summarize([1, 2, 3, 4]), { min: 1, avg: 2.5, max: 4, mdev: Math.sqrt(1.25) });
  assert.equal(summarize([]), undefined);
});

test('the CLI names a circuit one way, with errors naming the flag', () => {
  const auth = newAuthenticator();
  assert.deepEqual(resolveCircuit(`${auth}@127.0.0.1:4000`, {}), { ingress: '127.0.0.1:4000', auth });
  assert.deepEqual(resolveCircuit(undefined, { via: '127.0.0.1:4000', auth }), {
    ingress: '127.0.0.1:4000',
    auth,
  });
  assert.throws(() => resolveCircuit(undefined, {}), /one way/);
  assert.throws(() => resolveCircuit(undefined, { auth }), /--via/);
  assert.throws(() => resolveCircuit(undefined, { via: '127.0.0.1:4000', auth: 'xyz' }), /--auth/);
  assert.throws(() => resolveCircuit(undefined, { via: 'nowhere', auth }), /--via/);
  assert.throws(() => resolveCircuit(`${auth}@127.0.0.1:4000`, { auth }), /one way/);
});

// ---- a 3-ISP network of real processes -----------------------------------------------------------

let lab: Lab;
let endpoint: Endpoint;
let path: BoughtPath;
let sock: DiagnosticSocket;
/** Runs the arrow CLI to the end (killed after 20 s): exit code, stdout, stderr. */
function run(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI_PATH, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const kill = setTimeout(() => p.kill('SIGKILL'), 20_000);
    p.on('close', (code) => {
      clearTimeout(kill);
      resolve({ code, out, err });
    });
  });
}

let circuit: CircuitRef;

const topology = defaultTopology();
topology.statsIntervalMs = 100;
// Routers' own liveness off: the diagnostics must show a path broken at a dead router as it is
// before anything repairs it. With the default liveness (200 ms x 3), the routers next to the
// dead one would move the circuit to its sibling within a second, while ping and traceroute run.
topology.failover = { liveness: { enabled: false } };

const routerName = (address: string): string => lab.routers.find((r) => r.address === address)!.name;

for (const dataplane of LAB_DATAPLANES)
  describe(`routers on the ${dataplane} path`, () => {
    before(async () => {
      ({ lab, endpoint, path } = await startLabWithPath(topology, dataplane, (s) => ({
        ...s,
        bandwidthMbps: 1,
      })));
      sock = await DiagnosticSocket.open();
      const first = path.forward[0]!.circuit;
      circuit = { ingress: first.ingress[0]!, auth: first.auth };
    });

    after(async () => {
      await sock?.close();
      await stopLabWithPath({ lab, endpoint, path });
    });

    /** Failover activity across every router: a diagnostic must never cause any. */
    async function failoverActivity(): Promise<number> {
      const all = (await Promise.all(lab.isps.map((i) => routerStats(lab, i.name)))).flat();
      return all.reduce(
        (t, s) => t + (s.failover?.['neighboursDown'] ?? 0) + (s.failover?.['hopsMoved'] ?? 0),
        0,
      );
    }

    test('traceroute names every hop of a 3-ISP circuit in order, the return path too, with RTTs', async () => {
      const t = await traceroute(sock, circuit, { queries: 3, timeoutMs: 1000 });
      const expected = [
        ['alpha', 'ams', 'internal'],
        ['alpha', 'fra', 'forward'],
        ['beta', 'fra', 'internal'],
        ['beta', 'par', 'forward'],
        ['gamma', 'par', 'internal'],
        ['gamma', 'lon', 'return'],
        // The return path, bought backwards through the same ISPs, to our endpoint.
        ['gamma', 'lon', 'internal'],
        ['gamma', 'par', 'forward'],
        ['beta', 'par', 'internal'],
        ['beta', 'fra', 'forward'],
        ['alpha', 'fra', 'internal'],
        ['alpha', 'ams', 'deliver-endpoint'],
      ];
      assert.deepEqual(
        t.hops.map((h) => [h.isp, h.pop, h.action]),
        expected,
        JSON.stringify(t.hops, null, 1),
      );
      assert.ok(t.complete);
      for (const [i, h] of t.hops.entries()) {
        assert.equal(h.index, i + 1);
        // Each hop names a real router of its ISP and PoP, at that router's own address.
        assert.ok(h.router!.startsWith(`${h.isp}-${h.pop}-`), h.router);
        assert.equal(routerName(h.address!), h.router);
        assert.equal(h.received, 3, `hop ${h.index} answered ${h.received} of 3`);
        assert.ok(h.rttMs.every((x) => x !== undefined && x > 0));
        assert.equal(h.direction, i < 6 ? 'forward' : 'return');
        // Each router says where it sent the trace, and that is who answered next.
        if (i + 1 < t.hops.length) assert.equal(h.next, t.hops[i + 1]!.address, `hop ${h.index}`);
      }
      assert.equal(t.hops[5]!.turning, true);
      assert.equal(t.hops[11]!.next, endpoint.address);
    });

    test('ping through the circuit: every echo answered from the end of the return path, no failover', async () => {
      const activity = await failoverActivity();
      const seen: number[] = [];
      const r = await ping(sock, circuit, {
        count: 5,
        intervalMs: 100,
        timeoutMs: 1000,
        onReply: (x) => seen.push(x.seq),
      });
      assert.equal(r.transmitted, 5);
      assert.equal(r.received, 5);
      assert.equal(r.lossPct, 0);
      assert.deepEqual(seen.sort(), [1, 2, 3, 4, 5]);
      assert.ok(r.rtt && r.rtt.min > 0 && r.rtt.min <= r.rtt.avg && r.rtt.avg <= r.rtt.max);
      for (const x of r.replies) {
        assert.ok(x.from !== 'home');
        assert.equal(`${x.from.isp}/${x.from.pop}`, 'alpha/ams');
      }
      await sleep(topology.statsIntervalMs * 3);
      assert.equal(await failoverActivity(), activity);
    });

    test('arrow ping and arrow traceroute print the familiar formats', async () => {
      const name = `${circuit.auth}@${circuit.ingress}`;
      const p = await run(['ping', name, '-c', '3', '-i', '0.1', '-W', '1']);
      assert.equal(p.code, 0, p.err);
      const lines = p.out.trim().split('\n');
      assert.match(lines[0]!, /^PING circuit [0-9a-f]{8} via 127\.1\.1\.\d+:\d+: 56 data bytes$/);
      for (let i = 1; i <= 3; i++)
        assert.match(
          lines[i]!,
          new RegExp(`^\\d+ bytes from alpha/ams/alpha-ams-\\d \\(.+\\): seq=${i} time=\\d+\\.\\d\\d ms$`),
        );
      assert.match(lines[4]!, /^--- circuit [0-9a-f]{8} ping statistics ---$/);
      assert.match(lines[5]!, /^3 packets transmitted, 3 received, 0% packet loss, time \d+ms$/);
      assert.match(lines[6]!, /^rtt min\/avg\/max\/mdev = [\d.]+\/[\d.]+\/[\d.]+\/[\d.]+ ms$/);

      const t = await run(['traceroute', '--via', circuit.ingress, '--auth', circuit.auth, '-w', '1']);
      assert.equal(t.code, 0, t.err);
      // Nothing on this lab rewrites packets: every hop reports the payload as sent.
      const whole = await run(['traceroute', name, '-w', '1', '-q', '1', '--integrity']);
      assert.equal(whole.code, 0, whole.err);
      assert.match(whole.out, /payload integrity: unmodified at every hop that reported \(12\)/);
      assert.doesNotMatch(whole.out, /MODIFIED/);
      const hops = t.out.split('\n').filter((l) => /^\s*\d+\s{2}/.test(l));
      assert.equal(hops.length, 12, t.out);
      assert.match(
        hops[0]!,
        /^\s+1 {2}alpha\/ams\/alpha-ams-\d \(127\.1\.1\.\d+:\d+\)( {2}[\d.]+ ms){3} {2}internal/,
      );
      assert.match(t.out, /-- return path --/);

      // A bought path as `arrow connect --save` writes it names the same circuit.
      const dir = mkdtempSync(join(tmpdir(), 'arrow-diag-'));
      const file = join(dir, 'path.json');
      writeFileSync(file, JSON.stringify(path));
      const viaPath = await run(['ping', '--path', file, '-c', '1', '-W', '1']);
      rmSync(dir, { recursive: true, force: true });
      assert.equal(viaPath.code, 0, viaPath.err);
      assert.match(
        viaPath.out,
        new RegExp(`^PING circuit ${circuit.auth.slice(0, 8)} via ${circuit.ingress}:`),
      );

      const bad = await run(['ping', '--auth', circuit.auth]);
      assert.equal(bad.code, 1);
      assert.match(bad.err, /--via/);
    });

    test('last-leg ping: the egress router pings the circuit’s own server, and nothing else', async () => {
      const server = lab.server('echo').address;
      const payload = Buffer.from('last-leg check');
      const r = await lastLegPing(sock, circuit, { count: 3, intervalMs: 100, timeoutMs: 1000, payload });
      assert.equal(r.received, 3, JSON.stringify(r.failures));
      assert.equal(r.target, server);
      for (const x of r.replies) {
        assert.equal(x.target, server);
        assert.equal(Buffer.from(x.reply).toString(), 'last-leg check');
        assert.ok(x.rttMs > 0 && x.rttMs <= x.roundTripMs);
      }

      // A circuit that delivers to an endpoint has no server to ping: the router refuses, and
      // the endpoint (here a plain socket standing in for any host) receives nothing at all.
      const decoy = await udpSink();
      const alpha = lab.isp('alpha');
      const c = await new PortalClient(alpha.url, alpha.accounts[0]!.apiKey).createCircuit({
        ingressPop: 'ams',
        egressPop: 'fra',
        bandwidthMbps: 1,
        deliver: { kind: 'endpoint', addresses: [decoy.address] },
      });
      try {
        const ref = { ingress: c.ingress[0]!, auth: c.auth };
        const refused = await eventually(async () => {
          const x = await lastLegPing(sock, ref, {
            count: 1,
            timeoutMs: 500,
            payload: Buffer.from(`to ${decoy.address}`),
          });
          return x.failures['not-udp'] ? x : undefined;
        }, 5000);
        assert.ok(refused, 'the router never answered not-udp');
        assert.equal(refused.received, 0);
        await sleep(200);
        // Only the routers' liveness keepalives (which every delivery address gets) ever reach it.
        const other = decoy.received.filter((m) => {
          const d = decode(m);
          return !(d.ok && d.packet.type === PacketType.Keepalive);
        });
        assert.equal(other.length, 0, 'the last-leg service sent something to a non-target');
      } finally {
        await new PortalClient(alpha.url, alpha.accounts[0]!.apiKey).relinquish(c.auth);
        decoy.socket.close();
      }
    });

    test('relayed echo measures R1→R2; an ECHO_REPLY R1 did not ask for is dropped and counted', async () => {
      const r1 = lab.router('alpha-fra-1');
      const r2 = lab.router('beta-fra-1');
      assert.ok((await echoRouter(sock, r1.address, { timeoutMs: 1000 })) !== undefined);
      const m = await measureLink(sock, r1.address, r2.address, {
        count: 5,
        intervalMs: 20,
        timeoutMs: 1000,
      });
      assert.equal(m.relayed.received, 5, JSON.stringify(m));
      assert.equal(m.direct.received, 5);
      assert.equal(m.linkLossPct, 0);
      for (const [i, x] of m.relayed.rttMs.entries()) assert.ok(x > 0 && x <= m.relayed.totalMs[i]!);
      // The atlas's prober interface: the socket itself.
      assert.ok(((await sock.relay(r1.address, r2.address, 1000)) ?? 0) > 0);
      assert.ok(((await sock.echo(r2.address, 1000)) ?? 0) > 0);
      // A silent R2 (nothing listens there): the relay is lost, not invented.
      const silent = await measureRelay(sock, r1.address, '127.1.9.9:9', { timeoutMs: 300 });
      assert.equal(silent.rttMs, undefined);

      const before = (await statsOf(lab, r1.name)).drops['unsolicited-reply'] ?? 0;
      // Forged answers: random ids, and R2's own address but not from R2.
      const forged = Array.from({ length: 20 }, (_, i) =>
        encode({
          type: PacketType.EchoReply,
          hopLimit: 1,
          authenticator: new Uint8Array(16),
          sequence: BigInt(i) * 0x1_0000_0001n + 7n,
          payload: new Uint8Array(0),
        }),
      );
      await sendRaw(r1.address, forged);
      const after = await eventually(async () => {
        const n = (await statsOf(lab, r1.name)).drops['unsolicited-reply'] ?? 0;
        return n >= before + 20 ? n : 0;
      });
      assert.equal(after, before + 20);
      assert.equal(lab.router(r1.name).managed!.proc.exitCode, null);
    });

    test('malformed TRACE and RELAY payloads are counted and dropped; the routers carry on', async () => {
      const ingress = routerName(circuit.ingress);
      const before = (await statsOf(lab, ingress)).drops['bad-payload'] ?? 0;
      const good = encodeProbeRequest({
        everyHop: true,
        initialHopLimit: 64,
        timeoutMs: 0,
        originator: sock.originator,
      });
      const badTraces = [
        Buffer.alloc(0),
        good.subarray(0, 10),
        Buffer.concat([Buffer.from([9]), good.subarray(1)]), // unknown format
        Buffer.concat([good.subarray(0, 8), Buffer.from([6]), good.subarray(9)]), // family 6
        Buffer.concat([good.subarray(0, 10), Buffer.from([0, 0]), good.subarray(12)]), // port 0
      ];
      // Paced inside the per-circuit probe budget, so each is judged on its payload.
      for (const [i, payload] of badTraces.entries()) {
        await sendRaw(circuit.ingress, [
          encode({
            type: PacketType.Trace,
            hopLimit: 64,
            authenticator: authToBytes(circuit.auth),
            sequence: BigInt(i),
            payload,
          }),
        ]);
        await sleep(60);
      }
      const badRelays = [Buffer.alloc(3), Buffer.from([1, 0, 0, 0, 4, 0, 0, 0]), Buffer.alloc(12, 0xff)];
      await sendRaw(
        circuit.ingress,
        badRelays.map((payload, i) =>
          encode({
            type: PacketType.Relay,
            hopLimit: 1,
            authenticator: new Uint8Array(16),
            sequence: BigInt(i),
            payload,
          }),
        ),
      );
      const n = badTraces.length + badRelays.length;
      const after = await eventually(async () => {
        const x = (await statsOf(lab, ingress)).drops['bad-payload'] ?? 0;
        return x >= before + n ? x : 0;
      });
      assert.equal(after, before + n);
      assert.equal(lab.router(ingress).managed!.proc.exitCode, null);
      await sleep(600); // let the per-circuit budget refill
      assert.equal((await ping(sock, circuit, { count: 2, intervalMs: 100, timeoutMs: 1000 })).received, 2);
    });

    test('traces are rate-limited like probes and trigger no repair', async () => {
      await sleep(600);
      const activity = await failoverActivity();
      const ingress = routerName(circuit.ingress);
      const limitedBefore = (await statsOf(lab, ingress)).drops['probe-rate'] ?? 0;
      /** Traces dropped by a rate limit at any router of the lab. */
      const everyLimited = async (): Promise<number> =>
        (await Promise.all(lab.isps.map((i) => routerStats(lab, i.name))))
          .flat()
          .reduce((t, x) => t + (x.drops['probe-rate'] ?? 0), 0);
      const everyLimitedBefore = await everyLimited();
      // A burst of 40 traces answered at every hop; count who answers hop 1.
      const answers = new Map<number, number>();
      const payload = encodeProbeRequest({
        everyHop: true,
        initialHopLimit: 64,
        timeoutMs: 0,
        originator: sock.originator,
      });
      const seqs: bigint[] = [];
      for (let i = 0; i < 40; i++) {
        const { sequence } = sock.send(
          circuit.ingress,
          PacketType.Trace,
          payload,
          (p) => {
            const h = p.type === PacketType.TraceReply ? decodeTraceReply(p.payload) : undefined;
            if (h) answers.set(h.hopIndex, (answers.get(h.hopIndex) ?? 0) + 1);
          },
          { auth: circuit.auth },
        );
        seqs.push(sequence);
      }
      await sleep(500);
      // Default per-circuit budget: a burst of 10 and 20/s; the burst took a few ms.
      const first = answers.get(1) ?? 0;
      assert.ok(first >= 5 && first <= 15, `hop 1 answered ${first} of 40`);
      const limited = await eventually(async () => {
        const x = (await statsOf(lab, ingress)).drops['probe-rate'] ?? 0;
        return x - limitedBefore >= 40 - first ? x - limitedBefore : 0;
      });
      assert.equal(limited, 40 - first);
      // What got through went all the way, or was dropped by a later hop's own rate limit (on a
      // busy machine a hop can receive the survivors bunched up), counted: nothing else is lost.
      const accounted = await eventually(async () => {
        const dropped = (await everyLimited()) - everyLimitedBefore;
        return (answers.get(12) ?? 0) + dropped === 40 ? dropped : 0;
      });
      for (const s of seqs) sock.forget(s);
      assert.equal(
        (answers.get(12) ?? 0) + accounted,
        40,
        `40 traces: ${answers.get(12) ?? 0} came back through hop 12, ${accounted} dropped by rate limits`,
      );
      assert.ok((answers.get(12) ?? 0) > 0 && (answers.get(12) ?? 0) <= first);
      await sleep(topology.statsIntervalMs * 3);
      assert.equal(await failoverActivity(), activity, 'a trace triggered failover');
    });

    test('a SIGKILLed middle router shows as loss in ping and where traceroute stops', async () => {
      await sleep(600);
      const t0 = await traceroute(sock, circuit, { queries: 1, timeoutMs: 1000 });
      const victim = t0.hops[2]!; // beta's ingress router, where alpha hands over
      assert.equal(victim.isp, 'beta');
      lab.kill(victim.router!, 'SIGKILL');
      try {
        await sleep(100);
        const r = await ping(sock, circuit, { count: 4, intervalMs: 100, timeoutMs: 500 });
        assert.equal(r.transmitted, 4);
        assert.equal(r.received, 0);
        assert.equal(r.lossPct, 100);
        const t = await traceroute(sock, circuit, { queries: 3, timeoutMs: 500 });
        assert.equal(t.complete, false);
        assert.deepEqual(
          t.hops.map((h) => h.router),
          t0.hops.slice(0, 2).map((h) => h.router),
        );
        // The last hop that answered names the dead router as where it sent the trace.
        assert.equal(t.hops[1]!.next, victim.address);
      } finally {
        await lab.restart(victim.router!);
      }
    });

    async function udpSink(): Promise<{ socket: Socket; address: string; received: Buffer[] }> {
      const socket = createSocket('udp4');
      const received: Buffer[] = [];
      socket.on('message', (m) => received.push(m));
      await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
      const a = socket.address() as AddressInfo;
      return { socket, address: `${a.address}:${a.port}`, received };
    }

    test('a reply that waited in the socket while our loop was busy past the timeout is not called lost', async () => {
      const own = await DiagnosticSocket.open();
      try {
        // A request to our own address: it arrives in our socket at once and is its own reply.
        const reply = own.request(own.address, PacketType.Echo, new Uint8Array(8), 20, (p) => p.sequence);
        // Our loop is busy past the deadline (a GC pause, start-up, a loaded machine): when it runs
        // again the timer is due before the socket is read. Without the backlog marker this was a loss.
        const until = performance.now() + 150;
        while (performance.now() < until);
        assert.notEqual(await reply, undefined, 'the reply sitting in the socket counts');
        // And a request nobody answers is still lost, once the backlog is read.
        const silent = await DiagnosticSocket.open();
        const silentAddress = silent.address;
        await silent.close();
        assert.equal(
          await own.request(silentAddress, PacketType.Echo, new Uint8Array(8), 20, () => 1),
          undefined,
        );
      } finally {
        await own.close();
      }
    });

    if (dataplane === 'kernel')
      test('the kernel path (tc on lo) forwarded the DATA of the tests above and passed their diagnostics up', async () => {
        // Traces and echoes are control packets: each router's program hands them to its process
        // (passNotData); only the DATA echoes that brought the path up cross in the kernel.
        const sent = await kernelSent(lab);
        assert.ok(sent > 0, `the routers' programs sent ${sent} DATA packets`);
        const all = (await Promise.all(lab.isps.map((i) => routerStats(lab, i.name)))).flat();
        const passedUp = all.reduce((t, s) => t + (s.dataplane?.kernel?.passNotData ?? 0), 0);
        assert.ok(passedUp >= 20, `the programs passed ${passedUp} control packets up`);
      });
  });

describe('payload integrity per hop (tracebox): a middlebox rewrites packets entering beta', () => {
  let lab: Lab | undefined;
  let endpoint: Endpoint | undefined;
  let path: BoughtPath | undefined;
  const rewriting = defaultTopology();
  rewriting.name = 'integrity';
  rewriting.statsIntervalMs = 100;
  // Every packet beta's routers carry arrives with its last payload byte inverted, as if a
  // non-ARROW network between alpha and beta rewrote it (the lab's impair, src/router/impair.ts).
  rewriting.isps.find((i) => i.name === 'beta')!.impair = { rewritePct: 100 };

  before(async () => {
    ({ lab, endpoint, path } = await startLabWithPath(rewriting, 'node', (s) => s));
  });
  after(async () => stopLabWithPath({ lab, endpoint, path }));

  test('arrow traceroute --integrity names the first hop where the payload changed, and exits 2', async () => {
    const first = path!.forward[0]!.circuit;
    const name = `${first.auth}@${first.ingress[0]}`;
    const j = await run(['traceroute', name, '-w', '1', '-q', '2', '--integrity', '--json']);
    assert.equal(j.code, 2, j.err);
    const t = JSON.parse(j.out) as TraceResult;
    const firstBeta = t.hops.find((h) => h.isp === 'beta')!;
    assert.ok(firstBeta, j.out);
    assert.equal(t.integrity?.firstModifiedHop, firstBeta.index, j.out);
    for (const h of t.hops.filter((x) => x.index < firstBeta.index)) {
      assert.equal(h.isp, 'alpha');
      assert.equal(h.modified, false, `hop ${h.index} saw the payload as sent`);
      assert.equal(h.digest, t.integrity?.sent);
    }
    assert.equal(firstBeta.modified, true);
    assert.notEqual(firstBeta.digest, t.integrity?.sent);
    assert.equal(t.integrity?.reported, t.hops.filter((h) => h.received > 0).length);

    const text = await run(['traceroute', name, '-w', '1', '-q', '1', '--integrity']);
    assert.equal(text.code, 2, text.err);
    assert.match(
      text.out,
      new RegExp(
        `payload integrity: MODIFIED before hop ${firstBeta.index} beta/${firstBeta.pop}/${firstBeta.router}: changed between alpha/[a-z]+/alpha-[a-z]+-\\d and it`,
      ),
    );
    // The routers count what their impairment rewrote: beta's did, alpha's have none configured.
    const beta = await routerStats(lab!, 'beta');
    assert.ok(
      beta.some((s) => (s.impair?.['rewritten'] ?? 0) > 0),
      `beta's routers rewrote nothing: ${JSON.stringify(beta.map((s) => s.impair))}`,
    );
  });
});
