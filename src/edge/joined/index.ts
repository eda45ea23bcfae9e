/** The joined edge agent: node SVID renewal, cloud-backed Workload API, encrypted SVID cache. */
export { runEdgeJoined, type CloudReachability } from './agent.js';
export { EdgeCache, EdgeCacheError, EDGE_CACHE_ERROR_CODES, CACHE_KEY_BYTES, loadOrCreateCacheKey, type CachedSvidRecord, type EdgeCacheErrorCode } from './cache.js';
export { createCloudEntryCatalog, type CloudEntryCatalog } from './catalog.js';
export { createJoinedIssuer, JoinedIssuerError, type JoinedIssuerDeps, type JoinedIssuerErrorCode } from './issuer.js';
export { NodeSvidManager, NodeSvidError, NODE_SVID_ERROR_CODES, type NodeSvidErrorCode, backoffDelay, RENEW_BACKOFF_BASE_MS, RENEW_BACKOFF_CAP_MS, type NodeApiPort, type NodeSvidDeps } from './node-svid.js';
