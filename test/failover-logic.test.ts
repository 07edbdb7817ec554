import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Neighbours } from '../src/router/neighbours.js';
import { RateLimiter } from '../src/router/ratelimit.js';
import { ForwardingTable } from '../src/router/table.js';
import type { Circuit } from '../src/store/circuit.js';
import { newAuthenticator } from '../src/wire/authenticator.js';

const cfg = { minMs: 10, initialMs: 50, maxMs: 1000 };

test('link timeout: initial before any sample, then SRTT + 4 RTTVAR clamped to the floor', () => {
  const n = new Neighbours(cfg);
  assert.equal(n.timeoutMs('b1'), 50);
  n.expectAck('b1', 0);
  n.heard('b1', 2);
  assert.equal(n.rttMs('b1'), 2);
  assert.equal(n.timeoutMs('b1'), 10, 'clamped to the floor');
  for (let t = 100; t < 2000; t += 100) {
    n.expectAck('b1', t);
    n.heard('b1', t + 40);
  }
  assert.ok(Math.abs(n.rttMs('b1')! - 40) < 5, `SRTT follows a 40 ms RTT: ${n.rttMs('b1')}`);
  const rto = n.timeoutMs('b1');
  assert.ok(rto > 40 && rto < 70, `timeout above the RTT by a few deviations: ${rto}`);
});

test('an overdue ack marks a neighbour dead; a late answer revives it without feeding the RTT (Karn)', () => {
  const n = new Neighbours(cfg);
  n.expectAck('b1', 0);
  n.heard('b1', 1);
  n.measure('b1', 100);
  n.expectAck('b1', 100);
  assert.deepEqual(n.overdue(105), []);
  assert.deepEqual(n.overdue(111), ['b1']);
  n.markDead('b1', 111);
  assert.equal(n.isDead('b1'), true);
  assert.deepEqual(n.overdue(5000), [], 'dead neighbours are not overdue again');
  assert.equal(n.heard('b1', 900), true, 'revived');
  assert.equal(n.rttMs('b1'), 1, 'the backlog answer did not become an 800 ms sample');
});

test('liveness: keepalives are judged by the window, probes keep the RTT-derived link timeout', () => {
  const n = new Neighbours(cfg, 600); // 200 ms x 3
  n.expectAck('b1', 0);
  n.heard('b1', 1);
  assert.equal(n.timeoutMs('b1'), 10, 'a probe ack is still expected within the link timeout');
  assert.equal(n.detectionMs('b1'), 600);
  // Keepalives every 200 ms, each answered: never overdue, and no keepalive feeds the RTT.
  for (let t = 200; t <= 2000; t += 200) {
    n.expectKeepalive('b1', t);
    assert.equal(n.keepaliveWaitMs('b1', t + 3), 3);
    n.heard('b1', t + 3);
  }
  assert.deepEqual(n.overdue(5000), []);
  assert.equal(n.rttMs('b1'), 1, 'keepalive answers are not RTT samples');
  // Two keepalives lost, the third answered: still alive.
  n.expectKeepalive('b1', 2200);
  n.expectKeepalive('b1', 2400);
  assert.equal(n.expectKeepalive('b1', 2600), 2800, 'deadline from the oldest unanswered keepalive');
  assert.deepEqual(n.overdue(2799), []);
  n.heard('b1', 2650);
  // Then silence: dead one window after the first unanswered keepalive, and said to be liveness's verdict.
  n.expectKeepalive('b1', 3000);
  n.expectKeepalive('b1', 3200);
  n.expectKeepalive('b1', 3400);
  assert.deepEqual(n.overdue(3599), []);
  assert.deepEqual(n.overdue(3600), ['b1']);
  assert.equal(n.keepaliveOverdue('b1', 3600), true);
  // A probe forwarded meanwhile is judged by its own, shorter timeout, not the liveness window.
  const m = new Neighbours(cfg, 600);
  m.expectKeepalive('b2', 0);
  assert.equal(m.expectAck('b2', 100), 150, 'initial link timeout');
  assert.deepEqual(m.overdue(150), ['b2']);
  assert.equal(m.keepaliveOverdue('b2', 150), false, 'a probe verdict, not a liveness one');
});

test('liveness: the window stretches to the link timeout of a neighbour with a long RTT', () => {
  const n = new Neighbours({ minMs: 10, initialMs: 50, maxMs: 5000 }, 600);
  for (let t = 0; t < 20_000; t += 1000) {
    n.measure('far', t);
    n.heard('far', t + 700);
  }
  assert.ok(n.detectionMs('far') > 700, `window above the 700 ms RTT: ${n.detectionMs('far')}`);
});

test('token buckets: burst then rate, per key', () => {
  const r = new RateLimiter({ ratePerSec: 10, burst: 5 });
  let ok = 0;
  for (let i = 0; i < 100; i++) if (r.allow('c1', 0)) ok++;
  assert.equal(ok, 5);
  assert.equal(r.allow('c2', 0), true, 'another circuit has its own bucket');
  assert.equal(r.allow('c1', 50), false);
  assert.equal(r.allow('c1', 100), true, 'one token back after 100 ms at 10/s');
});

function circuit(next: string[]): Circuit {
  return {
    auth: newAuthenticator(),
    owner: 'acme',
    ingressPop: 'fra',
    egressPop: 'fra',
    bandwidthMbps: 1,
    internalAuth: '',
    internalRouters: [],
    action: { kind: 'forward', next: { addresses: next, auth: newAuthenticator() } },
    createdAt: '',
    revision: 1,
  };
}

test('per-neighbour repair moves every circuit on the dead neighbour at once, skipping dead alternatives', () => {
  const dead = new Set<string>();
  const t = new ForwardingTable('fra', (k) => dead.has(k));
  const onB1 = Array.from({ length: 1000 }, () => circuit(['127.0.0.1:1', '127.0.0.2:1', '127.0.0.3:1']));
  const elsewhere = circuit(['127.0.0.9:1', '127.0.0.2:1']);
  for (const c of [...onB1, elsewhere]) t.put(c);
  assert.equal(t.neighboursInUse().get('127.0.0.1:1'), 1000);
  dead.add('127.0.0.1:1');
  dead.add('127.0.0.2:1');
  const { moved, stranded } = t.repairNeighbour('127.0.0.1:1');
  assert.equal(moved.length, 1000);
  assert.equal(stranded, 0);
  assert.ok(moved.every((m) => m.to === '127.0.0.3:1' && m.active === 2 && m.kind === 'next'));
  assert.equal(t.neighboursInUse().get('127.0.0.3:1'), 1000);
  assert.equal(t.neighboursInUse().get('127.0.0.9:1'), 1, 'circuits on other neighbours untouched');
  // A circuit compiled later (e.g. from the store) never starts on a dead neighbour.
  const late = circuit(['127.0.0.1:1', '127.0.0.3:1']);
  t.put(late);
  assert.equal(t.entriesOf(late.auth)[0]!.kind === 'forward' && t.entriesOf(late.auth)[0]!.kind, 'forward');
  assert.equal(t.neighboursInUse().get('127.0.0.3:1'), 1001);
  // The recorded choice from the store is honoured.
  const recorded = { ...circuit(['127.0.0.5:1', '127.0.0.6:1']), active: { next: 1 } };
  t.put(recorded);
  assert.equal(t.neighboursInUse().get('127.0.0.6:1'), 1);
  // No live alternative: stranded, left where it is.
  const lonely = circuit(['127.0.0.7:1']);
  t.put(lonely);
  dead.add('127.0.0.7:1');
  assert.deepEqual(t.repairNeighbour('127.0.0.7:1'), { moved: [], stranded: 1 });
});

test('a sibling applies a recorded repair in place; a changed route is recompiled', () => {
  const dead = new Set<string>();
  const t = new ForwardingTable('fra', (k) => dead.has(k));
  const c = circuit(['127.0.0.1:1', '127.0.0.2:1']);
  t.put(c);
  const before = t.entriesOf(c.auth)[0]!;
  assert.equal(t.neighboursInUse().get('127.0.0.1:1'), 1);
  // The repairing sibling's record: same route, next hop 1 active.
  t.put({ ...c, active: { next: 1 }, revision: c.revision + 1 });
  const after = t.entriesOf(c.auth)[0]!;
  assert.equal(after, before, 'the same entry object: moved in place, not recompiled');
  assert.equal(after.kind === 'forward' && after.next.active, 1);
  assert.equal(t.neighboursInUse().get('127.0.0.1:1'), undefined);
  assert.equal(t.neighboursInUse().get('127.0.0.2:1'), 1);
  // A record naming an address we hold dead is not followed onto it.
  dead.add('127.0.0.1:1');
  t.put({ ...c, active: { next: 0 }, revision: c.revision + 2 });
  assert.equal(after.kind === 'forward' && after.next.active, 1);
  // A chain (new next hop) is a new route: recompiled, and the index follows.
  const chained: Circuit = {
    ...c,
    action: { kind: 'forward', next: { addresses: ['127.0.0.8:1'], auth: newAuthenticator() } },
    revision: c.revision + 3,
  };
  t.put(chained);
  assert.notEqual(t.entriesOf(c.auth)[0], before);
  assert.equal(t.neighboursInUse().get('127.0.0.8:1'), 1);
  assert.equal(t.neighboursInUse().get('127.0.0.2:1'), undefined);
});
