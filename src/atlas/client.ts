import type { TSchema, Static } from '@sinclair/typebox';
import type { PathAnswer, PathQuery } from './query.js';
import { AtlasMapViewSchema, MeasurementsSchema, PathAnswerSchema, type AtlasMapView } from '../api/atlas.js';
import { ErrorResponse } from '../api/portal.js';
import { answerProblem, checkAnswer } from '../api/check.js';
import { HttpClientError, httpRequest } from '../util/http-client.js';

export type { AtlasMapView };
export type Measurements = Static<typeof MeasurementsSchema>;

export class AtlasError extends Error {
  override name = 'AtlasError';
}

/** A typed client for the atlas API (docs/atlas.md). Every answer is checked against src/api/atlas.ts. */
export class AtlasClient {
  readonly baseUrl: string;
  constructor(
    baseUrl: string,
    private readonly timeoutMs = 10_000,
    /** A CA (PEM) to verify the atlas's certificate with, besides the system's and trustCa's. */
    private readonly ca?: string,
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
  }

  map(): Promise<AtlasMapView> {
    return this.request(AtlasMapViewSchema, 'GET', '/map');
  }

  measurements(): Promise<Measurements> {
    return this.request(MeasurementsSchema, 'GET', '/measurements');
  }

  async paths(q: PathQuery): Promise<PathAnswer> {
    // The schema admits null for a cut pair's latency (JSON has no Infinity); the engine's type says number.
    return (await this.request(PathAnswerSchema, 'POST', '/paths', q)) as PathAnswer;
  }

  private async request<S extends TSchema>(
    schema: S,
    method: string,
    path: string,
    body?: unknown,
  ): Promise<Static<S>> {
    let res;
    try {
      res = await httpRequest(this.baseUrl + path, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        timeoutMs: this.timeoutMs,
        ...(this.ca ? { ca: this.ca } : {}),
      });
    } catch (err) {
      if (!(err instanceof HttpClientError)) throw err;
      throw new AtlasError(`atlas ${this.baseUrl} unreachable: ${err.message}`, { cause: err });
    }
    let json: unknown;
    try {
      json = JSON.parse(res.text);
    } catch (err) {
      if (!(err instanceof SyntaxError)) throw err;
      throw new AtlasError(
        `atlas ${this.baseUrl}: HTTP ${res.status}: non-JSON answer to ${method} ${path}: ${res.text.slice(0, 200)}`,
      );
    }
    if (res.status < 200 || res.status >= 300) {
      const msg =
        answerProblem(ErrorResponse, json) === undefined
          ? (json as { message: string }).message
          : res.statusText;
      throw new AtlasError(`atlas ${this.baseUrl}: HTTP ${res.status}: ${msg}`);
    }
    return checkAnswer(
      schema,
      json,
      (problem) => new AtlasError(`atlas ${this.baseUrl}: malformed answer to ${method} ${path}: ${problem}`),
    );
  }
}
