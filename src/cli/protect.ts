import { setTimeout as sleep } from 'node:timers/promises';
import { Protection, type ProtectCounters } from '../services/protect.js';
import { ConfigError } from '../util/config.js';

export interface ProtectFlags {
  egress: string[];
  port?: number[];
  tun?: string[];
  name?: string;
  interval: number;
  json?: boolean;
}

function line(c: ProtectCounters): string {
  return `arrow ${c.arrow.packets} pkts (${c.arrow.bytes} B) | established ${c.established.packets} pkts | dropped ${c.dropped.packets} pkts (${c.dropped.bytes} B)`;
}

/**
 * `arrow protect`: installs the destination's nftables table (src/services/protect.ts), prints its
 * counters every --interval until SIGINT/SIGTERM, then removes the table and prints the last ones.
 */
export async function runProtect(o: ProtectFlags): Promise<void> {
  let p: Protection;
  try {
    p = await Protection.install({
      egress: o.egress,
      ...(o.port?.length ? { ports: o.port } : {}),
      ...(o.tun?.length ? { tun: o.tun } : {}),
      ...(o.name ? { name: o.name } : {}),
    });
  } catch (err) {
    const msg = (err as Error).message;
    // Bad input is the user's to fix; nft refusing (no root, no nftables) says so as it is.
    if (/not an IPv4|is not 1-65535|protection name|at least one egress|not an interface name/.test(msg))
      throw new ConfigError(msg);
    throw err;
  }
  const say = (event: string, c: ProtectCounters): void =>
    console.log(
      o.json
        ? JSON.stringify({ event, at: new Date().toISOString(), table: p.table, ...c })
        : `${event}: ${line(c)}`,
    );
  if (o.json)
    console.log(
      JSON.stringify({ event: 'installed', table: p.table, egress: o.egress, ports: o.port ?? [] }),
    );
  else
    console.log(
      `protecting this host: nft table inet ${p.table} accepts only ${o.port?.length ? `UDP to port ${o.port.join(', ')} ` : ''}from ${o.egress.join(', ')} (and replies to its own connections); everything else is dropped and counted. Ctrl-C removes it.`,
    );
  const timer = setInterval(() => {
    p.counters().then(
      (c) => say('counters', c),
      (err: Error) => console.error(`reading counters: ${err.message}`),
    );
  }, o.interval);
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    clearInterval(timer);
    let code = 0;
    // A failed nft call is tried twice more before the exit says so: the table must not stay behind.
    const tries = async <T>(what: string, f: () => Promise<T>): Promise<T | undefined> => {
      for (let i = 1; ; i++) {
        try {
          return await f();
        } catch (err) {
          console.error(`${what} (try ${i} of 3): ${(err as Error).message}`);
          if (i === 3) {
            code = 1;
            return undefined;
          }
          await sleep(100);
        }
      }
    };
    const last = await tries('reading the last counters', () => p.counters());
    if (last) say('removed', last);
    await tries(`removing nft table ${p.table}`, () => p.remove());
    process.exit(code);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}
