import type { Command } from 'commander';
import type { SpreadOptions } from '../endpoint/connection.js';
import { newSpreadKey, readSpreadKey } from '../endpoint/spread.js';
import { ConfigError } from '../util/config.js';

/** The spreading flags `arrow connect --spread K` and `arrow forward --spread` share (docs/services.md). */
export interface SpreadFlags {
  spreadKey?: string;
  overloadRtt?: number;
  overloadLoss?: number;
  spreadProbe?: number;
}

const int =
  (flag: string, min: number, max: number) =>
  (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new ConfigError(`${flag} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
    return n;
  };

export function spreadFlagOptions(c: Command): Command {
  return c
    .option(
      '--spread-key <file>',
      'with --spread: the PRF key, 32 hex digits in a file (default: a fresh random key; it never leaves this process)',
    )
    .option(
      '--overload-rtt <ms>',
      'with --spread: a probe not home within this long counts as lost (default 200)',
      int('--overload-rtt', 1, 60_000),
    )
    .option(
      '--overload-loss <pct>',
      'with --spread: an ingress point losing more than this share of its last 10 probes leaves the sequence (default 30)',
      int('--overload-loss', 0, 99),
    )
    .option(
      '--spread-probe <ms>',
      'with --spread: each ingress point is probed this often (default 100; ingress routers admit 20 probes/s)',
      int('--spread-probe', 50, 10_000),
    );
}

/** The library's SpreadOptions from the flags; a key file that does not hold a key is a ConfigError. */
export function spreadOptions(o: SpreadFlags): SpreadOptions {
  let key: Buffer;
  try {
    key = o.spreadKey ? readSpreadKey(o.spreadKey) : newSpreadKey();
  } catch (err) {
    throw new ConfigError(`--spread-key: ${(err as Error).message}`);
  }
  return {
    key,
    ...(o.spreadProbe ? { probeMs: o.spreadProbe } : {}),
    health: {
      ...(o.overloadRtt ? { maxRttMs: o.overloadRtt } : {}),
      ...(o.overloadLoss !== undefined ? { maxLossPct: o.overloadLoss } : {}),
    },
  };
}
