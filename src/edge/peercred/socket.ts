/**
 * Kernel-verified credentials of the peer of an accepted Unix-domain `net.Socket`.
 *
 * SPIRE "Workload attestation (unix)" (reference §3): the agent accepts the UDS connection and reads
 * SO_PEERCRED (pid/uid/gid via getsockopt(SOL_SOCKET, SO_PEERCRED)). Node's `net` exposes no peer
 * credentials, so the fd of the accepted socket (`socket._handle.fd`, a libuv `Pipe` on Linux) is handed to
 * the addon. The kernel fixed these values when the peer called connect(); nothing the peer sends
 * afterwards (payload, gRPC metadata) can change them.
 *
 * Call `peerCredOf` synchronously in the `net.Server` 'connection' handler, before the socket is handed to
 * anything else: the fd is then guaranteed to be open and to belong to this connection.
 */
import type { Socket } from 'node:net';
import { errnoCode, errnoDetail, PeerCredError } from './errors.js';
import { peerCredAddon, type RawPeerCred } from './native.js';

/** SO_PEERCRED result. `uid`/`gid` are the peer's *effective* ids at connect() time. */
export interface PeerCred {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

/** uid/gid the kernel reports when it has no credentials ((uid_t)-1). */
const NO_ID = 0xffff_ffff;

/**
 * The OS file descriptor of a connected socket. Relies on the libuv stream handle's `fd` getter
 * (`socket._handle.fd`), which Node implements for `Pipe` and `TCP` handles on POSIX (it is -1 on Windows).
 */
export function socketFd(socket: Socket): number {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  if (socket.destroyed || typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) {
    throw new PeerCredError('peercred/bad-socket', 'socket has no open file descriptor', {
      detail: { destroyed: socket.destroyed, hasHandle: handle !== undefined && handle !== null },
    });
  }
  return fd;
}

function mapNativeError(e: unknown, what: string): PeerCredError {
  if (e instanceof PeerCredError) return e;
  const code = errnoCode(e);
  switch (code) {
    case 'EBADF':
    case 'ENOTSOCK':
    case 'EAFNOSUPPORT':
    case 'ENOTCONN':
      return new PeerCredError('peercred/bad-socket', `${what}: not a connected AF_UNIX socket (${code})`, {
        cause: e,
        detail: errnoDetail(e),
      });
    case 'ENOSYS':
    case 'ENOPROTOOPT':
    case 'EOPNOTSUPP':
      return new PeerCredError('peercred/unsupported', `${what}: not supported on this platform (${code})`, {
        cause: e,
        detail: errnoDetail(e),
      });
    case 'ENODATA':
    case 'ESRCH':
      return new PeerCredError('peercred/no-peer', `${what}: kernel has no peer credentials or the peer exited (${code})`, {
        cause: e,
        detail: errnoDetail(e),
      });
    default:
      return new PeerCredError('peercred/syscall', `${what} failed${code === undefined ? '' : ` (${code})`}`, {
        cause: e,
        detail: errnoDetail(e),
      });
  }
}

/** Validate an addon result; pid 0 means the peer is not visible in our pid namespace (SPIRE rejects it too). */
export function checkPeerCred(raw: RawPeerCred): PeerCred {
  const { pid, uid, gid } = raw;
  if (!Number.isInteger(pid) || pid <= 0) {
    throw new PeerCredError('peercred/no-peer', 'peer pid is not visible (pid 0: different pid namespace or no peer)', {
      detail: { pid },
    });
  }
  if (!Number.isInteger(uid) || !Number.isInteger(gid) || uid < 0 || gid < 0 || uid === NO_ID || gid === NO_ID) {
    throw new PeerCredError('peercred/no-peer', 'kernel reported no uid/gid for the peer', { detail: { uid, gid } });
  }
  return Object.freeze({ pid, uid, gid });
}

/** Peer credentials of a raw connected AF_UNIX fd (SO_PEERCRED). */
export function peerCredOfFd(fd: number): PeerCred {
  const addon = peerCredAddon();
  let raw: RawPeerCred;
  try {
    raw = addon.getPeerCred(fd);
  } catch (e) {
    throw mapNativeError(e, 'getsockopt(SO_PEERCRED)');
  }
  return checkPeerCred(raw);
}

/** Peer credentials of an accepted Unix-domain socket (SO_PEERCRED). */
export function peerCredOf(socket: Socket): PeerCred {
  return peerCredOfFd(socketFd(socket));
}

/**
 * Supplementary gids of the peer at connect() time (SO_PEERGROUPS, Linux >= 4.13), sorted ascending and
 * de-duplicated. Throws `peercred/unsupported` on older kernels; see `peerGroupsOfOptional`.
 */
export function peerGroupsOfFd(fd: number): readonly number[] {
  const addon = peerCredAddon();
  let raw: number[];
  try {
    raw = addon.getPeerGroups(fd);
  } catch (e) {
    throw mapNativeError(e, 'getsockopt(SO_PEERGROUPS)');
  }
  return Object.freeze([...new Set(raw)].sort((a, b) => a - b));
}

export function peerGroupsOf(socket: Socket): readonly number[] {
  return peerGroupsOfFd(socketFd(socket));
}

/** Like `peerGroupsOf`, but `undefined` when the kernel does not support SO_PEERGROUPS. */
export function peerGroupsOfOptional(socket: Socket): readonly number[] | undefined {
  try {
    return peerGroupsOf(socket);
  } catch (e) {
    if (e instanceof PeerCredError && e.code === 'peercred/unsupported') return undefined;
    throw e;
  }
}

/**
 * A pidfd for the peer process (SO_PEERPIDFD, Linux >= 6.5), owned by the caller, or `undefined` when the
 * kernel does not support it. Hand it to `ProcWatch.open(pid, { pidfd })`, which takes ownership.
 */
export function peerPidfdOfOptional(socket: Socket): number | undefined {
  const fd = socketFd(socket);
  const addon = peerCredAddon();
  if (!addon.hasPeerPidfd) return undefined;
  try {
    return addon.getPeerPidfd(fd);
  } catch (e) {
    const err = mapNativeError(e, 'getsockopt(SO_PEERPIDFD)');
    if (err.code === 'peercred/unsupported') return undefined;
    throw err;
  }
}
