import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { openStoreSync, STORE_THREAD_STALL_MS } from '../src/router/store-sync.js';
import type { ChangeEvent } from '../src/store/circuit.js';
import { SqliteStore } from '../src/store/sqlite.js';
import { createLogger } from '../src/util/log.js';
import { circuitInput } from './helpers/store-conformance.js';

// A router's store thread that stops answering (clean runs caught one stuck for 20 s while loading
// modules) is replaced, crash-only: the forwarding thread pings it every second, and after
// STORE_THREAD_STALL_MS of silence starts a new one, whose snapshot replaces the table.

async function until<T>(what: string, ms: number, fn: () => T | undefined): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) assert.fail(`${what} within ${ms} ms`);
    await sleep(20);
  }
}

test('a store thread that stops answering is replaced, and the table reloads from the new snapshot', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'arrow-store-thread-'));
  const path = join(dir, 'isp.db');
  const writer = new SqliteStore(path);
  // The first thread hangs right after its snapshot, longer than the stall limit.
  const sync = openStoreSync(
    {
      store: { kind: 'sqlite', path },
      isp: 'alpha',
      pollMs: 5,
      thread: true,
      faultHangMs: STORE_THREAD_STALL_MS + 4000,
    },
    createLogger('test', 'silent'),
  );
  try {
    const snap = await sync.start();
    assert.deepEqual(snap.circuits, []);
    const events: ChangeEvent[] = [];
    sync.follow((batch) => events.push(...batch));
    const a = await writer.create(circuitInput());
    const resync = await until('a resync from the replacement thread', STORE_THREAD_STALL_MS + 6000, () =>
      events.find((e) => e.type === 'resync' && e.circuits.some((c) => c.auth === a.auth)),
    );
    assert.equal(resync.type, 'resync');
    assert.equal(sync.restarts, 1);
    // The replacement follows the store from there on.
    const b = await writer.create(circuitInput());
    await until('the next change as a put', 5000, () =>
      events.find((e) => e.type === 'put' && e.circuit.auth === b.auth),
    );
  } finally {
    await sync.close();
    await writer.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
