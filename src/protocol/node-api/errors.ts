import { EdgewardError } from '../../identity/index.js';

/**
 * Node API protocol errors (what a decoder refuses; never sent with a cause).
 * - `node-api/too-large`: the message exceeds 64 KiB.
 * - `node-api/malformed`: not UTF-8 JSON, not an object, duplicate member names, nested too deep.
 * - `node-api/unsupported-version`: `v` is missing or not 1.
 * - `node-api/unknown-kind`: `kind` is missing or not a known kind.
 * - `node-api/unexpected-kind`: a known kind that this side must not receive (e.g. a cloud message at the cloud).
 * - `node-api/unknown-field`: a member the kind does not define.
 * - `node-api/missing-field`: a member the kind requires is absent.
 * - `node-api/bad-field`: a member has the wrong type or an invalid value.
 * - `node-api/unknown-method`: `attest.begin` names an attestation method that does not exist.
 * - `node-api/bad-base64`: a bytes member is not strict, canonical, padded base64.
 * - `node-api/field-too-large`: a bytes member or array exceeds its limit (e.g. a CSR over 8 KiB).
 */
export const NODE_API_ERROR_CODES = [
  'node-api/too-large',
  'node-api/malformed',
  'node-api/unsupported-version',
  'node-api/unknown-kind',
  'node-api/unexpected-kind',
  'node-api/unknown-field',
  'node-api/missing-field',
  'node-api/bad-field',
  'node-api/unknown-method',
  'node-api/bad-base64',
  'node-api/field-too-large',
] as const;
export type NodeApiErrorCode = (typeof NODE_API_ERROR_CODES)[number];
export class NodeApiError extends EdgewardError<NodeApiErrorCode> {}
