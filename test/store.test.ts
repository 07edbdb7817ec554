import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryStore } from '../src/store/memory.js';
import { SqliteStore } from '../src/store/sqlite.js';
import type { ChangeEvent, Circuit } from '../src/store/circuit.js';
import { circuitInput, collect, storeConformance } from './helpers/store-conformance.js';

const dir = mkdtempSync(join(tmpdir(), 'arrow-store-test-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
let n = 0;

storeConformance('memory', async () => new MemoryStore());
storeConformance('sqlite', async () => new SqliteStore(join(dir, `conf-${n++}.db`)));

test('sqlite: a second connection (another process would be the same) sees commits through watch', async () => {
  const path = join(dir, 'shared.db');
  const writer = new SqliteStore(path);
  const reader = new SqliteStore(path, { pollMs: 2 });
  try {
    const snap = await reader.snapshot();
    const events = collect(reader, snap.revision, 2);
    const a = await writer.create(circuitInput());
    await writer.delete(a.auth);
    const got = await events;
    assert.deepEqual(
      got.map((e) => e.type),
      ['put', 'delete'],
    );
  } finally {
    await writer.close();
    await reader.close();
  }
});

test('sqlite: a repair of 1000 circuits reaches another connection whole and in order, a chunk per turn', async () => {
  const path = join(dir, 'big-repair.db');
  const writer = new SqliteStore(path);
  const reader = new SqliteStore(path, { pollMs: 2 });
  try {
    const created: Circuit[] = [];
    for (let i = 0; i < 1000; i++) created.push(await writer.create(circuitInput()));
    const snap = await reader.snapshot();
    // Count turns of the event loop, and note the turn in which each change is delivered.
    let turn = 0;
    let spinning = true;
    const spin = (): void => {
      turn++;
      if (spinning) setImmediate(spin);
    };
    setImmediate(spin);
    const deliveredAt: number[] = [];
    const got = await new Promise<ChangeEvent[]>((resolve, reject) => {
      const events: ChangeEvent[] = [];
      const timer = setTimeout(() => reject(new Error(`got ${events.length} of 1000`)), 10_000);
      const w = reader.watch(snap.revision, (e) => {
        events.push(e);
        deliveredAt.push(turn);
        if (events.length === 1000) {
          clearTimeout(timer);
          w.close();
          resolve(events);
        }
      });
      void writer.setActive(created.map((c) => ({ auth: c.auth, kind: 'next' as const, active: 1 })));
    });
    spinning = false;
    const revisions = got.map((e) => e.revision);
    assert.deepEqual(
      revisions,
      [...revisions].sort((a, b) => a - b),
      'in revision order',
    );
    assert.deepEqual(
      got.map((e) => (e.type === 'put' ? e.circuit.auth : '')),
      created.map((c) => c.auth),
    );
    assert.ok(got.every((e) => e.type === 'put' && e.circuit.active?.next === 1));
    // Not all in one synchronous burst: the loop ran between chunks (a router's packets get through).
    const turns = new Set(deliveredAt).size;
    assert.ok(turns >= 2, `1000 changes were delivered in ${turns} turn(s) of the event loop`);
  } finally {
    await writer.close();
    await reader.close();
  }
});

test('sqlite: a watcher behind a compaction gets a full resync, not a gap', async () => {
  const path = join(dir, 'compact.db');
  const s = new SqliteStore(path, { retainChanges: 0 });
  try {
    const keep = await s.create(circuitInput());
    const gone = await s.create(circuitInput());
    await s.delete(gone.auth);
    s.compact();
    const [ev] = await collect(s, 0, 1);
    assert.equal(ev!.type, 'resync');
    assert.ok(ev!.type === 'resync' && ev!.circuits.length === 1 && ev!.circuits[0]!.auth === keep.auth);
  } finally {
    await s.close();
  }
});

test('sqlite: a process killed in the middle of a create leaves no half-made circuit', () => {
  const path = join(dir, 'crash.db');
  // A real process opens the store and SIGKILLs itself inside the create transaction,
  // after the change-log row and before the circuit row.
  const script = `
    import { SqliteStore } from ${JSON.stringify(new URL('../src/store/sqlite.js', import.meta.url).href)};
    const s = new SqliteStore(${JSON.stringify(path)}, { faultInsideCreate: () => process.kill(process.pid, 'SIGKILL') });
    await s.create(${JSON.stringify(circuitInput())});
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.signal, 'SIGKILL', r.stderr);
  const s = new SqliteStore(path);
  return (async () => {
    try {
      assert.deepEqual(await s.list(), []);
      const snap = await s.snapshot();
      assert.equal(snap.revision, 0, 'the change-log row was rolled back too');
      const ok = await s.create(circuitInput());
      assert.equal(ok.revision, 1);
    } finally {
      await s.close();
    }
  })();
});
