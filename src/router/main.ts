import { loadConfig } from '../util/config.js';
import { createLogger } from '../util/log.js';
import { announceReady } from '../util/ready.js';
import { startHeartbeat } from '../util/heartbeat.js';
import { RouterConfigSchema } from './config.js';
import { Router } from './router.js';
import { dataplaneText, type DataplaneMode } from './dataplane-mode.js';

/** `arrow router --config FILE [--dataplane MODE]`: forward ARROW packets until SIGINT/SIGTERM. */
export async function runRouter(configPath: string, o: { dataplane?: DataplaneMode } = {}): Promise<void> {
  const config = loadConfig(RouterConfigSchema, configPath);
  if (o.dataplane) config.dataplane = o.dataplane;
  const log = createLogger(`router-${config.name}`);
  const router = new Router(config, log);
  if (config.announceTable && process.send) {
    // Wall-clock ms with sub-ms precision, comparable across processes on one host.
    const now = (): number => performance.timeOrigin + performance.now();
    router.onTableChange = (e) =>
      process.send?.({
        event: 'table',
        type: e.type,
        revision: e.revision,
        auth: e.type === 'put' ? e.circuit.auth : e.type === 'delete' ? e.auth : undefined,
        at: now(),
      });
  }
  if (process.send) {
    // A parent (the lab, a benchmark) learns of every dead verdict as a structured event,
    // stamped like the table events: wall-clock ms, comparable across processes on one host.
    router.onNeighbourDead = (e) =>
      process.send?.({ event: 'neighbour-dead', ...e, at: performance.timeOrigin + performance.now() });
  }
  await router.start();
  // Proof of life from the forwarding thread, for `arrow supervise` or systemd's watchdog.
  const stopHeartbeat = startHeartbeat((err) => log.warn({ err: err.message }, 'sd_notify failed'));
  const shutdown = async (): Promise<void> => {
    stopHeartbeat();
    await router.stop();
    process.exit(0);
  };
  process.once('SIGINT', () => void shutdown());
  process.once('SIGTERM', () => void shutdown());
  const d = router.dataplaneStatus;
  announceReady(
    {
      address: router.address,
      ...(router.adminUrl ? { admin: router.adminUrl } : {}),
      dataplane: {
        mode: d.mode,
        reason: d.reason,
        ...(d.interface ? { interface: d.interface } : {}),
        ...(d.attach ? { attach: d.attach } : {}),
      },
    },
    shutdown,
  );
  if (!process.send)
    console.log(
      `router ${config.name} (${config.isp}/${config.pop}) forwarding on ${router.address}; data plane: ${dataplaneText(d)}; admin API ${router.adminUrl}`,
    );
}
