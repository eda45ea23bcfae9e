/**
 * The cloud core's SQLite store (issue #4): join tokens, the attested-node registry, and the CA state.
 * One file (better-sqlite3), mode 0600 (also its -wal/-shm files), WAL, symlinks refused, schema
 * migrations, every write one IMMEDIATE transaction. Conventions follow src/edge/registration/store.ts,
 * but nothing is shared with src/edge (layering). Reads go to the database (no cache), so several
 * connections to one file (server + CLI) always see each other's commits.
 *
 * - Join tokens are stored only as `hex(SHA-256(token))` (join-token.ts). `consume` is the
 *   `JoinTokenConsumer` port: it sets `usedAt` atomically and returns the record as it was before, so a
 *   second presentation sees `usedAt` and `verifyJoinToken` reports `join-token/used`. Used tokens are kept
 *   until they expire (a replay then still says "used", not "unknown"); `pruneExpiredTokens` deletes them.
 * - Attested nodes (reference §3 "Ban/evict", "Agent renewal"): one row per node name, pinned to the
 *   method + fingerprint of its first attestation. `setPendingSerial` records the serial of a renewed SVID;
 *   the old serial stays valid until the new one is first used (`promoteSerial` / `acceptSerial`), then
 *   only the new one (reference §5 item 34). `ban` clears both serials and refuses attestation and renewal
 *   until `unban`; `evict` deletes the row, so the node may come back only by attesting again (and then
 *   with any credential: eviction is how an operator re-pins a node to a new TPM or certificate).
 * - CA state: one row holding the CaManager snapshot as JSON text.
 */
import { closeSync, constants, fchmodSync, fstatSync, openSync } from 'node:fs';
import Database from 'better-sqlite3';
import {
  NODE_ATTESTATION_METHODS,
  NodeNameError,
  nodeSpiffeId,
  parseNodeName,
  type JoinTokenConsumer,
  type JoinTokenRecord,
  type NodeAttestationMethod,
} from '../../attestation/index.js';
import type { CaSnapshot, Clock, SpiffeId, TrustDomain } from '../../identity/index.js';
import { CloudStoreError } from './errors.js';

/** Node fingerprints are hex SHA-256 digests today (64 chars); anything past this bound is refused. */
export const MAX_NODE_FINGERPRINT_LENGTH = 128;
/** Printable ASCII, no space. */
const FINGERPRINT_PATTERN = /^[\x21-\x7e]+$/;
/** A DER INTEGER serial as lower-case hex (RFC 5280 4.1.2.2: at most 20 octets, plus a possible 00 sign octet). */
const SERIAL_PATTERN = /^(?:[0-9a-f]{2}){1,21}$/;
const TOKEN_HASH_PATTERN = /^[0-9a-f]{64}$/;
/** The CA snapshot is a few certificates and ids; a bound keeps a bad caller from filling the disk. */
export const MAX_CA_SNAPSHOT_BYTES = 1024 * 1024;

export interface AttestedNodeInput {
  name: string;
  method: NodeAttestationMethod;
  /** Stable credential fingerprint from the attestor (token hash, leaf-cert hash, EK hash). */
  fingerprint: string;
  /** Serial (lower-case hex) of the node SVID just issued. */
  serialHex: string;
  /** Expiry of that SVID, epoch ms. */
  notAfter: number;
  reattestable: boolean;
}

export interface AttestedNode {
  readonly name: string;
  readonly spiffeId: SpiffeId;
  readonly method: NodeAttestationMethod;
  readonly fingerprint: string;
  /** Serial of the node SVID in force; undefined while banned (ban clears it). */
  readonly serialHex: string | undefined;
  readonly notAfter: number | undefined;
  /** Serial of a renewed SVID not yet used (SPIRE "new serial"). */
  readonly pendingSerialHex: string | undefined;
  readonly pendingNotAfter: number | undefined;
  readonly reattestable: boolean;
  readonly banned: boolean;
  /** First attestation of this record (reset by evict). */
  readonly attestedAt: number;
  readonly updatedAt: number;
}

export type NodeChangeKind = 'attested' | 'renewal-pending' | 'promoted' | 'banned' | 'unbanned' | 'evicted';

export interface NodeChange {
  readonly kind: NodeChangeKind;
  readonly name: string;
}

export interface CloudStoreOptions {
  trustDomain: TrustDomain;
  clock: Clock;
  /** SQLite busy timeout for a file shared with another process (default 5000 ms). */
  busyTimeoutMs?: number;
  /** Receives exceptions thrown by `onChange` listeners (default: ignored; they never break a write). */
  onListenerError?: (error: unknown) => void;
}

export interface CloudStore extends JoinTokenConsumer {
  readonly path: string;
  // ---- join tokens
  /** Store a token record (from `generateJoinToken`). Throws `cloud-store/invalid`, `cloud-store/token-exists`. */
  addJoinToken(record: JoinTokenRecord): void;
  /** JoinTokenConsumer: set usedAt = now if unset, atomically; return the record as it was before. */
  consume(tokenHash: string, now: number): JoinTokenRecord | undefined;
  /** Delete tokens (used or not) with expiresAt <= now. Returns how many. */
  pruneExpiredTokens(now: number): number;
  // ---- attested nodes
  /**
   * Record a successful attestation: creates the node, or (same method and fingerprint) replaces its serial
   * and clears any pending one. Throws `node-name/invalid`, `cloud-store/invalid`, `cloud-store/node-banned`,
   * `cloud-store/fingerprint-mismatch`.
   */
  upsertAttestedNode(input: AttestedNodeInput): AttestedNode;
  getNode(name: string): AttestedNode | undefined;
  /** All nodes, by name. */
  listNodes(): readonly AttestedNode[];
  /** Record the serial of a renewed SVID; the current one stays valid until it is used. */
  setPendingSerial(name: string, serialHex: string, notAfter?: number): AttestedNode;
  /**
   * The pending serial was used: it becomes the only valid one. True if promoted, false if it already was
   * the current serial. Throws `cloud-store/unknown-serial` for any other serial.
   */
  promoteSerial(name: string, serialHex: string): boolean;
  /** True iff the node exists, is not banned, and `serialHex` is its current or pending serial. */
  isSerialCurrent(name: string, serialHex: string): boolean;
  /**
   * Check and promote in one transaction (what a connection handler wants): true iff the serial is valid;
   * a valid pending serial is promoted on the spot (reference §5 item 34).
   */
  acceptSerial(name: string, serialHex: string): boolean;
  /** Clear the serials and refuse attestation/renewal until unban. Throws `cloud-store/unknown-node`. */
  ban(name: string): AttestedNode;
  /** Lift a ban (the node must attest again to get a serial). Throws `cloud-store/unknown-node`. */
  unban(name: string): AttestedNode;
  /** Delete the record. False if there was none. */
  evict(name: string): boolean;
  /** Called synchronously after every committed node change. Returns the unsubscribe function. */
  onChange(listener: (change: NodeChange) => void): () => void;
  // ---- CA state
  loadCaSnapshot(): CaSnapshot | undefined;
  saveCaSnapshot(snap: CaSnapshot): void;
  close(): void;
}

/** Schema migrations; index i migrates from version i to i+1. Never edit a released step: append. */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
  ) STRICT;
  CREATE TABLE join_tokens (
    token_hash TEXT    PRIMARY KEY CHECK (length(token_hash) = 64),
    node_name  TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
  ) STRICT;
  CREATE INDEX join_tokens_expiry ON join_tokens (expires_at);
  CREATE TABLE nodes (
    name              TEXT    PRIMARY KEY,
    method            TEXT    NOT NULL CHECK (method IN ('join_token', 'x509pop', 'tpm')),
    fingerprint       TEXT    NOT NULL,
    serial            TEXT,
    not_after         INTEGER,
    pending_serial    TEXT,
    pending_not_after INTEGER,
    reattestable      INTEGER NOT NULL CHECK (reattestable IN (0, 1)),
    banned            INTEGER NOT NULL CHECK (banned IN (0, 1)),
    attested_at       INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
  ) STRICT;
  CREATE TABLE ca_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    snapshot   TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
  ) STRICT;
  `,
];
export const CLOUD_STORE_SCHEMA_VERSION = MIGRATIONS.length;

interface TokenRow {
  token_hash: string;
  node_name: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
}

interface NodeRow {
  name: string;
  method: string;
  fingerprint: string;
  serial: string | null;
  not_after: number | null;
  pending_serial: string | null;
  pending_not_after: number | null;
  reattestable: number;
  banned: number;
  attested_at: number;
  updated_at: number;
}

function invalid(field: string, message: string): CloudStoreError {
  return new CloudStoreError('cloud-store/invalid', message, { detail: { field } });
}

function ioError(path: string, what: string, cause: unknown): CloudStoreError {
  const code = typeof cause === 'object' && cause !== null ? (cause as { code?: unknown }).code : undefined;
  return new CloudStoreError('cloud-store/io', `cannot ${what} cloud store ${path}${typeof code === 'string' ? ` (${code})` : ''}`, {
    cause,
    ...(typeof code === 'string' ? { detail: { code } } : {}),
  });
}

const isTime = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

function checkTime(field: string, n: unknown): number {
  if (!isTime(n)) throw invalid(field, `${field} must be a non-negative integer (epoch ms)`);
  return n;
}

function checkSerial(field: string, s: unknown): string {
  if (typeof s !== 'string' || !SERIAL_PATTERN.test(s)) throw invalid(field, `${field} must be 1-21 octets of lower-case hex`);
  return s;
}

function checkFingerprint(s: unknown): string {
  if (typeof s !== 'string' || s.length === 0 || s.length > MAX_NODE_FINGERPRINT_LENGTH || !FINGERPRINT_PATTERN.test(s)) {
    throw invalid('fingerprint', `fingerprint must be 1-${MAX_NODE_FINGERPRINT_LENGTH} printable ASCII characters`);
  }
  return s;
}

function isMethod(m: unknown): m is NodeAttestationMethod {
  return typeof m === 'string' && (NODE_ATTESTATION_METHODS as readonly string[]).includes(m);
}

/** Create the file with mode 0600 (or tighten an existing one); refuse symlinks and non-regular files. */
function prepareFile(path: string, create: boolean): void {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDWR | constants.O_NOFOLLOW | (create ? constants.O_CREAT : 0), 0o600);
  } catch (e) {
    if (!create && (e as { code?: unknown }).code === 'ENOENT') return;
    throw ioError(path, 'open', e);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new CloudStoreError('cloud-store/io', `cloud store ${path} is not a regular file`);
    if ((st.mode & 0o077) !== 0) fchmodSync(fd, 0o600);
  } catch (e) {
    throw e instanceof CloudStoreError ? e : ioError(path, 'secure', e);
  } finally {
    closeSync(fd);
  }
}

/** SQLite opens -wal/-shm by name: refuse symlinked ones and tighten existing ones (new ones copy the db mode). */
function secureSideFiles(path: string): void {
  for (const p of [`${path}-wal`, `${path}-shm`, `${path}-journal`]) prepareFile(p, false);
}

function migrate(db: Database.Database, path: string): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL) STRICT');
  const rows = db.prepare('SELECT version FROM schema_version').all() as { version: number }[];
  if (rows.length > 1) throw new CloudStoreError('cloud-store/corrupt', `cloud store ${path} has several schema versions`);
  const current = rows[0]?.version ?? 0;
  if (current > MIGRATIONS.length) {
    throw new CloudStoreError('cloud-store/version', `cloud store ${path} has schema version ${current}; this build knows ${MIGRATIONS.length}`, {
      detail: { version: current, known: MIGRATIONS.length },
    });
  }
  for (let v = current; v < MIGRATIONS.length; v++) db.exec(MIGRATIONS[v] as string);
  if (rows.length === 0) db.prepare('INSERT INTO schema_version (version) VALUES (?)').run(MIGRATIONS.length);
  else if (current !== MIGRATIONS.length) db.prepare('UPDATE schema_version SET version = ?').run(MIGRATIONS.length);
}

export function createCloudStore(dbPath: string, options: CloudStoreOptions): CloudStore {
  const { trustDomain, clock } = options;
  prepareFile(dbPath, true);
  secureSideFiles(dbPath);
  let db: Database.Database;
  try {
    db = new Database(dbPath, { fileMustExist: true, timeout: options.busyTimeoutMs ?? 5000 });
  } catch (e) {
    throw ioError(dbPath, 'open', e);
  }
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('trusted_schema = OFF');
    db.transaction(() => {
      migrate(db, dbPath);
      const td = db.prepare("SELECT value FROM meta WHERE key = 'trust_domain'").get() as { value: string } | undefined;
      if (td === undefined) db.prepare("INSERT INTO meta (key, value) VALUES ('trust_domain', ?)").run(trustDomain.name);
      else if (td.value !== trustDomain.name) {
        throw new CloudStoreError('cloud-store/trust-domain', `cloud store ${dbPath} belongs to trust domain "${td.value}", not "${trustDomain.name}"`);
      }
    }).immediate();
    secureSideFiles(dbPath);
  } catch (e) {
    db.close();
    if (e instanceof CloudStoreError) throw e;
    throw ioError(dbPath, 'initialise', e);
  }

  const stmt = {
    tokenGet: db.prepare('SELECT * FROM join_tokens WHERE token_hash = ?'),
    tokenInsert: db.prepare(
      'INSERT INTO join_tokens (token_hash, node_name, created_at, expires_at, used_at) VALUES (@token_hash, @node_name, @created_at, @expires_at, @used_at)',
    ),
    tokenUse: db.prepare('UPDATE join_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL'),
    tokenPrune: db.prepare('DELETE FROM join_tokens WHERE expires_at <= ?'),
    nodeGet: db.prepare('SELECT * FROM nodes WHERE name = ?'),
    nodeAll: db.prepare('SELECT * FROM nodes ORDER BY name'),
    nodeInsert: db.prepare(`INSERT INTO nodes (name, method, fingerprint, serial, not_after, pending_serial, pending_not_after,
      reattestable, banned, attested_at, updated_at)
      VALUES (@name, @method, @fingerprint, @serial, @not_after, NULL, NULL, @reattestable, 0, @now, @now)`),
    nodeReattest: db.prepare(`UPDATE nodes SET serial = @serial, not_after = @not_after, pending_serial = NULL,
      pending_not_after = NULL, reattestable = @reattestable, updated_at = @now WHERE name = @name`),
    nodeSetPending: db.prepare('UPDATE nodes SET pending_serial = ?, pending_not_after = ?, updated_at = ? WHERE name = ?'),
    nodePromote: db.prepare(`UPDATE nodes SET serial = pending_serial, not_after = COALESCE(pending_not_after, not_after),
      pending_serial = NULL, pending_not_after = NULL, updated_at = ? WHERE name = ?`),
    nodeBan: db.prepare(`UPDATE nodes SET banned = 1, serial = NULL, not_after = NULL, pending_serial = NULL,
      pending_not_after = NULL, updated_at = ? WHERE name = ?`),
    nodeUnban: db.prepare('UPDATE nodes SET banned = 0, updated_at = ? WHERE name = ?'),
    nodeDelete: db.prepare('DELETE FROM nodes WHERE name = ?'),
    caGet: db.prepare('SELECT snapshot FROM ca_state WHERE id = 1'),
    caPut: db.prepare(`INSERT INTO ca_state (id, snapshot, updated_at) VALUES (1, ?, ?)
      ON CONFLICT (id) DO UPDATE SET snapshot = excluded.snapshot, updated_at = excluded.updated_at`),
  };

  let closed = false;
  const listeners = new Set<(c: NodeChange) => void>();

  const live = (): void => {
    if (closed) throw new CloudStoreError('cloud-store/closed', 'cloud store is closed');
  };

  const corrupt = (what: string, cause?: unknown): CloudStoreError =>
    new CloudStoreError('cloud-store/corrupt', `cloud store ${dbPath}: ${what}`, cause === undefined ? undefined : { cause });

  /** Run `fn` in an IMMEDIATE transaction, mapping unexpected SQLite errors to `cloud-store/io`. */
  const write = <T>(fn: () => T): T => {
    live();
    try {
      return db.transaction(fn).immediate();
    } catch (e) {
      if (e instanceof CloudStoreError || e instanceof NodeNameError) throw e;
      throw ioError(dbPath, 'write', e);
    }
  };
  const read = <T>(fn: () => T): T => {
    live();
    try {
      return fn();
    } catch (e) {
      if (e instanceof CloudStoreError) throw e;
      throw ioError(dbPath, 'read', e);
    }
  };

  const emit = (kind: NodeChangeKind, name: string): void => {
    const change: NodeChange = Object.freeze({ kind, name });
    for (const l of [...listeners]) {
      try {
        l(change);
      } catch (e) {
        options.onListenerError?.(e);
      }
    }
  };

  const tokenFromRow = (r: TokenRow): JoinTokenRecord => {
    if (!TOKEN_HASH_PATTERN.test(r.token_hash) || !isTime(r.created_at) || !isTime(r.expires_at) || (r.used_at !== null && !isTime(r.used_at))) {
      throw corrupt('a join-token row is invalid');
    }
    let nodeName: string;
    try {
      nodeName = parseNodeName(r.node_name);
    } catch (e) {
      throw corrupt('a join-token row has an invalid node name', e);
    }
    return Object.freeze({
      tokenHash: r.token_hash,
      nodeName,
      createdAt: r.created_at,
      expiresAt: r.expires_at,
      ...(r.used_at === null ? {} : { usedAt: r.used_at }),
    });
  };

  const nodeFromRow = (r: NodeRow): AttestedNode => {
    const optSerial = (s: string | null): boolean => s === null || SERIAL_PATTERN.test(s);
    const optTime = (t: number | null): boolean => t === null || isTime(t);
    if (
      !isMethod(r.method) ||
      typeof r.fingerprint !== 'string' ||
      r.fingerprint.length > MAX_NODE_FINGERPRINT_LENGTH ||
      !FINGERPRINT_PATTERN.test(r.fingerprint) ||
      !optSerial(r.serial) ||
      !optSerial(r.pending_serial) ||
      !optTime(r.not_after) ||
      !optTime(r.pending_not_after) ||
      !isTime(r.attested_at) ||
      !isTime(r.updated_at) ||
      (r.banned === 1 && (r.serial !== null || r.pending_serial !== null))
    ) {
      throw corrupt(`node row "${String(r.name).slice(0, 64)}" is invalid`);
    }
    let spiffeId: SpiffeId;
    try {
      spiffeId = nodeSpiffeId(trustDomain, r.name);
    } catch (e) {
      throw corrupt('a node row has an invalid name', e);
    }
    return Object.freeze({
      name: r.name,
      spiffeId,
      method: r.method,
      fingerprint: r.fingerprint,
      serialHex: r.serial ?? undefined,
      notAfter: r.not_after ?? undefined,
      pendingSerialHex: r.pending_serial ?? undefined,
      pendingNotAfter: r.pending_not_after ?? undefined,
      reattestable: r.reattestable === 1,
      banned: r.banned === 1,
      attestedAt: r.attested_at,
      updatedAt: r.updated_at,
    });
  };

  const getRow = (name: string): NodeRow | undefined => stmt.nodeGet.get(name) as NodeRow | undefined;
  const mustGet = (name: string): NodeRow => {
    const row = getRow(name);
    if (row === undefined) throw new CloudStoreError('cloud-store/unknown-node', `no attested node "${name}"`, { detail: { node: name } });
    return row;
  };
  const notBanned = (row: NodeRow): void => {
    // Reference §3 "Ban/evict": a banned node cannot attest or renew.
    if (row.banned === 1) throw new CloudStoreError('cloud-store/node-banned', `node "${row.name}" is banned`, { detail: { node: row.name } });
  };
  /** Lookups with a hostile name just miss (no throw): only well-formed names can be stored. */
  const lookupName = (name: unknown): name is string => typeof name === 'string' && name.length <= 63;

  return {
    path: dbPath,

    addJoinToken(record: JoinTokenRecord): void {
      if (typeof record !== 'object' || record === null) throw invalid('record', 'join-token record must be an object');
      if (typeof record.tokenHash !== 'string' || !TOKEN_HASH_PATTERN.test(record.tokenHash)) {
        throw invalid('tokenHash', 'tokenHash must be 64 lower-case hex digits (SHA-256 of the token)');
      }
      const nodeName = parseNodeName(record.nodeName);
      const createdAt = checkTime('createdAt', record.createdAt);
      const expiresAt = checkTime('expiresAt', record.expiresAt);
      if (expiresAt <= createdAt) throw invalid('expiresAt', 'expiresAt must be after createdAt');
      const usedAt = record.usedAt === undefined ? null : checkTime('usedAt', record.usedAt);
      write(() => {
        if (stmt.tokenGet.get(record.tokenHash) !== undefined) {
          throw new CloudStoreError('cloud-store/token-exists', 'a join token with this hash already exists', { detail: { node: nodeName } });
        }
        stmt.tokenInsert.run({ token_hash: record.tokenHash, node_name: nodeName, created_at: createdAt, expires_at: expiresAt, used_at: usedAt });
      });
    },

    consume(tokenHash: string, now: number): JoinTokenRecord | undefined {
      checkTime('now', now);
      if (typeof tokenHash !== 'string' || !TOKEN_HASH_PATTERN.test(tokenHash)) {
        live();
        return undefined;
      }
      // Read and mark in one IMMEDIATE transaction: of two concurrent consumers exactly one sees usedAt unset.
      return write(() => {
        const row = stmt.tokenGet.get(tokenHash) as TokenRow | undefined;
        if (row === undefined) return undefined;
        const before = tokenFromRow(row);
        if (row.used_at === null) stmt.tokenUse.run(now, tokenHash);
        return before;
      });
    },

    pruneExpiredTokens(now: number): number {
      checkTime('now', now);
      return write(() => stmt.tokenPrune.run(now).changes);
    },

    upsertAttestedNode(input: AttestedNodeInput): AttestedNode {
      if (typeof input !== 'object' || input === null) throw invalid('input', 'attested node must be an object');
      const name = parseNodeName(input.name);
      if (!isMethod(input.method)) throw invalid('method', `method must be one of ${NODE_ATTESTATION_METHODS.join(', ')}`);
      const method = input.method;
      const fingerprint = checkFingerprint(input.fingerprint);
      const serial = checkSerial('serialHex', input.serialHex);
      const notAfter = checkTime('notAfter', input.notAfter);
      if (typeof input.reattestable !== 'boolean') throw invalid('reattestable', 'reattestable must be a boolean');
      const reattestable = input.reattestable ? 1 : 0;
      const node = write(() => {
        const now = clock.now();
        const row = getRow(name);
        if (row === undefined) {
          stmt.nodeInsert.run({ name, method, fingerprint, serial, not_after: notAfter, reattestable, now });
        } else {
          notBanned(row);
          // Another TPM / certificate / token claiming an attested name: refused until the node is evicted.
          if (row.method !== method || row.fingerprint !== fingerprint) {
            throw new CloudStoreError('cloud-store/fingerprint-mismatch', `node "${name}" is attested with another credential; evict it first`, {
              detail: { node: name, method: row.method },
            });
          }
          stmt.nodeReattest.run({ name, serial, not_after: notAfter, reattestable, now });
        }
        return nodeFromRow(mustGet(name));
      });
      emit('attested', name);
      return node;
    },

    getNode(name: string): AttestedNode | undefined {
      return read(() => {
        if (!lookupName(name)) return undefined;
        const row = getRow(name);
        return row === undefined ? undefined : nodeFromRow(row);
      });
    },

    listNodes(): readonly AttestedNode[] {
      return read(() => Object.freeze((stmt.nodeAll.all() as NodeRow[]).map(nodeFromRow)));
    },

    setPendingSerial(name: string, serialHex: string, notAfter?: number): AttestedNode {
      parseNodeName(name);
      const serial = checkSerial('serialHex', serialHex);
      const pendingNotAfter = notAfter === undefined ? null : checkTime('notAfter', notAfter);
      const node = write(() => {
        const row = mustGet(name);
        notBanned(row);
        stmt.nodeSetPending.run(serial, pendingNotAfter, clock.now(), name);
        return nodeFromRow(mustGet(name));
      });
      emit('renewal-pending', name);
      return node;
    },

    promoteSerial(name: string, serialHex: string): boolean {
      parseNodeName(name);
      const serial = checkSerial('serialHex', serialHex);
      const promoted = write(() => {
        const row = mustGet(name);
        notBanned(row);
        if (row.pending_serial === serial) {
          stmt.nodePromote.run(clock.now(), name);
          return true;
        }
        if (row.serial === serial) return false;
        throw new CloudStoreError('cloud-store/unknown-serial', `serial is neither the pending nor the current serial of node "${name}"`, {
          detail: { node: name },
        });
      });
      if (promoted) emit('promoted', name);
      return promoted;
    },

    isSerialCurrent(name: string, serialHex: string): boolean {
      return read(() => {
        if (!lookupName(name) || typeof serialHex !== 'string') return false;
        const row = getRow(name);
        if (row === undefined || row.banned === 1) return false;
        return (row.serial !== null && row.serial === serialHex) || (row.pending_serial !== null && row.pending_serial === serialHex);
      });
    },

    acceptSerial(name: string, serialHex: string): boolean {
      if (!lookupName(name) || typeof serialHex !== 'string') {
        live();
        return false;
      }
      const result = write((): 'current' | 'promoted' | 'refused' => {
        const row = getRow(name);
        if (row === undefined || row.banned === 1) return 'refused';
        if (row.serial !== null && row.serial === serialHex) return 'current';
        if (row.pending_serial !== null && row.pending_serial === serialHex) {
          stmt.nodePromote.run(clock.now(), name);
          return 'promoted';
        }
        return 'refused';
      });
      if (result === 'promoted') emit('promoted', name);
      return result !== 'refused';
    },

    ban(name: string): AttestedNode {
      parseNodeName(name);
      const node = write(() => {
        mustGet(name);
        stmt.nodeBan.run(clock.now(), name);
        return nodeFromRow(mustGet(name));
      });
      emit('banned', name);
      return node;
    },

    unban(name: string): AttestedNode {
      parseNodeName(name);
      const { node, changed } = write(() => {
        const row = mustGet(name);
        if (row.banned === 0) return { node: nodeFromRow(row), changed: false };
        stmt.nodeUnban.run(clock.now(), name);
        return { node: nodeFromRow(mustGet(name)), changed: true };
      });
      if (changed) emit('unbanned', name);
      return node;
    },

    evict(name: string): boolean {
      if (!lookupName(name)) {
        live();
        return false;
      }
      const removed = write(() => stmt.nodeDelete.run(name).changes > 0);
      if (removed) emit('evicted', name);
      return removed;
    },

    onChange(listener: (change: NodeChange) => void): () => void {
      live();
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },

    loadCaSnapshot(): CaSnapshot | undefined {
      return read(() => {
        const row = stmt.caGet.get() as { snapshot: string } | undefined;
        if (row === undefined) return undefined;
        let snap: unknown;
        try {
          snap = JSON.parse(row.snapshot);
        } catch (e) {
          throw corrupt('the CA snapshot is not JSON', e);
        }
        const s = snap as Partial<CaSnapshot> | null;
        if (
          typeof s !== 'object' ||
          s === null ||
          s.version !== 1 ||
          s.trustDomain !== trustDomain.name ||
          typeof s.root !== 'object' ||
          s.root === null ||
          !Array.isArray(s.slots) ||
          !Number.isSafeInteger(s.sequence)
        ) {
          throw corrupt('the CA snapshot is malformed or for another trust domain');
        }
        return s as CaSnapshot;
      });
    },

    saveCaSnapshot(snap: CaSnapshot): void {
      if (typeof snap !== 'object' || snap === null || snap.version !== 1) throw invalid('snapshot', 'CA snapshot must be a version 1 object');
      if (snap.trustDomain !== trustDomain.name) throw invalid('snapshot', `CA snapshot is for trust domain "${String(snap.trustDomain)}", not "${trustDomain.name}"`);
      const text = JSON.stringify(snap);
      if (Buffer.byteLength(text, 'utf8') > MAX_CA_SNAPSHOT_BYTES) throw invalid('snapshot', `CA snapshot exceeds ${MAX_CA_SNAPSHOT_BYTES} bytes`);
      write(() => {
        stmt.caPut.run(text, clock.now());
      });
    },

    close(): void {
      if (closed) return;
      closed = true;
      listeners.clear();
      db.close();
    },
  };
}
