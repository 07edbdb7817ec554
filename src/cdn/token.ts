import { timingSafeEqual } from 'node:crypto';

/**
 * The secret the CDN's controller and caches share (`--token`, ARROW_CDN_TOKEN): whoever holds it
 * may have a cache send echoes to an address of their choosing.
 */

/** Whether `header` is `Bearer <token>`, compared in constant time. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const want = Buffer.from(`Bearer ${token}`);
  const got = Buffer.from(header ?? '');
  return got.length === want.length && timingSafeEqual(got, want);
}
