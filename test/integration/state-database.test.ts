/**
 * The host's hardened SQLite open (`hostStateFiles.openDatabase`, src/cli/host), which the cloud store, the
 * edge's entry store and the joined edge's cache share: 0600 (also -wal/-shm), symlinks refused, WAL,
 * append-only migrations, and failures reported through the caller's typed errors.
 */
import { existsSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { hostStateFiles } from '../../src/cli/host/index.js';
import { EdgewardError, type StateDatabaseFailure } from '../../src/identity/index.js';
import { tempDir } from '../helpers/index.js';

class TestDbError extends EdgewardError<`test/${StateDatabaseFailure}` | 'test/init'> {}
const error = (f: StateDatabaseFailure, message: string, o: { cause?: unknown; detail?: Record<string, string | number> }): TestDbError =>
  new TestDbError(`test/${f}`, message, o);
const M1 = 'CREATE TABLE t (x INTEGER) STRICT;';
const M2 = 'ALTER TABLE t ADD COLUMN y INTEGER;';

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

describe('openStateDatabase (StateFiles.openDatabase)', () => {
  it('creates the file 0600 with its WAL files 0600, applies migrations once, and appends new ones later', async () => {
    const dir = await tempDir();
    const path = join(dir, 'a.db');
    const db = hostStateFiles.openDatabase(path, { label: 'test db', migrations: [M1], error });
    db.prepare('INSERT INTO t (x) VALUES (1)').run();
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    for (const p of [path, `${path}-wal`, `${path}-shm`]) if (existsSync(p)) expect(statSync(p).mode & 0o777, p).toBe(0o600);
    db.close();
    const again = hostStateFiles.openDatabase(path, { label: 'test db', migrations: [M1, M2], error });
    expect(again.prepare('SELECT x, y FROM t').all()).toEqual([{ x: 1, y: null }]);
    expect(again.prepare('SELECT version FROM schema_version').all()).toEqual([{ version: 2 }]);
    again.close();
    // A build that knows fewer migrations refuses the newer file.
    expect(codeOf(() => hostStateFiles.openDatabase(path, { label: 'test db', migrations: [M1], error }))).toBe('test/version');
  });

  it('refuses a symlinked database or -wal file, and reports a broken version table as corrupt', async () => {
    const dir = await tempDir();
    writeFileSync(join(dir, 'victim'), '');
    symlinkSync(join(dir, 'victim'), join(dir, 'link.db'));
    expect(codeOf(() => hostStateFiles.openDatabase(join(dir, 'link.db'), { label: 'test db', migrations: [M1], error }))).toBe('test/io');
    symlinkSync(join(dir, 'victim'), join(dir, 'side.db-wal'));
    expect(codeOf(() => hostStateFiles.openDatabase(join(dir, 'side.db'), { label: 'test db', migrations: [M1], error }))).toBe('test/io');
    const two = join(dir, 'two.db');
    const raw = new Database(two);
    raw.exec('CREATE TABLE schema_version (version INTEGER NOT NULL) STRICT; INSERT INTO schema_version VALUES (1), (1);');
    raw.close();
    expect(codeOf(() => hostStateFiles.openDatabase(two, { label: 'test db', migrations: [M1], error }))).toBe('test/corrupt');
  });

  it("passes the caller's typed errors from init through; other init failures become io, and nothing is committed", async () => {
    const dir = await tempDir();
    const path = join(dir, 'i.db');
    const typed = (): never => {
      throw new TestDbError('test/init', 'refused by init');
    };
    expect(codeOf(() => hostStateFiles.openDatabase(path, { label: 'test db', migrations: [M1], init: typed, error }))).toBe('test/init');
    expect(codeOf(() => hostStateFiles.openDatabase(path, { label: 'test db', migrations: [M1], init: (d) => d.exec('SELECT * FROM missing'), error }))).toBe('test/io');
    // The migrations ran in the same transaction as init, and were rolled back with it.
    const raw = new Database(path, { readonly: true });
    expect(raw.prepare("SELECT name FROM sqlite_master WHERE name IN ('t', 'schema_version')").all()).toEqual([]);
    raw.close();
  });
});
