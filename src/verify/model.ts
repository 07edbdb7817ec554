/**
 * The model `arrow verify` checks (docs/verify.md), after Symnet (seed 004 §3.1): every router
 * and endpoint is a rule that matches a symbolic packet (where it is, which authenticator it
 * carries) and transforms it (a new authenticator, a next hop among alternatives) or delivers it.
 * The payload is a variable no rule writes, so it arrives unmodified wherever a packet arrives;
 * the hop limit is counted. Pure data: sources.ts builds it from portals or a store.
 */

/** Where a packet goes next: ordered alternatives, the one in use, and the authenticator written. */
export interface NextHopChoice {
  addresses: string[];
  active: number;
  auth: string;
}

export type RuleAction =
  /** Rewrite the authenticator and send to the active address (`next`, `internal`, `reply` hops). */
  | { kind: 'hop'; hop: NextHopChoice; via: 'next' | 'internal' }
  /** Leave ARROW: to an endpoint (with its header), a UDP server or, decapsulated, IP prefixes. */
  | {
      kind: 'deliver';
      how: 'endpoint' | 'udp' | 'ip';
      /** The endpoint's active address, the UDP server, or the prefixes. */
      target: string;
      /** Where the target's answers enter ARROW (the circuit's `reply`): a flow of its own. */
      reply?: NextHopChoice;
    };

/** One ISP's rule: a packet carrying `auth` at any of `at` (router addresses) takes `action`. */
export interface Rule {
  isp: string;
  /** The customer's circuit this rule belongs to (its authenticator), for reports. */
  circuit: string;
  at: string[];
  auth: string;
  action: RuleAction;
}

export interface RouterPlace {
  isp: string;
  pop: string;
  /** Its name, where the source knows it. */
  name?: string;
}

/** Where a packet enters ARROW: a circuit's ingress routers (primary first) and its authenticator. */
export interface Entry {
  /** Who sends into it: `customer` for a path's first circuit, or the circuit whose target answers. */
  from: string;
  circuit: string;
  isp: string;
  hop: NextHopChoice;
}

export interface Model {
  rules: Rule[];
  /** Every router address the sources know, with its ISP and PoP. */
  routers: Map<string, RouterPlace>;
  /** ISPs whose tables are in the model: an address of another ISP leaves the view. */
  tables: Set<string>;
  /**
   * Whether every address a packet may reach should be known: true for a customer's view (it
   * gave every ISP its paths cross), so an unknown address is a black hole; false for one ISP's
   * table, where other ISPs' addresses are simply outside it.
   */
  closed: boolean;
  entries: Entry[];
  /**
   * ISPs whose egress routers source-NAT what they decapsulate (`egress.snat`, docs/egress.md)
   * rather than route the customer's own addresses back: their deliver-ip state is a NAT binding.
   */
  snat?: Set<string>;
}
