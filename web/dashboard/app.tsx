/**
 * The dashboard page (docs/operations.md, "The dashboard"): preact renders what `arrow dashboard`
 * streams from /api/events; uPlot draws the charts. Bundled by scripts/build-dashboard.mjs with
 * esbuild into dist/dashboard: the page loads nothing from elsewhere, so it works offline.
 */
import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import type {
  CustomerViewT,
  DashboardSnapshotT,
  RouterViewT,
  TimelineEventT,
} from '../../src/api/dashboard.js';

type Connection = 'connecting' | 'live' | 'reconnecting';

const fmt = new Intl.NumberFormat('en');
const clock = (ms: number): string => {
  const d = new Date(ms);
  return `${d.toLocaleTimeString('en-GB', { hour12: false })}.${String(d.getMilliseconds()).padStart(3, '0')}`;
};
const COLORS = [
  '#1f77b4',
  '#d62728',
  '#2ca02c',
  '#9467bd',
  '#ff7f0e',
  '#8c564b',
  '#e377c2',
  '#17becf',
  '#7f7f7f',
  '#bcbd22',
];

function useDashboard(): { snap: DashboardSnapshotT | undefined; conn: Connection; fresh: Set<string> } {
  const [snap, setSnap] = useState<DashboardSnapshotT>();
  const [conn, setConn] = useState<Connection>('connecting');
  const [fresh, setFresh] = useState<Set<string>>(new Set());
  useEffect(() => {
    // EventSource reconnects by itself; the next `snapshot` brings the page up to date.
    const es = new EventSource('api/events');
    es.onopen = () => setConn('live');
    es.onerror = () => setConn('reconnecting');
    es.addEventListener('snapshot', (m) =>
      setSnap(JSON.parse((m as MessageEvent<string>).data) as DashboardSnapshotT),
    );
    es.addEventListener('timeline', (m) => {
      // Shown at once, before the next snapshot carries it.
      const e = JSON.parse((m as MessageEvent<string>).data) as TimelineEventT;
      setSnap((s) => (s ? { ...s, timeline: mergeTimeline(s.timeline, e) } : s));
      setFresh((f) => new Set(f).add(eventKey(e)));
    });
    return () => es.close();
  }, []);
  return { snap, conn, fresh };
}

const eventKey = (e: TimelineEventT): string => `${e.at}|${e.kind}|${e.subject}|${e.object ?? ''}`;

function mergeTimeline(list: TimelineEventT[], e: TimelineEventT): TimelineEventT[] {
  if (list.some((x) => eventKey(x) === eventKey(e))) return list;
  return [...list, e].sort((a, b) => a.at - b.at);
}

function App() {
  const { snap, conn, fresh } = useDashboard();
  const [selected, setSelected] = useState<string>();
  if (!snap) return <p class="loading">Connecting to the dashboard service…</p>;
  const router = snap.routers.find((r) => r.name === selected) ?? snap.routers[0];
  return (
    <main>
      <header>
        <h1>Arrow</h1>
        <span class="source">{snap.source}</span>
        <span class={`conn ${conn}`} data-testid="connection">
          {conn}
        </span>
        <span class="muted">
          updated {clock(snap.at)} · v{snap.version}
        </span>
      </header>
      <section class="grid">
        <div class="panel network">
          <h2>Network</h2>
          <NetworkMap snap={snap} selected={router?.name} onSelect={setSelected} />
          <RouterTable routers={snap.routers} selected={router?.name} onSelect={setSelected} />
          <Components snap={snap} />
        </div>
        <div class="panel timeline">
          <h2>Failover timeline</h2>
          <Timeline events={snap.timeline} fresh={fresh} />
        </div>
      </section>
      <section class="grid">
        <div class="panel">
          <h2>
            Traffic: <span data-testid="chart-router">{router?.name ?? 'no router'}</span>
          </h2>
          {router ? (
            <RouterChart snap={snap} router={router.name} />
          ) : (
            <p class="muted">no routers answer yet</p>
          )}
        </div>
        <div class="panel">
          <h2>Customer circuit: RTT and traffic</h2>
          {snap.customer ? (
            <CustomerChart snap={snap} />
          ) : (
            <p class="muted">no customer path watched (arrow dashboard --path FILE)</p>
          )}
        </div>
      </section>
      {snap.customer ? <Customer c={snap.customer} /> : null}
    </main>
  );
}

/** ISPs as columns, PoPs stacked in each, routers side by side; links between routers; the customer's path on top. */
function NetworkMap({
  snap,
  selected,
  onSelect,
}: {
  snap: DashboardSnapshotT;
  selected: string | undefined;
  onSelect: (n: string) => void;
}) {
  const pos = new Map<string, { x: number; y: number }>();
  const boxes: { x: number; y: number; w: number; h: number; label: string }[] = [];
  const colW = 270;
  const popH = 96;
  let maxPops = 1;
  snap.isps.forEach((isp, i) => {
    maxPops = Math.max(maxPops, isp.pops.length);
    isp.pops.forEach((pop, j) => {
      const cx = 20 + i * colW + colW / 2;
      const y = 46 + j * popH;
      boxes.push({
        x: cx - colW / 2 + 10,
        y: y - 24,
        w: colW - 20,
        h: popH - 16,
        label: `${isp.name} · ${pop.name}`,
      });
      pop.routers.forEach((r, k) =>
        pos.set(r, { x: cx + (k - (pop.routers.length - 1) / 2) * 96, y: y + 26 }),
      );
    });
  });
  const width = Math.max(460, 40 + snap.isps.length * colW);
  const height = 40 + maxPops * popH;
  const byName = new Map(snap.routers.map((r) => [r.name, r]));
  const links: { a: string; b: string; dead: boolean }[] = [];
  const seen = new Set<string>();
  for (const r of snap.routers)
    for (const l of r.links) {
      if (!pos.has(l.to)) continue;
      const key = [r.name, l.to].sort().join('|');
      const prior = links.find((x) => [x.a, x.b].sort().join('|') === key);
      if (prior) prior.dead ||= l.dead;
      else if (!seen.has(key)) links.push({ a: r.name, b: l.to, dead: l.dead });
      seen.add(key);
    }
  const path = (snap.customer?.traceroute ?? [])
    .filter((h) => h.direction === 'forward' && h.router && pos.has(h.router))
    .map((h) => pos.get(h.router!)!);
  return (
    <svg
      class="map"
      viewBox={`0 0 ${width} ${height}`}
      width={width}
      height={height}
      role="img"
      aria-label="network map"
    >
      {boxes.map((b) => (
        <g>
          <rect x={b.x} y={b.y} width={b.w} height={b.h} rx="8" class="pop" />
          <text x={b.x + 8} y={b.y + 16} class="pop-label">
            {b.label}
          </text>
        </g>
      ))}
      {links.map((l) => {
        const a = pos.get(l.a)!;
        const b = pos.get(l.b)!;
        return <line x1={a.x} y1={a.y} x2={b.x} y2={b.y} class={l.dead ? 'link dead' : 'link'} />;
      })}
      {path.length > 1 ? (
        <polyline points={path.map((p) => `${p.x},${p.y}`).join(' ')} class="customer-path" />
      ) : null}
      {[...pos].map(([name, p]) => {
        const r = byName.get(name);
        return (
          <g
            class={`node ${r?.state ?? 'no-answer'}${name === selected ? ' selected' : ''}`}
            onClick={() => onSelect(name)}
            data-node={name}
          >
            <circle cx={p.x} cy={p.y} r="13" />
            <text x={p.x} y={p.y + 28} class="node-label">
              {name}
            </text>
          </g>
        );
      })}
    </svg>
  );
}

function RouterTable({
  routers,
  selected,
  onSelect,
}: {
  routers: RouterViewT[];
  selected: string | undefined;
  onSelect: (n: string) => void;
}) {
  return (
    <table class="routers">
      <thead>
        <tr>
          <th>router</th>
          <th>ISP / PoP</th>
          <th>state</th>
          <th>data path</th>
          <th class="num">pps</th>
          <th class="num">forwarded</th>
          <th class="num">dropped</th>
          <th class="num">circuits</th>
          <th class="num">neighbours dead</th>
          <th class="num">repairs (hops)</th>
        </tr>
      </thead>
      <tbody>
        {routers.map((r) => (
          <tr
            data-router={r.name}
            class={r.name === selected ? 'selected' : ''}
            onClick={() => onSelect(r.name)}
            title={r.error ?? r.admin}
          >
            <td>{r.name}</td>
            <td>
              {r.isp} / {r.pop}
            </td>
            <td>
              <span class={`badge ${r.state}`} data-field="state">
                {r.state}
              </span>
            </td>
            <td>{r.dataplane}</td>
            <td class="num" data-field="pps" data-value={r.pps}>
              {fmt.format(r.pps)}
            </td>
            <td class="num" data-field="forwarded" data-value={r.forwardedPackets}>
              {fmt.format(r.forwardedPackets)}
            </td>
            <td
              class="num"
              data-field="dropped"
              data-value={r.droppedPackets}
              title={Object.entries(r.drops)
                .map(([k, v]) => `${k}: ${v}`)
                .join('\n')}
            >
              {fmt.format(r.droppedPackets)}
            </td>
            <td class="num" data-field="circuits" data-value={r.circuits}>
              {fmt.format(r.circuits)}
            </td>
            <td class="num">
              {r.neighbours.dead}/{r.neighbours.total}
            </td>
            <td class="num" data-field="repairs" data-value={r.repairs}>
              {r.repairs} ({r.hopsMoved})
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function Components({ snap }: { snap: DashboardSnapshotT }) {
  const others = snap.components.filter((c) => c.service !== 'router');
  if (others.length === 0) return null;
  return (
    <p class="components">
      {others.map((c) => (
        <span class={`badge ${c.up ? 'up' : 'dead'}`} title={c.error ?? c.admin} data-component={c.name}>
          {c.name} ({c.service}) {c.up ? 'up' : 'no answer'}
        </span>
      ))}
    </p>
  );
}

const KIND_TEXT: Record<TimelineEventT['kind'], string> = {
  'verdict-dead': 'verdict',
  'verdict-alive': 'alive again',
  'router-down': 'router down',
  'router-up': 'router up',
  customer: 'customer',
};

function Timeline({ events, fresh }: { events: TimelineEventT[]; fresh: Set<string> }) {
  if (events.length === 0)
    return <p class="muted">Nothing has happened yet. Kill a router: arrow lab fail ROUTER --kind kill</p>;
  // Newest first; each event's time beside the one before it, so a failover reads as a sequence.
  const list = [...events].reverse();
  return (
    <ol class="events" data-testid="timeline">
      {list.map((e, i) => {
        const prev = list[i + 1];
        return (
          <li
            class={`event ${e.kind}${fresh.has(eventKey(e)) ? ' fresh' : ''}`}
            data-event-kind={e.kind}
            data-subject={e.subject}
            data-object={e.object ?? ''}
          >
            <span class="time">{clock(e.at)}</span>
            <span class="delta">{prev ? `+${fmt.format(Math.round(e.at - prev.at))} ms` : ''}</span>
            <span class="kind">{KIND_TEXT[e.kind]}</span>
            <span class="text">{e.text}</span>
          </li>
        );
      })}
    </ol>
  );
}

function Customer({ c }: { c: CustomerViewT }) {
  return (
    <section class="grid">
      <div class="panel">
        <h2>Customer {c.name}: circuits</h2>
        <table data-testid="customer-circuits">
          <thead>
            <tr>
              <th>direction</th>
              <th>ISP</th>
              <th>PoPs</th>
              <th>circuit</th>
              <th class="num">packets</th>
              <th class="num">dropped</th>
              <th>SLA</th>
            </tr>
          </thead>
          <tbody>
            {c.circuits.map((x) => (
              <tr data-circuit={x.auth} title={x.error ?? ''}>
                <td>{x.direction}</td>
                <td>{x.isp}</td>
                <td>
                  {x.from} → {x.to}
                </td>
                <td class="mono">{x.auth.slice(0, 8)}</td>
                <td class="num">{fmt.format(x.packets)}</td>
                <td class="num">{fmt.format(x.dropped)}</td>
                <td>
                  {x.sla ? (
                    <span
                      class={`badge ${x.sla.ok ? 'up' : 'dead'}`}
                      title={`bounds: ${x.sla.bounds.latencyMs} ms, ${x.sla.bounds.lossPct}% loss`}
                    >
                      {x.sla.ok ? 'met' : 'violated'} ·{' '}
                      {x.sla.latencyMs === null ? 'no latency yet' : `${x.sla.latencyMs} ms`} ·{' '}
                      {x.sla.lossPct === null ? 'no loss figure' : `${x.sla.lossPct}% loss`}
                    </span>
                  ) : (
                    <span class="muted">{x.error ? 'portal not answering' : 'no verdict yet'}</span>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {c.atlas ? <Atlas atlas={c.atlas} /> : null}
      </div>
      <div class="panel">
        <h2>Traceroute along the first circuit</h2>
        {c.traceroute.length === 0 ? (
          <p class="muted">no traceroute yet</p>
        ) : (
          <table data-testid="traceroute">
            <thead>
              <tr>
                <th class="num">#</th>
                <th>ISP</th>
                <th>PoP</th>
                <th>router</th>
                <th>direction</th>
                <th class="num">RTT</th>
                <th class="num">loss</th>
              </tr>
            </thead>
            <tbody>
              {c.traceroute.map((h) => (
                <tr>
                  <td class="num">{h.index}</td>
                  <td>{h.isp ?? '*'}</td>
                  <td>{h.pop ?? '*'}</td>
                  <td>{h.router ?? '*'}</td>
                  <td>{h.direction}</td>
                  <td class="num">{h.rttMs === null ? '*' : `${h.rttMs.toFixed(3)} ms`}</td>
                  <td class="num">{h.lossPct}%</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {c.tracerouteAt ? <p class="muted">traced at {clock(c.tracerouteAt)}</p> : null}
      </div>
    </section>
  );
}

function Atlas({ atlas }: { atlas: NonNullable<CustomerViewT['atlas']> }) {
  return (
    <>
      <h3>The atlas's candidates</h3>
      <table data-testid="atlas">
        <thead>
          <tr>
            <th>ISPs</th>
            <th class="num">latency</th>
            <th class="num">loss</th>
            <th class="num">price</th>
            <th>verdict</th>
          </tr>
        </thead>
        <tbody>
          {atlas.candidates.map((p) => {
            const chosen = p.rejected === null && p.isps.join('>') === atlas.chosen.join('>');
            return (
              <tr class={chosen ? 'chosen' : ''}>
                <td>{p.isps.join(' › ')}</td>
                <td class="num">{p.latencyMs} ms</td>
                <td class="num">{p.lossPct}%</td>
                <td class="num">{p.price}</td>
                <td>
                  {chosen ? 'bought' : p.rejected ? `rejected: ${p.rejected.join('; ')}` : 'acceptable'}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </>
  );
}

/** A uPlot chart kept across renders: created once, fed new data on every snapshot. */
function Chart({
  series,
  data,
  height = 220,
}: {
  series: uPlot.Series[];
  data: uPlot.AlignedData;
  height?: number;
}) {
  const el = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | undefined>(undefined);
  const shape = series.map((s) => s.label).join('|');
  useEffect(() => {
    if (!el.current) return;
    const width = Math.max(320, el.current.clientWidth);
    // One y axis per scale: the first on the left, the second on the right, each titled with its unit.
    const scales = [...new Set(series.map((s) => s.scale ?? 'y'))];
    const axes: uPlot.Axis[] = [
      {},
      ...scales.map((scale, i) => ({
        scale,
        side: i === 0 ? 3 : 1,
        size: 64,
        label: series.find((s) => (s.scale ?? 'y') === scale)?.label as string,
        grid: { show: i === 0 },
      })),
    ];
    plot.current = new uPlot({ width, height, series: [{}, ...series], axes }, data, el.current);
    return () => plot.current?.destroy();
  }, [shape]);
  useEffect(() => plot.current?.setData(data), [data]);
  return <div class="chart" ref={el} />;
}

const seconds = (snap: DashboardSnapshotT): number[] => snap.history.at.map((t) => t / 1000);

function RouterChart({ snap, router }: { snap: DashboardSnapshotT; router: string }) {
  const pps = snap.history.pps[router] ?? [];
  const data: uPlot.AlignedData = [seconds(snap), pps];
  return (
    <Chart
      series={[{ label: 'forwarded (packets/s)', stroke: COLORS[0], width: 2, scale: 'pps' }]}
      data={data}
    />
  );
}

function CustomerChart({ snap }: { snap: DashboardSnapshotT }) {
  const data: uPlot.AlignedData = [seconds(snap), snap.history.customerRttMs, snap.history.customerPps];
  return (
    <Chart
      series={[
        { label: 'RTT (ms)', stroke: COLORS[1], width: 2, scale: 'ms' },
        { label: 'first circuit (packets/s)', stroke: COLORS[2], width: 2, scale: 'pps' },
      ]}
      data={data}
    />
  );
}

render(<App />, document.getElementById('app')!);
