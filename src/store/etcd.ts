import {
  Etcd3,
  isRecoverableError,
  type IKeyValue,
  type Lease,
  type Namespace,
  type Watcher as EtcdWatcher,
} from 'etcd3';
import { createHash } from 'node:crypto';
import { ExponentialBackoff, handleWhen, retry, circuitBreaker, ConsecutiveBreaker, noop } from 'cockatiel';
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
  type Registration,
  type RouterRegistration,
  StoreError,
  UnavailableError,
  type Watcher,
} from './store.js';

export interface EtcdStoreOptions {
  endpoints: string[];
  /** Key prefix; one per ISP, e.g. `/arrow/alpha/`. */
  prefix: string;
  /** Deadline of every unary call. A call that misses it fails with UnavailableError. */
  callTimeoutMs?: number;
  /** Extra attempts on another member when a call fails recoverably (member down, no leader). */
  retries?: number;
}

/** Keys under the ISP's prefix. */
const K = {
  circuit: (auth: string) => `circuits/${auth}`,
  circuits: 'circuits/',
  /** Mb/s sold on a PoP pair: the admission counter, updated in the same transaction as the circuit. */
  sold: (ingress: string, egress: string) => `sold/${ingress}/${egress}`,
  stats: (router: string) => `stats/${router}`,
  statsAll: 'stats/',
  router: (name: string) => `routers/${name}`,
  /** An Idempotency-Key of an owner (hashed: keys are the customer's bytes), put with its circuit. */
  idempotency: (owner: string, key: string) =>
    `idempotency/${createHash('sha256').update(owner).update('\0').update(key).digest('hex')}`,
  routers: 'routers/',
};

/** Bounded optimistic-concurrency retries: another portal won the race on the same admission counter. */
const MAX_CAS_ATTEMPTS = 50;
/** Circuits per group-commit transaction; etcd refuses transactions of more than 128 operations by default. */
const MAX_BATCH = 100;

interface PendingCreate {
  input: CircuitInput;
  admission: Admission | undefined;
  /** The idempotency record's key and value, written in the circuit's transaction. */
  idem: { key: string; value: string; fingerprint: string; name: string } | undefined;
  stored: Omit<Circuit, 'revision'>;
  value: string;
  attempts: number;
  resolve: (c: Circuit) => void;
  reject: (err: unknown) => void;
}

interface PairQueue {
  queue: PendingCreate[];
  running: boolean;
  /** The admission counter as of our last commit, or undefined to read it again. */
  counter: { value: number; modRevision: number } | undefined;
}

/**
 * The multi-host store: an etcd cluster (Raft, so every acknowledged write is on a
 * majority). Circuits live under `<prefix>circuits/<auth>`; a circuit's revision is
 * its etcd mod_revision. Create, update and delete are transactions that compare
 * revisions (compare-and-swap), so two portals racing cannot corrupt a circuit or
 * oversell a link, and a crash mid-operation leaves nothing half-made.
 */
export class EtcdStore implements CircuitStore {
  readonly kind = 'etcd';
  readonly background = new BackgroundErrors();
  readonly client: Etcd3;
  private readonly ns: Namespace;
  private readonly watchers = new Set<{ close(): void }>();
  private readonly registrations = new Set<Registration>();
  private readonly pairs = new Map<string, PairQueue>();

  constructor(readonly opts: EtcdStoreOptions) {
    const timeout = opts.callTimeoutMs ?? 2000;
    this.client = new Etcd3({
      hosts: opts.endpoints,
      dialTimeout: timeout,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
      faultHandling: {
        // Retry on another member when one is down; a per-member breaker stops us hammering a dead one.
        global:
          opts.retries === 0
            ? noop
            : retry(handleWhen(isRecoverableError), { maxAttempts: opts.retries ?? 2 }),
        host: () =>
          circuitBreaker(handleWhen(isRecoverableError), {
            halfOpenAfter: 1000,
            breaker: new ConsecutiveBreaker(3),
          }),
        // etcd3 wants a started backoff (it calls next() itself): reconnect watches fast, at most 1 s apart.
        watchBackoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 1000 }).next(),
      },
    });
    this.ns = this.client.namespace(opts.prefix);
  }

  async get(auth: string): Promise<Circuit | undefined> {
    const res = await this.call(() => this.ns.get(K.circuit(auth)).exec());
    const kv = res.kvs[0];
    return kv ? decodeCircuit(kv) : undefined;
  }

  async list(query: { owner?: string } = {}): Promise<Circuit[]> {
    const snap = await this.snapshot();
    return query.owner ? snap.circuits.filter((c) => c.owner === query.owner) : snap.circuits;
  }

  async snapshot(): Promise<Snapshot> {
    // One range request is served at one revision: a consistent snapshot.
    const res = await this.call(() => this.ns.getAll().prefix(K.circuits).sort('Key', 'Ascend').exec());
    return {
      revision: Number(res.header.revision),
      circuits: res.kvs.flatMap((kv) => this.decodeOrReport(kv)),
    };
  }

  /**
   * Creates are group-committed per PoP pair. Each pair has one admission counter key,
   * so creates on a pair conflict with each other by construction; instead of letting
   * concurrent creates race (one compare-and-swap wins, the rest retry through Raft),
   * the ones that arrive while a transaction is in flight are admitted in order against
   * the cached counter and committed together in the next transaction. A portal under
   * load therefore does one etcd round trip per batch, not several per circuit.
   */
  async create(input: CircuitInput, admission?: Admission, idempotency?: IdempotencyKey): Promise<Circuit> {
    assertValidRecord(input);
    let idem: PendingCreate['idem'];
    if (idempotency) {
      const key = K.idempotency(input.owner, idempotency.key);
      // The common retry finds its record here; a race with another portal is settled by the
      // transaction's compare on the same key.
      const seen = await this.getRaw(key);
      if (seen) return this.replay(seen, idempotency);
      idem = {
        key,
        name: idempotency.key,
        fingerprint: idempotency.fingerprint,
        value: JSON.stringify({ fingerprint: idempotency.fingerprint, auth: input.auth }),
      };
    }
    return this.enqueueCreate(input, admission, idem);
  }

  /** What a create with an already-used key answers: the key's circuit, or a mismatch. */
  private async replay(record: IKeyValue, idem: IdempotencyKey): Promise<Circuit> {
    const r = JSON.parse(record.value.toString()) as { fingerprint: string; auth: string };
    if (r.fingerprint !== idem.fingerprint) throw new IdempotencyMismatchError(idem.key);
    const c = await this.get(r.auth);
    // Deleted in between (the delete removes the record in the same transaction): nothing to replay.
    if (!c)
      throw new ConflictError(`the circuit of Idempotency-Key ${JSON.stringify(idem.key)} was just deleted`);
    return c;
  }

  private enqueueCreate(
    input: CircuitInput,
    admission: Admission | undefined,
    idem: PendingCreate['idem'],
  ): Promise<Circuit> {
    const soldKey = K.sold(input.ingressPop, input.egressPop);
    let pair = this.pairs.get(soldKey);
    if (!pair) {
      pair = { queue: [], running: false, counter: undefined };
      this.pairs.set(soldKey, pair);
    }
    const stored = {
      ...input,
      createdAt: new Date().toISOString(),
      ...(idem ? { idempotencyKey: idem.name } : {}),
    };
    const p = new Promise<Circuit>((resolve, reject) =>
      pair.queue.push({
        input,
        admission,
        idem,
        stored,
        value: JSON.stringify(stored),
        attempts: 0,
        resolve,
        reject,
      }),
    );
    if (!pair.running) void this.drain(soldKey, pair);
    return p;
  }

  private async drain(soldKey: string, pair: PairQueue): Promise<void> {
    pair.running = true;
    try {
      while (pair.queue.length > 0) await this.commitBatch(soldKey, pair, pair.queue.splice(0, MAX_BATCH));
    } finally {
      pair.running = false;
    }
  }

  private async commitBatch(soldKey: string, pair: PairQueue, batch: PendingCreate[]): Promise<void> {
    try {
      pair.counter ??= await this.readNumber(soldKey);
    } catch (err) {
      for (const op of batch) op.reject(err);
      return;
    }
    // Admission, in arrival order, against the counter as of the last commit.
    let sold = pair.counter.value;
    const accepted: PendingCreate[] = [];
    const auths = new Set<string>();
    const idemKeys = new Set<string>();
    const later: PendingCreate[] = [];
    for (const op of batch) {
      const bw = op.input.bandwidthMbps;
      if (op.idem && idemKeys.has(op.idem.key)) {
        // The same key twice in one batch: the second goes next, and finds the first's record.
        later.push(op);
      } else if (op.admission && sold + bw > op.admission.capacityMbps) {
        op.reject(new CapacityError(sold, op.admission.capacityMbps, bw));
      } else if (auths.has(op.input.auth)) {
        op.reject(new ConflictError(`circuit ${op.input.auth} already exists`));
      } else {
        sold += bw;
        accepted.push(op);
        auths.add(op.input.auth);
        if (op.idem) idemKeys.add(op.idem.key);
      }
    }
    pair.queue.unshift(...later);
    if (accepted.length === 0) return;

    const withIdem = accepted.filter((op) => op.idem);
    let txn = this.ns.if(soldKey, 'Mod', '==', pair.counter.modRevision);
    for (const op of accepted) txn = txn.and(K.circuit(op.input.auth), 'Create', '==', 0);
    for (const op of withIdem) txn = txn.and(op.idem!.key, 'Create', '==', 0);
    txn = txn
      .then(
        ...accepted.map((op) => this.ns.put(K.circuit(op.input.auth)).value(op.value)),
        ...withIdem.map((op) => this.ns.put(op.idem!.key).value(op.idem!.value)),
        this.ns.put(soldKey).value(String(sold)),
      )
      // On failure, read what made it fail in the same round trip.
      .else(
        this.ns.get(soldKey),
        ...accepted.map((op) => this.ns.get(K.circuit(op.input.auth))),
        ...withIdem.map((op) => this.ns.get(op.idem!.key)),
      );
    let res: Awaited<ReturnType<typeof txn.commit>>;
    try {
      res = await this.call(() => txn.commit());
    } catch (err) {
      pair.counter = undefined;
      for (const op of accepted) op.reject(err);
      return;
    }
    if (res.succeeded) {
      const revision = Number(res.header.revision);
      pair.counter = { value: sold, modRevision: revision };
      for (const op of accepted) op.resolve({ ...op.stored, revision });
      return;
    }
    const counterKv = res.responses[0]?.response_range?.kvs[0];
    pair.counter = {
      value: counterKv ? Number(counterKv.value.toString()) : 0,
      modRevision: counterKv ? Number(counterKv.mod_revision) : 0,
    };
    const retry: PendingCreate[] = [];
    const idemRecords = new Map<PendingCreate, IKeyValue | undefined>(
      withIdem.map((op, i) => [op, res.responses[accepted.length + 1 + i]?.response_range?.kvs[0]]),
    );
    accepted.forEach((op, i) => {
      const existing = res.responses[i + 1]?.response_range?.kvs[0];
      const record = idemRecords.get(op);
      // A retried call whose first attempt committed finds its own write: that is success.
      if (existing && existing.value.toString() === op.value) op.resolve(decodeCircuit(existing));
      // Another portal committed the same key first: answer what it made.
      else if (record && op.idem && record.value.toString() !== op.idem.value)
        this.replay(record, { key: op.idem.name, fingerprint: op.idem.fingerprint }).then(
          op.resolve,
          op.reject,
        );
      else if (existing) op.reject(new ConflictError(`circuit ${op.input.auth} already exists`));
      else if (++op.attempts >= MAX_CAS_ATTEMPTS)
        op.reject(new UnavailableError(`admission counter ${soldKey} too contended; retry`));
      else retry.push(op);
    });
    // Another portal moved the counter: try again first, ahead of newer arrivals.
    pair.queue.unshift(...retry);
  }

  async update(auth: string, patch: CircuitPatch, opts: { expectRevision?: number } = {}): Promise<Circuit> {
    const key = K.circuit(auth);
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const kv = await this.getRaw(key);
      if (!kv) throw new NotFoundError(`no circuit ${auth}`);
      const cur = decodeCircuit(kv);
      if (opts.expectRevision !== undefined && cur.revision !== opts.expectRevision)
        throw new ConflictError(
          `circuit ${auth} changed (revision ${cur.revision}, expected ${opts.expectRevision})`,
        );
      if (patch.action || patch.internalRouters) assertValidRecord({ ...cur, ...patch });
      const { revision: _r, ...rest } = { ...cur, ...patch };
      const value = JSON.stringify(rest);
      const res = await this.call(() =>
        this.ns.if(key, 'Mod', '==', kv.mod_revision).then(this.ns.put(key).value(value)).commit(),
      );
      if (res.succeeded) return { ...rest, revision: Number(res.header.revision) };
      const now = await this.getRaw(key);
      if (now && now.value.toString() === value) return decodeCircuit(now);
      if (opts.expectRevision !== undefined)
        throw new ConflictError(`circuit ${auth} changed while being updated; read it again`);
    }
    throw new UnavailableError(`circuit ${auth} too contended; retry`);
  }

  async setActive(changes: ActiveChange[]): Promise<void> {
    // One compare-and-swap per circuit (a concurrent chain must not be lost), a few at a time.
    const queue = [...changes];
    const worker = async (): Promise<void> => {
      for (let c = queue.shift(); c; c = queue.shift()) {
        const change = c;
        for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
          const kv = await this.getRaw(K.circuit(change.auth));
          if (!kv) break;
          const cur = decodeCircuit(kv);
          if (cur.active?.[change.kind] === change.active) break;
          const { revision: _r, ...rest } = {
            ...cur,
            active: { ...cur.active, [change.kind]: change.active },
          };
          const res = await this.call(() =>
            this.ns
              .if(K.circuit(change.auth), 'Mod', '==', kv.mod_revision)
              .then(this.ns.put(K.circuit(change.auth)).value(JSON.stringify(rest)))
              .commit(),
          );
          if (res.succeeded) break;
        }
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
  }

  async delete(auth: string, opts: { expectRevision?: number } = {}): Promise<Circuit | undefined> {
    const key = K.circuit(auth);
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const kv = await this.getRaw(key);
      if (!kv) return undefined;
      const cur = decodeCircuit(kv);
      if (opts.expectRevision !== undefined && cur.revision !== opts.expectRevision)
        throw new ConflictError(
          `circuit ${auth} changed (revision ${cur.revision}, expected ${opts.expectRevision})`,
        );
      const soldKey = K.sold(cur.ingressPop, cur.egressPop);
      const sold = await this.readNumber(soldKey);
      const res = await this.call(() =>
        this.ns
          .if(key, 'Mod', '==', kv.mod_revision)
          .and(soldKey, 'Mod', '==', sold.modRevision)
          .then(
            this.ns.delete().key(key),
            this.ns.put(soldKey).value(String(Math.max(0, sold.value - cur.bandwidthMbps))),
            ...(cur.idempotencyKey !== undefined
              ? [this.ns.delete().key(K.idempotency(cur.owner, cur.idempotencyKey))]
              : []),
          )
          .commit(),
      );
      if (res.succeeded) {
        const pair = this.pairs.get(soldKey);
        if (pair) pair.counter = undefined;
        return cur;
      }
    }
    throw new UnavailableError(`circuit ${auth} too contended; retry`);
  }

  watch(afterRevision: number, listen: (event: ChangeEvent) => void): Watcher {
    let closed = false;
    let current: EtcdWatcher | undefined;
    let last = afterRevision;
    // The client calls our `data` listener from its stream handler: a throw there would crash the process.
    const onEvent = (e: ChangeEvent): void => this.background.deliver(listen, e);
    const cancel = (w: EtcdWatcher): void =>
      void w.cancel().catch((err: unknown) => this.background.add(err, 'watch cancel'));

    const start = async (from: number): Promise<void> => {
      while (!closed) {
        try {
          const w = await this.ns
            .watch()
            .prefix(K.circuits)
            .startRevision(String(from + 1))
            .create();
          if (closed) return cancel(w);
          current = w;
          w.on('data', (res) => {
            for (const ev of res.events) {
              const revision = Number(ev.kv.mod_revision);
              // Older than what we have: a replay after a reconnect. Equal is fine: one transaction
              // (a batch of creates) puts several keys at the same revision.
              if (revision < last) continue;
              last = revision;
              if (ev.type === 'Put') {
                for (const circuit of this.decodeOrReport(ev.kv)) onEvent({ type: 'put', revision, circuit });
              } else
                onEvent({ type: 'delete', revision, auth: ev.kv.key.toString().slice(K.circuits.length) });
            }
          });
          // The client resumes by itself after a disconnect, from the last revision it saw.
          // It gives up (error) when that revision was compacted away: then we resync.
          w.on('error', (err: unknown) => {
            current = undefined;
            this.background.add(err, 'watch lost; resyncing');
            if (!closed) void resync();
          });
          return;
        } catch (err) {
          this.background.add(err, 'watch create; retrying');
          await sleep(200);
        }
      }
    };

    const resync = async (): Promise<void> => {
      while (!closed) {
        try {
          const snap = await this.snapshot();
          if (closed) return;
          last = snap.revision;
          onEvent({ type: 'resync', revision: snap.revision, circuits: snap.circuits });
          return start(snap.revision);
        } catch (err) {
          this.background.add(err, 'watch resync; retrying');
          await sleep(200);
        }
      }
    };

    void start(afterRevision);
    const handle = {
      close: () => {
        closed = true;
        if (current) cancel(current);
        this.watchers.delete(handle);
      },
    };
    this.watchers.add(handle);
    return handle;
  }

  /** A circuit record from a key, or none (counted and reported) when it does not decode. */
  private decodeOrReport(kv: IKeyValue): Circuit[] {
    try {
      return [decodeCircuit(kv)];
    } catch (err) {
      this.background.add(
        new Error(`record ${kv.key.toString()}: ${(err as Error).message}`),
        'undecodable record',
      );
      return [];
    }
  }

  registerRouter(router: RouterRegistration, ttlMs: number): Registration {
    let closed = false;
    let establishing = false;
    let lease: Lease | undefined;
    const ttlS = Math.max(1, Math.ceil(ttlMs / 1000));
    const value = JSON.stringify(router);
    // Grant a lease and put our key under it. One loop at a time: when the live lease is
    // lost (say the cluster was down for longer than the TTL), start one loop again.
    const establish = async (): Promise<void> => {
      if (establishing) return;
      establishing = true;
      try {
        while (!closed) {
          const l = this.client.lease(ttlS, { autoKeepAlive: true });
          try {
            await l.put(this.opts.prefix + K.router(router.name)).value(value);
            lease = l;
            l.once('lost', () => {
              if (lease !== l) return;
              lease = undefined;
              l.release();
              if (!closed) void establish();
            });
            return;
          } catch (err) {
            this.background.add(err, 'router registration; retrying');
            l.removeAllListeners();
            l.release();
            await sleep(500);
          }
        }
      } finally {
        establishing = false;
      }
    };
    void establish();
    const reg: Registration = {
      close: async () => {
        closed = true;
        this.registrations.delete(reg);
        const l = lease;
        lease = undefined;
        // A revoke that fails leaves the lease to expire within its TTL: count it, the outcome is the same.
        await l?.revoke().catch((err: unknown) => this.background.add(err, 'router registration revoke'));
      },
    };
    this.registrations.add(reg);
    return reg;
  }

  async listRouters(): Promise<RouterRegistration[]> {
    const res = await this.call(() => this.ns.getAll().prefix(K.routers).sort('Key', 'Ascend').exec());
    return res.kvs.map((kv) => JSON.parse(kv.value.toString()) as RouterRegistration);
  }

  async putRouterStats(stats: RouterStats): Promise<void> {
    await this.call(() => this.ns.put(K.stats(stats.router)).value(JSON.stringify(stats)).exec());
  }

  async listRouterStats(): Promise<RouterStats[]> {
    const res = await this.call(() => this.ns.getAll().prefix(K.statsAll).exec());
    return res.kvs.map((kv) => JSON.parse(kv.value.toString()) as RouterStats);
  }

  /** Test and bench hook: compact the cluster's history up to its current revision. */
  async compact(): Promise<void> {
    const res = await this.call(() => this.ns.get('compact-probe').exec());
    await this.call(() => this.client.kv.compact({ revision: res.header.revision, physical: true }));
  }

  async close(): Promise<void> {
    for (const w of [...this.watchers]) w.close();
    await Promise.all([...this.registrations].map((r) => r.close()));
    this.client.close();
  }

  private async getRaw(key: string): Promise<IKeyValue | undefined> {
    const res = await this.call(() => this.ns.get(key).exec());
    return res.kvs[0];
  }

  private async readNumber(key: string): Promise<{ value: number; modRevision: number }> {
    const kv = await this.getRaw(key);
    return { value: kv ? Number(kv.value.toString()) : 0, modRevision: kv ? Number(kv.mod_revision) : 0 };
  }

  /** Every etcd call goes through here: cluster trouble becomes UnavailableError, never a raw gRPC error. */
  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof StoreError) throw err;
      throw new UnavailableError(`etcd (${this.opts.endpoints.join(', ')}): ${(err as Error).message}`);
    }
  }
}

function decodeCircuit(kv: IKeyValue): Circuit {
  const c = JSON.parse(kv.value.toString()) as Omit<Circuit, 'revision'>;
  return { ...c, revision: Number(kv.mod_revision) };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
