import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Lab } from '../src/lab/lab.js';
import { defaultTopology } from '../src/lab/topology.js';
import { runEchoes, throughSegments } from '../src/lab/demo.js';
import { Endpoint } from '../src/endpoint/endpoint.js';
import { buyPath, releasePath } from '../src/endpoint/path.js';
import { openStore } from '../src/store/open.js';
import { eventually, statsOf } from './helpers/network.js';
import { LAB_DATAPLANES, kernelSent, startLab } from './helpers/dataplanes.js';

// The 3-ISP network with BFD-style keepalives on every router (10 ms x 3).
const topology = defaultTopology();
topology.statsIntervalMs = 100;
topology.failover = { liveness: { enabled: true, intervalMs: 10, multiplier: 3 } };
let lab: Lab;
for (const dataplane of LAB_DATAPLANES)
  describe(`routers on the ${dataplane} path`, () => {
    before(async () => {
      lab = await startLab(topology, dataplane);
    });
    after(async () => {
      await lab?.stop();
    });

    test('with liveness on, a dead neighbour is repaired before any customer probe, and traffic finds the path repaired', async () => {
      const endpoint = await Endpoint.open('127.0.0.1:0');
      try {
        const path = await buyPath(
          { segments: throughSegments(lab), target: { kind: 'udp', address: lab.server('echo').address } },
          { replyTo: endpoint.replyTo },
        );
        endpoint.useUnprotected(path);
        await endpoint.waitReady();
        assert.ok(await eventually(async () => (await runEchoes(endpoint, 1, 0, 200)).received));
        const victim = lab.routers.find((r) => r.address === path.forward[1]!.circuit.ingress[0])!;
        // The hop before the victim: alpha's egress PoP. Either of its routers may find the death
        // first; the other then learns the repair from the store (and may find nothing left to move).
        const upstream = lab.routers.filter((r) => r.isp === 'alpha' && r.pop === 'fra').map((r) => r.name);
        const sum = async (f: (s: Awaited<ReturnType<typeof statsOf>>) => number): Promise<number> =>
          (await Promise.all(upstream.map((r) => statsOf(lab, r)))).reduce((t, s) => t + f(s), 0);
        await sleep(topology.statsIntervalMs * 3); // let the set-up probe reach the published counters
        const probesBefore = await sum((s) => s.handled['probes'] ?? 0);
        const killedAt = performance.now();
        lab.kill(victim.name, 'SIGKILL');
        // No traffic, no probe: the keepalives alone must find the death and repair it.
        const moved = await eventually(
          async () => (await sum((s) => s.failover?.hopsMoved ?? 0)) >= 1,
          3000,
          20,
        );
        const detectedWithin = performance.now() - killedAt;
        assert.ok(moved, `alpha's fra routers repaired without any probe`);
        console.log(
          `# liveness: repair visible in published stats ${detectedWithin.toFixed(0)} ms after the kill`,
        );
        assert.equal(
          (await sum((s) => s.handled['probes'] ?? 0)) - probesBefore,
          0,
          'no customer probe was involved',
        );
        const store = await openStore(lab.isp('alpha').store, { isp: 'alpha' });
        const recorded = await eventually(
          async () => (await store.get(path.forward[0]!.circuit.auth))?.active?.next === 1,
          3000,
        );
        assert.ok(recorded, 'recorded for the siblings');
        await store.close();
        // The first echoes after the death already take the repaired path (return path included).
        await sleep(100);
        assert.equal((await runEchoes(endpoint, 20, 5)).received, 20);
        await releasePath(path);
      } finally {
        await endpoint.close();
      }
    });

    if (dataplane === 'kernel')
      test('the kernel path (tc on lo) forwarded the DATA of the test above', async () => {
        const sent = await kernelSent(lab);
        assert.ok(sent >= 20, `the routers' programs sent ${sent} DATA packets`);
      });
  });
