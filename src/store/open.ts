import type { CircuitStore } from './store.js';
import { MemoryStore } from './memory.js';
import { SqliteStore, type SqliteStoreOptions } from './sqlite.js';

/** Store selection as written in configs: `store: {kind: sqlite, path: ...}`. */
export type StoreConfig = { kind: 'sqlite'; path: string } | { kind: 'memory' };

export async function openStore(config: StoreConfig, opts: SqliteStoreOptions = {}): Promise<CircuitStore> {
  switch (config.kind) {
    case 'sqlite':
      return new SqliteStore(config.path, opts);
    case 'memory':
      return new MemoryStore();
  }
}
