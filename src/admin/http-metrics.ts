import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Counter, type Registry } from 'prom-client';

/**
 * `<prefix>_http_requests_total{method, route, status}` for a service's API, by route template
 * (`/circuits/:auth`, never the URL, so the series stay bounded whatever clients send; `unmatched`
 * for 404s). `also` sees each answered request with its route, for a service's own counts.
 */
export function countHttpRequests(
  app: FastifyInstance,
  registry: Registry,
  prefix: string,
  also?: (req: FastifyRequest, reply: FastifyReply, route: string) => void,
): void {
  const requests = new Counter({
    name: `${prefix}_http_requests_total`,
    help: 'HTTP requests answered, by method, route template and status',
    labelNames: ['method', 'route', 'status'],
    registers: [registry],
  });
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    requests.inc({ method: req.method, route, status: String(reply.statusCode) });
    also?.(req, reply, route);
  });
}
