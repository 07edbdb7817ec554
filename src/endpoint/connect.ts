import { AtlasClient, type AtlasMapView } from '../atlas/client.js';
import type { PathAnswer, PathCandidate, PathQuery } from '../atlas/query.js';
import { mustParseAddress } from '../wire/address.js';
import { LocalPort } from './local-port.js';
import { Connection, type DetectorOptions, type PathCircuit, type SpreadOptions } from './connection.js';
import { Endpoint } from './endpoint.js';
import { buyPath, releasePath, type BoughtPath, type PathSpec, type SegmentSpec } from './path.js';

/** How long `open` waits for every bought path to answer end to end before it returns anyway. */
export const READY_TIMEOUT_MS = 5000;

export interface ConnectOptions {
  atlas: string;
  query: PathQuery;
  /** API key per ISP name: the customer's accounts. */
  keys: Record<string, string>;
  /** The unmodified UDP server to reach (`host:port`); the last ISP delivers to it. */
  target: string;
  /** Local UDP address unmodified clients send to. */
  listen: string;
  bandwidthMbps?: number;
  detector?: Partial<DetectorOptions>;
  /**
   * Spread DATA over all the bought paths (`query.k` of them, each an ingress point) by a keyed
   * PRF of the sequence number, instead of a primary and standbys (docs/services.md).
   */
  spread?: SpreadOptions;
}

/** The atlas's answer turned into something a portal can sell: one segment spec per ISP. */
export function specFromCandidate(
  path: PathCandidate,
  map: AtlasMapView,
  keys: Record<string, string>,
  target: string,
  bandwidthMbps?: number,
): PathSpec {
  const segments: SegmentSpec[] = path.segments.map((s) => {
    const portal = map.isps.find((i) => i.name === s.isp)?.portal;
    if (!portal) throw new Error(`the atlas names ISP ${s.isp} but knows no portal for it`);
    const apiKey = keys[s.isp];
    if (!apiKey)
      throw new Error(`no API key for ISP ${s.isp}: add it with --key ${s.isp}=KEY or --keys FILE`);
    return {
      isp: s.isp,
      portal,
      apiKey,
      ingressPop: s.ingressPop,
      egressPop: s.egressPop,
      ...(bandwidthMbps ? { bandwidthMbps } : {}),
    };
  });
  return { segments, target: { kind: 'udp', address: target } };
}

/**
 * `arrow connect`: asks the atlas for paths, buys the best (and with k ≥ 2 a standby on a disjoint
 * path), and forwards a local UDP port over them with the endpoint's failover: detection, probes,
 * switch to the standby, and — when an ISP is dead and no standby is left — a re-buy that asks the
 * atlas again, avoiding it.
 */
export class AtlasConnection {
  private constructor(
    private readonly local: LocalPort,
    readonly endpoint: Endpoint,
    readonly connection: Connection,
    readonly answer: PathAnswer,
    /** Circuits that did not answer end to end while starting (empty when all did); the driver keeps probing them. */
    readonly notReady: PathCircuit[],
  ) {
    local.attach(connection);
  }

  get listen(): string {
    return this.local.address;
  }

  get counters(): LocalPort['counters'] {
    return this.local.counters;
  }

  get paths(): BoughtPath[] {
    return this.connection.circuits.map((c) => c.path);
  }

  static async open(o: ConnectOptions): Promise<AtlasConnection> {
    mustParseAddress(o.target);
    const atlas = new AtlasClient(o.atlas);
    const [answer, map] = await Promise.all([atlas.paths(o.query), atlas.map()]);
    if (answer.paths.length === 0) {
      const why = answer.rejected.map((r) => `${r.path.isps.join('>')}: ${r.reasons.join(', ')}`);
      throw new Error(
        `the atlas found no path that meets the constraints${why.length ? `; rejected: ${why.join('; ')}` : ''}`,
      );
    }
    const k = o.query.k ?? 1;
    if (o.spread && answer.paths.length < k)
      throw new Error(
        `spreading over ${k} ingress points needs ${k} disjoint paths; the atlas found ${answer.paths.length}`,
      );
    const specs = answer.paths.map((p) => specFromCandidate(p, map, o.keys, o.target, o.bandwidthMbps));
    const local = await LocalPort.bind(o.listen);
    const endpoint = await Endpoint.open(`${mustParseAddress(o.listen, { bind: true }).host}:0`);
    const rebuy = async (avoid: string[]): Promise<BoughtPath> => {
      const again = await atlas.paths({
        ...o.query,
        k: 1,
        avoid: [...new Set([...(o.query.avoid ?? []), ...avoid])],
      });
      const best = again.paths[0];
      if (!best) throw new Error(`no path avoids ${avoid.join(', ')}`);
      return buyPath(specFromCandidate(best, map, o.keys, o.target, o.bandwidthMbps), {
        replyTo: connection.replyTo(),
      });
    };
    const connection = new Connection(endpoint, o.detector, rebuy, o.spread);
    try {
      // Primary first, then standbys; each with its own return path to us.
      await connection.buy(specs);
    } catch (err) {
      // No half-made connection: whatever was bought went back.
      await connection.close();
      await endpoint.close();
      local.close();
      throw err;
    }
    const notReady = await connection.waitReady(READY_TIMEOUT_MS);
    return new AtlasConnection(local, endpoint, connection, answer, notReady);
  }

  /** Relinquishes every circuit (including re-bought ones) and closes the sockets. */
  async stop(): Promise<Error[]> {
    const failures: Error[] = [];
    for (const p of this.paths) failures.push(...(await releasePath(p)));
    await this.connection.close();
    this.local.close();
    await this.endpoint.close();
    return failures;
  }
}
