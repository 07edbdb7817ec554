import { loadConfig, ConfigError } from '../util/config.js';
import { createLogger } from '../util/log.js';
import { openStore } from '../store/open.js';
import { mustParseAddress } from '../wire/address.js';
import { announceReady } from '../util/ready.js';
import { checkPortalConfig, PortalConfigSchema } from './config.js';
import { buildPortal } from './server.js';

/** `arrow portal --config FILE`: serve the ISP's HTTP API until SIGINT/SIGTERM. */
export async function runPortal(configPath: string): Promise<void> {
  const config = loadConfig(PortalConfigSchema, configPath);
  const problems = checkPortalConfig(config);
  if (problems.length) throw new ConfigError(`invalid config ${configPath}:\n  ${problems.join('\n  ')}`);
  const log = createLogger(`portal-${config.isp}`);
  const store = await openStore(config.store, { isp: config.isp });
  const app = await buildPortal({ config, store, logger: log });
  const at = mustParseAddress(config.listen, { bind: true });
  await app.listen({ host: at.host, port: at.port });
  const addr = app.server.address();
  const url = typeof addr === 'object' && addr ? `http://${addr.address}:${addr.port}` : String(addr);
  log.info({ url, isp: config.isp }, 'portal up');
  const shutdown = async (): Promise<void> => {
    await app.close();
    await store.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void shutdown());
  process.once('SIGTERM', () => void shutdown());
  announceReady({ url }, shutdown);
  if (!process.send) console.log(`portal ${config.isp} listening on ${url}`);
}
