/**
 * /proc helpers for the `unix` workload attestor and its PID-reuse defence (Linux only).
 *
 * SPIRE "Workload attestation (unix)" (reference §3): after reading SO_PEERCRED the agent immediately
 * opens /proc/<pid> and records its starttime; after attestation it checks that the process is still
 * alive, with the same starttime and the same uid/gid (PID-reuse defence). Selectors come from
 * /proc/<pid>/status (effective uid/gid, supplementary groups) and, with discover_workload_path,
 * /proc/<pid>/exe (path, and sha256 bounded by workload_size_limit).
 *
 * `ProcWatch` is the race-free form of that check: it keeps /proc/<pid>/stat open. An open /proc/<pid>
 * file refers to the process's kernel `struct pid`, not to the number, so once that process has been reaped
 * every read fails with ESRCH even if the number was reused. With a pidfd from SO_PEERPIDFD (Linux >= 6.5)
 * the watch is also anchored to the process that called connect(), which closes the remaining window
 * between connect() and the open of /proc/<pid>.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readlinkSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { PeerCredError } from './errors.js';
import { fsError, readFdBounded, readFileBounded } from './files.js';

export interface ProcOptions {
  /** procfs mount point (SPIRE honours HOST_PROC for the same purpose). Default `/proc`. */
  procRoot?: string;
}

/** The parts of /proc/<pid>/stat that matter here (proc(5) field numbers in comments). */
export interface ProcStat {
  /** (1) pid */
  readonly pid: number;
  /** (2) comm, without the parentheses; may contain spaces and ')' */
  readonly comm: string;
  /** (3) state: R S D Z T t X I ... */
  readonly state: string;
  /** (4) ppid */
  readonly ppid: number;
  /** (22) starttime, clock ticks after boot (unsigned long long, hence bigint) */
  readonly starttime: bigint;
}

/** real, effective, saved-set and filesystem ids (a /proc/<pid>/status `Uid:`/`Gid:` line). */
export interface IdSet {
  readonly real: number;
  readonly effective: number;
  readonly saved: number;
  readonly fs: number;
}

export interface ProcStatus {
  readonly name: string;
  readonly uid: IdSet;
  readonly gid: IdSet;
  /** Supplementary gids (`Groups:`), sorted ascending, de-duplicated. */
  readonly groups: readonly number[];
}

/** /proc/<pid>/stat is one short line; comm is at most 64 bytes even with escapes. */
const MAX_STAT_BYTES = 4096;
/** /proc/<pid>/status grows with the group list (NGROUPS_MAX 65536 gids of up to 11 bytes each). */
export const DEFAULT_MAX_STATUS_BYTES = 1024 * 1024;
const MAX_ID = 0xffff_fffe; // (uid_t)-1 is "no id"
/** Linux PID_MAX_LIMIT is 2^22; accept any positive int32 to stay future-proof. */
const MAX_PID = 0x7fff_ffff;

const DIGITS = /^[0-9]{1,20}$/;

function procRootOf(opts: ProcOptions | undefined): string {
  const root = opts?.procRoot ?? '/proc';
  return root.endsWith('/') ? root.slice(0, -1) : root;
}

export function assertPid(pid: number): void {
  if (!Number.isInteger(pid) || pid <= 0 || pid > MAX_PID) {
    throw new PeerCredError('peercred/proc-malformed', `invalid pid ${String(pid)}`);
  }
}

function malformed(what: string, detail?: Record<string, string | number | boolean>): PeerCredError {
  return new PeerCredError('peercred/proc-malformed', `malformed ${what}`, detail === undefined ? undefined : { detail });
}

function parseId(s: string, what: string): number {
  if (!DIGITS.test(s)) throw malformed(what);
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n > MAX_ID) throw malformed(what);
  return n;
}

/**
 * Parse /proc/<pid>/stat. comm (field 2) is arbitrary bytes in parentheses and may itself contain spaces and
 * parentheses, so fields after it are located from the LAST ')' (as SPIRE's parseTaskStat does). If
 * `expectedPid` is given the pid field must equal it.
 */
export function parseProcStat(text: string, expectedPid?: number): ProcStat {
  const line = text.endsWith('\n') ? text.slice(0, -1) : text;
  const open = line.indexOf(' (');
  const close = line.lastIndexOf(')');
  if (open <= 0 || close < open + 1 || line[close + 1] !== ' ') throw malformed('/proc/<pid>/stat (comm)');
  const pidText = line.slice(0, open);
  if (!DIGITS.test(pidText)) throw malformed('/proc/<pid>/stat (pid)');
  const pid = Number(pidText);
  if (expectedPid !== undefined && pid !== expectedPid) {
    throw malformed('/proc/<pid>/stat (pid mismatch)', { expected: expectedPid, got: pid });
  }
  const comm = line.slice(open + 2, close);
  const rest = line.slice(close + 2).split(' ');
  // rest[0] is field 3; starttime is field 22 -> rest[19]. Require the full modern layout (>= 44 fields,
  // Linux 2.6.24+) like SPIRE (which requires >= 38).
  if (rest.length < 42) throw malformed('/proc/<pid>/stat (too few fields)', { fields: rest.length + 2 });
  const state = rest[0] as string;
  if (!/^[A-Za-z]$/.test(state)) throw malformed('/proc/<pid>/stat (state)');
  const ppidText = rest[1] as string;
  const startText = rest[19] as string;
  if (!DIGITS.test(ppidText) || !DIGITS.test(startText)) throw malformed('/proc/<pid>/stat (numbers)');
  return Object.freeze({ pid, comm, state, ppid: Number(ppidText), starttime: BigInt(startText) });
}

function parseIdSet(value: string, what: string): IdSet {
  const parts = value.trim().split(/\s+/);
  if (parts.length !== 4) throw malformed(what);
  const [real, effective, saved, fs] = parts.map((p) => parseId(p, what)) as [number, number, number, number];
  return Object.freeze({ real, effective, saved, fs });
}

/** Parse /proc/<pid>/status (only Name, Uid, Gid, Groups; each must appear exactly once, Groups may be empty). */
export function parseProcStatus(text: string): ProcStatus {
  const seen = new Map<string, string>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const key = line.slice(0, colon);
    if (key !== 'Name' && key !== 'Uid' && key !== 'Gid' && key !== 'Groups') continue;
    if (seen.has(key)) throw malformed(`/proc/<pid>/status (duplicate ${key})`);
    seen.set(key, line.slice(colon + 1));
  }
  const uidLine = seen.get('Uid');
  const gidLine = seen.get('Gid');
  const groupsLine = seen.get('Groups');
  if (uidLine === undefined || gidLine === undefined || groupsLine === undefined) {
    throw malformed('/proc/<pid>/status (missing Uid/Gid/Groups)');
  }
  const groupsText = groupsLine.trim();
  const groups = groupsText === '' ? [] : groupsText.split(/\s+/).map((g) => parseId(g, '/proc/<pid>/status (Groups)'));
  return Object.freeze({
    // The kernel escapes '\n' and '\\' in Name, so it never spans lines; strip the separator tab only.
    name: (seen.get('Name') ?? '').replace(/^\t/, ''),
    uid: parseIdSet(uidLine, '/proc/<pid>/status (Uid)'),
    gid: parseIdSet(gidLine, '/proc/<pid>/status (Gid)'),
    groups: Object.freeze([...new Set(groups)].sort((a, b) => a - b)),
  });
}

export function readProcStat(pid: number, opts?: ProcOptions): ProcStat {
  assertPid(pid);
  const path = `${procRootOf(opts)}/${pid}/stat`;
  return parseProcStat(readFileBounded(path, MAX_STAT_BYTES, true).toString('latin1'), pid);
}

/** starttime (field 22 of /proc/<pid>/stat). Throws `peercred/proc-gone` if the process does not exist. */
export function readProcStart(pid: number, opts?: ProcOptions): bigint {
  return readProcStat(pid, opts).starttime;
}

export function readProcStatus(pid: number, opts?: ProcOptions & { maxBytes?: number }): ProcStatus {
  assertPid(pid);
  const path = `${procRootOf(opts)}/${pid}/status`;
  return parseProcStatus(readFileBounded(path, opts?.maxBytes ?? DEFAULT_MAX_STATUS_BYTES, true).toString('latin1'));
}

function isDead(state: string): boolean {
  return state === 'Z' || state === 'X' || state === 'x';
}

/**
 * PID-reuse defence by path (SPIRE peertracker semantics): true iff /proc/<pid> exists, is not a zombie,
 * has the recorded `starttime`, and its effective uid/gid (from /proc/<pid>/status) equal the SO_PEERCRED
 * values. status is read before stat, so a matching starttime read afterwards proves the status data came
 * from the same process. Never throws for a vanished process (returns false). Prefer `ProcWatch`, which is
 * immune to reuse by construction.
 */
export function procStillSame(pid: number, starttime: bigint, uid: number, gid: number, opts?: ProcOptions): boolean {
  try {
    const status = readProcStatus(pid, opts);
    if (status.uid.effective !== uid || status.gid.effective !== gid) return false;
    const stat = readProcStat(pid, opts);
    return !isDead(stat.state) && stat.starttime === starttime;
  } catch (e) {
    if (e instanceof PeerCredError && (e.code === 'peercred/proc-gone' || e.code === 'peercred/proc-malformed')) return false;
    throw e;
  }
}

/** Parse the `Pid:` line of /proc/self/fdinfo/<pidfd> (-1 once the process has been reaped). */
export function parsePidfdInfo(text: string): number | undefined {
  const m = /^Pid:\s*(-?[0-9]+)\s*$/m.exec(text);
  return m === null ? undefined : Number(m[1]);
}

/** Current pid of the process a pidfd refers to, or -1 if it has exited (Linux >= 5.x fdinfo). */
export function pidOfPidfd(pidfd: number, opts?: ProcOptions): number {
  const path = `${procRootOf(opts)}/self/fdinfo/${pidfd}`;
  const pid = parsePidfdInfo(readFileBounded(path, MAX_STAT_BYTES, false).toString('latin1'));
  if (pid === undefined) throw malformed(`${path} (no Pid: line; not a pidfd?)`);
  return pid;
}

export interface ProcWatchOptions extends ProcOptions {
  /**
   * A pidfd for the same process (from SO_PEERPIDFD). The watch takes ownership and closes it. When given,
   * `open` verifies that the pidfd's process still has `pid`, which proves the /proc/<pid> it opened is the
   * connecting process and not a process that reused the number.
   */
  pidfd?: number;
}

/**
 * A handle on one process, opened as soon as the connection is accepted (SPIRE peertracker `NewWatcher`)
 * and checked after attestation (`IsAlive`). Holds one fd (two with a pidfd); call `close()` when the
 * connection closes.
 */
export class ProcWatch {
  readonly pid: number;
  /** starttime recorded when the watch was opened. */
  readonly starttime: bigint;
  readonly anchoredByPidfd: boolean;
  #statFd: number;
  #pidfd: number;
  readonly #opts: ProcOptions;

  private constructor(pid: number, statFd: number, pidfd: number, starttime: bigint, opts: ProcOptions) {
    this.pid = pid;
    this.#statFd = statFd;
    this.#pidfd = pidfd;
    this.starttime = starttime;
    this.anchoredByPidfd = pidfd >= 0;
    this.#opts = opts;
  }

  static open(pid: number, opts: ProcWatchOptions = {}): ProcWatch {
    const pidfd = opts.pidfd ?? -1;
    const procOpts: ProcOptions = opts.procRoot === undefined ? {} : { procRoot: opts.procRoot };
    let statFd = -1;
    try {
      assertPid(pid);
      const path = `${procRootOf(opts)}/${pid}/stat`;
      try {
        statFd = openSync(path, 'r');
      } catch (e) {
        throw fsError(e, path, true);
      }
      const stat = ProcWatch.#readStat(statFd, pid, path);
      if (isDead(stat.state)) throw new PeerCredError('peercred/proc-gone', `process ${pid} has exited (zombie)`);
      // Anchor: the pidfd's process (the one that called connect()) still owns `pid` *after* we opened
      // /proc/<pid>, so the fd we hold is that process.
      if (pidfd >= 0 && pidOfPidfd(pidfd, procOpts) !== pid) {
        throw new PeerCredError('peercred/proc-gone', `process ${pid} exited before it could be watched`);
      }
      return new ProcWatch(pid, statFd, pidfd, stat.starttime, procOpts);
    } catch (e) {
      if (statFd >= 0) closeSync(statFd);
      if (pidfd >= 0) closeSync(pidfd);
      throw e;
    }
  }

  static #readStat(fd: number, pid: number, path: string): ProcStat {
    let buf: Buffer;
    try {
      buf = readFdBounded(fd, MAX_STAT_BYTES, path, 0);
    } catch (e) {
      throw fsError(e, path, true);
    }
    if (buf.length === 0) throw new PeerCredError('peercred/proc-gone', `process ${pid} is gone (empty stat)`);
    return parseProcStat(buf.toString('latin1'), pid);
  }

  get closed(): boolean {
    return this.#statFd < 0;
  }

  /**
   * Throw `peercred/proc-gone` unless the watched process is still alive (not a zombie), has the same
   * starttime, and, if `expected` is given, still runs with those effective uid/gid (SPIRE compares the
   * /proc/<pid> owner; /proc/<pid>/status is used here because it is also right for non-dumpable
   * processes, whose /proc/<pid> is owned by root). The status file is read by path *before* the pinned
   * fd is re-checked, so a successful check proves the status data came from the watched process.
   */
  check(expected?: { uid: number; gid: number }): void {
    if (this.#statFd < 0) throw new PeerCredError('peercred/proc-gone', 'process watch is closed');
    if (expected !== undefined) {
      const status = readProcStatus(this.pid, this.#opts);
      if (status.uid.effective !== expected.uid || status.gid.effective !== expected.gid) {
        throw new PeerCredError('peercred/proc-gone', `process ${this.pid} changed identity or was replaced`, {
          detail: { uid: status.uid.effective, gid: status.gid.effective },
        });
      }
    }
    const path = `${procRootOf(this.#opts)}/${this.pid}/stat`;
    const stat = ProcWatch.#readStat(this.#statFd, this.pid, path);
    if (isDead(stat.state)) throw new PeerCredError('peercred/proc-gone', `process ${this.pid} has exited (zombie)`);
    if (stat.starttime !== this.starttime) {
      throw new PeerCredError('peercred/proc-gone', `process ${this.pid} was replaced (starttime changed)`);
    }
    if (this.#pidfd >= 0 && pidOfPidfd(this.#pidfd, this.#opts) !== this.pid) {
      throw new PeerCredError('peercred/proc-gone', `process ${this.pid} has exited (pidfd)`);
    }
  }

  /** Boolean form of `check`; other errors (EACCES, ...) still throw. */
  isAlive(expected?: { uid: number; gid: number }): boolean {
    try {
      this.check(expected);
      return true;
    } catch (e) {
      if (e instanceof PeerCredError && (e.code === 'peercred/proc-gone' || e.code === 'peercred/proc-malformed')) {
        return false;
      }
      throw e;
    }
  }

  /** Release the fds. Idempotent. */
  close(): void {
    if (this.#statFd >= 0) {
      const fd = this.#statFd;
      this.#statFd = -1;
      closeSync(fd);
    }
    if (this.#pidfd >= 0) {
      const fd = this.#pidfd;
      this.#pidfd = -1;
      closeSync(fd);
    }
  }
}

/**
 * readlink(/proc/<pid>/exe) (`unix:path` selector, SPIRE discover_workload_path). A binary deleted after
 * exec reads as "<path> (deleted)"; kernel threads have no exe (`peercred/proc-gone`). Needs ptrace-read
 * access to the process (root, or same uid).
 */
export function readExePath(pid: number, opts?: ProcOptions): string {
  assertPid(pid);
  const path = `${procRootOf(opts)}/${pid}/exe`;
  try {
    return readlinkSync(path, 'utf8');
  } catch (e) {
    throw fsError(e, path, true);
  }
}

export interface Sha256Options {
  /**
   * Maximum bytes to hash (SPIRE `workload_size_limit`): a larger file is refused with
   * `peercred/too-large` before and while reading. Must be a positive integer or Infinity
   * (SPIRE's 0 = "no limit" maps to Infinity; its negative = "do not hash" means: do not call this).
   */
  sizeLimit: number;
}

const HASH_CHUNK = 64 * 1024;

function assertSizeLimit(sizeLimit: number): void {
  if (!(sizeLimit === Infinity || (Number.isSafeInteger(sizeLimit) && sizeLimit > 0))) {
    throw new RangeError('sizeLimit must be a positive integer or Infinity');
  }
}

/** Lower-case hex sha256 of a file, refusing files larger than `sizeLimit` (checked by fstat and while reading). */
export async function sha256OfFile(path: string, options: Sha256Options, procFile = false): Promise<string> {
  assertSizeLimit(options.sizeLimit);
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw fsError(e, path, procFile);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new PeerCredError('peercred/io', `${path} is not a regular file`);
    if (st.size > options.sizeLimit) {
      throw new PeerCredError('peercred/too-large', `${path} exceeds the size limit (${st.size} > ${options.sizeLimit})`, {
        detail: { size: st.size, sizeLimit: options.sizeLimit },
      });
    }
    const hash = createHash('sha256');
    const buf = Buffer.allocUnsafe(HASH_CHUNK);
    let total = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, total);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > options.sizeLimit) {
        throw new PeerCredError('peercred/too-large', `${path} grew beyond the size limit while hashing`, {
          detail: { sizeLimit: options.sizeLimit },
        });
      }
      hash.update(buf.subarray(0, bytesRead));
    }
    return hash.digest('hex');
  } catch (e) {
    throw fsError(e, path, procFile);
  } finally {
    await fh.close();
  }
}

/**
 * sha256 of the binary the process is running (`unix:sha256` selector). Hashes /proc/<pid>/exe itself
 * (SPIRE `NamespacedExe`), i.e. the inode actually executed, even if the path was since replaced or lives
 * in another mount namespace. Check the process (`ProcWatch.check`) after hashing.
 */
export async function sha256OfExe(pid: number, options: Sha256Options & ProcOptions): Promise<string> {
  assertPid(pid);
  return sha256OfFile(`${procRootOf(options)}/${pid}/exe`, options, true);
}
