/** The edge core: the agent (standalone today), its Workload API, attestation collectors and stores. */
export { runEdgeStandalone, type EdgeDeps, type EdgeLogger, type RunningEdge } from './main.js';
export { parseEdgeConfig, EdgeConfigError, type EdgeConfig, type EdgeConfigInput, type EdgeConfigErrorCode } from './config.js';
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
export { createAgentSource, type AgentSource, type EntryCatalog, type TrustSource } from './workload-api/agent-source.js';
export { createEntryStore, loadEntriesPolicy, type EntryStore } from './registration/index.js';
export { createUnixAttestor } from './attestor/index.js';
export * from './tpm/index.js';
