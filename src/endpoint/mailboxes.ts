import { Type, type Static } from '@sinclair/typebox';
import { CircuitView } from '../api/portal.js';
import { AddressString } from '../util/address-schema.js';
import { newAuthenticator } from '../wire/authenticator.js';
import { abandonPaths, buyPath, type BoughtPath, type PathSpec } from './path.js';

/**
 * Phalanx's mailboxes (seed 001 §4.4), bought by the destination (docs/services.md, "DoS
 * protection"): K paths converging on the destination, each an ingress point, with their return
 * paths delivering to one client's ARROW socket. The destination pays for them and hands the client
 * a bundle of what it needs to send: each path's circuits (ingress routers, authenticators, tag
 * keys), never the API keys that bought them. The client spreads over them (`arrow forward
 * --mailboxes`) with a PRF key of its own.
 *
 * One client per bundle: the return paths end at that client's socket, so replies find it, and a
 * client that floods its own mailboxes is held to their bought rate by the ingress routers'
 * policing, apart from every other client's circuits.
 */
const BundleCircuit = Type.Object(
  {
    isp: Type.Optional(Type.String()),
    /** Where it was bought: shown, never called (the client holds no key for it). */
    portal: Type.String(),
    circuit: CircuitView,
  },
  { additionalProperties: false },
);

export const MailboxBundleSchema = Type.Object(
  {
    kind: Type.Literal('arrow-mailboxes'),
    version: Type.Literal(1),
    /** The client's ARROW socket: every return path delivers here, so the client binds it. */
    client: AddressString(),
    ingress: Type.Array(
      Type.Object(
        {
          forward: Type.Array(BundleCircuit, { minItems: 1 }),
          /** The authenticator the return path writes on what it delivers to the client. */
          replyAuth: Type.String({ pattern: '^[0-9a-f]{32}$' }),
        },
        { additionalProperties: false },
      ),
      { minItems: 1 },
    ),
  },
  { additionalProperties: false },
);
export type MailboxBundle = Static<typeof MailboxBundleSchema>;

/**
 * Buys every path with a return path to `client`, all or nothing: if one purchase fails, every
 * path already bought is relinquished and the error thrown.
 */
export async function buyMailboxes(specs: PathSpec[], client: string): Promise<BoughtPath[]> {
  const bought: BoughtPath[] = [];
  try {
    for (const spec of specs)
      bought.push(await buyPath(spec, { replyTo: { addresses: [client], auth: newAuthenticator() } }));
  } catch (err) {
    return abandonPaths(bought, err);
  }
  return bought;
}

/** The bundle for the client: the bought paths' forward circuits, without the keys that bought them. */
export function mailboxBundle(paths: BoughtPath[], client: string): MailboxBundle {
  return {
    kind: 'arrow-mailboxes',
    version: 1,
    client,
    ingress: paths.map((p) => {
      if (!p.replyAuth) throw new Error('a mailbox needs a return path to the client');
      return {
        forward: p.forward.map((b) => ({
          ...(b.segment.isp !== undefined ? { isp: b.segment.isp } : {}),
          portal: b.segment.portal,
          circuit: b.circuit,
        })),
        replyAuth: p.replyAuth,
      };
    }),
  };
}

/**
 * The paths a bundle describes, for a `Connection` to send on. They carry no API key: nothing can
 * re-buy or relinquish them from the client's side (the destination owns them).
 */
export function pathsOfBundle(bundle: MailboxBundle): BoughtPath[] {
  return bundle.ingress.map((i) => ({
    forward: i.forward.map((b) => ({
      segment: {
        ...(b.isp !== undefined ? { isp: b.isp } : {}),
        portal: b.portal,
        apiKey: '',
        ingressPop: b.circuit.ingressPop,
        egressPop: b.circuit.egressPop,
      },
      circuit: b.circuit,
    })),
    reverse: [],
    replyAuth: i.replyAuth,
  }));
}
