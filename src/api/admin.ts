import { Type, type Static } from '@sinclair/typebox';
import { BindAddressString } from '../util/address-schema.js';
import { VERSION } from '../util/version.js';

/**
 * The admin API's JSON schemas (docs/operations.md, "The admin API"), shared by every daemon that
 * serves it (src/admin/server.ts) and by its clients (`arrow status`, tests). The admin API is
 * separate from the customer API and unauthenticated: it binds to loopback unless configured.
 */

import { LOG_LEVELS } from './log-levels.js';
export { LOG_LEVELS, type LogLevel } from './log-levels.js';

export const LogLevelSchema = Type.Object(
  {
    level: Type.Union(
      LOG_LEVELS.map((l) => Type.Literal(l)),
      { description: `the log level: ${LOG_LEVELS.join(', ')}` },
    ),
  },
  { additionalProperties: false },
);
export type LogLevelBody = Static<typeof LogLevelSchema>;

export const ServiceKind = Type.Union(
  ['router', 'portal', 'atlas', 'supervisor'].map((s) => Type.Literal(s)),
  { description: 'which daemon this is' },
);

/** What every daemon says about itself; `detail` is its own (a router: data path, store, circuits). */
export const AdminStatusSchema = Type.Object(
  {
    service: ServiceKind,
    name: Type.String({ description: 'its name: a router ISP-PoP-N, a portal its ISP, ...' }),
    version: Type.String(),
    pid: Type.Integer(),
    startedAt: Type.String({ description: 'ISO time the process started' }),
    uptimeSeconds: Type.Number(),
    logLevel: Type.String(),
    detail: Type.Record(Type.String(), Type.Unknown(), {
      description: "the daemon's own state (docs/operations.md lists each daemon's fields)",
    }),
  },
  { additionalProperties: false },
);
export type AdminStatus = Static<typeof AdminStatusSchema>;

/** Where the admin API listens unless configured: loopback, a port the kernel picks. */
export const DEFAULT_ADMIN_LISTEN = '127.0.0.1:0';

/** `admin:` in a daemon's config. */
export const AdminConfigSchema = Type.Object(
  {
    listen: BindAddressString('admin API address, IP:PORT (port 0 picks one); loopback unless you mean it', {
      default: DEFAULT_ADMIN_LISTEN,
    }),
    allowPlainHttp: Type.Optional(
      Type.Boolean({ description: 'serve the admin API over plain HTTP on a non-loopback address' }),
    ),
  },
  { additionalProperties: false, description: 'the admin API: /metrics, /status, /log/level' },
);
export type AdminConfig = Static<typeof AdminConfigSchema>;

/** The API's OpenAPI document, from the schemas the server checks and answers with. */
export function adminOpenApi(service: string): string {
  const json = (schema: object): object => ({ 'application/json': { schema } });
  return JSON.stringify({
    openapi: '3.0.3',
    info: {
      title: `Arrow ${service} admin API`,
      version: VERSION,
      description: 'Metrics, status and log level of one Arrow daemon (docs/operations.md)',
    },
    paths: {
      '/metrics': {
        get: {
          summary: 'Prometheus metrics (text exposition format)',
          responses: {
            200: { description: 'metrics', content: { 'text/plain': { schema: { type: 'string' } } } },
          },
        },
      },
      '/status': {
        get: {
          summary: 'who this daemon is and its state',
          responses: { 200: { description: 'status', content: json(AdminStatusSchema) } },
        },
      },
      '/log/level': {
        get: {
          summary: 'the log level',
          responses: { 200: { description: 'level', content: json(LogLevelSchema) } },
        },
        put: {
          summary: 'set the log level',
          requestBody: { required: true, content: json(LogLevelSchema) },
          responses: {
            200: { description: 'the level now', content: json(LogLevelSchema) },
            400: { description: 'not a level' },
          },
        },
      },
    },
  });
}
