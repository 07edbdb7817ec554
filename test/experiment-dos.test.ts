// `arrow lab experiment dos` (docs/experiments/dos.md) end to end at small size, through the real
// command: a netns lab, `arrow protect`, `arrow forward --spread`, python3 sender and application,
// a flooding attacker. Needs root; fails, never skips, without. Plus its verdict on given figures.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI_PATH } from '../src/lab/process.js';
import {
  inWindow,
  verdict,
  type DosPhase,
  type DosResult,
  type DosTcpPhase,
} from '../src/lab/experiments/dos.js';
import { assertLabTarget } from '../src/lab/flood.js';

const phase = (flooded: number, goodput: number, o: Partial<DosPhase> = {}): DosPhase => ({
  flooded,
  routers: ['alpha-in1-1', 'beta-in3-1'].slice(0, flooded),
  sent: 3000,
  received: Math.round(3000 * goodput),
  goodput,
  onsetGoodput: goodput,
  floodPps: Array.from({ length: flooded }, () => 4000),
  linkDropShare: Array.from({ length: flooded }, () => 0.85),
  dropOutMs: [],
  ...o,
});

const tcpPhase = (flooded: number, mbps: number, share: number): DosTcpPhase => ({
  flooded,
  routers: ['alpha-in1-1', 'beta-in3-1'].slice(0, flooded),
  mbps,
  share,
  error: null,
});

const figures = (o: Partial<DosResult> = {}): Omit<DosResult, 'targets' | 'valid' | 'invalidReason'> => ({
  k: 4,
  legitPps: 1000,
  linkKbit: 4000,
  seconds: 3,
  calibration: { attackerPps: 30_000, linkPps: 500, floodPps: 4000 },
  spread: [phase(0, 1), phase(1, 0.98), phase(2, 0.96)],
  single: [phase(0, 1), phase(1, 0.12), phase(2, 0.11)],
  tcp: {
    spread: [tcpPhase(0, 1.8, 1), tcpPhase(1, 1.7, 0.94), tcpPhase(2, 1.6, 0.89)],
    single: [tcpPhase(0, 1.8, 1), tcpPhase(1, 0.05, 0.03), tcpPhase(2, 0, 0)],
  },
  destination: {
    egress: ['10.77.1.31', '10.77.2.31'],
    nft: {
      arrow: { packets: 30_000, bytes: 1 },
      established: { packets: 0, bytes: 0 },
      dropped: { packets: 4000, bytes: 1 },
    },
    directFloodSent: 4000,
    appForeign: 0,
    appSources: { '10.77.1.31': 20_000, '10.77.2.31': 10_000 },
    tableRemoved: true,
  },
  ...o,
});

test('dos verdict: the targets are judged from the figures, and a run that did not saturate or was overloaded is invalid', () => {
  const ok = verdict(figures());
  assert.deepEqual([ok.valid, ok.invalidReason], [true, null]);
  assert.equal(ok.targets.spread1!.met, true);
  assert.equal(ok.targets.spread2!.met, true);
  assert.equal(ok.targets.single1Collapses!.met, true);
  assert.equal(ok.targets.noForeignPacket!.met, true);
  assert.equal(ok.targets.tcpSpread1!.met, true);
  assert.equal(ok.targets.tcpSingle2!.met, true);
  // A download that never ran with no attack is no baseline: invalid.
  const noTcp = verdict(figures({ tcp: { spread: [tcpPhase(0, 0.1, 1)], single: [tcpPhase(0, 1.8, 1)] } }));
  assert.equal(noTcp.valid, false);
  assert.match(String(noTcp.invalidReason), /tcp spread: with no attack the download made 0\.1 Mb\/s/);
  const missed = verdict(figures({ spread: [phase(0, 1), phase(1, 0.7), phase(2, 0.52)] }));
  assert.equal(missed.targets.spread1!.met, false, '0.7 < 3/4');
  assert.equal(missed.targets.spread2!.met, true, '0.52 ≥ 2/4');
  // A foreign datagram or a stranger among the application's sources fails the destination's target.
  const leak = verdict(
    figures({ destination: { ...figures().destination, appSources: { '10.77.250.3': 1, '10.77.1.31': 5 } } }),
  );
  assert.equal(leak.targets.noForeignPacket!.met, false);
  // The attacker could not outrun the link here: invalid, not a result.
  const weak = verdict(figures({ calibration: { attackerPps: 2000, linkPps: 500, floodPps: 900 } }));
  assert.equal(weak.valid, false);
  assert.match(String(weak.invalidReason), /not 3x what a link carries/);
  // The sender fell behind (an overloaded machine), and a link that was not saturated.
  const busy = verdict(
    figures({
      spread: [phase(0, 1), phase(1, 0.98, { sent: 2000 }), phase(2, 0.96, { linkDropShare: [0.9, 0.3] })],
    }),
  );
  assert.equal(busy.valid, false);
  assert.match(String(busy.invalidReason), /sender managed 2000 datagrams/);
  assert.match(String(busy.invalidReason), /beta-in3-1's link dropped only 30%/);
  assert.match(
    String(verdict(figures({ single: [phase(0, 0.9)] })).invalidReason),
    /with no attack only 90%/,
  );
});

test('dos windows: 100 ms buckets of send time are summed when whole inside the window', () => {
  const b = { '10': 5, '11': 7, '12': 9 };
  assert.equal(inWindow(b, 1000, 1300), 21);
  assert.equal(inWindow(b, 1050, 1300), 16, 'the bucket at 1000 starts before the window');
  assert.equal(inWindow(b, 1000, 1250), 12, 'the bucket at 1200 ends after it');
});

test('the attacker floods lab addresses only, bounded in rate and time: anything else is refused before a datagram goes out', () => {
  assert.doesNotThrow(() => assertLabTarget('10.77.1.11:4000'));
  assert.doesNotThrow(() => assertLabTarget('127.0.0.1:9'));
  assert.throws(() => assertLabTarget('8.8.8.8:53'), /only lab addresses/);
  assert.throws(() => assertLabTarget('10.78.0.1:53'), /only lab addresses/);
  const run = (...args: string[]): ReturnType<typeof spawnSync> =>
    spawnSync(process.execPath, [CLI_PATH, 'flood', ...args], { encoding: 'utf8' });
  const outside = run('--target', '1.1.1.1:53', '--pps', '10', '--seconds', '1');
  assert.equal(outside.status, 1);
  assert.match(String(outside.stderr), /only lab addresses/);
  const fast = run('--target', '127.0.0.1:9', '--pps', '1000000', '--seconds', '1');
  assert.equal(fast.status, 1);
  assert.match(String(fast.stderr), /--pps must be 1\.\.50000/);
  const long = run('--target', '127.0.0.1:9', '--pps', '10', '--seconds', '1000');
  assert.equal(long.status, 1);
  assert.match(String(long.stderr), /at most 120/);
});

test('experiment dos (needs root): spreading holds goodput under a flood of 1 and 2 of 4 ingress points, one ingress collapses, nothing foreign reaches the destination', () => {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0)
    assert.fail(
      'test/experiment-dos.test.ts needs root: the experiment makes namespaces, tc queues and nft tables',
    );
  const out = mkdtempSync(join(tmpdir(), 'arrow-dos-'));
  try {
    const r = spawnSync(
      process.execPath,
      [CLI_PATH, 'lab', 'experiment', 'dos', '--json', '--out', out, '--seconds', '2'],
      { encoding: 'utf8', timeout: 240_000 },
    );
    assert.equal(
      r.status,
      0,
      `arrow lab experiment dos failed:\n${r.stderr.split('\n').slice(-20).join('\n')}`,
    );
    for (const ext of ['md', 'svg', 'png', 'json'])
      assert.ok(existsSync(join(out, `dos.${ext}`)), `dos.${ext}`);
    assert.match(readFileSync(join(out, 'dos.md'), 'utf8'), /ARROW §3\.5/);
    const d = JSON.parse(r.stdout) as DosResult;
    assert.equal(d.valid, true, `invalid run: ${d.invalidReason}`);
    // The goodput assertion: with spreading at least (K − flooded)/K of the no-attack rate...
    for (const p of d.spread)
      assert.ok(p.goodput >= (d.k - p.flooded) / d.k, `spread, ${p.flooded} flooded: ${p.goodput}`);
    // ...every flooded ingress left the sequence...
    for (const p of d.spread) for (const ms of p.dropOutMs) assert.notEqual(ms, null, JSON.stringify(p));
    // ...and through one flooded ingress the flow collapses.
    for (const p of d.single.filter((x) => x.flooded > 0)) assert.ok(p.goodput < 0.5, `single: ${p.goodput}`);
    // The TCP download through the TUN endpoints: spreading keeps it going, a single ingress does not.
    for (const [i, p] of d.tcp.spread.entries()) {
      if (p.flooded === 0) continue;
      const single = d.tcp.single[i]!;
      assert.ok(
        p.share >= single.share + 0.2,
        `tcp, ${p.flooded} flooded: spread ${p.share} (${p.mbps} Mb/s) vs single ${single.share} (${single.mbps} Mb/s)`,
      );
    }
    // The destination: nothing but its egress routers, the direct flood dropped by nft, the table gone.
    assert.equal(d.destination.appForeign, 0);
    for (const s of Object.keys(d.destination.appSources)) assert.ok(d.destination.egress.includes(s), s);
    assert.ok(
      d.destination.nft.dropped.packets >= 0.9 * d.destination.directFloodSent,
      JSON.stringify(d.destination),
    );
    assert.equal(d.destination.tableRemoved, true);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
