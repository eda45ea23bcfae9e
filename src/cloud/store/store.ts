/**
 * The cloud core's SQLite store (issue #4): join tokens, the attested-node registry, and the CA state.
 * One file (better-sqlite3), mode 0600 (also its -wal/-shm files), WAL, symlinks refused, schema
 * migrations: opened through the StateFiles port (`files.openDatabase`, src/cli/host), like the edge's
 * stores; nothing is shared with src/edge directly (layering). Every write is one IMMEDIATE transaction. Reads go to the database (no cache), so several
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
 *   with any credential: eviction is how an operator re-pins a node to a new TPM or certificate). A new
 *   join token for a join_token node replaces the old token's fingerprint (the token is the operator's
 *   consent for that name); it never replaces an x509pop or tpm credential.
 * - CA state: one row holding the CaManager snapshot as JSON text.
 * - Node selectors (schema 2): every node has `node:name:N` and `node:method:M`, plus what the attestation
 *   proved (`x509pop:subject:cn:CN`, `tpm:ek-hash:HEX`), replaced at each attestation. They decide which
 *   node-alias entries apply to the node (reference §3 "Registration entries").
 * - SPIRE mode (schema 3: method `spire`): nodes attested by an external SPIRE are recorded on their first
 *   authenticated contact (`recordSpireNode`); their serial is the last one seen (SPIRE rotates node SVIDs,
 *   nothing is pinned); ban/unban/evict work as for any node. A name held by an embedded-mode record is
 *   not taken over (and vice versa) until an operator evicts it.
 * - Registration entries (schema 2; SPIRE's model, reference §3): validated with `validateEntryInput`,
 *   unique by spiffeId + parentId + selector set, each carrying the store revision at which it was
 *   written; every entry write bumps the revision (meta `entries_revision`). Parsed entries are cached per
 *   revision, so a lookup costs one indexed read while nothing changed. `entriesDelegatedTo(node)` is the
 *   delegation rule: parentId = the node's ID, or parentId = the spiffeId of an alias entry (parentId =
 *   `spiffe://TD/edgeward/cloud`) whose selectors are all among the node's selectors. Workload entries
 *   may not take an ID under `/edgeward/` (node and cloud identities are issued by attestation only).
 */
import { randomBytes } from 'node:crypto';
import {
  entryDedupeKey,
  entryDocumentFromColumns,
  entryToColumns,
  EntryValidationError,
  NODE_ATTESTATION_METHODS,
  NodeNameError,
  nodeSpiffeId,
  normalizeSelectors,
  parseNodeName,
  sameEntryContent,
  selectorKey,
  SelectorError,
  toSelector,
  validateEntryInput,
  type EntryColumns,
  type EntryInput,
  type EntryValidationOptions,
  type JoinTokenConsumer,
  type JoinTokenRecord,
  type NodeAttestationMethod,
  type RegistrationEntry,
  type Selector,
} from '../../attestation/index.js';
import { MAX_JWT_TTL_MS, SpiffeId, type CaSnapshot, type Clock, type StateFiles, type TrustDomain } from '../../identity/index.js';
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
/** Most attestation-specific selectors recorded for a node (besides node:name and node:method). */
export const MAX_NODE_EXTRA_SELECTORS = 16;
/** The path segments of the cloud's own SPIFFE ID: `spiffe://TD/edgeward/cloud`. */
export const CLOUD_ID_PATH = ['edgeward', 'cloud'] as const;
/** Stored rows' TTLs are re-checked only against this ceiling (lowering the maximum keeps old rows readable). */
const STORED_TTL_CEILING_MS = MAX_JWT_TTL_MS;

/** The cloud's SPIFFE ID, `spiffe://TD/edgeward/cloud`: the parent of node-alias entries. */
export function cloudSpiffeId(td: TrustDomain): SpiffeId {
  return SpiffeId.fromSegments(td, ...CLOUD_ID_PATH);
}

/**
 * How a node record came to be: one of the embedded attestation methods, or `spire` (SPIRE mode, issue #4
 * "Bring your own SPIRE": SPIRE attested the node; the cloud records it on its first authenticated contact
 * with a SPIRE-issued node SVID, `recordSpireNode`).
 */
export const NODE_RECORD_METHODS = [...NODE_ATTESTATION_METHODS, 'spire'] as const;
export type NodeRecordMethod = (typeof NODE_RECORD_METHODS)[number];
/** The fingerprint recorded for SPIRE nodes: the credential is SPIRE's (its SVIDs rotate), nothing to pin. */
export const SPIRE_NODE_FINGERPRINT = 'spire';

/** The selectors every node has: `node:name:N`, `node:method:M`. */
export function baseNodeSelectors(name: string, method: NodeRecordMethod): string[] {
  return [`node:method:${method}`, `node:name:${name}`];
}

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
  /**
   * Selectors the attestation proved besides `node:name:N` and `node:method:M` (which the store adds),
   * e.g. `x509pop:subject:cn:edge-1`; replaces the previous set. At most MAX_NODE_EXTRA_SELECTORS.
   */
  selectors?: readonly string[] | undefined;
}

export interface AttestedNode {
  readonly name: string;
  readonly spiffeId: SpiffeId;
  readonly method: NodeRecordMethod;
  readonly fingerprint: string;
  /** Serial of the node SVID in force; undefined while banned (ban clears it). */
  readonly serialHex: string | undefined;
  readonly notAfter: number | undefined;
  /** Serial of a renewed SVID not yet used (SPIRE "new serial"). */
  readonly pendingSerialHex: string | undefined;
  readonly pendingNotAfter: number | undefined;
  readonly reattestable: boolean;
  readonly banned: boolean;
  /** Node selectors (`type:value`, sorted): node:name, node:method and what the attestation proved. */
  readonly selectors: readonly string[];
  /** First attestation of this record (reset by evict). */
  readonly attestedAt: number;
  readonly updatedAt: number;
}

/** The outcome of `CloudStore.serialStatus`. */
export type SerialStatus = 'current' | 'promoted' | 'unknown-node' | 'banned' | 'superseded';

export type NodeChangeKind = 'attested' | 'renewal-pending' | 'promoted' | 'banned' | 'unbanned' | 'evicted';

export interface NodeChange {
  readonly kind: NodeChangeKind;
  readonly name: string;
}

export type EntryChangeCause = 'create' | 'delete';

export interface EntryChange {
  /** Entries revision after the change. */
  readonly revision: number;
  readonly cause: EntryChangeCause;
  readonly id: string;
}

export interface CloudStoreOptions {
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
   * Record a successful attestation: creates the node, or (same method and fingerprint; for join_token any
   * token) replaces its serial, fingerprint and selectors and clears any pending serial. Throws `node-name/invalid`, `cloud-store/invalid`, `cloud-store/node-banned`,
   * `cloud-store/fingerprint-mismatch`.
   */
  upsertAttestedNode(input: AttestedNodeInput): AttestedNode;
  getNode(name: string): AttestedNode | undefined;
  /** All nodes, by name. */
  listNodes(): readonly AttestedNode[];
  /**
   * SPIRE mode: a node presented a valid SPIRE-issued node SVID. Creates the record (method `spire`,
   * change `attested`) on first contact, else records the last-seen serial and expiry (SPIRE rotates node
   * SVIDs, so serials are not pinned). Returns the record as it is now. Throws `cloud-store/node-banned`
   * for a banned node, `cloud-store/fingerprint-mismatch` when the name is held by an embedded-mode record
   * (join_token, x509pop, tpm: evict it first), `node-name/invalid`, `cloud-store/invalid`.
   */
  recordSpireNode(name: string, serialHex: string, notAfter: number): { node: AttestedNode; created: boolean };
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
   * Check and promote (what a connection handler wants): true iff the serial is valid; a valid pending
   * serial is promoted on the spot (reference §5 item 34). See `serialStatus`.
   */
  acceptSerial(name: string, serialHex: string): boolean;
  /**
   * `acceptSerial` that also says why a serial is refused, so an authentication needs no other read:
   * 'current' (the current serial), 'promoted' (it was the pending one and now is the only valid one),
   * 'unknown-node', 'banned', or 'superseded' (neither the current nor the pending serial). The common
   * case (the current serial) is one indexed read and no write transaction; only a promotion opens an
   * IMMEDIATE transaction, which re-reads the row before it changes anything.
   */
  serialStatus(name: string, serialHex: string): SerialStatus;
  /** Clear the serials and refuse attestation/renewal until unban. Throws `cloud-store/unknown-node`. */
  ban(name: string): AttestedNode;
  /** Lift a ban (the node must attest again to get a serial). Throws `cloud-store/unknown-node`. */
  unban(name: string): AttestedNode;
  /** Delete the record. False if there was none. */
  evict(name: string): boolean;
  /** Called synchronously after every committed node change. Returns the unsubscribe function. */
  onChange(listener: (change: NodeChange) => void): () => void;
  // ---- registration entries
  /** Entries revision: bumped by every entry write (0 for a new store). Read from the database. */
  readonly entriesRevision: number;
  /**
   * Validate (`validateEntryInput`, this store's TTL maxima) and insert one entry. Throws
   * `EntryValidationError` ('entry/invalid', also for an ID under `/edgeward/`), `entry/duplicate`,
   * `entry/id-exists`. A caller-given id naming an entry of identical content returns it (idempotent).
   */
  createEntry(input: unknown): RegistrationEntry;
  getEntry(id: string): RegistrationEntry | undefined;
  /** All entries, oldest first (frozen). */
  listEntries(): readonly RegistrationEntry[];
  /** False if there was none. */
  deleteEntry(id: string): boolean;
  /**
   * The entries node `nodeName` may obtain SVIDs for (contract "Delegation"): parentId = its node ID, or
   * parentId = the spiffeId of an alias entry (parentId = `spiffe://TD/edgeward/cloud`) all of whose
   * selectors are among the node's selectors. Alias entries themselves are not included. A node that is
   * unknown or banned has no selectors (only direct children would count; callers authenticate first).
   */
  entriesDelegatedTo(nodeName: string): readonly RegistrationEntry[];
  /** Called synchronously after every committed entry change made through this store. */
  onEntryChange(listener: (change: EntryChange) => void): () => void;
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
  // 2: node selectors and registration entries (issue #4: delegation to nodes).
  `
  ALTER TABLE nodes ADD COLUMN selectors TEXT NOT NULL DEFAULT '[]';
  CREATE TABLE entries (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT    NOT NULL UNIQUE,
    spiffe_id        TEXT    NOT NULL,
    parent_id        TEXT    NOT NULL,
    selectors        TEXT    NOT NULL,
    dedupe_key       TEXT    NOT NULL UNIQUE,
    x509_svid_ttl_ms INTEGER,
    jwt_svid_ttl_ms  INTEGER,
    dns_names        TEXT    NOT NULL,
    hint             TEXT,
    created_at       INTEGER NOT NULL,
    revision         INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX entries_parent ON entries (parent_id);
  INSERT INTO meta (key, value) VALUES ('entries_revision', '0');
  `,
  // 3: method 'spire' (SPIRE mode: nodes attested by SPIRE, recorded on first contact). SQLite cannot
  // change a CHECK constraint in place, so the table is rebuilt with every row and column kept.
  `
  CREATE TABLE nodes_v3 (
    name              TEXT    PRIMARY KEY,
    method            TEXT    NOT NULL CHECK (method IN ('join_token', 'x509pop', 'tpm', 'spire')),
    fingerprint       TEXT    NOT NULL,
    serial            TEXT,
    not_after         INTEGER,
    pending_serial    TEXT,
    pending_not_after INTEGER,
    reattestable      INTEGER NOT NULL CHECK (reattestable IN (0, 1)),
    banned            INTEGER NOT NULL CHECK (banned IN (0, 1)),
    attested_at       INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    selectors         TEXT    NOT NULL DEFAULT '[]'
  ) STRICT;
  INSERT INTO nodes_v3 (name, method, fingerprint, serial, not_after, pending_serial, pending_not_after, reattestable, banned,
    attested_at, updated_at, selectors)
    SELECT name, method, fingerprint, serial, not_after, pending_serial, pending_not_after, reattestable, banned,
    attested_at, updated_at, selectors FROM nodes;
  DROP TABLE nodes;
  ALTER TABLE nodes_v3 RENAME TO nodes;
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
  selectors: string;
}

interface EntryRow extends EntryColumns {
  seq: number;
}

/** Parsed entries at one revision, with the lookups delegation needs. */
interface EntrySnapshot {
  readonly revision: number;
  readonly list: readonly RegistrationEntry[];
  readonly byId: ReadonlyMap<string, RegistrationEntry>;
  readonly byParent: ReadonlyMap<string, readonly RegistrationEntry[]>;
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

/** Validate extra node selectors: `type:value`, not of type `node` (the store's own), bounded. */
function checkNodeSelectors(list: unknown): string[] {
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw invalid('selectors', 'selectors must be an array of "type:value" strings');
  if (list.length > MAX_NODE_EXTRA_SELECTORS) throw invalid('selectors', `at most ${MAX_NODE_EXTRA_SELECTORS} node selectors`);
  const out: Selector[] = [];
  for (const x of list) {
    let sel: Selector;
    try {
      sel = toSelector(x);
    } catch (e) {
      if (e instanceof SelectorError) throw new CloudStoreError('cloud-store/invalid', `node selector: ${e.message}`, { cause: e, detail: { field: 'selectors' } });
      throw e;
    }
    if (sel.type === 'node') throw invalid('selectors', 'node:* selectors are set by the store');
    out.push(sel);
  }
  return normalizeSelectors(out).map(selectorKey);
}

function isMethod(m: unknown): m is NodeAttestationMethod {
  return typeof m === 'string' && (NODE_ATTESTATION_METHODS as readonly string[]).includes(m);
}

function isRecordMethod(m: unknown): m is NodeRecordMethod {
  return typeof m === 'string' && (NODE_RECORD_METHODS as readonly string[]).includes(m);
}

const STORE_FAILURE_CODES = { io: 'cloud-store/io', version: 'cloud-store/version', corrupt: 'cloud-store/corrupt' } as const;

export function createCloudStore(dbPath: string, options: CloudStoreOptions): CloudStore {
  const { trustDomain, clock } = options;
  const db = options.files.openDatabase(dbPath, {
    label: 'cloud store',
    migrations: MIGRATIONS,
    ...(options.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: options.busyTimeoutMs }),
    init: (d) => {
      const td = d.prepare("SELECT value FROM meta WHERE key = 'trust_domain'").get() as { value: string } | undefined;
      if (td === undefined) d.prepare("INSERT INTO meta (key, value) VALUES ('trust_domain', ?)").run(trustDomain.name);
      else if (td.value !== trustDomain.name) {
        throw new CloudStoreError('cloud-store/trust-domain', `cloud store ${dbPath} belongs to trust domain "${td.value}", not "${trustDomain.name}"`);
      }
    },
    error: (failure, message, o) => new CloudStoreError(STORE_FAILURE_CODES[failure], message, o),
  });

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
      reattestable, banned, attested_at, updated_at, selectors)
      VALUES (@name, @method, @fingerprint, @serial, @not_after, NULL, NULL, @reattestable, 0, @now, @now, @selectors)`),
    nodeReattest: db.prepare(`UPDATE nodes SET fingerprint = @fingerprint, serial = @serial, not_after = @not_after, pending_serial = NULL,
      pending_not_after = NULL, reattestable = @reattestable, updated_at = @now, selectors = @selectors WHERE name = @name`),
    nodeSpireInsert: db.prepare(`INSERT INTO nodes (name, method, fingerprint, serial, not_after, pending_serial, pending_not_after,
      reattestable, banned, attested_at, updated_at, selectors)
      VALUES (@name, 'spire', @fingerprint, @serial, @not_after, NULL, NULL, 0, 0, @now, @now, '[]')`),
    nodeSpireSeen: db.prepare('UPDATE nodes SET serial = @serial, not_after = @not_after, updated_at = @now WHERE name = @name'),
    // The columns an authentication needs (no selectors JSON, no fingerprint).
    nodeSerials: db.prepare('SELECT serial, pending_serial, banned FROM nodes WHERE name = ?'),
    // One statement: only a non-banned node's row changes, and the row comes back as it now is.
    nodeSetPending: db.prepare('UPDATE nodes SET pending_serial = ?, pending_not_after = ?, updated_at = ? WHERE name = ? AND banned = 0 RETURNING *'),
    nodePromote: db.prepare(`UPDATE nodes SET serial = pending_serial, not_after = COALESCE(pending_not_after, not_after),
      pending_serial = NULL, pending_not_after = NULL, updated_at = ? WHERE name = ?`),
    nodeBan: db.prepare(`UPDATE nodes SET banned = 1, serial = NULL, not_after = NULL, pending_serial = NULL,
      pending_not_after = NULL, updated_at = ? WHERE name = ?`),
    nodeUnban: db.prepare('UPDATE nodes SET banned = 0, updated_at = ? WHERE name = ?'),
    nodeDelete: db.prepare('DELETE FROM nodes WHERE name = ?'),
    entryRevGet: db.prepare("SELECT value FROM meta WHERE key = 'entries_revision'"),
    entryRevSet: db.prepare("UPDATE meta SET value = ? WHERE key = 'entries_revision'"),
    entryAll: db.prepare('SELECT * FROM entries ORDER BY seq'),
    entryById: db.prepare('SELECT * FROM entries WHERE id = ?'),
    entryByKey: db.prepare('SELECT id FROM entries WHERE dedupe_key = ?'),
    entryInsert: db.prepare(`INSERT INTO entries (id, spiffe_id, parent_id, selectors, dedupe_key, x509_svid_ttl_ms, jwt_svid_ttl_ms,
      dns_names, hint, created_at, revision)
      VALUES (@id, @spiffe_id, @parent_id, @selectors, @dedupe_key, @x509_svid_ttl_ms, @jwt_svid_ttl_ms, @dns_names, @hint, @created_at, @revision)`),
    entryDelete: db.prepare('DELETE FROM entries WHERE id = ?'),
    caGet: db.prepare('SELECT snapshot FROM ca_state WHERE id = 1'),
    caPut: db.prepare(`INSERT INTO ca_state (id, snapshot, updated_at) VALUES (1, ?, ?)
      ON CONFLICT (id) DO UPDATE SET snapshot = excluded.snapshot, updated_at = excluded.updated_at`),
  };

  let closed = false;
  const listeners = new Set<(c: NodeChange) => void>();
  const entryListeners = new Set<(c: EntryChange) => void>();
  const cloudId = cloudSpiffeId(trustDomain);
  const strictEntries: EntryValidationOptions = {
    trustDomain,
    ...(options.maxX509SvidTtlMs === undefined ? {} : { maxX509SvidTtlMs: options.maxX509SvidTtlMs }),
    ...(options.maxJwtSvidTtlMs === undefined ? {} : { maxJwtSvidTtlMs: options.maxJwtSvidTtlMs }),
  };
  const relaxedEntries: EntryValidationOptions = { trustDomain, maxX509SvidTtlMs: STORED_TTL_CEILING_MS, maxJwtSvidTtlMs: STORED_TTL_CEILING_MS };
  let entryCache: EntrySnapshot | undefined;

  const live = (): void => {
    if (closed) throw new CloudStoreError('cloud-store/closed', 'cloud store is closed');
  };

  const corrupt = (what: string, cause?: unknown): CloudStoreError =>
    new CloudStoreError('cloud-store/corrupt', `cloud store ${dbPath}: ${what}`, cause === undefined ? undefined : { cause });

  // One transaction wrapper for every write (db.transaction builds a new wrapper each time it is called).
  const immediate = db.transaction((fn: () => unknown): unknown => fn()).immediate;
  /** Run `fn` in an IMMEDIATE transaction, mapping unexpected SQLite errors to `cloud-store/io`. */
  const write = <T>(fn: () => T): T => {
    live();
    try {
      return immediate(fn) as T;
    } catch (e) {
      if (e instanceof CloudStoreError || e instanceof NodeNameError || e instanceof EntryValidationError) throw e;
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
      !isRecordMethod(r.method) ||
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
    let extras: string[];
    try {
      extras = checkNodeSelectors(JSON.parse(r.selectors) as unknown);
    } catch (e) {
      throw corrupt(`node row "${String(r.name).slice(0, 64)}" has invalid selectors`, e);
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
      selectors: Object.freeze([...new Set([...baseNodeSelectors(r.name, r.method), ...extras])].sort()),
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

  // ---- registration entries

  const readEntriesRevision = (): number => {
    const r = stmt.entryRevGet.get() as { value: string } | undefined;
    const n = Number(r?.value);
    if (r === undefined || !Number.isSafeInteger(n) || n < 0) throw corrupt('the entries revision is missing or malformed');
    return n;
  };

  /** Refuse workload entries that would hand out a node's or the cloud's identity. */
  const checkNotReserved = (input: EntryInput): void => {
    const segs = input.spiffeId.segments;
    if (segs[0] === CLOUD_ID_PATH[0]) {
      throw new EntryValidationError([{ path: 'spiffeId', message: 'IDs under /edgeward/ are reserved for the cloud and attested nodes' }]);
    }
  };

  const entryFromRow = (row: EntryRow): RegistrationEntry => {
    let input: EntryInput;
    try {
      input = validateEntryInput(entryDocumentFromColumns(row), relaxedEntries);
      checkNotReserved(input);
      if (entryDedupeKey(input) !== row.dedupe_key || !isTime(row.created_at) || !isTime(row.revision)) {
        throw new EntryValidationError([{ path: 'row', message: 'dedupe key, time or revision does not match' }]);
      }
    } catch (e) {
      throw corrupt(`entry row "${String(row.id).slice(0, 64)}" is invalid`, e);
    }
    return Object.freeze({ ...input, id: row.id, createdAt: row.created_at, revision: row.revision });
  };

  /** Entries at the current revision: parsed once per revision (one indexed read when nothing changed). */
  const entrySnapshot = (): EntrySnapshot =>
    read(() =>
      db
        .transaction((): EntrySnapshot => {
          const revision = readEntriesRevision();
          if (entryCache !== undefined && entryCache.revision === revision) return entryCache;
          const list = Object.freeze((stmt.entryAll.all() as EntryRow[]).map(entryFromRow));
          const byId = new Map<string, RegistrationEntry>();
          const byParent = new Map<string, RegistrationEntry[]>();
          for (const e of list) {
            byId.set(e.id, e);
            const p = e.parentId.toString();
            const l = byParent.get(p);
            if (l === undefined) byParent.set(p, [e]);
            else l.push(e);
          }
          entryCache = { revision, list, byId, byParent };
          return entryCache;
        })
        .deferred(),
    );

  const emitEntry = (change: EntryChange): void => {
    const c = Object.freeze(change);
    for (const l of [...entryListeners]) {
      try {
        l(c);
      } catch (e) {
        options.onListenerError?.(e);
      }
    }
  };

  const serialStatus = (name: string, serialHex: string): SerialStatus => {
    if (!lookupName(name) || typeof serialHex !== 'string') {
      live();
      return 'unknown-node';
    }
    type Serials = Pick<NodeRow, 'serial' | 'pending_serial' | 'banned'>;
    const classify = (row: Serials | undefined): SerialStatus | 'pending' => {
      if (row === undefined) return 'unknown-node';
      if (row.banned === 1) return 'banned';
      if (row.serial !== null && row.serial === serialHex) return 'current';
      if (row.pending_serial !== null && row.pending_serial === serialHex) return 'pending';
      return 'superseded';
    };
    // The common case reads one committed state of the row (a single statement, no transaction): the
    // answer is what an IMMEDIATE transaction would have seen at that instant.
    const seen = read(() => classify(stmt.nodeSerials.get(name) as Serials | undefined));
    if (seen !== 'pending') return seen;
    // A promotion: decide again on the row under the write lock (it may have changed since the read).
    const result = write((): SerialStatus => {
      const now = classify(stmt.nodeSerials.get(name) as Serials | undefined);
      if (now !== 'pending') return now;
      stmt.nodePromote.run(clock.now(), name);
      return 'promoted';
    });
    if (result === 'promoted') emit('promoted', name);
    return result;
  };

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
      const selectors = JSON.stringify(checkNodeSelectors(input.selectors));
      const node = write(() => {
        const now = clock.now();
        const row = getRow(name);
        if (row === undefined) {
          stmt.nodeInsert.run({ name, method, fingerprint, serial, not_after: notAfter, reattestable, now, selectors });
        } else {
          notBanned(row);
          // Another TPM / certificate claiming an attested name: refused until the node is evicted. A join
          // token is an operator's one-time authorization for exactly this name, so a fresh token may replace
          // the previous token (a join_token node is not re-attestable and has no other way back), but never
          // another method's credential.
          if (row.method !== method || (row.fingerprint !== fingerprint && method !== 'join_token')) {
            throw new CloudStoreError('cloud-store/fingerprint-mismatch', `node "${name}" is attested with another credential; evict it first`, {
              detail: { node: name, method: row.method },
            });
          }
          stmt.nodeReattest.run({ name, fingerprint, serial, not_after: notAfter, reattestable, now, selectors });
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

    recordSpireNode(nameIn: string, serialHex: string, notAfter: number): { node: AttestedNode; created: boolean } {
      const name = parseNodeName(nameIn);
      const serial = checkSerial('serialHex', serialHex);
      const na = checkTime('notAfter', notAfter);
      const result = write((): { node: AttestedNode; created: boolean } => {
        const row = getRow(name);
        const now = clock.now();
        if (row === undefined) {
          stmt.nodeSpireInsert.run({ name, fingerprint: SPIRE_NODE_FINGERPRINT, serial, not_after: na, now });
          return { node: nodeFromRow(mustGet(name)), created: true };
        }
        notBanned(row);
        if (row.method !== 'spire') {
          throw new CloudStoreError('cloud-store/fingerprint-mismatch', `node "${name}" is recorded as attested by ${row.method}; evict it first`, {
            detail: { node: name, method: row.method },
          });
        }
        if (row.serial === serial && row.not_after === na) return { node: nodeFromRow(row), created: false };
        stmt.nodeSpireSeen.run({ name, serial, not_after: na, now });
        return { node: nodeFromRow(mustGet(name)), created: false };
      });
      // A new record is news (listeners re-check connections); a new last-seen serial is not: SPIRE rotates.
      if (result.created) emit('attested', name);
      return result;
    },

    setPendingSerial(name: string, serialHex: string, notAfter?: number): AttestedNode {
      parseNodeName(name);
      const serial = checkSerial('serialHex', serialHex);
      const pendingNotAfter = notAfter === undefined ? null : checkTime('notAfter', notAfter);
      const node = write(() => {
        const updated = stmt.nodeSetPending.get(serial, pendingNotAfter, clock.now(), name) as NodeRow | undefined;
        if (updated !== undefined) return nodeFromRow(updated);
        // Nothing changed: say why (unknown-node or node-banned).
        notBanned(mustGet(name));
        throw corrupt(`node "${name}" was neither updated nor found banned`);
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
      const r = serialStatus(name, serialHex);
      return r === 'current' || r === 'promoted';
    },

    serialStatus,

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

    get entriesRevision(): number {
      return read(readEntriesRevision);
    },

    createEntry(raw: unknown): RegistrationEntry {
      live();
      const input = validateEntryInput(raw, strictEntries);
      checkNotReserved(input);
      const result = write((): { entry: RegistrationEntry; changed: boolean } => {
        if (input.id !== undefined) {
          const existing = stmt.entryById.get(input.id) as EntryRow | undefined;
          if (existing !== undefined) {
            const current = entryFromRow(existing);
            if (sameEntryContent(current, input)) return { entry: current, changed: false };
            throw new CloudStoreError('entry/id-exists', `an entry with id "${input.id}" already exists`, { detail: { id: input.id } });
          }
        }
        const dup = stmt.entryByKey.get(entryDedupeKey(input)) as { id: string } | undefined;
        if (dup !== undefined) {
          throw new CloudStoreError('entry/duplicate', `entry ${dup.id} already has this spiffeId, parentId and selector set`, {
            detail: { existing: dup.id },
          });
        }
        const revision = readEntriesRevision() + 1;
        const entry: RegistrationEntry = Object.freeze({ ...input, id: input.id ?? randomBytes(16).toString('hex'), createdAt: clock.now(), revision });
        stmt.entryInsert.run(entryToColumns(entry));
        stmt.entryRevSet.run(String(revision));
        return { entry, changed: true };
      });
      if (result.changed) emitEntry({ revision: result.entry.revision, cause: 'create', id: result.entry.id });
      return result.entry;
    },

    getEntry(id: string): RegistrationEntry | undefined {
      if (typeof id !== 'string') {
        live();
        return undefined;
      }
      return entrySnapshot().byId.get(id);
    },

    listEntries(): readonly RegistrationEntry[] {
      return entrySnapshot().list;
    },

    deleteEntry(id: string): boolean {
      live();
      if (typeof id !== 'string' || id.length > 128) return false;
      const revision = write((): number | undefined => {
        if (stmt.entryDelete.run(id).changes === 0) return undefined;
        const next = readEntriesRevision() + 1;
        stmt.entryRevSet.run(String(next));
        return next;
      });
      if (revision === undefined) return false;
      emitEntry({ revision, cause: 'delete', id });
      return true;
    },

    entriesDelegatedTo(nodeName: string): readonly RegistrationEntry[] {
      const name = parseNodeName(nodeName);
      const snap = entrySnapshot();
      const node = read(() => {
        const row = getRow(name);
        return row === undefined ? undefined : nodeFromRow(row);
      });
      const out: RegistrationEntry[] = [...(snap.byParent.get(nodeSpiffeId(trustDomain, name).toString()) ?? [])];
      if (node !== undefined && !node.banned) {
        const have = new Set(node.selectors);
        for (const alias of snap.byParent.get(cloudId.toString()) ?? []) {
          // Alias entry: all of its selectors among the node's (subset rule, reference §3).
          if (alias.selectors.length === 0 || !alias.selectors.every((sel) => have.has(selectorKey(sel)))) continue;
          for (const e of snap.byParent.get(alias.spiffeId.toString()) ?? []) out.push(e);
        }
      }
      // One entry once, in store order.
      const seen = new Set<string>();
      const order = new Map(snap.list.map((e, i) => [e.id, i]));
      return Object.freeze(
        out.filter((e) => (seen.has(e.id) ? false : (seen.add(e.id), true))).sort((a, b) => (order.get(a.id) ?? 0) - (order.get(b.id) ?? 0)),
      );
    },

    onEntryChange(listener: (change: EntryChange) => void): () => void {
      live();
      entryListeners.add(listener);
      return () => {
        entryListeners.delete(listener);
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
      entryListeners.clear();
      entryCache = undefined;
      db.close();
    },
  };
}
