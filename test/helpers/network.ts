import { createSocket } from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';
import { openStore } from '../../src/store/open.js';
import type { RouterStats } from '../../src/store/circuit.js';
import { mustParseAddress } from '../../src/wire/address.js';
import type { Lab } from '../../src/lab/lab.js';

/** Router counters as the routers themselves published them to their ISP's store. */
export async function routerStats(lab: Lab, isp: string): Promise<RouterStats[]> {
  const s = await openStore(lab.isp(isp).store, { busyTimeoutMs: 1000, isp });
  try {
    return await s.listRouterStats();
  } finally {
    await s.close();
  }
}

export async function statsOf(lab: Lab, router: string): Promise<RouterStats> {
  const r = lab.router(router);
  const s = (await routerStats(lab, r.isp)).find((x) => x.router === router);
  if (!s) throw new Error(`no stats from ${router}`);
  return s;
}

/** Polls until `fn` returns a truthy value or `ms` pass; returns the last value. */
export async function eventually<T>(fn: () => Promise<T>, ms = 5000, stepMs = 50): Promise<T> {
  const deadline = Date.now() + ms;
  let v = await fn();
  while (!v && Date.now() < deadline) {
    await sleep(stepMs);
    v = await fn();
  }
  return v;
}

/** Sends raw datagrams from a throwaway socket. */
export async function sendRaw(to: string, datagrams: Buffer[]): Promise<void> {
  const a = mustParseAddress(to);
  const s = createSocket('udp4');
  s.on('error', () => {});
  for (const d of datagrams) await new Promise<void>((resolve) => s.send(d, a.port, a.host, () => resolve()));
  s.close();
}
