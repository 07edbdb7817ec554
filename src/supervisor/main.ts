import { ConfigError, loadConfig } from '../util/config.js';
import { RouterConfigSchema } from '../router/config.js';
import { DEFAULT_POLICY, type SupervisePolicy } from './policy.js';
import { Supervisor, type SuperviseEvent } from './supervisor.js';

export interface SuperviseFlags {
  router: string[];
  heartbeatMs?: number;
  missed?: number;
  maxLoopLagMs?: number;
  maxRssMb?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
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
  sup.start();
  process.on('SIGUSR1', () => print({ event: 'counters', ...sup.counters, pids: sup.pids() }));
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await sup.stop();
    print({ event: 'counters', ...sup.counters });
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}
