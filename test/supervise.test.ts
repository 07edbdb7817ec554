import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { CLI_PATH } from '../src/lab/process.js';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../src/util/config.js';
import { RouterConfigSchema } from '../src/router/config.js';
import { checkPortalConfig, PortalConfigSchema } from '../src/portal/config.js';
import { AtlasConfigSchema, checkAtlasConfig } from '../src/atlas/config.js';
import { SqliteStore } from '../src/store/sqlite.js';
import { DEFAULT_POLICY, judge, nextBackoff } from '../src/supervisor/policy.js';

// Issue 12, part 3: the decapsulation nodes' failure detector (DN-FD). `arrow supervise` runs real
// routers, kills a sick one (hung by SIGSTOP, leaking) and restarts it with exponential backoff;
// a router under systemd tells it READY=1 and WATCHDOG=1 through $NOTIFY_SOCKET.

test('judge: silent, stalled, leaking and never-ready children are sick; backoff doubles and resets', () => {
  const p = {
    ...DEFAULT_POLICY,
    heartbeatMs: 100,
    missed: 3,
    maxLoopLagMs: 500,
    maxRssMb: 100,
    startTimeoutMs: 1000,
  };
  const ok = { startedAt: 0, readyAt: 50, lastBeatAt: 1000, loopLagMs: 10, rssBytes: 50 * 2 ** 20 };
  assert.equal(judge(ok, 1200, p), undefined);
  assert.equal(judge(ok, 1301, p)?.kind, 'hung');
  assert.equal(judge({ ...ok, loopLagMs: 600 }, 1100, p)?.kind, 'stalled');
  assert.equal(judge({ ...ok, rssBytes: 101 * 2 ** 20 }, 1100, p)?.kind, 'leaking');
  assert.equal(judge({ ...ok, readyAt: undefined }, 999, p), undefined, 'starting, within its time');
  assert.equal(judge({ ...ok, readyAt: undefined }, 1001, p)?.kind, 'not-ready');
  assert.equal(judge({ ...ok, lastBeatAt: undefined }, 349, p), undefined, 'ready, first beat not due yet');
  assert.equal(nextBackoff(undefined, 10, p), 100);
  assert.equal(nextBackoff(100, 10, p), 200);
  assert.equal(nextBackoff(20_000, 10, p), 30_000, 'capped');
  assert.equal(nextBackoff(20_000, 60_000, p), 100, 'a child that ran long enough starts afresh');
});

interface Event {
  event: string;
  child?: string;
  pid?: number;
  reason?: string;
  inMs?: number;
  attempt?: number;
  [k: string]: unknown;
}

/** `arrow supervise`'s JSON lines, and a bounded wait for the next one matching. */
function events(proc: ChildProcess): {
  all: Event[];
  next: (match: Partial<Event>, ms: number) => Promise<Event>;
} {
  const all: Event[] = [];
  let partial = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => {
    const parts = (partial + d.toString()).split('\n');
    partial = parts.pop()!;
    for (const l of parts) if (l.startsWith('{')) all.push(JSON.parse(l) as Event);
  });
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  let seen = 0;
  return {
    all,
    next: async (match, ms) => {
      const deadline = Date.now() + ms;
      while (Date.now() < deadline) {
        for (; seen < all.length; seen++) {
          const e = all[seen]!;
          if (Object.entries(match).every(([k, v]) => e[k] === v)) {
            seen++;
            return e;
          }
        }
        await sleep(20);
      }
      return assert.fail(
        `no ${JSON.stringify(match)} within ${ms} ms; events:\n${all.map((e) => JSON.stringify(e)).join('\n')}\nstderr: ${err}`,
      );
    },
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

function routerConfig(dir: string, name: string, host: string): string {
  const path = join(dir, `${name}.yaml`);
  writeFileSync(
    path,
    stringify({
      isp: 'alpha',
      pop: 'ams',
      name,
      listen: `${host}:0`,
      store: { kind: 'sqlite', path: join(dir, 'alpha.db') },
      dataplane: 'node',
      statsIntervalMs: 200,
    }),
  );
  return path;
}

test('arrow supervise kills a router hung with SIGSTOP and restarts it; a crash restarts it with a doubled backoff', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'arrow-supervise-'));
  const config = routerConfig(dir, 'alpha-ams-9', '127.0.0.91');
  const sup = spawn(
    process.execPath,
    [CLI_PATH, 'supervise', '--router', config, '--heartbeat-ms', '100', '--missed', '10'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const ev = events(sup);
  let pids: number[] = [];
  try {
    const first = await ev.next({ event: 'ready', child: config }, 20_000);
    pids.push(first.pid!);
    process.kill(first.pid!, 'SIGSTOP');
    const stoppedAt = Date.now();
    const killed = await ev.next({ event: 'killed', pid: first.pid }, 5000);
    assert.equal(killed.reason, 'hung');
    // 10 missed heartbeats of 100 ms (a busy CI host stalls a process for 500 ms), judged every 50 ms.
    assert.ok(Date.now() - stoppedAt < 3000, `killed ${Date.now() - stoppedAt} ms after the SIGSTOP`);
    assert.equal((await ev.next({ event: 'restarting' }, 2000)).inMs, 100);
    const second = await ev.next({ event: 'ready' }, 20_000);
    pids.push(second.pid!);
    assert.notEqual(second.pid, first.pid);
    assert.equal(alive(first.pid!), false, 'the hung router is gone, not left stopped');

    // The restarted router serves: it registered itself in the ISP's store again.
    const store = new SqliteStore(join(dir, 'alpha.db'));
    try {
      const routers = await store.listRouters();
      assert.ok(
        routers.some((r) => r.name === 'alpha-ams-9'),
        JSON.stringify(routers),
      );
    } finally {
      await store.close();
    }

    // A crash soon after a restart: the next wait doubles.
    process.kill(second.pid!, 'SIGKILL');
    const exited = await ev.next({ event: 'exited', pid: second.pid }, 5000);
    assert.equal(exited.signal, 'SIGKILL');
    assert.equal((await ev.next({ event: 'restarting' }, 2000)).inMs, 200);
    const third = await ev.next({ event: 'ready' }, 20_000);
    pids.push(third.pid!);

    sup.kill('SIGUSR1');
    const counters = await ev.next({ event: 'counters' }, 5000);
    assert.deepEqual(counters.kills, { hung: 1 });
    assert.equal(counters.crashes, 1);
    assert.equal(counters.restarts, 2);
    // The same through its admin API, as Prometheus reads it (curl).
    const admin = String(ev.all.find((e) => e.event === 'admin')?.url);
    assert.match(admin, /^http:\/\/127\.0\.0\.1:\d+$/);
    const metrics = execFileSync('curl', ['-sS', `${admin}/metrics`], { encoding: 'utf8' });
    for (const [series, value] of [
      ['arrow_supervisor_kills_total{reason="hung"}', 1],
      ['arrow_supervisor_crashes_total', 1],
      ['arrow_supervisor_restarts_total', 2],
      ['arrow_supervisor_starts_total', 3],
      [`arrow_supervisor_child_up{child="${config}"}`, 1],
    ] as const)
      assert.ok(metrics.split('\n').includes(`${series} ${value}`), `${series} ${value} in:\n${metrics}`);

    const done = new Promise<number | null>((resolve) => sup.once('exit', (code) => resolve(code)));
    sup.kill('SIGTERM');
    assert.equal(await done, 0);
    assert.equal(alive(third.pid!), false, 'stopping the supervisor stops its routers');
    pids = [];
  } finally {
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
    if (sup.exitCode === null) sup.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('arrow supervise kills a leaking router and backs off ever longer while it keeps dying', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'arrow-supervise-leak-'));
  const config = routerConfig(dir, 'alpha-ams-8', '127.0.0.92');
  // Every router uses more than 1 MB: each is judged leaking at its first heartbeat.
  const sup = spawn(
    process.execPath,
    [
      CLI_PATH,
      'supervise',
      '--router',
      config,
      '--heartbeat-ms',
      '100',
      '--max-rss-mb',
      '1',
      '--backoff-initial-ms',
      '50',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const ev = events(sup);
  try {
    const waits: number[] = [];
    for (let i = 0; i < 3; i++) {
      const k = await ev.next({ event: 'killed' }, 20_000);
      assert.equal(k.reason, 'leaking');
      assert.match(String(k.why), /resident memory \d+ MB \(limit 1\)/);
      waits.push((await ev.next({ event: 'restarting' }, 5000)).inMs!);
    }
    assert.deepEqual(waits, [50, 100, 200]);
  } finally {
    const done = new Promise((resolve) => sup.once('exit', resolve));
    sup.kill('SIGTERM');
    await Promise.race([done, sleep(10_000)]);
    if (sup.exitCode === null) sup.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

// A unix datagram socket in Python (Node's dgram has none): prints each sd_notify message it gets.
const NOTIFY_LISTENER = String.raw`
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print('listening', flush=True)
while True:
    print(s.recv(4096).decode(), flush=True)
`;

test('a router under systemd sends READY=1, then WATCHDOG=1 at half the watchdog interval, to $NOTIFY_SOCKET', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'arrow-notify-'));
  const socketPath = join(dir, 'notify.sock');
  const listener = spawn('python3', ['-c', NOTIFY_LISTENER, socketPath], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const got: string[] = [];
  listener.stdout!.on('data', (d: Buffer) => got.push(...d.toString().split('\n').filter(Boolean)));
  let router: ChildProcess | undefined;
  try {
    for (let i = 0; i < 100 && !got.includes('listening'); i++) await sleep(50);
    assert.ok(got.includes('listening'), 'the listener is up');
    router = spawn(
      process.execPath,
      [CLI_PATH, 'router', '--config', routerConfig(dir, 'alpha-ams-7', '127.0.0.93')],
      {
        stdio: ['ignore', 'ignore', 'inherit'],
        // As systemd sets them for Type=notify with WatchdogSec=0.4s (WATCHDOG_PID names the main process).
        env: { ...process.env, NOTIFY_SOCKET: socketPath, WATCHDOG_USEC: '400000' },
      },
    );
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && got.filter((l) => l === 'WATCHDOG=1').length < 5) await sleep(50);
    assert.equal(got[1], 'READY=1', got.join(' '));
    assert.ok(got.filter((l) => l === 'WATCHDOG=1').length >= 5, got.join(' '));
    // A hung router stops petting the watchdog: systemd would kill it after WatchdogSec.
    process.kill(router.pid!, 'SIGSTOP');
    await sleep(200);
    const before = got.length;
    await sleep(1000);
    assert.equal(got.length, before, 'no WATCHDOG=1 from a stopped router');
    process.kill(router.pid!, 'SIGCONT');
    const stopped = new Promise((resolve) => router!.once('exit', resolve));
    router.kill('SIGTERM');
    await stopped;
    assert.equal(got.at(-1), 'STOPPING=1');
  } finally {
    if (router && router.exitCode === null) router.kill('SIGKILL');
    listener.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the systemd units in deploy/ pass systemd-analyze verify, and each runs its daemon as Type=notify with a watchdog', () => {
  const dir = mkdtempSync(join(tmpdir(), 'arrow-units-'));
  try {
    for (const [unit, instance] of [
      ['arrow-router@.service', 'arrow-router@alpha-ams-1.service'],
      ['arrow-portal@.service', 'arrow-portal@alpha.service'],
      ['arrow-atlas.service', 'arrow-atlas.service'],
      ['arrow-supervise.service', 'arrow-supervise.service'],
    ] as const) {
      const text = readFileSync(new URL(`../../deploy/${unit}`, import.meta.url), 'utf8');
      for (const line of ['Type=notify', 'NotifyAccess=main', 'Restart=always'])
        assert.ok(text.split('\n').includes(line), `${unit}: ${line}`);
      assert.match(text, /^WatchdogSec=\d+s$/m, `${unit}: a watchdog`);
      // The unit as installed names /usr/local/bin/arrow; verify checks that the binary exists.
      writeFileSync(
        join(dir, unit),
        text.replaceAll('/usr/local/bin/arrow', `${process.execPath} ${CLI_PATH}`),
      );
      if (instance !== unit) symlinkSync(join(dir, unit), join(dir, instance));
      const r = spawnSync('systemd-analyze', ['verify', join(dir, instance)], { encoding: 'utf8', cwd: dir });
      assert.equal(r.status, 0, `${unit}: ${r.stderr}`);
      assert.equal(r.stderr.trim(), '', `${unit}: ${r.stderr}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the example configs in deploy/ load with each daemon’s own parser and checks', () => {
  const at = (f: string): string => fileURLToPath(new URL(`../../deploy/${f}`, import.meta.url));
  const router = loadConfig(RouterConfigSchema, at('router-alpha-ams-1.yaml'));
  assert.equal(router.admin.listen, '127.0.0.1:9180');
  const portal = loadConfig(PortalConfigSchema, at('portal-alpha.yaml'));
  assert.deepEqual(checkPortalConfig(portal), []);
  const atlas = loadConfig(AtlasConfigSchema, at('atlas.yaml'));
  assert.deepEqual(checkAtlasConfig(atlas), []);
  // The supervise unit's routers: a config that loads (arrow supervise refuses others at start).
  const unit = readFileSync(at('arrow-supervise.service'), 'utf8');
  assert.match(unit, /--router \/etc\/arrow\/router-alpha-ams-1\.yaml/);
});

test('arrow supervise refuses a router config that can never start, naming the problem, before starting anything', () => {
  const dir = mkdtempSync(join(tmpdir(), 'arrow-supervise-bad-'));
  try {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'isp: alpha\n');
    const r = spawnSync(process.execPath, [CLI_PATH, 'supervise', '--router', bad], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /invalid config .*bad\.yaml/);
    assert.match(r.stderr, /\/listen/);
    assert.equal(r.stdout, '', 'no child was started');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
