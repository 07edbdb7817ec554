import type { Topology } from '../../src/lab/topology.js';

/** A lab ISP's offer from PoP `from` to PoP `to` with generous terms (1 Gb/s, 1-50 ms, 1% loss), as the service tests sell. */
export function labOffer(from: string, to: string): Topology['isps'][0]['offers'][0] {
  return {
    from,
    to,
    capacityMbps: 1000,
    latencyMs: { min: 1, max: 50 },
    maxLossPct: 1,
    uptimePct: 99.99,
    pricePerMbps: 1,
  };
}
