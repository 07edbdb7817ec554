export { Endpoint, type EndpointEvents } from './endpoint.js';
export { Forwarder } from './forwarder.js';
export {
  buyPath,
  releasePath,
  relinquishAll,
  defaultReturnSegments,
  type BoughtCircuit,
  type BoughtPath,
  type PathSpec,
  type SegmentSpec,
  type TargetSpec,
} from './path.js';
export { PortalClient, PortalError, type Offers, type CircuitStatsView } from './portal-client.js';
