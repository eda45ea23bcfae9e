/**
 * The hardened SQLite open behind `StateFiles.openDatabase` (src/identity), shared by the cloud store, the
 * edge's entry store and the joined edge's cache:
 * - the file is created with mode 0600 (an existing loose one is tightened); symlinks and non-regular
 *   files are refused (O_NOFOLLOW + fstat);
 * - SQLite opens -wal/-shm/-journal by name, so existing ones get the same treatment before the open and
 *   again once WAL mode has created them (new ones copy the database's mode);
 * - WAL, `synchronous` FULL unless told otherwise, `trusted_schema = OFF`;
 * - schema migrations (append-only) and the caller's `init` in one IMMEDIATE transaction; a file written
 *   by a newer schema is refused.
 * Failures are reported through the caller's `error` factory, so each store keeps its own error codes.
 */
import { closeSync, constants, fchmodSync, fstatSync, openSync } from 'node:fs';
import Database from 'better-sqlite3';
import { EdgewardError, type StateDatabase, type StateDatabaseOptions } from '../../identity/index.js';

function errnoOf(cause: unknown): string | undefined {
  const code = typeof cause === 'object' && cause !== null ? (cause as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
}

function ioFailure(o: StateDatabaseOptions, path: string, what: string, cause: unknown): Error {
  const code = errnoOf(cause);
  return o.error('io', `cannot ${what} ${o.label} ${path}${code === undefined ? '' : ` (${code})`}`, {
    cause,
    ...(code === undefined ? {} : { detail: { code } }),
  });
}

/** Create (or, with `create` false, only if present) the file with mode 0600; refuse symlinks and non-regular files. */
function prepareFile(o: StateDatabaseOptions, path: string, create: boolean): void {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDWR | constants.O_NOFOLLOW | (create ? constants.O_CREAT : 0), 0o600);
  } catch (e) {
    if (!create && errnoOf(e) === 'ENOENT') return;
    throw ioFailure(o, path, 'open', e);
  }
  try {
    let st;
    try {
      st = fstatSync(fd);
      if (st.isFile() && (st.mode & 0o077) !== 0) fchmodSync(fd, 0o600);
    } catch (e) {
      throw ioFailure(o, path, 'secure', e);
    }
    if (!st.isFile()) throw o.error('io', `${o.label} ${path} is not a regular file`, {});
  } finally {
    closeSync(fd);
  }
}

function secureSideFiles(o: StateDatabaseOptions, path: string): void {
  for (const p of [`${path}-wal`, `${path}-shm`, `${path}-journal`]) prepareFile(o, p, false);
}

function migrate(db: StateDatabase, o: StateDatabaseOptions, path: string): void {
  const known = o.migrations.length;
  db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL) STRICT');
  const rows = db.prepare('SELECT version FROM schema_version').all() as { version: number }[];
  if (rows.length > 1) throw o.error('corrupt', `${o.label} ${path} has several schema versions`, {});
  const current = rows[0]?.version ?? 0;
  if (current > known) {
    throw o.error('version', `${o.label} ${path} has schema version ${current}; this build knows ${known}`, { detail: { version: current, known } });
  }
  for (let v = current; v < known; v++) db.exec(o.migrations[v] as string);
  if (rows.length === 0) db.prepare('INSERT INTO schema_version (version) VALUES (?)').run(known);
  else if (current !== known) db.prepare('UPDATE schema_version SET version = ?').run(known);
}

export function openStateDatabase(path: string, options: StateDatabaseOptions): StateDatabase {
  prepareFile(options, path, true);
  secureSideFiles(options, path);
  let db: StateDatabase;
  try {
    db = new Database(path, { fileMustExist: true, timeout: options.busyTimeoutMs ?? 5000 });
  } catch (e) {
    throw ioFailure(options, path, 'open', e);
  }
  try {
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${options.synchronous ?? 'FULL'}`);
    db.pragma('trusted_schema = OFF');
    for (const p of options.pragmas ?? []) db.pragma(p);
    db.transaction(() => {
      migrate(db, options, path);
      options.init?.(db);
    }).immediate();
    secureSideFiles(options, path);
  } catch (e) {
    db.close();
    if (e instanceof EdgewardError) throw e;
    throw ioFailure(options, path, 'initialise', e);
  }
  return db;
}
