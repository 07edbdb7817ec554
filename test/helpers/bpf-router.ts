// Run by test/bpf-forward.test.ts inside the router's namespace: loads the program as a router
// would, holds one circuit (an egress hop forwarding to the sink), attaches to the interface in the
// mode given, prints "attached", and on stdin's end prints the router-wide stats and exits.
import { KernelCircuits, KernelProgram, type AttachMode } from '../../src/router/kernel.js';
import { ForwardingTable } from '../../src/router/table.js';
import type { Circuit } from '../../src/store/circuit.js';

const [ifindexText, mode, circuitJson] = process.argv.slice(2);
const circuit = JSON.parse(circuitJson!) as Circuit;
const prog = KernelProgram.load({ maxCircuits: 16 });
prog.setAddress('10.0.0.1', 4000);
const kernel = new KernelCircuits(prog);
const table = new ForwardingTable('ams');
table.put(circuit);
const key = Buffer.from(circuit.internalAuth, 'hex');
const refused = kernel.put(table.lookup(key.toString('latin1'))!, key);
if (refused !== undefined) throw new Error(refused);
prog.attach(Number(ifindexText), mode as AttachMode);
process.stdout.write('attached\n');
process.stdin.resume();
process.stdin.on('end', () => {
  process.stdout.write(`${JSON.stringify(prog.stats())}\n`);
  prog.close();
});
