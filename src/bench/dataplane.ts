import { DataPlane } from '../router/dataplane.js';
import type { Circuit } from '../store/circuit.js';
import { ForwardingTable } from '../router/table.js';
import { authToBytes, newAuthenticator } from '../wire/authenticator.js';
import { encode, OFFSET_HOP_LIMIT, PacketType } from '../wire/header.js';
import { median, round } from '../util/stats.js';
import { Checks, type Validity } from './validity.js';
import { measureTableMemory, type TableMemory } from './table-memory.js';

export interface DataPlaneBenchReport extends Validity {
  circuits: number;
  packets: number;
  runs: number;
  /** Median nanoseconds per DataPlane.process call, sockets excluded. */
  nsPerPacket: number;
  perRunNs: number[];
  /**
   * The baseline, measured in the same run: the same loop over the same packet with no ARROW
   * work (the hop-limit write and a copy of the 16-byte authenticator), ns per packet.
   */
  baselineNs: number;
  /** nsPerPacket / baselineNs. */
  ratio: number;
  /** Bytes per circuit at `circuits` circuits: the Node table, and the kernel's maps where it loads. */
  memory: TableMemory;
}

/** Runs further apart than this (max / min ns) measured the machine's noise, not the data plane. */
export const MAX_RUN_SPREAD = 1.5;
/** Fewer packets per run than this time the timer, not the work. */
export const MIN_PACKETS = 100_000;

/** The checks a run must pass to be a result. Pure, so the rules are tested on their own. */
export function validateDataPlane(r: { packets: number; perRunNs: number[] }): Validity {
  const spread = r.perRunNs.length ? Math.max(...r.perRunNs) / Math.min(...r.perRunNs) : Infinity;
  return new Checks()
    .check(r.packets >= MIN_PACKETS, `${r.packets} packets per run (< ${MIN_PACKETS})`)
    .check(r.perRunNs.length >= 3, `${r.perRunNs.length} run(s): at least 3 are needed to see noise`)
    .check(spread <= MAX_RUN_SPREAD, `runs ${round(spread, 2)}x apart (> ${MAX_RUN_SPREAD}x): a busy machine`)
    .result;
}

/**
 * The data plane's own cost per packet, without sockets: check, lookup in a table
 * of `circuits` entries, hop limit, header rewrite. Set beside `bench forward`'s
 * per-datagram cost, it shows how much of a router's budget is ARROW and how much
 * is Node's UDP I/O.
 */
export function runDataPlaneBench(opts: {
  circuits: number;
  packets: number;
  runs: number;
}): DataPlaneBenchReport {
  const table = new ForwardingTable('p');
  const circuit = (auth: string, next: string): Circuit => ({
    auth,
    owner: 'bench',
    ingressPop: 'p',
    egressPop: 'p',
    // Policed (an ingress circuit) at a rate no run reaches: the bucket's cost is measured, and it
    // admits every packet.
    bandwidthMbps: 1_000_000,
    internalAuth: '',
    internalRouters: [],
    action: { kind: 'forward', next: { addresses: ['127.0.0.1:9'], auth: next } },
    createdAt: '',
    revision: 1,
  });
  for (let i = 0; i < Math.max(0, opts.circuits - 2); i++)
    table.put(circuit(newAuthenticator(), newAuthenticator()));
  // Two circuits that rewrite to each other: the packet is valid again after every pass, as on a real path.
  const probe = newAuthenticator();
  const partner = newAuthenticator();
  table.put(circuit(probe, partner));
  table.put(circuit(partner, probe));
  let sent = 0;
  const dp = new DataPlane(table, { send: () => void sent++, deliverUdp: () => {}, deliverIp: () => false });
  const packet = encode({
    type: PacketType.Data,
    hopLimit: 255,
    authenticator: authToBytes(probe),
    sequence: 1n,
    payload: Buffer.alloc(1372),
  });
  const perRunNs: number[] = [];
  const baselineRuns: number[] = [];
  const key = Buffer.alloc(16);
  let copied = 0;
  for (let r = 0; r < opts.runs; r++) {
    // Interleaved with the measured runs, so drift spreads over both.
    const b0 = process.hrtime.bigint();
    for (let i = 0; i < opts.packets; i++) {
      packet[OFFSET_HOP_LIMIT] = 255;
      copied += packet.copy(key, 0, 4, 20);
    }
    baselineRuns.push(round(Number(process.hrtime.bigint() - b0) / opts.packets, 1));
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < opts.packets; i++) {
      packet[OFFSET_HOP_LIMIT] = 255;
      dp.process(packet, 1, '127.0.0.1');
    }
    perRunNs.push(round(Number(process.hrtime.bigint() - t0) / opts.packets, 1));
  }
  if (sent !== opts.packets * opts.runs)
    throw new Error(`data plane forwarded ${sent} of ${opts.packets * opts.runs}`);
  if (copied !== 16 * opts.packets * opts.runs) throw new Error('the baseline loop did not run');
  const nsPerPacket = median(perRunNs);
  const baselineNs = median(baselineRuns);
  const memory = measureTableMemory(opts.circuits);
  return {
    ...validateDataPlane({ packets: opts.packets, perRunNs }),
    circuits: opts.circuits,
    packets: opts.packets,
    runs: opts.runs,
    nsPerPacket,
    perRunNs,
    baselineNs,
    ratio: round(nsPerPacket / baselineNs, 2),
    memory,
  };
}

export async function runDataPlaneBenchCommand(o: {
  json?: boolean;
  circuits: number;
  packets: number;
  runs: number;
  /** Where dataplane.svg and dataplane.png (the plot) are written. */
  out: string;
}): Promise<void> {
  const r = runDataPlaneBench(o);
  if (!r.valid) process.exitCode = 1;
  printDataPlaneReport(r, o.json);
  // Loaded only now: the plotting libraries stay out of the process while it measures.
  const { dataPlaneChart, writeBenchPlotFor } = await import('./plots.js');
  await writeBenchPlotFor(dataPlaneChart(r), o, 'dataplane');
}

function printDataPlaneReport(r: DataPlaneBenchReport, json: boolean | undefined): void {
  if (json) return console.log(JSON.stringify(r));
  console.log(`DataPlane.process, ${r.circuits} circuits in the table, 1400-byte packets, no sockets`);
  if (!r.valid) return console.log(`  INVALID (not a result): ${r.invalidReason}`);
  console.log(
    `  median ${r.nsPerPacket} ns/packet over ${r.runs} runs of ${r.packets} (runs: ${r.perRunNs.join(', ')} ns)`,
  );
  console.log(
    `  baseline (same loop, no ARROW work: hop-limit write + authenticator copy) ${r.baselineNs} ns/packet; ` +
      `ratio ${r.ratio}`,
  );
  const m = r.memory;
  const met = (ok: boolean | null): string => (ok === null ? 'not measured' : ok ? 'met' : 'MISSED');
  console.log(
    `Memory per circuit at ${m.circuits} circuits (target <= ${m.target.bytesPerCircuit} B on each path):`,
  );
  console.log(`  Node table: ${m.nodeBytesPerCircuit} B (${met(m.target.nodeMet)})`);
  if ('unavailable' in m.kernel) console.log(`  kernel maps: not measured: ${m.kernel.unavailable}`);
  else
    console.log(
      `  kernel maps (circuits + slots): ${m.kernel.mapBytesPerCircuit} B (${met(m.target.kernelMet)}); ` +
        `tags map ${m.kernel.tagBytesPerTaggedCircuit} B per tagged circuit; ` +
        `the Node side's mirror of them ${m.kernel.mirrorBytesPerCircuit} B`,
    );
}
