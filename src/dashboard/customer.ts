/**
 * A customer's view for the dashboard (docs/operations.md, "The dashboard"): the circuits of one
 * bought path with their counters and SLA verdicts from each ISP's portal, and a traceroute along
 * the first forward circuit, hop by hop with RTT and loss. Polled in the background; `view()` is
 * what the page shows now. The demo feeds it its path, echo RTTs and atlas answer; `arrow
 * dashboard --path FILE` feeds it a path `arrow connect --save` wrote.
 */
import type { CustomerViewT } from '../api/dashboard.js';
import { PortalClient } from '../endpoint/portal-client.js';
import { DiagnosticSocket, hopSummary, traceroute } from '../endpoint/diagnostics.js';
import { noteUnexpected } from '../util/errors.js';

export interface CustomerWatchOptions {
  name: string;
  /** CA the portals' certificates chain to (a lab's own), PEM. */
  ca?: string;
  statsEveryMs?: number;
  tracerouteEveryMs?: number;
}

const TRACE_QUERIES = 3;

/** The parts of a bought path (src/endpoint/path.ts BoughtPath) the view needs. */
export interface WatchedCircuit {
  segment: { isp?: string | undefined; portal: string; apiKey: string };
  circuit: { auth: string; ingress: string[]; ingressPop: string; egressPop: string };
}
export interface WatchedPath {
  forward: WatchedCircuit[];
  reverse: WatchedCircuit[];
}

export class CustomerWatch {
  private circuits: CustomerViewT['circuits'];
  private trace: CustomerViewT['traceroute'] = [];
  private traceAt: number | null = null;
  private atlas: CustomerViewT['atlas'] = null;
  private rttMs: number | null = null;
  private pps: number | null = null;
  private lastPackets: { at: number; packets: number } | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private stopped = false;

  constructor(
    private readonly path: WatchedPath,
    private readonly o: CustomerWatchOptions,
  ) {
    this.circuits = this.all().map(({ b, direction }) => ({
      isp: b.segment.isp ?? b.segment.portal,
      direction,
      auth: b.circuit.auth,
      from: b.circuit.ingressPop,
      to: b.circuit.egressPop,
      packets: 0,
      dropped: 0,
      sla: null,
    }));
  }

  private all(): { b: WatchedCircuit; direction: 'forward' | 'return' }[] {
    return [
      ...this.path.forward.map((b) => ({ b, direction: 'forward' as const })),
      ...this.path.reverse.map((b) => ({ b, direction: 'return' as const })),
    ];
  }

  start(): void {
    this.loop(() => this.pollStats(), this.o.statsEveryMs ?? 1000);
    this.loop(() => this.pollTrace(), this.o.tracerouteEveryMs ?? 5000);
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
  }

  private loop(work: () => Promise<void>, everyMs: number): void {
    const i = this.timers.length;
    const tick = (): void => {
      void work()
        .catch((err: unknown) => noteUnexpected('dashboard: watching the customer path', err))
        .finally(() => {
          if (!this.stopped) this.timers[i] = setTimeout(tick, everyMs);
        });
    };
    this.timers.push(setTimeout(tick, 0));
  }

  /** The customer's own RTT through the path, from its echoes (the demo). */
  setRtt(ms: number | null): void {
    this.rttMs = ms;
  }

  setAtlas(a: CustomerViewT['atlas']): void {
    this.atlas = a;
  }

  view(): CustomerViewT {
    return {
      name: this.o.name,
      circuits: this.circuits,
      traceroute: this.trace,
      tracerouteAt: this.traceAt,
      atlas: this.atlas,
      rttMs: this.rttMs,
      pps: this.pps,
    };
  }

  private async pollStats(): Promise<void> {
    this.circuits = await Promise.all(
      this.all().map(async ({ b, direction }, i) => {
        const before = this.circuits[i]!;
        const client = new PortalClient(b.segment.portal, b.segment.apiKey, {
          timeoutMs: 2000,
          ...(this.o.ca ? { ca: this.o.ca } : {}),
        });
        try {
          const s = await client.stats(b.circuit.auth);
          return {
            ...before,
            direction,
            packets: s.packets,
            dropped: s.dropped,
            sla: s.sla
              ? { ok: s.sla.ok, lossPct: s.sla.lossPct, latencyMs: s.sla.latencyMs, bounds: s.sla.bounds }
              : null,
            error: undefined,
          };
        } catch (err) {
          return { ...before, error: (err as Error).message };
        }
      }),
    );
    for (const c of this.circuits) if (c.error === undefined) delete c.error;
    const first = this.circuits[0];
    if (first && first.error === undefined) {
      const now = Date.now();
      const prev = this.lastPackets;
      this.pps =
        prev && now > prev.at && first.packets >= prev.packets
          ? Math.round(((first.packets - prev.packets) * 1000) / (now - prev.at))
          : this.pps;
      this.lastPackets = { at: now, packets: first.packets };
    }
  }

  private async pollTrace(): Promise<void> {
    const first = this.path.forward[0]?.circuit;
    if (!first) return;
    const ingress = first.ingress[0]!;
    const sock = await DiagnosticSocket.open({ toward: ingress });
    try {
      const t = await traceroute(
        sock,
        { ingress, auth: first.auth },
        { queries: TRACE_QUERIES, timeoutMs: 500 },
      );
      this.trace = t.hops.map((h) => hopSummary(h, TRACE_QUERIES));
      this.traceAt = Date.now();
    } finally {
      await sock.close();
    }
  }
}
