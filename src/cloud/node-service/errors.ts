import { EdgewardError } from '../../identity/index.js';

/**
 * Refusals of the cloud's node API logic (closed union; never reused for another meaning). Codec errors
 * (`node-api/too-large`, `node-api/malformed`, ...) are the protocol's `NodeApiError`; attestor errors
 * (`join-token/*`, `x509pop/*`, `tpm/*`, `node-attestation/*`) and CSR errors (`csr/*`) keep their own
 * codes on the wire.
 *
 * - `node-api/unauthenticated` (401): the client certificate is missing, is not an X509-SVID of this
 *   trust domain, is not a node ID, or its serial is neither the node's current nor its pending one.
 * - `node/unknown` (401): a valid node SVID whose node has no record (evicted): attest again.
 * - `node/banned` (403): the node is banned; it cannot attest, renew or fetch anything until unbanned.
 * - `node/credential-mismatch` (403): another credential is recorded for this node name; evict it first.
 * - `node/entry-not-delegated` (403): a requested entry is not delegated to the node; the whole request is refused.
 * - `node/too-many-entries` (500): more entries are delegated to the node than one reply may carry.
 * - `node-api/unknown-session` (400): the attestation session does not exist, expired, was used, or was
 *   opened from another source address (one code for all, so a prober learns nothing).
 * - `node-api/busy` (503): too many attestation sessions are open.
 * - `rate-limit/exceeded` (429): too many attestation attempts from this source address.
 * - `node-api/attestation-external` (403, SPIRE mode): `/v1/attest` is closed: node attestation is done by
 *   SPIRE, which issues the node SVIDs.
 * - `node-api/external-identity` (403, SPIRE mode): the request needs the embedded CA (`renew.request`,
 *   `svids.request`, `jwt.request`); node and workload SVIDs come from SPIRE's Workload API.
 * - `node-service/bad-config`: `createNodeService` was given inconsistent settings (never on the wire).
 * - `internal` (500): what `authenticate` throws for an unexpected failure (logged with its cause);
 *   message always "internal error".
 */
export const NODE_SERVICE_ERROR_CODES = [
  'node-api/unauthenticated',
  'node/unknown',
  'node/banned',
  'node/credential-mismatch',
  'node/entry-not-delegated',
  'node/too-many-entries',
  'node-api/unknown-session',
  'node-api/busy',
  'rate-limit/exceeded',
  'node-api/attestation-external',
  'node-api/external-identity',
  'node-service/bad-config',
  'internal',
] as const;
export type NodeServiceErrorCode = (typeof NODE_SERVICE_ERROR_CODES)[number];
export class NodeServiceError extends EdgewardError<NodeServiceErrorCode> {}
