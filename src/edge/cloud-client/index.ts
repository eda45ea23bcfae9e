/** The edge's HTTPS client of the cloud node API (pinned bundle, cloud SVID checked by ID, mTLS). */
export {
  CloudClient,
  parseCloudAddress,
  parseBundleDigest,
  digestsEqual,
  cloudSpiffeId,
  checkCloudServer,
  peerChain,
  MAX_CLOUD_RESPONSE_BYTES,
  DEFAULT_CLOUD_TIMEOUT_MS,
  type CloudAddress,
  type CloudClientOptions,
  type NodeCredentials,
} from './client.js';
export {
  CloudClientError,
  CloudRefusedError,
  JoinError,
  CLOUD_CLIENT_ERROR_CODES,
  JOIN_ERROR_CODES,
  type CloudClientErrorCode,
  type JoinErrorCode,
} from './errors.js';
