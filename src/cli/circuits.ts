import { PortalClient, type CircuitStatsView } from '../endpoint/portal-client.js';
import type { CircuitView } from '../api/portal.js';
import { authPrefix } from '../wire/authenticator.js';

/** The SLA column: `ok`, or what was violated over the portal's window. */
export function slaText(s: CircuitStatsView): string {
  if (!s.sla) return '-';
  // Traffic over the bought rate was dropped at the ingress: the sender's excess, not a breach.
  const over = s.sla.overRatePackets ? ` (over-rate ${s.sla.overRatePackets}, not loss)` : '';
  if (s.sla.ok) return `ok${over}`;
  return `VIOLATED: ${s.sla.violations.map((v) => v.message).join(', ')}${over}`;
}

/** The SLA column, or the routers' refusal when a router could not compile the record. */
function stateText(s: CircuitStatsView): string {
  if (!s.rejected?.length) return slaText(s);
  const reasons = [...new Set(s.rejected.map((r) => r.reason))];
  return `REJECTED by ${s.rejected.map((r) => r.router).join(',')}: ${reasons.join('; ')}`;
}

/** Drops with their reasons, e.g. `12 (impair 11, hop-limit 1)`. */
function dropsText(s: CircuitStatsView): string {
  const reasons = Object.entries(s.drops)
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([r, n]) => `${r} ${n}`);
  return reasons.length ? `${s.dropped} (${reasons.join(', ')})` : String(s.dropped);
}

function nextText(c: CircuitView): string {
  if (c.next) return `${c.next.addresses[0]} auth ${authPrefix(c.next.auth)}`;
  const d = c.deliver;
  if (d?.kind === 'udp') return `udp ${d.target}`;
  if (d?.kind === 'ip') return `ip ${d.prefixes.join(',')} from ${d.source}`;
  return `endpoint ${d?.addresses[0]}`;
}

/**
 * `arrow circuits`: the caller's circuits at one portal, with traffic in/out/dropped and the SLA verdict,
 * or REJECTED and the reason when a router could not compile the circuit's record.
 */
export async function runCircuits(o: { portal: string; key: string; json?: boolean }): Promise<void> {
  const client = new PortalClient(o.portal, o.key);
  const { circuits } = await client.circuits();
  const rows = await Promise.all(
    circuits.map(async (c) => ({ circuit: c, stats: await client.stats(c.auth) })),
  );
  if (o.json) {
    console.log(JSON.stringify({ circuits: rows.map((r) => ({ ...r.circuit, stats: r.stats })) }, null, 2));
    return;
  }
  if (rows.length === 0) return console.log('no circuits');
  const table = [
    ['auth', 'from->to', 'Mb/s', 'in', 'out', 'dropped', 'SLA', 'next'],
    ...rows.map(({ circuit: c, stats: s }) => [
      authPrefix(c.auth),
      `${c.ingressPop}->${c.egressPop}`,
      // `+tags`: DATA must carry this ISP's per-packet tag.
      `${c.bandwidthMbps}${c.tagsRequired ? '+tags' : ''}`,
      String(s.in.packets),
      String(s.out.packets),
      dropsText(s),
      stateText(s),
      nextText(c),
    ]),
  ];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  for (const r of table)
    console.log(
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    );
}
