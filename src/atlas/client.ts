import type { PathAnswer, PathQuery } from './query.js';
import type { AtlasOffer, AtlasPeering, AtlasPop, AtlasTarget } from './model.js';

export interface AtlasMapView {
  isps: { name: string; portal: string; fetchedAt: string | null; error: string | null }[];
  pops: AtlasPop[];
  offers: AtlasOffer[];
  peerings: AtlasPeering[];
  targets: AtlasTarget[];
}

export class AtlasError extends Error {
  override name = 'AtlasError';
}

/** A typed client for the atlas API (docs/atlas.md). */
export class AtlasClient {
  readonly baseUrl: string;
  constructor(
    baseUrl: string,
    private readonly timeoutMs = 10_000,
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
  }

  map(): Promise<AtlasMapView> {
    return this.request('GET', '/map');
  }

  paths(q: PathQuery): Promise<PathAnswer> {
    return this.request('POST', '/paths', q);
  }

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(this.baseUrl + path, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new AtlasError(`atlas ${this.baseUrl} unreachable: ${(err as Error).message}`);
    }
    const json = (await res.json().catch(() => ({}))) as { message?: string };
    if (!res.ok)
      throw new AtlasError(`atlas ${this.baseUrl}: HTTP ${res.status}: ${json.message ?? res.statusText}`);
    return json as T;
  }
}
