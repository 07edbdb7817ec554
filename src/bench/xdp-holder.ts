/**
 * `arrow bench-xdp`: holds one of the benchmark's XDP programs (src/bench/bpf/bench.bpf.c) on
 * interfaces of the network namespace it runs in, for `arrow bench forward`'s kernel rows. An XDP
 * link lives as long as the process that made it, so the program is gone when this process is,
 * however the benchmark ends. Driven over IPC: `{op: 'count', id}` answers with the sink's counts.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { loadNative, type XdpMode } from '../router/kernel.js';
import { announceReady } from '../util/ready.js';

export const BENCH_OBJECT = fileURLToPath(new URL('../../native/bench.bpf.o', import.meta.url));
export const BENCH_PROGRAMS = ['sink', 'forward'] as const;
export type BenchProgram = (typeof BENCH_PROGRAMS)[number];

export interface SinkCount {
  op: 'count';
  id: number;
  packets: number;
  bytes: number;
}

function ifindexOf(name: string): number {
  const out = execFileSync('ip', ['-o', 'link', 'show', 'dev', name], { encoding: 'utf8' });
  const m = /^(\d+):/.exec(out);
  if (!m) throw new Error(`ip link show ${name}: no interface index in ${JSON.stringify(out)}`);
  return Number(m[1]);
}

export function runXdpHolder(program: string, interfaces: string[], mode: XdpMode): void {
  if (!(BENCH_PROGRAMS as readonly string[]).includes(program))
    throw new Error(`--program: ${JSON.stringify(program)} is not one of ${BENCH_PROGRAMS.join(', ')}`);
  if (!process.send) throw new Error('arrow bench-xdp is driven over IPC by arrow bench forward');
  const n = loadNative();
  const obj = n.open(BENCH_OBJECT);
  n.load(obj);
  const prog = n.programFd(obj, `bench_${program}`);
  for (const name of interfaces) n.attachXdp(prog, ifindexOf(name), mode);
  const sink = n.mapFd(obj, 'sink');
  const key = Buffer.alloc(4);
  const out = Buffer.alloc(16);
  process.on('message', (m: unknown) => {
    const id = (m as { id?: unknown } | null)?.id;
    if (typeof id !== 'number') return;
    const found = n.percpuSum(sink, key, 16, out);
    const reply: SinkCount = {
      op: 'count',
      id,
      packets: found ? Number(out.readBigUInt64LE(0)) : 0,
      bytes: found ? Number(out.readBigUInt64LE(8)) : 0,
    };
    process.send!(reply);
  });
  announceReady({}, async () => {
    n.close(obj);
    process.exit(0);
  });
}
