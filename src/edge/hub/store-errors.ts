import { EdgewardError } from '../../identity/index.js';

/**
 * Failure codes of the edge hub store (DATA/hub/state.db) and of its data key (DATA/hub/dek.sealed);
 * a closed union, codes are never reused for another meaning.
 *
 * - `edge-store/io`: a file or directory cannot be created, opened, read or written (also: a symlink, not
 *   a regular file, a directory owned by another user), or SQLite failed.
 * - `edge-store/version`: state.db was written by a newer schema version than this build knows.
 * - `edge-store/corrupt`: state.db's schema version table or its meta rows are malformed, or SQLite
 *   reports a corrupt file.
 * - `edge-store/key-unavailable`: the data key cannot be had: the key-encryption key (file or TPM) is
 *   missing, refused (a symlink, readable by others, not ours), not the one the data key was sealed with,
 *   or dek.sealed is tampered or malformed; also a data key that does not open this store. The store is
 *   never opened (and never silently recreated) without it.
 * - `edge-store/outbox-full`: the status outbox holds its maximum number of unacknowledged rows.
 * - `edge-store/invalid`: an argument is invalid (an item of `apply`, a status entry, an option such as a
 *   secrets key file inside the data directory).
 */
export const EDGE_STORE_ERROR_CODES = [
  'edge-store/io',
  'edge-store/version',
  'edge-store/corrupt',
  'edge-store/key-unavailable',
  'edge-store/outbox-full',
  'edge-store/invalid',
] as const;
export type EdgeStoreErrorCode = (typeof EDGE_STORE_ERROR_CODES)[number];
export class EdgeStoreError extends EdgewardError<EdgeStoreErrorCode> {}
