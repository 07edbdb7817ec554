import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { CircuitStore } from '../store/store.js';
import type { PortalConfig } from './config.js';
import type { RouterDirectory } from './routers.js';
import { OffersResponse } from '../api/portal.js';
import { storeErrorToHttp } from './circuits.js';

/** The public catalogue: what this ISP sells between its PoPs, and where to send. No API key needed. */
export async function offerRoutes(
  app: FastifyInstance,
  opts: { config: PortalConfig; store: CircuitStore; routers: RouterDirectory },
): Promise<void> {
  const { config, store, routers } = opts;
  app.withTypeProvider<TypeBoxTypeProvider>().get(
    '/offers',
    {
      schema: {
        summary: 'PoP-to-PoP offers with SLA, price, remaining capacity and router addresses',
        tags: ['offers'],
        response: { 200: OffersResponse },
      },
    },
    async () => {
      const circuits = await store.list().catch(storeErrorToHttp);
      const sold = new Map<string, number>();
      for (const c of circuits) {
        const k = `${c.ingressPop}->${c.egressPop}`;
        sold.set(k, (sold.get(k) ?? 0) + c.bandwidthMbps);
      }
      const addresses = new Map<string, string[]>();
      for (const p of config.pops)
        addresses.set(p.name, await routers.addresses(p.name).catch(storeErrorToHttp));
      return {
        isp: config.isp,
        pops: config.pops.map((p) => ({ name: p.name, routers: addresses.get(p.name)! })),
        offers: config.offers.map((o) => ({
          isp: config.isp,
          from: o.from,
          to: o.to,
          capacityMbps: o.capacityMbps,
          availableMbps: Math.max(0, o.capacityMbps - (sold.get(`${o.from}->${o.to}`) ?? 0)),
          latencyMs: o.latencyMs,
          maxLossPct: o.maxLossPct,
          uptimePct: o.uptimePct,
          pricePerMbps: o.pricePerMbps,
          ingress: addresses.get(o.from) ?? [],
          egress: addresses.get(o.to) ?? [],
        })),
      };
    },
  );
}
