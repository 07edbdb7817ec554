/**
 * The admin API every daemon serves (docs/operations.md, "The admin API"), apart from its customer
 * API: `/metrics` (Prometheus text, prom-client), `/status` (who it is, how long it has run, its
 * own state) and `/log/level` (GET and PUT). Unauthenticated, so it binds to loopback unless the
 * config says otherwise (plain HTTP off loopback needs `allowPlainHttp`, as for every service).
 */
import { Type } from '@sinclair/typebox';
import type { Registry } from 'prom-client';
import {
  AdminStatusSchema,
  LogLevelSchema,
  type AdminConfig,
  type AdminStatus,
  type LogLevel,
} from '../api/admin.js';
import { createHttpApp, listenHttp } from '../util/http.js';
import type { Logger } from '../util/log.js';
import { VERSION } from '../util/version.js';

/** What a daemon hands the admin server: its metrics, its state, and its log level. */
export interface AdminService {
  service: AdminStatus['service'];
  name: string;
  registry: Registry;
  /** The daemon's own state for `/status` (`detail`). */
  status(): Record<string, unknown>;
  logLevel(): string;
  setLogLevel(level: LogLevel): void;
}

export interface AdminServer {
  url: string;
  close(): Promise<void>;
}

const STARTED_AT = new Date();

export async function startAdmin(config: AdminConfig, svc: AdminService, log: Logger): Promise<AdminServer> {
  const app = await createHttpApp({
    title: `Arrow ${svc.service} admin API`,
    description: 'Metrics, status and log level of one Arrow daemon (docs/operations.md)',
    logger: false,
    bodyLimit: 1024,
  });
  // Plain JSON.stringify for answers: fast-json-stringify would compile a serializer per response
  // schema at start, which took seconds on a loaded host (the schemas still document the API).
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  app.get(
    '/metrics',
    {
      schema: {
        summary: 'Prometheus metrics (text exposition format)',
        response: { 200: Type.String() },
      },
    },
    async (_req, reply) => {
      const text = await svc.registry.metrics();
      return reply.type(svc.registry.contentType).send(text);
    },
  );
  app.get(
    '/status',
    { schema: { summary: 'who this daemon is and its state', response: { 200: AdminStatusSchema } } },
    () => {
      const status: AdminStatus = {
        service: svc.service,
        name: svc.name,
        version: VERSION,
        pid: process.pid,
        startedAt: STARTED_AT.toISOString(),
        uptimeSeconds: Math.round(process.uptime() * 1000) / 1000,
        logLevel: svc.logLevel(),
        detail: svc.status(),
      };
      return status;
    },
  );
  app.get('/log/level', { schema: { summary: 'the log level', response: { 200: LogLevelSchema } } }, () => ({
    level: svc.logLevel() as LogLevel,
  }));
  app.put(
    '/log/level',
    { schema: { summary: 'set the log level', body: LogLevelSchema, response: { 200: LogLevelSchema } } },
    (req) => {
      const { level } = req.body as { level: LogLevel };
      svc.setLogLevel(level);
      log.warn({ level }, 'log level set through the admin API');
      return { level };
    },
  );
  app.get('/healthz', { schema: { hide: true } }, async () => ({ ok: true }));
  const url = await listenHttp(app, {
    service: `${svc.service} admin API`,
    listen: config.listen,
    tls: false,
    allowPlainHttp: config.allowPlainHttp,
    log,
    plainOnLoopbackExpected: true,
  });
  log.info({ url }, 'admin API up: /metrics, /status, /log/level');
  return { url, close: () => app.close() };
}
