import { execFileSync } from 'node:child_process';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { pino } from 'pino';
import { ForwardingTable } from '../router/table.js';
import { KernelMirror } from '../router/kernel-mirror.js';
import { KernelProgram, KernelUnavailable } from '../router/kernel.js';
import type { Circuit } from '../store/circuit.js';
import { newAuthenticator } from '../wire/authenticator.js';
import { round } from '../util/stats.js';

/** The target for each path: bytes per circuit at 1 M circuits. */
export const BYTES_PER_CIRCUIT_TARGET = 200;
/** Tagged circuits the kernel's tags map is sized for here: it is preallocated, 360 B an entry. */
const TAGGED_CAPACITY = 1024;

export interface KernelMemory {
  /** Bytes of the circuits and slots maps (bytes_memlock, from bpftool) per circuit they hold. */
  mapBytesPerCircuit: number;
  /** The tags map per tagged circuit it can hold (only ingress circuits that require tags). */
  tagBytesPerTaggedCircuit: number;
  /** Each map: its bytes and capacity, as `bpftool map show` gives them. */
  maps: Record<string, { bytes: number; maxEntries: number }>;
  /** What the Node process keeps per circuit beside the table to mirror it into the kernel. */
  mirrorBytesPerCircuit: number;
}

export interface TableMemory {
  circuits: number;
  /** The Node path: ForwardingTable's heap and buffers per circuit (after a full GC). */
  nodeBytesPerCircuit: number;
  /** The kernel path, or why it could not be measured (no root, no BPF, no addon). */
  kernel: KernelMemory | { unavailable: string };
  target: { bytesPerCircuit: number; nodeMet: boolean; kernelMet: boolean | null };
}

/** A full collection, so that the heap measured is what is reachable. */
const collect = ((): (() => void) => {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
})();

function heapBytes(): number {
  collect();
  collect();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

/** A policed ingress circuit that forwards to another ISP: the common kind, and the kernel takes it. */
function circuit(i: number): Circuit {
  return {
    auth: newAuthenticator(),
    owner: 'bench',
    ingressPop: 'p',
    egressPop: 'p',
    bandwidthMbps: 10,
    internalAuth: '',
    internalRouters: [],
    action: {
      kind: 'forward',
      next: {
        addresses: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:4000`],
        auth: newAuthenticator(),
      },
    },
    createdAt: '2026-12-01T00:00:00.000Z',
    revision: 1,
  };
}

/** Fills a table with `n` circuits, as the store's snapshot would. */
function fill(table: ForwardingTable, n: number): void {
  for (let i = 0; i < n; i++) table.put(circuit(i));
}

/** The Node table's bytes per circuit; the table is garbage once this returns. */
function nodeTableBytes(circuits: number): number {
  const before = heapBytes();
  const table = new ForwardingTable('p');
  fill(table, circuits);
  const used = heapBytes() - before;
  if (table.circuits !== circuits)
    throw new Error(`the table holds ${table.circuits} of ${circuits} circuits`);
  return round(used / circuits, 1);
}

/** One map's bytes and capacity, by id, from bpftool (the kernel's own accounting). */
function mapInfo(id: number): { name: string; bytes: number; maxEntries: number } {
  const j = JSON.parse(
    execFileSync('bpftool', ['-j', 'map', 'show', 'id', String(id)], { encoding: 'utf8' }),
  ) as {
    name: string;
    bytes_memlock: number;
    max_entries: number;
  };
  return { name: j.name, bytes: j.bytes_memlock, maxEntries: j.max_entries };
}

function programMapIds(progId: number): number[] {
  const j = JSON.parse(
    execFileSync('bpftool', ['-j', 'prog', 'show', 'id', String(progId)], { encoding: 'utf8' }),
  ) as {
    map_ids?: number[];
  };
  return j.map_ids ?? [];
}

/**
 * Bytes per circuit in the Node table, and in the kernel's maps with the Node-side mirror that
 * feeds them, at `circuits` circuits. The kernel maps are preallocated hash and array maps sized
 * for exactly `circuits`, so their bytes per circuit are what a router of that capacity pays.
 */
export function measureTableMemory(circuits: number): TableMemory {
  const nodeBytesPerCircuit = nodeTableBytes(circuits);

  let kernel: TableMemory['kernel'] = { unavailable: 'not loaded' };
  let program: KernelProgram | undefined;
  try {
    program = KernelProgram.load({ maxCircuits: circuits, maxTagged: TAGGED_CAPACITY });
  } catch (err) {
    if (!(err instanceof KernelUnavailable)) throw err;
    kernel = { unavailable: err.message };
  }
  if (program) {
    try {
      const base = heapBytes();
      const mirrored = new ForwardingTable('p');
      const mirror = new KernelMirror(program, pino({ level: 'warn' }));
      mirrored.observer = mirror;
      fill(mirrored, circuits);
      if (mirror.size !== circuits)
        throw new Error(
          `the kernel took ${mirror.size} of ${circuits} circuits: ${JSON.stringify(mirror.refusals())}`,
        );
      const withMirror = heapBytes() - base;
      const maps: KernelMemory['maps'] = {};
      for (const id of programMapIds(program.programIds().xdp)) {
        const m = mapInfo(id);
        maps[m.name] = { bytes: m.bytes, maxEntries: m.maxEntries };
      }
      const perCircuit = (maps.circuits?.bytes ?? NaN) + (maps.slots?.bytes ?? NaN);
      kernel = {
        mapBytesPerCircuit: round(perCircuit / circuits, 1),
        tagBytesPerTaggedCircuit: round((maps.tags?.bytes ?? NaN) / TAGGED_CAPACITY, 1),
        maps,
        mirrorBytesPerCircuit: round(withMirror / circuits - nodeBytesPerCircuit, 1),
      };
    } finally {
      program.close();
    }
  }
  return {
    circuits,
    nodeBytesPerCircuit,
    kernel,
    target: {
      bytesPerCircuit: BYTES_PER_CIRCUIT_TARGET,
      nodeMet: nodeBytesPerCircuit <= BYTES_PER_CIRCUIT_TARGET,
      kernelMet:
        'mapBytesPerCircuit' in kernel ? kernel.mapBytesPerCircuit <= BYTES_PER_CIRCUIT_TARGET : null,
    },
  };
}
