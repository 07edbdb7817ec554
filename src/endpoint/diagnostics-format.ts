// Text output of the diagnostics, in the formats network engineers know from ping and traceroute.
// Shared by the CLI and the demo.
import type { LastLegReply, PingReply, RttSummary, TraceHopResult, TraceResult } from './diagnostics.js';
import { authPrefix } from '../wire/authenticator.js';

const ms = (x: number): string => x.toFixed(3);

export function formatRtt(r: RttSummary): string {
  return `rtt min/avg/max/mdev = ${ms(r.min)}/${ms(r.avg)}/${ms(r.max)}/${ms(r.mdev)} ms`;
}

/** ping's two summary lines. */
export function formatStatistics(
  name: string,
  s: { transmitted: number; received: number; lossPct: number; rtt: RttSummary | undefined; timeMs: number },
): string[] {
  const loss = Number.isInteger(s.lossPct) ? String(s.lossPct) : s.lossPct.toFixed(1);
  const lines = [
    `--- ${name} ping statistics ---`,
    `${s.transmitted} packets transmitted, ${s.received} received, ${loss}% packet loss, time ${Math.round(s.timeMs)}ms`,
  ];
  if (s.rtt) lines.push(formatRtt(s.rtt));
  return lines;
}

export function formatPingReply(r: PingReply): string {
  const from =
    r.from === 'home' ? 'home' : `${r.from.isp}/${r.from.pop}/${r.from.router} (${r.from.address})`;
  return `${r.bytes} bytes from ${from}: seq=${r.seq} time=${r.rttMs.toFixed(2)} ms`;
}

export function formatLastLegReply(r: LastLegReply): string {
  return `${r.replyLength} bytes from ${r.target}: seq=${r.seq} time=${r.rttMs.toFixed(2)} ms (round trip ${r.roundTripMs.toFixed(2)} ms)`;
}

function hopLine(h: TraceHopResult, width: number): string {
  const n = String(h.index).padStart(width);
  const rtts = h.rttMs.map((x) => (x === undefined ? '*' : `${ms(x)} ms`)).join('  ');
  if (h.router === undefined) return `${n}  ${rtts}`;
  let action: string = h.action ?? '';
  if (h.action === 'return') action = `return -> ${h.next} (turns into the return path)`;
  else if (h.action === 'deliver-udp') action = `deliver-udp ${h.next} (no return path)`;
  else if (h.action === 'deliver-ip') action = `deliver-ip to ${h.next} (no return path)`;
  else if (h.action === 'deliver-endpoint') action = `deliver-endpoint ${h.next}`;
  else if (h.action === 'forward') action = `forward -> ${h.next}`;
  const extra = [
    h.addedMs !== undefined ? `${h.addedMs >= 0 ? '+' : ''}${h.addedMs.toFixed(2)} ms` : '',
    h.lossPct > 0 ? `loss ${Math.round(h.lossPct)}%` : '',
    h.modified === true ? `payload MODIFIED (digest ${h.digest})` : h.modified === false ? 'payload ok' : '',
  ].filter(Boolean);
  return `${n}  ${h.isp}/${h.pop}/${h.router} (${h.address})  ${rtts}  ${action}${extra.length ? '  ' + extra.join('  ') : ''}`;
}

/**
 * traceroute's output: one line per hop (`N  isp/pop/router (address)  rtt ms ×queries  action`),
 * what each hop adds to the median RTT, its loss, a marker where the trace turns into the
 * return path, and where an incomplete trace was last seen going.
 */
export function formatTraceroute(t: TraceResult, maxHops: number): string[] {
  const lines = [
    `traceroute over circuit ${authPrefix(t.circuit.auth)} via ${t.circuit.ingress}, ${maxHops} hops max, ${t.queries} queries`,
  ];
  const width = String(Math.max(t.hops.length + 1, 9)).length + 1;
  let direction: 'forward' | 'return' = 'forward';
  for (const h of t.hops) {
    if (h.direction !== direction) {
      lines.push(`${' '.repeat(width)}  -- return path --`);
      direction = h.direction;
    }
    lines.push(hopLine(h, width));
  }
  if (!t.complete) {
    const last = [...t.hops].reverse().find((h) => h.received > 0);
    const stars = Array.from({ length: t.queries }, () => '*').join('  ');
    lines.push(
      last
        ? `${String(last.index + 1).padStart(width)}  ${stars}  (no answer: hop ${last.index} sent the trace to ${last.next || 'nowhere'})`
        : `${'1'.padStart(width)}  ${stars}  (no answer from the ingress router ${t.circuit.ingress})`,
    );
  }
  if (t.integrity) lines.push(integrityLine(t));
  return lines;
}

/** The verdict of an integrity trace: where the payload was first seen changed, and between whom. */
function integrityLine(t: TraceResult): string {
  const i = t.integrity!;
  if (i.reported === 0) return 'payload integrity: no hop reported a digest (routers too old, or no answers)';
  if (i.firstModifiedHop === null)
    return `payload integrity: unmodified at every hop that reported (${i.reported}), digest ${i.sent}`;
  const at = t.hops.find((h) => h.index === i.firstModifiedHop)!;
  const before = [...t.hops].reverse().find((h) => h.index < at.index && h.modified === false);
  const from = before ? `${before.isp}/${before.pop}/${before.router}` : 'the sender';
  return `payload integrity: MODIFIED before hop ${at.index} ${at.isp}/${at.pop}/${at.router}: changed between ${from} and it (sent ${i.sent}, arrived ${at.digest})`;
}
