import { EdgewardError } from '../../identity/index.js';

/**
 * Failure codes of the peer-credential layer (closed union; codes are never reused for another meaning).
 *
 * - `peercred/unavailable`: the native addon is not built or failed to load (run the package `install`
 *   script: `node-gyp rebuild --directory native/peercred`).
 * - `peercred/unsupported`: the platform/kernel lacks the facility (non-Linux, SO_PEERGROUPS < 4.13).
 * - `peercred/bad-socket`: no usable file descriptor (destroyed socket, not AF_UNIX, EBADF/ENOTSOCK).
 * - `peercred/no-peer`: the kernel has no credentials for the peer (pid 0: peer outside our pid namespace).
 * - `peercred/syscall`: any other getsockopt failure (errno in `detail`).
 * - `peercred/proc-gone`: /proc/<pid> no longer exists or refers to a dead/zombie process.
 * - `peercred/proc-malformed`: a /proc or /etc file did not have the expected syntax.
 * - `peercred/too-large`: a file exceeded the caller's size bound (binary for sha256, /proc or /etc file).
 * - `peercred/io`: any other file-system error (EACCES, ...).
 * - `peercred/unknown-call`: a gRPC call could not be mapped to a registered Unix connection.
 * - `peercred/already-registered`: a socket was registered twice.
 */
export const PEERCRED_ERROR_CODES = [
  'peercred/unavailable',
  'peercred/unsupported',
  'peercred/bad-socket',
  'peercred/no-peer',
  'peercred/syscall',
  'peercred/proc-gone',
  'peercred/proc-malformed',
  'peercred/too-large',
  'peercred/io',
  'peercred/unknown-call',
  'peercred/already-registered',
] as const;

export type PeerCredErrorCode = (typeof PEERCRED_ERROR_CODES)[number];

export class PeerCredError extends EdgewardError<PeerCredErrorCode> {}

/** errno-style error as thrown by the addon and by node:fs. */
export interface ErrnoLike {
  code?: unknown;
  errno?: unknown;
  syscall?: unknown;
  message?: unknown;
}

export function errnoCode(e: unknown): string | undefined {
  if (typeof e !== 'object' || e === null) return undefined;
  const code = (e as ErrnoLike).code;
  return typeof code === 'string' ? code : undefined;
}

/** Structured, non-secret detail for an errno error. */
export function errnoDetail(e: unknown, extra?: Record<string, string | number | boolean>): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = { ...extra };
  if (typeof e === 'object' && e !== null) {
    const { code, errno, syscall } = e as ErrnoLike;
    if (typeof code === 'string') out['code'] = code;
    if (typeof errno === 'number') out['errno'] = Math.abs(errno);
    if (typeof syscall === 'string') out['syscall'] = syscall;
  }
  return out;
}
