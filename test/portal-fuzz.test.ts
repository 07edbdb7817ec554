import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { Value } from '@sinclair/typebox/value';
import type { FastifyInstance } from 'fastify';
import { Lab } from '../src/lab/lab.js';
import type { Topology } from '../src/lab/topology.js';
import { buildPortal } from '../src/portal/server.js';
import { PortalConfigSchema } from '../src/portal/config.js';
import { CircuitView, CreateCircuitBody, NextHop } from '../src/api/portal.js';
import { loadConfig } from '../src/util/config.js';
import { openStore } from '../src/store/open.js';
import type { CircuitStore } from '../src/store/store.js';
import { compileCircuit, newCircuitCounters } from '../src/router/table.js';
import { authToBytes, newAuthenticator } from '../src/wire/authenticator.js';
import { decode, encode, PacketType } from '../src/wire/header.js';
import { mustParseAddress } from '../src/wire/address.js';
import { fromSchema, HOSTILE_ADDRESSES, mostlyOneAction, type FuzzRequest } from './helpers/api-fuzz.js';

// Issue 10 part 2: no customer API call can hurt an ISP. Requests generated from the API's own
// schemas, mixed with hostile values, go to a portal on the ISP's real SQLite store while its
// real routers run on it. Every answer is 2xx or 4xx; every record accepted compiles; then
// every router is killed and restarted on the fuzzed store, and each forwards a real echo.
const RUNS = 250;
const POPS = ['ams', 'fra'];
const accounts = Array.from({ length: 4 }, (_, i) => ({
  name: `fuzz${i}`,
  apiKey: `fuzz-key-${i}-000000000000`,
}));
const topology: Topology = {
  name: 'fuzz',
  isps: [
    {
      name: 'fuzz',
      accounts,
      store: { kind: 'sqlite' },
      pops: POPS.map((name) => ({ name, routers: 2 })),
      offers: [
        ['ams', 'fra'],
        ['fra', 'ams'],
        ['ams', 'ams'],
        ['fra', 'fra'],
      ].map(([from, to]) => ({
        from: from!,
        to: to!,
        capacityMbps: 1e12,
        latencyMs: { min: 1, max: 10 },
        maxLossPct: 0.1,
        uptimePct: 99.99,
        pricePerMbps: 1,
      })),
    },
  ],
  servers: [{ name: 'echo', kind: 'udp-echo' }],
  statsIntervalMs: 200,
};

let lab: Lab;
let store: CircuitStore;
let portal: FastifyInstance;

before(async () => {
  lab = await Lab.start(topology);
  const isp = lab.isp('fuzz');
  store = await openStore(isp.store, { isp: 'fuzz', busyTimeoutMs: 2000 });
  portal = await buildPortal({ config: loadConfig(PortalConfigSchema, isp.portalConfigPath), store });
});

after(async () => {
  await portal?.close();
  await store?.close();
  await lab?.stop();
});

test('fuzzed API requests: never a 5xx, every accepted record compiles, every router restarts and forwards', async () => {
  const isp = lab.isp('fuzz');
  const routers = isp.pops.flatMap((p) => p.routers);
  const echo = lab.server('echo').address;
  const addresses = fc.oneof(
    { weight: 6, arbitrary: fc.constant(echo) },
    { weight: 6, arbitrary: fc.integer({ min: 1, max: 65535 }).map((p) => `127.0.0.${(p % 200) + 20}:${p}`) },
    { weight: 2, arbitrary: fc.constantFrom(...routers.map((r) => r.address)) },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 65535 }).map((p) => `[::1]:${p}`) },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 65535 }).map((p) => `203.0.113.7:${p}`) },
    { weight: 2, arbitrary: fc.constantFrom(...HOSTILE_ADDRESSES) },
  );
  const account = fc.nat({ max: accounts.length });
  const request: fc.Arbitrary<FuzzRequest> = fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({
        kind: fc.constant('create' as const),
        account,
        body: mostlyOneAction(fromSchema(CreateCircuitBody, addresses, POPS)),
      }),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant('chain' as const),
        account,
        pick: fc.nat(),
        body: fromSchema(NextHop, addresses, POPS),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constantFrom('get' as const, 'delete' as const),
        account,
        pick: fc.nat(),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('raw' as const),
        account,
        payload: fc.oneof(
          fc.string({ maxLength: 200 }),
          fc.constantFrom('{', 'null', '[]', '{"next":', '1e999'),
        ),
      }),
    },
  );

  const created: string[] = [];
  const statuses = new Map<number, number>();
  const property = fc.asyncProperty(request, async (req) => {
    // One index past the accounts: no key at all.
    const a = accounts[req.account];
    const headers = a ? { authorization: `Bearer ${a.apiKey}` } : {};
    const auth = (pick: number): string =>
      pick % 5 === 4
        ? newAuthenticator()
        : (created[pick % Math.max(created.length, 1)] ?? newAuthenticator());
    const r =
      req.kind === 'create'
        ? await portal.inject({ method: 'POST', url: '/circuits', headers, payload: req.body as object })
        : req.kind === 'chain'
          ? await portal.inject({
              method: 'POST',
              url: `/circuits/${auth(req.pick)}/chain`,
              headers,
              payload: req.body as object,
            })
          : req.kind === 'raw'
            ? await portal.inject({
                method: 'POST',
                url: '/circuits',
                headers: { ...headers, 'content-type': 'application/json' },
                payload: req.payload,
              })
            : await portal.inject({
                method: req.kind === 'get' ? 'GET' : 'DELETE',
                url: `/circuits/${auth(req.pick)}`,
                headers,
              });
    if (process.env.FUZZ_DEBUG && req.kind === 'create')
      console.log(r.statusCode, JSON.stringify(req.body).slice(0, 300), r.body.slice(0, 300));
    statuses.set(r.statusCode, (statuses.get(r.statusCode) ?? 0) + 1);
    assert.ok(
      r.statusCode >= 200 && r.statusCode < 500,
      `${r.statusCode} for ${JSON.stringify(req).slice(0, 500)}: ${r.body}`,
    );
    if (r.statusCode >= 400) assert.equal(typeof r.json().message, 'string');
    if (req.kind === 'create' && r.statusCode === 201) {
      const view = r.json() as unknown;
      assert.ok(Value.Check(CircuitView, view), `answer does not match CircuitView: ${r.body}`);
      created.push((view as { auth: string }).auth);
    }
  });
  // The generator's bias varies from seed to seed: a whole-suite run once got 19 creates accepted
  // in 250 requests (55 is usual). Fuzz on, a round at a time, until the fuzz has reached the store and been
  // refused often enough to have tested both; 4 rounds short of that means creates are broken.
  const covered = (): boolean => created.length >= 20 && (statuses.get(400) ?? 0) >= 20;
  for (let round = 0; round < 4 && !covered(); round++)
    await fc.assert(property, { numRuns: RUNS, interruptAfterTimeLimit: 60_000 });
  const summary = JSON.stringify(Object.fromEntries(statuses));
  // The fuzz reached the store, and refused things, or it tested nothing.
  assert.ok(created.length >= 20, `only ${created.length} creates accepted: ${summary}`);
  assert.ok((statuses.get(400) ?? 0) >= 20, summary);

  // Every record in the store compiles, in every PoP, with the router's own table compiler.
  const circuits = await store.list();
  assert.ok(circuits.length >= 10, `${circuits.length} circuits left`);
  for (const c of circuits)
    for (const pop of POPS)
      assert.doesNotThrow(
        () => compileCircuit(c, pop, newCircuitCounters()),
        `circuit ${JSON.stringify(c)} in ${pop}`,
      );

  // Kill every router, then start each on the fuzzed store: each must come back and forward.
  for (const r of routers) lab.kill(r.name, 'SIGKILL');
  await sleep(100);
  for (const r of routers) await lab.restart(r.name);

  const socket = await bindLocal();
  try {
    const local = `127.0.0.1:${socket.address().port}`;
    for (const pop of POPS) {
      const replyAuth = newAuthenticator();
      const res = await portal.inject({
        method: 'POST',
        url: '/circuits',
        headers: { authorization: `Bearer ${accounts[0]!.apiKey}` },
        payload: {
          ingressPop: pop,
          egressPop: POPS.find((p) => p !== pop),
          bandwidthMbps: 1,
          deliver: { kind: 'udp', target: echo, reply: { addresses: [local], auth: replyAuth } },
        },
      });
      assert.equal(res.statusCode, 201, res.body);
      const auth = (res.json() as { auth: string }).auth;
      for (const r of isp.pops.find((p) => p.name === pop)!.routers)
        assert.ok(
          await echoThrough(socket, r.address, auth, replyAuth),
          `no echo through ${r.name} (${r.address})`,
        );
    }
  } finally {
    socket.close();
  }
});

async function bindLocal(): Promise<Socket> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  return socket;
}

/** Sends DATA into `router` until the echo comes back on the reply circuit (at most 5 s). */
async function echoThrough(
  socket: Socket,
  router: string,
  auth: string,
  replyAuth: string,
): Promise<boolean> {
  const to = mustParseAddress(router);
  const payload = Buffer.from(`echo via ${router} ${newAuthenticator()}`);
  let got = false;
  const onMessage = (msg: Buffer): void => {
    const d = decode(msg);
    if (
      d.ok &&
      d.packet.type === PacketType.Data &&
      Buffer.from(d.packet.authenticator).toString('hex') === replyAuth &&
      Buffer.from(d.packet.payload).equals(payload)
    )
      got = true;
  };
  socket.on('message', onMessage);
  try {
    const packet = encode({
      type: PacketType.Data,
      hopLimit: 64,
      authenticator: authToBytes(auth),
      sequence: 1n,
      payload,
    });
    for (let i = 0; i < 50 && !got; i++) {
      socket.send(packet, to.port, to.host);
      await sleep(100);
    }
    return got;
  } finally {
    socket.off('message', onMessage);
  }
}
