// Issue 14, part 3: `arrow cdn` through the commands themselves, with curl as the client and
// busybox httpd as the origin, all on loopback. Which cache is nearest needs distance, which
// loopback has none of: test/experiments.test.ts runs `arrow lab experiment cdn`, where the ARROW
// routers give each city its distance, and checks the choices there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes, createHash } from 'node:crypto';
import { CLI_PATH } from '../src/lab/process.js';
import { startCli } from './helpers/cli-process.js';
import { parsePing } from '../src/cdn/rtt.js';
import { parseCacheSpec, pickLowest, clientAddress } from '../src/cdn/controller.js';
import {
  distanceMs,
  hopsBetween,
  nearestCaches,
  summarise,
  CACHES,
  type Download,
} from '../src/lab/experiments/cdn.js';

const run = promisify(execFile);
const TOKEN = 'cdn-test-token-0123456789';

test('cdn logic: the lowest RTT wins (ties to the first), ping summaries, --cache specs, client addresses', () => {
  assert.equal(
    pickLowest([
      { name: 'a', value: 12 },
      { name: 'b', value: 3.5 },
      { name: 'c', value: null },
    ]),
    'b',
  );
  assert.equal(
    pickLowest([
      { name: 'a', value: 2 },
      { name: 'b', value: 2 },
    ]),
    'a',
  );
  assert.equal(pickLowest([{ name: 'a', value: null }]), undefined);
  assert.deepEqual(
    parsePing(
      '3 packets transmitted, 3 received, 0% packet loss, time 20ms\nrtt min/avg/max/mdev = 16.204/16.900/17.702/0.613 ms\n',
    ),
    { sent: 3, received: 3, rttMs: 16.204 },
  );
  assert.deepEqual(parsePing('3 packets transmitted, 0 received, 100% packet loss, time 2000ms\n'), {
    sent: 3,
    received: 0,
    rttMs: null,
  });
  assert.deepEqual(parseCacheSpec('ams=http://10.0.0.1:8081/'), { name: 'ams', url: 'http://10.0.0.1:8081' });
  assert.deepEqual(parseCacheSpec('ams=https://c.example:443@alpha/ams'), {
    name: 'ams',
    url: 'https://c.example:443',
    pop: 'alpha/ams',
  });
  assert.throws(() => parseCacheSpec('http://10.0.0.1'), /expected NAME=/);
  assert.equal(clientAddress('::ffff:10.1.2.3'), '10.1.2.3');
  assert.equal(clientAddress('::1'), '::1');
});

test('cdn experiment logic: distances along the row, the paths between cities, nearest caches, validity', () => {
  assert.equal(distanceMs('fra', 'ams'), 4);
  assert.equal(distanceMs('lon', 'ams'), 30);
  assert.equal(distanceMs('fra', 'nyc'), 56);
  assert.deepEqual(hopsBetween('lon', 'ams'), [
    ['gamma', 'lon', 'par'],
    ['beta', 'par', 'fra'],
    ['alpha', 'fra', 'ams'],
  ]);
  assert.deepEqual(nearestCaches('fra', CACHES), ['ams']);
  assert.deepEqual(nearestCaches('lon', CACHES), ['par']);
  assert.deepEqual(nearestCaches('lon', [CACHES[0]!]), ['ams']);
  const d = (client: 'fra' | 'par' | 'lon', via: 'cdn' | 'origin', nearest: boolean): Download => ({
    client,
    via,
    server: via === 'cdn' ? 'ams' : 'origin',
    ttfbMs: 10,
    totalMs: 20,
    redirectMs: 5,
    chooseMs: 4,
    measured: {},
    nearest,
  });
  const downloads = [
    d('fra', 'cdn', true),
    d('fra', 'origin', true),
    d('lon', 'cdn', false),
    d('par', 'cdn', true),
  ];
  const good = [{ pair: 'fra-origin', expectedMs: 104, minMs: 105.2 }];
  const r = summarise({ runs: 1, sizeMB: 1 }, downloads, [], good, null);
  assert.equal(r.requests, 3);
  assert.equal(r.nearest, 2);
  assert.equal(r.target.met, false);
  assert.equal(r.valid, true);
  // A pair without its distance (the delay stage not on the path) or far above it: invalid.
  const flat = summarise(
    { runs: 1, sizeMB: 1 },
    downloads,
    [],
    [{ pair: 'x', expectedMs: 104, minMs: 0.2 }],
    null,
  );
  assert.equal(flat.valid, false);
  assert.match(String(flat.invalidReason), /pair x: ping's lowest RTT 0.2 ms against 104 ms/);
  const slow = summarise(
    { runs: 1, sizeMB: 1 },
    downloads,
    [],
    [{ pair: 'x', expectedMs: 20, minMs: 75 }],
    null,
  );
  assert.equal(slow.valid, false);
});

/** Starts `arrow ARGS` and waits for its "listening on" line. */
async function daemon(args: string[]): Promise<{ proc: ChildProcess; output: () => string }> {
  // Every daemon of the test shares a token, as a deployment should: the caches ping for the controller only.
  return startCli(args, /listening on/, { env: { ...process.env, ARROW_CDN_TOKEN: TOKEN } });
}

async function curl(args: string[]): Promise<string> {
  return (await run('curl', ['-sS', ...args], { timeout: 30_000 })).stdout;
}

test('arrow cdn: curl is redirected to a cache, which fills from the origin once; a hung or killed cache is skipped from the next request on', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'arrow-cdn-'));
  const procs: ChildProcess[] = [];
  try {
    const www = join(dir, 'www');
    const file = randomBytes(300_000);
    const sha = createHash('sha256').update(file).digest('hex');
    await run('mkdir', ['-p', www]);
    writeFileSync(join(www, 'f.bin'), file);
    writeFileSync(join(www, 'g.bin'), file);
    // busybox httpd does not say which port it got: one per test process.
    const port = 18_000 + (process.pid % 1000);
    const origin = spawn('busybox', ['httpd', '-f', '-p', `127.0.0.1:${port}`, '-h', www], {
      stdio: 'ignore',
    });
    procs.push(origin);
    const caches: { name: string; proc: ChildProcess; url: string }[] = [];
    for (const [name, host] of [
      ['one', '127.0.0.21'],
      ['two', '127.0.0.22'],
      ['three', '127.0.0.23'],
    ] as const) {
      const c = await daemon([
        'cdn',
        'cache',
        '--name',
        name,
        '--listen',
        `${host}:0`,
        '--origin',
        `http://127.0.0.1:${port}`,
        '--store',
        join(dir, `store-${name}`),
      ]);
      procs.push(c.proc);
      caches.push({ name, proc: c.proc, url: /listening on (\S+)/.exec(c.output())![1]! });
    }
    const ctl = await daemon([
      'cdn',
      'controller',
      '--listen',
      '127.0.0.1:0',
      ...caches.flatMap((c) => ['--cache', `${c.name}=${c.url}`]),
      '--measure-timeout-ms',
      '2000',
      '--skip-ms',
      '60000',
    ]);
    procs.push(ctl.proc);
    const controller = /listening on (\S+)/.exec(ctl.output())![1]!;

    // The redirect: a 302 to one cache, with every cache's RTT to the caller measured now.
    const head = await curl(['-D', '-', '-o', '/dev/null', `${controller}/files/f.bin`]);
    assert.match(head, /^HTTP\/1\.1 302/);
    const chosen = /^x-arrow-cdn-cache: (\S+)/im.exec(head)![1]!;
    const measured = /^x-arrow-cdn-measurements: (\S+)/im.exec(head)![1]!;
    assert.match(
      measured,
      /^one=[\d.]+,two=[\d.]+,three=[\d.]+$/,
      'every cache measured its RTT to 127.0.0.1',
    );
    const to = caches.find((c) => c.name === chosen)!;
    assert.match(head, new RegExp(`^location: ${to.url}/files/f.bin`, 'im'));

    // curl follows it, and gets the file intact.
    const dest = join(dir, 'got.bin');
    await curl(['-L', '-o', dest, `${controller}/files/f.bin`]);
    assert.equal(createHash('sha256').update(readFileSync(dest)).digest('hex'), sha);
    // (On loopback both RTTs are alike, so the choice may differ request by request: ask the cache itself.)
    // A cache's first fetch of a file fills it from the origin, the next is a hit; both intact.
    for (const expect of ['MISS', 'HIT']) {
      const got = await curl(['-D', '-', '-o', dest, `${caches[0]!.url}/files/g.bin`]);
      assert.match(got, new RegExp(`^x-cache: ${expect}`, 'im'));
      assert.equal(createHash('sha256').update(readFileSync(dest)).digest('hex'), sha);
    }
    const status = JSON.parse(await curl([`${caches[0]!.url}/status`])) as {
      hits: number;
      misses: number;
      files: number;
    };
    assert.ok(status.misses >= 1 && status.hits >= 1 && status.files >= 1, JSON.stringify(status));

    // Both serve their OpenAPI documents; bad input is a 4xx that says what was wrong.
    for (const base of [controller, caches[0]!.url]) {
      const doc = JSON.parse(await curl([`${base}/openapi.json`])) as { paths: Record<string, unknown> };
      assert.ok(doc.paths['/files/{name}'], base);
    }
    const rtt = (body: string, auth: string[] = ['-H', `authorization: Bearer ${TOKEN}`]): Promise<string> =>
      curl([
        '-w',
        '%{http_code}',
        '-X',
        'POST',
        '-H',
        'content-type: application/json',
        ...auth,
        '-d',
        body,
        `${caches[0]!.url}/rtt`,
      ]);
    assert.match(await rtt('{"address":"nope"}'), /address.*400$/s);
    // Only who holds the token may have a cache ping: the controller, and through it its holders.
    assert.match(await curl(['-w', '%{http_code}', `${controller}/choose?client=127.0.0.9`]), /token.*401$/s);
    const choice = JSON.parse(
      await curl(['-H', `authorization: Bearer ${TOKEN}`, `${controller}/choose?client=127.0.0.9`]),
    ) as { client: string; how: string; measurements: unknown[] };
    assert.deepEqual([choice.client, choice.how, choice.measurements.length], ['127.0.0.9', 'measured', 3]);
    assert.match(await rtt('{"address":"127.0.0.1"}', []), /token.*401$/s);
    assert.match(await rtt('{"address":"127.0.0.1"}', ['-H', 'authorization: Bearer wrong']), /401$/);
    assert.match(await rtt('{"address":"127.0.0.1"}'), /"rttMs":[\d.]+.*"received":3.*200$/s);
    assert.match(await curl(['-w', '%{http_code}', `${caches[0]!.url}/files/..%2Fsecret`]), /400$/);
    assert.match(
      await curl(['-w', '%{http_code}', `${caches[0]!.url}/files/absent.bin`]),
      /not at the origin.*404$/s,
    );

    // Hang one cache (SIGSTOP): its measurement times out, the request goes to another cache,
    // and the hung one is skipped from then on.
    const [one, two, three] = caches as [(typeof caches)[0], (typeof caches)[0], (typeof caches)[0]];
    two.proc.kill('SIGSTOP');
    const hung = await curl(['-L', '-D', '-', '-o', dest, `${controller}/files/f.bin`]);
    assert.match(hung, /^x-arrow-cdn-measurements: one=[\d.]+,two=x,three=[\d.]+\s*$/im);
    assert.match(hung, /^x-arrow-cdn-cache: (one|three)\s*$/im);
    assert.equal(createHash('sha256').update(readFileSync(dest)).digest('hex'), sha);

    // Kill another (SIGKILL): the next request finds it dead and goes to the last one...
    const gone = new Promise((resolve) => one.proc.once('exit', resolve));
    one.proc.kill('SIGKILL');
    await gone;
    const next = await curl(['-L', '-D', '-', '-o', dest, `${controller}/files/f.bin`]);
    assert.match(next, /^x-arrow-cdn-measurements: one=x,three=[\d.]+\s*$/im);
    assert.match(next, /^x-arrow-cdn-cache: three\s*$/im);
    assert.equal(createHash('sha256').update(readFileSync(dest)).digest('hex'), sha);
    // ...and from then on neither failed cache is even asked.
    const after = await curl(['-D', '-', '-o', '/dev/null', `${controller}/files/f.bin`]);
    assert.match(after, /^x-arrow-cdn-measurements: three=[\d.]+\s*$/im);
    const view = JSON.parse(await curl([`${controller}/caches`])) as {
      name: string;
      skippedUntil: string | null;
      lastError: string | null;
    }[];
    const of = (name: string): (typeof view)[0] => view.find((c) => c.name === name)!;
    assert.ok(of('one').skippedUntil && of('two').skippedUntil, 'the failed caches are skipped');
    assert.equal(of('three').skippedUntil, null);
    assert.match(String(of('one').lastError), /ECONNREFUSED/);
    assert.match(String(of('two').lastError), /no answer within 2000 ms/);
    const metrics = await curl([`${controller}/metrics`]);
    assert.match(metrics, /arrow_cdn_cache_failures_total\{cache="one"\} 1/);
    assert.match(metrics, /arrow_cdn_cache_failures_total\{cache="two"\} 1/);

    // With every cache dead, the controller says so: 503, naming the one it asked and why.
    three.proc.kill('SIGKILL');
    await new Promise((resolve) => three.proc.once('exit', resolve));
    const none = await curl(['-w', '%{http_code}', `${controller}/files/f.bin`]);
    assert.match(none, /no cache answered: three: .*ECONNREFUSED.*503$/s);
    two.proc.kill('SIGCONT');
  } finally {
    for (const p of procs) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('arrow cdn: bad flags are refused with a message that names them, before anything listens', (t) => {
  const store = mkdtempSync(join(tmpdir(), 'arrow-cdn-flags-'));
  t.after(() => rmSync(store, { recursive: true, force: true }));
  const cli = (args: string[]): { status: number | null; stderr: string } =>
    spawnSync(process.execPath, [CLI_PATH, 'cdn', ...args], { encoding: 'utf8', timeout: 30_000 });
  const bad = cli(['controller', '--listen', '127.0.0.1:0', '--cache', 'http://127.0.0.1:1']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /--cache http:\/\/127\.0\.0\.1:1: expected NAME=http\(s\):\/\/HOST:PORT/);
  const twice = cli([
    'controller',
    '--listen',
    '127.0.0.1:0',
    '--cache',
    'a=http://127.0.0.1:1',
    '--cache',
    'a=http://127.0.0.1:2',
  ]);
  assert.match(twice.stderr, /cache a is declared twice/);
  const origin = cli([
    'cache',
    '--name',
    'x',
    '--listen',
    '127.0.0.1:0',
    '--origin',
    'nope',
    '--store',
    store,
  ]);
  assert.match(origin.stderr, /--origin nope: Invalid URL/);
  const plain = cli([
    'cache',
    '--name',
    'x',
    '--listen',
    '10.1.2.3:0',
    '--origin',
    'http://o:1',
    '--store',
    store,
  ]);
  assert.match(plain.stderr, /refusing plain HTTP on 10\.1\.2\.3:0/);
  const help = spawnSync(process.execPath, [CLI_PATH, 'cdn', '--help'], { encoding: 'utf8' });
  assert.match(help.stdout, /cache \[options\][\s\S]*controller \[options\]/);
});
