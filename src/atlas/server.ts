import Fastify, { type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from '../util/log.js';
import type { Atlas } from './atlas.js';
import { PathQuerySchema, queryPaths, QueryError } from './query.js';

/**
 * The atlas's HTTP/JSON API: the map it learnt, its measurements, and declarative path queries.
 * Queries are data (a JSON body checked against PathQuerySchema), never code: the seed's atlas ran
 * customers' Ruby programs; this one runs nobody's.
 */
export async function buildAtlasServer(
  atlas: Atlas,
  logger: Logger | false = false,
): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: logger || undefined,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    bodyLimit: 16 * 1024,
    disableRequestLogging: true,
  }) as unknown as FastifyInstance;
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Arrow atlas',
        version: '1',
        description: 'ISPs, PoPs, offers, measured latency and loss, and path queries. See docs/atlas.md.',
      },
    },
  });
  app.setErrorHandler((err: Error & { statusCode?: number; validation?: unknown }, req, reply) => {
    if (err instanceof QueryError)
      return reply.code(400).send({ statusCode: 400, error: 'Bad Request', message: err.message });
    const code = err.validation
      ? 400
      : err.statusCode && err.statusCode >= 400 && err.statusCode < 500
        ? err.statusCode
        : 500;
    if (code === 500) req.log.error({ err }, 'unhandled atlas error');
    return reply.code(code).send({
      statusCode: code,
      error: code === 500 ? 'Internal Server Error' : 'Bad Request',
      message: code === 500 ? 'internal error; see atlas log' : err.message,
    });
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({
      statusCode: 404,
      error: 'Not Found',
      message: `no route ${req.method} ${req.url}; see /openapi.json`,
    }),
  );
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  app.get('/healthz', { schema: { hide: true } }, async () => ({ ok: true }));

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
