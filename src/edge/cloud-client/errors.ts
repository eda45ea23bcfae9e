import { EdgewardError } from '../../identity/index.js';

/**
 * Failures of the edge's node-API client (none of these was decided by the cloud; see CloudRefusedError).
 * - `cloud-client/bad-address`: `--cloud` is not HOST:PORT.
 * - `cloud-client/unreachable`: no connection (refused, reset, DNS, TLS alert) or the connection broke.
 * - `cloud-client/timeout`: no complete answer in time.
 * - `cloud-client/untrusted-server`: the server's TLS chain is not an X509-SVID of the pinned bundle with
 *   the SPIFFE ID `spiffe://TD/edgeward/cloud` (nothing was sent to it).
 * - `cloud-client/bad-response`: the answer is not a node-API message this side accepts, or too large.
 * - `cloud-client/not-ready`: an mTLS call was made before the client had a node SVID.
 */
export const CLOUD_CLIENT_ERROR_CODES = [
  'cloud-client/bad-address',
  'cloud-client/unreachable',
  'cloud-client/timeout',
  'cloud-client/untrusted-server',
  'cloud-client/bad-response',
  'cloud-client/not-ready',
] as const;
export type CloudClientErrorCode = (typeof CLOUD_CLIENT_ERROR_CODES)[number];
export class CloudClientError extends EdgewardError<CloudClientErrorCode> {}

/** The cloud answered with a node-API `error`: `code` is the server's code (e.g. `join-token/used`). */
export class CloudRefusedError extends EdgewardError<string> {
  /** The HTTP status of the refusal (401, 403, 429, ...). */
  readonly status: number;
  constructor(code: string, message: string, status: number) {
    super(code, message, { detail: { status } });
    this.status = status;
  }
}

/**
 * Join failures decided on the edge.
 * - `join/bundle-digest-mismatch`: the cloud's bundle does not have the pinned digest (nothing else was sent).
 * - `join/already-joined`: the data dir holds a join; `--force` replaces it.
 * - `join/bad-input`: a flag value or input file is unusable (message says which).
 * - `join/node-name-required`: no `--node`, and no usable default (x509pop CN, host name).
 * - `join/bad-result`: the cloud's attestation result is not a node SVID for this node and key.
 * - `join/too-many-rounds`: the attestation conversation did not end.
 * - `join/not-joined`: the data dir holds no (valid) join.
 */
export const JOIN_ERROR_CODES = [
  'join/bundle-digest-mismatch',
  'join/already-joined',
  'join/bad-input',
  'join/node-name-required',
  'join/bad-result',
  'join/too-many-rounds',
  'join/not-joined',
] as const;
export type JoinErrorCode = (typeof JOIN_ERROR_CODES)[number];
export class JoinError extends EdgewardError<JoinErrorCode> {}
