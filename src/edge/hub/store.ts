/**
 * The edge's durable copy of its desired state (issue #5, "offline autonomy"): the resources the cloud
 * sent to this node, and the outbox of status entries not yet acknowledged by the cloud, in one SQLite
 * file DATA/hub/state.db (0600, WAL, symlinks refused: StateFiles.openDatabase).
 *
 * Unlike KubeEdge's edgecore.db (kubeedge.md §5: every object, secrets included, stored in plain JSON, and
 * tampering with it a known risk), every resource body is sealed with AES-256-GCM under the store's data
 * key (DEK, 32 bytes, never stored beside the database: sealing.ts), with a fresh 12-byte IV per write and
 * the additional authenticated data
 *
 *     edgeward/hub/v1|<storeId>|<kind>|<name>|<version>|<deleted 0/1>
 *
 * so a row cannot be moved to another object or another store, its version column cannot be changed
 * (e.g. lowered so that an older put wins, or raised so that newer ones are ignored), a tombstone cannot be
 * turned back into a live object, and nothing can be read without the DEK. A row that does not authenticate
 * is refused (event `security.edge_store_row_refused`) and never served; a later put or delete from the
 * cloud overwrites it. A wrong DEK is detected at open (a sealed check value in `meta`).
 *
 * Not detected (documented limit): replaying a complete older row of the same object from a copy of this
 * very store (or the whole file rolled back), which needs a monotonic counter outside the file.
 *
 * Sync semantics (contract "Edge store and sealing"): `apply` runs one IMMEDIATE transaction for the whole
 * batch; an item is stored only if its version is newer than the stored one (tombstones keep their version,
 * so a late older put cannot resurrect a deleted object); every item is acknowledged, superseded ones
 * included, and only once the transaction has committed. An invalid item rolls the whole batch back.
 *
 * The status outbox is not secret (phases and short messages about resources): it is stored in plain
 * columns, in `seq` order (AUTOINCREMENT: a seq is never reused, also after the rows are deleted), at most
 * `MAX_OUTBOX_ROWS` rows.
 */
import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, lstatSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { EdgewardError, type Clock, type StateDatabase, type StateFiles } from '../../identity/index.js';
import { isNodeName } from '../../attestation/index.js';
import {
  HUB_STATUS_PHASE_PATTERN,
  HUB_STORE_ID_PATTERN,
  MAX_HUB_ACK_ITEMS,
  MAX_HUB_STATUS_MESSAGE,
  RESOURCE_KINDS,
  isResourceNameOf,
  statusDetailProblem,
  validateResourceData,
  type AckItem,
  type ResourceKind,
  type ResourceRef,
  type StatusEntry,
  type WireResource,
} from '../../protocol/index.js';
import { EdgeStoreError, type EdgeStoreErrorCode } from './store-errors.js';

export const DATA_KEY_BYTES = 32;
/** Most rows in the status outbox; a further `appendStatus` fails with `edge-store/outbox-full`. */
export const MAX_OUTBOX_ROWS = 100_000;
/** Most live resources the store keeps (the cloud sends at most 10,000 per node). */
export const MAX_EDGE_RESOURCES = 20_000;
/** Most tombstones kept; beyond this the oldest already synced ones are pruned. */
export const MAX_EDGE_TOMBSTONES = 10_000;
/** A tombstone is kept at least this long after it was written (against late older puts). */
export const TOMBSTONE_MIN_AGE_MS = 10 * 60_000;
/** Most items in one `apply` (one `ack` message). */
export const MAX_APPLY_ITEMS = MAX_HUB_ACK_ITEMS;
/** Most entries one `pendingStatus` returns. */
export const MAX_PENDING_STATUS = 1000;
export const STATE_DB_FILE = 'state.db';

const IV_BYTES = 12;
const TAG_BYTES = 16;
const AAD_PREFIX = 'edgeward/hub/v1';
const KEY_CHECK = Buffer.from('edgeward/hub/v1 key check', 'utf8');
const MAX_REFUSED_REMEMBERED = 10_000;

/** One item from the cloud: a put of a resource state, or a delete at a version. */
export type HubItem = { op: 'put'; resource: WireResource } | { op: 'delete'; kind: ResourceKind; name: string; version: number };

export type { AckItem } from '../../protocol/index.js';

/** A live resource as the edge holds it. */
export interface LocalResource {
  kind: ResourceKind;
  name: string;
  version: number;
  data: Record<string, unknown>;
  /** When this edge stored this version (epoch ms). */
  updatedAt: number;
}

/** What an `apply` wrote. `existed`: a live resource was removed (false: only a tombstone was recorded). */
export type StoreChange = { op: 'put'; resource: LocalResource } | { op: 'delete'; kind: ResourceKind; name: string; version: number; existed: boolean };

export interface ApplyResult {
  /** One per item, in input order (superseded items included), to send once `apply` has returned. */
  acks: AckItem[];
  /** What was written, in input order. */
  changed: StoreChange[];
  /** Items not written because the stored version is the same or newer (still acknowledged). */
  superseded: AckItem[];
  /** Stored rows that did not authenticate and were overwritten by an item (each logged as a security event). */
  refused: ResourceRef[];
  /** Status entries appended (`reportStored`); entries that did not fit in the outbox are left out (logged). */
  reported: number;
}

export interface ApplyOptions {
  /**
   * Append one status entry per stored put (`phase: 'Stored'`, `observedVersion`) in the same transaction
   * (contract: "The edge reports one status entry per applied resource"). An outbox that is full does not
   * stop the resources from being stored: the entry is left out and `edge.hub_outbox_full` logged.
   */
  reportStored?: boolean;
  /**
   * Store every item (or those the predicate says) whatever version is stored (a resync: the cloud forgot
   * this store, or the store lost data, and what it sends now is the truth; its versions may even be lower,
   * e.g. a new cloud). The predicate is called only for items that meet a stored row.
   */
  force?: boolean | ((kind: ResourceKind, name: string) => boolean);
}

export interface AppendStatusOptions {
  /**
   * Coalesce: delete the outbox entries of the same kind and name first (in the same transaction), so that a
   * frequently updated status (a device's twins) keeps one entry, the newest, however long the cloud is away.
   * An entry already sent is safe to delete: the cloud's ack covers seqs up to what it stored.
   */
  replace?: boolean;
}

/** pino-compatible logger subset. */
export interface EdgeHubStoreLogger {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
}

export interface EdgeHubStoreOptions {
  /** DATA/hub: created 0700 (an existing one must be a directory of ours, not a symlink; it is tightened). */
  dir: string;
  files: StateFiles;
  /** The 32-byte data key from `openDataKey` (copied; the copy is zeroed by `close`). */
  dek: Buffer;
  clock: Clock;
  logger: EdgeHubStoreLogger;
}

export interface EdgeHubStore {
  /** The store's identity (UUID v4 made when the database was created), sent in `hello`. */
  readonly storeId: string;
  /** Apply a batch from the cloud in one transaction (see the module comment). */
  apply(items: readonly HubItem[], options?: ApplyOptions): ApplyResult;
  /** A live resource; undefined when absent, deleted, or when its row does not authenticate. */
  get(kind: ResourceKind, name: string): LocalResource | undefined;
  /** Live resources (of one kind), sorted by kind and name; rows that do not authenticate are left out. */
  list(kind?: ResourceKind): LocalResource[];
  /** Append to the status outbox; returns the entry's seq. `replace`: unsent entries of the same object are dropped first. */
  appendStatus(e: Omit<StatusEntry, 'seq'>, options?: AppendStatusOptions): number;
  /** The oldest `limit` (1..1000) outbox entries, in seq order. */
  pendingStatus(limit: number): StatusEntry[];
  /** Delete every outbox entry with seq <= `seq` (the cloud stored them); returns how many were deleted. */
  ackStatus(seq: number): number;
  outboxSize(): number;
  /** The highest outbox seq ever allocated (0: none); sent in `hello` so the cloud can tell a rolled-back store. */
  outboxHighSeq(): number;
  /** A row was refused since the last resync: the next session asks the cloud for everything again. */
  needsResync(): boolean;
  /** Start of a resync catch-up: tombstones dropped, the resync flag kept set until `endResync`. */
  beginResync(): void;
  /** The resync catch-up completed: the flag is cleared. */
  endResync(): void;
  /** The version of the last `synced` from the cloud (0: never). */
  syncedVersion(): number;
  /** Record a `synced` version; also prunes tombstones the cloud can no longer send an older put for. */
  setSyncedVersion(v: number): void;
  close(): void;
}

/**
 * Schema migrations (append only). `resources` holds live rows and tombstones (`deleted = 1`, empty
 * sealed body); `iv`/`tag`/`body` are the AES-256-GCM parts of the sealed `data` JSON.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
  CREATE TABLE resources (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    iv BLOB NOT NULL,
    tag BLOB NOT NULL,
    body BLOB NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
  ) STRICT;
  CREATE INDEX resources_tombstones ON resources (deleted, version);
  CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    phase TEXT NOT NULL,
    message TEXT,
    observed_version INTEGER,
    at INTEGER NOT NULL
  ) STRICT;
  `,
  // issue #6: a status entry's detail (JSON text; e.g. a Device's reported twins).
  `ALTER TABLE outbox ADD COLUMN detail TEXT;`,
];

interface ResourceRow {
  kind: string;
  name: string;
  version: number;
  deleted: number;
  iv: Buffer;
  tag: Buffer;
  body: Buffer;
  updated_at: number;
}

interface OutboxRow {
  seq: number;
  kind: string;
  name: string;
  phase: string;
  message: string | null;
  observed_version: number | null;
  at: number;
  detail: string | null;
}

function fail(code: EdgeStoreErrorCode, message: string, cause?: unknown): never {
  throw new EdgeStoreError(code, message, cause === undefined ? undefined : { cause });
}

/** SQLite and file errors during use: a corrupt file is `corrupt`, anything else `io`. */
function storeFailure(e: unknown, what: string): EdgeStoreError {
  if (e instanceof EdgeStoreError) return e;
  const code = typeof e === 'object' && e !== null ? (e as { code?: unknown }).code : undefined;
  if (typeof code === 'string' && (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB')) {
    return new EdgeStoreError('edge-store/corrupt', `the edge hub store is corrupt (${what})`, { cause: e });
  }
  return new EdgeStoreError('edge-store/io', `the edge hub store cannot ${what}${typeof code === 'string' ? ` (${code})` : ''}`, { cause: e });
}

/**
 * Make `dir` (and missing parents) 0700, or check an existing one: a real directory (not a symlink) owned by
 * this user; group/other bits are removed.
 */
export function ensurePrivateDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    fail('edge-store/io', `cannot create ${dir} (${(e as NodeJS.ErrnoException).code ?? 'error'})`, e);
  }
  let st;
  try {
    st = lstatSync(dir);
  } catch (e) {
    fail('edge-store/io', `cannot inspect ${dir}`, e);
  }
  if (!st.isDirectory()) fail('edge-store/io', `${dir} is not a directory (symlinks are refused)`);
  const uid = typeof process.getuid === 'function' ? process.getuid() : undefined;
  if (uid !== undefined && st.uid !== uid) fail('edge-store/io', `${dir} belongs to another user`);
  if ((st.mode & 0o077) !== 0) {
    try {
      chmodSync(dir, 0o700);
    } catch (e) {
      fail('edge-store/io', `cannot make ${dir} private`, e);
    }
  }
}

function isKind(x: unknown): x is ResourceKind {
  return typeof x === 'string' && (RESOURCE_KINDS as readonly string[]).includes(x);
}

/** A valid name of a resource of `kind` (not a kind: false). */
function isResourceName(x: unknown, kind: unknown): x is string {
  return isKind(kind) && isResourceNameOf(kind, x);
}

function isVersion(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 1;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

const refText = (kind: string, name: string): string => `${kind}/${name.length > 64 ? `${name.slice(0, 64)}...` : name}`;

/** Check one item; throws `edge-store/invalid` naming it. */
function checkItem(item: unknown, i: number): { kind: ResourceKind; name: string; version: number; data?: Record<string, unknown>; deleted: boolean } {
  const where = `item ${i}`;
  if (!isObject(item)) fail('edge-store/invalid', `${where} is not an object`);
  if (item['op'] === 'put') {
    const r = item['resource'];
    if (!isObject(r)) fail('edge-store/invalid', `${where}: resource is not an object`);
    if (!isKind(r['kind'])) fail('edge-store/invalid', `${where}: unknown resource kind`);
    if (!isResourceName(r['name'], r['kind'])) fail('edge-store/invalid', `${where}: invalid resource name`);
    if (!isVersion(r['version'])) fail('edge-store/invalid', `${where}: version must be an integer >= 1`);
    const data = r['data'];
    if (!isObject(data)) fail('edge-store/invalid', `${where}: data is not an object`);
    try {
      validateResourceData(r['kind'], data);
    } catch (e) {
      if (e instanceof EdgewardError) fail('edge-store/invalid', `${where} (${refText(r['kind'], r['name'])}): ${e.message.slice(0, 200)}`, e);
      throw e;
    }
    return { kind: r['kind'], name: r['name'], version: r['version'], data, deleted: false };
  }
  if (item['op'] === 'delete') {
    if (!isKind(item['kind'])) fail('edge-store/invalid', `${where}: unknown resource kind`);
    if (!isResourceName(item['name'], item['kind'])) fail('edge-store/invalid', `${where}: invalid resource name`);
    if (!isVersion(item['version'])) fail('edge-store/invalid', `${where}: version must be an integer >= 1`);
    return { kind: item['kind'], name: item['name'], version: item['version'], deleted: true };
  }
  return fail('edge-store/invalid', `${where}: op must be put or delete`);
}

function checkStatus(e: unknown): Omit<StatusEntry, 'seq'> {
  if (!isObject(e)) fail('edge-store/invalid', 'a status entry must be an object');
  for (const k of Object.keys(e)) {
    if (!['kind', 'name', 'phase', 'message', 'observedVersion', 'at', 'detail'].includes(k)) fail('edge-store/invalid', `status entry: unknown field ${JSON.stringify(k.slice(0, 40))}`);
  }
  const kind = e['kind'];
  if (kind !== 'Node' && !isKind(kind)) fail('edge-store/invalid', 'status entry: kind must be a resource kind or Node');
  const name = e['name'];
  if (kind === 'Node' ? !isNodeName(name) : !isResourceName(name, kind)) fail('edge-store/invalid', 'status entry: invalid name');
  const phase = e['phase'];
  if (typeof phase !== 'string' || !HUB_STATUS_PHASE_PATTERN.test(phase)) fail('edge-store/invalid', 'status entry: phase must match /^[A-Z][A-Za-z]{0,31}$/');
  const at = e['at'];
  if (typeof at !== 'number' || !Number.isSafeInteger(at) || at < 0) fail('edge-store/invalid', 'status entry: at must be a non-negative integer (epoch ms)');
  const out: { -readonly [K in keyof Omit<StatusEntry, 'seq'>]: Omit<StatusEntry, 'seq'>[K] } = { kind, name: name as string, phase, at };
  if (e['message'] !== undefined) {
    if (typeof e['message'] !== 'string' || e['message'].length > MAX_HUB_STATUS_MESSAGE) fail('edge-store/invalid', `status entry: message must be a string of at most ${MAX_HUB_STATUS_MESSAGE} characters`);
    out.message = e['message'];
  }
  if (e['observedVersion'] !== undefined) {
    if (!isVersion(e['observedVersion'])) fail('edge-store/invalid', 'status entry: observedVersion must be an integer >= 1');
    out.observedVersion = e['observedVersion'];
  }
  if (e['detail'] !== undefined) {
    const problem = statusDetailProblem(e['detail']);
    if (problem !== undefined) fail('edge-store/invalid', `status entry: ${problem}`);
    out.detail = e['detail'] as Record<string, unknown>;
  }
  return out;
}

function aad(storeId: string, kind: string, name: string, version: number, deleted: boolean): Buffer {
  return Buffer.from(`${AAD_PREFIX}|${storeId}|${kind}|${name}|${version}|${deleted ? 1 : 0}`, 'utf8');
}

function seal(key: Buffer, ad: Buffer, plain: Buffer): { iv: Buffer; tag: Buffer; body: Buffer } {
  const iv = randomBytes(IV_BYTES);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(ad);
  const body = Buffer.concat([c.update(plain), c.final()]);
  return { iv, tag: c.getAuthTag(), body };
}

/** Undefined when the parts do not authenticate. */
function unseal(key: Buffer, ad: Buffer, iv: unknown, tag: unknown, body: unknown): Buffer | undefined {
  if (!Buffer.isBuffer(iv) || iv.length !== IV_BYTES || !Buffer.isBuffer(tag) || tag.length !== TAG_BYTES || !Buffer.isBuffer(body)) return undefined;
  try {
    const d = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
    d.setAAD(ad);
    d.setAuthTag(tag);
    return Buffer.concat([d.update(body), d.final()]);
  } catch {
    return undefined;
  }
}

function checkKeyValue(storeId: string): Buffer {
  return Buffer.from(`${AAD_PREFIX}|${storeId}|meta|key_check`, 'utf8');
}

function encodeParts(p: { iv: Buffer; tag: Buffer; body: Buffer }): string {
  return Buffer.concat([p.iv, p.tag, p.body]).toString('base64');
}

/** Read or create the store id and the sealed key check (inside the open's IMMEDIATE transaction). */
function initMeta(db: StateDatabase, key: Buffer): void {
  const get = db.prepare('SELECT value FROM meta WHERE key = ?');
  const storeRow = get.get('store_id') as { value: string } | undefined;
  const checkRow = get.get('key_check') as { value: string } | undefined;
  if (storeRow === undefined) {
    const n = db.prepare('SELECT (SELECT COUNT(*) FROM resources) + (SELECT COUNT(*) FROM meta) AS n').get() as { n: number };
    if (n.n !== 0) fail('edge-store/corrupt', 'the edge hub store has rows but no store id');
    const storeId = randomUUID();
    const put = db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)');
    put.run('store_id', storeId);
    put.run('key_check', encodeParts(seal(key, checkKeyValue(storeId), KEY_CHECK)));
    put.run('synced_version', '0');
    return;
  }
  if (typeof storeRow.value !== 'string' || !HUB_STORE_ID_PATTERN.test(storeRow.value)) fail('edge-store/corrupt', 'the edge hub store id is malformed');
  if (checkRow === undefined || typeof checkRow.value !== 'string') fail('edge-store/corrupt', 'the edge hub store has no key check');
  const raw = Buffer.from(checkRow.value, 'base64');
  const plain = unseal(key, checkKeyValue(storeRow.value), raw.subarray(0, IV_BYTES), raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES), raw.subarray(IV_BYTES + TAG_BYTES));
  if (plain === undefined || !plain.equals(KEY_CHECK)) {
    fail('edge-store/key-unavailable', 'the data key does not open the edge hub store (it was sealed with another data key, or its key check was altered)');
  }
}

/** Open (or create) DIR/state.db sealed with `dek`. */
export function openEdgeHubStore(opts: EdgeHubStoreOptions): EdgeHubStore {
  if (!Buffer.isBuffer(opts.dek) || opts.dek.length !== DATA_KEY_BYTES) fail('edge-store/invalid', `the data key must be ${DATA_KEY_BYTES} bytes`);
  ensurePrivateDir(opts.dir);
  const key = Buffer.from(opts.dek);
  let db: StateDatabase;
  try {
    db = opts.files.openDatabase(join(opts.dir, STATE_DB_FILE), {
      label: 'edge hub store',
      migrations: MIGRATIONS,
      synchronous: 'FULL',
      pragmas: ['secure_delete = ON'],
      init: (d) => initMeta(d, key),
      error: (failure, message, o) => new EdgeStoreError(`edge-store/${failure}`, message, o),
    });
  } catch (e) {
    key.fill(0);
    throw e;
  }
  try {
    return new SqliteEdgeHubStore(db, key, opts.clock, opts.logger);
  } catch (e) {
    key.fill(0);
    db.close();
    throw storeFailure(e, 'be opened');
  }
}

class SqliteEdgeHubStore implements EdgeHubStore {
  readonly storeId: string;
  readonly #db: StateDatabase;
  readonly #key: Buffer;
  readonly #clock: Clock;
  readonly #log: EdgeHubStoreLogger;
  readonly #stmt;
  /** Rows already reported as refused (kind/name@version), so a refused row is logged once per process. */
  readonly #refusedLogged = new Set<string>();
  #closed = false;

  constructor(db: StateDatabase, key: Buffer, clock: Clock, logger: EdgeHubStoreLogger) {
    this.#db = db;
    this.#key = key;
    this.#clock = clock;
    this.#log = logger;
    this.#stmt = {
      getMeta: db.prepare('SELECT value FROM meta WHERE key = ?'),
      setMeta: db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
      getRow: db.prepare('SELECT kind, name, version, deleted, iv, tag, body, updated_at FROM resources WHERE kind = ? AND name = ?'),
      putRow: db.prepare(
        `INSERT INTO resources (kind, name, version, deleted, iv, tag, body, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (kind, name) DO UPDATE SET version = excluded.version, deleted = excluded.deleted, iv = excluded.iv,
           tag = excluded.tag, body = excluded.body, updated_at = excluded.updated_at`,
      ),
      listAll: db.prepare('SELECT kind, name, version, deleted, iv, tag, body, updated_at FROM resources WHERE deleted = 0 ORDER BY kind, name'),
      listKind: db.prepare('SELECT kind, name, version, deleted, iv, tag, body, updated_at FROM resources WHERE deleted = 0 AND kind = ? ORDER BY name'),
      countLive: db.prepare('SELECT COUNT(*) AS n FROM resources WHERE deleted = 0'),
      countTombstones: db.prepare('SELECT COUNT(*) AS n FROM resources WHERE deleted = 1'),
      pruneAged: db.prepare('DELETE FROM resources WHERE deleted = 1 AND version <= ? AND updated_at <= ?'),
      pruneOldest: db.prepare(
        'DELETE FROM resources WHERE rowid IN (SELECT rowid FROM resources WHERE deleted = 1 AND version <= ? ORDER BY version LIMIT ?)',
      ),
      outboxRange: db.prepare('SELECT MIN(seq) AS lo, MAX(seq) AS hi FROM outbox'),
      outboxCount: db.prepare('SELECT COUNT(*) AS n FROM outbox'),
      outboxHighSeq: db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'"),
      dropTombstones: db.prepare('DELETE FROM resources WHERE deleted = 1'),
      outboxInsert: db.prepare('INSERT INTO outbox (kind, name, phase, message, observed_version, at, detail) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      outboxPending: db.prepare('SELECT seq, kind, name, phase, message, observed_version, at, detail FROM outbox ORDER BY seq LIMIT ?'),
      outboxDropObject: db.prepare('DELETE FROM outbox WHERE kind = ? AND name = ?'),
      outboxAck: db.prepare('DELETE FROM outbox WHERE seq <= ?'),
    };
    const row = this.#stmt.getMeta.get('store_id') as { value: string } | undefined;
    if (row === undefined) fail('edge-store/corrupt', 'the edge hub store has no store id');
    this.storeId = row.value;
  }

  #checkOpen(): void {
    if (this.#closed) fail('edge-store/io', 'the edge hub store is closed');
  }

  /** Run `fn` mapping SQLite failures onto typed errors. */
  #guard<T>(what: string, fn: () => T): T {
    this.#checkOpen();
    try {
      return fn();
    } catch (e) {
      throw storeFailure(e, what);
    }
  }

  #refuse(kind: string, name: string, version: unknown, why: string): void {
    const id = `${kind}/${name}@${String(version)}`;
    if (this.#refusedLogged.has(id)) return;
    if (this.#refusedLogged.size >= MAX_REFUSED_REMEMBERED) this.#refusedLogged.clear();
    this.#refusedLogged.add(id);
    // What this row held is lost here, yet the cloud's acks say the node has it: ask for everything again.
    this.#markResync();
    this.#log.warn(
      { event: 'security.edge_store_row_refused', code: 'edge-store/corrupt', kind: kind.slice(0, 32), name: name.slice(0, 253), version: typeof version === 'number' ? version : -1, reason: why },
      'an edge store row does not authenticate; refused',
    );
  }

  /**
   * Authenticate a row: the live resource it holds, `'tombstone'` for an authentic tombstone, or undefined
   * (logged) when it does not authenticate.
   */
  #openRow(row: ResourceRow): LocalResource | 'tombstone' | undefined {
    const { kind, name, version, deleted } = row;
    if (!isKind(kind) || !isResourceName(name, kind) || !isVersion(version) || (deleted !== 0 && deleted !== 1) || !Number.isSafeInteger(row.updated_at)) {
      this.#refuse(String(kind), String(name), version, 'malformed columns');
      return undefined;
    }
    const plain = unseal(this.#key, aad(this.storeId, kind, name, version, deleted === 1), row.iv, row.tag, row.body);
    if (plain === undefined) {
      this.#refuse(kind, name, version, 'authentication failed');
      return undefined;
    }
    try {
      if (deleted === 1) {
        if (plain.length !== 0) {
          this.#refuse(kind, name, version, 'tombstone with a body');
          return undefined;
        }
        return 'tombstone';
      }
      let data: unknown;
      try {
        data = JSON.parse(plain.toString('utf8'));
      } catch {
        data = undefined;
      }
      if (!isObject(data)) {
        this.#refuse(kind, name, version, 'body is not a JSON object');
        return undefined;
      }
      return { kind, name, version, data, updatedAt: row.updated_at };
    } finally {
      plain.fill(0);
    }
  }

  apply(items: readonly HubItem[], options: ApplyOptions = {}): ApplyResult {
    if (!Array.isArray(items)) fail('edge-store/invalid', 'apply takes an array of items');
    if (items.length > MAX_APPLY_ITEMS) fail('edge-store/invalid', `at most ${MAX_APPLY_ITEMS} items per apply`);
    const result: ApplyResult = { acks: [], changed: [], superseded: [], refused: [], reported: 0 };
    if (items.length === 0) return result;
    let outboxFull = 0;
    this.#guard('apply the items', () =>
      this.#db
        .transaction(() => {
          const now = this.#clock.now();
          let liveDelta = 0;
          for (let i = 0; i < items.length; i++) {
            const it = checkItem(items[i], i);
            const ack: AckItem = it.deleted ? { kind: it.kind, name: it.name, version: it.version, deleted: true } : { kind: it.kind, name: it.name, version: it.version };
            result.acks.push(ack);
            const row = this.#stmt.getRow.get(it.kind, it.name) as ResourceRow | undefined;
            let stored: LocalResource | 'tombstone' | undefined;
            if (row !== undefined) {
              stored = this.#openRow(row);
              if (stored === undefined) result.refused.push({ kind: it.kind, name: it.name });
              else if (!(typeof options.force === 'function' ? options.force(it.kind, it.name) : options.force === true) && it.version <= (stored === 'tombstone' ? row.version : stored.version)) {
                result.superseded.push(ack);
                continue;
              }
            }
            const wasLive = row !== undefined && row.deleted === 0;
            if (it.deleted) {
              const p = seal(this.#key, aad(this.storeId, it.kind, it.name, it.version, true), Buffer.alloc(0));
              this.#stmt.putRow.run(it.kind, it.name, it.version, 1, p.iv, p.tag, p.body, now);
              if (wasLive) liveDelta--;
              result.changed.push({ op: 'delete', kind: it.kind, name: it.name, version: it.version, existed: stored !== undefined && stored !== 'tombstone' });
            } else {
              const data = it.data as Record<string, unknown>;
              const plain = Buffer.from(JSON.stringify(data), 'utf8');
              let p;
              try {
                p = seal(this.#key, aad(this.storeId, it.kind, it.name, it.version, false), plain);
              } finally {
                plain.fill(0);
              }
              this.#stmt.putRow.run(it.kind, it.name, it.version, 0, p.iv, p.tag, p.body, now);
              if (!wasLive) liveDelta++;
              result.changed.push({ op: 'put', resource: { kind: it.kind, name: it.name, version: it.version, data: structuredClone(data), updatedAt: now } });
              if (options.reportStored === true) {
                if (this.#outboxHasRoom()) {
                  this.#stmt.outboxInsert.run(it.kind, it.name, 'Stored', null, it.version, now, null);
                  result.reported++;
                } else outboxFull++;
              }
            }
          }
          if (liveDelta > 0) {
            const live = (this.#stmt.countLive.get() as { n: number }).n;
            if (live > MAX_EDGE_RESOURCES) fail('edge-store/invalid', `the edge hub store holds at most ${MAX_EDGE_RESOURCES} resources`);
          }
          this.#capTombstones();
        })
        .immediate(),
    );
    if (outboxFull > 0) this.#log.warn({ event: 'edge.hub_outbox_full', dropped: outboxFull, max: MAX_OUTBOX_ROWS }, 'the status outbox is full; Stored entries were not recorded');
    for (const r of result.refused) this.#log.warn({ event: 'edge.hub_store_row_replaced', kind: r.kind, name: r.name }, 'a refused edge store row was replaced by the cloud');
    return result;
  }

  /** Over MAX_EDGE_TOMBSTONES: drop the oldest tombstones the cloud has confirmed as synced past. */
  #capTombstones(): void {
    const n = (this.#stmt.countTombstones.get() as { n: number }).n;
    if (n <= MAX_EDGE_TOMBSTONES) return;
    this.#stmt.pruneOldest.run(this.#syncedVersion(), n - MAX_EDGE_TOMBSTONES);
  }

  get(kind: ResourceKind, name: string): LocalResource | undefined {
    if (!isKind(kind) || !isResourceName(name, kind)) return undefined;
    const row = this.#guard('read a resource', () => this.#stmt.getRow.get(kind, name) as ResourceRow | undefined);
    if (row === undefined || row.deleted !== 0) return undefined;
    const r = this.#openRow(row);
    return r === 'tombstone' ? undefined : r;
  }

  list(kind?: ResourceKind): LocalResource[] {
    if (kind !== undefined && !isKind(kind)) fail('edge-store/invalid', 'unknown resource kind');
    const rows = this.#guard('list resources', () => (kind === undefined ? this.#stmt.listAll.all() : this.#stmt.listKind.all(kind)) as ResourceRow[]);
    const out: LocalResource[] = [];
    for (const row of rows) {
      const r = this.#openRow(row);
      if (r !== undefined && r !== 'tombstone') out.push(r);
    }
    return out;
  }

  /** The outbox has room for one more row (cheap when seq range is small; exact count otherwise). */
  #outboxHasRoom(): boolean {
    const r = this.#stmt.outboxRange.get() as { lo: number | null; hi: number | null };
    if (r.lo === null || r.hi === null) return true;
    // seqs are unique, so the row count is at most the width of the range
    if (r.hi - r.lo + 1 < MAX_OUTBOX_ROWS) return true;
    return (this.#stmt.outboxCount.get() as { n: number }).n < MAX_OUTBOX_ROWS;
  }

  appendStatus(e: Omit<StatusEntry, 'seq'>, options?: AppendStatusOptions): number {
    const entry = checkStatus(e);
    const detail = entry.detail === undefined ? null : JSON.stringify(entry.detail);
    const seq = this.#guard('append a status entry', () =>
      this.#db
        .transaction((): number | undefined => {
          if (options?.replace === true) this.#stmt.outboxDropObject.run(entry.kind, entry.name);
          if (!this.#outboxHasRoom()) return undefined;
          const info = this.#stmt.outboxInsert.run(entry.kind, entry.name, entry.phase, entry.message ?? null, entry.observedVersion ?? null, entry.at, detail);
          return Number(info.lastInsertRowid);
        })
        .immediate(),
    );
    if (seq === undefined) {
      this.#log.warn({ event: 'edge.hub_outbox_full', kind: entry.kind, name: entry.name, max: MAX_OUTBOX_ROWS }, 'the status outbox is full; entry refused');
      fail('edge-store/outbox-full', `the status outbox holds ${MAX_OUTBOX_ROWS} unacknowledged entries`);
    }
    return seq;
  }

  pendingStatus(limit: number): StatusEntry[] {
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_PENDING_STATUS) fail('edge-store/invalid', `limit must be 1..${MAX_PENDING_STATUS}`);
    const rows = this.#guard('read the outbox', () => this.#stmt.outboxPending.all(limit) as OutboxRow[]);
    return rows.map((r) => {
      const e: { -readonly [K in keyof StatusEntry]: StatusEntry[K] } = { seq: r.seq, kind: r.kind as StatusEntry['kind'], name: r.name, phase: r.phase, at: r.at };
      if (r.message !== null) e.message = r.message;
      if (r.observed_version !== null) e.observedVersion = r.observed_version;
      if (r.detail !== null) {
        try {
          const d = JSON.parse(r.detail) as unknown;
          if (statusDetailProblem(d) === undefined) e.detail = d as Record<string, unknown>;
        } catch {
          // a detail that does not parse is left out: the entry itself still goes
        }
      }
      return e;
    });
  }

  ackStatus(seq: number): number {
    if (!Number.isSafeInteger(seq) || seq < 0) fail('edge-store/invalid', 'seq must be a non-negative integer');
    return this.#guard('acknowledge status entries', () => this.#stmt.outboxAck.run(seq).changes);
  }

  outboxSize(): number {
    return this.#guard('count the outbox', () => (this.#stmt.outboxCount.get() as { n: number }).n);
  }

  #syncedVersion(): number {
    const row = this.#stmt.getMeta.get('synced_version') as { value: string } | undefined;
    const v = row === undefined ? 0 : Number(row.value);
    return Number.isSafeInteger(v) && v >= 0 ? v : 0;
  }

  syncedVersion(): number {
    return this.#guard('read the synced version', () => this.#syncedVersion());
  }

  setSyncedVersion(v: number): void {
    if (!Number.isSafeInteger(v) || v < 0) fail('edge-store/invalid', 'the synced version must be a non-negative integer');
    this.#guard('record the synced version', () =>
      this.#db
        .transaction(() => {
          this.#stmt.setMeta.run('synced_version', String(v));
          // A tombstone at or below a completed catch-up, written long enough ago that no frame sent before
          // the delete can still be in flight, can no longer be overtaken by an older put.
          this.#stmt.pruneAged.run(v, this.#clock.now() - TOMBSTONE_MIN_AGE_MS);
        })
        .immediate(),
    );
  }

  /** The highest outbox seq ever allocated (AUTOINCREMENT never reuses one; 0: none yet). */
  outboxHighSeq(): number {
    return this.#guard('read the outbox sequence', () => {
      const v = this.#stmt.outboxHighSeq.get() as { seq: number } | undefined;
      return v !== undefined && Number.isSafeInteger(v.seq) && v.seq > 0 ? v.seq : 0;
    });
  }

  /** The store lost something the cloud believes it has (a refused row): the next session asks for a resync. */
  needsResync(): boolean {
    return this.#guard('read the resync flag', () => (this.#stmt.getMeta.get('resync') as { value: string } | undefined)?.value === '1');
  }

  #markResync(): void {
    try {
      this.#stmt.setMeta.run('resync', '1');
    } catch {
      // best effort (e.g. inside a read-only moment); the refusal itself was logged
    }
  }

  /**
   * Start of a resync catch-up: drop every tombstone (their versions may belong to another cloud's counter
   * and would hide what it sends now) and keep the resync flag set until `endResync` (a crash in between
   * asks for a resync again). Live rows stay (and keep being served) until the catch-up overwrites them or,
   * at `synced`, removes the ones it did not name.
   */
  beginResync(): void {
    this.#guard('begin a resync', () =>
      this.#db
        .transaction(() => {
          this.#stmt.dropTombstones.run();
          this.#stmt.setMeta.run('resync', '1');
        })
        .immediate(),
    );
  }

  /** The resync catch-up completed (`synced`): the flag is cleared. */
  endResync(): void {
    this.#guard('end a resync', () => this.#stmt.setMeta.run('resync', '0'));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#key.fill(0);
    if (this.#db.open) this.#db.close();
  }
}
