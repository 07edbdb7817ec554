import { resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { listenHttp, loadTls, type TlsMaterial } from '../util/http.js';
import { createLogger, type Logger } from '../util/log.js';
import { announceReady } from '../util/ready.js';
import { ConfigError } from '../util/config.js';
import { buildCacheServer } from '../cdn/cache.js';
import { buildControllerServer, CdnController, parseCacheSpec } from '../cdn/controller.js';

/** Flags both CDN daemons take: where to listen, and HTTPS or plain HTTP off loopback. */
export interface ServeFlags {
  listen: string;
  tlsCert?: string;
  tlsKey?: string;
  allowPlainHttp?: boolean;
}

export interface CacheFlags extends ServeFlags {
  token?: string;
  name: string;
  origin: string;
  store: string;
  pings: number;
  pingInterval: number;
  pingDeadlineMs: number;
}

export interface ControllerFlags extends ServeFlags {
  token?: string;
  cache: string[];
  measureTimeoutMs: number;
  skipMs: number;
  atlas?: string;
}

function tlsOf(f: ServeFlags): TlsMaterial | undefined {
  if ((f.tlsCert === undefined) !== (f.tlsKey === undefined))
    throw new ConfigError('--tls-cert and --tls-key go together');
  return f.tlsCert && f.tlsKey ? loadTls({ cert: f.tlsCert, key: f.tlsKey }) : undefined;
}

/** Listens, says so (stdout line and the IPC ready message), and closes on SIGINT/SIGTERM. */
async function serve(
  app: FastifyInstance,
  service: string,
  f: ServeFlags,
  tls: boolean,
  log: Logger,
): Promise<void> {
  const url = await listenHttp(app, {
    service,
    listen: f.listen,
    tls,
    allowPlainHttp: f.allowPlainHttp,
    log,
  });
  const shutdown = async (): Promise<void> => {
    await app.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void shutdown());
  process.once('SIGTERM', () => void shutdown());
  announceReady({ url }, shutdown);
  console.log(`${service} listening on ${url}`);
}

/** `arrow cdn cache`: a cache node until SIGINT/SIGTERM. */
export async function runCdnCache(f: CacheFlags): Promise<void> {
  try {
    new URL(f.origin);
  } catch (err) {
    throw new ConfigError(`--origin ${f.origin}: ${(err as Error).message}`, { cause: err });
  }
  if (f.pingInterval < 0.002)
    throw new ConfigError('--ping-interval must be at least 0.002 s (ping refuses less)');
  const log = createLogger(`cdn-cache-${f.name}`);
  const tls = tlsOf(f);
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const app = await buildCacheServer({
    name: f.name,
    origin: f.origin,
    store: resolve(f.store),
    ping: { count: f.pings, intervalS: f.pingInterval, deadlineMs: f.pingDeadlineMs },
    logger: log,
    tls,
    registry,
    token: f.token,
  });
  await serve(app, `cdn cache ${f.name}`, f, tls !== undefined, log);
}

/** `arrow cdn controller`: the redirector until SIGINT/SIGTERM. */
export async function runCdnController(f: ControllerFlags): Promise<void> {
  const caches = f.cache.map((c) => {
    try {
      return parseCacheSpec(c);
    } catch (err) {
      throw new ConfigError((err as Error).message, { cause: err });
    }
  });
  const log = createLogger('cdn-controller');
  const tls = tlsOf(f);
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const controller = new CdnController({
    caches,
    measureTimeoutMs: f.measureTimeoutMs,
    skipMs: f.skipMs,
    ...(f.atlas ? { atlas: f.atlas } : {}),
    ...(f.token ? { token: f.token } : {}),
  });
  const app = await buildControllerServer(controller, { logger: log, tls, registry, token: f.token });
  await serve(app, 'cdn controller', f, tls !== undefined, log);
}
