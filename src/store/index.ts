export * from './circuit.js';
export * from './store.js';
export { MemoryStore } from './memory.js';
export { SqliteStore, type SqliteStoreOptions } from './sqlite.js';
export { openStore, type StoreConfig } from './open.js';
export { EtcdStore, type EtcdStoreOptions } from './etcd.js';
