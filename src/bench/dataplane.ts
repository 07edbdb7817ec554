import { DataPlane } from '../router/dataplane.js';
import type { Circuit } from '../store/circuit.js';
import { ForwardingTable } from '../router/table.js';
import { authToBytes, newAuthenticator } from '../wire/authenticator.js';
import { encode, OFFSET_HOP_LIMIT, PacketType } from '../wire/header.js';
import { median, round } from '../util/stats.js';

export interface DataPlaneBenchReport {
  circuits: number;
  packets: number;
  runs: number;
  /** Median nanoseconds per DataPlane.process call, sockets excluded. */
  nsPerPacket: number;
  perRunNs: number[];
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
    bandwidthMbps: 1,
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
  const dp = new DataPlane(table, { send: () => void sent++, deliverUdp: () => {} });
  const packet = encode({
    type: PacketType.Data,
    hopLimit: 255,
    authenticator: authToBytes(probe),
    sequence: 1n,
    payload: Buffer.alloc(1372),
  });
  const perRunNs: number[] = [];
  for (let r = 0; r < opts.runs; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < opts.packets; i++) {
      packet[OFFSET_HOP_LIMIT] = 255;
      dp.process(packet, 1, '127.0.0.1');
    }
    perRunNs.push(round(Number(process.hrtime.bigint() - t0) / opts.packets, 1));
  }
  if (sent !== opts.packets * opts.runs)
    throw new Error(`data plane forwarded ${sent} of ${opts.packets * opts.runs}`);
  return {
    circuits: opts.circuits,
    packets: opts.packets,
    runs: opts.runs,
    nsPerPacket: median(perRunNs),
    perRunNs,
  };
}

export function runDataPlaneBenchCommand(o: {
  json?: boolean;
  circuits: number;
  packets: number;
  runs: number;
}): void {
  const r = runDataPlaneBench(o);
  if (o.json) return console.log(JSON.stringify(r));
  console.log(`DataPlane.process, ${r.circuits} circuits in the table, 1400-byte packets, no sockets`);
  console.log(
    `  median ${r.nsPerPacket} ns/packet over ${r.runs} runs of ${r.packets} (runs: ${r.perRunNs.join(', ')} ns)`,
  );
}
