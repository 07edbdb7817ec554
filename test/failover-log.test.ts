import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { Connection } from '../src/endpoint/connection.js';
import type { Endpoint } from '../src/endpoint/endpoint.js';
import { logFailoverEvents, notReadyLines } from '../src/endpoint/failover-log.js';
import type { BoughtPath } from '../src/endpoint/path.js';
import { newAuthenticator } from '../src/wire/authenticator.js';
import { PacketType } from '../src/wire/header.js';

// Unit tests of the endpoint's failover events, with a fake endpoint (no sockets): what the
// commands print, and that a failed re-buy reaches the caller instead of vanishing.

/** An Endpoint stand-in: records what the connection sends; no router ever answers. */
class FakeEndpoint extends EventEmitter {
  readonly address = '127.0.0.1:1';
  readonly sent: string[] = [];
  private seq = 1n;
  nextSequence(): bigint {
    return this.seq++;
  }
  /** Probes sent to this ingress router are acked and come home at once, on `replyAuth`'s return path. */
  answering: { at: string; replyAuth: string } | undefined;
  sendOn(to: { host: string; port: number }, _auth: Buffer, type: number, _p: Uint8Array, seq: bigint): void {
    const at = `${to.host}:${to.port}`;
    this.sent.push(at);
    const a = this.answering;
    if (type !== PacketType.Probe || a?.at !== at) return;
    setImmediate(() => {
      this.emit('probeAck', seq, to);
      this.emit('probe', { authenticator: Buffer.from(a.replyAuth, 'hex'), sequence: seq }, to);
    });
  }
  echo(): Promise<number | undefined> {
    return Promise.resolve(undefined);
  }
}

function fakePath(isps: string[]): BoughtPath {
  return {
    forward: isps.map((isp, i) => ({
      segment: { isp, portal: `http://127.0.0.1:${i + 1}`, apiKey: 'k', ingressPop: 'a', egressPop: 'b' },
      circuit: {
        auth: newAuthenticator(),
        ingressPop: 'a',
        egressPop: 'b',
        bandwidthMbps: 1,
        ingress: [`127.0.0.${i + 2}:9`, `127.0.0.${i + 2}:10`],
        createdAt: '',
        revision: 1,
      },
    })),
    reverse: [],
    replyAuth: newAuthenticator(),
  };
}

test('every failover event is one timestamped line naming the circuit', async () => {
  const conn = new Connection(new FakeEndpoint() as unknown as Endpoint);
  const primary = conn.add(fakePath(['alpha', 'beta', 'gamma']));
  const standby = conn.add(fakePath(['alpha', 'delta', 'gamma']));
  const lines: string[] = [];
  const at = new Date('2026-12-01T12:00:00.000Z');
  const stop = logFailoverEvents(
    conn,
    (l) => lines.push(l),
    () => at,
  );
  conn.emit('failure', primary, 0);
  conn.emit('ingress', primary, '127.0.0.2:10');
  conn.emit('switch', primary, standby, 0);
  conn.emit('repaired', primary, 81.25, 0);
  conn.emit('rebuy', standby, ['beta']);
  conn.emit('rebuyFailed', new Error('HTTP 401: unknown API key'), ['beta']);
  stop();
  conn.emit('failure', primary, 0);
  await conn.close();
  assert.deepEqual(lines, [
    '2026-12-01T12:00:00.000Z failure primary via alpha > beta > gamma: nothing back for 50 ms, probing',
    '2026-12-01T12:00:00.000Z ingress primary via alpha > beta > gamma: no PROBE_ACK, now entering at 127.0.0.2:10',
    '2026-12-01T12:00:00.000Z switch sending via standby 1 via alpha > delta > gamma (was primary via alpha > beta > gamma)',
    '2026-12-01T12:00:00.000Z repaired primary via alpha > beta > gamma: works end to end again after 81.3 ms',
    '2026-12-01T12:00:00.000Z rebuy standby 1 via alpha > delta > gamma: bought avoiding beta',
    '2026-12-01T12:00:00.000Z rebuy-failed avoiding beta: HTTP 401: unknown API key',
  ]);
  assert.deepEqual(notReadyLines(conn, [standby], 5000, at), [
    '2026-12-01T12:00:00.000Z not-ready standby 1 via alpha > delta > gamma: no answer within 5000 ms; the failover driver keeps probing',
  ]);
});

test('a re-buy that fails is reported to the caller with its error and the ISPs it avoided', async () => {
  const endpoint = new FakeEndpoint();
  const refused = new Error('portal http://127.0.0.1:2 answered 401: unknown API key');
  let attempts = 0;
  const conn = new Connection(
    endpoint as unknown as Endpoint,
    { timeoutMs: 1, probeIntervalMs: 1, ackTimeoutMs: 1, rebuyAfterMs: 0, standbyCheckMs: 60_000 },
    () => {
      attempts++;
      return Promise.reject(refused);
    },
  );
  conn.add(fakePath(['alpha']));
  conn.send(Buffer.from('x')); // never answered: the circuit fails, no router echoes, re-buy is tried
  let guard: NodeJS.Timeout | undefined;
  const [err, avoid] = await Promise.race([
    new Promise<[Error, string[]]>((resolve) => conn.once('rebuyFailed', (e, a) => resolve([e, a]))),
    new Promise<never>((_, reject) => {
      guard = setTimeout(() => reject(new Error('no rebuyFailed event')), 10_000);
    }),
  ]);
  clearTimeout(guard);
  await conn.close();
  assert.equal(err, refused);
  assert.deepEqual(avoid, ['alpha']);
  assert.equal(attempts, 1);
  // It probed the failing circuit and, with no PROBE_ACK, moved to the first ISP's other ingress router.
  assert.ok(endpoint.sent.includes('127.0.0.2:10'), JSON.stringify([...new Set(endpoint.sent)]));
});

test('a failing circuit is probed through the other ingress router too, and moves there when that probe comes home first', async () => {
  const endpoint = new FakeEndpoint();
  // The ack timeout is far away, so only the probe through the other ingress router can move it.
  const conn = new Connection(endpoint as unknown as Endpoint, {
    timeoutMs: 1,
    probeIntervalMs: 1000,
    ackTimeoutMs: 60_000,
    standbyCheckMs: 60_000,
  });
  const path = fakePath(['alpha']);
  const c = conn.add(path);
  const [dead, alive] = path.forward[0]!.circuit.ingress as [string, string];
  endpoint.answering = { at: alive, replyAuth: path.replyAuth! };
  const moved: string[] = [];
  conn.on('ingress', (_c, address) => moved.push(address));
  conn.send(Buffer.from('x')); // never answered through `dead`
  let guard: NodeJS.Timeout | undefined;
  const repairMs = await Promise.race([
    new Promise<number>((resolve) => conn.once('repaired', (_c, ms) => resolve(ms))),
    new Promise<never>((_, reject) => {
      guard = setTimeout(() => reject(new Error('never repaired')), 10_000);
    }),
  ]);
  clearTimeout(guard);
  await conn.close();
  assert.ok(repairMs >= 0);
  assert.deepEqual(moved, [alive]);
  assert.equal(c.ingress[c.activeIngress]!.port, Number(alive.split(':')[1]));
  assert.ok(endpoint.sent.includes(dead), 'the active ingress router was probed first');
});
