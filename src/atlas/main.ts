import { DiagnosticSocket } from '../endpoint/diagnostics.js';
import { announceReady } from '../util/ready.js';
import { startHeartbeat } from '../util/heartbeat.js';
import { ConfigError, loadConfig } from '../util/config.js';
import { createLogger } from '../util/log.js';
import { mustParseAddress } from '../wire/address.js';
import { listenHttp, loadTls } from '../util/http.js';
import { trustCaFile } from '../util/http-client.js';
import { Atlas } from './atlas.js';
import { AtlasConfigSchema, checkAtlasConfig } from './config.js';
import { buildAtlasServer } from './server.js';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { startAdmin } from '../admin/server.js';
import { adminOpenApi, DEFAULT_ADMIN_LISTEN } from '../api/admin.js';

/** `arrow atlas --config FILE`: learn, measure and answer path queries until SIGINT/SIGTERM. */
export async function runAtlas(configPath: string): Promise<void> {
  const config = loadConfig(AtlasConfigSchema, configPath);
  const problems = checkAtlasConfig(config);
  if (problems.length) throw new ConfigError(`invalid config ${configPath}:\n  ${problems.join('\n  ')}`);
  const log = createLogger('atlas');
  if (config.ca) trustCaFile(config.ca);
  const listen = mustParseAddress(config.listen, { bind: true });
  // Measure from the address we serve on: routers answer the address a request names.
  const sock = await DiagnosticSocket.open({ bind: `${listen.host}:0` });
  // The socket is the prober: direct echoes, and echoes relayed by one PoP's router to another's.
  const atlas = new Atlas(config, sock, log);
  await atlas.start();
  const tls = loadTls(config.tls);
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const app = await buildAtlasServer(atlas, log, tls, registry);
  const url = await listenHttp(app, {
    service: 'atlas',
    listen: config.listen,
    tls: tls !== undefined,
    allowPlainHttp: config.allowPlainHttp,
    log,
  });
  log.info({ url, isps: config.isps.length, pairs: atlas.pairs().length }, 'atlas up');
  const admin = await startAdmin(
    config.admin ?? { listen: DEFAULT_ADMIN_LISTEN },
    {
      service: 'atlas',
      openapi: adminOpenApi('atlas'),
      name: 'atlas',
      registry,
      status: () => ({
        url,
        isps: atlas.isps.map((v) => ({ name: v.name, portal: v.portal, error: v.error ?? null })),
        pairs: atlas.pairs().length,
        probeErrors: atlas.probeErrors,
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
    atlas.stop();
    await app.close();
    await sock.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void shutdown());
  process.once('SIGTERM', () => void shutdown());
  announceReady({ url, admin: admin.url }, shutdown);
  // Proof of life for `arrow supervise` or systemd's watchdog (Type=notify, docs/operations.md).
  stopHeartbeat = startHeartbeat((err) => log.warn({ err: err.message }, 'sd_notify failed'));
  if (!process.send) console.log(`atlas listening on ${url}; admin API ${admin.url}`);
}
