/** The edge side of the hub (issue #5): the EdgeHub session, the sealed edge store and its data key, the admin methods. */
export {
  createEdgeHub,
  EDGE_HUB_AGENT,
  HUB_BACKOFF_BASE_MS,
  HUB_BACKOFF_CAP_MS,
  HUB_BACKOFF_RESET_AFTER_MS,
  HUB_GRACEFUL_JITTER_MS,
  HUB_HANDSHAKE_TIMEOUT_MS,
  HUB_WELCOME_TIMEOUT_MS,
  HUB_CLOSE_WAIT_MS,
  type EdgeHub,
  type EdgeHubOptions,
  type EdgeHubStatus,
  type StatusReport,
  type HubStorePort,
} from './client.js';
export { wsHubConnector, MAX_HUB_REFUSAL_BYTES, type HubConnector, type HubConnectOptions, type HubSocket, type HubSocketEvents } from './socket.js';
export { nodeSvidIdentitySource, type NodeIdentityPort } from './identity-adapter.js';
export { createEdgeHubAdminHandlers, MAX_EDGE_VIEW_RESPONSE_BYTES, type EdgeHubAdminDeps } from './admin.js';
export { EdgeHubError, EDGE_HUB_ERROR_CODES, type EdgeHubErrorCode } from './errors.js';
export {
  openEdgeHubStore,
  ensurePrivateDir,
  DATA_KEY_BYTES,
  MAX_OUTBOX_ROWS,
  MAX_EDGE_RESOURCES,
  MAX_EDGE_TOMBSTONES,
  TOMBSTONE_MIN_AGE_MS,
  MAX_APPLY_ITEMS,
  MAX_PENDING_STATUS,
  STATE_DB_FILE,
  type EdgeHubStore,
  type EdgeHubStoreOptions,
  type EdgeHubStoreLogger,
  type HubItem,
  type LocalResource,
  type StoreChange,
  type ApplyResult,
  type ApplyOptions,
} from './store.js';
export { EdgeStoreError, EDGE_STORE_ERROR_CODES, type EdgeStoreErrorCode } from './store-errors.js';
export {
  openDataKey,
  defaultSecretsKeyFile,
  sealedDataKeyProvider,
  SECRETS_KEY_FILE_ENV,
  DEK_SEALED_FILE,
  DEK_TPM_PUB_FILE,
  DEK_TPM_PRIV_FILE,
  KEK_BYTES,
  type DataKeyProvider,
  type OpenDataKeyOptions,
} from './sealing.js';
export { tpmSeal, tpmUnseal, TPM_PRIMARY_ALGORITHM, MAX_TPM_BLOB_BYTES, type TpmSealOptions, type TpmSealedBlobs } from './sealing-tpm.js';
