/**
 * Naming the errors we expect, and counting the ones we did not: no failure is silent.
 */

/**
 * The error's code: an errno code (`ENOENT`, `ESRCH`, `ECONNREFUSED`, ...), `TimeoutError` or
 * `AbortError` for an aborted fetch, looking through `cause` (fetch wraps socket errors).
 */
export function errorCode(err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined;
  const code = (err as NodeJS.ErrnoException).code;
  if (typeof code === 'string') return code;
  if (err.name === 'TimeoutError' || err.name === 'AbortError') return err.name;
  return errorCode(err.cause);
}

/** True when the error carries one of these codes (see errorCode). */
export function hasCode(err: unknown, ...codes: string[]): boolean {
  const code = errorCode(err);
  return code !== undefined && codes.includes(code);
}

/** A command run by execFile(Sync) that started and exited non-zero (not: could not be started). */
export function isExitStatus(err: unknown): boolean {
  return err instanceof Error && typeof (err as { status?: unknown }).status === 'number';
}

const unexpected = new Map<string, number>();

/**
 * An error we chose to survive without a specific remedy: logged on stderr with where it
 * happened, and counted per place (`unexpectedErrors()`), so it never disappears.
 */
export function noteUnexpected(where: string, err: unknown): void {
  unexpected.set(where, (unexpected.get(where) ?? 0) + 1);
  const what = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  process.stderr.write(`arrow: ${where}: ${what}\n`);
}

/** How many unexpected errors each place has survived in this process. */
export function unexpectedErrors(): Record<string, number> {
  return Object.fromEntries(unexpected);
}
