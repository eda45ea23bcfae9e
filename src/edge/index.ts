/** The edge core: the agent (standalone or joined to a cloud), its Workload API, attestation collectors and stores. */
export { runEdgeStandalone, runEdgeJoined, runEdgeSpire, type EdgeDeps, type EdgeLogger, type RunningEdge } from './main.js';
export { SpireCloudClient, SPIRE_RECONTACT_MIN_MS, SPIRE_RECONTACT_SPACING_MS, type SpireCloudClientOptions, type SpireSessionState } from './spire/index.js';
export {
  parseEdgeConfig,
  parseJoinedEdgeConfig,
  parseSpireEdgeConfig,
  type SpireEdgeConfig,
  type SpireEdgeConfigInput,
  EdgeConfigError,
  DEFAULT_ENTRIES_SYNC_MS,
  type EdgeConfig,
  type EdgeConfigInput,
  type EdgeConfigErrorCode,
  type JoinedEdgeConfig,
  type JoinedEdgeConfigInput,
} from './config.js';
export * from './cloud-client/index.js';
export * from './join/index.js';
export {
  EdgeCache,
  EdgeCacheError,
  EDGE_CACHE_ERROR_CODES,
  CACHE_KEY_BYTES,
  loadOrCreateCacheKey,
  createCloudEntryCatalog,
  createJoinedIssuer,
  JoinedIssuerError,
  NodeSvidManager,
  backoffDelay,
  RENEW_BACKOFF_BASE_MS,
  RENEW_BACKOFF_CAP_MS,
  type CachedSvidRecord,
  type EdgeCacheErrorCode,
  type CloudEntryCatalog,
  type CloudReachability,
  type NodeApiPort,
  type NodeSvidDeps,
} from './joined/index.js';
export {
  UnixPeerRegistry,
  attachUnixPeerServer,
  PeerCredError,
  PEERCRED_ERROR_CODES,
  peerCredOf,
  ProcWatch,
  procStillSame,
  readProcStart,
  readProcStatus,
  readExePath,
  sha256OfExe,
  AccountDb,
  type UnixPeer,
  type PeerCred,
  type PeerCredErrorCode,
} from './peercred/index.js';
export { createWorkloadApiServer, DEFAULT_WORKLOAD_API_LIMITS, type WorkloadApiServer, type WorkloadApiLimits } from './workload-api/server.js';
export { WorkloadEndpointError, WORKLOAD_ENDPOINT_ERROR_CODES, type WorkloadEndpointErrorCode } from './workload-api/status.js';
export type { WorkloadIdentitySource, X509SvidView, JwtSvidView, AttestedCaller, IdentityChange } from './workload-api/source.js';
export { createAgentSource, type AgentSource, type EntryCatalog, type TrustSource, type JwtMint } from './workload-api/agent-source.js';
export { createEntryStore, loadEntriesPolicy, type EntryStore } from './registration/index.js';
export { createUnixAttestor } from './attestor/index.js';
export * from './tpm/index.js';
export { realTimers, type Timers } from './svid/timers.js';
export * from './hub/index.js';
