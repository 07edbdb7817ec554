import type { Static } from '@sinclair/typebox';
import type { CircuitStats, CircuitView, CreateCircuitBody, NextHop, OffersResponse } from '../api/portal.js';

export type Offers = Static<typeof OffersResponse>;
export type CircuitStatsView = Static<typeof CircuitStats>;
export type NextHopSpec = Static<typeof NextHop>;

export class PortalError extends Error {
  override name = 'PortalError';
  constructor(
    readonly status: number,
    message: string,
    readonly portal: string,
  ) {
    super(`${portal}: ${status ? `HTTP ${status}: ` : ''}${message}`);
  }
}

/** A typed client for one ISP's portal API (see docs/api.md). */
export class PortalClient {
  readonly baseUrl: string;
  constructor(
    baseUrl: string,
    private readonly apiKey: string,
    private readonly timeoutMs = 10_000,
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
  }

  offers(): Promise<Offers> {
    return this.request('GET', '/offers');
  }
  createCircuit(body: CreateCircuitBody): Promise<CircuitView> {
    return this.request('POST', '/circuits', body);
  }
  chain(auth: string, next: NextHopSpec): Promise<CircuitView> {
    return this.request('POST', `/circuits/${auth}/chain`, next);
  }
  relinquish(auth: string): Promise<CircuitView> {
    return this.request('DELETE', `/circuits/${auth}`);
  }
  circuits(): Promise<{ circuits: CircuitView[] }> {
    return this.request('GET', '/circuits');
  }
  stats(auth: string): Promise<CircuitStatsView> {
    return this.request('GET', `/circuits/${auth}/stats`);
  }

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(this.baseUrl + path, {
        method,
        headers: {
          authorization: `Bearer ${this.apiKey}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new PortalError(0, `cannot reach portal: ${(err as Error).message}`, this.baseUrl);
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      throw new PortalError(res.status, `non-JSON answer: ${text.slice(0, 200)}`, this.baseUrl);
    }
    if (!res.ok) {
      const msg = (json as { message?: string } | undefined)?.message ?? res.statusText;
      throw new PortalError(res.status, msg, this.baseUrl);
    }
    return json as T;
  }
}
