/** A token bucket: `ratePerSec` sustained, `burst` at once. */
export interface BucketConfig {
  ratePerSec: number;
  burst: number;
}

/**
 * Token buckets keyed by circuit or account, created on first use. Pure: the caller
 * passes the time. Idle buckets are forgotten so the map stays bounded.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly cfg: BucketConfig) {}

  allow(key: string, now: number): boolean {
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size > 100_000) this.prune(now);
      b = { tokens: this.cfg.burst, at: now };
      this.buckets.set(key, b);
    }
    b.tokens = Math.min(this.cfg.burst, b.tokens + ((now - b.at) / 1000) * this.cfg.ratePerSec);
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Puts back a token taken by `allow` when a later check refused the same packet. */
  refund(key: string): void {
    const b = this.buckets.get(key);
    if (b) b.tokens = Math.min(this.cfg.burst, b.tokens + 1);
  }

  private prune(now: number): void {
    const full = (this.cfg.burst / this.cfg.ratePerSec) * 1000;
    for (const [k, b] of this.buckets) if (now - b.at > full) this.buckets.delete(k);
  }
}
