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
  return lines;
}
