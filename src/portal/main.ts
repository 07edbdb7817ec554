import { loadConfig, ConfigError } from '../util/config.js';
import { createLogger } from '../util/log.js';
import { openStore } from '../store/open.js';
import { listenHttp, loadTls } from '../util/http.js';
import { announceReady } from '../util/ready.js';
import { startHeartbeat } from '../util/heartbeat.js';
import { checkPortalConfig, PortalConfigSchema } from './config.js';
import { buildPortal } from './server.js';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { startAdmin } from '../admin/server.js';
import { adminOpenApi, DEFAULT_ADMIN_LISTEN } from '../api/admin.js';

/** `arrow portal --config FILE`: serve the ISP's HTTP API until SIGINT/SIGTERM. */
export async function runPortal(configPath: string): Promise<void> {
  const config = loadConfig(PortalConfigSchema, configPath);
  const problems = checkPortalConfig(config);
  if (problems.length) throw new ConfigError(`invalid config ${configPath}:\n  ${problems.join('\n  ')}`);
  const log = createLogger(`portal-${config.isp}`);
  const store = await openStore(config.store, { isp: config.isp });
  const tls = loadTls(config.tls);
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const app = await buildPortal({ config, store, logger: log, tls, registry });
  const url = await listenHttp(app, {
    service: `portal ${config.isp}`,
    listen: config.listen,
    tls: tls !== undefined,
    allowPlainHttp: config.allowPlainHttp,
    log,
  });
  log.info({ url, isp: config.isp }, 'portal up');
  const admin = await startAdmin(
    config.admin ?? { listen: DEFAULT_ADMIN_LISTEN },
    {
      service: 'portal',
      openapi: adminOpenApi('portal'),
      name: config.isp,
      registry,
      status: () => ({
        isp: config.isp,
        url,
        store: config.store.kind,
        pops: config.pops.map((p) => p.name),
        offers: config.offers.length,
      }),
      logLevel: () => log.level,
      setLogLevel: (level) => {
        log.level = level;
      },
    },
    log,
  );
  let stopHeartbeat = (): void => undefined;
  const shutdown = async (): Promise<void> => {
    stopHeartbeat();
    await admin.close();
    await app.close();
    await store.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void shutdown());
  process.once('SIGTERM', () => void shutdown());
  announceReady({ url, admin: admin.url }, shutdown);
  // Proof of life for `arrow supervise` or systemd's watchdog (Type=notify, docs/operations.md).
  stopHeartbeat = startHeartbeat((err) => log.warn({ err: err.message }, 'sd_notify failed'));
  if (!process.send) console.log(`portal ${config.isp} listening on ${url}; admin API ${admin.url}`);
}
