import { execFile } from 'node:child_process';

/**
 * A cache's round trip to a client, measured as the paper's caches did at request time: ICMP
 * echoes with the system's `ping` (iputils), which needs no privilege of ours (ping has its
 * capability or the ping group). The lowest round trip of those that came back is the path's
 * delay with the least queueing in it; a mean would mix in the machine's scheduling noise.
 */
export interface PingOptions {
  /** Echoes to send (1..10). */
  count: number;
  /** Seconds between echoes (iputils allows down to 0.002 s). */
  intervalS: number;
  /** Whole measurement's deadline, ms: ping stops there, whatever came back. */
  deadlineMs: number;
}

export interface PingResult {
  rttMs: number | null;
  sent: number;
  received: number;
}

/** `rtt min/avg/max/mdev = a/b/c/d ms` and the packet counts, from iputils ping's summary. */
export function parsePing(out: string): PingResult {
  const counts = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(out);
  const rtt = /= ([\d.]+)\/[\d.]+\/[\d.]+\/[\d.]+ ms/.exec(out);
  return {
    sent: Number(counts?.[1] ?? 0),
    received: Number(counts?.[2] ?? 0),
    rttMs: rtt ? Number(rtt[1]) : null,
  };
}

export class PingError extends Error {
  override name = 'PingError';
}

/** Pings `address` (IPv4, already validated); resolves with what came back, rejects only when ping cannot run. */
export function pingRtt(address: string, o: PingOptions): Promise<PingResult> {
  const deadlineS = Math.max(1, Math.ceil(o.deadlineMs / 1000));
  const args = ['-n', '-q', '-c', String(o.count), '-i', String(o.intervalS), '-w', String(deadlineS)];
  // -W: how long the last echo may take; the deadline (-w) bounds the whole run.
  args.push('-W', String(Math.max(0.001, o.deadlineMs / 1000)), address);
  return new Promise((resolve, reject) => {
    execFile('ping', args, { timeout: o.deadlineMs + 2000 }, (err, stdout, stderr) => {
      const r = parsePing(stdout);
      // ping exits 1 when nothing came back (a result: no answer) and 2 on errors (no result).
      if (err && !(typeof err.code === 'number' && err.code === 1 && /transmitted/.test(stdout)))
        return reject(new PingError(`ping ${address}: ${stderr.trim() || err.message}`));
      resolve(r);
    });
  });
}
