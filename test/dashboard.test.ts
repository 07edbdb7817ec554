import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium, type Browser, type Page } from 'playwright-core';
import { Lab } from '../src/lab/lab.js';
import { runDir, serveControl } from '../src/lab/control.js';
import { CLI_PATH } from '../src/lab/process.js';
import { defaultTopology } from '../src/lab/topology.js';
import { runEchoes } from '../src/lab/demo.js';
import { Endpoint } from '../src/endpoint/endpoint.js';
import { releasePath } from '../src/endpoint/path.js';
import { buySavedPath } from './helpers/lab-path.js';
import { adminGet, metricSum, parseMetrics } from '../src/admin/client.js';

// Issue 13: the live dashboard, tested in a real browser (Debian's Chromium, provisioned by npm
// test, driven by playwright-core). Against a running lab with a customer's path and known
// traffic: the page loads without console errors and shows every router; its numbers are the
// routers' own /metrics; `arrow lab fail` puts the killed router on the timeline within 2 s, and
// its neighbours' dead verdicts follow. ARROW_SCREENSHOTS=DIR keeps the main views (docs/).

const run = promisify(execFile);
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SHOTS = process.env.ARROW_SCREENSHOTS;

/** Starts `arrow dashboard ARGS` and returns it with the URL it prints. */
async function startDashboard(args: string[]): Promise<{ proc: ChildProcess; url: string }> {
  const proc = spawn(process.execPath, [CLI_PATH, 'dashboard', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`arrow dashboard printed no URL in 20 s: ${out}${err}`)),
      20_000,
    );
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /dashboard: (http:\/\/\S+?)\/? /.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`arrow dashboard exited (${code}): ${out}${err}`));
    });
  });
  return { proc, url };
}

/** The numbers a router's row shows, from its cells' data-value. */
async function rowValues(page: Page, router: string): Promise<Record<string, number>> {
  return page.$$eval(`tr[data-router="${router}"] td[data-field]`, (cells) =>
    Object.fromEntries(
      cells
        .filter((c) => c.getAttribute('data-value') !== null)
        .map((c) => [c.getAttribute('data-field')!, Number(c.getAttribute('data-value'))]),
    ),
  );
}

test('arrow dashboard in Chromium: every router, numbers equal to /metrics, a killed router on the timeline within 2 s', async (t) => {
  const topology = defaultTopology();
  topology.name = 'dashlab';
  const lab = await Lab.start(topology, { state: true });
  // `arrow lab fail` reaches this lab as it reaches `arrow lab up`: its control socket.
  lab.control = join(runDir(), 'dashlab.sock');
  const control = await serveControl(lab, lab.control);
  lab.saveState();
  const dir = mkdtempSync(join(tmpdir(), 'arrow-dashboard-'));
  let dashboard: ChildProcess | undefined;
  let browser: Browser | undefined;
  const endpoint = await Endpoint.open('127.0.0.1:0');
  try {
    // A customer's path through all three ISPs, saved as `arrow connect --save` saves one.
    const { path, file: pathFile } = await buySavedPath(lab, endpoint, dir);
    const d = await startDashboard(['--lab', 'dashlab', '--path', pathFile, '--listen', '127.0.0.1:0']);
    dashboard = d.proc;

    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    const page = await browser.newPage({ viewport: { width: 1500, height: 1000 } });
    const errors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${d.url}/`);

    // Every router of the lab has its row and its node on the map, and is up.
    for (const r of lab.routers) {
      await page.waitForSelector(`tr[data-router="${r.name}"]`, { timeout: 15_000 });
      assert.equal(await page.locator(`[data-node="${r.name}"]`).count(), 1, `${r.name} on the map`);
    }
    const allUp = `[...document.querySelectorAll('tr[data-router] [data-field="state"]')].filter((e) => e.textContent === 'up').length === ${lab.routers.length}`;
    await page.waitForFunction(allUp, undefined, { timeout: 15_000 });

    // Known traffic through the path: 200 echoes, each forwarded by every router on the way.
    await sleep(300); // the first ingress router learns the circuit from its store
    endpoint.useUnprotected(path);
    const echo = await runEchoes(endpoint, 200, 2);
    assert.ok(echo.received >= 190, `echoes came back: ${echo.received}/200`);

    // The page's numbers are the routers' /metrics: once the counters settle, they agree exactly.
    const carrying = lab.routers.find((r) => r.address === path.forward[0]!.circuit.ingress[0])!;
    const agree = async (): Promise<string | undefined> => {
      for (const r of lab.routers) {
        const m = parseMetrics(
          await adminGet(
            { name: r.name, url: lab.adminTargets().find((t) => t.name === r.name)!.url },
            '/metrics',
          ),
        );
        const want = {
          forwarded: metricSum(m, 'arrow_router_forwarded_packets_total'),
          dropped: metricSum(m, 'arrow_router_dropped_packets_total'),
          circuits: metricSum(m, 'arrow_router_circuits'),
        };
        const got = await rowValues(page, r.name);
        for (const [k, v] of Object.entries(want))
          if (got[k] !== v) return `${r.name} ${k}: page ${got[k]}, /metrics ${v}`;
      }
      return undefined;
    };
    let why: string | undefined = 'not compared';
    for (const deadline = Date.now() + 10_000; why !== undefined && Date.now() < deadline;) {
      await sleep(500);
      why = await agree();
    }
    assert.equal(why, undefined, why);
    const ingress = await rowValues(page, carrying.name);
    assert.ok(
      ingress.forwarded! >= echo.sent,
      `${carrying.name} forwarded ${ingress.forwarded} of ${echo.sent} echoes`,
    );

    // The customer's view: every circuit of the path, and a traceroute hop by hop.
    assert.equal(
      await page.locator('[data-testid="customer-circuits"] tr[data-circuit]').count(),
      path.forward.length + path.reverse.length,
    );
    await page.waitForSelector('[data-testid="traceroute"] tbody tr', { timeout: 10_000 });
    if (SHOTS) {
      mkdirSync(SHOTS, { recursive: true });
      await page.screenshot({ path: join(SHOTS, 'dashboard.png'), fullPage: true });
    }

    // Kill the middle ISP's router that carries the path, with the command an operator uses.
    const victim = lab.routers.find((r) => r.address === path.forward[1]!.circuit.ingress[0])!;
    // Asynchronously: this process serves the lab's control socket the command talks to.
    const fail = await run(
      process.execPath,
      [CLI_PATH, 'lab', 'fail', victim.name, '--kind', 'kill', '--lab', 'dashlab'],
      {
        timeout: 10_000,
      },
    );
    const failedAt = Date.now();
    assert.match(fail.stdout, /kill/);
    await page.waitForSelector(`[data-event-kind="router-down"][data-subject="${victim.name}"]`, {
      timeout: 2000,
    });
    const shownMs = Date.now() - failedAt;
    assert.ok(shownMs <= 2000, `on the timeline ${shownMs} ms after arrow lab fail`);
    t.diagnostic(`${victim.name} on the page's timeline ${shownMs} ms after arrow lab fail returned`);
    assert.equal(await page.textContent(`tr[data-router="${victim.name}"] [data-field="state"]`), 'dead');
    // Its neighbours' liveness declares it dead and moves their hops: those verdicts follow.
    await page.waitForSelector(`[data-event-kind="verdict-dead"][data-object="${victim.name}"]`, {
      timeout: 5000,
    });
    if (SHOTS) await page.screenshot({ path: join(SHOTS, 'dashboard-failover.png'), fullPage: true });

    // The snapshot the page renders is served as JSON under its schema, and documented.
    const openapi = (await (await fetch(`${d.url}/openapi.json`)).json()) as {
      paths: Record<string, unknown>;
    };
    assert.ok(
      openapi.paths['/api/snapshot'] && openapi.paths['/api/events'],
      Object.keys(openapi.paths).join(' '),
    );
    assert.deepEqual(errors, [], 'no console errors');
    await releasePath(path);
  } finally {
    await browser?.close();
    dashboard?.kill('SIGTERM');
    await endpoint.close();
    control.close();
    await lab.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('arrow dashboard: bad arguments are clear errors', () => {
  const run = (args: string[]) =>
    spawnSync(process.execPath, [CLI_PATH, 'dashboard', ...args], { encoding: 'utf8', timeout: 20_000 });
  const none = run([]);
  assert.notEqual(none.status, 0);
  assert.match(none.stderr, /give --lab NAME or one or more --admin URL/);
  const nolab = run(['--lab', 'nosuchlab']);
  assert.notEqual(nolab.status, 0);
  assert.match(nolab.stderr, /no running lab named nosuchlab/);
  const badPath = run(['--admin', 'http://127.0.0.1:1', '--path', '/nonexistent/path.json']);
  assert.notEqual(badPath.status, 0);
  assert.match(badPath.stderr, /path\.json/);
  const badListen = run(['--admin', 'http://127.0.0.1:1', '--listen', 'nowhere']);
  assert.notEqual(badListen.status, 0);
  assert.match(badListen.stderr, /nowhere/);
});
