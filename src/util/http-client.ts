import { request as httpRequestRaw, type IncomingMessage } from 'node:http';
import { request as httpsRequestRaw } from 'node:https';
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';

/**
 * HTTP(S) requests for Arrow's clients (portal, atlas). Node's global fetch takes no CA option
 * (undici's Agent is not importable without the package), so this uses node:https, which does.
 * Servers are verified against the system roots plus the CAs trusted here: `--ca FILE` on the
 * command line, the lab's own CA, or one given per client.
 */

const extraCas: string[] = [];

/** Trusts `pem` (one or more CA certificates) for every client in this process. */
export function trustCa(pem: string): void {
  if (!extraCas.includes(pem)) extraCas.push(pem);
}

/** Reads a CA file and trusts it (`--ca FILE`). */
export function trustCaFile(path: string): void {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (err) {
    throw new HttpClientError(`cannot read CA file ${path}: ${(err as Error).message}`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----'))
    throw new HttpClientError(`CA file ${path} holds no PEM certificate`);
  trustCa(pem);
}

export class HttpClientError extends Error {
  override name = 'HttpClientError';
}

export interface HttpAnswer {
  status: number;
  statusText: string;
  headers: IncomingMessage['headers'];
  text: string;
}

export interface HttpRequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  timeoutMs?: number;
  /** A CA (PEM) to trust for this request, besides the system roots and trustCa's. */
  ca?: string;
}

/** TLS verification failures, in words a user can act on. */
const TLS_TRUST_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
]);

/** One request; resolves with any HTTP status, rejects (HttpClientError) only when there is no answer. */
export function httpRequest(url: string, o: HttpRequestOptions = {}): Promise<HttpAnswer> {
  let u: URL;
  try {
    u = new URL(url);
  } catch (err) {
    return Promise.reject(new HttpClientError(`bad URL ${url}: ${(err as Error).message}`));
  }
  const https = u.protocol === 'https:';
  if (!https && u.protocol !== 'http:')
    return Promise.reject(new HttpClientError(`bad URL ${url}: only http: and https: are spoken`));
  const cas = o.ca ? [...extraCas, o.ca] : extraCas;
  const body = o.body === undefined ? undefined : Buffer.from(o.body);
  return new Promise((resolve, reject) => {
    const req = (https ? httpsRequestRaw : httpRequestRaw)(
      u,
      {
        method: o.method ?? 'GET',
        headers: { ...o.headers, ...(body ? { 'content-length': String(body.length) } : {}) },
        timeout: o.timeoutMs ?? 10_000,
        ...(https && cas.length > 0 ? { ca: [...rootCertificates, ...cas] } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            statusText: res.statusMessage ?? '',
            headers: res.headers,
            text: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', (err) => reject(new HttpClientError(`${url}: answer cut off: ${err.message}`)));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${o.timeoutMs ?? 10_000} ms`)));
    req.on('error', (err: Error & { code?: string }) => {
      if (err.code && TLS_TRUST_CODES.has(err.code))
        reject(
          new HttpClientError(
            `${u.origin}: TLS certificate not trusted (${err.code}); pass --ca FILE with the CA that signed it`,
          ),
        );
      else if (err.code === 'ERR_SSL_WRONG_VERSION_NUMBER' || err.code === 'EPROTO')
        reject(
          new HttpClientError(`${u.origin}: TLS handshake failed (${err.message}); is it HTTP, not HTTPS?`),
        );
      else reject(new HttpClientError(`${u.origin}: ${err.message}`));
    });
    req.end(body);
  });
}
