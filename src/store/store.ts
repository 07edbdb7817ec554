import { circuitRecordProblems } from './circuit.js';
import type {
  ChangeEvent,
  Circuit,
  CircuitInput,
  CircuitPatch,
  HopKind,
  RouterStats,
  Snapshot,
} from './circuit.js';

export interface ActiveChange {
  auth: string;
  kind: HopKind;
  active: number;
}

/**
 * The ISP's circuit store. One interface, several backends (memory for unit tests,
 * SQLite as the embedded default, etcd for multi-host). All methods are async so a
 * networked backend drops in; every mutation is atomic: it happens whole or not at all.
 */
export interface CircuitStore {
  readonly kind: string;
  get(auth: string): Promise<Circuit | undefined>;
  list(query?: { owner?: string }): Promise<Circuit[]>;
  /** All circuits at one consistent revision; watch from `revision` to follow on. */
  snapshot(): Promise<Snapshot>;
  /**
   * Creates a circuit. With `admission`, the create fails with CapacityError when
   * the circuits already sold on the same (ingressPop, egressPop) pair plus this one
   * would exceed `capacityMbps`; the check and the insert are one transaction.
   *
   * With `idempotency`, the key (scoped to `input.owner`) is recorded in the same transaction.
   * A later create with the same owner and key creates nothing: it returns the circuit the key
   * made (as it is now, with its own authenticator, not `input.auth`), or fails with
   * IdempotencyMismatchError when its fingerprint differs. The key is forgotten with its circuit.
   */
  create(input: CircuitInput, admission?: Admission, idempotency?: IdempotencyKey): Promise<Circuit>;
  /** Changes a circuit. With `expectRevision`, fails with ConflictError unless the circuit is still at that revision. */
  update(auth: string, patch: CircuitPatch, opts?: { expectRevision?: number }): Promise<Circuit>;
  /**
   * Records failover choices: which address of a hop list each circuit now uses. Each
   * change merges into the circuit's `active` atomically (no lost concurrent chain);
   * circuits that no longer exist are skipped.
   */
  setActive(changes: ActiveChange[]): Promise<void>;
  /** Deletes a circuit; returns what was deleted, or undefined when it did not exist. */
  delete(auth: string, opts?: { expectRevision?: number }): Promise<Circuit | undefined>;
  /** Delivers every change after `afterRevision`, in order. Emits `resync` when that point was compacted away. */
  watch(afterRevision: number, onEvent: (event: ChangeEvent) => void): Watcher;
  /**
   * Announces a live router under a lease of `ttlMs`, renewed in the background until
   * `close()`. A router that dies disappears from `listRouters` within its TTL.
   */
  registerRouter(router: RouterRegistration, ttlMs: number): Registration;
  /** Routers whose registration is alive now. */
  listRouters(): Promise<RouterRegistration[]>;
  putRouterStats(stats: RouterStats): Promise<void>;
  listRouterStats(): Promise<RouterStats[]>;
  close(): Promise<void>;
  /**
   * Errors met in background work (a watch listener that threw, a change record that would
   * not decode, a lease renewal or cancel that failed): counted here and reported, never
   * thrown (there is no caller to throw to) and never swallowed.
   */
  readonly background: BackgroundErrors;
}

/** Counts and reports a store's background errors; the owner sets `report` to its logger. */
export class BackgroundErrors {
  count = 0;
  readonly byContext: Record<string, number> = {};
  /** Where a report goes; one line on stderr until the owner points it at its logger. */
  report: (err: Error, context: string) => void = (err, context) =>
    console.error(`arrow store: ${context}: ${err.message}`);

  add(err: unknown, context: string): void {
    this.count++;
    this.byContext[context] = (this.byContext[context] ?? 0) + 1;
    const e = err instanceof Error ? err : new Error(String(err));
    try {
      this.report(e, context);
    } catch (reportErr) {
      // A broken logger must not turn a counted error into a crash; stderr is the last resort.
      console.error(`arrow store: ${context}: ${e.message} (report failed: ${(reportErr as Error).message})`);
    }
  }

  /** Calls a watch listener; a throw is counted and reported, and the watch goes on with the next change. */
  deliver(onEvent: (event: ChangeEvent) => void, event: ChangeEvent): void {
    try {
      onEvent(event);
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      this.add(new Error(`${event.type} at revision ${event.revision}: ${e.message}`), 'watch listener');
    }
  }
}

/** An `Idempotency-Key` and a fingerprint of the request it came with (docs/api.md). */
export interface IdempotencyKey {
  key: string;
  /** Equal for equal requests: a retry with the key but another request is refused. */
  fingerprint: string;
}

export interface Admission {
  capacityMbps: number;
}

export interface RouterRegistration {
  name: string;
  pop: string;
  address: string;
}

export interface Registration {
  /** Withdraws the registration. */
  close(): Promise<void>;
}

export interface Watcher {
  close(): void;
}

export class StoreError extends Error {
  override name = 'StoreError';
}
/** The authenticator is already taken (create), or the circuit moved on (update/delete with expectRevision). */
export class ConflictError extends StoreError {
  override name = 'ConflictError';
}
export class NotFoundError extends StoreError {
  override name = 'NotFoundError';
}
export class CapacityError extends StoreError {
  override name = 'CapacityError';
  constructor(
    readonly soldMbps: number,
    readonly capacityMbps: number,
    readonly requestedMbps: number,
  ) {
    super(
      `capacity sold out: ${soldMbps} of ${capacityMbps} Mb/s already sold on this PoP pair, ${requestedMbps} Mb/s requested`,
    );
  }
}
/** A record no router could compile (a bad address or authenticator): refused, nothing was written. */
export class InvalidRecordError extends StoreError {
  override name = 'InvalidRecordError';
}

/** Throws InvalidRecordError when the record (as it would be after a create or update) is not compilable. */
export function assertValidRecord(record: Parameters<typeof circuitRecordProblems>[0]): void {
  const problems = circuitRecordProblems(record);
  if (problems.length > 0) throw new InvalidRecordError(`invalid circuit record: ${problems.join('; ')}`);
}

/** The idempotency key was already used, by this owner, for a different request. */
export class IdempotencyMismatchError extends StoreError {
  override name = 'IdempotencyMismatchError';
  constructor(readonly key: string) {
    super(`Idempotency-Key ${JSON.stringify(key)} was already used for a different request`);
  }
}
/** The store cannot be reached or has no quorum; nothing was committed. */
export class UnavailableError extends StoreError {
  override name = 'UnavailableError';
}
