/**
 * `arrow dashboard`: the live web dashboard (docs/operations.md, "The dashboard") over a running lab
 * (its state file names every admin API and process) or a list of admin URLs, optionally with a
 * customer's bought path (`arrow connect --save`). Prints the page's URL and runs until Ctrl-C.
 */
import { basename } from 'node:path';
import { Type } from '@sinclair/typebox';
import type { WatchedTarget } from '../dashboard/collector.js';
import { CustomerWatch } from '../dashboard/customer.js';
import { startDashboard } from '../dashboard/start.js';
import { applyDashboardMessage } from '../dashboard/ipc.js';
import { announceReady } from '../util/ready.js';
import { readState } from '../lab/control.js';
import { ConfigError, loadConfig } from '../util/config.js';
import { adminTargets } from './status.js';

export interface DashboardFlags {
  lab?: string;
  admin?: string[];
  path?: string;
  listen: string;
  interval: number;
}

/** A bought path as `arrow connect --save` writes it (src/endpoint/path.ts BoughtPath): what the view needs. */
const BoughtCircuitFile = Type.Object({
  segment: Type.Object({ isp: Type.Optional(Type.String()), portal: Type.String(), apiKey: Type.String() }),
  circuit: Type.Object({
    auth: Type.String({ pattern: '^[0-9a-f]{32}$' }),
    ingress: Type.Array(Type.String(), { minItems: 1 }),
    ingressPop: Type.String(),
    egressPop: Type.String(),
  }),
});
const BoughtPathFile = Type.Object({
  forward: Type.Array(BoughtCircuitFile, { minItems: 1 }),
  reverse: Type.Optional(Type.Array(BoughtCircuitFile)),
});

export async function runDashboard(o: DashboardFlags): Promise<void> {
  const targets = (): WatchedTarget[] => {
    const list: WatchedTarget[] = adminTargets(o);
    if (o.lab !== undefined) {
      // The lab's processes tell a hung router (stopped) from a dead one (gone).
      const pids = readState(o.lab)?.processes ?? {};
      for (const t of list) if (pids[t.name] !== undefined) t.pid = pids[t.name]!;
    }
    return list;
  };
  const first = targets();
  let customer: CustomerWatch | undefined;
  if (o.path !== undefined) {
    const file = loadConfig(BoughtPathFile, o.path);
    const path = { forward: file.forward, reverse: file.reverse ?? [] };
    // The portals' CA, if not a public one: `arrow --ca FILE` (or ARROW_CA) trusts it process-wide.
    customer = new CustomerWatch(path, { name: basename(o.path) });
  }
  if (o.interval < 100) throw new ConfigError('--interval must be at least 100 ms');
  const d = await startDashboard({
    targets: first,
    // A lab's state file is read again before every poll: a healed router has a new process and port.
    ...(o.lab !== undefined ? { refreshTargets: targets } : {}),
    source: o.lab !== undefined ? `lab ${o.lab}` : `${first.length} admin API(s)`,
    listen: o.listen,
    pollMs: o.interval,
    ...(customer ? { customer } : {}),
  });
  console.log(`dashboard: ${d.server.url}/  (watching ${first.length} daemons; Ctrl-C stops)`);
  const stop = async (): Promise<void> => {
    await d.stop();
    process.exit(0);
  };
  // Started by `arrow demo`: it sends the customer's view over IPC, and we stop when it goes.
  process.on('message', (m) => applyDashboardMessage(d, m));
  announceReady({ url: d.server.url }, stop);
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
  await new Promise(() => {});
}
