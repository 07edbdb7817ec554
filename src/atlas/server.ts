import type { FastifyInstance } from 'fastify';
import { createHttpApp, type TlsMaterial } from '../util/http.js';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from '../util/log.js';
import type { Atlas } from './atlas.js';
import { queryPaths, QueryError } from './query.js';
import { PathQuerySchema } from '../api/atlas.js';
import { Registry } from 'prom-client';
import { registerAtlasMetrics } from './metrics.js';

/**
 * The atlas's HTTP/JSON API: the map it learnt, its measurements, and declarative path queries.
 * Queries are data (a JSON body checked against PathQuerySchema), never code: the seed's atlas ran
 * customers' Ruby programs; this one runs nobody's.
 */
export async function buildAtlasServer(
  atlas: Atlas,
  logger: Logger | false = false,
  tls?: TlsMaterial,
  /** Where its metrics go (the admin API serves them); a private one by default. */
  registry: Registry = new Registry(),
): Promise<FastifyInstance> {
  const app = await createHttpApp({
    title: 'Arrow atlas',
    description: 'ISPs, PoPs, offers, measured latency and loss, and path queries. See docs/atlas.md.',
    logger,
    bodyLimit: 16 * 1024,
    tls,
    clientError: (err) => (err instanceof QueryError ? { statusCode: 400, message: err.message } : undefined),
  });
  app.get('/healthz', { schema: { hide: true } }, async () => ({ ok: true }));
  registerAtlasMetrics(app, registry, atlas);

  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  api.get(
    '/map',
    {
      schema: {
        summary: 'What the atlas knows: each ISP (portal, freshness), PoPs, offers, peerings and targets',
        tags: ['map'],
      },
    },
    async () => {
      const m = atlas.map();
      return {
        isps: atlas.isps.map((v) => ({
          name: v.name,
          portal: v.portal,
          fetchedAt: v.fetchedAt === undefined ? null : new Date(v.fetchedAt).toISOString(),
          error: v.error ?? null,
        })),
        pops: m.pops,
        offers: m.offers,
        peerings: m.peerings,
        targets: m.targets,
      };
    },
  );
  api.get(
    '/measurements',
    {
      schema: {
        summary: 'Measured one-way latency and loss per PoP pair (offer segments and peering links)',
        tags: ['map'],
      },
    },
    async () => ({
      probeErrors: atlas.probeErrors,
      pairs: atlas.pairs().map((p) => {
        const m = atlas.measurement(p.key);
        return {
          kind: p.kind,
          key: p.key,
          a: p.a,
          b: p.b,
          latencyMs: m?.latencyMs ?? null,
          lossPct: m?.lossPct ?? null,
          samples: m?.samples ?? 0,
          at: m ? new Date(m.at).toISOString() : null,
        };
      }),
    }),
  );
  api.post(
    '/paths',
    {
      schema: {
        summary:
          'Paths that meet the constraints, best first, with the near misses and why they were rejected',
        tags: ['paths'],
        body: PathQuerySchema,
      },
    },
    async (req) => queryPaths(atlas.map(), req.body, Date.now()),
  );
  return app;
}
