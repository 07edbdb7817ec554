/**
 * The admin API every daemon serves (docs/operations.md, "The admin API"), apart from its customer
 * API: `/metrics` (Prometheus text, prom-client), `/status` (who it is, how long it has run, its
 * own state), `/log/level` (GET and PUT) and `/openapi.json`. Unauthenticated, so it binds to
 * loopback unless the config says otherwise (plain HTTP off loopback needs `allowPlainHttp`).
 *
 * Plain node:http, not fastify: four routes need no framework, and every router runs one in its
 * own thread, where loading fastify, its validators and the OpenAPI plugin cost 0.8 s of CPU per
 * router, which a loaded 2-core host paid during a lab's start (routers not ready in 20 s). The
 * one request body is checked as the schema the OpenAPI document gives says; the schemas and the
 * document are built by the caller, so this thread never loads the schema library either.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { AdminConfig, AdminStatus } from '../api/admin.js';
import { isLogLevel, LOG_LEVELS, type LogLevel } from '../api/log-levels.js';
import { ConfigError } from '../util/config-error.js';
import type { Logger } from '../util/log.js';
import { isLoopback } from '../util/loopback.js';
import { VERSION } from '../util/version.js';
import { mustParseAddress } from '../wire/address.js';

/** What a daemon hands the admin server: its metrics, its state, and its log level. */
export interface AdminService {
  service: AdminStatus['service'];
  name: string;
  registry: Registry;
  /** Its OpenAPI document, as JSON (adminOpenApi in src/api/admin.ts, built where TypeBox is loaded). */
  openapi: string;
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
const BODY_LIMIT = 1024;

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  405: 'Method Not Allowed',
  413: 'Payload Too Large',
  500: 'Internal Server Error',
};

function send(
  res: ServerResponse,
  code: number,
  body: unknown,
  type = 'application/json; charset=utf-8',
): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(code, { 'content-type': type, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function fail(res: ServerResponse, code: number, message: string): void {
  send(res, code, { statusCode: code, error: STATUS_TEXT[code] ?? 'Error', message });
}

/** The request body as text, or undefined (answered 413) when it is over the limit. */
async function readBody(req: IncomingMessage, res: ServerResponse): Promise<string | undefined> {
  let size = 0;
  const parts: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > BODY_LIMIT) {
      fail(res, 413, `body over ${BODY_LIMIT} bytes`);
      return undefined;
    }
    parts.push(chunk);
  }
  return Buffer.concat(parts).toString('utf8');
}

export async function startAdmin(config: AdminConfig, svc: AdminService, log: Logger): Promise<AdminServer> {
  const at = mustParseAddress(config.listen, { bind: true });
  if (!isLoopback(at.host) && !config.allowPlainHttp)
    throw new ConfigError(
      `${svc.service} admin API: refusing plain HTTP on ${config.listen}, which is not loopback (the admin API has no authentication); set admin.allowPlainHttp: true on a management network`,
    );
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0];
    const route = (methods: string[]): boolean => {
      if (methods.includes(req.method ?? '')) return true;
      fail(res, 405, `${req.method} ${path}: use ${methods.join(' or ')}; see /openapi.json`);
      return false;
    };
    switch (path) {
      case '/metrics':
        if (route(['GET'])) send(res, 200, await svc.registry.metrics(), svc.registry.contentType);
        return;
      case '/status': {
        if (!route(['GET'])) return;
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
        return send(res, 200, status);
      }
      case '/log/level': {
        if (!route(['GET', 'PUT'])) return;
        if (req.method === 'GET') return send(res, 200, { level: svc.logLevel() });
        const text = await readBody(req, res);
        if (text === undefined) return;
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch (err) {
          return fail(res, 400, `body is not JSON: ${(err as Error).message}`);
        }
        // The same check as LogLevelSchema's: one field, one of pino's levels.
        const level = (body as { level?: unknown } | null)?.level;
        if (typeof body !== 'object' || body === null || Object.keys(body).length !== 1 || !isLogLevel(level))
          return fail(res, 400, `body: expected {"level": ${LOG_LEVELS.map((l) => `"${l}"`).join(' | ')}}`);
        svc.setLogLevel(level);
        log.warn({ level }, 'log level set through the admin API');
        return send(res, 200, { level });
      }
      case '/openapi.json':
        if (route(['GET'])) send(res, 200, svc.openapi);
        return;
      case '/healthz':
        if (route(['GET'])) send(res, 200, { ok: true });
        return;
      default:
        return fail(res, 404, `no route ${req.method} ${path}; see /openapi.json`);
    }
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      log.error({ err: err.message, url: req.url }, 'admin API request failed');
      if (!res.headersSent) fail(res, 500, 'internal error; see the daemon log');
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  const url = `http://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`;
  log.info({ url }, 'admin API up: /metrics, /status, /log/level');
  return {
    url,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
