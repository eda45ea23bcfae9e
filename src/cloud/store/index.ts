/** The cloud core's persistent state (issue #4): join tokens, attested nodes, CA state. */
export { CloudStoreError, CLOUD_STORE_ERROR_CODES, type CloudStoreErrorCode } from './errors.js';
export {
  createCloudStore,
  cloudSpiffeId,
  baseNodeSelectors,
  CLOUD_ID_PATH,
  NODE_RECORD_METHODS,
  SPIRE_NODE_FINGERPRINT,
  type NodeRecordMethod,
  MAX_NODE_EXTRA_SELECTORS,
  CLOUD_STORE_SCHEMA_VERSION,
  MAX_NODE_FINGERPRINT_LENGTH,
  MAX_CA_SNAPSHOT_BYTES,
  type AttestedNode,
  type AttestedNodeInput,
  type CloudStore,
  type CloudStoreOptions,
  type NodeChange,
  type NodeChangeKind,
  type SerialStatus,
  type EntryChange,
  type EntryChangeCause,
} from './store.js';
