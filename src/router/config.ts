import { AdminConfigSchema } from '../api/admin.js';
import { Type, type Static } from '@sinclair/typebox';
import { StoreConfigSchema } from '../store/config.js';
import { BindAddressString, SnatString } from '../util/address-schema.js';
import { DATAPLANE_MODES, KERNEL_ATTACHES } from './dataplane-mode.js';

/** Router liveness keepalive interval by default (× 3 missed = dead), as SCION runs BFD. */
export const DEFAULT_LIVENESS_INTERVAL_MS = 200;

/** Lab fault injection (src/router/impair.ts); also used per ISP or PoP in lab topologies. */
export const ImpairConfigSchema = Type.Object(
  {
    dropPct: Type.Number({
      minimum: 0,
      maximum: 100,
      default: 0,
      description: 'share of carried packets dropped, in percent',
    }),
    delayMs: Type.Number({
      minimum: 0,
      maximum: 60_000,
      default: 0,
      description: 'delay added to every carried packet (accurate to about 1 ms)',
    }),
    jitterMs: Type.Optional(
      Type.Number({
        minimum: 0,
        maximum: 60_000,
        description: 'each delay varies uniformly within ±jitterMs; packets are never reordered',
      }),
    ),
    rewritePct: Type.Optional(
      Type.Number({
        minimum: 0,
        maximum: 100,
        description:
          'share of carried packets whose last payload byte is inverted before the router sees it, in percent: a middlebox that rewrites packets (arrow traceroute --integrity finds it)',
      }),
    ),
    seed: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 0xffffffff,
        description: 'seed of the drop, rewrite and jitter draws (default: random)',
      }),
    ),
    queueLimit: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 1_000_000,
        description: 'packets that may wait in the delay line (default 10000); more are dropped',
      }),
    ),
  },
  {
    additionalProperties: false,
    description:
      'LAB/TESTING ONLY: fault injection on the packets this router carries (DATA, ECHO, ...), never on failover probes or keepalives. Off when absent.',
  },
);

export const RouterConfigSchema = Type.Object(
  {
    isp: Type.String({ minLength: 1, description: 'ISP this router belongs to' }),
    pop: Type.String({ minLength: 1, description: 'PoP this router sits in' }),
    name: Type.String({ minLength: 1, description: 'router name, unique within the ISP' }),
    listen: BindAddressString('UDP address for ARROW packets, IP:PORT; port 0 picks one'),
    store: StoreConfigSchema,
    statsIntervalMs: Type.Integer({
      minimum: 50,
      default: 1000,
      description: 'how often counters are published',
    }),
    storePollMs: Type.Integer({
      minimum: 1,
      default: 5,
      description: 'how often the SQLite store is checked',
    }),
    storeThread: Type.Boolean({
      default: true,
      description:
        'run the store client (SQLite polling, etcd watch, stats writes) on its own thread, off the forwarding thread; false runs it in-thread (memory stores always do)',
    }),
    socketBufferBytes: Type.Integer({ minimum: 65536, default: 4 * 1024 * 1024 }),
    failover: Type.Object(
      {
        linkTimeout: Type.Object(
          {
            minMs: Type.Number({ minimum: 1, default: 15, description: 'floor of the link timeout' }),
            initialMs: Type.Number({
              minimum: 1,
              default: 50,
              description: 'link timeout before any RTT is measured',
            }),
            maxMs: Type.Number({ minimum: 1, default: 1000 }),
          },
          { default: {}, additionalProperties: false },
        ),
        recheckMs: Type.Integer({
          minimum: 10,
          default: 250,
          description: 'how often a dead neighbour is re-checked',
        }),
        rttProbeMs: Type.Integer({
          minimum: 10,
          default: 1000,
          description: 'how often the RTT to each neighbour in use is measured (link timeouts follow it)',
        }),
        recordDelayMs: Type.Integer({
          minimum: 0,
          default: 500,
          description:
            'delay before a repair is recorded in the store (keeps big writes out of the failover)',
        }),
        liveness: Type.Object(
          {
            enabled: Type.Boolean({
              default: true,
              description:
                'BFD-style keepalives to every neighbour in use, so routers repair without customer traffic (docs/failover.md)',
            }),
            intervalMs: Type.Integer({
              minimum: 1,
              default: DEFAULT_LIVENESS_INTERVAL_MS,
              description: 'keepalive interval per neighbour (200 ms, as SCION runs BFD on inter-AS links)',
            }),
            multiplier: Type.Integer({
              minimum: 2,
              default: 3,
              description:
                'intervals without an answer before a neighbour is dead (detection: intervalMs × multiplier, at least the link timeout)',
            }),
          },
          { default: {}, additionalProperties: false },
        ),
        probeRate: Type.Object(
          {
            perCircuit: Type.Object(
              {
                ratePerSec: Type.Number({ exclusiveMinimum: 0, default: 20 }),
                burst: Type.Number({ minimum: 1, default: 10 }),
              },
              { default: {}, additionalProperties: false },
            ),
            perAccount: Type.Object(
              {
                ratePerSec: Type.Number({ exclusiveMinimum: 0, default: 5000 }),
                burst: Type.Number({ minimum: 1, default: 2000 }),
              },
              { default: {}, additionalProperties: false },
            ),
          },
          { default: {}, additionalProperties: false },
        ),
      },
      { default: {}, additionalProperties: false },
    ),
    dataplane: Type.Union(
      DATAPLANE_MODES.map((m) => Type.Literal(m)),
      {
        default: 'auto',
        description:
          'where DATA of known circuits is forwarded: kernel (the eBPF/XDP fast path; the router does not start without it), node (this process), or auto (the kernel path when it loads and the listen address is on an interface other than loopback, else node, with the reason): docs/dataplane.md',
      },
    ),
    kernel: Type.Object(
      {
        attach: Type.Union([Type.Literal('auto'), ...KERNEL_ATTACHES.map((m) => Type.Literal(m))], {
          default: 'auto',
          description:
            'how the program is attached: auto tries xdp-native, xdp-generic, then tc (on a veth: xdp-generic, then tc)',
        }),
        maxCircuits: Type.Integer({
          minimum: 1,
          default: 65536,
          description: 'circuits the kernel maps hold (200 bytes each); more stay on the Node path',
        }),
        maxTagged: Type.Integer({
          minimum: 1,
          default: 16384,
          description:
            'ingress circuits with per-packet tags the kernel holds (360 bytes each, preallocated)',
        }),
      },
      { default: {}, additionalProperties: false },
    ),
    egress: Type.Optional(
      Type.Object(
        {
          tun: Type.String({
            pattern: '^[A-Za-z0-9_.-]{1,15}$',
            description:
              "TUN interface (created at start, needs CAP_NET_ADMIN) through which deliver-ip circuits hand decapsulated packets to this host, and their customers' prefixes are routed back: docs/egress.md",
          }),
          underlayMtu: Type.Integer({
            minimum: 1280,
            maximum: 65535,
            default: 1500,
            description: 'MTU of the network the return traffic crosses; the TUN takes 56 bytes less',
          }),
          announceTable: Type.Optional(
            Type.Integer({
              minimum: 1,
              maximum: 2 ** 31 - 1,
              description:
                "kernel routing table to announce the customer prefixes this router serves in (it takes one over on its first DATA packet), for the host's routing daemon to export; the route's metric is the claim time (docs/egress.md)",
            }),
          ),
          standbyTable: Type.Optional(
            Type.Integer({
              minimum: 1,
              maximum: 2 ** 31 - 1,
              description:
                'kernel routing table to announce every customer prefix this router holds a circuit for in, at metric 1: the edge router falls back to it at once when the serving router dies (docs/egress.md)',
            }),
          ),
          snat: Type.Optional(
            SnatString(
              "source NAT for what leaves the TUN (nftables): `masquerade` (the outgoing interface's address) or an IPv4 address of this host. Existing TCP connections do not survive a move to another router (docs/egress.md)",
            ),
          ),
        },
        {
          additionalProperties: false,
          description:
            'IP transit at this router (docs/egress.md). Without it, deliver-ip DATA is dropped as no-egress.',
        },
      ),
    ),
    impair: Type.Optional(ImpairConfigSchema),
    admin: { ...AdminConfigSchema, default: {} },
    metrics: Type.Object(
      {
        circuits: Type.Array(Type.String({ pattern: '^[0-9a-f]{32}$' }), {
          default: [],
          maxItems: 1000,
          description:
            'circuits (authenticator hex) that get Prometheus series of their own; none by default, as a router holds up to millions',
        }),
      },
      { default: {}, additionalProperties: false },
    ),
    announceTable: Type.Boolean({
      default: false,
      description:
        'send the parent process an IPC message per table change (used by arrow bench propagation)',
    }),
    registrationTtlMs: Type.Integer({
      minimum: 1000,
      default: 3000,
      description: "lease of the router's registration; a dead router leaves the offers within this time",
    }),
  },
  { additionalProperties: false },
);
export type RouterConfig = Static<typeof RouterConfigSchema>;

type Defaulted =
  | 'statsIntervalMs'
  | 'storePollMs'
  | 'storeThread'
  | 'socketBufferBytes'
  | 'registrationTtlMs'
  | 'announceTable'
  | 'dataplane'
  | 'admin'
  | 'metrics';
/** A router config as written to a file: fields with defaults may be left out. */
export type RouterConfigInput = Omit<RouterConfig, Defaulted | 'failover' | 'impair' | 'kernel' | 'egress'> &
  Partial<Pick<RouterConfig, Exclude<Defaulted, 'admin' | 'metrics'>>> & {
    admin?: Partial<RouterConfig['admin']>;
    metrics?: Partial<RouterConfig['metrics']>;
    failover?: DeepPartial<RouterConfig['failover']>;
    kernel?: Partial<RouterConfig['kernel']>;
    egress?: {
      tun: string;
      underlayMtu?: number;
      announceTable?: number;
      standbyTable?: number;
      snat?: string;
    };
    impair?: ImpairConfigInput;
  };
/** An `impair` section as written: `dropPct` and `delayMs` default to 0. */
export type ImpairConfigInput = Partial<Static<typeof ImpairConfigSchema>>;

type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] };
