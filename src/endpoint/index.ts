// The endpoint library's entry points, protected ones first: every way of carrying traffic listed
// here before `Endpoint` runs the failover driver (docs/failover.md).
export { Forwarder, type ForwarderOptions } from './forwarder.js';
export {
  Connection,
  DEFAULT_DETECTOR,
  PathCircuit,
  rebuyFrom,
  type ConnectionEvents,
  type DetectorOptions,
  type ReadyScope,
} from './connection.js';
export { AtlasConnection, specFromCandidate, type ConnectOptions } from './connect.js';
export {
  circuitLabel,
  failoverLine,
  logFailoverEvents,
  notReadyLines,
  type FailoverEventName,
} from './failover-log.js';
export {
  buyPath,
  releasePath,
  relinquishAll,
  abandonPaths,
  defaultReturnSegments,
  type BoughtCircuit,
  type BoughtPath,
  type PathSpec,
  type SegmentSpec,
  type TargetSpec,
} from './path.js';
export { PortalClient, PortalError, type Offers, type CircuitStatsView } from './portal-client.js';
/**
 * The ARROW socket a Connection drives. On its own (`useUnprotected` + `send`) it has NO failover:
 * a dead router loses all traffic until healed. Use it bare only for diagnostics.
 */
export { Endpoint, type EndpointEvents } from './endpoint.js';
