import type { Server } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { alive, readState, runDir, serveControl } from '../lab/control.js';
import { ConfigError } from '../util/config.js';

/** Where `arrow demo` serves its dashboard unless told. */
const DEFAULT_DASHBOARD = '127.0.0.1:8080';

import { loadConfig } from '../util/config.js';
import { runDemo, runEchoes, stopDemo } from '../lab/demo.js';
import { demoTopology, TopologySchema } from '../lab/topology.js';

export async function runDemoCommand(o: {
  once?: boolean;
  json?: boolean;
  count: number;
  topology?: string;
  dashboard?: string | false;
}): Promise<void> {
  const topology = o.topology ? loadConfig(TopologySchema, o.topology) : demoTopology();
  const once = o.once || o.json;
  // Running until Ctrl-C, the demo is a lab like `arrow lab up`'s: the dashboard shows it, and
  // `arrow lab fail` from another shell breaks it while you watch.
  const dashboard =
    o.dashboard === false ? undefined : (o.dashboard ?? (once ? undefined : DEFAULT_DASHBOARD));
  const stateful = !once && /^[A-Za-z0-9._-]+$/.test(topology.name);
  if (stateful) {
    const running = readState(topology.name);
    if (running && alive(running.pid))
      throw new ConfigError(
        `a lab named ${topology.name} is up (pid ${running.pid}): stop it, or \`arrow lab down ${topology.name}\``,
      );
  }
  const demo = await runDemo(topology, {
    count: o.count,
    print: o.json ? undefined : (l) => console.log(l),
    progress: !o.json,
    ...(dashboard !== undefined ? { dashboard } : {}),
    state: stateful,
  });
  let control: Server | undefined;
  if (stateful) {
    demo.lab.control = join(runDir(), `${topology.name}.sock`);
    control = await serveControl(demo.lab, demo.lab.control);
    demo.lab.saveState();
  }
  if (o.json) console.log(JSON.stringify(demo.report, null, 2));
  if (once) {
    await stopDemo(demo);
    process.exit(demo.report.echo.received === demo.report.echo.sent ? 0 : 2);
  }
  if (demo.dashboard) console.log(`\nDashboard: ${demo.dashboard.url}/`);
  if (stateful) {
    const r = demo.lab.routers.find((x) => x.name !== demo.report.failover?.killed);
    console.log(
      `Break it while you watch, from another shell: arrow lab fail ${r?.name ?? 'ROUTER'} --kind kill|hang (arrow lab heal to undo; arrow status --lab ${topology.name})`,
    );
  }
  console.log(
    '\nRunning: one echo per second through the circuit. Ctrl-C relinquishes the circuits and stops every process.',
  );
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    console.log('\nRelinquishing circuits and stopping processes...');
    control?.close();
    await stopDemo(demo);
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
  for (let i = 1; !stopping; i++) {
    const r = await runEchoes(demo.conn, 1, 0, 1000);
    if (stopping) break;
    console.log(r.received ? `echo ${i}: ${r.rtts[0]!.toFixed(3)} ms` : `echo ${i}: lost`);
    demo.dashboard?.send({ op: 'rtt', ms: r.received ? Math.round(r.rtts[0]! * 1000) / 1000 : null });
    await sleep(1000);
  }
}
