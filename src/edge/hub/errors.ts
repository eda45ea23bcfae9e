import { EdgewardError } from '../../identity/index.js';

/**
 * Failure codes of the edge hub client (client.ts) and of the identity adapter; a closed union, codes are
 * never reused for another meaning.
 *
 * - `edge-hub/invalid-status`: a status report (`status.report`, `edgeward edge report-status`) is not a
 *   valid hub status entry (kind, name, phase, message or observed version); nothing was stored.
 * - `edge-hub/invalid-request`: an admin request to the edge's hub methods is malformed (`resource.get`).
 * - `edge-hub/closed`: the hub was closed.
 * - `edge-hub/no-identity`: the node has no usable SVID right now (expired, or none yet).
 * - `edge-hub/no-bundle`: the identity source has no bundle for the trust domain.
 * - `resource/not-found`: `resource.get` with a name the edge store does not hold (same meaning as the
 *   cloud's code).
 */
export const EDGE_HUB_ERROR_CODES = [
  'edge-hub/invalid-status',
  'edge-hub/invalid-request',
  'edge-hub/closed',
  'edge-hub/no-identity',
  'edge-hub/no-bundle',
  'resource/not-found',
] as const;
export type EdgeHubErrorCode = (typeof EDGE_HUB_ERROR_CODES)[number];
export class EdgeHubError extends EdgewardError<EdgeHubErrorCode> {}
