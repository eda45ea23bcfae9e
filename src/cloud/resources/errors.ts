import { EdgewardError } from '../../identity/index.js';

/**
 * Failure codes of the cloud's resource store (closed union; never reused for another meaning).
 *
 * - `resource-store/io`: `resources.db` cannot be created, opened, read or written (also: a symlink, not a
 *   regular file, or the store was used after `close()`).
 * - `resource-store/version`: the file was written by a newer schema version than this build knows.
 * - `resource-store/corrupt`: the schema version table or a stored row does not validate.
 * - `resource/not-found`: no live resource of this kind and name.
 * - `resource/invalid`: a document, resource reference, node name, ack or status entry is malformed or out
 *   of bounds (the same code as the protocol's `ResourceError`).
 * - `resource-store/too-many`: over a bound: 1,000 documents per apply, 10,000 live resources, 1,000 acks or
 *   100 status entries per call.
 */
export const RESOURCE_STORE_ERROR_CODES = [
  'resource-store/io',
  'resource-store/version',
  'resource-store/corrupt',
  'resource/not-found',
  'resource/invalid',
  'resource-store/too-many',
] as const;
export type ResourceStoreErrorCode = (typeof RESOURCE_STORE_ERROR_CODES)[number];
export class ResourceStoreError extends EdgewardError<ResourceStoreErrorCode> {}
