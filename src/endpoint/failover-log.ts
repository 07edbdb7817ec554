import { formatAddress } from '../wire/address.js';
import type { Connection, PathCircuit } from './connection.js';

/**
 * One line per failover event of a Connection, the same for every command that drives one
 * (`arrow forward`, `arrow connect`, `arrow endpoint --tun`): an ISO timestamp, the event's name,
 * then what happened, e.g.
 *
 *     2026-12-01T12:00:01.234Z failure primary via alpha > beta > gamma: nothing back for 100 ms, probing
 *     2026-12-01T12:00:01.290Z ingress primary via alpha > beta > gamma: no PROBE_ACK, now entering at 127.1.1.12:40417
 *     2026-12-01T12:00:01.410Z repaired primary via alpha > beta > gamma: works end to end again after 176.3 ms
 *     2026-12-01T12:00:01.410Z switch sending via primary via alpha > beta > gamma (was standby 1 via alpha > delta > gamma)
 *     2026-12-01T12:00:03.500Z rebuy standby 2 via alpha > delta > gamma: bought avoiding beta
 *     2026-12-01T12:00:03.500Z rebuy-failed avoiding beta: portal http://... answered 401: unknown API key
 */
export type FailoverEventName =
  'failure' | 'ingress' | 'repaired' | 'switch' | 'rebuy' | 'rebuy-failed' | 'not-ready' | 'sequence';

/** How a circuit is named in the log: its role in the connection and the ISPs it crosses. */
export function circuitLabel(conn: Connection, c: PathCircuit): string {
  const i = conn.circuits.indexOf(c);
  if (conn.spreading)
    return `ingress ${i} via ${c.isps.join(' > ')} at ${formatAddress(c.ingress[c.activeIngress]!)}`;
  return `${i === 0 ? 'primary' : `standby ${i}`} via ${c.isps.join(' > ')}`;
}

/** Formats one event line; `at` is the wall-clock time the event was seen. */
export function failoverLine(at: Date, event: FailoverEventName, text: string): string {
  return `${at.toISOString()} ${event} ${text}`;
}

/**
 * Writes a line for every failover event of `conn` through `write` (detection, ingress change,
 * repair with its duration, standby switch, re-buy and re-buy failure). Returns a function that
 * stops logging.
 */
export function logFailoverEvents(
  conn: Connection,
  write: (line: string) => void,
  clock: () => Date = () => new Date(),
): () => void {
  const out = (event: FailoverEventName, text: string): void => write(failoverLine(clock(), event, text));
  const label = (c: PathCircuit): string => circuitLabel(conn, c);
  const listeners = {
    failure: (c: PathCircuit): void =>
      out('failure', `${label(c)}: nothing back for ${conn.opts.timeoutMs} ms, probing`),
    ingress: (c: PathCircuit, address: string): void =>
      out('ingress', `${label(c)}: no PROBE_ACK, now entering at ${address}`),
    repaired: (c: PathCircuit, ms: number): void =>
      out('repaired', `${label(c)}: works end to end again after ${ms.toFixed(1)} ms`),
    switch: (from: PathCircuit, to: PathCircuit): void =>
      out('switch', `sending via ${label(to)} (was ${label(from)})`),
    rebuy: (c: PathCircuit, avoid: string[]): void =>
      out('rebuy', `${label(c)}: bought avoiding ${avoid.join(', ')}`),
    rebuyFailed: (err: Error, avoid: string[]): void =>
      out('rebuy-failed', `avoiding ${avoid.join(', ') || '(none)'}: ${err.message}`),
    sequence: (c: PathCircuit, inSequence: boolean): void =>
      out(
        'sequence',
        inSequence
          ? `${label(c)}: healthy again, back in the sequence`
          : `${label(c)}: ${c.state === 'failing' ? 'failing' : `overloaded (${Math.round((c.health?.lossShare ?? 0) * 100)}% of its last probes lost or late)`}, out of the sequence`,
      ),
  };
  conn.on('failure', listeners.failure);
  conn.on('ingress', listeners.ingress);
  conn.on('repaired', listeners.repaired);
  conn.on('switch', listeners.switch);
  conn.on('rebuy', listeners.rebuy);
  conn.on('rebuyFailed', listeners.rebuyFailed);
  conn.on('sequence', listeners.sequence);
  return () => {
    conn.off('sequence', listeners.sequence);
    conn.off('failure', listeners.failure);
    conn.off('ingress', listeners.ingress);
    conn.off('repaired', listeners.repaired);
    conn.off('switch', listeners.switch);
    conn.off('rebuy', listeners.rebuy);
    conn.off('rebuyFailed', listeners.rebuyFailed);
  };
}

/** Lines for the circuits `Connection.waitReady` left unanswered: a warning, not a failure. */
export function notReadyLines(
  conn: Connection,
  circuits: PathCircuit[],
  timeoutMs: number,
  at: Date = new Date(),
): string[] {
  return circuits.map((c) =>
    failoverLine(
      at,
      'not-ready',
      `${circuitLabel(conn, c)}: no answer within ${timeoutMs} ms; the failover driver keeps probing`,
    ),
  );
}
