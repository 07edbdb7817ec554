import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { CLI_PATH } from '../src/lab/process.js';
import { Lab } from '../src/lab/lab.js';
import { defaultTopology, type Topology } from '../src/lab/topology.js';
import { throughSegments } from '../src/lab/demo.js';
import type { SegmentSpec } from '../src/endpoint/path.js';
import { mustParseAddress } from '../src/wire/address.js';
import { PortalClient } from '../src/endpoint/portal-client.js';
import { routerStats } from './helpers/network.js';
import { LAB_DATAPLANES, kernelSent, startLab, type LabDataplane } from './helpers/dataplanes.js';

// Issue 10, part 1: `arrow forward`, started as a real process, carries an UNMODIFIED Python UDP
// client across three ISPs (2 routers per PoP, every one a real process) while the router that
// carries the traffic is SIGKILLed in each role in turn, never healed. Every reply is checked byte
// for byte. Each kill's outage (the longest run of datagrams sent that got no reply) must stay under
// 300 ms plus the longest reply gap the same traffic shows in this run with nothing killed
// (BASELINE_MS), and replies must come back long before the next kill. The reply gap itself is
// printed, not judged on that bound: on CI's shared VM a stall of the machine after the repair
// delayed replies that nothing lost (a 534 ms gap around a 263 ms outage).

/** ~200 datagrams/s of 16-1444 random bytes; the first 8 bytes number them. Bounded in count and time. */
const RATE = 200;
const MAX_DATAGRAMS = 8000;
const MAX_SECONDS = 40;
const GAP_LIMIT_MS = 300;
/**
 * Traffic with nothing killed, before the first kill: the longest reply gap in it is what this
 * machine's scheduler does to a reply that crosses ten processes (on a busy 2-core VM with
 * hypervisor steal, 100-330 ms with no failure at all). Each kill may add GAP_LIMIT_MS to that.
 */
const BASELINE_MS = 2500;
/** Traffic after each kill before the next one. */
const AFTER_KILL_MS = 2500;

// A foreign client: plain Python 3 sockets, nothing of Arrow. Sends until its stdin says stop (or
// the bounds hit), drains replies for 1 s more, then prints one JSON line. Reply times are
// CLOCK_MONOTONIC ms, the clock of Node's process.hrtime, so the test can place its kills among them.
const CLIENT = String.raw`
import json, os, random, select, socket, sys, time
host, port, rate, max_count, max_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(('127.0.0.1', 0))
sock.setblocking(False)
sent, sent_at, got, replies = {}, {}, set(), []
bad = {'corrupt': 0, 'unknown': 0, 'duplicate': 0}
announced = False
def now_ms():
    return time.monotonic_ns() / 1e6
def drain():
    global announced
    while True:
        try:
            data = sock.recv(65535)
        except BlockingIOError:
            return
        seq = int.from_bytes(data[:8], 'big') if len(data) >= 8 else -1
        want = sent.get(seq)
        if want is None:
            bad['unknown'] += 1
        elif data != want:
            bad['corrupt'] += 1
        elif seq in got:
            bad['duplicate'] += 1
        else:
            got.add(seq)
            replies.append(now_ms())
            if not announced:
                announced = True
                print('first-reply', flush=True)
start = time.monotonic()
next_send = start
seq = 0
stop_at = None
while True:
    now = time.monotonic()
    if stop_at is None and (seq >= max_count or now - start > max_s):
        stop_at = now
    if stop_at is not None and now - stop_at > 1.0:
        break
    if stop_at is None and now >= next_send:
        payload = seq.to_bytes(8, 'big') + os.urandom(random.randint(16, 1444) - 8)
        sent[seq] = payload
        sent_at[seq] = now_ms()
        sock.sendto(payload, (host, port))
        seq += 1
        next_send = max(next_send + 1 / rate, now - 0.05)
        continue
    wait = (stop_at + 1.0 - now) if stop_at is not None else (next_send - now)
    fds = [sock] if stop_at is not None else [sock, sys.stdin]
    ready, _, _ = select.select(fds, [], [], max(0.0, wait))
    if sock in ready:
        drain()
    if sys.stdin in ready and stop_at is None:
        sys.stdin.readline()
        stop_at = time.monotonic()
lost = [[s, sent_at[s]] for s in sorted(sent) if s not in got]
print(json.dumps({'sent': len(sent), 'received': len(got), **bad, 'replies': replies, 'lost': lost}), flush=True)
`;

interface ClientReport {
  sent: number;
  received: number;
  corrupt: number;
  unknown: number;
  duplicate: number;
  /** CLOCK_MONOTONIC ms of every good reply, in arrival order. */
  replies: number[];
  /** [sequence, sent at (ms)] of every datagram with no reply. */
  lost: [number, number][];
}

const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/** Collects a child's stdout lines; `waitFor` resolves with the first line matching. */
function lines(child: ChildProcessWithoutNullStreams): {
  all: string[];
  waitFor: (re: RegExp, ms: number) => Promise<RegExpExecArray>;
} {
  const all: string[] = [];
  let buf = '';
  const waiters: (() => void)[] = [];
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    all.push(...parts);
    for (const w of waiters) w();
  });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const waitFor = (re: RegExp, ms: number): Promise<RegExpExecArray> =>
    new Promise((resolve, reject) => {
      const check = (): boolean => {
        for (const l of all) {
          const m = re.exec(l);
          if (m) {
            clearTimeout(timer);
            resolve(m);
            return true;
          }
        }
        return false;
      };
      const timer = setTimeout(
        () =>
          reject(
            new Error(`no line matching ${re} within ${ms} ms; stdout ${all.join('\n')}; stderr ${err}`),
          ),
        ms,
      );
      if (!check()) waiters.push(check);
    });
  return { all, waitFor };
}

/**
 * The router of `isp`/`pop` carrying the traffic now: of the live ones, the one whose counters for
 * the ISP's forward circuit (published to the ISP's store every statsIntervalMs) grew most over
 * 400 ms. The forward direction decides, since a PoP's return traffic may take its other router.
 */
async function carrier(
  lab: Lab,
  isp: string,
  pop: string,
): Promise<{ name: string; forward: number; all: number }> {
  const i = lab.isp(isp);
  // Our account's circuit that enters this ISP where the path does: the forward one.
  const { circuits } = await new PortalClient(i.url, i.accounts[0]!.apiKey).circuits();
  const forward = circuits.find((c) => c.ingressPop === i.pops[0]!.name)!.auth;
  const names = i.pops
    .find((p) => p.name === pop)!
    .routers.map((r) => r.name)
    .filter((n) => !(n in lab.failures));
  const counts = async (): Promise<Map<string, { forward: number; all: number }>> =>
    new Map(
      (await routerStats(lab, isp)).map((s) => [
        s.router,
        {
          forward: s.circuits[forward]?.packets ?? 0,
          all: Object.values(s.circuits).reduce((n, c) => n + c.packets, 0),
        },
      ]),
    );
  const before = await counts();
  await sleep(400);
  const after = await counts();
  const grown = names.map((name) => {
    const a = after.get(name) ?? { forward: 0, all: 0 };
    const b = before.get(name) ?? { forward: 0, all: 0 };
    return { name, forward: a.forward - b.forward, all: a.all - b.all };
  });
  grown.sort((a, b) => b.forward - a.forward || b.all - a.all);
  return grown[0]!;
}

/**
 * The longest gap between consecutive replies from the last one before `at` up to `until` (the
 * next kill): a gap that spans `until` belongs to the next kill.
 */
function gapAround(replies: number[], at: number, until: number): number {
  const i = replies.findIndex((t) => t > at);
  if (i <= 0 || replies[i]! > until) return Infinity;
  let longest = 0;
  for (let j = i; j < replies.length && replies[j]! <= until; j++)
    longest = Math.max(longest, replies[j]! - replies[j - 1]!);
  const lastBeforeUntil = replies.filter((t) => t <= until).at(-1)!;
  // Silence right up to `until` counts too.
  return Math.max(longest, until - lastBeforeUntil);
}

/** The longest gap between consecutive replies that arrived within [from, to]. */
function longestGap(replies: number[], from: number, to: number): number {
  const inside = replies.filter((t) => t >= from && t <= to);
  let longest = 0;
  for (let j = 1; j < inside.length; j++) longest = Math.max(longest, inside[j]! - inside[j - 1]!);
  return longest;
}

/**
 * The longest link timeout any router holds for `victim` (from their published stats): how long a
 * neighbour waits for its ack before declaring it dead. It follows the measured RTT and its
 * variance, as TCP's RTO does (src/router/neighbours.ts), so a busy machine lengthens it.
 */
async function linkTimeoutFor(lab: Lab, victim: string): Promise<number> {
  const address = lab.router(victim).address;
  let longest = 0;
  for (const isp of lab.isps.map((i) => i.name))
    for (const s of await routerStats(lab, isp))
      longest = Math.max(longest, s.neighbours?.[address]?.timeoutMs ?? 0);
  return longest;
}

/**
 * The outage the path itself caused: the longest run of consecutive datagrams (by sequence) sent
 * within [from, to) that got no reply, from the first one's send to the last one's, plus one send
 * interval. A reply the machine merely delayed (a stalled process, as CI's shared VM does for
 * hundreds of ms) is late, not lost: it widens the reply gap but is no outage of the path.
 */
function longestLossRun(lost: [number, number][], from: number, to: number): number {
  const inside = lost.filter(([, t]) => t >= from && t < to);
  let longest = 0;
  let runStart = 0;
  for (let i = 0; i < inside.length; i++) {
    if (i === 0 || inside[i]![0] !== inside[i - 1]![0] + 1) runStart = inside[i]![1];
    longest = Math.max(longest, inside[i]![1] - runStart + 1000 / RATE);
  }
  return longest;
}

/** Datagrams sent this long before a kill may be in flight through the victim: their loss is its. */
const IN_FLIGHT_MS = 100;

const ROLES = [
  { role: "first ISP's ingress router", isp: 'alpha', pop: 'ams' },
  { role: "internal/egress router of a PoP (alpha's egress)", isp: 'alpha', pop: 'fra' },
  { role: "middle ISP's router", isp: 'beta', pop: 'fra' },
  { role: "last ISP's delivering router", isp: 'gamma', pop: 'lon' },
] as const;

async function killEachRole(liveness: boolean, dataplane: LabDataplane): Promise<void> {
  const topology: Topology = defaultTopology();
  topology.statsIntervalMs = 100;
  // Set either way, so the test means the same whatever the routers' default becomes.
  topology.failover = { liveness: { enabled: liveness } };
  const lab = await startLab(topology, dataplane);
  const dir = mkdtempSync(join(tmpdir(), 'arrow-forward-failover-'));
  const procs: ChildProcessWithoutNullStreams[] = [];
  try {
    const pathFile = join(dir, 'path.yaml');
    writeFileSync(
      pathFile,
      stringify({
        // 200 datagrams/s of up to 1444 bytes: ~1.2 Mb/s, and circuits are policed at what they buy.
        segments: throughSegments(lab).map((x) => ({ ...x, bandwidthMbps: 10 })),
        target: { kind: 'udp', address: lab.server('echo').address },
      }),
    );
    const fwd = spawn(process.execPath, [CLI_PATH, 'forward', '--listen', '127.0.0.1:0', '--path', pathFile]);
    procs.push(fwd);
    const fwdOut = lines(fwd);
    const listen = mustParseAddress((await fwdOut.waitFor(/^forwarding UDP (\S+) over/, 30_000))[1]!);

    const client = spawn('python3', [
      '-c',
      CLIENT,
      listen.host,
      String(listen.port),
      String(RATE),
      String(MAX_DATAGRAMS),
      String(MAX_SECONDS),
    ]);
    procs.push(client);
    const clientOut = lines(client);
    await clientOut.waitFor(/^first-reply$/, 10_000);
    await sleep(1000);
    const baselineFrom = monotonicMs();
    await sleep(BASELINE_MS);
    const baselineTo = monotonicMs();
    if (dataplane === 'kernel') {
      // The routers' programs, not their processes, carry the client's datagrams.
      const sent = await kernelSent(lab);
      assert.ok(sent > RATE, `the routers' programs sent ${sent} DATA packets in the first seconds`);
    }

    const kills: {
      role: string;
      victim: string;
      forward: number;
      all: number;
      at: number;
      timeoutMs: number;
    }[] = [];
    for (const r of ROLES) {
      const { name, forward, all } = await carrier(lab, r.isp, r.pop);
      assert.ok(forward > 0, `${r.role}: a router of ${r.isp}/${r.pop} carries the traffic`);
      const timeoutMs = await linkTimeoutFor(lab, name);
      const at = monotonicMs();
      await lab.fail(name, 'kill');
      kills.push({ role: r.role, victim: name, forward, all, at, timeoutMs });
      await sleep(AFTER_KILL_MS);
    }
    const end = monotonicMs();
    client.stdin.end('stop\n');
    const report = JSON.parse((await clientOut.waitFor(/^\{.*\}$/, 10_000))[0]) as ClientReport;

    // What the machine does on its own, measured in this run: every limit below is on top of it.
    const stall = longestGap(report.replies, baselineFrom, baselineTo);
    const gapLimit = GAP_LIMIT_MS + stall;
    const results = kills.map((k, i) => {
      const until = kills[i + 1]?.at ?? end;
      return {
        ...k,
        gapMs: gapAround(report.replies, k.at, until),
        lostAt: report.lost
          .filter(([, t]) => t >= k.at - IN_FLIGHT_MS && t < until - IN_FLIGHT_MS)
          .map(([, t]) => t - k.at),
        outageMs: longestLossRun(report.lost, k.at - IN_FLIGHT_MS, until - IN_FLIGHT_MS),
      };
    });
    const events = fwdOut.all.filter((l) => /^\d{4}-\d\d-\d\dT\S+Z /.test(l));
    console.log(
      `# liveness ${liveness ? 'on' : 'off'}: sent ${report.sent}, received ${report.received}, lost ${report.lost.length}, corrupt ${report.corrupt}, unknown ${report.unknown}, duplicates ${report.duplicate}; longest reply gap in ${BASELINE_MS} ms with nothing killed ${stall.toFixed(1)} ms, so a kill's gap limit is ${gapLimit.toFixed(1)} ms`,
    );
    for (const r of results)
      console.log(
        `#   killed ${r.victim} (${r.role}; in 400 ms it carried ${r.forward} forward packets, ${r.all} in all): outage ${r.outageMs.toFixed(1)} ms, longest reply gap ${r.gapMs.toFixed(1)} ms (its neighbours' link timeout ${r.timeoutMs.toFixed(1)} ms), ${r.lostAt.length} lost (sent ${r.lostAt.map((t) => t.toFixed(0)).join(' ')} ms after the kill)`,
      );
    for (const e of events) console.log(`#   forward: ${e}`);

    // Byte-exact: nothing corrupted, nothing that was never sent, nothing twice.
    assert.equal(report.corrupt, 0, 'corrupted replies');
    assert.equal(report.unknown, 0, 'replies to datagrams never sent');
    assert.equal(report.duplicate, 0, 'duplicated replies');
    assert.ok(report.sent >= RATE * 8 && report.sent <= MAX_DATAGRAMS, `sent ${report.sent}`);
    for (const r of results) {
      assert.ok(
        r.outageMs < gapLimit,
        `${r.role} (${r.victim}): datagrams sent over ${r.outageMs.toFixed(1)} ms got no reply`,
      );
      // Replies came back well before the next kill, however late a stalled machine made them.
      assert.ok(
        r.gapMs < AFTER_KILL_MS,
        `${r.role} (${r.victim}): longest reply gap ${r.gapMs.toFixed(1)} ms`,
      );
      // What a gap under the limit can lose at this rate, plus what was in flight.
      assert.ok(
        r.lostAt.length <= (RATE * gapLimit) / 1000 + 10,
        `${r.role} (${r.victim}): ${r.lostAt.length} lost`,
      );
    }
    assert.equal(report.received + report.lost.length, report.sent);
    // The forward reported what it did: the dead ingress router made it change ingress, and each
    // detection it made was followed by a repair.
    const named = (e: string): number => events.filter((l) => l.split(' ')[1] === e).length;
    assert.ok(named('ingress') >= 1, events.join('\n'));
    assert.ok(named('failure') >= 1 && named('repaired') >= named('failure'), events.join('\n'));
    if (!liveness) assert.ok(named('failure') >= ROLES.length, events.join('\n'));

    const exited = new Promise<number | null>((resolve) => fwd.once('exit', (code) => resolve(code)));
    fwd.kill('SIGINT');
    assert.equal(await exited, 0, 'the forward relinquished its circuits and exited');
  } finally {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await lab.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

for (const dataplane of LAB_DATAPLANES) {
  test(`arrow forward survives a SIGKILL of each router role with an outage at most 300 ms longer than the reply gaps with nothing killed (liveness off: the probe repairs; routers on the ${dataplane} path)`, async () => {
    await killEachRole(false, dataplane);
  });

  test(`arrow forward survives a SIGKILL of each router role with an outage at most 300 ms longer than the reply gaps with nothing killed (liveness on; routers on the ${dataplane} path)`, async () => {
    await killEachRole(true, dataplane);
  });

  test(`arrow forward --path twice: a warm standby takes over at once; a failed re-buy is printed; a path that cannot be bought leaves nothing behind (routers on the ${dataplane} path)`, async () => {
    await standbyAndRebuy(dataplane);
  });
}

async function standbyAndRebuy(dataplane: LabDataplane): Promise<void> {
  // alpha -> beta -> gamma, and delta beside beta for a disjoint standby.
  const topology: Topology = defaultTopology();
  topology.statsIntervalMs = 100;
  topology.failover = { liveness: { enabled: false } };
  topology.isps.push({
    ...structuredClone(topology.isps[1]!),
    name: 'delta',
    accounts: [{ name: 'demo', apiKey: 'demo-key-delta-0000000000' }],
  });
  const lab = await startLab(topology, dataplane);
  const dir = mkdtempSync(join(tmpdir(), 'arrow-forward-standby-'));
  const procs: ChildProcessWithoutNullStreams[] = [];
  const sockets: Socket[] = [];
  try {
    const seg = (isp: string, ingressPop: string, egressPop: string, apiKey?: string): SegmentSpec => {
      const i = lab.isp(isp);
      // Policed at what it buys: room for the test's ~1.2 Mb/s.
      return {
        isp,
        portal: i.url,
        apiKey: apiKey ?? i.accounts[0]!.apiKey,
        ingressPop,
        egressPop,
        bandwidthMbps: 10,
      };
    };
    const file = (name: string, middle: SegmentSpec): string => {
      const f = join(dir, name);
      writeFileSync(
        f,
        stringify({
          segments: [seg('alpha', 'ams', 'fra'), middle, seg('gamma', 'par', 'lon')],
          target: { kind: 'udp', address: lab.server('echo').address },
        }),
      );
      return f;
    };
    const viaBeta = file('beta.yaml', seg('beta', 'fra', 'par'));
    const viaDelta = file('delta.yaml', seg('delta', 'fra', 'par'));
    const badKey = file('bad.yaml', seg('delta', 'fra', 'par', 'not-a-key-of-delta-000000'));
    const owned = async (isp: string): Promise<number> => {
      const i = lab.isp(isp);
      return (await new PortalClient(i.url, i.accounts[0]!.apiKey).circuits()).circuits.length;
    };
    const forward = (
      paths: string[],
    ): { proc: ChildProcessWithoutNullStreams; out: ReturnType<typeof lines>; err: { text: string } } => {
      const proc = spawn(process.execPath, [
        CLI_PATH,
        'forward',
        '--listen',
        '127.0.0.1:0',
        ...paths.flatMap((p) => ['--path', p]),
      ]);
      procs.push(proc);
      const err = { text: '' };
      proc.stderr.on('data', (d: Buffer) => (err.text += d.toString()));
      return { proc, out: lines(proc), err };
    };

    // All or nothing: the standby's portal refuses the key, so the primary bought first goes back.
    const bad = forward([viaBeta, badKey]);
    const code = await new Promise<number | null>((resolve) => bad.proc.once('exit', (c) => resolve(c)));
    assert.notEqual(code, 0, 'a forward whose paths cannot all be bought fails');
    assert.match(bad.err.text, /401|API key/i);
    for (const isp of ['alpha', 'beta', 'gamma', 'delta'])
      assert.equal(await owned(isp), 0, `nothing left at ${isp}`);

    // A primary via beta and a warm standby via delta; and, beside it, a forward with no standby.
    const both = forward([viaBeta, viaDelta]);
    const alone = forward([viaBeta]);
    const listen = async (f: ReturnType<typeof forward>): Promise<string> =>
      (await f.out.waitFor(/^forwarding UDP (\S+) over (\d+) path/, 30_000))[1]!;
    const [bothAt, aloneAt] = [await listen(both), await listen(alone)];
    await both.out.waitFor(/^ {2}standby 1:$/, 5000);
    assert.equal(await owned('delta'), 2, "the standby's forward and return circuits at delta");
    assert.equal(await owned('alpha'), 6, 'three paths, each a forward and a return circuit at alpha');

    // Plain UDP clients, 100 datagrams/s each, counting replies by arrival time.
    const client = async (
      to: string,
    ): Promise<{ replies: number[]; stop: () => void; sent: () => number }> => {
      const s = createSocket('udp4');
      sockets.push(s);
      await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
      const replies: number[] = [];
      s.on('message', () => replies.push(monotonicMs()));
      const a = mustParseAddress(to);
      let n = 0;
      const timer = setInterval(() => {
        if (n < 2000) s.send(Buffer.from(`datagram ${n++}`), a.port, a.host);
      }, 10);
      return { replies, stop: () => clearInterval(timer), sent: () => n };
    };
    const c1 = await client(bothAt);
    const c2 = await client(aloneAt);
    await sleep(1000);
    assert.ok(c1.replies.length > 50 && c2.replies.length > 50, 'both forwards carry traffic');
    const baselineFrom = monotonicMs();
    await sleep(BASELINE_MS);
    const stall = longestGap(c1.replies, baselineFrom, monotonicMs());

    // beta's ingress PoP dies whole: no repair inside beta is possible.
    const at = monotonicMs();
    for (const r of lab.isp('beta').pops[0]!.routers) await lab.fail(r.name, 'kill');
    // The standby takes the traffic at once...
    await both.out.waitFor(/ switch sending via standby 1 via alpha > delta > gamma/, 5000);
    await sleep(500);
    const gap = gapAround(c1.replies, at, monotonicMs());
    assert.ok(
      gap < GAP_LIMIT_MS + stall,
      `with a standby: longest reply gap ${gap.toFixed(1)} ms (${stall.toFixed(1)} ms with nothing killed)`,
    );
    // ...while the forward with no standby finds beta dead, and no path of its own avoids it.
    const failed = await alone.out.waitFor(/ rebuy-failed avoiding beta: (.*)$/, 10_000);
    assert.match(failed[1]!, /no candidate path avoids beta/);
    console.log(
      `# standby switch: longest reply gap ${gap.toFixed(1)} ms (${stall.toFixed(1)} ms with nothing killed); no standby: ${failed[0]}`,
    );
    c1.stop();
    c2.stop();

    for (const f of [both, alone]) {
      const exited = new Promise<number | null>((resolve) => f.proc.once('exit', (c) => resolve(c)));
      f.proc.kill('SIGINT');
      // beta's dead routers do not matter: relinquishing is a portal call.
      assert.equal(await exited, 0, `the forward exited so: ${f.err.text}`);
    }
    for (const isp of ['alpha', 'beta', 'gamma', 'delta'])
      assert.equal(await owned(isp), 0, `all relinquished at ${isp}`);
  } finally {
    for (const s of sockets) s.close();
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await lab.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
