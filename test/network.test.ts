import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Lab } from '../src/lab/lab.js';
import { defaultTopology } from '../src/lab/topology.js';
import { runEchoes, throughSegments } from '../src/lab/demo.js';
import { Endpoint } from '../src/endpoint/endpoint.js';
import { buyPath, releasePath, type BoughtPath } from '../src/endpoint/path.js';
import { PortalClient, PortalError } from '../src/endpoint/portal-client.js';
import { authToBytes, newAuthenticator } from '../src/wire/authenticator.js';
import { encode, PacketType } from '../src/wire/header.js';
import { eventually, routerStats, sendRaw, statsOf } from './helpers/network.js';
import { LAB_DATAPLANES, kernelSent, startLabWithPath, stopLabWithPath } from './helpers/dataplanes.js';

// One 3-ISP network of real processes (12 routers, 3 portals, an echo server) for this file.
let lab: Lab;
let endpoint: Endpoint;
let path: BoughtPath;

const topology = defaultTopology();
topology.statsIntervalMs = 100;
for (const isp of topology.isps)
  isp.accounts.push({ name: 'mallory', apiKey: `mallory-key-${isp.name}-000000` });
// Alpha's ams->fra link is small, to exercise admission control.
topology.isps[0]!.offers[0]!.capacityMbps = 100;

for (const dataplane of LAB_DATAPLANES)
  describe(`routers on the ${dataplane} path`, () => {
    before(async () => {
      ({ lab, endpoint, path } = await startLabWithPath(topology, dataplane, (s) => ({
        ...s,
        bandwidthMbps: 10,
      })));
    });

    after(async () => {
      await stopLabWithPath({ lab, endpoint, path });
    });

    test('echo traffic crosses three ISPs, each rewriting the authenticator, and comes back', async () => {
      const auths: string[] = [];
      endpoint.on('data', (_p, packet) => auths.push(Buffer.from(packet.authenticator).toString('hex')));
      const r = await runEchoes(endpoint, 50, 2);
      assert.equal(r.received, 50);
      // The return path's last hop wrote the authenticator we asked for, not any ISP's.
      assert.ok(auths.length >= 50 && auths.every((a) => a === endpoint.replyAuth));
      // Every forward and return circuit, in every ISP, counted the traffic on its own routers.
      await sleep(topology.statsIntervalMs * 3);
      for (const b of [...path.forward, ...path.reverse]) {
        const s = await new PortalClient(b.segment.portal, b.segment.apiKey).stats(b.circuit.auth);
        assert.ok(
          s.packets >= 100,
          `${b.segment.isp} ${b.circuit.ingressPop}->${b.circuit.egressPop}: ${s.packets}`,
        );
        assert.deepEqual(
          new Set(s.routers.map((x) => x.pop)),
          new Set([b.circuit.ingressPop, b.circuit.egressPop]),
        );
      }
    });

    test('forged and unknown authenticators are dropped and counted', async () => {
      const ingress = path.forward[0]!.circuit.ingress[0]!;
      const router = lab.routers.find((r) => r.address === ingress)!.name;
      const before = (await statsOf(lab, router)).drops['unknown-auth'] ?? 0;
      const forged = Array.from({ length: 25 }, (_, i) =>
        encode({
          type: PacketType.Data,
          hopLimit: 64,
          authenticator: authToBytes(newAuthenticator()),
          sequence: BigInt(i),
          payload: Buffer.from('x'),
        }),
      );
      await sendRaw(ingress, forged);
      const after = await eventually(async () => {
        const n = (await statsOf(lab, router)).drops['unknown-auth'] ?? 0;
        return n >= before + 25 ? n : 0;
      });
      assert.equal(after, before + 25);
      // And the circuit's own counters did not move for them: nothing was forwarded.
      assert.equal((await runEchoes(endpoint, 5, 2)).received, 5);
    });

    test('routers survive garbage on their ports, count it, and keep forwarding', async () => {
      const garbage = [
        Buffer.alloc(0),
        Buffer.from('GET / HTTP/1.1\r\n\r\n'),
        Buffer.alloc(27, 1),
        Buffer.concat([Buffer.from([9, 1, 0, 64]), randomBytes(40)]),
        Buffer.concat([Buffer.from([1, 99, 0, 64]), randomBytes(40)]),
        Buffer.concat([Buffer.from([1, 1, 0x80, 64]), randomBytes(40)]),
        ...Array.from({ length: 200 }, () => randomBytes(Math.floor(Math.random() * 100))),
      ];
      await Promise.all(lab.routers.map((r) => sendRaw(r.address, garbage)));
      const malformed = async (): Promise<number> =>
        (await Promise.all(lab.isps.map((i) => routerStats(lab, i.name))))
          .flat()
          .reduce(
            (t, s) =>
              t +
              (s.drops['truncated'] ?? 0) +
              (s.drops['bad-version'] ?? 0) +
              (s.drops['unknown-type'] ?? 0) +
              (s.drops['reserved-flags'] ?? 0),
            0,
          );
      const n = await eventually(async () =>
        (await malformed()) >= lab.routers.length * 6 ? await malformed() : 0,
      );
      assert.ok(n >= lab.routers.length * 6, `malformed counted: ${n}`);
      for (const r of lab.routers) assert.equal(r.managed!.proc.exitCode, null, `${r.name} died`);
      assert.equal((await runEchoes(endpoint, 20, 2)).received, 20);
    });

    test('the hop limit stops a circuit chained into a loop across two ISPs', async () => {
      const alpha = lab.isp('alpha');
      const beta = lab.isp('beta');
      const a = new PortalClient(alpha.url, alpha.accounts[0]!.apiKey);
      const b = new PortalClient(beta.url, beta.accounts[0]!.apiKey);
      // alpha fra->ams forwards into beta fra->par, which is chained back into alpha: a loop no portal can see alone.
      const bc = await b.createCircuit({
        ingressPop: 'fra',
        egressPop: 'par',
        bandwidthMbps: 1,
        deliver: { kind: 'udp', target: '127.0.0.1:9' },
      });
      const ac = await a.createCircuit({
        ingressPop: 'fra',
        egressPop: 'ams',
        bandwidthMbps: 1,
        next: { addresses: bc.ingress, auth: bc.auth },
      });
      await b.chain(bc.auth, { addresses: ac.ingress, auth: ac.auth });
      await sleep(100);
      await sendRaw(ac.ingress[0]!, [
        encode({
          type: PacketType.Data,
          hopLimit: 64,
          authenticator: authToBytes(ac.auth),
          sequence: 1n,
          payload: Buffer.from('loop'),
        }),
      ]);
      const hopLimitDrops = async (): Promise<number> =>
        [...(await routerStats(lab, 'alpha')), ...(await routerStats(lab, 'beta'))].reduce(
          (t, s) => t + (s.drops['hop-limit'] ?? 0),
          0,
        );
      assert.equal(await eventually(hopLimitDrops), 1, 'the looping packet was dropped exactly once');
      await sleep(300);
      const sa = await a.stats(ac.auth);
      const sb = await b.stats(bc.auth);
      // 64 hops in all: each lap is 4 routers (alpha fra, alpha ams, beta fra, beta par).
      assert.equal(sa.packets + sb.packets, 63);
      assert.equal(sa.dropped + sb.dropped, 1);
      await a.relinquish(ac.auth);
      await b.relinquish(bc.auth);
    });

    test('a non-owner cannot chain or delete a circuit, which keeps carrying traffic', async () => {
      const first = path.forward[0]!;
      const alpha = lab.isp('alpha');
      const mallory = new PortalClient(alpha.url, alpha.accounts.find((x) => x.name === 'mallory')!.apiKey);
      const chain = await mallory
        .chain(first.circuit.auth, { addresses: ['127.0.0.1:9'], auth: newAuthenticator() })
        .catch((e: unknown) => e);
      assert.ok(chain instanceof PortalError && chain.status === 404, String(chain));
      const del = await mallory.relinquish(first.circuit.auth).catch((e: unknown) => e);
      assert.ok(del instanceof PortalError && del.status === 404, String(del));
      assert.equal((await runEchoes(endpoint, 10, 2)).received, 10);
    });

    test('admission control refuses over-capacity circuits and leaves existing ones flowing', async () => {
      // The path holds 10 of alpha ams->fra's 100 Mb/s.
      const alpha = lab.isp('alpha');
      const client = new PortalClient(alpha.url, alpha.accounts[0]!.apiKey);
      const big = await client.createCircuit({
        ingressPop: 'ams',
        egressPop: 'fra',
        bandwidthMbps: 80,
        deliver: { kind: 'udp', target: '127.0.0.1:9' },
      });
      const refused = await client
        .createCircuit({
          ingressPop: 'ams',
          egressPop: 'fra',
          bandwidthMbps: 20,
          deliver: { kind: 'udp', target: '127.0.0.1:9' },
        })
        .catch((e: unknown) => e);
      assert.ok(refused instanceof PortalError && refused.status === 409, String(refused));
      assert.match(refused.message, /capacity sold out: 90 of 100 Mb\/s already sold/);
      assert.equal((await runEchoes(endpoint, 20, 2)).received, 20);
      await client.relinquish(big.auth);
    });

    test('a router killed and restarted rebuilds its table from the store and forwards again', async () => {
      const ingress = path.forward[0]!.circuit.ingress[0]!;
      const victim = lab.routers.find((r) => r.address === ingress)!;
      lab.kill(victim.name, 'SIGKILL');
      // Gone, not only signalled: its kernel program forwards until the process has exited.
      await lab.exited(victim.name);
      assert.equal(
        (await runEchoes(endpoint, 5, 2, 300)).received,
        0,
        'traffic through a dead router must stop',
      );
      // A circuit bought while the router is down must be in its table after restart: it reads the store.
      const second = await Endpoint.open('127.0.0.1:0');
      const p2 = await buyPath(
        { segments: throughSegments(lab), target: { kind: 'udp', address: lab.server('echo').address } },
        { replyTo: second.replyTo },
      );
      second.useUnprotected(p2);
      await lab.restart(victim.name);
      assert.equal(lab.router(victim.name).address, ingress, 'same address after restart');
      await second.waitReady();
      assert.ok(await eventually(async () => (await runEchoes(second, 1, 0, 300)).received));
      assert.equal((await runEchoes(second, 20, 2)).received, 20);
      assert.equal((await runEchoes(endpoint, 20, 2)).received, 20);
      await releasePath(p2);
      await second.close();
    });

    if (dataplane === 'kernel')
      test('the kernel path (tc on lo) forwarded the DATA of the tests above', async () => {
        const sent = await kernelSent(lab);
        assert.ok(sent > 100, `the routers' programs sent ${sent} DATA packets`);
      });
  });
