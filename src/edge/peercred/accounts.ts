/**
 * uid -> user name and gid -> group name from /etc/passwd and /etc/group (`unix:user`, `unix:group`,
 * `unix:supplementary_group` selectors).
 *
 * Files only: accounts that exist only in NSS back-ends (LDAP, sssd, systemd DynamicUser) have no name here
 * and simply yield no name selector, which is also what SPIRE does when a lookup fails. Reads are bounded,
 * lines that are malformed, comments, or NIS compat entries (`+`/`-`) are skipped, and the first entry for
 * an id wins (getpwuid/getgrgid semantics).
 */
import { PeerCredError } from './errors.js';
import { readFileBounded } from './files.js';

export const DEFAULT_MAX_ACCOUNT_FILE_BYTES = 8 * 1024 * 1024;

export interface PasswdEntry {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

export interface GroupEntry {
  readonly name: string;
  readonly gid: number;
  readonly members: readonly string[];
}

const ID = /^[0-9]{1,10}$/;
const MAX_ID = 0xffff_fffe;
/** Names are used as selector values: no control characters, whitespace or ':' (the field separator). */
const NAME = /^[^\s:\x00-\x1f\x7f]{1,256}$/;

function parseId(s: string | undefined): number | undefined {
  if (s === undefined || !ID.test(s)) return undefined;
  const n = Number(s);
  return n <= MAX_ID ? n : undefined;
}

function usable(line: string): boolean {
  return line !== '' && !line.startsWith('#') && !line.startsWith('+') && !line.startsWith('-');
}

/** passwd(5): name:password:UID:GID:GECOS:directory:shell */
export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (!usable(line)) continue;
    const f = line.split(':');
    if (f.length !== 7) continue;
    const name = f[0] as string;
    const uid = parseId(f[2]);
    const gid = parseId(f[3]);
    if (!NAME.test(name) || uid === undefined || gid === undefined) continue;
    out.push(Object.freeze({ name, uid, gid }));
  }
  return out;
}

/** group(5): group_name:password:GID:user_list */
export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (!usable(line)) continue;
    const f = line.split(':');
    if (f.length !== 4) continue;
    const name = f[0] as string;
    const gid = parseId(f[2]);
    if (!NAME.test(name) || gid === undefined) continue;
    const members = (f[3] as string).split(',').filter((m) => NAME.test(m));
    out.push(Object.freeze({ name, gid, members: Object.freeze(members) }));
  }
  return out;
}

/** An immutable snapshot of the account files. */
export class AccountDb {
  readonly #users = new Map<number, string>();
  readonly #groups = new Map<number, string>();

  constructor(passwd: readonly PasswdEntry[], groups: readonly GroupEntry[]) {
    for (const u of passwd) if (!this.#users.has(u.uid)) this.#users.set(u.uid, u.name);
    for (const g of groups) if (!this.#groups.has(g.gid)) this.#groups.set(g.gid, g.name);
  }

  static fromText(passwdText: string, groupText: string): AccountDb {
    return new AccountDb(parsePasswd(passwdText), parseGroup(groupText));
  }

  /**
   * Read /etc/passwd and /etc/group (or the given paths), each bounded by `maxBytes`
   * (`peercred/too-large`). A missing file counts as empty.
   */
  static load(opts: { passwdPath?: string; groupPath?: string; maxBytes?: number } = {}): AccountDb {
    const max = opts.maxBytes ?? DEFAULT_MAX_ACCOUNT_FILE_BYTES;
    const read = (path: string): string => {
      try {
        return readFileBounded(path, max, false).toString('utf8');
      } catch (e) {
        if (e instanceof PeerCredError && e.code === 'peercred/io' && e.detail?.['code'] === 'ENOENT') return '';
        throw e;
      }
    };
    return AccountDb.fromText(read(opts.passwdPath ?? '/etc/passwd'), read(opts.groupPath ?? '/etc/group'));
  }

  userName(uid: number): string | undefined {
    return this.#users.get(uid);
  }

  groupName(gid: number): string | undefined {
    return this.#groups.get(gid);
  }
}
