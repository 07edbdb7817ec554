import Fastify, { type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import type { Logger } from './log.js';
import { addressFormatMessage, addressFormats } from './address-schema.js';

export interface HttpAppOptions {
  title: string;
  description: string;
  logger: Logger | false;
  bodyLimit: number;
  /** OpenAPI security schemes, e.g. bearer API keys. */
  securitySchemes?: Record<string, { type: 'http'; scheme: string }>;
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
    disableRequestLogging: true,
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
