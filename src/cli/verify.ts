/**
 * `arrow verify` (docs/verify.md): checks stitched paths without sending a packet. A customer's
 * view from each portal it buys from (`--path FILE` names them, or `--portal URL --key KEY`
 * pairs), or one ISP's whole table from its store (`--store PORTAL_CONFIG`). Prints every circuit's
 * outcome, the ISPs it crosses, and what single router failures do to it; exits 1 on a loop or
 * a black hole (now or under a failure the alternatives allow), 2 when the input cannot be read.
 */
import { Type } from '@sinclair/typebox';
import { PortalClient } from '../endpoint/portal-client.js';
import { PortalConfigSchema } from '../portal/config.js';
import { openStore } from '../store/open.js';
import { ConfigError, loadConfig } from '../util/config.js';
import { authPrefix } from '../wire/authenticator.js';
import {
  isProblem,
  verify,
  type FlowResult,
  type Outcome,
  type Verdict,
  type FlowState,
  type StateMove,
  type WitnessStep,
} from '../verify/check.js';
import { customerModel, ispModel, type PortalView } from '../verify/sources.js';
import type { Model } from '../verify/model.js';

export interface VerifyFlags {
  path?: string;
  portal?: string[];
  key?: string[];
  store?: string;
  failures: boolean;
  /** ISPs whose egress routers source-NAT (`egress.snat`) instead of routing customer addresses. */
  snat?: string[];
  json?: boolean;
}

/** The portals of a bought path (`arrow connect --save`): what the check needs of it. */
const BoughtPathPortals = Type.Object({
  forward: Type.Array(
    Type.Object({ segment: Type.Object({ portal: Type.String(), apiKey: Type.String() }) }),
    {
      minItems: 1,
    },
  ),
  reverse: Type.Optional(
    Type.Array(Type.Object({ segment: Type.Object({ portal: Type.String(), apiKey: Type.String() }) })),
  ),
});

async function portalViews(pairs: { portal: string; key: string }[]): Promise<PortalView[]> {
  return Promise.all(
    pairs.map(async ({ portal, key }) => {
      const client = new PortalClient(portal, key);
      const [offers, list] = await Promise.all([client.offers(), client.circuits()]);
      return { offers, circuits: list.circuits };
    }),
  );
}

/** The model the flags name: exactly one of --path, --portal/--key pairs, --store. */
export async function loadModel(o: VerifyFlags): Promise<{ model: Model; source: string }> {
  const ways = [o.path !== undefined, (o.portal?.length ?? 0) > 0, o.store !== undefined].filter(
    Boolean,
  ).length;
  if (ways !== 1)
    throw new ConfigError('give one of --path FILE, --portal URL --key KEY (repeatable), --store FILE');
  if (o.path !== undefined) {
    const p = loadConfig(BoughtPathPortals, o.path);
    const pairs = new Map<string, string>();
    for (const b of [...p.forward, ...(p.reverse ?? [])]) pairs.set(b.segment.portal, b.segment.apiKey);
    const views = await portalViews([...pairs].map(([portal, key]) => ({ portal, key })));
    return { model: customerModel(views), source: `${views.length} portal(s) of ${o.path}` };
  }
  if (o.store !== undefined) {
    const config = loadConfig(PortalConfigSchema, o.store);
    const store = await openStore(config.store, { isp: config.isp });
    try {
      const [snap, routers] = await Promise.all([store.snapshot(), store.listRouters()]);
      return {
        model: ispModel(config.isp, snap.circuits, routers),
        source: `${config.isp}'s store (${snap.circuits.length} circuits, ${routers.length} live routers)`,
      };
    } finally {
      await store.close();
    }
  }
  const portals = o.portal ?? [];
  const keys = o.key ?? [];
  if (keys.length !== portals.length)
    throw new ConfigError(`give one --key per --portal (${portals.length} portal(s), ${keys.length} key(s))`);
  const views = await portalViews(portals.map((portal, i) => ({ portal, key: keys[i]! })));
  return { model: customerModel(views), source: `${views.length} portal(s)` };
}

const where = (s: WitnessStep): string =>
  s.isp ? `${s.isp}/${s.pop}${s.router ? `/${s.router}` : ''} (${s.address})` : s.address;

function outcomeText(o: Outcome): string {
  switch (o.kind) {
    case 'delivered':
      return `delivered (${o.how}) to ${o.target}`;
    case 'leaves':
      return `leaves the view at ${o.address}${o.isp ? ` (${o.isp})` : ''}`;
    case 'black-hole':
      return `BLACK HOLE (${o.reason}): ${o.detail}`;
    case 'loop':
      return `LOOP: ${o.cycle.map((s) => `${where(s)} ${authPrefix(s.auth)}`).join(' -> ')}`;
    case 'hop-limit':
      return `HOP LIMIT: ${o.hops} routers, more than a packet's hop limit`;
  }
}

function flowLine(f: FlowResult): string {
  return `${f.entry.isp} ${authPrefix(f.entry.circuit)} (from ${f.entry.from}): ${outcomeText(f.outcome)}${f.isps.length ? `; crosses ${f.isps.join(' > ')}` : ''}`;
}

const STATE_TEXT: Record<FlowState['kind'], string> = {
  'en-dn': 'serves the customer prefix (EN-DN mapping)',
  nat: 'holds the NAT binding',
  socket: 'holds the UDP socket the server answers',
};

function stateLine(s: FlowState): string {
  return `${s.router ?? s.holder} ${STATE_TEXT[s.kind]}`;
}

function moveLine(m: StateMove): string {
  const head = `${authPrefix(m.circuit)}: ${m.from.router ?? m.from.holder}'s state`;
  if (!m.to) return `${head} is gone and the flow is no longer delivered`;
  return m.established === 'kept'
    ? `${head} moves to ${m.to.router ?? m.to.holder} (takeover on the first packet; answers follow once the route converges): established flows kept`
    : `${head} cannot move (${m.from.kind === 'nat' ? 'a NAT binding' : 'a socket'} at its own address): established flows LOST, new ones go through ${m.to.router ?? m.to.holder}`;
}

/** The report for people: each circuit, each problem with its witness, and the failures that break something. */
export function verifyText(v: Verdict, source: string): string[] {
  const lines = [`Checked ${v.flows.length} circuit entries from ${source}; ${v.states} states.`];
  for (const f of v.flows) {
    lines.push(`  ${flowLine(f)}`);
    if (f.state) lines.push(`    state: ${stateLine(f.state)}`);
    if (isProblem(f.outcome) && f.outcome.kind !== 'loop')
      lines.push(`    witness: ${f.witness.map((s) => `${where(s)} ${authPrefix(s.auth)}`).join(' -> ')}`);
  }
  const bad = v.failures.filter((x) => x.flows.some((f) => isProblem(f.outcome)));
  lines.push(
    v.failures.length === 0
      ? 'Single router failures: not checked.'
      : `Single router failures: ${v.failures.length} routers checked, ${bad.length} break something.`,
  );
  for (const x of bad)
    for (const f of x.flows.filter((y) => isProblem(y.outcome)))
      lines.push(`  ${x.router ?? x.failed} dead: ${flowLine(f)}`);
  for (const x of v.failures)
    for (const m of x.stateMoves) lines.push(`  ${x.router ?? x.failed} dead: ${moveLine(m)}`);
  lines.push(v.problems === 0 ? 'No loop and no black hole.' : `${v.problems} problem(s).`);
  return lines;
}

export async function runVerify(o: VerifyFlags): Promise<void> {
  const { model, source } = await loadModel(o);
  if (o.snat?.length) model.snat = new Set(o.snat.flatMap((x) => x.split(',')).filter(Boolean));
  const v = verify(model, { failures: o.failures });
  if (o.json) console.log(JSON.stringify({ source, ...v }, null, 2));
  else for (const l of verifyText(v, source)) console.log(l);
  if (v.problems > 0) process.exitCode = 1;
}
