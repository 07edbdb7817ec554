import { Type, type Static } from '@sinclair/typebox';
import { StoreConfigSchema } from '../store/config.js';
import { ADDRESS_PATTERN } from '../wire/address.js';

export const RouterConfigSchema = Type.Object(
  {
    isp: Type.String({ minLength: 1, description: 'ISP this router belongs to' }),
    pop: Type.String({ minLength: 1, description: 'PoP this router sits in' }),
    name: Type.String({ minLength: 1, description: 'router name, unique within the ISP' }),
    listen: Type.String({
      pattern: ADDRESS_PATTERN,
      description: 'UDP address for ARROW packets; port 0 picks one',
    }),
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
    socketBufferBytes: Type.Integer({ minimum: 65536, default: 4 * 1024 * 1024 }),
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
  'statsIntervalMs' | 'storePollMs' | 'socketBufferBytes' | 'registrationTtlMs' | 'announceTable';
/** A router config as written to a file: fields with defaults may be left out. */
export type RouterConfigInput = Omit<RouterConfig, Defaulted> & Partial<Pick<RouterConfig, Defaulted>>;
