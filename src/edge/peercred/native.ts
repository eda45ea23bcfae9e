/**
 * Loader for the `peercred` Node-API addon (native/peercred, built by the package `install` script with
 * `node-gyp rebuild --directory native/peercred`).
 *
 * The addon file is found by walking up from this module's directory to the first
 * `native/peercred/build/{Release,Debug}/peercred.node`, so the same code works from `src/` (vitest,
 * ts loaders) and from `dist/src/` (built output). Loading is lazy and the outcome (module or error) is
 * cached; a missing addon is reported as `PeerCredError('peercred/unavailable')`, never as a bare
 * `MODULE_NOT_FOUND`.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PeerCredError } from './errors.js';

/** Credentials the kernel recorded for the peer at connect() time (SO_PEERCRED). */
export interface RawPeerCred {
  pid: number;
  uid: number;
  gid: number;
}

/** Shape of native/peercred/src/peercred.c's exports. */
export interface PeerCredAddon {
  /** getsockopt(SO_PEERCRED). Throws Error{code: errno name, errno, syscall}. */
  getPeerCred(fd: number): RawPeerCred;
  /** getsockopt(SO_PEERGROUPS) (Linux >= 4.13): supplementary gids. Throws like getPeerCred. */
  getPeerGroups(fd: number): number[];
  /**
   * getsockopt(SO_PEERPIDFD) (Linux >= 6.5): a new O_CLOEXEC pidfd for the process that called connect().
   * The caller owns it (close with fs.closeSync). Throws like getPeerCred (ENOPROTOOPT on older kernels).
   */
  getPeerPidfd(fd: number): number;
  /** SO_PEERGROUPS was known at compile time (the running kernel may still answer ENOPROTOOPT). */
  hasPeerGroups: boolean;
  /** SO_PEERPIDFD was known at compile time (the running kernel may still answer ENOPROTOOPT). */
  hasPeerPidfd: boolean;
  /** 'linux' or 'unsupported' (the addon builds everywhere but only works on Linux). */
  platform: string;
}

const ADDON_RELATIVE_PATHS = [
  join('native', 'peercred', 'build', 'Release', 'peercred.node'),
  join('native', 'peercred', 'build', 'Debug', 'peercred.node'),
];
/** How many directories above this module to search (src/edge/peercred -> root is 3, dist/src/... is 4). */
const MAX_ASCENT = 6;

let cached: { addon: PeerCredAddon } | { error: PeerCredError } | undefined;

/** Candidate addon paths, nearest first. */
export function peerCredAddonCandidates(fromDir: string = dirname(fileURLToPath(import.meta.url))): string[] {
  const out: string[] = [];
  let dir = fromDir;
  for (let i = 0; i <= MAX_ASCENT; i++) {
    for (const rel of ADDON_RELATIVE_PATHS) out.push(join(dir, rel));
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return out;
}

function isAddon(m: unknown): m is PeerCredAddon {
  if (typeof m !== 'object' || m === null) return false;
  const a = m as Record<string, unknown>;
  return (
    typeof a['getPeerCred'] === 'function' &&
    typeof a['getPeerGroups'] === 'function' &&
    typeof a['getPeerPidfd'] === 'function' &&
    typeof a['hasPeerGroups'] === 'boolean' &&
    typeof a['hasPeerPidfd'] === 'boolean' &&
    typeof a['platform'] === 'string'
  );
}

/**
 * Load the addon from an explicit path (tests, unusual layouts) or by searching upwards. Throws
 * `PeerCredError('peercred/unavailable')` if it is missing, fails to load, or has the wrong shape.
 */
export function loadPeerCredAddon(explicitPath?: string): PeerCredAddon {
  const req = createRequire(import.meta.url);
  const candidates = explicitPath === undefined ? peerCredAddonCandidates() : [explicitPath];
  const found = candidates.find((p) => existsSync(p));
  if (found === undefined) {
    throw new PeerCredError(
      'peercred/unavailable',
      'peercred native addon is not built (run: node-gyp rebuild --directory native/peercred)',
      { detail: { searched: candidates.length } },
    );
  }
  let mod: unknown;
  try {
    mod = req(found);
  } catch (cause) {
    throw new PeerCredError('peercred/unavailable', `peercred native addon failed to load: ${found}`, { cause });
  }
  if (!isAddon(mod)) {
    throw new PeerCredError('peercred/unavailable', `peercred native addon has an unexpected shape: ${found}`);
  }
  return mod;
}

/** The process-wide addon (loaded once; a load failure is cached and rethrown). */
export function peerCredAddon(): PeerCredAddon {
  if (cached === undefined) {
    try {
      cached = { addon: loadPeerCredAddon() };
    } catch (e) {
      cached = {
        error: e instanceof PeerCredError ? e : new PeerCredError('peercred/unavailable', 'peercred addon failed', { cause: e }),
      };
    }
  }
  if ('error' in cached) throw cached.error;
  return cached.addon;
}

/** True when the addon loads and runs on this platform (Linux). Never throws. */
export function peerCredAvailable(): boolean {
  try {
    return peerCredAddon().platform === 'linux';
  } catch {
    return false;
  }
}
