import { Type } from '@sinclair/typebox';
import { loadConfig } from '../util/config.js';
import {
  DiagnosticSocket,
  lastLegPing,
  ping,
  traceroute,
  type CircuitRef,
  type LastLegReply,
} from '../endpoint/diagnostics.js';
import { parseAddress } from '../wire/address.js';
import { AddressString } from '../util/address-schema.js';
import { authPrefix, isAuthenticatorHex } from '../wire/authenticator.js';
import { MAX_LAST_LEG_TIMEOUT_MS, PROBE_REQUEST_LENGTH } from '../wire/diagnostics.js';
import {
  formatLastLegReply,
  formatPingReply,
  formatStatistics,
  formatTraceroute,
} from '../endpoint/diagnostics-format.js';

/** The largest request that is not fragmented on a 1500-byte path (docs/wire.md). */
const MAX_PING_SIZE = 1444;

/** How a command names its circuit: `AUTH@HOST:PORT`, or --via and --auth, or --path. */
export interface CircuitFlags {
  via?: string;
  auth?: string;
  path?: string;
}

/** The part of a bought path (src/endpoint/path.ts BoughtPath, as `arrow connect` writes it) we need. */
const BoughtPathFile = Type.Object({
  forward: Type.Array(
    Type.Object({
      circuit: Type.Object({
        auth: Type.String({ pattern: '^[0-9a-f]{32}$' }),
        ingress: Type.Array(AddressString(), { minItems: 1 }),
      }),
    }),
    { minItems: 1 },
  ),
});

/**
 * Resolves the circuit a diagnostic command runs on. Exactly one way of naming it:
 * the argument `AUTH@HOST:PORT`, `--via HOST:PORT --auth HEX`, or `--path FILE` (a bought
 * path as JSON: its first circuit, at its first ingress router; `--via` may pick another).
 */
export function resolveCircuit(arg: string | undefined, o: CircuitFlags): CircuitRef {
  const ways = [arg !== undefined, o.auth !== undefined, o.path !== undefined].filter(Boolean).length;
  if (ways !== 1)
    throw new Error(
      'name the circuit one way: AUTH@HOST:PORT, or --via HOST:PORT --auth HEX, or --path FILE',
    );
  let ingress: string | undefined;
  let auth: string;
  if (arg !== undefined) {
    const at = arg.indexOf('@');
    if (at < 0) throw new Error(`circuit must be AUTH@HOST:PORT, got ${JSON.stringify(arg)}`);
    auth = arg.slice(0, at).toLowerCase();
    ingress = arg.slice(at + 1);
    if (o.via !== undefined) throw new Error('--via cannot be combined with AUTH@HOST:PORT');
  } else if (o.auth !== undefined) {
    auth = o.auth.toLowerCase();
    if (o.via === undefined) throw new Error('--auth needs --via HOST:PORT (the first ingress router)');
  } else {
    const path = loadConfig(BoughtPathFile, o.path!);
    const first = path.forward[0]!.circuit;
    auth = first.auth;
    ingress = first.ingress[0];
  }
  ingress = o.via ?? ingress!;
  if (!isAuthenticatorHex(auth)) throw new Error(`--auth must be 32 hex digits, got ${JSON.stringify(auth)}`);
  const a = parseAddress(ingress);
  if (!a.ok) throw new Error(`--via: ${a.message}`);
  return { ingress, auth };
}

export interface PingFlags extends CircuitFlags {
  count: number;
  interval: number;
  timeout: number;
  size: number;
  lastLeg?: boolean;
  payload?: string;
  bind?: string;
  json?: boolean;
}

/** The routers' default per-circuit probe budget is 20/s: a faster ping would only measure the rate limit. */
export const MIN_INTERVAL_S = 0.05;

export async function runPing(arg: string | undefined, o: PingFlags): Promise<void> {
  const circuit = resolveCircuit(arg, o);
  if (o.interval < MIN_INTERVAL_S)
    throw new Error(`-i/--interval must be at least ${MIN_INTERVAL_S} s (the routers' probe rate limit)`);
  if (o.lastLeg && o.timeout * 1000 > MAX_LAST_LEG_TIMEOUT_MS)
    throw new Error(`-W/--timeout is at most ${MAX_LAST_LEG_TIMEOUT_MS / 1000} s with --last-leg`);
  if (o.payload !== undefined && !o.lastLeg) throw new Error('--payload needs --last-leg');
  if (o.size < PROBE_REQUEST_LENGTH || o.size > MAX_PING_SIZE)
    throw new Error(`-s/--size must be ${PROBE_REQUEST_LENGTH}..${MAX_PING_SIZE} bytes`);
  const sock = await DiagnosticSocket.open(o.bind ? { bind: o.bind } : { toward: circuit.ingress });
  const abort = new AbortController();
  const onSigint = (): void => abort.abort();
  process.once('SIGINT', onSigint);
  const print = (line: string): void => {
    if (!o.json) console.log(line);
  };
  const name = `circuit ${authPrefix(circuit.auth)}`;
  const common = {
    count: o.count,
    intervalMs: o.interval * 1000,
    timeoutMs: o.timeout * 1000,
    signal: abort.signal,
  };
  try {
    if (o.lastLeg) {
      const payload = Buffer.from(o.payload ?? 'arrow ping');
      print(`PING last leg of ${name} via ${circuit.ingress}: ${payload.length} data bytes`);
      const r = await lastLegPing(sock, circuit, {
        ...common,
        payload,
        serverTimeoutMs: common.timeoutMs,
        onReply: (x) => print(formatLastLegReply(x)),
      });
      if (o.json)
        console.log(
          JSON.stringify({ circuit, lastLeg: true, ...r, replies: r.replies.map(jsonReply) }, null, 2),
        );
      else {
        for (const [status, n] of Object.entries(r.failures))
          print(
            `${n} answered ${status}${status === 'not-udp' ? ' (the circuit does not end at a UDP server)' : ''}`,
          );
        for (const l of formatStatistics(`${r.target ?? name} last-leg`, r)) print(l);
      }
      process.exitCode = r.received > 0 ? 0 : 1;
    } else {
      print(`PING ${name} via ${circuit.ingress}: ${o.size} data bytes`);
      const r = await ping(sock, circuit, {
        ...common,
        size: o.size,
        onReply: (x) => print(formatPingReply(x)),
      });
      if (o.json) console.log(JSON.stringify({ circuit, ...r }, null, 2));
      else for (const l of formatStatistics(name, r)) print(l);
      process.exitCode = r.received > 0 ? 0 : 1;
    }
  } finally {
    process.off('SIGINT', onSigint);
    await sock.close();
  }
}

function jsonReply(r: LastLegReply): Omit<LastLegReply, 'reply'> & { reply: string } {
  return { ...r, reply: Buffer.from(r.reply).toString('base64') };
}

export interface TracerouteFlags extends CircuitFlags {
  queries: number;
  wait: number;
  maxHops: number;
  integrity?: boolean;
  bind?: string;
  json?: boolean;
}

export async function runTraceroute(arg: string | undefined, o: TracerouteFlags): Promise<void> {
  const circuit = resolveCircuit(arg, o);
  if (o.maxHops > 255) throw new Error('-m/--max-hops is at most 255');
  const sock = await DiagnosticSocket.open(o.bind ? { bind: o.bind } : { toward: circuit.ingress });
  try {
    const t = await traceroute(sock, circuit, {
      queries: o.queries,
      timeoutMs: o.wait * 1000,
      hopLimit: o.maxHops,
      integrity: o.integrity === true,
    });
    if (o.json) console.log(JSON.stringify(t, null, 2));
    else for (const l of formatTraceroute(t, o.maxHops)) console.log(l);
    // 1: nothing answered; 2: the payload arrived modified somewhere (distinct, for scripts).
    process.exitCode = !t.hops.some((h) => h.received > 0) ? 1 : t.integrity?.firstModifiedHop ? 2 : 0;
  } finally {
    await sock.close();
  }
}
