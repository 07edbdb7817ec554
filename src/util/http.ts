import { readFileSync } from 'node:fs';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import { Type, type Static } from '@sinclair/typebox';
import type { Logger } from './log.js';
import { addressFormatMessage, addressFormats } from './address-schema.js';
import { ConfigError } from './config.js';
import { mustParseAddress } from '../wire/address.js';
import { isLoopback } from './loopback.js';

/** `tls:` in a service's config: PEM files of its certificate (chain) and private key. */
export const TlsConfigSchema = Type.Object(
  {
    cert: Type.String({ minLength: 1, description: 'PEM certificate file (leaf first, then intermediates)' }),
    key: Type.String({ minLength: 1, description: 'PEM private key file' }),
  },
  { additionalProperties: false, description: 'serve HTTPS with this certificate (docs/operations.md)' },
);
export type TlsConfig = Static<typeof TlsConfigSchema>;

export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
}

/** Reads the certificate and key a config names; a missing file is a config error naming it. */
export function loadTls(tls: TlsConfig | undefined): TlsMaterial | undefined {
  if (!tls) return undefined;
  const read = (what: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new ConfigError(`cannot read TLS ${what} ${path}: ${(err as Error).message}`);
    }
  };
  return { cert: read('certificate', tls.cert), key: read('key', tls.key) };
}

export { isLoopback } from './loopback.js';

/**
 * Starts a service on `listen`: HTTPS when the app was built with TLS; plain HTTP only on loopback
 * (with a warning line), or elsewhere when the config says `allowPlainHttp`. Returns its base URL.
 */
export async function listenHttp(
  app: FastifyInstance,
  o: {
    service: string;
    listen: string;
    tls: boolean;
    allowPlainHttp?: boolean | undefined;
    log: Logger;
  },
): Promise<string> {
  const at = mustParseAddress(o.listen, { bind: true });
  if (!o.tls && !isLoopback(at.host) && !o.allowPlainHttp)
    throw new ConfigError(
      `${o.service}: refusing plain HTTP on ${o.listen}, which is not loopback (API keys would cross the network in clear); configure tls: {cert, key}, or set allowPlainHttp: true`,
    );
  await app.listen({ host: at.host, port: at.port });
  const addr = app.server.address();
  const scheme = o.tls ? 'https' : 'http';
  const host = typeof addr === 'object' && addr ? addr.address : at.host;
  const url = `${scheme}://${host.includes(':') ? `[${host}]` : host}:${typeof addr === 'object' && addr ? addr.port : at.port}`;
  if (!o.tls) {
    const warning = `${o.service}: plain HTTP without TLS on ${url}${isLoopback(at.host) ? ' (loopback, for development)' : ' (allowPlainHttp)'}; configure tls: {cert, key} to serve HTTPS`;
    o.log.warn({ url }, warning);
    console.error(`warning: ${warning}`);
  }
  return url;
}

export interface HttpAppOptions {
  title: string;
  description: string;
  logger: Logger | false;
  bodyLimit: number;
  /** OpenAPI security schemes, e.g. bearer API keys. */
  securitySchemes?: Record<string, { type: 'http'; scheme: string }>;
  /** Serve HTTPS with this certificate and key (loadTls). */
  tls?: TlsMaterial | undefined;
  /** Errors the service raises on purpose: their status and the message to show. */
  clientError?: (err: Error) => { statusCode: number; message: string } | undefined;
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  503: 'Service Unavailable',
};

interface AjvLike {
  addFormat(name: string, format: { type: 'string'; validate: (text: string) => boolean }): unknown;
}

/** The address formats of src/util/address-schema.ts, checked by the one parser. */
function registerAddressFormats<A extends AjvLike>(ajv: A): A {
  for (const [name, validate] of Object.entries(addressFormats))
    ajv.addFormat(name, { type: 'string', validate });
  return ajv;
}

interface ValidationIssue {
  keyword?: string;
  instancePath?: string;
  params?: { format?: string };
  data?: unknown;
}

/**
 * Fastify's message, or when an address failed its format, the parser's own explanation
 * prefixed by where it was. Inside a union (`deliver`), the branch that failed on an
 * address is the one the client meant, so that error wins over the other branches'.
 */
function validationMessage(validation: unknown, context: string | undefined, fallback: string): string {
  const issues = Array.isArray(validation) ? (validation as ValidationIssue[]) : [];
  for (const issue of issues) {
    if (issue.keyword !== 'format' || !issue.params?.format) continue;
    const why = addressFormatMessage(issue.params.format, issue.data);
    if (!why) continue;
    const where = [context, ...(issue.instancePath ?? '').split('/').filter(Boolean)]
      .filter(Boolean)
      .join('.');
    return where ? `${where}: ${why}` : why;
  }
  return fallback;
}

export function statusText(code: number): string {
  return STATUS_TEXT[code] ?? 'Error';
}

/**
 * A fastify app as every Arrow HTTP service wants it: strict validation (no coercion, no
 * silently dropped fields), `{statusCode, error, message}` for every error, a 404 that points
 * at the OpenAPI document, `/openapi.json` and `/healthz`. Routes are added by the caller.
 */
export async function createHttpApp(o: HttpAppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: o.logger || undefined,
    // Reject what we do not understand rather than silently dropping or coercing it.
    ajv: {
      // `verbose` keeps the offending value in each error, so a bad address is explained in the parser's words.
      customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false, verbose: true },
      plugins: [registerAddressFormats],
    },
    bodyLimit: o.bodyLimit,
    // Responses are serialized against the same schemas: the serializer's own Ajv needs the formats too.
    serializerOpts: {
      ajv: {
        formats: Object.fromEntries(
          Object.entries(addressFormats).map(([name, validate]) => [name, { type: 'string', validate }]),
        ),
      },
    },
    // Three synchronous log lines per request cost ~15% of a create; services log what matters themselves.
    logController: new LogController({ disableRequestLogging: true }),
    ...(o.tls ? { https: { cert: o.tls.cert, key: o.tls.key } } : {}),
  }) as unknown as FastifyInstance;
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: o.title, version: '1', description: o.description },
      ...(o.securitySchemes ? { components: { securitySchemes: o.securitySchemes } } : {}),
    },
  });
  app.setErrorHandler(
    (err: Error & { statusCode?: number; validation?: unknown; validationContext?: string }, req, reply) => {
      const known = o.clientError?.(err);
      if (known)
        return reply.code(known.statusCode).send({
          statusCode: known.statusCode,
          error: statusText(known.statusCode),
          message: known.message,
        });
      if (err.validation) {
        const message = validationMessage(err.validation, err.validationContext, err.message);
        return reply.code(400).send({ statusCode: 400, error: statusText(400), message });
      }
      if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
        const code = err.statusCode ?? 400;
        return reply.code(code).send({ statusCode: code, error: statusText(code), message: err.message });
      }
      req.log.error({ err }, 'unhandled error');
      return reply.code(500).send({
        statusCode: 500,
        error: 'Internal Server Error',
        message: 'internal error; see the service log',
      });
    },
  );
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({
      statusCode: 404,
      error: 'Not Found',
      message: `no route ${req.method} ${req.url}; see /openapi.json`,
    }),
  );
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  return app;
}
