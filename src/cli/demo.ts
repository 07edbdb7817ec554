import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig } from '../util/config.js';
import { runDemo, runEchoes, stopDemo } from '../lab/demo.js';
import { demoTopology, TopologySchema } from '../lab/topology.js';

export async function runDemoCommand(o: {
  once?: boolean;
  json?: boolean;
  count: number;
  topology?: string;
}): Promise<void> {
  const topology = o.topology ? loadConfig(TopologySchema, o.topology) : demoTopology();
  const once = o.once || o.json;
  const demo = await runDemo(topology, { count: o.count, print: o.json ? undefined : (l) => console.log(l) });
  if (o.json) console.log(JSON.stringify(demo.report, null, 2));
  if (once) {
    await stopDemo(demo);
    process.exit(demo.report.echo.received === demo.report.echo.sent ? 0 : 2);
  }
  console.log(
    '\nRunning: one echo per second through the circuit. Ctrl-C relinquishes the circuits and stops every process.',
  );
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    console.log('\nRelinquishing circuits and stopping processes...');
    await stopDemo(demo);
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
  for (let i = 1; !stopping; i++) {
    const r = await runEchoes(demo.conn, 1, 0, 1000);
    if (stopping) break;
    console.log(r.received ? `echo ${i}: ${r.rtts[0]!.toFixed(3)} ms` : `echo ${i}: lost`);
    await sleep(1000);
  }
}
