import { EdgewardError } from '../../identity/index.js';

/**
 * Failure codes of the cloud core's SQLite store (closed union; never reused for another meaning).
 * Invalid node names are `NodeNameError('node-name/invalid')` from src/attestation, not one of these.
 *
 * - `cloud-store/invalid`: a caller-supplied value is malformed or out of bounds (fingerprint, serial, method,
 *   time, join-token record, CA snapshot); `detail.field` names it.
 * - `cloud-store/token-exists`: a join token with this hash is already stored.
 * - `cloud-store/unknown-node`: no attested node has this name.
 * - `cloud-store/node-banned`: the node is banned; it cannot attest or renew until unbanned (reference §3 "Ban/evict").
 * - `cloud-store/fingerprint-mismatch`: another credential (TPM EK, certificate, join token) is recorded for
 *   this node name; the node must be evicted before a different credential may claim the name.
 * - `cloud-store/unknown-serial`: `promoteSerial` was given a serial that is neither pending nor current.
 * - `cloud-store/io`: the database file cannot be created, opened, read or written (also: symlink, not a file).
 * - `cloud-store/version`: the database was written by a newer schema version than this code knows.
 * - `cloud-store/trust-domain`: the database belongs to another trust domain.
 * - `cloud-store/corrupt`: a stored row or the stored CA snapshot does not validate.
 * - `cloud-store/closed`: the store was used after `close()`.
 * - `entry/duplicate`: another registration entry has the same spiffeId, parentId and selector set (SPIRE's
 *   rule). Same code and meaning as the edge's entry store, so `edgeward entry create` reads the same
 *   against a cloud or an edge data dir.
 * - `entry/id-exists`: the caller-given entry id is taken by an entry with different content.
 * Invalid entry content is `EntryValidationError('entry/invalid')` from src/attestation.
 */
export const CLOUD_STORE_ERROR_CODES = [
  'cloud-store/invalid',
  'cloud-store/token-exists',
  'cloud-store/unknown-node',
  'cloud-store/node-banned',
  'cloud-store/fingerprint-mismatch',
  'cloud-store/unknown-serial',
  'cloud-store/io',
  'cloud-store/version',
  'cloud-store/trust-domain',
  'cloud-store/corrupt',
  'cloud-store/closed',
  'entry/duplicate',
  'entry/id-exists',
] as const;
export type CloudStoreErrorCode = (typeof CLOUD_STORE_ERROR_CODES)[number];
export class CloudStoreError extends EdgewardError<CloudStoreErrorCode> {}
