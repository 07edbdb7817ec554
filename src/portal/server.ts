import Fastify, { type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import type { CircuitStore } from '../store/store.js';
import type { Logger } from '../util/log.js';
import type { PortalConfig } from './config.js';
import { circuitRoutes, HttpError } from './circuits.js';
import { offerRoutes } from './offers.js';
import { RouterDirectory } from './routers.js';

export interface PortalOptions {
  config: PortalConfig;
  store: CircuitStore;
  logger?: Logger | false;
}

/** The ISP's control plane: a fastify app with one plugin per concern, schemas at the edge. */
export async function buildPortal({
  config,
  store,
  logger = false,
}: PortalOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: logger || undefined,
    // Reject what we do not understand rather than silently dropping or coercing it.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    bodyLimit: 64 * 1024,
    // Three synchronous log lines per request cost ~15% of a create; we log what matters ourselves.
    disableRequestLogging: true,
  }) as unknown as FastifyInstance;

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: `Arrow portal (${config.isp})`,
        version: '1',
        description: 'Buy, chain and relinquish ARROW transit circuits. See docs/api.md.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    },
  });

  app.setErrorHandler((err: Error & { statusCode?: number; validation?: unknown }, req, reply) => {
    if (err instanceof HttpError)
      return reply
        .code(err.statusCode)
        .send({ statusCode: err.statusCode, error: statusText(err.statusCode), message: err.message });
    if (err.validation || (err.statusCode && err.statusCode >= 400 && err.statusCode < 500)) {
      const code = err.statusCode ?? 400;
      return reply.code(code).send({ statusCode: code, error: statusText(code), message: err.message });
    }
    req.log.error({ err }, 'unhandled portal error');
    return reply
      .code(500)
      .send({ statusCode: 500, error: 'Internal Server Error', message: 'internal error; see portal log' });
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({
      statusCode: 404,
      error: 'Not Found',
      message: `no route ${req.method} ${req.url}; see /openapi.json`,
    }),
  );

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  app.get('/healthz', { schema: { hide: true } }, async () => ({ ok: true, isp: config.isp }));
  const routers = new RouterDirectory(config, store);
  await app.register(offerRoutes, { config, store, routers });
  await app.register(circuitRoutes, { config, store, routers });
  return app;
}

function statusText(code: number): string {
  return (
    {
      400: 'Bad Request',
      401: 'Unauthorized',
      403: 'Forbidden',
      404: 'Not Found',
      409: 'Conflict',
      413: 'Payload Too Large',
      415: 'Unsupported Media Type',
      503: 'Service Unavailable',
    }[code] ?? 'Error'
  );
}
