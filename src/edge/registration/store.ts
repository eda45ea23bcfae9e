/**
 * Persistent registration-entry store of the edge agent: one SQLite file (better-sqlite3), mode 0600 (also
 * its -wal/-shm files), WAL, symlinks refused, opened through the StateFiles port (`files.openDatabase`).
 *
 * - Every write is one IMMEDIATE transaction that also bumps the store revision (meta table). Each entry
 *   records the revision at which it was last written (SPIRE `revision_number`), so watchers can tell
 *   what changed.
 * - Entries are validated on the way in (`validateEntryInput`, strict TTL maxima) and again when read
 *   back (structure and trust domain; TTLs only against a hard 7-day ceiling, so lowering the configured
 *   maximum does not make an existing database unreadable: issuance still enforces the CA's maximum).
 * - Uniqueness (SPIRE): spiffeId + parentId + selector set. Enforced by a UNIQUE column over
 *   `entryDedupeKey` and checked first for a precise error (`entry/duplicate`).
 * - Entries carry a `source`: `policy` entries are owned by `replaceFromPolicy` (which replaces exactly that
 *   set, diffing by id so that an unchanged policy causes no writes, no revision bump and no event); `api`
 *   entries are created and deleted one by one and are never touched by a policy reload.
 * - All reads are served from memory. Changes made by another connection (e.g. the CLI writing the same
 *   file) are picked up by `refresh()` (cheap: `PRAGMA data_version`) and before every write.
 */
import { randomBytes } from 'node:crypto';
import {
  derivedEntryId,
  entryDocumentFromColumns,
  entryToColumns,
  entryDedupeKey,
  EntryIndex,
  EntryValidationError,
  sameEntryContent,
  selectorKey,
  validateEntryInput,
  type EntryColumns,
  type EntryInput,
  type EntryProblem,
  type RegistrationEntry,
} from '../../attestation/index.js';
import { MAX_JWT_TTL_MS, type Clock, type StateFiles, type TrustDomain } from '../../identity/index.js';
import { EntryStoreError } from './errors.js';

export type EntrySource = 'api' | 'policy';

export interface StoredEntry extends RegistrationEntry {
  readonly source: EntrySource;
}

export type EntryChangeCause = 'create' | 'delete' | 'policy' | 'external';

export interface EntryChange {
  /** Store revision after the change. */
  readonly revision: number;
  readonly cause: EntryChangeCause;
}

export interface PolicyApplyResult {
  readonly added: number;
  readonly updated: number;
  readonly removed: number;
  readonly unchanged: number;
  /** Store revision afterwards (unchanged if nothing changed). */
  readonly revision: number;
}

export interface EntryStoreOptions {
  /** Opens the SQLite file (0600, symlinks refused, WAL, migrations): src/cli/host supplies it. */
  files: StateFiles;
  trustDomain: TrustDomain;
  clock: Clock;
  /** Largest X509-SVID TTL accepted for new entries (default: the attestation default, 1 h). */
  maxX509SvidTtlMs?: number;
  /** Largest JWT-SVID TTL accepted for new entries (default 5 min). */
  maxJwtSvidTtlMs?: number;
  /** SQLite busy timeout for a file shared with another process (default 5000 ms). */
  busyTimeoutMs?: number;
  /** Receives exceptions thrown by `onChange` listeners (default: ignored; they never break a write). */
  onListenerError?: (error: unknown) => void;
}

export interface EntryStore {
  readonly path: string;
  /** Current store revision (0 for a new store). */
  readonly revision: number;
  /**
   * Validate and insert one `api` entry. Throws `EntryValidationError`, `entry/duplicate`, or
   * `entry/id-exists`. With a caller-given id that already names an `api` entry of identical content, returns
   * that entry unchanged (idempotent).
   */
  create(input: unknown): StoredEntry;
  get(id: string): StoredEntry | undefined;
  /** All entries, oldest first. The array is frozen and replaced on change. */
  list(): readonly StoredEntry[];
  /** Remove an entry of any source; false if there was none. */
  delete(id: string): boolean;
  /**
   * Make the set of `policy` entries exactly `inputs` in one transaction (all or nothing). Inputs without an
   * id get `derivedEntryId` (stable across reloads). Throws `EntryValidationError` (paths prefixed
   * `entries[i].`), `entry/duplicate` or `entry/id-exists` without changing anything.
   */
  replaceFromPolicy(inputs: readonly unknown[]): PolicyApplyResult;
  /** Called synchronously after every committed change. Returns the unsubscribe function. */
  onChange(listener: (change: EntryChange) => void): () => void;
  /** Matching index over `list()`, rebuilt lazily after a change. */
  index(): EntryIndex<StoredEntry>;
  /** Pick up changes committed by other connections; true (and an 'external' event) if there were any. */
  refresh(): boolean;
  close(): void;
}

/** Stored rows' TTLs are re-checked only against this ceiling (see the header). */
const STORED_TTL_CEILING_MS = MAX_JWT_TTL_MS;

/** Schema migrations; index i migrates from version i to i+1. Never edit a released step: append. */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
  ) STRICT;
  CREATE TABLE entries (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT    NOT NULL UNIQUE,
    source           TEXT    NOT NULL CHECK (source IN ('api', 'policy')),
    spiffe_id        TEXT    NOT NULL,
    parent_id        TEXT    NOT NULL,
    selectors        TEXT    NOT NULL,   -- JSON array of "type:value", sorted, unique
    dedupe_key       TEXT    NOT NULL UNIQUE,
    x509_svid_ttl_ms INTEGER,
    jwt_svid_ttl_ms  INTEGER,
    dns_names        TEXT    NOT NULL,   -- JSON array
    hint             TEXT,
    created_at       INTEGER NOT NULL,
    revision         INTEGER NOT NULL
  ) STRICT;
  `,
];
export const ENTRY_STORE_SCHEMA_VERSION = MIGRATIONS.length;

interface Row extends EntryColumns {
  seq: number;
  source: string;
}

function ioError(path: string, what: string, cause: unknown): EntryStoreError {
  const code = typeof cause === 'object' && cause !== null ? (cause as { code?: unknown }).code : undefined;
  return new EntryStoreError('entry/store-io', `cannot ${what} entry store ${path}${typeof code === 'string' ? ` (${code})` : ''}`, {
    cause,
    ...(typeof code === 'string' ? { detail: { code } } : {}),
  });
}

const STORE_FAILURE_CODES = { io: 'entry/store-io', version: 'entry/store-version', corrupt: 'entry/store-corrupt' } as const;

export function createEntryStore(dbPath: string, options: EntryStoreOptions): EntryStore {
  const { trustDomain, clock } = options;
  const strict = {
    trustDomain,
    ...(options.maxX509SvidTtlMs === undefined ? {} : { maxX509SvidTtlMs: options.maxX509SvidTtlMs }),
    ...(options.maxJwtSvidTtlMs === undefined ? {} : { maxJwtSvidTtlMs: options.maxJwtSvidTtlMs }),
  };
  const relaxed = { trustDomain, maxX509SvidTtlMs: STORED_TTL_CEILING_MS, maxJwtSvidTtlMs: STORED_TTL_CEILING_MS };

  const db = options.files.openDatabase(dbPath, {
    label: 'entry store',
    migrations: MIGRATIONS,
    ...(options.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: options.busyTimeoutMs }),
    pragmas: ['foreign_keys = ON'],
    init: (d) => {
      const td = d.prepare("SELECT value FROM meta WHERE key = 'trust_domain'").get() as { value: string } | undefined;
      if (td === undefined) {
        d.prepare("INSERT INTO meta (key, value) VALUES ('trust_domain', ?), ('revision', '0')").run(trustDomain.name);
      } else if (td.value !== trustDomain.name) {
        throw new EntryStoreError('entry/store-trust-domain', `entry store ${dbPath} belongs to trust domain "${td.value}", not "${trustDomain.name}"`);
      }
    },
    error: (failure, message, o) => new EntryStoreError(STORE_FAILURE_CODES[failure], message, o),
  });

  const stmt = {
    all: db.prepare('SELECT * FROM entries ORDER BY seq'),
    byId: db.prepare('SELECT * FROM entries WHERE id = ?'),
    byKey: db.prepare('SELECT id FROM entries WHERE dedupe_key = ?'),
    insert: db.prepare(`INSERT INTO entries (seq, id, source, spiffe_id, parent_id, selectors, dedupe_key, x509_svid_ttl_ms,
      jwt_svid_ttl_ms, dns_names, hint, created_at, revision)
      VALUES (@seq, @id, @source, @spiffe_id, @parent_id, @selectors, @dedupe_key, @x509_svid_ttl_ms, @jwt_svid_ttl_ms,
      @dns_names, @hint, @created_at, @revision)`),
    delete: db.prepare('DELETE FROM entries WHERE id = ?'),
    getRevision: db.prepare("SELECT value FROM meta WHERE key = 'revision'"),
    setRevision: db.prepare("UPDATE meta SET value = ? WHERE key = 'revision'"),
    dataVersion: db.prepare('PRAGMA data_version'),
  };

  let closed = false;
  let revision = 0;
  let dataVersion = -1;
  /** id -> [entry, seq] */
  let entries = new Map<string, { entry: StoredEntry; seq: number }>();
  let listCache: readonly StoredEntry[] | undefined;
  let indexCache: EntryIndex<StoredEntry> | undefined;
  const listeners = new Set<(c: EntryChange) => void>();

  const live = (): void => {
    if (closed) throw new EntryStoreError('entry/store-closed', 'entry store is closed');
  };

  const readRevision = (): number => {
    const r = stmt.getRevision.get() as { value: string } | undefined;
    const n = Number(r?.value);
    if (r === undefined || !Number.isSafeInteger(n) || n < 0) throw new EntryStoreError('entry/store-corrupt', 'entry store revision is missing or malformed');
    return n;
  };

  const fromRow = (row: Row): StoredEntry => {
    let input: EntryInput;
    try {
      if (row.source !== 'api' && row.source !== 'policy') throw new EntryValidationError([{ path: 'source', message: 'bad source' }]);
      input = validateEntryInput(entryDocumentFromColumns(row), relaxed);
      if (entryDedupeKey(input) !== row.dedupe_key) {
        throw new EntryValidationError([{ path: 'dedupe_key', message: 'does not match the entry content' }]);
      }
    } catch (e) {
      throw new EntryStoreError('entry/store-corrupt', `entry store ${dbPath}: row "${String(row.id).slice(0, 64)}" is invalid`, {
        cause: e,
        detail: { seq: row.seq },
      });
    }
    return Object.freeze({ ...input, id: row.id, createdAt: row.created_at, revision: row.revision, source: row.source });
  };

  const toRow = (e: StoredEntry, seq: number | null): Record<string, unknown> => ({ ...entryToColumns(e), seq, source: e.source });

  const invalidate = (): void => {
    listCache = undefined;
    indexCache = undefined;
  };

  const reload = (): void => {
    const rows = stmt.all.all() as Row[];
    const next = new Map<string, { entry: StoredEntry; seq: number }>();
    for (const row of rows) next.set(row.id, { entry: fromRow(row), seq: row.seq });
    entries = next;
    revision = readRevision();
    invalidate();
  };

  const readDataVersion = (): number => (stmt.dataVersion.get() as { data_version: number }).data_version;

  const emit = (cause: EntryChangeCause): void => {
    const change = Object.freeze({ revision, cause });
    for (const l of [...listeners]) {
      try {
        l(change);
      } catch (e) {
        options.onListenerError?.(e);
      }
    }
  };

  /** Reload if another connection committed since we last looked. */
  const syncExternal = (): boolean => {
    const v = readDataVersion();
    if (v === dataVersion) return false;
    const before = revision;
    reload();
    dataVersion = v;
    return revision !== before;
  };

  /**
   * Run `fn` in an IMMEDIATE transaction (mapping unexpected SQLite errors to `entry/store-io`). Holding the
   * write lock, first reload if another connection committed since we last looked, so that `fn` sees, and
   * the in-memory cache can be updated incrementally from, exactly the state it changes.
   */
  const write = <T>(what: string, fn: () => T): T => {
    let external = false;
    try {
      return db.transaction(() => {
        external = syncExternal();
        return fn();
      }).immediate();
    } catch (e) {
      if (e instanceof EntryStoreError || e instanceof EntryValidationError) throw e;
      throw ioError(dbPath, what, e);
    } finally {
      if (external) emit('external');
    }
  };

  /** Apply a committed change to the cache (our own commits do not change data_version). */
  const applyCommitted = (rev: number, removed: readonly string[], written: readonly { entry: StoredEntry; seq: number }[]): void => {
    for (const id of removed) entries.delete(id);
    for (const w of written) entries.set(w.entry.id, w);
    revision = rev;
    invalidate();
  };

  const duplicateOf = (input: EntryInput, ignoreIds: ReadonlySet<string> = new Set()): string | undefined => {
    const hit = stmt.byKey.get(entryDedupeKey(input)) as { id: string } | undefined;
    return hit === undefined || ignoreIds.has(hit.id) ? undefined : hit.id;
  };

  try {
    db.transaction(() => {
      reload();
      dataVersion = readDataVersion();
    })();
  } catch (e) {
    db.close();
    throw e;
  }

  const store: EntryStore = {
    path: dbPath,
    get revision(): number {
      return revision;
    },

    create(raw: unknown): StoredEntry {
      live();
      const input = validateEntryInput(raw, strict);
      const result = write('write', (): { entry: StoredEntry; changed: boolean; seq: number } => {
        if (input.id !== undefined) {
          const existing = stmt.byId.get(input.id) as Row | undefined;
          if (existing !== undefined) {
            const current = fromRow(existing);
            if (current.source === 'api' && sameEntryContent(current, input)) return { entry: current, changed: false, seq: existing.seq };
            throw new EntryStoreError('entry/id-exists', `an entry with id "${input.id}" already exists`, { detail: { id: input.id } });
          }
        }
        const dup = duplicateOf(input);
        if (dup !== undefined) {
          throw new EntryStoreError('entry/duplicate', `entry ${dup} already has this spiffeId, parentId and selector set`, {
            detail: { existing: dup },
          });
        }
        const rev = readRevision() + 1;
        const entry: StoredEntry = Object.freeze({
          ...input,
          id: input.id ?? randomBytes(16).toString('hex'),
          createdAt: clock.now(),
          revision: rev,
          source: 'api' as const,
        });
        const info = stmt.insert.run(toRow(entry, null));
        stmt.setRevision.run(String(rev));
        return { entry, changed: true, seq: Number(info.lastInsertRowid) };
      });
      if (!result.changed) return result.entry;
      applyCommitted(result.entry.revision, [], [{ entry: result.entry, seq: result.seq }]);
      emit('create');
      return result.entry;
    },

    get(id: string): StoredEntry | undefined {
      live();
      return entries.get(id)?.entry;
    },

    list(): readonly StoredEntry[] {
      live();
      if (listCache === undefined) {
        listCache = Object.freeze([...entries.values()].sort((a, b) => a.seq - b.seq).map((x) => x.entry));
      }
      return listCache;
    },

    delete(id: string): boolean {
      live();
      if (typeof id !== 'string') return false;
      const rev = write('write', (): number | undefined => {
        const n = stmt.delete.run(id).changes;
        if (n === 0) return undefined;
        const next = readRevision() + 1;
        stmt.setRevision.run(String(next));
        return next;
      });
      if (rev === undefined) return false;
      applyCommitted(rev, [id], []);
      emit('delete');
      return true;
    },

    replaceFromPolicy(inputs: readonly unknown[]): PolicyApplyResult {
      live();
      if (!Array.isArray(inputs)) throw new EntryValidationError([{ path: '', message: 'policy entries must be an array' }]);
      const problems: EntryProblem[] = [];
      const wanted: EntryInput[] = [];
      inputs.forEach((raw, i) => {
        try {
          const input = validateEntryInput(raw, strict);
          wanted.push(input.id === undefined ? Object.freeze({ ...input, id: derivedEntryId(input) }) : input);
        } catch (e) {
          if (!(e instanceof EntryValidationError)) throw e;
          for (const p of e.problems) problems.push({ path: `entries[${i}]${p.path === '' ? '' : `.${p.path}`}`, message: p.message });
        }
      });
      if (problems.length > 0) throw new EntryValidationError(problems);
      // Duplicates inside the policy itself.
      const ids = new Map<string, number>();
      const keys = new Map<string, number>();
      wanted.forEach((w, i) => {
        const key = entryDedupeKey(w);
        const prevKey = keys.get(key);
        if (prevKey !== undefined) {
          throw new EntryStoreError('entry/duplicate', `policy entries[${prevKey}] and entries[${i}] have the same spiffeId, parentId and selectors`, {
            detail: { first: prevKey, second: i },
          });
        }
        keys.set(key, i);
        const id = w.id as string;
        const prevId = ids.get(id);
        if (prevId !== undefined) {
          throw new EntryStoreError('entry/id-exists', `policy entries[${prevId}] and entries[${i}] have the same id "${id}"`, { detail: { id } });
        }
        ids.set(id, i);
      });

      const removedIds: string[] = [];
      const written: { entry: StoredEntry; seq: number }[] = [];
      const result = write('write', (): PolicyApplyResult => {
        const rows = stmt.all.all() as Row[];
        const current = new Map<string, Row>(rows.map((r) => [r.id, r]));
        const byKey = new Map<string, Row>(rows.map((r) => [r.dedupe_key, r]));
        const policyRows = rows.filter((r) => r.source === 'policy');
        let unchanged = 0;
        const toDelete: Row[] = [];
        const toWrite: { input: EntryInput; old: Row | undefined }[] = [];
        for (const w of wanted) {
          const id = w.id as string;
          const old = current.get(id);
          if (old !== undefined && old.source !== 'policy') {
            throw new EntryStoreError('entry/id-exists', `policy entry id "${id}" is taken by an api entry`, { detail: { id } });
          }
          const clash = byKey.get(entryDedupeKey(w));
          if (clash !== undefined && clash.source !== 'policy') {
            throw new EntryStoreError('entry/duplicate', `policy entry "${id}" duplicates api entry ${clash.id}`, { detail: { existing: clash.id } });
          }
          if (old !== undefined && sameEntryContent(fromRow(old), w)) {
            unchanged++;
            continue;
          }
          toWrite.push({ input: w, old });
        }
        for (const r of policyRows) if (!ids.has(r.id)) toDelete.push(r);
        if (toWrite.length === 0 && toDelete.length === 0) {
          return { added: 0, updated: 0, removed: 0, unchanged, revision: readRevision() };
        }
        const rev = readRevision() + 1;
        const now = clock.now();
        // Delete first (removed and updated rows), then insert, so swaps of selector sets never collide.
        for (const r of toDelete) {
          stmt.delete.run(r.id);
          removedIds.push(r.id);
        }
        for (const { old } of toWrite) if (old !== undefined) stmt.delete.run(old.id);
        for (const { input, old } of toWrite) {
          const entry: StoredEntry = Object.freeze({
            ...input,
            id: input.id as string,
            createdAt: old?.created_at ?? now,
            revision: rev,
            source: 'policy' as const,
          });
          const info = stmt.insert.run(toRow(entry, old?.seq ?? null)); // an updated entry keeps its place in list()
          written.push({ entry, seq: old?.seq ?? Number(info.lastInsertRowid) });
        }
        stmt.setRevision.run(String(rev));
        const updated = toWrite.filter((t) => t.old !== undefined).length;
        return { added: toWrite.length - updated, updated, removed: toDelete.length, unchanged, revision: rev };
      });
      if (result.added + result.updated + result.removed > 0) {
        applyCommitted(result.revision, removedIds, written);
        emit('policy');
      }
      return Object.freeze(result);
    },

    onChange(listener: (change: EntryChange) => void): () => void {
      live();
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },

    index(): EntryIndex<StoredEntry> {
      live();
      if (indexCache === undefined) indexCache = new EntryIndex(store.list());
      return indexCache;
    },

    refresh(): boolean {
      live();
      let changed: boolean;
      try {
        changed = db.transaction(syncExternal)(); // one read snapshot for rows and revision
      } catch (e) {
        if (e instanceof EntryStoreError) throw e;
        throw ioError(dbPath, 'read', e);
      }
      if (changed) emit('external');
      return changed;
    },

    close(): void {
      if (closed) return;
      closed = true;
      listeners.clear();
      db.close();
    },
  };
  return store;
}
