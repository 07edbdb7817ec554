import { randomUUID } from 'node:crypto';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import {
  CircuitStats,
  CircuitView,
  ErrorResponse,
  NextHop,
  OffersResponse,
  type CreateCircuitBody,
} from '../api/portal.js';
import { answerProblem, checkAnswer } from '../api/check.js';
import { HttpClientError, httpRequest } from '../util/http-client.js';

export type Offers = Static<typeof OffersResponse>;
export type CircuitStatsView = Static<typeof CircuitStats>;
export type NextHopSpec = Static<typeof NextHop>;

export class PortalError extends Error {
  override name = 'PortalError';
  constructor(
    /** HTTP status; 0 when no answer came (network, TLS), or the answer was malformed. */
    readonly status: number,
    message: string,
    readonly portal: string,
    options?: ErrorOptions,
  ) {
    super(`${portal}: ${status ? `HTTP ${status}: ` : ''}${message}`, options);
  }
}

export interface PortalClientOptions {
  timeoutMs?: number;
  /** A CA (PEM) to verify the portal's certificate with, besides the system's and trustCa's. */
  ca?: string;
  /** Tries of a create whose answer was lost (same Idempotency-Key each time). Default 4. */
  createAttempts?: number;
}

const CircuitList = Type.Object({ circuits: Type.Array(CircuitView) });

/** A typed client for one ISP's portal API (see docs/api.md). Every answer is checked against the API schema. */
export class PortalClient {
  readonly baseUrl: string;
  private readonly o: PortalClientOptions;
  constructor(
    baseUrl: string,
    private readonly apiKey: string,
    opts: PortalClientOptions | number = {},
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.o = typeof opts === 'number' ? { timeoutMs: opts } : opts;
  }

  offers(): Promise<Offers> {
    return this.request(OffersResponse, 'GET', '/offers');
  }

  /**
   * Buys a circuit. The create carries an Idempotency-Key (a fresh one unless given), and is tried
   * again with the same key when no answer came or the store was briefly unavailable: a create whose
   * answer was lost returns the circuit it made, never a second one.
   */
  async createCircuit(body: CreateCircuitBody, opts: { idempotencyKey?: string } = {}): Promise<CircuitView> {
    const key = opts.idempotencyKey ?? randomUUID();
    const attempts = Math.max(1, this.o.createAttempts ?? 4);
    for (let i = 1; ; i++) {
      try {
        return await this.request(CircuitView, 'POST', '/circuits', body, { 'idempotency-key': key });
      } catch (err) {
        const retriable =
          err instanceof PortalError && (err.status === 503 || err.cause instanceof HttpClientError);
        if (!retriable || i >= attempts) throw err;
        await new Promise((r) => setTimeout(r, 100 * 2 ** (i - 1)));
      }
    }
  }
  chain(auth: string, next: NextHopSpec): Promise<CircuitView> {
    return this.request(CircuitView, 'POST', `/circuits/${auth}/chain`, next);
  }
  relinquish(auth: string): Promise<CircuitView> {
    return this.request(CircuitView, 'DELETE', `/circuits/${auth}`);
  }
  circuits(): Promise<{ circuits: CircuitView[] }> {
    return this.request(CircuitList, 'GET', '/circuits');
  }
  stats(auth: string): Promise<CircuitStatsView> {
    return this.request(CircuitStats, 'GET', `/circuits/${auth}/stats`);
  }

  private async request<S extends TSchema>(
    schema: S,
    method: string,
    path: string,
    body?: unknown,
    extraHeaders: Record<string, string> = {},
  ): Promise<Static<S>> {
    let res;
    try {
      res = await httpRequest(this.baseUrl + path, {
        method,
        headers: {
          authorization: `Bearer ${this.apiKey}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...extraHeaders,
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        timeoutMs: this.o.timeoutMs ?? 10_000,
        ...(this.o.ca ? { ca: this.o.ca } : {}),
      });
    } catch (err) {
      if (!(err instanceof HttpClientError)) throw err;
      throw new PortalError(0, `cannot reach portal: ${err.message}`, this.baseUrl, { cause: err });
    }
    let json: unknown;
    try {
      json = res.text ? JSON.parse(res.text) : undefined;
    } catch (err) {
      if (!(err instanceof SyntaxError)) throw err;
      throw new PortalError(res.status, `non-JSON answer: ${res.text.slice(0, 200)}`, this.baseUrl);
    }
    if (res.status < 200 || res.status >= 300) {
      const msg =
        answerProblem(ErrorResponse, json) === undefined
          ? (json as { message: string }).message
          : res.statusText;
      const retryAfter = res.headers['retry-after'];
      throw new PortalError(
        res.status,
        retryAfter ? `${msg} (Retry-After: ${retryAfter} s)` : msg,
        this.baseUrl,
      );
    }
    return checkAnswer(
      schema,
      json,
      (problem) =>
        new PortalError(res.status, `malformed answer to ${method} ${path}: ${problem}`, this.baseUrl),
    );
  }
}
