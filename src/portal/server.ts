import type { FastifyInstance } from 'fastify';
import { createHttpApp, type TlsMaterial } from '../util/http.js';
import type { CircuitStore } from '../store/store.js';
import type { Logger } from '../util/log.js';
import type { PortalConfig } from './config.js';
import { circuitRoutes, HttpError } from './circuits.js';
import { offerRoutes } from './offers.js';
import { RouterDirectory } from './routers.js';
import { registerPortalMetrics } from './metrics.js';
import { Registry } from 'prom-client';

export interface PortalOptions {
  config: PortalConfig;
  store: CircuitStore;
  logger?: Logger | false;
  /** Serve HTTPS (loadTls of the config's `tls`). */
  tls?: TlsMaterial | undefined;
  /** Where its metrics go (the admin API serves them); a private one by default. */
  registry?: Registry;
}

/** The ISP's control plane: a fastify app with one plugin per concern, schemas at the edge. */
export async function buildPortal({
  config,
  store,
  logger = false,
  tls,
  registry = new Registry(),
}: PortalOptions): Promise<FastifyInstance> {
  const app = await createHttpApp({
    title: `Arrow portal (${config.isp})`,
    description: 'Buy, chain and relinquish ARROW transit circuits. See docs/api.md.',
    logger,
    bodyLimit: 64 * 1024,
    tls,
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
    clientError: (err) =>
      err instanceof HttpError ? { statusCode: err.statusCode, message: err.message } : undefined,
  });
  app.get('/healthz', { schema: { hide: true } }, async () => ({ ok: true, isp: config.isp }));
  const metrics = registerPortalMetrics(app, registry, { config, store });
  const routers = new RouterDirectory(config, store);
  await app.register(offerRoutes, { config, store, routers });
  await app.register(circuitRoutes, { config, store, routers, metrics });
  return app;
}
