import Database from 'better-sqlite3';
import type { ChangeEvent, Circuit, CircuitInput, CircuitPatch, RouterStats, Snapshot } from './circuit.js';
import {
  BackgroundErrors,
  type ActiveChange,
  type Admission,
  CapacityError,
  assertValidRecord,
  type CircuitStore,
  ConflictError,
  type IdempotencyKey,
  IdempotencyMismatchError,
  NotFoundError,
  UnavailableError,
  type Registration,
  type RouterRegistration,
  type Watcher,
} from './store.js';

export interface SqliteStoreOptions {
  /** How long a writer waits for another process's write lock. Routers use 0: they never block the loop. */
  busyTimeoutMs?: number;
  /** How often watchers look for commits by other processes (`PRAGMA data_version`). */
  pollMs?: number;
  /** Changes kept for watchers that fall behind; older ones force a resync, like an etcd compaction. */
  retainChanges?: number;
  /** Test hook, called inside the create transaction between its writes, to prove crash atomicity. */
  faultInsideCreate?: () => void;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS circuits (
  auth TEXT PRIMARY KEY,
  owner TEXT NOT NULL,
  ingress_pop TEXT NOT NULL,
  egress_pop TEXT NOT NULL,
  bandwidth_mbps REAL NOT NULL,
  revision INTEGER NOT NULL,
  data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS circuits_owner ON circuits(owner);
CREATE INDEX IF NOT EXISTS circuits_pair ON circuits(ingress_pop, egress_pop);
CREATE TABLE IF NOT EXISTS changes (
  revision INTEGER PRIMARY KEY AUTOINCREMENT,
  auth TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('put', 'delete')),
  data TEXT
);
CREATE TABLE IF NOT EXISTS idempotency (
  owner TEXT NOT NULL,
  key TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  auth TEXT NOT NULL,
  PRIMARY KEY (owner, key)
);
CREATE INDEX IF NOT EXISTS idempotency_auth ON idempotency(auth);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS router_stats (router TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS routers (
  name TEXT PRIMARY KEY,
  pop TEXT NOT NULL,
  address TEXT NOT NULL,
  expires_at INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('compacted', 0);
`;

interface ChangeRow {
  revision: number;
  auth: string;
  kind: 'put' | 'delete';
  data: string | null;
}

/** How often a watcher reads the change log even when `data_version` says nothing changed. */
const FULL_LOOK_MS = 1000;
/** How long a watch poll may keep finding the database busy before it is reported. */
const BUSY_REPORT_MS = 2000;

/** Changes a watcher applies per turn of the event loop; the rest follow on the next turns. */
const WATCH_CHUNK = 256;

/**
 * The embedded default store: one SQLite file per ISP, shared by its portal and
 * routers on one host. WAL mode lets routers read while the portal writes. Every
 * mutation and its change-log row commit in one transaction, so a crash leaves a
 * whole circuit or none, and watchers replay the log by revision.
 */
export class SqliteStore implements CircuitStore {
  readonly kind = 'sqlite';
  readonly background = new BackgroundErrors();
  private readonly db: Database.Database;
  private readonly pollMs: number;
  private readonly retain: number;
  private readonly fault: (() => void) | undefined;
  /** Set after our own writes: data_version only moves for other connections' commits. */
  private localWrites = 0;
  private readonly watchers = new Set<{ close(): void }>();
  private readonly q;

  constructor(
    readonly path: string,
    opts: SqliteStoreOptions = {},
  ) {
    this.db = new Database(path);
    this.db.pragma(`busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs ?? 5000))}`);
    this.db.pragma('journal_mode = WAL');
    // WAL with synchronous=NORMAL is durable against process crashes (our failure model); FULL adds power-loss safety.
    this.db.pragma('synchronous = NORMAL');
    this.withBusyRetry(() => this.db.exec(SCHEMA));
    this.pollMs = opts.pollMs ?? 5;
    this.retain = opts.retainChanges ?? 100_000;
    this.fault = opts.faultInsideCreate;
    this.q = {
      get: this.db.prepare<[string], { data: string }>('SELECT data FROM circuits WHERE auth = ?'),
      all: this.db.prepare<[], { data: string }>('SELECT data FROM circuits ORDER BY auth'),
      byOwner: this.db.prepare<[string], { data: string }>(
        'SELECT data FROM circuits WHERE owner = ? ORDER BY auth',
      ),
      sold: this.db.prepare<[string, string], { sold: number | null }>(
        'SELECT SUM(bandwidth_mbps) AS sold FROM circuits WHERE ingress_pop = ? AND egress_pop = ?',
      ),
      insertCircuit: this.db.prepare(
        'INSERT INTO circuits (auth, owner, ingress_pop, egress_pop, bandwidth_mbps, revision, data) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      updateCircuit: this.db.prepare('UPDATE circuits SET revision = ?, data = ? WHERE auth = ?'),
      deleteCircuit: this.db.prepare('DELETE FROM circuits WHERE auth = ?'),
      getIdempotency: this.db.prepare<[string, string], { fingerprint: string; auth: string }>(
        'SELECT fingerprint, auth FROM idempotency WHERE owner = ? AND key = ?',
      ),
      putIdempotency: this.db.prepare(
        'INSERT OR REPLACE INTO idempotency (owner, key, fingerprint, auth) VALUES (?, ?, ?, ?)',
      ),
      deleteIdempotency: this.db.prepare('DELETE FROM idempotency WHERE auth = ?'),
      insertChange: this.db.prepare('INSERT INTO changes (auth, kind, data) VALUES (?, ?, ?)'),
      setChangeData: this.db.prepare('UPDATE changes SET data = ? WHERE revision = ?'),
      revision: this.db.prepare<[], { seq: number }>(
        "SELECT seq FROM sqlite_sequence WHERE name = 'changes'",
      ),
      compacted: this.db.prepare<[], { value: number }>("SELECT value FROM meta WHERE key = 'compacted'"),
      changesAfter: this.db.prepare<[number], ChangeRow>(
        `SELECT revision, auth, kind, data FROM changes WHERE revision > ? ORDER BY revision LIMIT ${WATCH_CHUNK}`,
      ),
      prune: this.db.prepare('DELETE FROM changes WHERE revision <= ?'),
      setCompacted: this.db.prepare("UPDATE meta SET value = MAX(value, ?) WHERE key = 'compacted'"),
      putStats: this.db.prepare('INSERT OR REPLACE INTO router_stats (router, data) VALUES (?, ?)'),
      allStats: this.db.prepare<[], { data: string }>('SELECT data FROM router_stats ORDER BY router'),
      putRouter: this.db.prepare(
        'INSERT OR REPLACE INTO routers (name, pop, address, expires_at) VALUES (?, ?, ?, ?)',
      ),
      deleteRouter: this.db.prepare('DELETE FROM routers WHERE name = ?'),
      liveRouters: this.db.prepare<[number], RouterRegistration>(
        'SELECT name, pop, address FROM routers WHERE expires_at > ? ORDER BY name',
      ),
    };
  }

  async get(auth: string): Promise<Circuit | undefined> {
    const row = this.q.get.get(auth);
    return row ? (JSON.parse(row.data) as Circuit) : undefined;
  }

  async list(query: { owner?: string } = {}): Promise<Circuit[]> {
    const rows = query.owner ? this.q.byOwner.all(query.owner) : this.q.all.all();
    return rows.map((r) => JSON.parse(r.data) as Circuit);
  }

  async snapshot(): Promise<Snapshot> {
    return this.readSnapshot();
  }

  private readSnapshot(): Snapshot {
    // One read transaction: the circuits and the revision are from the same instant.
    return this.db.transaction(() => ({
      revision: this.currentRevision(),
      circuits: this.q.all.all().flatMap((r) => this.decodeRecord(r.data)),
    }))();
  }

  private currentRevision(): number {
    return this.q.revision.get()?.seq ?? 0;
  }

  async create(input: CircuitInput, admission?: Admission, idem?: IdempotencyKey): Promise<Circuit> {
    assertValidRecord(input);
    const txn = this.db.transaction((): Circuit => {
      // Inside the write transaction: two portals retrying the same key at once serialise here.
      const seen = idem ? this.q.getIdempotency.get(input.owner, idem.key) : undefined;
      if (seen) {
        if (seen.fingerprint !== idem!.fingerprint) throw new IdempotencyMismatchError(idem!.key);
        const row = this.q.get.get(seen.auth);
        if (row) return JSON.parse(row.data) as Circuit;
      }
      if (this.q.get.get(input.auth)) throw new ConflictError(`circuit ${input.auth} already exists`);
      if (admission) {
        const sold = this.q.sold.get(input.ingressPop, input.egressPop)?.sold ?? 0;
        if (sold + input.bandwidthMbps > admission.capacityMbps)
          throw new CapacityError(sold, admission.capacityMbps, input.bandwidthMbps);
      }
      const revision = Number(this.q.insertChange.run(input.auth, 'put', null).lastInsertRowid);
      const circuit: Circuit = {
        ...input,
        createdAt: new Date().toISOString(),
        ...(idem ? { idempotencyKey: idem.key } : {}),
        revision,
      };
      const data = JSON.stringify(circuit);
      this.fault?.();
      if (idem) this.q.putIdempotency.run(input.owner, idem.key, idem.fingerprint, input.auth);
      this.q.insertCircuit.run(
        input.auth,
        input.owner,
        input.ingressPop,
        input.egressPop,
        input.bandwidthMbps,
        revision,
        data,
      );
      this.q.setChangeData.run(data, revision);
      return circuit;
    });
    return this.write(() => txn.immediate());
  }

  async update(auth: string, patch: CircuitPatch, opts: { expectRevision?: number } = {}): Promise<Circuit> {
    const txn = this.db.transaction((): Circuit => {
      const row = this.q.get.get(auth);
      if (!row) throw new NotFoundError(`no circuit ${auth}`);
      const cur = JSON.parse(row.data) as Circuit;
      if (opts.expectRevision !== undefined && cur.revision !== opts.expectRevision)
        throw new ConflictError(
          `circuit ${auth} changed (revision ${cur.revision}, expected ${opts.expectRevision})`,
        );
      const revision = Number(this.q.insertChange.run(auth, 'put', null).lastInsertRowid);
      if (patch.action || patch.internalRouters) assertValidRecord({ ...cur, ...patch });
      const next: Circuit = { ...cur, ...patch, revision };
      const data = JSON.stringify(next);
      this.q.updateCircuit.run(revision, data, auth);
      this.q.setChangeData.run(data, revision);
      return next;
    });
    return this.write(() => txn.immediate());
  }

  async setActive(changes: ActiveChange[]): Promise<void> {
    // One transaction per call: siblings see the whole batch at once (Failover.record sends chunks).
    const txn = this.db.transaction(() => {
      for (const c of changes) {
        const row = this.q.get.get(c.auth);
        if (!row) continue;
        const cur = JSON.parse(row.data) as Circuit;
        if (cur.active?.[c.kind] === c.active) continue;
        const revision = Number(this.q.insertChange.run(c.auth, 'put', null).lastInsertRowid);
        const data = JSON.stringify({ ...cur, active: { ...cur.active, [c.kind]: c.active }, revision });
        this.q.updateCircuit.run(revision, data, c.auth);
        this.q.setChangeData.run(data, revision);
      }
    });
    this.write(() => txn.immediate());
  }

  async delete(auth: string, opts: { expectRevision?: number } = {}): Promise<Circuit | undefined> {
    const txn = this.db.transaction((): Circuit | undefined => {
      const row = this.q.get.get(auth);
      if (!row) return undefined;
      const cur = JSON.parse(row.data) as Circuit;
      if (opts.expectRevision !== undefined && cur.revision !== opts.expectRevision)
        throw new ConflictError(
          `circuit ${auth} changed (revision ${cur.revision}, expected ${opts.expectRevision})`,
        );
      this.q.deleteCircuit.run(auth);
      this.q.deleteIdempotency.run(auth);
      this.q.insertChange.run(auth, 'delete', null);
      return cur;
    });
    return this.write(() => txn.immediate());
  }

  /** Forgets change history up to `revision` (default: all but the retained window). */
  compact(revision?: number): void {
    const upTo = revision ?? this.currentRevision() - this.retain;
    if (upTo <= 0) return;
    this.db
      .transaction(() => {
        this.q.prune.run(upTo);
        this.q.setCompacted.run(upTo);
      })
      .immediate();
  }

  watch(afterRevision: number, listen: (event: ChangeEvent) => void): Watcher {
    let last = afterRevision;
    let seenVersion = -1;
    let seenLocal = -1;
    let closed = false;
    // A full look once a second whatever data_version says: a commit it failed to show would
    // otherwise leave the table behind the store for good, silently. Finding one is reported.
    let fullLookAt = Date.now() + FULL_LOOK_MS;
    let busySince = 0;
    const onEvent = (e: ChangeEvent): void => this.background.deliver(listen, e);
    const poll = (): void => {
      if (closed) return;
      try {
        const version = this.db.pragma('data_version', { simple: true }) as number;
        const unchanged = version === seenVersion && seenLocal === this.localWrites;
        const now = Date.now();
        if (unchanged && now < fullLookAt) return;
        fullLookAt = now + FULL_LOOK_MS;
        seenVersion = version;
        seenLocal = this.localWrites;
        const compacted = this.q.compacted.get()?.value ?? 0;
        if (last < compacted) {
          const snap = this.readSnapshot();
          last = snap.revision;
          onEvent({ type: 'resync', revision: snap.revision, circuits: snap.circuits });
        }
        const rows = this.q.changesAfter.all(last);
        busySince = 0;
        if (unchanged && rows.length > 0)
          this.background.add(
            new Error(`changes after revision ${last} were committed but data_version did not move`),
            'watch full look',
          );
        for (const row of rows) {
          last = row.revision;
          if (row.kind === 'delete') onEvent({ type: 'delete', revision: row.revision, auth: row.auth });
          else if (row.data !== null) {
            const circuit = this.decodeChange(row);
            if (circuit) onEvent({ type: 'put', revision: row.revision, circuit });
          }
        }
        if (rows.length === WATCH_CHUNK) {
          // More waiting (a big repair or a burst of creates): apply the rest a chunk at a time,
          // letting the router's packet loop run in between rather than stalling it for the lot.
          seenVersion = -1;
          setImmediate(poll);
        }
      } catch (err) {
        // Busy or locked is transient: the next tick retries, and forwarding never waits on it.
        // Anything else is counted and reported too, then retried the same way.
        seenVersion = -1;
        if (!isBusy(err)) this.background.add(err, 'watch poll');
        else if (busySince === 0) busySince = Date.now();
        else if (Date.now() - busySince > BUSY_REPORT_MS) {
          // Busy for this long is no longer transient: the table is not following the store.
          this.background.add(err, `watch poll busy for ${Date.now() - busySince} ms`);
          busySince = Date.now();
        }
      }
    };
    const timer = setInterval(poll, this.pollMs);
    timer.unref();
    setImmediate(poll);
    const w = {
      close: () => {
        closed = true;
        clearInterval(timer);
        this.watchers.delete(w);
      },
    };
    this.watchers.add(w);
    return w;
  }

  registerRouter(router: RouterRegistration, ttlMs: number): Registration {
    // A lease in SQLite: an expiry time, pushed forward well before it passes.
    const renew = (): void => {
      try {
        this.write(() => this.q.putRouter.run(router.name, router.pop, router.address, Date.now() + ttlMs));
      } catch (err) {
        // Busy: the next renewal retries, and ttl/3 leaves two more chances before expiry.
        if (!(err instanceof UnavailableError)) this.background.add(err, 'router registration');
      }
    };
    renew();
    const timer = setInterval(renew, Math.max(10, Math.floor(ttlMs / 3)));
    timer.unref();
    return {
      close: async () => {
        clearInterval(timer);
        if (this.db.open) this.write(() => this.q.deleteRouter.run(router.name));
      },
    };
  }

  async listRouters(): Promise<RouterRegistration[]> {
    return this.q.liveRouters.all(Date.now());
  }

  async putRouterStats(stats: RouterStats): Promise<void> {
    this.write(() => this.q.putStats.run(stats.router, JSON.stringify(stats)));
  }

  async listRouterStats(): Promise<RouterStats[]> {
    return this.q.allStats.all().map((r) => JSON.parse(r.data) as RouterStats);
  }

  async close(): Promise<void> {
    for (const w of [...this.watchers]) w.close();
    if (this.db.open) this.db.close();
  }

  private write<T>(fn: () => T): T {
    try {
      const result = fn();
      this.localWrites++;
      if (this.retain > 0 && this.currentRevision() % 1000 === 0) this.compact();
      return result;
    } catch (err) {
      if (isBusy(err)) throw new UnavailableError(`store busy: ${(err as Error).message}`);
      throw err;
    }
  }

  /** A stored record, or none (counted and reported) when it does not decode: one bad row must not stop a router starting. */
  private decodeRecord(data: string): Circuit[] {
    try {
      return [JSON.parse(data) as Circuit];
    } catch (err) {
      this.background.add(err, 'undecodable record');
      return [];
    }
  }

  /** A change row's record, or undefined (counted and reported) when it does not decode: one bad row must not stall the watch. */
  private decodeChange(row: ChangeRow): Circuit | undefined {
    try {
      return JSON.parse(row.data!) as Circuit;
    } catch (err) {
      this.background.add(
        new Error(`change ${row.revision} of circuit ${row.auth}: ${(err as Error).message}`),
        'undecodable change',
      );
      return undefined;
    }
  }

  private withBusyRetry(fn: () => void): void {
    // Schema creation races when many processes open a new file at once; retry briefly.
    for (let i = 0; ; i++) {
      try {
        return fn();
      } catch (err) {
        if (!isBusy(err) || i > 200) throw err;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
      }
    }
  }
}

function isBusy(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED' || code === 'SQLITE_BUSY_SNAPSHOT';
}
