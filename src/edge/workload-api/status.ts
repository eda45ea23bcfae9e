/**
 * The ONE table from typed errors to gRPC status for the Workload API server (architecture.md
 * convention 1: gRPC codes are set only at this boundary).
 *
 * Codes follow SPIFFE Workload Endpoint Appendix A and SPIRE's behaviour (spiffe.md 1, "Error codes"):
 * - InvalidArgument: security header missing, mandatory field at its default value, invalid token
 *   (clients do not retry);
 * - PermissionDenied: no identity for this caller (`"no identity issued"`, text matched by clients),
 *   or the requested SPIFFE ID is not one of the caller's;
 * - Unavailable: attestation failed, load shedding (rate limits, stream limits), mint failure, the
 *   identity source or bundle not ready, shutdown (clients retry with backoff);
 * - Unimplemented: optional RPCs we do not support (WIT-SVIDs).
 *
 * Only the fixed public text of a code (or, for the codes marked `expose`, the error's own message,
 * which is built for the peer) leaves the process; `cause` and `detail` are for logs only.
 */
import * as grpc from '@grpc/grpc-js';
import { EdgewardError } from '../../identity/index.js';

export const WORKLOAD_ENDPOINT_ERROR_CODES = [
  /** `workload.spiffe.io: true` absent, repeated or with another value. */
  'workload-endpoint/header-missing',
  /** The caller matches no registration entry (or lost all of them). */
  'workload-endpoint/no-identity',
  /** FetchJWTSVID asked for a SPIFFE ID the caller has no entry for. */
  'workload-endpoint/not-entitled',
  /** The caller could not be attested (unknown connection, attestor failure, PID reuse). */
  'workload-endpoint/attestation-failed',
  /** The attested process exited or was replaced while its stream was open. */
  'workload-endpoint/caller-gone',
  /** A required request field is at its default value (audience, svid). */
  'workload-endpoint/missing-field',
  /** A request field is present but malformed (an audience too long, a bad SPIFFE ID). */
  'workload-endpoint/bad-field',
  /** ValidateJWTSVID: the token is not a valid JWT-SVID for the audience (message names the reason code). */
  'workload-endpoint/invalid-token',
  /** Per-caller rate limit exceeded (load shedding). */
  'workload-endpoint/rate-limited',
  /** Too many concurrent streams, per caller or overall (load shedding). */
  'workload-endpoint/too-many-streams',
  /** The identity source failed to mint a JWT-SVID. */
  'workload-endpoint/mint-failed',
  /** The identity source threw unexpectedly (not initialised, internal error). */
  'workload-endpoint/source-failed',
  /** The bundle of the caller's own trust domain is not available. */
  'workload-endpoint/bundle-missing',
  /** An optional RPC this server does not implement (WIT-SVIDs). */
  'workload-endpoint/unimplemented',
  /** The server is closing. */
  'workload-endpoint/shutting-down',
  /** Lifecycle: another server is listening on the socket path. */
  'workload-endpoint/socket-in-use',
  /** Lifecycle: the socket path exists and is not a socket (never removed). */
  'workload-endpoint/socket-path-not-socket',
  /** Lifecycle: bad socket path, mkdir/listen/chmod failed. */
  'workload-endpoint/listen-failed',
  /** Lifecycle: invalid options (limits). */
  'workload-endpoint/bad-config',
  /** Lifecycle: start() called twice, or after close(). */
  'workload-endpoint/bad-state',
] as const;
export type WorkloadEndpointErrorCode = (typeof WORKLOAD_ENDPOINT_ERROR_CODES)[number];
export class WorkloadEndpointError extends EdgewardError<WorkloadEndpointErrorCode> {}

/** The SPIRE text for "no matching entry"; rust-spiffe and other clients match on it. */
export const NO_IDENTITY_ISSUED = 'no identity issued';
/** The SPIRE text for a missing security header. */
export const SECURITY_HEADER_MISSING = 'security header missing from request';

interface StatusRule {
  code: grpc.status;
  /** Fixed public text; `undefined` means the error's own message is sent (it was built for the peer). */
  details: string | undefined;
}

const S = grpc.status;

/** Error code -> gRPC status. Covers this server's codes and the codes identity sources throw. */
export const WORKLOAD_API_STATUS_TABLE: Readonly<Record<string, StatusRule>> = Object.freeze({
  'workload-endpoint/header-missing': { code: S.INVALID_ARGUMENT, details: SECURITY_HEADER_MISSING },
  'workload-endpoint/no-identity': { code: S.PERMISSION_DENIED, details: NO_IDENTITY_ISSUED },
  'workload-endpoint/not-entitled': { code: S.PERMISSION_DENIED, details: NO_IDENTITY_ISSUED },
  'workload-endpoint/attestation-failed': { code: S.UNAVAILABLE, details: 'workload attestation failed' },
  'workload-endpoint/caller-gone': { code: S.UNAVAILABLE, details: 'could not verify existence of the original caller' },
  'workload-endpoint/missing-field': { code: S.INVALID_ARGUMENT, details: undefined },
  'workload-endpoint/bad-field': { code: S.INVALID_ARGUMENT, details: undefined },
  'workload-endpoint/invalid-token': { code: S.INVALID_ARGUMENT, details: undefined },
  'workload-endpoint/rate-limited': { code: S.UNAVAILABLE, details: 'rate limit exceeded' },
  'workload-endpoint/too-many-streams': { code: S.UNAVAILABLE, details: 'too many open streams' },
  'workload-endpoint/mint-failed': { code: S.UNAVAILABLE, details: 'could not mint JWT-SVID' },
  'workload-endpoint/source-failed': { code: S.UNAVAILABLE, details: 'identity source unavailable' },
  'workload-endpoint/bundle-missing': { code: S.UNAVAILABLE, details: 'trust bundle unavailable' },
  'workload-endpoint/unimplemented': { code: S.UNIMPLEMENTED, details: undefined },
  'workload-endpoint/shutting-down': { code: S.UNAVAILABLE, details: 'server shutting down' },
  // Codes of the identity source (src/edge/workload-api/errors.ts, WorkloadApiError); messages are public.
  'workload-api/invalid-argument': { code: S.INVALID_ARGUMENT, details: undefined },
  'workload-api/permission-denied': { code: S.PERMISSION_DENIED, details: NO_IDENTITY_ISSUED },
  'workload-api/unavailable': { code: S.UNAVAILABLE, details: undefined },
});

/** Families mapped by prefix when the exact code is not in the table. */
const PREFIX_RULES: ReadonlyArray<readonly [string, StatusRule]> = [
  // A requested SPIFFE ID that does not parse (FetchJWTSVID spiffe_id): InvalidArgument.
  ['spiffe-id/', { code: S.INVALID_ARGUMENT, details: 'invalid SPIFFE ID' }],
  // Kernel evidence could not be obtained or the caller is gone: attestation failure.
  ['peercred/', { code: S.UNAVAILABLE, details: 'workload attestation failed' }],
];

export interface GrpcStatus {
  code: grpc.status;
  details: string;
}

/** The gRPC status to send for `err`. Unknown errors become INTERNAL with a fixed text. */
export function grpcStatusOf(err: unknown): GrpcStatus {
  if (err instanceof EdgewardError) {
    const code = err.code as string;
    const rule = Object.prototype.hasOwnProperty.call(WORKLOAD_API_STATUS_TABLE, code)
      ? WORKLOAD_API_STATUS_TABLE[code]
      : PREFIX_RULES.find(([p]) => code.startsWith(p))?.[1];
    if (rule !== undefined) return { code: rule.code, details: rule.details ?? err.message };
  }
  return { code: S.INTERNAL, details: 'internal error' };
}

/** True when the error has a status other than INTERNAL in the table (i.e. it is a known, typed outcome). */
export function isMappedError(err: unknown): boolean {
  return grpcStatusOf(err).code !== S.INTERNAL;
}
