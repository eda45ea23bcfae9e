/** The cloud's node API logic (issue #4): attestation sessions, node authentication, renewal, delegated SVIDs. */
export { NodeServiceError, NODE_SERVICE_ERROR_CODES, type NodeServiceErrorCode } from './errors.js';
export {
  createNodeService,
  nodeErrorReply,
  nodeApiHttpStatus,
  ATTEST_SESSION_TTL_MS,
  MAX_ATTEST_SESSIONS,
  ATTEST_SESSION_ID_BYTES,
  DEFAULT_NODE_SVID_TTL_MS,
  type NodeServiceDeps,
  type NodeServiceLogger,
  type NodeReply,
  type AuthenticatedNode,
  type NodeService,
} from './service.js';
export { createSpireNodeService, type SpireNodeServiceDeps } from './spire-service.js';
