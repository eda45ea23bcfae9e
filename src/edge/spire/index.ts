/** The edge agent in SPIRE mode: node identity from an external SPIFFE Workload API, session with the cloud. */
export { runEdgeSpire, SPIRE_RECONTACT_MIN_MS, SPIRE_RECONTACT_SPACING_MS, type SpireSessionState } from './agent.js';
export { SpireCloudClient, type SpireCloudClientOptions } from './session.js';
