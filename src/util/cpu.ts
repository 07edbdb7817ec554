import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

/**
 * Per-process CPU use, read from /proc/<pid>/stat. On a small machine the benchmark's
 * processes compete for cores, and CPU shares are what tell whether the sender, a
 * relay or the sink is the bottleneck. Linux only: elsewhere the figures are absent.
 */

/** True for the error a read of /proc gives when the file is not there (the process exited, or not Linux). */
export function isGone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ESRCH';
}

/** /proc reports times in USER_HZ ticks, which the kernel ABI fixes at 100 per second. */
const TICKS_PER_SECOND = 100;

export interface CpuSample {
  /** user + system ticks per pid; a pid that cannot be read is left out. */
  ticks: Map<number, number>;
  /** Whole-machine ticks that no process is charged for: idle, and interrupt work (loopback delivery runs as softirq). */
  machine: { idle: number; irq: number } | undefined;
  at: number;
}

function readTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (comm) may contain spaces and parentheses: parse after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 overall, i.e. 11 and 12 after comm and state.
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return Number.isFinite(utime) && Number.isFinite(stime) ? utime + stime : undefined;
  } catch (err) {
    // An exited process has no figures; any other failure is a bug to see.
    if (isGone(err)) return undefined;
    throw err;
  }
}

function readMachine(): CpuSample['machine'] {
  try {
    // First line: "cpu  user nice system idle iowait irq softirq steal ...", summed over all CPUs.
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const [idle, iowait, irq, softirq] = [f[3], f[4], f[5], f[6]];
    if (idle === undefined || iowait === undefined || irq === undefined || softirq === undefined)
      return undefined;
    return { idle: idle + iowait, irq: irq + softirq };
  } catch (err) {
    // No /proc/stat: not Linux, and the machine figures are left out.
    if (isGone(err)) return undefined;
    throw err;
  }
}

export function sampleCpu(pids: number[]): CpuSample {
  const ticks = new Map<number, number>();
  for (const pid of pids) {
    const t = readTicks(pid);
    if (t !== undefined) ticks.set(pid, t);
  }
  return { ticks, machine: readMachine(), at: performance.now() };
}

/**
 * Idle and interrupt time over the machine, in percent of one core (so up to 100 x CPUs).
 * Near-zero idle says the run was CPU-bound; the interrupt share is packet delivery
 * that the per-process figures do not include.
 */
export function machinePercent(
  before: CpuSample,
  after: CpuSample,
): { idle: number; irq: number } | undefined {
  const seconds = (after.at - before.at) / 1000;
  if (!before.machine || !after.machine || seconds <= 0) return undefined;
  const pct = (d: number): number => (d / TICKS_PER_SECOND / seconds) * 100;
  return {
    idle: pct(after.machine.idle - before.machine.idle),
    irq: pct(after.machine.irq - before.machine.irq),
  };
}

/** Percent of one core each pid used between two samples (100 = one core flat out). */
export function cpuPercent(before: CpuSample, after: CpuSample): Map<number, number> {
  const seconds = (after.at - before.at) / 1000;
  const out = new Map<number, number>();
  if (seconds <= 0) return out;
  for (const [pid, t1] of after.ticks) {
    const t0 = before.ticks.get(pid);
    if (t0 !== undefined) out.set(pid, ((t1 - t0) / TICKS_PER_SECOND / seconds) * 100);
  }
  return out;
}
