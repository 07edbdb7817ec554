/**
 * `arrow dashboard`'s HTTP service (docs/operations.md, "The dashboard"): the page (bundled at build
 * time into dist/dashboard by scripts/build-dashboard.mjs: no CDN, it works offline), the network's
 * snapshot as JSON, and live updates as Server-Sent Events: a `snapshot` every poll and a
 * `timeline` event the moment the collector learns of one.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import { DashboardSnapshot, type TimelineEventT } from '../api/dashboard.js';
import { createHttpApp } from '../util/http.js';
import type { Logger } from '../util/log.js';
import type { Collector } from './collector.js';

/** Where the build puts the page: dist/dashboard, beside dist/src. */
export const DASHBOARD_ASSETS = fileURLToPath(new URL('../../dashboard/', import.meta.url));

/** An idle event stream gets a comment this often, so proxies and browsers keep it open. */
const SSE_KEEPALIVE_MS = 15_000;

export interface DashboardServer {
  app: FastifyInstance;
  url: string;
  close(): Promise<void>;
}

export async function startDashboardServer(
  collector: Collector,
  o: { host: string; port: number; logger: Logger | false },
): Promise<DashboardServer> {
  if (!existsSync(`${DASHBOARD_ASSETS}index.html`))
    throw new Error(`the dashboard page is not built (no ${DASHBOARD_ASSETS}index.html): run npm run build`);
  const app = await createHttpApp({
    title: 'Arrow dashboard',
    description: 'The live state of an Arrow network (docs/operations.md)',
    logger: o.logger,
    bodyLimit: 1024,
  });
  await app.register(fastifyStatic, { root: DASHBOARD_ASSETS, prefix: '/', schemaHide: true });
  app.get(
    '/api/snapshot',
    {
      schema: {
        summary:
          'the network now: routers, components, the customer view, the timeline and the charts history',
        response: { 200: DashboardSnapshot },
      },
    },
    async () => collector.snapshot(),
  );
  const streams = new Set<() => void>();
  const events = {
    summary:
      'Server-Sent Events (text/event-stream): `snapshot` (as /api/snapshot) every poll, `timeline` (one TimelineEvent) as each happens',
  };
  app.get('/api/events', { schema: events }, (req, reply) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
    });
    const send = (event: string, data: unknown): void => {
      res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    send('snapshot', collector.snapshot());
    const onSnapshot = (s: unknown): void => send('snapshot', s);
    const onTimeline = (e: TimelineEventT): void => send('timeline', e);
    collector.on('snapshot', onSnapshot);
    collector.on('timeline', onTimeline);
    const keepalive = setInterval(() => res.write(': keepalive\n\n'), SSE_KEEPALIVE_MS);
    const end = (): void => {
      clearInterval(keepalive);
      collector.off('snapshot', onSnapshot);
      collector.off('timeline', onTimeline);
      streams.delete(end);
      res.end();
    };
    streams.add(end);
    req.raw.once('close', end);
  });
  const address = await app.listen({ host: o.host, port: o.port });
  const url = address.replace('://[::1]', '://localhost');
  return {
    app,
    url,
    async close() {
      for (const end of [...streams]) end();
      await app.close();
    },
  };
}
