import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { Lab } from '../src/lab/lab.js';
import { defaultTopology, type Topology } from '../src/lab/topology.js';
import { Endpoint } from '../src/endpoint/endpoint.js';
import { Connection, rebuyFrom, type PathCircuit } from '../src/endpoint/connection.js';
import { buyPath, releasePath, type BoughtPath, type SegmentSpec } from '../src/endpoint/path.js';
import { openStore } from '../src/store/open.js';
import { authToBytes, newAuthenticator } from '../src/wire/authenticator.js';
import { encode, PacketType } from '../src/wire/header.js';
import { eventually, sendRaw, statsOf } from './helpers/network.js';
import { LAB_DATAPLANES, kernelSent, startLab } from './helpers/dataplanes.js';

// Three ISPs in a row (alpha -> beta -> gamma), plus delta beside beta for disjoint standbys.
// Every router, portal and the echo server is a real process on loopback. The routers run the
// default neighbour liveness (200 ms x 3): these tests are about the customer's probe, which
// repairs within the link timeout, long before a 600 ms liveness verdict could.
const topology: Topology = defaultTopology();
topology.statsIntervalMs = 100;
const beta = topology.isps[1]!;
topology.isps.push({
  ...structuredClone(beta),
  name: 'delta',
  accounts: [{ name: 'demo', apiKey: 'demo-key-delta-0000000000' }],
});

let lab: Lab;
let endpoint: Endpoint;

const seg = (isp: string, ingressPop: string, egressPop: string): SegmentSpec => {
  const i = lab.isp(isp);
  return { isp, portal: i.url, apiKey: i.accounts[0]!.apiKey, ingressPop, egressPop };
};
const via = (middle: 'beta' | 'delta'): SegmentSpec[] => [
  seg('alpha', 'ams', 'fra'),
  seg(middle, 'fra', 'par'),
  seg('gamma', 'par', 'lon'),
];
const routerAt = (address: string): string => lab.routers.find((r) => r.address === address)!.name;

async function buy(conn: Connection, middle: 'beta' | 'delta' = 'beta'): Promise<BoughtPath> {
  return buyPath(
    { segments: via(middle), target: { kind: 'udp', address: lab.server('echo').address } },
    { replyTo: conn.replyTo() },
  );
}

/** A DATA packet as a customer's endpoint would send it, for injecting by hand. */
function dataPacket(auth: string, sequence: bigint, payload: string): Buffer {
  return encode({
    type: PacketType.Data,
    hopLimit: 64,
    authenticator: authToBytes(auth),
    sequence,
    payload: Buffer.from(payload),
  });
}

/** Echoes every 10 ms through the connection; replies are timestamped so outages can be measured. */
function echoLoop(conn: Connection): { stop: () => Promise<{ sent: number; replies: number[] }> } {
  const replies: number[] = [];
  let sent = 0;
  let running = true;
  // Only echoes count: a test's injected packet is not a reply.
  conn.on('data', (payload) => {
    if (payload.subarray(0, 5).toString() === 'echo ') replies.push(performance.now());
  });
  const loop = (async () => {
    const deadline = performance.now() + 15_000; // bounded whatever happens
    while (running && performance.now() < deadline) {
      conn.send(Buffer.from(`echo ${sent++}`));
      await sleep(10);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      await sleep(100);
      return { sent, replies };
    },
  };
}

/**
 * The longest gap between consecutive replies from the last one before `at` to 2 s after it. Not
 * merely the gap spanning `at`: an echo already past the failed router when it failed arrives
 * after `at` and would end that gap early.
 */
function outageAround(replies: number[], at: number): number {
  const before = replies.filter((t) => t <= at).at(-1) ?? at;
  const after = replies.filter((t) => t > at && t <= at + 2000);
  if (after.length === 0) return Infinity;
  let longest = 0;
  let last = before;
  for (const t of after) {
    longest = Math.max(longest, t - last);
    last = t;
  }
  return longest;
}

async function ready(conn: Connection): Promise<void> {
  for (let i = 0; i < 100; i++) {
    conn.send(Buffer.from('warm-up'));
    const got = await Promise.race([once(conn, 'data').then(() => true), sleep(100).then(() => false)]);
    if (got) return;
  }
  throw new Error('path never came up');
}

for (const dataplane of LAB_DATAPLANES)
  describe(`routers on the ${dataplane} path`, () => {
    before(async () => {
      lab = await startLab(topology, dataplane);
      endpoint = await Endpoint.open('127.0.0.1:0');
    });
    after(async () => {
      await endpoint?.close();
      await lab?.stop();
    });

    async function failMiddleRouter(signal: 'SIGKILL' | 'SIGSTOP'): Promise<void> {
      const conn = new Connection(endpoint, { timeoutMs: 50, probeIntervalMs: 10, ackTimeoutMs: 40 });
      const path = await buy(conn);
      conn.add(path);
      await ready(conn);
      const traffic = echoLoop(conn);
      await sleep(300);
      const victim = routerAt(path.forward[1]!.circuit.ingress[0]!);
      const repaired = once(conn, 'repaired');
      const failedAt = performance.now();
      lab.kill(victim, signal);
      try {
        await afterMiddleRouterFailed(signal, conn, path, traffic, repaired, failedAt, victim);
      } catch (err) {
        // A failed assertion must not leave the router dead (and the path bought) for the next test.
        await lab.restart(victim);
        await releasePath(path);
        throw err;
      }
    }

    async function afterMiddleRouterFailed(
      signal: 'SIGKILL' | 'SIGSTOP',
      conn: Connection,
      path: BoughtPath,
      traffic: ReturnType<typeof echoLoop>,
      repaired: Promise<unknown[]>,
      failedAt: number,
      victim: string,
    ): Promise<void> {
      // alpha's egress router: the hop before the failed router.
      const hopBefore = routerAt(path.forward[0]!.circuit.ingress[0]!).replace('-ams-', '-fra-');
      const movedOff = async (): Promise<boolean> => {
        const f = (await statsOf(lab, hopBefore)).failover;
        return (f?.neighboursDown ?? 0) >= 1 && (f?.hopsMoved ?? 0) >= 1;
      };
      // A hung router's program goes on forwarding with its last maps (docs/dataplane.md, "Failover
      // with the kernel path"): the customer sees no outage and never probes; the hop before it
      // finds it dead by its unanswered keepalives (200 ms x 3) and moves the circuit off it.
      const dataOutlivesControl = dataplane === 'kernel' && signal === 'SIGSTOP';
      const [, repairMs] = dataOutlivesControl
        ? [undefined, NaN]
        : ((await Promise.race([repaired, sleep(5000).then(() => [undefined, NaN])])) as [
            PathCircuit,
            number,
          ]);
      if (dataOutlivesControl)
        assert.ok(
          await eventually(movedOff, 5000),
          `${hopBefore}'s liveness moved the circuit off ${victim}`,
        );
      await sleep(300);
      const { replies } = await traffic.stop();
      await conn.close();

      const outage = outageAround(replies, failedAt);
      console.log(
        `# ${signal}: outage ${outage.toFixed(1)} ms, ` +
          (dataOutlivesControl ? 'no probe: the program forwarded on' : `repair ${repairMs.toFixed(1)} ms`),
      );
      if (!dataOutlivesControl) assert.ok(Number.isFinite(repairMs), 'the probe repaired the path');
      assert.ok(outage < 1000, `outage ${outage} ms`);
      assert.ok(
        replies.some((t) => t > failedAt + outage - 1),
        'echoes flow again after the repair',
      );

      // ...which moved the circuit to beta's other router...
      const s = await statsOf(lab, hopBefore);
      assert.ok(await movedOff(), JSON.stringify(s.failover));
      // ...and recorded the choice in the store, where its sibling reads it.
      const store = await openStore(lab.isp('alpha').store, { isp: 'alpha' });
      const record = await eventually(async () => {
        const c = await store.get(path.forward[0]!.circuit.auth);
        return c?.active?.next === 1 ? c : undefined;
      }, 3000);
      await store.close();
      assert.equal(record?.active?.next, 1, 'repair recorded in the store');
      const sibling = lab.router(hopBefore.replace(/-1$/, '-2'));
      // The sibling never saw a probe: only the store told it. Inject at it with the internal
      // authenticator, a few times over 2 s (UDP on a busy host may drop one): on the old next hop,
      // the dead router, every one would be lost.
      let viaSibling = false;
      const onData = (p: Buffer): void => {
        if (p.toString() === 'via sibling') viaSibling = true;
      };
      endpoint.on('data', onData);
      for (let i = 0; i < 10 && !viaSibling; i++) {
        await sendRaw(sibling.address, [dataPacket(record!.internalAuth, BigInt(1 + i), 'via sibling')]);
        await sleep(200);
      }
      endpoint.off('data', onData);
      if (!viaSibling) {
        // Everything that tells a dead sibling from one whose table stopped following the store.
        const s = await statsOf(lab, sibling.name);
        assert.fail(
          `sibling ${sibling.name} forwards on the new next hop it read from the store (record revision ` +
            `${record!.revision}; its table at ${s.tableRevision}, stats ${Date.now() - Date.parse(s.updatedAt)} ms old): ` +
            `${JSON.stringify(s)}\n${lab.routerState(sibling.name)}`,
        );
      }

      // The dead router comes back: it is re-checked and eligible again, but circuits do not flap back.
      await lab.restart(victim);
      await sleep(topology.statsIntervalMs * 2 + 600);
      const after = await statsOf(lab, hopBefore);
      const victimAddr = lab.router(victim).address;
      assert.equal(after.neighbours?.[victimAddr]?.dead, false, 'revived neighbour is live again');
      const store2 = await openStore(lab.isp('alpha').store, { isp: 'alpha' });
      assert.equal((await store2.get(path.forward[0]!.circuit.auth))!.active?.next, 1, 'no flapping back');
      await store2.close();
      await releasePath(path);
    }

    test('repair after the middle ISP’s active router is killed (SIGKILL); siblings follow the store; no flap on return', async () => {
      await failMiddleRouter('SIGKILL');
    });

    test(`repair after the middle ISP’s active router hangs (SIGSTOP)${dataplane === 'kernel' ? ': its program forwards on, its neighbours’ liveness moves the circuit off it' : ''}`, async () => {
      await failMiddleRouter('SIGSTOP');
    });

    test('a dead ingress router: the endpoint moves to the first ISP’s other ingress router', async () => {
      const conn = new Connection(endpoint, { timeoutMs: 50, probeIntervalMs: 10, ackTimeoutMs: 30 });
      const path = await buy(conn);
      const circuit = conn.add(path);
      await ready(conn);
      const traffic = echoLoop(conn);
      await sleep(200);
      // Killed while the circuit is up: a false failure on a loaded machine, still being repaired
      // at the kill, would swallow the real one's 'failure' event (a clean run saw only 'repaired').
      assert.ok(
        await eventually(async () => circuit.state === 'up', 5000),
        `the circuit is up before the kill (${circuit.state})`,
      );
      const ingress = path.forward[0]!.circuit.ingress;
      // The ingress in use now: on a loaded machine a late ack may already have moved the endpoint.
      const inUse = circuit.activeIngress;
      const victim = routerAt(ingress[inUse]!);
      const backup = ingress[inUse === 0 ? 1 : 0]!;
      const moved = once(conn, 'ingress');
      const repaired = once(conn, 'repaired');
      // A reply to a packet sent before the kill, arriving once the failure is declared (as one read
      // late from a busy endpoint's socket does): it must not end the failure while the ingress in use
      // is dead, or the endpoint stops probing and never moves.
      const events: string[] = [];
      conn.on('ingress', () => events.push('ingress'));
      conn.on('repaired', () => events.push('repaired'));
      conn.once('failure', () => {
        events.push('failure');
        void sendRaw(endpoint.address, [dataPacket(path.replyAuth!, 1n, 'late reply')]);
      });
      const failedAt = performance.now();
      lab.kill(victim, 'SIGKILL');
      const [, address] = (await Promise.race([moved, sleep(5000).then(() => [])])) as [PathCircuit, string];
      assert.equal(address, backup, 'moved to the backup ingress router');
      await Promise.race([repaired, sleep(5000)]);
      assert.deepEqual(
        events.slice(events.indexOf('failure'), events.indexOf('failure') + 3),
        ['failure', 'ingress', 'repaired'],
        `a late reply did not end the failure; the move to the live ingress did (events: ${events.join(', ')})`,
      );
      await sleep(200);
      const { replies } = await traffic.stop();
      await conn.close();
      const outage = outageAround(replies, failedAt);
      console.log(`# ingress: outage ${outage.toFixed(1)} ms`);
      assert.ok(outage < 1000, `outage ${outage} ms`);
      await lab.restart(victim);
      await releasePath(path);
    });

    test('a client with a standby circuit switches at once, without waiting for the repair', async () => {
      const conn = new Connection(endpoint, {
        timeoutMs: 50,
        probeIntervalMs: 10,
        ackTimeoutMs: 40,
        revert: true,
      });
      const primary = await buy(conn, 'beta');
      const standby = await buy(conn, 'delta');
      const p = conn.add(primary);
      const s = conn.add(standby);
      await ready(conn);
      // Every switch and repair, timestamped: on a loaded machine a late echo can trip the 50 ms
      // detector before the kill, so the test looks for the switch the kill caused.
      const switches: { from: PathCircuit; to: PathCircuit; at: number }[] = [];
      const repairs: { c: PathCircuit; at: number }[] = [];
      conn.on('switch', (from, to, at) => switches.push({ from, to, at }));
      conn.on('repaired', (c, _ms, at) => repairs.push({ c, at }));
      const traffic = echoLoop(conn);
      await sleep(1200); // let the standby be checked end to end once
      for (let i = 0; i < 100 && conn.active !== p; i++) await sleep(10);
      assert.equal(conn.active, p, 'traffic is on the primary before the failure');
      const victim = routerAt(primary.forward[1]!.circuit.ingress[0]!);
      const failedAt = performance.now();
      lab.kill(victim, 'SIGKILL');
      for (let i = 0; i < 300 && !switches.some((x) => x.at > failedAt && x.from === p); i++) await sleep(10);
      const sw = switches.find((x) => x.at > failedAt && x.from === p);
      assert.ok(sw, 'switched away from the failed primary');
      assert.equal(sw.to, s);
      assert.equal(sw.to.isps[1], 'delta', 'the standby runs through the other middle ISP');
      for (let i = 0; i < 500 && !repairs.some((x) => x.c === p && x.at > failedAt); i++) await sleep(10);
      const repairedAt = repairs.find((x) => x.c === p && x.at > failedAt)?.at;
      await sleep(200);
      const { replies } = await traffic.stop();
      await conn.close();
      assert.ok(repairedAt === undefined || sw.at <= repairedAt, 'the switch did not wait for the repair');
      const outage = outageAround(replies, failedAt);
      console.log(
        `# standby: switch after ${(sw.at - failedAt).toFixed(1)} ms, outage ${outage.toFixed(1)} ms`,
      );
      // "At once" is the switch preceding the repair, asserted above. The outage itself is a timing
      // figure (about 90 ms on a quiet host, 333 ms once beside other work): bounded as the other
      // tests here are, and measured by `arrow bench failover`, not judged at the millisecond here.
      assert.ok(outage < 1000, `outage with a standby: ${outage} ms`);
      await lab.restart(victim);
      await releasePath(primary);
      await releasePath(standby);
    });

    test('a flood of probes from one account is rate-limited: the network sees only the allowance; unknown probes change nothing; traffic goes on', async () => {
      const conn = new Connection(endpoint);
      const path = await buy(conn);
      conn.add(path);
      await ready(conn);
      const ingress = path.forward[0]!.circuit.ingress[0]!;
      const ingressRouter = routerAt(ingress);
      const flooded = path.forward[0]!.circuit.auth;
      // The router publishes a new circuit's counters at its next stats interval.
      const before = await eventually(async () => {
        const s = await statsOf(lab, ingressRouter);
        return s.circuits[flooded] ? s : undefined;
      });
      assert.ok(before, `${ingressRouter} never published the circuit's counters`);
      // Every dead verdict while the flood runs, as the routers report them to the lab over IPC.
      const verdicts: { router: string; neighbour: string }[] = [];
      const detach = lab.routers.flatMap((r) => {
        const proc = r.managed?.proc;
        if (!proc) return [];
        const onMessage = (m: unknown): void => {
          const v = m as { event?: unknown; neighbour?: unknown };
          if (v.event === 'neighbour-dead' && typeof v.neighbour === 'string')
            verdicts.push({ router: r.name, neighbour: v.neighbour });
        };
        proc.on('message', onMessage);
        return [() => proc.off('message', onMessage)];
      });
      const auth = authToBytes(path.forward[0]!.circuit.auth);
      const flood = Array.from({ length: 3000 }, (_, i) =>
        encode({
          type: PacketType.Probe,
          hopLimit: 64,
          authenticator: auth,
          sequence: BigInt(1e6 + i),
          payload: new Uint8Array(0),
        }),
      );
      const unknown = Array.from({ length: 200 }, (_, i) =>
        encode({
          type: PacketType.Probe,
          hopLimit: 64,
          authenticator: authToBytes(newAuthenticator()),
          sequence: BigInt(i),
          payload: new Uint8Array(0),
        }),
      );
      // 2,000 probes/s for 1.5 s: 100 times the circuit's allowance, paced so that the test measures
      // the rate limit rather than how a 2-core machine schedules 20 processes under a burst. At
      // 10,000/s the ingress router's socket queued so much that its own acks to its neighbours (its
      // return-path hop) waited behind the flood past their 15 ms link timeout: a real effect of
      // sharing one socket for data and control, on the list for the kernel data plane, not this test.
      const floodStart = performance.now();
      for (let i = 0; i < flood.length; i += 20) {
        await sendRaw(ingress, flood.slice(i, i + 20));
        await sleep(10);
      }
      const floodS = (performance.now() - floodStart) / 1000;
      await sendRaw(ingress, unknown);
      await sleep(topology.statsIntervalMs * 3 + 200);
      const afterStats = await statsOf(lab, ingressRouter);
      // The flooded circuit's own counters at its ingress router (the router's totals also count the
      // probes that come home on a return path through it, under that circuit's own bucket).
      const c0 = before.circuits[flooded]!;
      const c1 = afterStats.circuits[flooded]!;
      const limited = (c1.drops?.['probe-rate'] ?? 0) - (c0.drops?.['probe-rate'] ?? 0);
      const admitted = c1.packets - c0.packets - limited;
      console.log(`# flood: ${limited} probes rate-limited, ${admitted} admitted in ${floodS.toFixed(2)} s`);
      assert.ok(limited >= 2500, `rate-limited: ${limited}`);
      // The circuit's bucket: a burst of 10, then 20/s for as long as the flood lasted (longer on a
      // loaded machine) plus up to half a second the router may take to read the last of it, and a
      // little for the endpoint's own probes on the circuit.
      const allowance = 10 + 20 * (floodS + 0.5) + 5;
      assert.ok(
        admitted <= allowance,
        `admitted ${admitted} in ${floodS.toFixed(2)} s, allowance ${allowance}`,
      );
      assert.equal(afterStats.drops['unknown-auth']! - (before.drops['unknown-auth'] ?? 0), 200);
      for (const off of detach) off();
      // What the flood can do to the network is bounded by the allowance asserted above: the admitted
      // probes are ordinary probes. Whether one of them then meets a neighbour (or this test's own
      // endpoint, busy sending the flood) descheduled past the 15 ms link timeout is a question of
      // timing on a shared 2-core host, for a benchmark, not for this test: such verdicts (seen in
      // whole-suite runs at the last ISP, at the flooded router's neighbour, on the endpoint) are
      // printed, not judged. The bound on admitted probes is what stops a flood from causing repairs.
      if (verdicts.length > 0) console.log(`# verdicts during the flood: ${JSON.stringify(verdicts)}`);
      // The customer's traffic is unharmed.
      const got: number[] = [];
      conn.on('data', () => got.push(1));
      for (let i = 0; i < 20; i++) {
        conn.send(Buffer.from('after flood'));
        await sleep(5);
      }
      await sleep(300);
      assert.equal(got.length, 20);
      await conn.close();
      await releasePath(path);
    });

    test('a whole ISP dead and no standby: the connection re-buys the path avoiding it', async () => {
      const candidates = [
        { segments: via('beta'), target: { kind: 'udp' as const, address: lab.server('echo').address } },
        { segments: via('delta'), target: { kind: 'udp' as const, address: lab.server('echo').address } },
      ];
      const conn: Connection = new Connection(
        endpoint,
        { timeoutMs: 50, probeIntervalMs: 10, ackTimeoutMs: 40, rebuyAfterMs: 300 },
        (avoid) => rebuyFrom(candidates, () => conn.replyTo())(avoid),
      );
      const path = await buy(conn, 'beta');
      conn.add(path);
      await ready(conn);
      const traffic = echoLoop(conn);
      await sleep(200);
      const betaIngress = path.forward[1]!.circuit.ingress.map(routerAt);
      const rebought = once(conn, 'rebuy');
      const failedAt = performance.now();
      for (const r of betaIngress) lab.kill(r, 'SIGKILL');
      const [fresh, avoid] = (await Promise.race([rebought, sleep(8000).then(() => [])])) as [
        PathCircuit,
        string[],
      ];
      assert.deepEqual(avoid, ['beta'], 'the dead ISP was identified');
      assert.equal(fresh.isps[1], 'delta', 'the new path avoids it');
      await sleep(300);
      const { replies } = await traffic.stop();
      await conn.close();
      const outage = outageAround(replies, failedAt);
      console.log(`# rebuy: outage ${outage.toFixed(1)} ms`);
      assert.ok(Number.isFinite(outage), 'traffic flows again on the re-bought path');
      for (const r of betaIngress) await lab.restart(r);
      for (const c of conn.circuits) await releasePath(c.path);
    });

    if (dataplane === 'kernel')
      test('the kernel path (tc on lo) forwarded the DATA of the tests above', async () => {
        const sent = await kernelSent(lab);
        assert.ok(sent > 1000, `the routers' programs sent ${sent} DATA packets`);
      });
  });
