/**
 * A router's Prometheus metrics (docs/operations.md, "Metrics"), read from the stats snapshot it
 * publishes every stats interval: the same numbers `arrow circuits`, the SLA reports and the store
 * see, never a second count. Names follow the Prometheus conventions and SCION's router metrics
 * (`router_input_pkts_total`, `router_dropped_pkts_total{reason}`, ...), under `arrow_router_`.
 *
 * Series per circuit are off unless the operator lists circuits (`metrics.circuits`): a router
 * holds up to millions, and one series each would swamp any Prometheus. Pure: it registers
 * collectors on a registry, and each scrape reads `latest()`.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { RouterStats } from '../store/circuit.js';

type Labels = Record<string, string>;
type Sample = [labels: Labels, value: number];

/** The snapshot's handled-packet counters, named as metric labels. */
const PACKET_TYPES: Record<string, string> = {
  data: 'data',
  probes: 'probe',
  probeAcks: 'probe_ack',
  echoes: 'echo',
  keepalives: 'keepalive',
  keepaliveAcks: 'keepalive_ack',
  traces: 'trace',
  lastLegs: 'last_leg',
  relays: 'relay',
};

type CircuitSum = 'packets' | 'bytes' | 'inPackets' | 'inBytes' | 'outPackets' | 'outBytes';

/** Counters that sum a field over the circuits of the snapshot. */
const CIRCUIT_SUMS: [name: string, help: string, field: CircuitSum][] = [
  ['arrow_router_forwarded_packets_total', 'DATA past every check, all circuits', 'packets'],
  ['arrow_router_forwarded_bytes_total', 'Bytes of that DATA, as it arrived', 'bytes'],
  ['arrow_router_input_packets_total', 'DATA entering the ISP at this router (circuits `in`)', 'inPackets'],
  ['arrow_router_input_bytes_total', 'Bytes of DATA entering the ISP here', 'inBytes'],
  ['arrow_router_output_packets_total', 'DATA leaving the ISP at this router (circuits `out`)', 'outPackets'],
  ['arrow_router_output_bytes_total', 'Bytes of DATA leaving the ISP here', 'outBytes'],
];

/** Counters read from the snapshot's failover counters (src/router/failover.ts). */
const FAILOVER_TOTALS: [name: string, help: string, field: string][] = [
  ['arrow_router_repairs_total', 'Repairs: a neighbour declared dead and its hops moved', 'neighboursDown'],
  [
    'arrow_router_liveness_verdicts_total',
    'Of the repairs, those from unanswered keepalives',
    'livenessDown',
  ],
  ['arrow_router_hops_moved_total', 'Hops moved to an alternative by repairs', 'hopsMoved'],
  ['arrow_router_hops_stranded_total', 'Hops left with no live alternative', 'hopsStranded'],
  ['arrow_router_keepalives_sent_total', 'Liveness keepalives sent', 'keepalivesSent'],
  ['arrow_router_repair_record_failures_total', 'Repairs whose record in the store failed', 'recordFailures'],
];

export interface RouterMetricsOptions {
  /** Circuits (authenticator hex) that get series of their own; none by default. */
  circuits?: readonly string[];
}

/**
 * Registers the router's metrics on `registry`. `latest` returns the most recent snapshot (or
 * undefined before the first): a counter then reads as its value at that snapshot.
 */
export function registerRouterMetrics(
  registry: Registry,
  latest: () => RouterStats | undefined,
  o: RouterMetricsOptions = {},
): void {
  const counter = (
    name: string,
    help: string,
    labelNames: string[],
    samples: (s: RouterStats) => Sample[],
  ): void => {
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        const s = latest();
        if (s === undefined) return;
        for (const [labels, value] of samples(s)) if (value > 0) this.inc(labels, value);
      },
    });
  };
  const gauge = (
    name: string,
    help: string,
    labelNames: string[],
    samples: (s: RouterStats) => Sample[],
  ): void => {
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        const s = latest();
        if (s === undefined) return;
        for (const [labels, value] of samples(s)) this.set(labels, value);
      },
    });
  };
  const one = (value: number | undefined): Sample[] => (value === undefined ? [] : [[{}, value]]);
  const sumCircuits = (s: RouterStats, f: CircuitSum): number => {
    let n = 0;
    for (const c of Object.values(s.circuits)) n += c[f] ?? 0;
    return n;
  };
  const failover = (s: RouterStats, k: string): number | undefined => s.failover?.[k];

  counter(
    'arrow_router_packets_total',
    'Packets the router handled, by ARROW type (both data paths)',
    ['type'],
    (s) => Object.entries(s.handled).map(([k, v]) => [{ type: PACKET_TYPES[k] ?? k }, v]),
  );
  counter(
    'arrow_router_dropped_packets_total',
    'Packets dropped, by reason (docs/wire.md)',
    ['reason'],
    (s) => Object.entries(s.drops).map(([reason, v]) => [{ reason }, v]),
  );
  for (const [name, help, field] of CIRCUIT_SUMS) counter(name, help, [], (s) => one(sumCircuits(s, field)));
  gauge('arrow_router_circuits', 'Circuits in the forwarding table', [], (s) =>
    one(Object.keys(s.circuits).length),
  );
  gauge('arrow_router_rejected_circuits', 'Circuit records the router could not compile and skips', [], (s) =>
    one(s.rejected ?? 0),
  );
  gauge('arrow_router_table_revision', 'The store revision the forwarding table has applied', [], (s) =>
    one(s.tableRevision),
  );

  // Neighbours and failover (docs/failover.md).
  gauge(
    'arrow_router_neighbour_up',
    'Whether a neighbour is alive (1) or declared dead (0)',
    ['neighbour'],
    (s) => Object.entries(s.neighbours ?? {}).map(([neighbour, n]) => [{ neighbour }, n.dead ? 0 : 1]),
  );
  gauge(
    'arrow_router_neighbour_rtt_seconds',
    'Smoothed RTT to a neighbour, from its keepalive answers',
    ['neighbour'],
    (s) =>
      Object.entries(s.neighbours ?? {}).flatMap(([neighbour, n]): Sample[] =>
        n.rttMs === undefined ? [] : [[{ neighbour }, n.rttMs / 1000]],
      ),
  );
  gauge(
    'arrow_router_neighbour_timeout_seconds',
    'Link timeout: silence after which a neighbour is dead',
    ['neighbour'],
    (s) => Object.entries(s.neighbours ?? {}).map(([neighbour, n]) => [{ neighbour }, n.timeoutMs / 1000]),
  );
  counter(
    'arrow_router_liveness_changes_total',
    'Neighbour state changes, by the new state',
    ['state'],
    (s) => [
      [{ state: 'down' }, failover(s, 'neighboursDown') ?? 0],
      [{ state: 'up' }, failover(s, 'neighboursUp') ?? 0],
    ],
  );
  for (const [name, help, field] of FAILOVER_TOTALS) counter(name, help, [], (s) => one(failover(s, field)));

  // The data path.
  gauge(
    'arrow_router_dataplane_info',
    'The data path DATA takes (1 for the one in use)',
    ['mode', 'attach', 'interface'],
    (s) =>
      s.dataplane === undefined
        ? []
        : [
            [
              {
                mode: s.dataplane.mode,
                attach: s.dataplane.attach ?? '',
                interface: s.dataplane.interface ?? '',
              },
              1,
            ],
          ],
  );
  counter(
    'arrow_router_kernel_packets_total',
    "The kernel fast path's counters (docs/dataplane.md)",
    ['counter'],
    (s) => Object.entries(s.dataplane?.kernel ?? {}).map(([name, v]) => [{ counter: name }, v]),
  );
  gauge('arrow_router_kernel_circuits', 'Circuits in the kernel maps', [], (s) => one(s.dataplane?.circuits));
  gauge(
    'arrow_router_event_loop_delay_seconds',
    "The forwarding thread's event-loop delay over the last stats interval",
    ['quantile'],
    (s) =>
      s.loopDelayMs === undefined
        ? []
        : [
            [{ quantile: '0.5' }, s.loopDelayMs.p50 / 1000],
            [{ quantile: '0.99' }, s.loopDelayMs.p99 / 1000],
            [{ quantile: '1' }, s.loopDelayMs.max / 1000],
          ],
  );
  counter('arrow_router_store_errors_total', 'Errors the store client met in background work', [], (s) =>
    one(s.storeErrors),
  );
  counter(
    'arrow_router_store_thread_restarts_total',
    'Store threads replaced because they stopped answering',
    [],
    (s) => one(s.storeThreadRestarts),
  );
  gauge(
    'arrow_router_stats_timestamp_seconds',
    'When the router read the counters these metrics show',
    [],
    (s) => one(Date.parse(s.updatedAt) / 1000),
  );

  // IP transit (docs/egress.md).
  counter(
    'arrow_router_egress_packets_total',
    'Inner packets across the egress TUN, by direction',
    ['direction'],
    (s) =>
      s.egress === undefined
        ? []
        : [
            [{ direction: 'delivered' }, s.egress.delivered],
            [{ direction: 'returned' }, s.egress.returned],
          ],
  );
  counter('arrow_router_egress_errors_total', 'Egress failures, by kind', ['kind'], (s) =>
    s.egress === undefined
      ? []
      : [
          [{ kind: 'no_return_path' }, s.egress.noReturnPath],
          [{ kind: 'write' }, s.egress.writeErrors],
          [{ kind: 'route' }, s.egress.routeErrors],
        ],
  );
  counter(
    'arrow_router_egress_takeovers_total',
    'Customer prefixes this router took over and announced',
    [],
    (s) => one(s.egress?.takeovers),
  );
  gauge(
    'arrow_router_egress_serving_customers',
    'Customer prefixes this router serves now (the EN-DN mapping)',
    [],
    (s) => one(s.egress === undefined ? undefined : Object.keys(s.egress.serving ?? {}).length),
  );

  // Per circuit, only those the operator listed.
  const listed = o.circuits ?? [];
  if (listed.length === 0) return;
  const perCircuit =
    (f: 'packets' | 'inPackets' | 'outPackets' | 'dropped') =>
    (s: RouterStats): Sample[] =>
      listed.flatMap((circuit): Sample[] => {
        const c = s.circuits[circuit];
        return c === undefined ? [] : [[{ circuit }, c[f] ?? 0]];
      });
  counter(
    'arrow_router_circuit_packets_total',
    'DATA past every check, per listed circuit',
    ['circuit'],
    perCircuit('packets'),
  );
  counter(
    'arrow_router_circuit_input_packets_total',
    'DATA entering the ISP here, per listed circuit',
    ['circuit'],
    perCircuit('inPackets'),
  );
  counter(
    'arrow_router_circuit_output_packets_total',
    'DATA leaving the ISP here, per listed circuit',
    ['circuit'],
    perCircuit('outPackets'),
  );
  counter(
    'arrow_router_circuit_dropped_packets_total',
    'DATA dropped, per listed circuit',
    ['circuit'],
    perCircuit('dropped'),
  );
}
