/**
 * The `unix` workload attestor (SPIRE `unix` plugin; reference §3 "Workload attestation (unix)"): collects
 * kernel evidence for a connected caller and maps it to selectors with the pure `unixSelectors`.
 *
 * Which ids? SPIRE reads the effective uid/gid from /proc/<pid>/status at attestation time. We use the
 * SO_PEERCRED uid/gid the kernel captured when the caller called connect() (a `UnixPeer`'s `cred`), AND
 * require /proc/<pid>/status to show the same effective uid/gid (and, when SO_PEERGROUPS is available, the
 * same supplementary groups) both before and after the evidence is collected. A process that changed its
 * ids since connect() (setuid after connecting, or a privileged process handing its connection to a less
 * privileged one) gets no identity: `workload-attestation/credentials-changed`.
 *
 * Supplementary gids come from SO_PEERGROUPS (connect-time, Linux >= 4.13), else from /proc/<pid>/status
 * `Groups:`. Names come from the AccountDb snapshot (files only; no name, no selector). With
 * `discoverWorkloadPath`, `unix:path` is readlink(/proc/<pid>/exe) and `unix:sha256` hashes
 * /proc/<pid>/exe itself (bounded by `workloadSizeLimit`; too large = attestation fails, as in SPIRE).
 *
 * PID-reuse defence (reference §3): after all evidence is read, the caller's `ProcWatch` (opened at accept
 * time, pinned to the process) must still report the same live process; only then is the second status
 * read trusted. Order: status read by path -> ProcWatch check -> compare ids, so a pid reused between the
 * reads is reported as `process-gone`, never attributed to the caller.
 */
import {
  unixSelectors,
  WorkloadAttestationError,
  type Selector,
  type WorkloadAttestor,
  type WorkloadCaller,
} from '../../attestation/index.js';
import { PeerCredError, readExePath, readProcStatus, sha256OfExe, type AccountDb, type ProcStatus } from '../peercred/index.js';

export interface UnixAttestorOptions {
  /** procfs mount point (default /proc). */
  procRoot?: string;
  /** uid/gid -> name snapshot (`AccountDb.load()`). */
  accounts: AccountDb;
  /** Add `unix:path` and `unix:sha256` (SPIRE `discover_workload_path`). */
  discoverWorkloadPath: boolean;
  /**
   * Largest binary hashed for `unix:sha256` in bytes (SPIRE `workload_size_limit`). A positive integer, or
   * Infinity for no limit, or a negative number to emit `unix:path` without hashing. 0 is refused (SPIRE
   * reads 0 as "no limit", which is easy to set by accident).
   */
  workloadSizeLimit: number;
}

export const UNIX_ATTESTOR_NAME = 'unix';

function fail(code: 'process-gone' | 'credentials-changed' | 'failed', message: string, pid: number, cause?: unknown): never {
  throw new WorkloadAttestationError(`workload-attestation/${code}`, message, {
    ...(cause === undefined ? {} : { cause }),
    detail: { pid, attestor: UNIX_ATTESTOR_NAME },
  });
}

/** Map a peercred failure: a vanished process is `process-gone`, anything else `failed`. */
function mapError(e: unknown, pid: number, what: string): never {
  if (e instanceof WorkloadAttestationError) throw e;
  if (e instanceof PeerCredError && e.code === 'peercred/proc-gone') fail('process-gone', `caller process exited (${what})`, pid, e);
  fail('failed', `cannot ${what} of the caller process`, pid, e);
}

function sameGroups(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sortedUnique(list: readonly number[]): number[] {
  return [...new Set(list)].sort((x, y) => x - y);
}

export function createUnixAttestor(options: UnixAttestorOptions): WorkloadAttestor {
  const { accounts, discoverWorkloadPath, workloadSizeLimit } = options;
  if (
    !(workloadSizeLimit === Infinity || (Number.isSafeInteger(workloadSizeLimit) && workloadSizeLimit !== 0) || workloadSizeLimit === -Infinity)
  ) {
    throw new RangeError('workloadSizeLimit must be a positive integer, Infinity, or negative (no hashing)');
  }
  const procOpts = options.procRoot === undefined ? {} : { procRoot: options.procRoot };
  const hash = workloadSizeLimit > 0;

  const status = (pid: number): ProcStatus => {
    try {
      return readProcStatus(pid, procOpts);
    } catch (e) {
      mapError(e, pid, 'read /proc/<pid>/status');
    }
  };

  /**
   * Ids in /proc/<pid>/status must equal the connect-time kernel values (supplementary groups: those of
   * SO_PEERGROUPS, or without it those of the first status read, so a change during attestation counts).
   * On a mismatch the process is checked first, so that a status read from a process that reused the pid
   * is reported as `process-gone`, not blamed on the caller.
   */
  const checkIds = (caller: WorkloadCaller, st: ProcStatus, groups: readonly number[]): void => {
    const { pid, uid, gid } = caller.cred;
    if (st.uid.effective !== uid || st.gid.effective !== gid) {
      alive(caller);
      fail('credentials-changed', 'caller changed its uid/gid since it connected', pid);
    }
    if (!sameGroups(st.groups, groups)) {
      alive(caller);
      fail('credentials-changed', 'caller changed its supplementary groups since it connected', pid);
    }
  };

  const alive = (caller: WorkloadCaller): void => {
    const { pid } = caller.cred;
    if (caller.watch === undefined) fail('failed', 'caller has no process watch (PID-reuse defence unavailable)', pid);
    let ok: boolean;
    try {
      ok = caller.watch.isAlive();
    } catch (e) {
      mapError(e, pid, 'check the liveness');
    }
    if (!ok) fail('process-gone', 'caller process exited or was replaced during attestation', pid);
  };

  const aborted = (signal: AbortSignal | undefined, pid: number): void => {
    if (signal?.aborted === true) {
      throw new WorkloadAttestationError('workload-attestation/aborted', 'workload attestation was cancelled', {
        cause: signal.reason,
        detail: { pid, attestor: UNIX_ATTESTOR_NAME },
      });
    }
  };

  return Object.freeze({
    name: UNIX_ATTESTOR_NAME,
    async attest(caller: WorkloadCaller, signal?: AbortSignal): Promise<readonly Selector[]> {
      const { pid, uid, gid } = caller.cred;
      aborted(signal, pid);
      alive(caller); // cheap early exit for a caller that is already gone
      const first = status(pid);
      const groups = sortedUnique(caller.groups ?? first.groups);
      checkIds(caller, first, groups);

      let exePath: string | undefined;
      let exeSha256: string | undefined;
      if (discoverWorkloadPath) {
        try {
          exePath = readExePath(pid, procOpts);
        } catch (e) {
          mapError(e, pid, 'read /proc/<pid>/exe');
        }
        if (hash) {
          try {
            exeSha256 = await sha256OfExe(pid, { sizeLimit: workloadSizeLimit, ...procOpts });
          } catch (e) {
            mapError(e, pid, 'hash the executable');
          }
        }
      }
      aborted(signal, pid);

      // PID-reuse defence: read status by path, then prove (pinned watch) the process is still the caller.
      const last = status(pid);
      alive(caller);
      checkIds(caller, last, groups);

      const names = groups.map((g) => accounts.groupName(g)).filter((n): n is string => n !== undefined);
      return unixSelectors({
        uid,
        gid,
        supplementaryGids: groups,
        userName: accounts.userName(uid),
        groupName: accounts.groupName(gid),
        supplementaryGroupNames: names,
        exePath,
        exeSha256,
      });
    },
  });
}
