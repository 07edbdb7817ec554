/**
 * A benchmark run is a result only when the conditions it was meant to measure under held:
 * no loss before the failure, round trips near the unloaded ones, a machine with CPU to spare.
 * On a busy or slower machine those conditions fail, and a run that prints figures anyway
 * publishes the machine's overload as Arrow's behaviour. Every benchmark runs its checks and
 * reports a failed run as INVALID, with the reasons, instead of its figures.
 */
export interface Validity {
  valid: boolean;
  /** Every check that failed, `; `-separated; null when the run is valid. */
  invalidReason: string | null;
}

/** Collects failed checks: `check(ok, reason)` notes `reason` when `ok` is false. */
export class Checks {
  private readonly reasons: string[] = [];

  check(ok: boolean, reason: string): this {
    if (!ok) this.reasons.push(reason);
    return this;
  }

  get result(): Validity {
    return this.reasons.length === 0
      ? { valid: true, invalidReason: null }
      : { valid: false, invalidReason: this.reasons.join('; ') };
  }
}

/**
 * Machine-wide idle below this (percent of one core, summed over cores) means the machine was
 * saturated: queues, not the code under test, set the figures.
 */
export const MIN_IDLE_PCT = 10;
/** A process at this share of one core or above was CPU-bound (a router is single-threaded). */
export const SATURATED_PCT = 90;

/**
 * CPU not charged to the benchmark's own processes (other sessions, compilers), percent of one
 * core: above this the machine was not the benchmark's, and its figures measured the neighbours.
 */
export const MAX_OTHER_CPU_PCT = 30;

/** The machine-CPU checks every benchmark with a CPU sample shares. */
export function checkCpu(checks: Checks, cpu: Record<string, number>, busiest?: [string, number]): Checks {
  const other = cpu.other;
  if (other !== undefined)
    checks.check(
      other <= MAX_OTHER_CPU_PCT,
      `other processes took ${other}% of a core (> ${MAX_OTHER_CPU_PCT}%): the machine was not quiet`,
    );
  const idle = cpu.idle;
  if (idle !== undefined)
    checks.check(idle >= MIN_IDLE_PCT, `machine saturated: ${idle}% idle (< ${MIN_IDLE_PCT}% of a core)`);
  if (busiest)
    checks.check(
      busiest[1] < SATURATED_PCT,
      `${busiest[0]} CPU-bound: ${busiest[1]}% of a core (>= ${SATURATED_PCT}%)`,
    );
  return checks;
}
