import { ConfigError, loadConfig } from '../util/config.js';
import { RouterConfigSchema } from '../router/config.js';
import { DEFAULT_POLICY, type SupervisePolicy } from './policy.js';
import { Supervisor, type SuperviseEvent } from './supervisor.js';
import { registerSupervisorMetrics } from './metrics.js';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { startAdmin } from '../admin/server.js';
import { adminOpenApi, DEFAULT_ADMIN_LISTEN } from '../api/admin.js';
import { createLogger } from '../util/log.js';
import { startHeartbeat } from '../util/heartbeat.js';

export interface SuperviseFlags {
  router: string[];
  heartbeatMs?: number;
  missed?: number;
  maxLoopLagMs?: number;
  maxRssMb?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** The admin API's address (default loopback, a port the kernel picks). */
  admin?: string;
}

/**
 * `arrow supervise --router FILE…`: runs each router under the failure detector until SIGINT or
 * SIGTERM, printing every action as a JSON line (docs/supervise.md). SIGUSR1 prints the counters.
 */
export async function runSupervise(o: SuperviseFlags): Promise<void> {
  if (o.router.length === 0) throw new ConfigError('give at least one --router CONFIG');
  // Checked here, with the router's own parser: a config that can never start is an error now,
  // not a child restarted forever with ever longer waits.
  for (const config of o.router) loadConfig(RouterConfigSchema, config);
  const policy: SupervisePolicy = {
    ...DEFAULT_POLICY,
    heartbeatMs: o.heartbeatMs ?? DEFAULT_POLICY.heartbeatMs,
    missed: o.missed ?? DEFAULT_POLICY.missed,
    maxLoopLagMs: o.maxLoopLagMs ?? DEFAULT_POLICY.maxLoopLagMs,
    maxRssMb: o.maxRssMb ?? DEFAULT_POLICY.maxRssMb,
    backoff: {
      ...DEFAULT_POLICY.backoff,
      initialMs: o.backoffInitialMs ?? DEFAULT_POLICY.backoff.initialMs,
      maxMs: o.backoffMaxMs ?? DEFAULT_POLICY.backoff.maxMs,
    },
  };
  if (policy.backoff.maxMs < policy.backoff.initialMs)
    throw new ConfigError('--backoff-max-ms must be at least --backoff-initial-ms');
  const sup = new Supervisor(
    o.router.map((config) => ({ name: config, args: ['router', '--config', config] })),
    policy,
  );
  const print = (e: SuperviseEvent | Record<string, unknown>): void =>
    console.log(JSON.stringify({ at: new Date().toISOString(), ...e }));
  sup.on('event', print);
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  registerSupervisorMetrics(registry, sup);
  const log = createLogger('supervise');
  const admin = await startAdmin(
    { listen: o.admin ?? DEFAULT_ADMIN_LISTEN },
    {
      service: 'supervisor',
      openapi: adminOpenApi('supervisor'),
      name: 'supervise',
      registry,
      status: () => ({ counters: sup.counters, children: sup.snapshot() }),
      logLevel: () => log.level,
      setLogLevel: (level) => {
        log.level = level;
      },
    },
    log,
  );
  print({ event: 'admin', url: admin.url });
  sup.start();
  // systemd's watchdog over the supervisor itself (deploy/arrow-supervise.service).
  const stopHeartbeat = startHeartbeat((err) => log.warn({ err: err.message }, 'sd_notify failed'));
  process.on('SIGUSR1', () => print({ event: 'counters', ...sup.counters, pids: sup.pids() }));
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    stopHeartbeat();
    await sup.stop();
    await admin.close();
    print({ event: 'counters', ...sup.counters });
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}
