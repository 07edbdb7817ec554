import { mustParseAddress } from '../wire/address.js';
import {
  Connection,
  rebuyFrom,
  type DetectorOptions,
  type PathCircuit,
  type SpreadOptions,
} from './connection.js';
import { Endpoint } from './endpoint.js';
import { LocalPort } from './local-port.js';
import { releasePath, type BoughtPath, type PathSpec } from './path.js';

export interface ForwarderOptions {
  /** Local address of the ARROW socket (where the return paths deliver). Default: the listen host, any port. */
  bind?: string;
  /** The failure detector; unset fields take `DEFAULT_DETECTOR`. */
  detector?: Partial<DetectorOptions>;
  /**
   * Candidate paths to re-buy from when an ISP is dead and no standby is up (`rebuyFrom`).
   * Default: the paths given to `start`. An empty list turns re-buying off.
   */
  rebuyCandidates?: PathSpec[];
  /** How long `start` waits for every circuit to answer end to end before it returns anyway. Default 5000. */
  readyTimeoutMs?: number;
  /** Spread DATA over every path (each an ingress point) by a keyed PRF instead of a primary and standbys. */
  spread?: SpreadOptions;
}

/**
 * A UDP port forward for unmodified clients (`arrow forward`), with failover: datagrams sent to
 * `listen` travel the primary path, and what the return paths deliver goes back. It runs the
 * endpoint's failover driver (a `Connection`, docs/failover.md) over the primary and any standby
 * paths: detection by timeout, probes, ingress change, standby switch, re-buy around a dead ISP.
 */
export class Forwarder {
  private constructor(
    private readonly local: LocalPort,
    readonly endpoint: Endpoint,
    readonly connection: Connection,
    /** Circuits that did not answer end to end while starting (empty when all did); the driver keeps probing them. */
    readonly notReady: PathCircuit[],
    /** Whether the paths are ours to relinquish (bought here), or lent to us (a mailbox bundle). */
    private readonly owned = true,
  ) {
    local.attach(connection);
  }

  get listen(): string {
    return this.local.address;
  }

  get counters(): LocalPort['counters'] {
    return this.local.counters;
  }

  /** Every path in use: primary first, then standbys, then re-bought ones. */
  get paths(): BoughtPath[] {
    return this.connection.circuits.map((c) => c.path);
  }

  /** The primary path. */
  get path(): BoughtPath {
    return this.paths[0]!;
  }

  /**
   * Binds `listen`, buys every path (the first is the primary, the others standbys, each with its
   * own return path) and waits for them to answer. If any purchase fails, whatever was bought is
   * relinquished and the error is thrown: no half-made forward.
   */
  static async start(
    listen: string,
    paths: PathSpec | PathSpec[],
    opts: ForwarderOptions = {},
  ): Promise<Forwarder> {
    const specs = Array.isArray(paths) ? paths : [paths];
    if (specs.length === 0) throw new Error('a forward needs at least one path');
    const local = await LocalPort.bind(listen);
    let endpoint: Endpoint;
    try {
      endpoint = await Endpoint.open(opts.bind ?? `${mustParseAddress(listen, { bind: true }).host}:0`);
    } catch (err) {
      local.close();
      throw err;
    }
    const candidates = opts.rebuyCandidates ?? specs;
    const connection: Connection = new Connection(
      endpoint,
      opts.detector,
      candidates.length > 0 ? rebuyFrom(candidates, () => connection.replyTo()) : undefined,
      opts.spread,
    );
    try {
      await connection.buy(specs);
    } catch (err) {
      await connection.close();
      local.close();
      await endpoint.close();
      throw err;
    }
    const notReady = await connection.waitReady(opts.readyTimeoutMs ?? 5000);
    return new Forwarder(local, endpoint, connection, notReady);
  }

  /**
   * Sends over paths bought by someone else (a destination's mailboxes, `mailboxes.ts`): nothing
   * is bought, re-bought or relinquished here. `opts.bind` must be the address their return paths
   * deliver to.
   */
  static async attach(
    listen: string,
    paths: BoughtPath[],
    opts: Omit<ForwarderOptions, 'rebuyCandidates'> & { bind: string },
  ): Promise<Forwarder> {
    if (paths.length === 0) throw new Error('a forward needs at least one path');
    const local = await LocalPort.bind(listen);
    let endpoint: Endpoint;
    try {
      endpoint = await Endpoint.open(opts.bind);
    } catch (err) {
      local.close();
      throw err;
    }
    const connection = new Connection(endpoint, opts.detector, undefined, opts.spread);
    for (const p of paths) connection.add(p);
    const notReady = await connection.waitReady(opts.readyTimeoutMs ?? 5000);
    return new Forwarder(local, endpoint, connection, notReady, false);
  }

  /** Relinquishes every circuit (re-bought ones too; none when attached) and closes the sockets. */
  async stop(): Promise<Error[]> {
    await this.connection.close();
    const failures: Error[] = [];
    if (this.owned) for (const p of this.paths) failures.push(...(await releasePath(p)));
    this.local.close();
    await this.endpoint.close();
    return failures;
  }
}
