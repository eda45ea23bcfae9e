/** The node API HTTPS listener (TLS 1.3, node SVID client certificates, bounded requests). */
export {
  createNodeApiServer,
  peerChainDer,
  NodeApiServerError,
  NODE_API_SERVER_ERROR_CODES,
  NODE_API_PATHS,
  type NodeApiBackend,
  type NodeApiReply,
  type NodeApiServer,
  type NodeApiServerErrorCode,
  type NodeApiServerLimits,
  type NodeApiServerLogger,
  type NodeApiServerOptions,
  type NodeApiServerStats,
} from './node-api-server.js';
export { identityFromSource, SourceIdentityError, type SourceIdentityErrorCode } from './source-identity.js';
