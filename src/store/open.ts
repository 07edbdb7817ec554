import type { CircuitStore } from './store.js';
import type { StoreConfig } from './config.js';
import { MemoryStore } from './memory.js';
import { SqliteStore, type SqliteStoreOptions } from './sqlite.js';

export type { StoreConfig };

/** Opens the store a config names. `isp` namespaces etcd keys (`/arrow/<isp>/`). */
export async function openStore(
  config: StoreConfig,
  opts: SqliteStoreOptions & { isp: string },
): Promise<CircuitStore> {
  switch (config.kind) {
    case 'sqlite':
      return new SqliteStore(config.path, opts);
    case 'etcd': {
      // Loaded only for etcd: its gRPC stack is most of what a process loads, and a router's
      // store thread on SQLite has no use for it.
      const { EtcdStore } = await import('./etcd.js');
      return new EtcdStore({
        endpoints: config.endpoints,
        prefix: config.prefix ?? `/arrow/${opts.isp}/`,
        ...(config.callTimeoutMs ? { callTimeoutMs: config.callTimeoutMs } : {}),
      });
    }
    case 'memory':
      return new MemoryStore();
  }
}
