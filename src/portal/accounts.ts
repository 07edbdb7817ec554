import { createHash, randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/**
 * API keys as the portal stores them: `scrypt$N$r$p$SALT$HASH` (salt and hash base64url), never
 * the key itself. A leaked config then gives away no key; guessing one costs a scrypt per try.
 */
export const API_KEY_HASH_PATTERN = '^scrypt\\$\\d+\\$\\d+\\$\\d+\\$[A-Za-z0-9_-]{16,}\\$[A-Za-z0-9_-]{32,}$';

const DEFAULT_COST = { N: 16384, r: 8, p: 1 };
const HASH_BYTES = 32;

function scryptAsync(key: string, salt: Buffer, o: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(key, salt, HASH_BYTES, { ...o, maxmem: 256 * o.N! * o.r! }, (err, hash) =>
      err ? reject(err) : resolve(hash),
    ),
  );
}

/** A new random API key: 32 bytes, base64url (43 characters). */
export function newApiKey(): string {
  return randomBytes(32).toString('base64url');
}

/** The stored form of `apiKey`, with a fresh random salt. */
export async function hashApiKey(apiKey: string, cost = DEFAULT_COST): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scryptAsync(apiKey, salt, cost);
  return `scrypt$${cost.N}$${cost.r}$${cost.p}$${salt.toString('base64url')}$${hash.toString('base64url')}`;
}

interface ParsedHash {
  account: string;
  cost: { N: number; r: number; p: number };
  salt: Buffer;
  hash: Buffer;
}

function parseHash(account: string, stored: string): ParsedHash {
  if (!new RegExp(API_KEY_HASH_PATTERN).test(stored))
    throw new Error(`account ${account}: apiKeyHash is not scrypt$N$r$p$SALT$HASH`);
  const [, n, r, p, salt, hash] = stored.split('$');
  return {
    account,
    cost: { N: Number(n), r: Number(r), p: Number(p) },
    salt: Buffer.from(salt!, 'base64url'),
    hash: Buffer.from(hash!, 'base64url'),
  };
}

/** Most distinct unknown keys remembered, so a client repeating a wrong key costs no scrypt. */
const MAX_REFUSED = 1024;

/**
 * Who a bearer key belongs to. A key is checked once with scrypt against each account (timing-safe
 * compare), then remembered by its SHA-256 for the life of the process: requests after the first
 * pay a hash lookup, not a scrypt.
 */
export class AccountKeys {
  private readonly hashes: ParsedHash[];
  private readonly known = new Map<string, string>();
  private readonly refused = new Set<string>();
  private readonly pending = new Map<string, Promise<string | undefined>>();

  constructor(accounts: readonly { name: string; apiKeyHash?: string | undefined }[]) {
    this.hashes = accounts.map((a) => {
      if (!a.apiKeyHash) throw new Error(`account ${a.name} has no apiKeyHash`);
      return parseHash(a.name, a.apiKeyHash);
    });
  }

  /** The account of `apiKey`, or undefined when it is nobody's. */
  async account(apiKey: string): Promise<string | undefined> {
    const id = createHash('sha256').update(apiKey).digest('base64url');
    const hit = this.known.get(id);
    if (hit !== undefined) return hit;
    if (this.refused.has(id)) return undefined;
    let p = this.pending.get(id);
    if (!p) {
      p = this.check(apiKey).finally(() => this.pending.delete(id));
      this.pending.set(id, p);
    }
    const account = await p;
    if (account !== undefined) this.known.set(id, account);
    else {
      if (this.refused.size >= MAX_REFUSED) this.refused.delete(this.refused.values().next().value!);
      this.refused.add(id);
    }
    return account;
  }

  private async check(apiKey: string): Promise<string | undefined> {
    let found: string | undefined;
    // Every account is tried, match or not: the time taken does not say which account matched.
    for (const h of this.hashes) {
      const got = await scryptAsync(apiKey, h.salt, h.cost);
      if (got.length === h.hash.length && timingSafeEqual(got, h.hash)) found ??= h.account;
    }
    return found;
  }
}
