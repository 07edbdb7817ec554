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
  type Watcher,
} from './store.js';

/** In-process store for unit tests of pure logic. Same semantics as the durable backends. */
export class MemoryStore implements CircuitStore {
  readonly kind = 'memory';
  readonly background = new BackgroundErrors();
  private readonly circuits = new Map<string, Circuit>();
  private readonly log: ChangeEvent[] = [];
  private readonly listeners = new Set<(e: ChangeEvent) => void>();
  private readonly stats = new Map<string, RouterStats>();
  /** owner NUL key → the fingerprint and the circuit the key created. */
  private readonly idempotency = new Map<string, { fingerprint: string; auth: string }>();
  private revision = 0;
  /** Changes at or below this revision are forgotten, as after an etcd compaction. */
  private compacted = 0;

  async get(auth: string): Promise<Circuit | undefined> {
    return clone(this.circuits.get(auth));
  }

  async list(query: { owner?: string } = {}): Promise<Circuit[]> {
    return [...this.circuits.values()]
      .filter((c) => !query.owner || c.owner === query.owner)
      .map((c) => clone(c));
  }

  async snapshot(): Promise<Snapshot> {
    return { revision: this.revision, circuits: await this.list() };
  }

  async create(input: CircuitInput, admission?: Admission, idem?: IdempotencyKey): Promise<Circuit> {
    assertValidRecord(input);
    const idemKey = idem && `${input.owner}\0${idem.key}`;
    const seen = idemKey ? this.idempotency.get(idemKey) : undefined;
    if (seen) {
      if (seen.fingerprint !== idem!.fingerprint) throw new IdempotencyMismatchError(idem!.key);
      return clone(this.circuits.get(seen.auth)!);
    }
    if (this.circuits.has(input.auth)) throw new ConflictError(`circuit ${input.auth} already exists`);
    if (admission) {
      let sold = 0;
      for (const c of this.circuits.values())
        if (c.ingressPop === input.ingressPop && c.egressPop === input.egressPop) sold += c.bandwidthMbps;
      if (sold + input.bandwidthMbps > admission.capacityMbps)
        throw new CapacityError(sold, admission.capacityMbps, input.bandwidthMbps);
    }
    const circuit: Circuit = {
      ...clone(input),
      createdAt: new Date().toISOString(),
      ...(idem ? { idempotencyKey: idem.key } : {}),
      revision: ++this.revision,
    };
    this.circuits.set(circuit.auth, circuit);
    if (idemKey) this.idempotency.set(idemKey, { fingerprint: idem!.fingerprint, auth: circuit.auth });
    this.emit({ type: 'put', revision: circuit.revision, circuit: clone(circuit) });
    return clone(circuit);
  }

  async update(auth: string, patch: CircuitPatch, opts: { expectRevision?: number } = {}): Promise<Circuit> {
    const cur = this.circuits.get(auth);
    if (!cur) throw new NotFoundError(`no circuit ${auth}`);
    if (opts.expectRevision !== undefined && cur.revision !== opts.expectRevision)
      throw new ConflictError(
        `circuit ${auth} changed (revision ${cur.revision}, expected ${opts.expectRevision})`,
      );
    if (patch.action || patch.internalRouters) assertValidRecord({ ...cur, ...patch });
    const next: Circuit = { ...cur, ...clone(patch), revision: ++this.revision };
    this.circuits.set(auth, next);
    this.emit({ type: 'put', revision: next.revision, circuit: clone(next) });
    return clone(next);
  }

  async setActive(changes: ActiveChange[]): Promise<void> {
    for (const c of changes) {
      const cur = this.circuits.get(c.auth);
      if (cur && cur.active?.[c.kind] !== c.active)
        await this.update(c.auth, { active: { ...cur.active, [c.kind]: c.active } });
    }
  }

  async delete(auth: string, opts: { expectRevision?: number } = {}): Promise<Circuit | undefined> {
    const cur = this.circuits.get(auth);
    if (!cur) return undefined;
    if (opts.expectRevision !== undefined && cur.revision !== opts.expectRevision)
      throw new ConflictError(
        `circuit ${auth} changed (revision ${cur.revision}, expected ${opts.expectRevision})`,
      );
    this.circuits.delete(auth);
    if (cur.idempotencyKey !== undefined) this.idempotency.delete(`${cur.owner}\0${cur.idempotencyKey}`);
    this.emit({ type: 'delete', revision: ++this.revision, auth });
    return clone(cur);
  }

  /** Test hook: forget history up to the current revision. */
  compact(): void {
    this.compacted = this.revision;
    this.log.length = 0;
  }

  watch(afterRevision: number, listen: (event: ChangeEvent) => void): Watcher {
    let closed = false;
    // A throwing listener must not fail the writer's call (emit runs inside create/update).
    const onEvent = (e: ChangeEvent): void => this.background.deliver(listen, e);
    const listener = (e: ChangeEvent): void => {
      if (!closed) onEvent(e);
    };
    queueMicrotask(() => {
      if (closed) return;
      if (afterRevision < this.compacted) {
        onEvent({
          type: 'resync',
          revision: this.revision,
          circuits: [...this.circuits.values()].map(clone),
        });
      } else {
        for (const e of this.log) if (e.revision > afterRevision) onEvent(e);
      }
      this.listeners.add(listener);
    });
    return {
      close: () => {
        closed = true;
        this.listeners.delete(listener);
      },
    };
  }

  private readonly routers = new Map<string, { r: RouterRegistration; expires: number }>();

  registerRouter(router: RouterRegistration, ttlMs: number): Registration {
    const renew = (): void =>
      void this.routers.set(router.name, { r: { ...router }, expires: Date.now() + ttlMs });
    renew();
    const timer = setInterval(renew, Math.max(10, ttlMs / 3));
    timer.unref();
    return {
      close: async () => {
        clearInterval(timer);
        this.routers.delete(router.name);
      },
    };
  }

  /** Test hook: a router that stopped renewing (crashed) without withdrawing. */
  expireRouter(name: string): void {
    const e = this.routers.get(name);
    if (e) e.expires = 0;
  }

  async listRouters(): Promise<RouterRegistration[]> {
    const now = Date.now();
    return [...this.routers.values()]
      .filter((e) => e.expires > now)
      .map((e) => ({ ...e.r }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  async putRouterStats(stats: RouterStats): Promise<void> {
    this.stats.set(stats.router, clone(stats));
  }

  async listRouterStats(): Promise<RouterStats[]> {
    return [...this.stats.values()].map(clone);
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }

  private emit(e: ChangeEvent): void {
    this.log.push(e);
    for (const l of this.listeners) l(e);
  }
}

function clone<T>(v: T): T {
  return v === undefined ? v : structuredClone(v);
}
