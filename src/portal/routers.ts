import type { CircuitStore } from '../store/store.js';
import type { PortalConfig } from './config.js';

/**
 * Which router addresses the portal hands out for a PoP: the live routers registered
 * in the store (primary first, by name), or the config's static list for PoPs with no
 * live registration yet. A short cache keeps store reads off the create path.
 */
export class RouterDirectory {
  private cache: { at: number; byPop: Map<string, string[]> } | undefined;
  private pending: Promise<Map<string, string[]>> | undefined;

  constructor(
    private readonly config: PortalConfig,
    private readonly store: CircuitStore,
    private readonly cacheMs = 500,
  ) {}

  async addresses(pop: string): Promise<string[]> {
    const live = (await this.live()).get(pop);
    if (live && live.length > 0) return live;
    return this.config.pops.find((p) => p.name === pop)?.routers ?? [];
  }

  /** Every router of the ISP the portal knows of, live or configured, with its PoP. */
  async everyRouter(): Promise<Array<{ pop: string; address: string }>> {
    const all: Array<{ pop: string; address: string }> = [];
    for (const [pop, addresses] of await this.live())
      for (const address of addresses) all.push({ pop, address });
    for (const p of this.config.pops) for (const address of p.routers) all.push({ pop: p.name, address });
    return all;
  }

  private async live(): Promise<Map<string, string[]>> {
    if (this.cache && Date.now() - this.cache.at < this.cacheMs) return this.cache.byPop;
    this.pending ??= this.store
      .listRouters()
      .then((routers) => {
        const byPop = new Map<string, string[]>();
        for (const r of routers) byPop.set(r.pop, [...(byPop.get(r.pop) ?? []), r.address]);
        this.cache = { at: Date.now(), byPop };
        return byPop;
      })
      .finally(() => (this.pending = undefined));
    return this.pending;
  }
}
