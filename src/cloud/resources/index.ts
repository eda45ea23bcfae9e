/** The cloud's resources (issue #5): the ResourceStore port, its SQLite implementation, and the admin methods. */
export { ResourceStoreError, RESOURCE_STORE_ERROR_CODES, type ResourceStoreErrorCode } from './errors.js';
export {
  createResourceStore,
  canonicalJson,
  MAX_APPLY_DOCUMENTS,
  MAX_LIVE_RESOURCES,
  RESOURCE_STORE_SCHEMA_VERSION,
  type AckItemInput,
  type ApplyOutcome,
  type NodeAck,
  type NodeStatusRecord,
  type ResourceChange,
  type ResourceStore,
  type ResourceStoreDeps,
  type ResourceStoreViews,
  type StoredResource,
  type SyncItem,
} from './store.js';
export {
  createResourceAdminHandlers,
  LIST_VIEW_ACKS,
  DETAIL_VIEW_ACKS,
  DETAIL_VIEW_STATUS,
  MAX_VIEW_RESPONSE_BYTES,
  type ResourceAdminDeps,
} from './admin.js';
