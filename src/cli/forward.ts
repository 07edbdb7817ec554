import { Forwarder } from '../endpoint/forwarder.js';
import { logFailoverEvents, notReadyLines } from '../endpoint/failover-log.js';
import { PathFileSchema, pathSpecOf } from '../endpoint/spec.js';
import { MailboxBundleSchema, pathsOfBundle } from '../endpoint/mailboxes.js';
import type { DetectorOptions } from '../endpoint/connection.js';
import { ConfigError, loadConfig } from '../util/config.js';
import { authPrefix } from '../wire/authenticator.js';
import { spreadOptions, type SpreadFlags } from './spread.js';

export interface ForwardFlags extends SpreadFlags {
  spread?: boolean;
  listen: string;
  /** Path files: the primary first, then standbys. */
  path?: string[];
  /** A destination's mailbox bundle (`arrow mailboxes`): spread over its paths, buying nothing. */
  mailboxes?: string;
  detectTimeout?: number;
  probeInterval?: number;
}

/** Ready time for `start`: a path that has not answered by then is reported, and repaired by the driver. */
const READY_TIMEOUT_MS = 5000;

export async function runForward(o: ForwardFlags): Promise<void> {
  if (o.mailboxes !== undefined && o.path?.length)
    throw new ConfigError(
      'give either --path files (you buy) or --mailboxes (the destination bought), not both',
    );
  if (o.mailboxes === undefined && !o.path?.length)
    throw new ConfigError('give at least one --path file, or --mailboxes');
  const specs = (o.path ?? []).map((f) => {
    try {
      return pathSpecOf(loadConfig(PathFileSchema, f));
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      throw new ConfigError(`--path ${f}: ${(err as Error).message}`);
    }
  });
  const detector: Partial<DetectorOptions> = {
    ...(o.detectTimeout ? { timeoutMs: o.detectTimeout } : {}),
    ...(o.probeInterval ? { probeIntervalMs: o.probeInterval } : {}),
  };
  // Mailboxes are ingress points to spread over, never a primary and standbys.
  const spread = o.spread || o.mailboxes !== undefined;
  if (!spread && (o.spreadKey || o.overloadRtt || o.overloadLoss !== undefined || o.spreadProbe))
    throw new ConfigError('--spread-key, --overload-rtt, --overload-loss and --spread-probe need --spread');
  const bundle = o.mailboxes !== undefined ? loadConfig(MailboxBundleSchema, o.mailboxes) : undefined;
  const fwd = bundle
    ? await Forwarder.attach(o.listen, pathsOfBundle(bundle), {
        bind: bundle.client,
        detector,
        readyTimeoutMs: READY_TIMEOUT_MS,
        spread: spreadOptions(o),
      })
    : await Forwarder.start(o.listen, specs, {
        detector,
        readyTimeoutMs: READY_TIMEOUT_MS,
        ...(spread ? { spread: spreadOptions(o) } : {}),
      });
  const conn = fwd.connection;
  console.log(
    `forwarding UDP ${fwd.listen} over ${fwd.paths.length} ${bundle ? "of the destination's mailboxes" : 'path(s)'} ${spread ? 'spread by a keyed PRF, each leaving the sequence when overloaded or dead' : 'with failover'} (detect ${conn.opts.timeoutMs} ms, probe every ${conn.opts.probeIntervalMs} ms); ARROW socket ${fwd.endpoint.address}`,
  );
  fwd.paths.forEach((p, i) => {
    console.log(`  ${spread ? `ingress ${i}` : i === 0 ? 'primary' : `standby ${i}`}:`);
    for (const b of p.forward)
      console.log(
        `    ${b.segment.isp ?? b.segment.portal} ${b.circuit.ingressPop}->${b.circuit.egressPop} auth ${authPrefix(b.circuit.auth)} via ${b.circuit.ingress.join(', ')}`,
      );
  });
  for (const line of notReadyLines(conn, fwd.notReady, READY_TIMEOUT_MS)) console.log(line);
  logFailoverEvents(conn, (line) => console.log(line));
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    const failures = await fwd.stop();
    for (const f of failures) console.error(`could not relinquish: ${f.message}`);
    process.exit(failures.length ? 1 : 0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}
