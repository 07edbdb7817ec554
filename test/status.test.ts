import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { Lab } from '../src/lab/lab.js';
import { CLI_PATH } from '../src/lab/process.js';
import { defaultTopology } from '../src/lab/topology.js';
import type { ComponentStatus } from '../src/cli/status.js';

// Issue 13: `arrow status --lab NAME` reads every daemon's admin /status. Against a running
// loopback lab: every router and portal answers with its data path and circuits; a killed router
// is shown as not answering and the command exits 1; bad arguments are clear errors.

function status(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI_PATH, 'status', ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('arrow status --lab: every router and portal of a running lab from its admin API; a killed router does not answer and the exit code says so', async () => {
  const topology = defaultTopology();
  topology.name = 'statuslab';
  const lab = await Lab.start(topology, { state: true });
  try {
    // A router's admin API comes up in the background after it is ready: give them a moment.
    let ok = status(['--lab', 'statuslab', '--json']);
    for (let waited = 0; ok.code !== 0 && waited < 20_000; waited += 500) {
      await sleep(500);
      ok = status(['--lab', 'statuslab', '--json']);
    }
    assert.equal(ok.code, 0, ok.stderr + ok.stdout);
    const rows = JSON.parse(ok.stdout) as ComponentStatus[];
    for (const r of lab.routers) {
      const row = rows.find((x) => x.name === r.name);
      assert.ok(row?.status, `${r.name}: ${JSON.stringify(row)}`);
      assert.equal(row.status.service, 'router');
      const d = row.status.detail as { dataplane: { mode: string }; circuits: number; pop: string };
      assert.equal(d.pop, r.pop);
      assert.equal(d.dataplane.mode, 'node', 'a loopback lab runs the Node path');
      assert.equal(typeof d.circuits, 'number');
    }
    for (const isp of topology.isps)
      assert.equal(rows.find((x) => x.name === `portal-${isp.name}`)?.status?.service, 'portal');

    const table = status(['--lab', 'statuslab']);
    for (const r of lab.routers) assert.match(table.stdout, new RegExp(`^${r.name}\\s+router\\s`, 'm'));

    const victim = lab.routers[0]!.name;
    await lab.fail(victim, 'kill');
    const down = status(['--lab', 'statuslab', '--json']);
    assert.equal(down.code, 1, 'a component not answering makes the exit code 1');
    const gone = (JSON.parse(down.stdout) as ComponentStatus[]).find((x) => x.name === victim);
    assert.ok(gone?.error && !gone.status, JSON.stringify(gone));
    assert.match(status(['--lab', 'statuslab']).stdout, new RegExp(`^${victim}\\s+-\\s+NO ANSWER`, 'm'));
  } finally {
    await lab.stop();
  }
  const none = status(['--lab', 'nosuchlab']);
  assert.notEqual(none.code, 0);
  assert.match(none.stderr, /no running lab named nosuchlab/);
  const bad = status(['--admin', 'not-a-url']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--admin not-a-url: expected an admin API base URL/);
});
