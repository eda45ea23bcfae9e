/** Registration entries on the edge: the SQLite entry store and the policy-file loader. */
export {
  createEntryStore,
  ENTRY_STORE_SCHEMA_VERSION,
  type EntryChange,
  type EntryChangeCause,
  type EntrySource,
  type EntryStore,
  type EntryStoreOptions,
  type PolicyApplyResult,
  type StoredEntry,
} from './store.js';
export {
  loadEntriesPolicy,
  parseEntriesPolicy,
  validateEntriesPolicy,
  ENTRIES_POLICY_API_VERSION,
  ENTRIES_POLICY_KIND,
  DEFAULT_MAX_POLICY_BYTES,
  MAX_POLICY_ENTRIES,
  POLICY_DOCUMENT_FIELDS,
  POLICY_ENTRY_FIELDS,
  POLICY_ENTRY_REQUIRED_FIELDS,
  type EntriesPolicy,
  type EntriesPolicyOptions,
} from './policy.js';
export {
  EntryStoreError,
  ENTRY_STORE_ERROR_CODES,
  PolicyError,
  POLICY_ERROR_CODES,
  type EntryStoreErrorCode,
  type PolicyErrorCode,
  type PolicyProblem,
} from './errors.js';
