import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { AtlasClient } from '../atlas/client.js';
import type { PathQuery } from '../atlas/query.js';
import { formatAnswer } from '../atlas/format.js';
import { AtlasConnection, READY_TIMEOUT_MS } from '../endpoint/connect.js';
import { logFailoverEvents, notReadyLines } from '../endpoint/failover-log.js';
import { ConfigError } from '../util/config.js';
import { authPrefix } from '../wire/authenticator.js';
import { spreadOptions, type SpreadFlags } from './spread.js';

/** The flags `arrow paths` and `arrow connect` share: the query, in CLI form. */
export interface PathFlags {
  atlas: string;
  from: string;
  to: string;
  maxLatency?: number;
  maxLoss?: number;
  minBandwidth?: number;
  maxPrice?: number;
  avoid?: string[];
  require?: string[];
  maxIsps?: number;
  k?: number;
  disjoint?: 'isp' | 'router';
  sort?: 'latency' | 'price' | 'hops';
  latency?: 'measured' | 'sla';
  json?: boolean;
}

export function queryFromFlags(o: PathFlags): PathQuery {
  const q: PathQuery = { from: o.from, to: o.to };
  if (o.maxLatency !== undefined) q.maxLatencyMs = o.maxLatency;
  if (o.maxLoss !== undefined) q.maxLossPct = o.maxLoss;
  if (o.minBandwidth !== undefined) q.minBandwidthMbps = o.minBandwidth;
  if (o.maxPrice !== undefined) q.maxPrice = o.maxPrice;
  if (o.avoid?.length) q.avoid = o.avoid;
  if (o.require?.length) q.require = o.require;
  if (o.maxIsps !== undefined) q.maxIsps = o.maxIsps;
  if (o.k !== undefined) q.k = o.k;
  if (o.disjoint) q.disjoint = o.disjoint;
  if (o.sort) q.sort = o.sort;
  if (o.latency) q.latency = o.latency;
  return q;
}

export async function runPaths(o: PathFlags): Promise<void> {
  const answer = await new AtlasClient(o.atlas).paths(queryFromFlags(o));
  if (o.json) return console.log(JSON.stringify(answer, null, 2));
  for (const l of formatAnswer(answer)) console.log(l);
}

/** API keys per ISP, from `--keys FILE` (YAML or JSON: `isp: key`) and `--key ISP=KEY` flags. */
export function loadKeys(file: string | undefined, pairs: string[] = []): Record<string, string> {
  const keys: Record<string, string> = {};
  if (file) {
    let parsed: unknown;
    try {
      parsed = parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new ConfigError(`cannot read keys file ${file}: ${(err as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new ConfigError(`keys file ${file} must map ISP names to API keys`);
    for (const [isp, key] of Object.entries(parsed)) {
      if (typeof key !== 'string')
        throw new ConfigError(`keys file ${file}: the key for ${isp} is not a string`);
      keys[isp] = key;
    }
  }
  for (const p of pairs) {
    const i = p.indexOf('=');
    if (i <= 0 || i === p.length - 1) throw new ConfigError(`--key ${p}: expected ISP=KEY`);
    keys[p.slice(0, i)] = p.slice(i + 1);
  }
  return keys;
}

export async function runConnect(
  o: PathFlags &
    SpreadFlags & {
      listen: string;
      keys?: string;
      key?: string[];
      bandwidth?: number;
      save?: string;
      spread?: number;
    },
): Promise<void> {
  if (o.spread !== undefined && o.k !== undefined && o.k !== o.spread)
    throw new ConfigError(
      `--spread ${o.spread} buys ${o.spread} paths; drop --k ${o.k} (or make them equal)`,
    );
  if (
    o.spread === undefined &&
    (o.spreadKey || o.overloadRtt || o.overloadLoss !== undefined || o.spreadProbe)
  )
    throw new ConfigError('--spread-key, --overload-rtt, --overload-loss and --spread-probe need --spread K');
  const query = queryFromFlags(o);
  if (o.spread !== undefined) query.k = o.spread;
  const conn = await AtlasConnection.open({
    atlas: o.atlas,
    query,
    ...(o.spread !== undefined ? { spread: spreadOptions(o) } : {}),
    keys: loadKeys(o.keys, o.key),
    target: o.to,
    listen: o.listen,
    ...(o.bandwidth ? { bandwidthMbps: o.bandwidth } : {}),
  });
  const paths = conn.paths;
  if (o.save) {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(o.save, JSON.stringify(paths[0], null, 2));
  }
  if (o.json) {
    console.log(JSON.stringify({ listen: conn.listen, candidates: conn.answer, bought: paths }, null, 2));
  } else {
    for (const l of formatAnswer(conn.answer)) console.log(l);
    console.log(
      `forwarding UDP ${conn.listen} -> ${o.to}${o.spread ? `, spread over ${paths.length} ingress points` : ''}`,
    );
    paths.forEach((p, i) => {
      console.log(`  ${o.spread ? `ingress ${i}` : i === 0 ? 'primary' : 'standby'}:`);
      for (const b of p.forward)
        console.log(
          `    ${b.segment.isp} ${b.circuit.ingressPop}->${b.circuit.egressPop} auth ${authPrefix(b.circuit.auth)} via ${b.circuit.ingress[0]}`,
        );
    });
    if (o.save) console.log(`primary path saved to ${o.save} (for arrow ping/traceroute --path)`);
  }
  // On stderr: stdout may be the --json answer.
  for (const line of notReadyLines(conn.connection, conn.notReady, READY_TIMEOUT_MS)) console.error(line);
  logFailoverEvents(conn.connection, (line) => console.error(line));
  const stop = async (): Promise<void> => {
    const failures = await conn.stop();
    for (const f of failures) console.error(`could not relinquish: ${f.message}`);
    process.exit(failures.length ? 1 : 0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}
