import { existsSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse as parseYaml } from 'yaml';
import { PathFileSchema, pathSpecOf, type PathFile } from '../endpoint/spec.js';
import {
  parsePeer,
  READY_TIMEOUT_MS,
  TunEndpoint,
  writePeerFile,
  type TunEndpointOptions,
} from '../endpoint/tun.js';
import { logFailoverEvents, notReadyLines } from '../endpoint/failover-log.js';
import { parseCidr, tunMtuFor, MIN_IPV4_MTU } from '../endpoint/tun-packet.js';
import { assertTunPossible } from '../util/tun-device.js';
import { announceReady } from '../util/ready.js';
import type { DataplaneMode } from '../router/dataplane-mode.js';
import type { UnderlayChecksums } from '../endpoint/underlay-checksums.js';
import { ConfigError, validateConfig } from '../util/config.js';
import { parseAddress } from '../wire/address.js';
import { authPrefix } from '../wire/authenticator.js';
import { spreadOptions, type SpreadFlags } from './spread.js';

export interface EndpointFlags extends SpreadFlags {
  spread?: boolean;
  tun: string;
  address: string[];
  route?: string[];
  netns?: string;
  underlayMtu: number;
  listen?: string;
  path?: string[];
  peer?: string;
  writePeer?: string;
  peerFile?: string;
  wait: number;
  detectTimeout?: number;
  probeInterval?: number;
  stats?: number;
  dataplane?: DataplaneMode;
  underlayChecksums?: UnderlayChecksums;
}

function fail(msg: string): never {
  throw new ConfigError(msg);
}

/** Checks the flags together, naming the bad one; the library checks again for its own callers. */
function check(o: EndpointFlags): void {
  for (const a of o.address)
    if (!parseCidr(a)) fail(`--address ${JSON.stringify(a)}: expected CIDR, e.g. 10.200.0.1/24`);
  for (const r of o.route ?? [])
    if (!parseCidr(r)) fail(`--route ${JSON.stringify(r)}: expected CIDR, e.g. 10.201.0.0/16`);
  if (tunMtuFor(o.underlayMtu) < MIN_IPV4_MTU || o.underlayMtu > 65535)
    fail(`--underlay-mtu ${o.underlayMtu}: must be from ${MIN_IPV4_MTU + 56} to 65535`);
  for (const [flag, v, bind] of [
    ['--listen', o.listen, true],
    ['--peer', o.peer, false],
  ] as const) {
    const parsed = v === undefined ? undefined : parseAddress(v, { bind });
    if (parsed && !parsed.ok) fail(`${flag}: ${parsed.message}`);
  }
  const buyer = (o.path?.length ?? 0) > 0;
  if (!o.spread && (o.spreadKey || o.overloadRtt || o.overloadLoss !== undefined || o.spreadProbe))
    fail('--spread-key, --overload-rtt, --overload-loss and --spread-probe need --spread');
  if (buyer === (o.peerFile !== undefined))
    fail(
      'give --path FILE (this side buys both directions) or --peer-file FILE (the other side bought them)',
    );
  if (!buyer && (o.peer || o.writePeer)) fail('--peer and --write-peer go with --path, not --peer-file');
  if (o.underlayChecksums && o.dataplane === 'node')
    fail(
      '--underlay-checksums is for the kernel path; with --dataplane node this process sends, and the TUN read has finished the checksums',
    );
}

/** `10.200.0.1/24` → `10.200.0.1/32`: the one address of ours that answers come back to. */
function hostPrefixOf(cidr: string | undefined): string | undefined {
  const host = cidr?.split('/')[0];
  if (!host) return undefined;
  return host.includes(':') ? `${host}/128` : `${host}/32`;
}

/** A path file; with --peer its target may be left out (it is the peer endpoint either way). */
function loadPathFile(file: string, peer: string | undefined): PathFile {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    return fail(`--path ${file}: ${(err as Error).message}`);
  }
  if (peer && raw && typeof raw === 'object' && !('target' in raw))
    raw = { ...raw, target: { kind: 'endpoint', addresses: [peer] } };
  return validateConfig(PathFileSchema, raw, file);
}

/** Waits for the buyer's peer file: the two sides may start in either order. */
async function readPeerFile(path: string, waitS: number): Promise<unknown> {
  const deadline = Date.now() + waitS * 1000;
  while (!existsSync(path)) {
    if (Date.now() > deadline) fail(`--peer-file ${path}: not there after ${waitS} s (see --wait)`);
    await sleep(100);
  }
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    return fail(`--peer-file ${path}: ${(err as Error).message}`);
  }
}

export async function runEndpoint(o: EndpointFlags): Promise<void> {
  check(o);
  assertTunPossible(o.tun);
  const opts: TunEndpointOptions = {
    name: o.tun,
    addresses: o.address,
    underlayMtu: o.underlayMtu,
    ...(o.route ? { routes: o.route } : {}),
    ...(o.netns ? { netns: o.netns } : {}),
    ...(o.listen ? { listen: o.listen } : {}),
    ...(o.dataplane ? { dataplane: o.dataplane } : {}),
    ...(o.spread ? { spread: spreadOptions(o) } : {}),
    ...(o.underlayChecksums ? { underlayChecksums: o.underlayChecksums } : {}),
    detector: {
      ...(o.detectTimeout ? { timeoutMs: o.detectTimeout } : {}),
      ...(o.probeInterval ? { probeIntervalMs: o.probeInterval } : {}),
    },
  };
  if (o.path?.length) {
    // A gateway's `ip` target defaults to our routes and our own address (docs/egress.md).
    const ip = { routes: o.route ?? [], source: hostPrefixOf(o.address[0]) };
    opts.paths = o.path.map((f) => {
      try {
        return pathSpecOf(loadPathFile(f, o.peer), ip);
      } catch (err) {
        if (err instanceof ConfigError) throw err;
        return fail(`--path ${f}: ${(err as Error).message}`);
      }
    });
    if (o.peer) opts.peerAddress = o.peer;
  } else {
    opts.peer = parsePeer(await readPeerFile(o.peerFile!, o.wait), o.peerFile!);
  }
  const tun = await TunEndpoint.start(opts);
  if (tun.peer && o.writePeer) writePeerFile(o.writePeer, tun.peer);
  const netns = o.netns ? ` in netns ${o.netns}` : '';
  console.log(
    `tun ${tun.name}${netns} up: ${o.address.join(', ')} mtu ${tun.mtu}; ARROW socket ${tun.address}`,
  );
  for (const c of tun.connection.circuits)
    console.log(
      `  ${o.spread ? `ingress ${tun.connection.circuits.indexOf(c)}` : c === tun.connection.active ? 'primary' : 'standby'} via ${c.isps.join(' > ')}: send to ${c.ingress.map((a) => `${a.host}:${a.port}`).join(', ')} auth ${authPrefix(c.auth.toString('hex'))}`,
    );
  if (tun.peer && o.writePeer) console.log(`peer file for the other side: ${o.writePeer}`);
  const dp = tun.dataplane;
  console.log(
    `data path: ${dp.mode}${dp.mode === 'kernel' ? ` (tc on ${tun.name} and ${dp.underlay})` : ''}: ${dp.reason}`,
  );
  if (dp.mode === 'kernel') console.log(`checksums: ${dp.checksums}`);

  const printStats = (): void => console.log(JSON.stringify({ event: 'stats', ...tun.stats() }));
  const timer = o.stats ? setInterval(printStats, o.stats * 1000) : undefined;
  process.on('SIGUSR1', printStats);
  for (const line of notReadyLines(tun.connection, tun.notReady, READY_TIMEOUT_MS)) console.log(line);
  logFailoverEvents(tun.connection, (line) => console.log(line));
  tun.on('error', (err) => console.error(`arrow endpoint: ${err.message}`));

  let stopping = false;
  const shutdown = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    if (timer) clearInterval(timer);
    printStats();
    const failures = await tun.stop();
    for (const f of failures) console.error(`could not relinquish: ${f.message}`);
    process.exit(failures.length ? 1 : 0);
  };
  process.once('SIGINT', () => void shutdown());
  process.once('SIGTERM', () => void shutdown());
  announceReady({ address: tun.address }, shutdown);
}
