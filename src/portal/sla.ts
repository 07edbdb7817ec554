import type { RouterStats } from '../store/circuit.js';
import type { CircuitStore } from '../store/store.js';

/**
 * SLA monitoring per circuit (docs/api.md, "SLA"). Routers publish cumulative per-circuit
 * counters every stats interval; the portal keeps a short history of them here and judges,
 * over a recent window, whether the segment met its offer's loss and latency bounds.
 *
 * Everything but `SlaSampler` is pure: samples in, verdicts out, no clocks or sockets, so
 * the window logic is unit-tested with made-up samples (test/sla.test.ts).
 */

export interface SlaOptions {
  /** The window the verdict covers. */
  windowMs: number;
  /** Fewer packets entering in the window than this: loss is not judged (too little evidence). */
  minPackets: number;
  /** A router whose latest counters are this much older than the freshest is not waited for. */
  staleMs: number;
}

export interface SlaBounds {
  /** The offer's `latencyMs.max`: bound on the segment's one-way latency. */
  latencyMs: number;
  /** The offer's `maxLossPct`. */
  lossPct: number;
}

export interface SlaViolation {
  kind: 'loss' | 'latency';
  measured: number;
  bound: number;
  message: string;
}

export interface SlaReport {
  /** Both bounds held over the window (a bound without evidence counts as held). */
  ok: boolean;
  lossOk: boolean;
  latencyOk: boolean;
  /** The span actually judged, in seconds: the window, or less while history builds up. */
  windowS: number;
  /** Start and end of that span (ISO); absent when there is no history yet. */
  from?: string;
  to?: string;
  /** DATA that entered the ISP in the span, and the part of it that left. */
  inPackets: number;
  outPackets: number;
  /** Deficit within the routers' snapshot timing slack (recent rate × 2 ms), not counted as loss. */
  slackPackets: number;
  /** in - out - slack, never negative. */
  lostPackets: number;
  /**
   * DATA the ingress refused in the span as over the bought rate. Never in `inPackets` (the routers
   * count in only what they admit), so never loss: the customer's excess is not the ISP's breach.
   */
  overRatePackets: number;
  /** Loss over the span in percent; null with fewer than `minPackets` entering. */
  lossPct: number | null;
  /** Latest one-way latency estimate across the segment (ms); null when not measured. */
  latencyMs: number | null;
  /** Highest estimate in the span: the figure judged against the bound. */
  latencyMaxMs: number | null;
  bounds: SlaBounds;
  violations: SlaViolation[];
}

/**
 * One router's counters for one circuit over time. Values are made monotonic: a router
 * that restarts counts from 0 again, and that fall is absorbed (what it counted between
 * its last publish and its death is lost to accounting, which shows as no loss, never as
 * false loss). Between samples, values are interpolated linearly; after the last one
 * they hold.
 */
export class CounterSeries {
  readonly t: number[] = [];
  readonly in: number[] = [];
  readonly out: number[] = [];
  /** DATA the ingress dropped as over the bought rate (`over-rate`): reported, never judged as loss. */
  readonly overRate: number[] = [];
  /** How long the router took to read the sample's counters (ms): its timestamp's uncertainty. */
  readonly readMs: number[] = [];
  /** Counting began at 0 in the first sample: before it, the value is known to be 0. */
  private startsAtZero = false;
  private rawIn = 0;
  private rawOut = 0;
  private rawOverRate = 0;

  constructor(
    readonly router: string,
    readonly pop: string,
    readonly address: string,
  ) {}

  get firstT(): number {
    return this.t[0] ?? Infinity;
  }
  get lastT(): number {
    return this.t[this.t.length - 1] ?? -Infinity;
  }
  /** Earliest time `at` can answer. */
  get knownFrom(): number {
    return this.startsAtZero ? -Infinity : this.firstT;
  }

  /** Adds a sample; repeats and samples older than the last (a re-read of the same publish) are ignored. */
  add(t: number, rawIn: number, rawOut: number, rawOverRate = 0, readMs = 0): void {
    const n = this.t.length;
    if (n === 0) {
      this.startsAtZero = rawIn === 0 && rawOut === 0 && rawOverRate === 0;
      this.push(t, rawIn, rawOut, rawOverRate, readMs);
    } else {
      if (t <= this.t[n - 1]!) return;
      const d = (raw: number, last: number): number => (raw >= last ? raw - last : raw);
      this.push(
        t,
        this.in[n - 1]! + d(rawIn, this.rawIn),
        this.out[n - 1]! + d(rawOut, this.rawOut),
        this.overRate[n - 1]! + d(rawOverRate, this.rawOverRate),
        readMs,
      );
    }
    this.rawIn = rawIn;
    this.rawOut = rawOut;
    this.rawOverRate = rawOverRate;
  }

  private push(t: number, vin: number, vout: number, vover: number, readMs: number): void {
    this.t.push(t);
    this.in.push(vin);
    this.out.push(vout);
    this.overRate.push(vover);
    this.readMs.push(Math.max(0, readMs));
  }

  /** The slowest counter read among the samples that `at` uses for instants in [from, to]. */
  readUncertaintyMs(from: number, to: number): number {
    let worst = 0;
    for (let i = 0; i < this.t.length; i++) {
      const next = this.t[i + 1] ?? Infinity;
      // Sample i bounds the interpolation for instants from t[i-1] up to t[i+1].
      if (next < from || (this.t[i - 1] ?? -Infinity) > to) continue;
      worst = Math.max(worst, this.readMs[i]!);
    }
    return worst;
  }

  /** The cumulative counters at time `t`, or undefined before anything is known. */
  at(t: number): { in: number; out: number; overRate: number } | undefined {
    const n = this.t.length;
    if (n === 0) return undefined;
    if (t < this.t[0]!) return this.startsAtZero ? { in: 0, out: 0, overRate: 0 } : undefined;
    if (t >= this.t[n - 1]!)
      return { in: this.in[n - 1]!, out: this.out[n - 1]!, overRate: this.overRate[n - 1]! };
    // Binary search for the last sample at or before t.
    let lo = 0;
    let hi = n - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (this.t[mid]! <= t) lo = mid;
      else hi = mid;
    }
    const f = (t - this.t[lo]!) / (this.t[hi]! - this.t[lo]!);
    return {
      in: this.in[lo]! + f * (this.in[hi]! - this.in[lo]!),
      out: this.out[lo]! + f * (this.out[hi]! - this.out[lo]!),
      overRate: this.overRate[lo]! + f * (this.overRate[hi]! - this.overRate[lo]!),
    };
  }

  /** Forgets samples before `t`, keeping the last one before it so `at(t)` still interpolates. */
  prune(t: number): void {
    let drop = 0;
    while (drop + 1 < this.t.length && this.t[drop + 1]! <= t) drop++;
    if (drop === 0) return;
    this.t.splice(0, drop);
    this.in.splice(0, drop);
    this.out.splice(0, drop);
    this.overRate.splice(0, drop);
    this.readMs.splice(0, drop);
    this.startsAtZero = false;
  }
}

/** What one router measured of its neighbours at one moment: RTT (ms) by neighbour address. */
interface RttSample {
  t: number;
  rtt: Map<string, number>;
}

interface RouterHistory {
  pop: string;
  address: string;
  lastT: number;
  rtts: RttSample[];
}

/** The circuit as the monitor needs it. */
export interface MonitoredCircuit {
  auth: string;
  ingressPop: string;
  egressPop: string;
}

const round3 = (x: number): number => Math.round(x * 1000) / 1000;

/** Routers snapshot counters on aligned instants, give or take this much (timer and loop jitter). */
const IN_FLIGHT_SLACK_MS = 2;
/**
 * Extra time, beyond the latency estimate, that a packet may take through the segment (a
 * router busy for a moment). Readings this much later must land past the stall and past the
 * egress router's next publish, hence up to a second; the window ends that much earlier.
 */
const IN_FLIGHT_EXTRA_MS = [0, 5, 20, 100, 300, 1000] as const;

/**
 * The portal's memory of router counters: per circuit and router a `CounterSeries`, per
 * router its RTTs to neighbours. `ingest` takes what the store holds; `report` judges.
 */
export class SlaMonitor {
  private readonly circuits = new Map<string, Map<string, CounterSeries>>();
  private readonly routers = new Map<string, RouterHistory>();
  private newest = -Infinity;

  constructor(private readonly historyMs: number) {}

  /** Takes every router's latest published stats (repeats are harmless). */
  ingest(stats: RouterStats[]): void {
    for (const s of stats) {
      const t = Date.parse(s.updatedAt);
      if (!Number.isFinite(t)) continue;
      if (t > this.newest) this.newest = t;
      let r = this.routers.get(s.router);
      if (!r)
        this.routers.set(s.router, (r = { pop: s.pop, address: s.address, lastT: -Infinity, rtts: [] }));
      if (t <= r.lastT) continue;
      r.lastT = t;
      r.pop = s.pop;
      r.address = s.address;
      const rtt = new Map<string, number>();
      for (const [k, n] of Object.entries(s.neighbours ?? {}))
        if (n.rttMs !== undefined && n.rttMs !== null && !n.dead) rtt.set(k, n.rttMs);
      r.rtts.push({ t, rtt });
      for (const [auth, c] of Object.entries(s.circuits)) {
        let rows = this.circuits.get(auth);
        if (!rows) this.circuits.set(auth, (rows = new Map()));
        let series = rows.get(s.router);
        if (!series) rows.set(s.router, (series = new CounterSeries(s.router, s.pop, s.address)));
        series.add(
          t,
          c.inPackets ?? 0,
          c.outPackets ?? 0,
          c.drops?.['over-rate'] ?? 0,
          s.countersReadMs ?? 0,
        );
      }
    }
    this.prune();
  }

  /** Circuits with history (for tests and operators). */
  get size(): number {
    return this.circuits.size;
  }

  private prune(): void {
    const cutoff = this.newest - this.historyMs;
    for (const [auth, rows] of this.circuits) {
      for (const [router, series] of rows) {
        if (series.lastT < cutoff) rows.delete(router);
        else series.prune(cutoff);
      }
      if (rows.size === 0) this.circuits.delete(auth);
    }
    for (const [name, r] of this.routers) {
      if (r.lastT < cutoff) {
        this.routers.delete(name);
        continue;
      }
      let drop = 0;
      while (drop + 1 < r.rtts.length && r.rtts[drop + 1]!.t <= cutoff) drop++;
      if (drop > 0) r.rtts.splice(0, drop);
    }
  }

  /**
   * The verdict over the last `windowMs` of history.
   *
   * Loss: DATA in at the ingress PoP vs out at the egress PoP. Each router's counters are
   * interpolated to common instants, so routers publishing at different moments do not
   * skew the balance. The egress side is read one segment latency later than the ingress side,
   * and then again up to IN_FLIGHT_EXTRA_MS later still, crediting as in flight what leaves in
   * that extra time minus what entered in it (the newcomers): a packet delayed by a router busy
   * for a moment is not taken for lost, and traffic that grows at the window's end does not
   * hide loss. The reading with the least deficit counts, so a violation is only declared when
   * every reading shows it. The window ends where every live router has published, with room
   * for the extra reading (no extrapolation).
   *
   * Latency: one-way ≈ RTT/2 between the ingress routers that carried the circuit and the
   * egress routers it left by, from the RTTs the ingress routers measure for failover.
   */
  report(circuit: MonitoredCircuit, bounds: SlaBounds, opts: SlaOptions): SlaReport {
    const rows = [...(this.circuits.get(circuit.auth)?.values() ?? [])];
    const ingress = rows.filter((r) => r.pop === circuit.ingressPop);
    const egress = rows.filter((r) => r.pop === circuit.egressPop);
    const newest = Math.max(...rows.map((r) => r.lastT));
    const fresh = (r: CounterSeries): boolean => r.lastT >= newest - opts.staleMs;

    // How much later the egress side is read: the segment's latency now (bounded: an estimate).
    const latestLatency = this.latency(circuit, ingress, egress, -Infinity, Infinity, true);
    const shift = Math.min(1000, Math.max(0, latestLatency ?? 0));
    const longest = shift + IN_FLIGHT_EXTRA_MS[IN_FLIGHT_EXTRA_MS.length - 1]!;
    // At the window's start the egress side is read the *lowest* latency later: read later than
    // packets truly take, it would count out what entered after the start (a false loss of the
    // rate times the overestimate; an RTT measured while a router stalled inflates the latest).
    const startShift = Math.min(shift, Math.max(0, this.lowestLatency(circuit, ingress, egress) ?? 0));
    // The ingress side is read at its own samples, never between two of them: the portal samples
    // a second apart, and traffic that is not steady within that second (a sender or a router
    // stalled for 50 ms) interpolates to tens of packets that never existed. The egress side is
    // then read a latency after an ingress sample, which is a few ms after its own (routers
    // publish on aligned instants): little to interpolate.
    const instants = [...new Set(ingress.flatMap((r) => r.t))].sort((a, b) => a - b);

    const freshIn = ingress.filter(fresh);
    const freshOut = egress.filter(fresh);
    const extraMax = longest - shift;
    let t1 = snapDown(
      instants,
      Math.min(...freshIn.map((r) => r.lastT - extraMax), ...freshOut.map((r) => r.lastT - longest)),
    );
    // The window opens once every egress router has published the circuit: DATA that entered
    // before the egress PoP learned it from the store was dropped there as unknown, and that is
    // provisioning, not a breach of the SLA. (A router publishes every circuit it holds, zeros
    // included, so its first sample is the latest moment it could have learned the circuit.)
    let t0 = snapUp(
      instants,
      Math.max(
        t1 - opts.windowMs,
        ...ingress.map((r) => r.knownFrom),
        ...egress.map((r) => r.firstT - startShift),
      ),
    );
    let inPackets = 0;
    let outPackets = 0;
    let overRatePackets = 0;
    const carriedIn: CounterSeries[] = [];
    const carriedOut: CounterSeries[] = [];
    if (freshIn.length > 0 && freshOut.length > 0 && Number.isFinite(t1) && t1 > t0) {
      for (const r of ingress) {
        const a = r.at(t0)!;
        const b = r.at(t1)!;
        const d = b.in - a.in;
        inPackets += d;
        overRatePackets += b.overRate - a.overRate;
        if (d > 0) carriedIn.push(r);
      }
      for (const extra of IN_FLIGHT_EXTRA_MS) {
        const end = Math.max(t1, snapDown(instants, t1 + extra));
        let out = 0;
        for (const r of egress) out += r.at(end + shift)!.out - r.at(t0 + startShift)!.out;
        // What entered after the window's end could have left in the extra time: not ours.
        for (const r of ingress) out -= r.at(end)!.in - r.at(t1)!.in;
        outPackets = Math.max(outPackets, out);
      }
      for (const r of egress)
        if (r.at(t1 + longest)!.out - r.at(t0 + startShift)!.out > 0) carriedOut.push(r);
    } else {
      t0 = t1 = NaN;
    }
    // Routers' snapshots are a millisecond or two apart and timestamped to the ms: a deficit
    // of that much traffic at either end of the window is measurement slack, not loss. So is what
    // a router's slow read of its counters blurs: each count at the window's two ends may be off
    // by the traffic of that read. Each end is credited at its own rate (traffic that stopped
    // before the window's end was still blurred at its start).
    let slackPackets = 0;
    if (Number.isFinite(t1)) {
      const rate = (a: number, b: number): number => {
        let n = 0;
        for (const r of ingress) n += r.at(b)!.in - r.at(a)!.in;
        return b > a ? n / (b - a) : 0;
      };
      const worst = (rows: CounterSeries[], a: number, b: number): number =>
        Math.max(0, ...rows.map((r) => r.readUncertaintyMs(a, b)));
      const readSlackMs =
        worst(ingress, t0, t1 + longest) + worst(egress, t0 + startShift, t1 + shift + longest);
      const ends = rate(t0, Math.min(t1, t0 + 1000)) + rate(Math.max(t0, t1 - 1000), t1);
      slackPackets = Math.ceil(ends * (IN_FLIGHT_SLACK_MS + readSlackMs));
    }
    // Interpolation leaves fractions of a packet: only whole packets are lost.
    const lostPackets = Math.max(0, Math.floor(inPackets - outPackets - slackPackets + 1e-9));
    inPackets = Math.round(inPackets);
    outPackets = Math.round(outPackets);
    const lossPct =
      inPackets >= Math.max(1, opts.minPackets) ? round3((100 * lostPackets) / inPackets) : null;

    const from = carriedIn.length > 0 ? carriedIn : ingress;
    const to = carriedOut.length > 0 ? carriedOut : egress;
    const latencyMs = this.latency(circuit, from, to, -Infinity, Infinity, true);
    const inWindow = Number.isFinite(t0) ? this.latency(circuit, from, to, t0, t1, false) : undefined;
    const latencyMaxMs =
      latencyMs === undefined && inWindow === undefined ? null : Math.max(latencyMs ?? 0, inWindow ?? 0);

    const lossOk = lossPct === null || lossPct <= bounds.lossPct;
    const latencyOk = latencyMaxMs === null || latencyMaxMs <= bounds.latencyMs;
    const violations: SlaViolation[] = [];
    if (!lossOk)
      violations.push({
        kind: 'loss',
        measured: lossPct!,
        bound: bounds.lossPct,
        message: `loss ${formatPct(lossPct!)} > ${formatPct(bounds.lossPct)}`,
      });
    if (!latencyOk)
      violations.push({
        kind: 'latency',
        measured: latencyMaxMs!,
        bound: bounds.latencyMs,
        message: `latency ${formatMs(latencyMaxMs!)} > ${formatMs(bounds.latencyMs)}`,
      });
    const spanned = Number.isFinite(t0) && Number.isFinite(t1);
    return {
      ok: lossOk && latencyOk,
      lossOk,
      latencyOk,
      windowS: spanned ? round3((t1 - t0) / 1000) : 0,
      ...(spanned ? { from: new Date(t0).toISOString(), to: new Date(t1).toISOString() } : {}),
      inPackets,
      outPackets,
      slackPackets,
      lostPackets,
      overRatePackets: Math.round(overRatePackets),
      lossPct,
      latencyMs: latencyMs === undefined ? null : round3(latencyMs),
      latencyMaxMs: latencyMaxMs === null ? null : round3(latencyMaxMs),
      bounds,
      violations,
    };
  }

  /** The lowest one-way latency estimate (RTT/2, ms) between any of `from` and any of `to` in the history. */
  private lowestLatency(
    circuit: MonitoredCircuit,
    from: CounterSeries[],
    to: CounterSeries[],
  ): number | undefined {
    let lowest: number | undefined;
    for (const ms of this.oneWay(circuit, from, to, (rtts) => rtts))
      if (lowest === undefined || ms < lowest) lowest = ms;
    return lowest;
  }

  /**
   * One-way latency estimate (RTT/2, ms) from `from` routers to `to` routers: the highest
   * over the pairs, either at each router's latest sample or the highest within [t0, t1].
   * Undefined when the segment has no internal hop (ingress PoP = egress PoP) or nothing
   * was measured.
   */
  private latency(
    circuit: MonitoredCircuit,
    from: CounterSeries[],
    to: CounterSeries[],
    t0: number,
    t1: number,
    latestOnly: boolean,
  ): number | undefined {
    let worst: number | undefined;
    const samples = latestOnly
      ? (rtts: RttSample[]): RttSample[] => rtts.slice(-1)
      : (rtts: RttSample[]): RttSample[] => rtts.filter((s) => s.t >= t0 && s.t <= t1);
    for (const ms of this.oneWay(circuit, from, to, samples))
      if (worst === undefined || ms > worst) worst = ms;
    return worst;
  }

  /** Every RTT/2 measured from one of `from` to one of `to` in the samples `pick` keeps; none within one PoP. */
  private *oneWay(
    circuit: MonitoredCircuit,
    from: CounterSeries[],
    to: CounterSeries[],
    pick: (rtts: RttSample[]) => RttSample[],
  ): Generator<number> {
    if (circuit.ingressPop === circuit.egressPop) return;
    for (const f of from)
      for (const s of pick(this.routers.get(f.router)?.rtts ?? []))
        for (const e of to) {
          const rtt = s.rtt.get(this.routers.get(e.router)?.address ?? e.address);
          if (rtt !== undefined) yield rtt / 2;
        }
  }
}

/** The first instant after `now` halfway between two multiples of `intervalMs` (ms since the epoch). */
export function nextSampleAt(now: number, intervalMs: number): number {
  const half = intervalMs / 2;
  return (Math.floor((now - half) / intervalMs) + 1) * intervalMs + half;
}

/** The latest of the sorted `instants` at or before `t`; `t` itself when there is none. */
function snapDown(instants: number[], t: number): number {
  if (!Number.isFinite(t)) return t;
  let best = t;
  for (const x of instants) {
    if (x > t) break;
    best = x;
  }
  return best;
}

/** The earliest of the sorted `instants` at or after `t`; `t` itself when there is none. */
function snapUp(instants: number[], t: number): number {
  if (!Number.isFinite(t)) return t;
  for (const x of instants) if (x >= t) return x;
  return t;
}

export function formatPct(pct: number): string {
  return `${Number(pct.toPrecision(pct >= 1 ? 3 : 2))}%`;
}

function formatMs(ms: number): string {
  return `${Number(ms.toPrecision(3))} ms`;
}

/**
 * Feeds the monitor: reads every router's published stats from the store every
 * `intervalMs`, off any request path. A failed read is skipped; the next one catches up.
 */
export class SlaSampler {
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(
    private readonly store: CircuitStore,
    readonly monitor: SlaMonitor,
    private readonly intervalMs: number,
    private readonly log?: { warn(obj: object, msg: string): void },
  ) {}

  start(): void {
    if (this.intervalMs <= 0 || this.timer) return;
    this.stopped = false;
    void this.sample();
    this.schedule();
  }

  private stopped = false;

  /**
   * The next read, halfway between two of the routers' publishes (they publish on multiples of
   * their statsIntervalMs, which `intervalMs` should equal): each publish is read once, and every
   * router's row is then from the same instant. Read at a free phase, some reads would land between
   * two routers' writes of one instant, and the history would pair counts taken an interval apart.
   */
  private schedule(): void {
    const now = Date.now();
    const next = nextSampleAt(now, this.intervalMs);
    this.timer = setTimeout(() => {
      if (this.stopped) return;
      void this.sample();
      this.schedule();
    }, next - now);
    this.timer.unref();
  }

  /** Samples that could not read the store (logged once per hundred). */
  failedSamples = 0;

  /** One read, now. */
  async sample(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      this.monitor.ingest(await this.store.listRouterStats());
    } catch (err) {
      // The next sample catches up; a store down for long shows as a growing count.
      if (this.failedSamples++ % 100 === 0)
        this.log?.warn(
          { err: (err as Error).message, failedSamples: this.failedSamples },
          'SLA sample skipped',
        );
    } finally {
      this.busy = false;
    }
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
