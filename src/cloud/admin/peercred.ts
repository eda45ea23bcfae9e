/**
 * The uid of the peer of an accepted Unix-socket connection (SO_PEERCRED through the native/peercred
 * addon). A deliberately small copy of what src/edge/peercred does (cloud and edge never import each
 * other); candidate for a shared host module in src/cli/host injected as a port.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EdgewardError } from '../../identity/index.js';

export type CloudPeerCredErrorCode = 'cloud-admin/peercred-unavailable' | 'cloud-admin/no-peer';
export class CloudPeerCredError extends EdgewardError<CloudPeerCredErrorCode> {}

interface Addon {
  getPeerCred(fd: number): { pid: number; uid: number; gid: number };
}

let cached: Addon | CloudPeerCredError | undefined;

function addon(): Addon {
  if (cached === undefined) {
    const req = createRequire(import.meta.url);
    let dir = dirname(fileURLToPath(import.meta.url));
    let found: string | undefined;
    for (let i = 0; i <= 6 && found === undefined; i++) {
      for (const kind of ['Release', 'Debug']) {
        const p = join(dir, 'native', 'peercred', 'build', kind, 'peercred.node');
        if (found === undefined && existsSync(p)) found = p;
      }
      dir = dirname(dir);
    }
    try {
      if (found === undefined) throw new Error('not built');
      const m = req(found) as Partial<Addon>;
      if (typeof m.getPeerCred !== 'function') throw new Error('unexpected shape');
      cached = m as Addon;
    } catch (e) {
      cached = new CloudPeerCredError('cloud-admin/peercred-unavailable', 'peercred native addon is not available (node-gyp rebuild --directory native/peercred)', {
        cause: e,
      });
    }
  }
  if (cached instanceof CloudPeerCredError) throw cached;
  return cached;
}

/** Kernel-verified uid of the peer (SO_PEERCRED). Throws `cloud-admin/no-peer` if none. */
export function peerUidOf(socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  if (socket.destroyed || typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) {
    throw new CloudPeerCredError('cloud-admin/no-peer', 'socket has no open file descriptor');
  }
  let cred: { uid: number };
  try {
    cred = addon().getPeerCred(fd);
  } catch (e) {
    if (e instanceof CloudPeerCredError) throw e;
    throw new CloudPeerCredError('cloud-admin/no-peer', 'getsockopt(SO_PEERCRED) failed', { cause: e });
  }
  if (!Number.isInteger(cred.uid) || cred.uid < 0 || cred.uid === 0xffff_ffff) {
    throw new CloudPeerCredError('cloud-admin/no-peer', 'kernel reported no uid for the peer');
  }
  return cred.uid;
}
