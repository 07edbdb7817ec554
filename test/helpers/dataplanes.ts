// The failover, liveness and diagnostics tests run their loopback labs twice: with the routers on
// the Node path, the portable fallback, and on the kernel path (the tc program on lo, one per
// router; docs/dataplane.md, "On loopback"). Issue 11: every failover and diagnostics test passes
// with the kernel path on.
import assert from 'node:assert/strict';
import { Endpoint } from '../../src/endpoint/endpoint.js';
import { buyPath, releasePath, type BoughtPath, type SegmentSpec } from '../../src/endpoint/path.js';
import { runEchoes, throughSegments } from '../../src/lab/demo.js';
import { Lab } from '../../src/lab/lab.js';
import type { Topology } from '../../src/lab/topology.js';
import type { RouterStats } from '../../src/store/circuit.js';
import { eventually, routerStats } from './network.js';

export const LAB_DATAPLANES = ['node', 'kernel'] as const;
export type LabDataplane = (typeof LAB_DATAPLANES)[number];

/** `Lab.start` options for a data plane; the kernel one needs root and fails, never skips, without it. */
export function labOptions(dataplane: LabDataplane): { dataplane: LabDataplane } {
  if (dataplane === 'kernel' && process.getuid?.() !== 0)
    assert.fail('the kernel path needs root (BPF, tc on lo): run `npm test` as root');
  return { dataplane };
}

/** Every router of the lab started on the data plane asked for (and on lo when it is the kernel). */
export function assertDataplane(lab: Lab, dataplane: LabDataplane): void {
  for (const r of lab.routers) {
    assert.equal(r.dataplane?.mode, dataplane, `${r.name}: ${r.dataplane?.reason}`);
    if (dataplane === 'kernel') assert.equal(r.dataplane?.interface, 'lo', r.name);
  }
}

/**
 * DATA the routers' programs sent on (tx and redirects), over every router's last published stats:
 * on the kernel path the traffic of a test must show here, not only in the circuits' counters.
 */
export async function kernelSent(lab: Lab): Promise<number> {
  return kernelSentBy((await Promise.all(lab.isps.map((i) => routerStats(lab, i.name)))).flat());
}

/** DATA these routers' programs sent on (XDP_TX or tc back out, and redirects), from their stats. */
export function kernelSentBy(stats: RouterStats[]): number {
  return stats.reduce((t, s) => t + (s.dataplane?.kernel?.tx ?? 0) + (s.dataplane?.kernel?.redirect ?? 0), 0);
}

/** A loopback lab with its routers on `dataplane`, checked to run it. */
export async function startLab(topology: Topology, dataplane: LabDataplane): Promise<Lab> {
  const lab = await Lab.start(topology, labOptions(dataplane));
  assertDataplane(lab, dataplane);
  return lab;
}

/**
 * `startLab`, and an endpoint that bought one path through every ISP (each segment as `segment`
 * makes it) and saw an echo come back over it.
 */
export async function startLabWithPath(
  topology: Topology,
  dataplane: LabDataplane,
  segment: (s: SegmentSpec, i: number) => SegmentSpec,
): Promise<{ lab: Lab; endpoint: Endpoint; path: BoughtPath }> {
  const lab = await startLab(topology, dataplane);
  const endpoint = await Endpoint.open('127.0.0.1:0');
  const path = await buyPath(
    {
      segments: throughSegments(lab).map(segment),
      target: { kind: 'udp', address: lab.server('echo').address },
    },
    { replyTo: endpoint.replyTo },
  );
  endpoint.useUnprotected(path);
  await endpoint.waitReady();
  assert.ok(
    (await eventually(async () => (await runEchoes(endpoint, 1, 0, 200)).received)) > 0,
    'path never came up',
  );
  return { lab, endpoint, path };
}

/** Undoes `startLabWithPath`; circuits it could not relinquish are printed, not hidden. */
export async function stopLabWithPath(s: {
  lab?: Lab | undefined;
  endpoint?: Endpoint | undefined;
  path?: BoughtPath | undefined;
}): Promise<void> {
  if (s.path)
    for (const err of await releasePath(s.path)) console.error(`# could not relinquish: ${err.message}`);
  await s.endpoint?.close();
  await s.lab?.stop();
}
