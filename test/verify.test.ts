import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { landingOf, verify, type Outcome } from '../src/verify/check.js';
import { Injector } from '../src/verify/inject.js';
import { boughtPathProblems, checkBoughtPath } from '../src/verify/bought.js';
import { customerModel, ispModel, mergeModels, type PortalView } from '../src/verify/sources.js';
import { checkOwnCircuit } from '../src/verify/own-table.js';
import type { CircuitView } from '../src/api/portal.js';
import type { Circuit } from '../src/store/circuit.js';
import type { RouterRegistration } from '../src/store/store.js';

// Issue 14, `arrow verify` (docs/verify.md): hand-built networks with a loop across ISPs, a black
// hole after an upstream relinquish, and a repair that would loop; then a property: on small
// generated networks, the checker and the routers' own DataPlane.process, fed packet by packet,
// agree on where every circuit's packets end.

const auth = (n: number): string => n.toString(16).padStart(32, '0');

/** An ISP's offers as a portal answers them: its PoPs and their routers. */
function offers(isp: string, pops: Record<string, string[]>): PortalView['offers'] {
  return { isp, pops: Object.entries(pops).map(([name, routers]) => ({ name, routers })), offers: [] };
}

function view(c: Partial<CircuitView> & Pick<CircuitView, 'auth' | 'ingress'>): CircuitView {
  return {
    ingressPop: 'a',
    egressPop: 'b',
    bandwidthMbps: 1,
    createdAt: '2026-12-03T00:00:00Z',
    revision: 1,
    ...c,
  };
}

/** A circuit entering at `ingress` (one router) that chains to `next` with circuit `to`'s authenticator. */
function chain(n: number, ingress: string, next: string, to: number): CircuitView {
  return view({ auth: auth(n), ingress: [ingress], next: { addresses: [next], auth: auth(to) } });
}

/** A circuit entering at `ingress` that delivers to a UDP server. */
function toServer(n: number, ingress: string): CircuitView {
  return view({ auth: auth(n), ingress: [ingress], deliver: { kind: 'udp', target: '192.0.2.9:53' } });
}

const A = offers('alpha', { ams: ['10.0.1.1:4000', '10.0.1.2:4000'], fra: ['10.0.1.3:4000'] });
const B = offers('beta', { fra: ['10.0.2.1:4000', '10.0.2.2:4000'], par: ['10.0.2.3:4000'] });

test('verify: a path through two ISPs is delivered, crossing both; each failure of a router it uses has an alternative', () => {
  const v = verify(
    customerModel([
      {
        offers: A,
        circuits: [
          view({
            auth: auth(1),
            ingress: ['10.0.1.1:4000', '10.0.1.2:4000'],
            next: { addresses: ['10.0.2.1:4000', '10.0.2.2:4000'], auth: auth(2) },
          }),
        ],
      },
      {
        offers: B,
        circuits: [
          view({
            auth: auth(2),
            ingress: ['10.0.2.1:4000', '10.0.2.2:4000'],
            deliver: { kind: 'udp', target: '192.0.2.9:53' },
          }),
        ],
      },
    ]),
  );
  // Both circuits are checked from their ingress; the customer sends into the first.
  assert.deepEqual(
    v.flows.map((x) => x.entry.from),
    ['customer', 'a chain'],
  );
  const f = v.flows[0]!;
  assert.deepEqual(f.outcome, { kind: 'delivered', how: 'udp', target: '192.0.2.9:53' });
  assert.deepEqual(f.isps, ['alpha', 'beta']);
  assert.deepEqual(
    f.witness.map((s) => s.address),
    ['10.0.1.1:4000', '10.0.2.1:4000'],
  );
  assert.equal(v.problems, 0);
  // Each router on the path, dead alone: the flow moves to the sibling and is still delivered.
  assert.deepEqual(v.failures.map((x) => x.failed).sort(), ['10.0.1.1:4000', '10.0.2.1:4000']);
  for (const x of v.failures) assert.equal(x.flows[0]!.outcome.kind, 'delivered', x.failed);
});

test('verify: a loop across two ISPs, which neither ISP sees alone, is found with its cycle', () => {
  const alpha = {
    offers: A,
    circuits: [chain(1, '10.0.1.1:4000', '10.0.2.1:4000', 2)],
  };
  const beta = {
    offers: B,
    circuits: [chain(2, '10.0.2.1:4000', '10.0.1.1:4000', 1)],
  };
  const v = verify(customerModel([alpha, beta]), { failures: false });
  const loops = v.flows.filter((f) => f.outcome.kind === 'loop');
  assert.ok(loops.length > 0, JSON.stringify(v.flows));
  const o = loops[0]!.outcome as Extract<Outcome, { kind: 'loop' }>;
  assert.deepEqual(
    o.cycle.map((s) => `${s.isp}:${s.auth.slice(-1)}`),
    ['alpha:1', 'beta:2', 'alpha:1'],
  );
  // Alone, each ISP's table only leads out of it: no loop to see.
  const alone = verify({ ...customerModel([alpha]), closed: false }, { failures: false });
  assert.equal(alone.problems, 0);
});

test('verify: after beta relinquishes its circuit, alpha still points at it: a black hole, named with its witness', () => {
  const v = verify(
    customerModel([
      {
        offers: A,
        circuits: [chain(1, '10.0.1.1:4000', '10.0.2.1:4000', 2)],
      },
      { offers: B, circuits: [] },
    ]),
    { failures: false },
  );
  const f = v.flows[0]!;
  assert.equal(f.outcome.kind, 'black-hole');
  assert.equal((f.outcome as Extract<Outcome, { kind: 'black-hole' }>).reason, 'unknown-authenticator');
  assert.deepEqual(
    f.witness.map((s) => `${s.isp}/${s.pop} ${s.address}`),
    ['alpha/ams 10.0.1.1:4000', 'beta/fra 10.0.2.1:4000'],
  );
  // An address that no router of the ISPs in view serves is a black hole too.
  const nowhere = verify(
    customerModel([
      {
        offers: A,
        circuits: [chain(1, '10.0.1.1:4000', '10.9.9.9:1', 2)],
      },
    ]),
    { failures: false },
  );
  assert.equal((nowhere.flows[0]!.outcome as Extract<Outcome, { kind: 'black-hole' }>).reason, 'no-router');
});

test('verify: a repair that would loop: when beta-fra-1 dies, the alternative leads back into alpha', () => {
  // alpha's circuit 1 goes to beta's circuit 2, primary beta-fra-1, alternative 10.0.1.3: an alpha
  // router where a stale chain under the same authenticator leads back to the start.
  const v = verify(
    customerModel([
      {
        offers: A,
        circuits: [
          view({
            auth: auth(1),
            ingress: ['10.0.1.1:4000'],
            next: { addresses: ['10.0.2.1:4000', '10.0.1.3:4000'], auth: auth(2) },
          }),
          // alpha at fra holds circuit 2 too (a stale chain back to the start): the alternative loops.
          chain(2, '10.0.1.3:4000', '10.0.1.1:4000', 1),
        ],
      },
      {
        offers: B,
        circuits: [toServer(2, '10.0.2.1:4000')],
      },
    ]),
  );
  const normal = v.flows.find((f) => f.entry.circuit === auth(1))!;
  assert.equal(normal.outcome.kind, 'delivered', 'normally the path is fine');
  const broken = v.failures.find((x) => x.failed === '10.0.2.1:4000');
  assert.ok(broken, JSON.stringify(v.failures.map((x) => x.failed)));
  assert.equal(broken.flows.find((f) => f.entry.circuit === auth(1))!.outcome.kind, 'loop');
  assert.ok(v.problems > 0);
});

// ---- The portal's check of its own table on create and chain (src/verify/own-table.ts) ----

/** An ISP's stored circuit from PoP ams to fra that forwards to `next` with `nextAuth`. */
function stored(n: number, next: string[], nextAuth: string): Circuit {
  return {
    auth: auth(n),
    owner: 'acme',
    ingressPop: 'ams',
    egressPop: 'fra',
    bandwidthMbps: 1,
    internalAuth: auth(1000 + n),
    internalRouters: ['10.0.1.21:4000'],
    action: { kind: 'forward', next: { addresses: next, auth: nextAuth } },
    createdAt: '2026-12-03T00:00:00Z',
    revision: 1,
  };
}

const ALPHA_ROUTERS = [
  { pop: 'ams', address: '10.0.1.11:4000', name: 'alpha-ams-1' },
  { pop: 'fra', address: '10.0.1.21:4000', name: 'alpha-fra-1' },
];

test('own-table check: a sound circuit reads nothing from a big table; a single router per PoP is named as a single point', async () => {
  const table = new Map<string, Circuit>();
  for (let i = 0; i < 10_000; i++) table.set(auth(5000 + i), stored(5000 + i, ['10.0.9.1:4000'], auth(i)));
  const reads: string[] = [];
  const get = async (a: string): Promise<Circuit | undefined> => (reads.push(a), table.get(a));
  const c = stored(1, ['10.0.2.11:4000'], auth(2));
  const r = await checkOwnCircuit('alpha', c, ALPHA_ROUTERS, get);
  assert.deepEqual(r.problems, []);
  assert.equal(r.read, 0, 'a circuit that leaves the ISP costs no read, whatever the table holds');
  assert.deepEqual(reads, []);
  assert.deepEqual(r.singlePoints.sort(), ['alpha-ams-1', 'alpha-fra-1']);
  // With a sibling at each PoP, no single failure strands it.
  const two = [
    ...ALPHA_ROUTERS,
    { pop: 'ams', address: '10.0.1.12:4000', name: 'alpha-ams-2' },
    { pop: 'fra', address: '10.0.1.22:4000', name: 'alpha-fra-2' },
  ];
  const sibling = { ...c, internalRouters: ['10.0.1.21:4000', '10.0.1.22:4000'] };
  assert.deepEqual((await checkOwnCircuit('alpha', sibling, two, get)).singlePoints, []);
});

test('own-table check: a circuit pointed back into its own ISP loops or vanishes, with the witness; a chain through another circuit is followed', async () => {
  const table = new Map<string, Circuit>();
  const get = async (a: string): Promise<Circuit | undefined> => table.get(a);
  // Into its own ingress router under its own authenticator: a loop.
  const self = await checkOwnCircuit('alpha', stored(1, ['10.0.1.11:4000'], auth(1)), ALPHA_ROUTERS, get);
  assert.equal(self.problems.length, 1);
  assert.match(self.problems[0]!, /^alpha circuit 00000000: loop via 10\.0\.1\.11:4000 -> 10\.0\.1\.21:4000/);
  // Into its own router under an authenticator nobody holds: a black hole.
  const hole = await checkOwnCircuit('alpha', stored(1, ['10.0.1.11:4000'], auth(77)), ALPHA_ROUTERS, get);
  assert.match(hole.problems[0]!, /black-hole/);
  assert.equal(hole.read, 1);
  // Through another of alpha's circuits that leaves the ISP: followed (one read), and sound.
  table.set(auth(2), stored(2, ['10.0.2.11:4000'], auth(3)));
  const via = await checkOwnCircuit('alpha', stored(1, ['10.0.1.11:4000'], auth(2)), ALPHA_ROUTERS, get);
  assert.deepEqual(via.problems, []);
  assert.equal(via.read, 1);
  // And through one that leads back to the new circuit: the loop spans both.
  table.set(auth(3), stored(3, ['10.0.1.11:4000'], auth(4)));
  const back = await checkOwnCircuit('alpha', stored(4, ['10.0.1.11:4000'], auth(3)), ALPHA_ROUTERS, get);
  assert.match(back.problems[0]!, /loop/);
  assert.equal(back.read, 1);
});

// ---- Flow state (EN-DN mapping, source NAT, the UDP socket) under failures ----

test('flow state: the EN-DN mapping moves to the sibling with the delivery and keeps established flows; a NAT binding or a UDP socket does not', () => {
  const routers = [
    ...ALPHA_ROUTERS,
    { pop: 'fra', address: '10.0.1.22:4000', name: 'alpha-fra-2' },
    { pop: 'ams', address: '10.0.1.12:4000', name: 'alpha-ams-2' },
  ];
  const ip: Circuit = {
    ...stored(1, [], ''),
    internalRouters: ['10.0.1.21:4000', '10.0.1.22:4000'],
    action: {
      kind: 'deliver-ip',
      prefixes: ['198.51.100.0/24'],
      source: '100.64.0.1/32',
      reply: { addresses: ['10.0.2.11:4000'], auth: auth(9) },
    },
  };
  const udp: Circuit = {
    ...stored(2, [], ''),
    internalRouters: ['10.0.1.21:4000', '10.0.1.22:4000'],
    action: { kind: 'deliver-udp', target: '198.51.100.7:53' },
  };
  const model = ispModel('alpha', [ip, udp], routers);
  const v = verify(model);
  const flow = (c: number) => v.flows.find((f) => f.entry.circuit === auth(c))!;
  assert.deepEqual(flow(1).state, { kind: 'en-dn', holder: '10.0.1.21:4000', router: 'alpha-fra-1' });
  assert.deepEqual(flow(2).state, { kind: 'socket', holder: '10.0.1.21:4000', router: 'alpha-fra-1' });
  const fra1 = v.failures.find((x) => x.router === 'alpha-fra-1')!;
  const moved = (x: typeof fra1, c: number) => x.stateMoves.find((m) => m.circuit === auth(c))!;
  assert.equal(moved(fra1, 1).to?.router, 'alpha-fra-2');
  assert.equal(moved(fra1, 1).established, 'kept', 'the customer address follows the takeover');
  assert.equal(moved(fra1, 2).established, 'lost', "the server answers the dead router's socket");
  // A router the flows do not end at moves no state.
  assert.deepEqual(v.failures.find((x) => x.router === 'alpha-ams-1')!.stateMoves, []);
  // The same ISP source-NATting: the binding dies with its router.
  model.snat = new Set(['alpha']);
  const nat = verify(model);
  assert.equal(nat.flows.find((f) => f.entry.circuit === auth(1))!.state?.kind, 'nat');
  const natMove = nat.failures.find((x) => x.router === 'alpha-fra-1')!.stateMoves;
  assert.equal(natMove.find((m) => m.circuit === auth(1))!.established, 'lost');
  assert.equal(
    natMove.find((m) => m.circuit === auth(1))!.to?.router,
    'alpha-fra-2',
    'new flows go through the sibling',
  );
});

// ---- The checker against the routers' own forwarding, on generated networks ----

interface Net {
  isps: { name: string; routers: RouterRegistration[]; circuits: Circuit[] }[];
  dead: string | undefined;
}

const ENDPOINT = '192.0.2.1:9000';

/** Small networks: 2-3 ISPs of 2 PoPs with 1-2 routers, circuits chained at random, some broken. */
const network: fc.Arbitrary<Net> = fc
  .record({
    isps: fc.integer({ min: 2, max: 3 }),
    routersPerPop: fc.array(fc.integer({ min: 1, max: 2 }), { minLength: 6, maxLength: 6 }),
    circuits: fc.integer({ min: 1, max: 6 }),
    seed: fc.array(fc.nat(), { minLength: 200, maxLength: 200 }),
    failOne: fc.boolean(),
  })
  .map(({ isps, routersPerPop, circuits, seed, failOne }) => {
    let i = 0;
    const pick = <T>(xs: readonly T[]): T => xs[seed[i++ % seed.length]! % xs.length]!;
    const net: Net = { isps: [], dead: undefined };
    let n = 0;
    for (let k = 0; k < isps; k++) {
      const routers: RouterRegistration[] = [];
      for (const [p, pop] of ['x', 'y'].entries())
        for (let r = 0; r < routersPerPop[k * 2 + p]!; r++)
          routers.push({ name: `i${k}-${pop}-${r}`, pop, address: `10.0.${k}.${10 + p * 10 + r}:4000` });
      net.isps.push({ name: `isp${k}`, routers, circuits: [] });
    }
    const allRouters = net.isps.flatMap((x) => x.routers.map((r) => r.address));
    const auths: string[] = [];
    for (let c = 0; c < circuits * net.isps.length; c++) auths.push(auth(0x100 + n++));
    let a = 0;
    for (const isp of net.isps)
      for (let c = 0; c < circuits; c++) {
        const ingressPop = pick(['x', 'y']);
        const egressPop = pick(['x', 'y']);
        const egress = isp.routers.filter((r) => r.pop === egressPop).map((r) => r.address);
        const kind = pick(['forward', 'forward', 'forward', 'udp', 'endpoint'] as const);
        const nextAddresses = [
          pick(allRouters),
          ...(pick([true, false]) ? [pick([...allRouters, '10.9.9.9:1'])] : []),
        ];
        const action: Circuit['action'] =
          kind === 'forward'
            ? { kind: 'forward', next: { addresses: nextAddresses, auth: pick([...auths, auth(0xdead)]) } }
            : kind === 'udp'
              ? { kind: 'deliver-udp', target: `192.0.2.${100 + a}:53` }
              : { kind: 'deliver-endpoint', addresses: [ENDPOINT] };
        isp.circuits.push({
          auth: auths[a]!,
          owner: 'acme',
          ingressPop,
          egressPop,
          bandwidthMbps: 1,
          internalAuth: auth(0x10000 + a),
          internalRouters: egressPop === ingressPop ? [] : egress,
          action,
          ...(kind === 'forward' && nextAddresses.length > 1 && pick([true, false])
            ? { active: { next: 1 } }
            : {}),
          createdAt: '2026-12-03T00:00:00Z',
          revision: 1,
        });
        a++;
      }
    if (failOne) net.dead = pick(allRouters);
    return net;
  });

test('verify agrees with the routers: on generated networks, every circuit ends where DataPlane.process takes its packets', () => {
  fc.assert(
    fc.property(network, (net) => {
      const model = mergeModels(net.isps.map((x) => ispModel(x.name, x.circuits, x.routers)));
      // With the dead router held dead: every hop on it moved to its next live alternative.
      const flows = verify(model, { failures: false, dead: net.dead === undefined ? [] : [net.dead] }).flows;
      const dead = net.dead;
      const injector = new Injector({ ...net, endpoints: [ENDPOINT] });
      for (const f of flows) {
        const ingress = f.witness[0]?.address;
        if (ingress === undefined) continue; // every ingress dead: nothing to send into
        const real = injector.inject(ingress, f.entry.circuit);
        assert.equal(landingOf(f.outcome), real, `circuit ${f.entry.circuit} from ${ingress}; dead ${dead}`);
      }
    }),
    { numRuns: 300 },
  );
});

test('buyPath check: a bought path whose next hop does not lead into the next circuit is named with its witness; a sound one passes', () => {
  const seg = (isp: string) => ({ isp, portal: `https://${isp}.example` });
  const good = {
    forward: [
      {
        segment: seg('alpha'),
        circuit: chain(1, '10.0.1.1:4000', '10.0.2.1:4000', 2),
      },
      {
        segment: seg('beta'),
        circuit: toServer(2, '10.0.2.1:4000'),
      },
    ],
    reverse: [],
  };
  assert.deepEqual(boughtPathProblems(checkBoughtPath(good)), []);
  // alpha was told the wrong authenticator for beta's circuit: packets die at beta's door.
  const bad = structuredClone(good);
  bad.forward[0]!.circuit.next = { addresses: ['10.0.2.1:4000'], auth: auth(9) };
  const problems = boughtPathProblems(checkBoughtPath(bad));
  assert.equal(problems.length, 1, problems.join('\n'));
  assert.match(
    problems[0]!,
    /^alpha circuit 00000000: black-hole \(.*knows no circuit.*\) via 10\.0\.1\.1:4000 -> 10\.0\.2\.1:4000$/,
  );
});
