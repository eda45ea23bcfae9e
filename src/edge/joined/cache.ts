/**
 * The joined agent's encrypted-at-rest cache (issue #4: "an edge restart with the cloud unreachable keeps
 * serving unexpired SVIDs"): the entries delegated to this node, and the workload X509-SVIDs with their
 * private keys, in one SQLite file DIR/cache.db (0600, WAL, symlinks refused).
 *
 * Every row is sealed with AES-256-GCM under a 32-byte random key kept apart in DIR/keys/cache.key
 * (0600, in the 0700 key store directory); the row's table and id are the additional authenticated data,
 * so a row cannot be moved to another id or table, altered, or read without the key. The database file
 * alone (a backup, a copied disk image) reveals nothing but entry ids, row counts and sizes. A wrong key
 * is detected at open (a sealed check value), a tampered row when it is read; both are refused with typed
 * errors and never served.
 *
 * Row format: 0x01 (version) || 12-byte IV || 16-byte GCM tag || ciphertext.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { EdgewardError, type StateDatabase, type StateFiles } from '../../identity/index.js';
import type { NodeEntry } from '../../protocol/index.js';
import { readSmallFile } from '../join/layout.js';

/**
 * - `edge-cache/io`: the file cannot be opened or is not a regular file (a symlink, a directory).
 * - `edge-cache/bad-key`: the key file is missing its 32 bytes or is readable by others.
 * - `edge-cache/wrong-key`: the database was sealed with another key.
 * - `edge-cache/tampered`: a row does not authenticate (altered, moved, or truncated).
 */
export const EDGE_CACHE_ERROR_CODES = ['edge-cache/io', 'edge-cache/bad-key', 'edge-cache/wrong-key', 'edge-cache/tampered'] as const;
export type EdgeCacheErrorCode = (typeof EDGE_CACHE_ERROR_CODES)[number];
export class EdgeCacheError extends EdgewardError<EdgeCacheErrorCode> {}

export const CACHE_KEY_BYTES = 32;
const VERSION = 0x01;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_CHECK = Buffer.from('edgeward cache key check v1');

export interface CachedSvidRecord {
  entryId: string;
  spiffeId: string;
  /** Leaf first. */
  chainDer: Buffer[];
  keyPkcs8: Buffer;
  /** When the agent received it (epoch ms). */
  issuedAt: number;
  /** The TTL and DNS names it was requested with (a changed entry needs a new SVID). */
  ttlMs: number;
  dnsNames: string[];
}

type Table = 'meta' | 'entries' | 'svids';

/** Read DIR/keys/cache.key, or create it (32 random bytes, 0600) when absent. */
export function loadOrCreateCacheKey(path: string, files: StateFiles): Buffer {
  let raw: Buffer | undefined;
  try {
    raw = readSmallFile(path, 1024, { requirePrivate: true });
  } catch (e) {
    const why = e instanceof Error && e.message.endsWith('accessible by other users') ? 'is accessible by other users' : 'cannot be read (symlinks are refused)';
    throw new EdgeCacheError('edge-cache/bad-key', `cache key ${path} ${why}`, { cause: e });
  }
  if (raw === undefined) {
    const key = randomBytes(CACHE_KEY_BYTES);
    files.writeFileAtomic(path, key, 0o600);
    return key;
  }
  if (raw.length !== CACHE_KEY_BYTES) throw new EdgeCacheError('edge-cache/bad-key', `cache key ${path} is not ${CACHE_KEY_BYTES} bytes`);
  return raw;
}

function aad(table: Table, id: string): Buffer {
  return Buffer.from(`edgeward-cache-v1|${table}|${id}`, 'utf8');
}

/**
 * Schema migrations (append only). Step 1 keeps IF NOT EXISTS: caches written before the schema was
 * versioned have these tables and no schema_version row.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) STRICT;
  CREATE TABLE IF NOT EXISTS entries (id TEXT PRIMARY KEY, blob BLOB NOT NULL) STRICT;
  CREATE TABLE IF NOT EXISTS svids (id TEXT PRIMARY KEY, blob BLOB NOT NULL) STRICT;
  `,
];

export class EdgeCache {
  readonly #db: StateDatabase;
  readonly #key: Buffer;
  readonly #stmt;

  private constructor(db: StateDatabase, key: Buffer) {
    this.#db = db;
    this.#key = key;
    this.#stmt = {
      getMeta: db.prepare('SELECT value FROM meta WHERE key = ?'),
      putMeta: db.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)'),
      allEntries: db.prepare('SELECT id, blob FROM entries ORDER BY id'),
      clearEntries: db.prepare('DELETE FROM entries'),
      putEntry: db.prepare('INSERT OR REPLACE INTO entries (id, blob) VALUES (?, ?)'),
      allSvids: db.prepare('SELECT id, blob FROM svids ORDER BY id'),
      getSvid: db.prepare('SELECT blob FROM svids WHERE id = ?'),
      putSvid: db.prepare('INSERT OR REPLACE INTO svids (id, blob) VALUES (?, ?)'),
      deleteSvid: db.prepare('DELETE FROM svids WHERE id = ?'),
    };
  }

  /**
   * Open (or create, through `files.openDatabase`: 0600, symlinks refused) the cache at `path` sealed
   * with `key`. Throws `edge-cache/wrong-key` for another key, `edge-cache/io` when the file cannot be used.
   */
  static open(path: string, key: Buffer, files: StateFiles): EdgeCache {
    if (!Buffer.isBuffer(key) || key.length !== CACHE_KEY_BYTES) throw new EdgeCacheError('edge-cache/bad-key', `the cache key must be ${CACHE_KEY_BYTES} bytes`);
    const db = files.openDatabase(path, {
      label: 'cache',
      migrations: MIGRATIONS,
      synchronous: 'NORMAL',
      pragmas: ['secure_delete = ON'],
      // A cache written by a newer build, or with a broken version table, is as unusable as an unreadable one.
      error: (_failure, message, o) => new EdgeCacheError('edge-cache/io', message, o),
    });
    const cache = new EdgeCache(db, Buffer.from(key));
    try {
      const check = cache.#stmt.getMeta.get('key_check') as { value: Buffer } | undefined;
      if (check === undefined) {
        cache.#stmt.putMeta.run('key_check', cache.#seal('meta', 'key_check', KEY_CHECK));
      } else {
        let plain: Buffer;
        try {
          plain = cache.#open('meta', 'key_check', check.value);
        } catch (e) {
          throw new EdgeCacheError('edge-cache/wrong-key', 'the cache was sealed with another key', { cause: e });
        }
        if (!plain.equals(KEY_CHECK)) throw new EdgeCacheError('edge-cache/wrong-key', 'the cache was sealed with another key');
      }
    } catch (e) {
      db.close();
      throw e;
    }
    return cache;
  }

  #seal(table: Table, id: string, plain: Buffer): Buffer {
    const iv = randomBytes(IV_BYTES);
    const c = createCipheriv('aes-256-gcm', this.#key, iv);
    c.setAAD(aad(table, id));
    const ct = Buffer.concat([c.update(plain), c.final()]);
    return Buffer.concat([Buffer.from([VERSION]), iv, c.getAuthTag(), ct]);
  }

  #open(table: Table, id: string, blob: Buffer): Buffer {
    if (!Buffer.isBuffer(blob) || blob.length < 1 + IV_BYTES + TAG_BYTES || blob[0] !== VERSION) {
      throw new EdgeCacheError('edge-cache/tampered', `cache row ${table}/${id} is malformed`);
    }
    try {
      const d = createDecipheriv('aes-256-gcm', this.#key, blob.subarray(1, 1 + IV_BYTES));
      d.setAAD(aad(table, id));
      d.setAuthTag(blob.subarray(1 + IV_BYTES, 1 + IV_BYTES + TAG_BYTES));
      return Buffer.concat([d.update(blob.subarray(1 + IV_BYTES + TAG_BYTES)), d.final()]);
    } catch (e) {
      throw new EdgeCacheError('edge-cache/tampered', `cache row ${table}/${id} does not authenticate`, { cause: e });
    }
  }

  #sealJson(table: Table, id: string, value: unknown): Buffer {
    const plain = Buffer.from(JSON.stringify(value), 'utf8');
    try {
      return this.#seal(table, id, plain);
    } finally {
      plain.fill(0);
    }
  }

  #openJson(table: Table, id: string, blob: Buffer): unknown {
    const plain = this.#open(table, id, blob);
    try {
      return JSON.parse(plain.toString('utf8')) as unknown;
    } catch (e) {
      throw new EdgeCacheError('edge-cache/tampered', `cache row ${table}/${id} is not JSON`, { cause: e });
    } finally {
      plain.fill(0);
    }
  }

  /** Replace the cached entries with `entries` (one transaction). */
  replaceEntries(entries: readonly NodeEntry[]): void {
    this.#db.transaction(() => {
      this.#stmt.clearEntries.run();
      for (const e of entries) this.#stmt.putEntry.run(e.id, this.#sealJson('entries', e.id, e));
    })();
  }

  /** The cached entries; rows that fail authentication are refused and listed by id. */
  loadEntries(): { entries: NodeEntry[]; refused: string[] } {
    const entries: NodeEntry[] = [];
    const refused: string[] = [];
    for (const row of this.#stmt.allEntries.all() as { id: string; blob: Buffer }[]) {
      try {
        const v = this.#openJson('entries', row.id, row.blob) as NodeEntry;
        if (v === null || typeof v !== 'object' || v.id !== row.id) throw new EdgeCacheError('edge-cache/tampered', `cache row entries/${row.id} names another entry`);
        entries.push(v);
      } catch (e) {
        if (!(e instanceof EdgeCacheError)) throw e;
        refused.push(row.id);
      }
    }
    return { entries, refused };
  }

  putSvid(r: CachedSvidRecord): void {
    const keyB64 = r.keyPkcs8.toString('base64');
    this.#stmt.putSvid.run(
      r.entryId,
      this.#sealJson('svids', r.entryId, {
        entryId: r.entryId,
        spiffeId: r.spiffeId,
        chain: r.chainDer.map((d) => d.toString('base64')),
        key: keyB64,
        issuedAt: r.issuedAt,
        ttlMs: r.ttlMs,
        dnsNames: r.dnsNames,
      }),
    );
  }

  #decodeSvid(id: string, blob: Buffer): CachedSvidRecord {
    const o = this.#openJson('svids', id, blob) as Record<string, unknown>;
    if (
      o === null ||
      typeof o !== 'object' ||
      o['entryId'] !== id ||
      typeof o['spiffeId'] !== 'string' ||
      !Array.isArray(o['chain']) ||
      typeof o['key'] !== 'string' ||
      typeof o['issuedAt'] !== 'number' ||
      typeof o['ttlMs'] !== 'number' ||
      !Array.isArray(o['dnsNames'])
    ) {
      throw new EdgeCacheError('edge-cache/tampered', `cache row svids/${id} has the wrong shape`);
    }
    return {
      entryId: id,
      spiffeId: o['spiffeId'],
      chainDer: (o['chain'] as unknown[]).map((c) => Buffer.from(String(c), 'base64')),
      keyPkcs8: Buffer.from(o['key'], 'base64'),
      issuedAt: o['issuedAt'],
      ttlMs: o['ttlMs'],
      dnsNames: (o['dnsNames'] as unknown[]).map(String),
    };
  }

  /** One cached SVID; throws `edge-cache/tampered` when its row does not authenticate. */
  getSvid(entryId: string): CachedSvidRecord | undefined {
    const row = this.#stmt.getSvid.get(entryId) as { blob: Buffer } | undefined;
    return row === undefined ? undefined : this.#decodeSvid(entryId, row.blob);
  }

  loadSvids(): { svids: CachedSvidRecord[]; refused: string[] } {
    const svids: CachedSvidRecord[] = [];
    const refused: string[] = [];
    for (const row of this.#stmt.allSvids.all() as { id: string; blob: Buffer }[]) {
      try {
        svids.push(this.#decodeSvid(row.id, row.blob));
      } catch (e) {
        if (!(e instanceof EdgeCacheError)) throw e;
        refused.push(row.id);
      }
    }
    return { svids, refused };
  }

  deleteSvid(entryId: string): void {
    this.#stmt.deleteSvid.run(entryId);
  }

  /** Drop cached SVIDs of entries no longer delegated. */
  pruneSvids(keep: ReadonlySet<string>): number {
    let n = 0;
    for (const row of this.#stmt.allSvids.all() as { id: string }[]) {
      if (!keep.has(row.id)) {
        this.#stmt.deleteSvid.run(row.id);
        n++;
      }
    }
    return n;
  }

  close(): void {
    this.#key.fill(0);
    if (this.#db.open) this.#db.close();
  }
}
