import { httpRequest } from '../util/http-client.js';
import { Value } from '@sinclair/typebox/value';
import { OffersResponse } from '../api/portal.js';
import type { Logger } from '../util/log.js';
import type { AtlasConfig } from './config.js';
import { measureRound, PairHistory, type EchoProber } from './measure.js';
import {
  linkKey,
  popId,
  segmentKey,
  type AtlasMap,
  type AtlasOffer,
  type AtlasPop,
  type Measurement,
} from './model.js';

/** What the atlas last learnt from one ISP's portal. */
export interface IspView {
  name: string;
  portal: string;
  /** Offers and PoPs of the last successful read (kept while the portal is unreachable). */
  pops: AtlasPop[];
  offers: AtlasOffer[];
  fetchedAt: number | undefined;
  /** Why the last read failed, when it did. */
  error: string | undefined;
}

/** A PoP pair the atlas measures: an offer's segment (inside one ISP) or a peering link (between two). */
export interface MeasuredPair {
  kind: 'segment' | 'link';
  key: string;
  /** PoP ids at each end. */
  a: string;
  b: string;
}

/**
 * The atlas's state and its two loops: offers re-read from every portal, and PoP pairs measured
 * with relayed echoes. Queries read `map()`, a consistent picture of both.
 */
export class Atlas {
  readonly isps: IspView[];
  private readonly histories = new Map<string, PairHistory>();
  private readonly timers: NodeJS.Timeout[] = [];
  private measuring = false;
  /** Probes that failed outright (socket errors, not lost echoes), counted as lost. */
  probeErrors = 0;

  constructor(
    readonly config: AtlasConfig,
    private readonly prober: EchoProber,
    private readonly log: Logger,
    private readonly fetchOffers: (portal: string) => Promise<unknown> = fetchJson,
  ) {
    this.isps = config.isps.map((i) => ({
      name: i.name,
      portal: i.portal,
      pops: [],
      offers: [],
      fetchedAt: undefined,
      error: 'not read yet',
    }));
  }

  /** Reads every portal once, then keeps refreshing and measuring in the background. */
  async start(): Promise<void> {
    await this.refresh();
    const refresh = setInterval(() => void this.refresh(), this.config.refreshMs);
    const measure = setInterval(() => void this.measure(), this.config.measure.intervalMs);
    refresh.unref();
    measure.unref();
    this.timers.push(refresh, measure);
    void this.measure();
  }

  private probeFailed(pair: string, err: unknown): void {
    // One line per hundred: a dead socket fails every probe of every round.
    if (this.probeErrors++ % 100 === 0)
      this.log.warn({ pair, err: (err as Error).message, probeErrors: this.probeErrors }, 'probe failed');
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
  }

  /** Re-reads every portal's offers; a portal that fails keeps its last good picture, flagged. */
  async refresh(): Promise<void> {
    await Promise.all(
      this.isps.map(async (view) => {
        try {
          const body = await this.fetchOffers(`${view.portal.replace(/\/$/, '')}/offers`);
          if (!Value.Check(OffersResponse, body)) throw new Error('offers do not match the portal schema');
          if (body.isp !== view.name) throw new Error(`portal says it is ISP ${body.isp}, not ${view.name}`);
          view.pops = body.pops.map((p) => ({ isp: view.name, pop: p.name, routers: p.routers }));
          view.offers = body.offers.map((o) => ({ ...o, isp: view.name }));
          view.fetchedAt = Date.now();
          view.error = undefined;
        } catch (err) {
          const message = (err as Error).message;
          if (view.error !== message)
            this.log.warn({ isp: view.name, err: message }, 'could not read offers');
          view.error = message;
        }
      }),
    );
  }

  /** Every PoP pair worth measuring: each offer's segment, and each configured peering. */
  pairs(): MeasuredPair[] {
    const out: MeasuredPair[] = [];
    for (const v of this.isps)
      for (const o of v.offers)
        if (o.from !== o.to)
          out.push({
            kind: 'segment',
            key: segmentKey(v.name, o.from, o.to),
            a: popId(v.name, o.from),
            b: popId(v.name, o.to),
          });
    for (const p of this.config.peerings) out.push({ kind: 'link', key: linkKey(p.a, p.b), a: p.a, b: p.b });
    return out;
  }

  /** One measurement round over every pair whose routers are known. */
  async measure(): Promise<void> {
    if (this.measuring) return; // a slow round (many timeouts) is not stacked on
    this.measuring = true;
    try {
      const m = this.config.measure;
      const routers = new Map(this.isps.flatMap((v) => v.pops.map((p) => [popId(p.isp, p.pop), p.routers])));
      await Promise.all(
        this.pairs().map(async (pair) => {
          const via = routers.get(pair.a)?.[0];
          const to = routers.get(pair.b)?.[0];
          if (!via || !to) return;
          const round = await measureRound(this.prober, via, to, m.echoes, m.timeoutMs, Date.now, (err) =>
            this.probeFailed(pair.key, err),
          );
          let h = this.histories.get(pair.key);
          if (!h) this.histories.set(pair.key, (h = new PairHistory(m.history)));
          h.add(round);
        }),
      );
    } finally {
      this.measuring = false;
    }
  }

  measurement(key: string): Measurement | undefined {
    return this.histories.get(key)?.measurement();
  }

  /** The map the path queries run on: what every portal offers now, and what we measured. */
  map(): AtlasMap {
    const segments = new Map<string, Measurement>();
    const links = new Map<string, Measurement>();
    for (const pair of this.pairs()) {
      const m = this.measurement(pair.key);
      if (m) (pair.kind === 'segment' ? segments : links).set(pair.key, m);
    }
    return {
      pops: this.isps.flatMap((v) => v.pops),
      offers: this.isps.flatMap((v) => v.offers),
      peerings: this.config.peerings,
      targets: this.config.targets,
      measured: { segments, links },
      // Ten rounds without news: the pair's figures no longer describe it.
      measurementMaxAgeMs: Math.max(10 * this.config.measure.intervalMs, 5000),
    };
  }
}

/** GET `url` as JSON; HTTPS verified against the system roots plus trusted CAs (`ca` in the config, `--ca`). */
export async function fetchJson(url: string): Promise<unknown> {
  const res = await httpRequest(url, { timeoutMs: 3000 });
  if (res.status !== 200) throw new Error(`GET ${url}: HTTP ${res.status}`);
  try {
    return JSON.parse(res.text);
  } catch (err) {
    if (err instanceof SyntaxError)
      throw new Error(`GET ${url}: non-JSON answer: ${err.message}`, { cause: err });
    throw err;
  }
}
