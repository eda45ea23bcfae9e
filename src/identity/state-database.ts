/**
 * The port through which the cores open their SQLite state files (cloud store, edge entry store, edge
 * cache). The cores describe the database (schema migrations, pragmas, an initial check) and map failures
 * onto their own typed errors; the host (src/cli/host) owns the hardened open: file created 0600 (and its
 * -wal/-shm/-journal tightened), symlinks and non-regular files refused, WAL, schema versions checked.
 * Type-only: nothing here runs.
 */
import type BetterSqlite3 from 'better-sqlite3';
import type { EdgewardError } from './errors.js';

/** An open SQLite connection (better-sqlite3). */
export type StateDatabase = BetterSqlite3.Database;

/**
 * - `io`: the file cannot be created, opened, secured or initialised (also: a symlink, not a regular file).
 * - `version`: the file was written by a newer schema version than the migrations know.
 * - `corrupt`: the schema version table is malformed.
 */
export type StateDatabaseFailure = 'io' | 'version' | 'corrupt';

export interface StateDatabaseOptions {
  /** What the file is, for messages ("cloud store"). */
  readonly label: string;
  /**
   * Schema migrations: index i migrates from version i to i+1. Never edit a released step: append. The
   * version is kept in a `schema_version` table; a file newer than `migrations.length` is refused.
   */
  readonly migrations: readonly string[];
  /** SQLite busy timeout (default 5000 ms). */
  readonly busyTimeoutMs?: number;
  /** `synchronous` pragma (default FULL). */
  readonly synchronous?: 'FULL' | 'NORMAL';
  /** Further pragmas, e.g. `foreign_keys = ON`, `secure_delete = ON`. */
  readonly pragmas?: readonly string[];
  /**
   * Runs in the same IMMEDIATE transaction as the migrations (e.g. pin the trust domain). An
   * `EdgewardError` it throws is passed through unchanged; anything else becomes an `io` failure.
   */
  readonly init?: (db: StateDatabase) => void;
  /** Builds the caller's typed error for a failure of the open itself. */
  readonly error: (failure: StateDatabaseFailure, message: string, options: { cause?: unknown; detail?: Record<string, string | number> }) => EdgewardError;
}
