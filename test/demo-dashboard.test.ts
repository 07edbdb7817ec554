import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI_PATH } from '../src/lab/process.js';
import type { DashboardSnapshotT } from '../src/api/dashboard.js';

// Issue 13: `npm start` (arrow demo, until Ctrl-C) prints the dashboard's URL, and the dashboard
// shows the demo's failover: the killed router down, its neighbours' dead verdicts and the outage
// the customer saw. Ctrl-C stops the demo and its dashboard.

test('arrow demo serves the dashboard, whose timeline shows the demo failover; Ctrl-C stops both', async () => {
  const demo = spawn(process.execPath, [CLI_PATH, 'demo', '--count', '20', '--dashboard', '127.0.0.1:0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  demo.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  demo.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => demo.once('exit', (code) => resolve(code)));
  try {
    for (const deadline = Date.now() + 120_000; !out.includes('Running:');) {
      assert.ok(Date.now() < deadline, `the demo did not get to its running loop in 120 s:\n${out}\n${err}`);
      assert.equal(demo.exitCode, null, `the demo exited:\n${out}\n${err}`);
      await sleep(200);
    }
    const url = /Dashboard: (http:\/\/\S+?)\/?$/m.exec(out)?.[1];
    assert.ok(url, `the demo prints the dashboard's URL:\n${out}`);
    const killed = /killing (\S+) \(/.exec(out)?.[1];
    assert.ok(killed, out);
    let snap: DashboardSnapshotT | undefined;
    const shows = (s: DashboardSnapshotT): boolean =>
      s.timeline.some((e) => e.kind === 'router-down' && e.subject === killed) &&
      s.timeline.some((e) => e.kind === 'verdict-dead' && e.object === killed && (e.hopsMoved ?? 0) > 0) &&
      s.timeline.some((e) => e.kind === 'customer' && e.outageMs !== undefined);
    for (const deadline = Date.now() + 10_000; !(snap && shows(snap)) && Date.now() < deadline;) {
      snap = (await (await fetch(`${url}/api/snapshot`)).json()) as DashboardSnapshotT;
      if (!shows(snap)) await sleep(500);
    }
    assert.ok(snap && shows(snap), JSON.stringify(snap?.timeline, null, 1));
    assert.equal(snap.routers.find((r) => r.name === killed)?.state, 'dead');
    // The customer's view: the bought circuits and the atlas's candidates with the rejected ISP.
    assert.ok(snap.customer && snap.customer.circuits.length >= 2, JSON.stringify(snap.customer));
    assert.ok(snap.customer.atlas?.candidates.some((c) => c.rejected !== null));
    demo.kill('SIGINT');
    assert.equal(await exited, 0, `${out}\n${err}`);
    await assert.rejects(fetch(`${url}/api/snapshot`), 'the dashboard stops with the demo');
  } finally {
    demo.kill('SIGKILL');
  }
});
