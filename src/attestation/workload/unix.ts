/**
 * The `unix` workload attestor's selector mapping (SPIRE `unix` plugin names; reference §3
 * "Workload attestation (unix)"): pure, from already-verified evidence to selectors.
 *
 *   unix:uid:<uid>                      unix:user:<name>                  (effective uid)
 *   unix:gid:<gid>                      unix:group:<name>                 (effective gid)
 *   unix:supplementary_gid:<gid>        unix:supplementary_group:<name>   (one per supplementary group)
 *   unix:path:<absolute exe path>       unix:sha256:<lower-case hex>      (discover_workload_path only)
 *
 * Numbers must be valid ids (a malformed number is a bug in the evidence collector: `UnixEvidenceError`).
 * A name or path that cannot be spelled as a selector value (non-ASCII, whitespace, e.g. the kernel's
 * "/usr/bin/x (deleted)" for a replaced binary) yields no selector rather than an error: leaving a selector
 * out can only make fewer entries match (entry selectors must be a subset of the caller's), so it never
 * grants more than the evidence supports.
 */
import { EdgewardError } from '../../identity/index.js';
import { MAX_SELECTOR_LENGTH, type Selector } from './selector.js';

export const UNIX_EVIDENCE_ERROR_CODES = ['unix-evidence/invalid'] as const;
export type UnixEvidenceErrorCode = (typeof UNIX_EVIDENCE_ERROR_CODES)[number];
export class UnixEvidenceError extends EdgewardError<UnixEvidenceErrorCode> {}

export const UNIX_SELECTOR_TYPE = 'unix';

/** Kernel/procfs-verified facts about one process. */
export interface UnixEvidence {
  /** Effective uid. */
  readonly uid: number;
  /** Effective gid. */
  readonly gid: number;
  /** Supplementary gids (any order; duplicates are dropped). */
  readonly supplementaryGids: readonly number[];
  readonly userName?: string | undefined;
  readonly groupName?: string | undefined;
  /** Names of the supplementary groups that have one (any order). */
  readonly supplementaryGroupNames?: readonly string[] | undefined;
  /** readlink(/proc/<pid>/exe). */
  readonly exePath?: string | undefined;
  /** sha256 of the executed binary, 64 hex digits. */
  readonly exeSha256?: string | undefined;
}

/** (uid_t)-1 means "no id" and is never a valid id. */
const MAX_ID = 0xffff_fffe;
const SHA256_HEX = /^[0-9a-fA-F]{64}$/;
const PREFIX_LENGTH = UNIX_SELECTOR_TYPE.length + 1;

function checkId(n: unknown, what: string): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_ID) {
    throw new UnixEvidenceError('unix-evidence/invalid', `${what} is not a valid id`, { detail: { what } });
  }
  return n;
}

/** Printable ASCII, no whitespace, and short enough to fit a selector. */
function spellable(v: string, key: string): boolean {
  if (v.length === 0 || PREFIX_LENGTH + key.length + 1 + v.length > MAX_SELECTOR_LENGTH) return false;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

/**
 * Selectors for one process, in a fixed order (uid, user, gid, group, supplementary gids ascending,
 * supplementary group names ascending, path, sha256), without duplicates.
 */
export function unixSelectors(evidence: UnixEvidence): Selector[] {
  const out: Selector[] = [];
  const add = (key: string, value: string): void => {
    out.push(Object.freeze({ type: UNIX_SELECTOR_TYPE, value: `${key}:${value}` }));
  };
  const addName = (key: string, name: string | undefined): void => {
    if (name !== undefined && spellable(name, key)) add(key, name);
  };
  add('uid', String(checkId(evidence.uid, 'uid')));
  addName('user', evidence.userName);
  add('gid', String(checkId(evidence.gid, 'gid')));
  addName('group', evidence.groupName);
  if (!Array.isArray(evidence.supplementaryGids)) {
    throw new UnixEvidenceError('unix-evidence/invalid', 'supplementaryGids must be an array');
  }
  const gids = [...new Set(evidence.supplementaryGids.map((g) => checkId(g, 'supplementary gid')))].sort((a, b) => a - b);
  for (const g of gids) add('supplementary_gid', String(g));
  const names = [...new Set(evidence.supplementaryGroupNames ?? [])].sort();
  for (const n of names) addName('supplementary_group', n);
  const path = evidence.exePath;
  if (path !== undefined && path.startsWith('/')) addName('path', path);
  const sha = evidence.exeSha256;
  if (sha !== undefined) {
    if (!SHA256_HEX.test(sha)) throw new UnixEvidenceError('unix-evidence/invalid', 'exeSha256 must be 64 hex digits');
    add('sha256', sha.toLowerCase());
  }
  return out;
}
