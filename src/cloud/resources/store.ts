/**
 * The cloud's resource store (issue #5): workloads, config maps, secrets, devices and device models, with
 * one global resource version, and per node what it acknowledged and reported. One SQLite file
 * (`DIR/resources.db`, 0600, WAL, symlinks refused) opened through the StateFiles port; a Kubernetes-backed
 * store can implement the same `ResourceStore` port later.
 *
 * Versions. Every write of a resource (create, change, delete) takes the next value of one global counter
 * kept in `meta` (never reused: it survives deletes, tombstone pruning and restarts). Applying identical
 * content (same data, same targets) changes nothing and keeps the version.
 *
 * Sync state. `acks` holds, per (node, resource), the version the node acknowledged after storing it (the
 * edge acks only after its own commit). `pendingFor(node)` is what the node lacks, coalesced to the current
 * state: live targeted resources it has not acknowledged at their version (one `put` each, whatever the
 * number of intermediate updates), and a `delete` for every acknowledged resource that is deleted or no
 * longer targets it. Two indexed queries: `resource_targets(node, kind, name)` (`'*'` rows for "every
 * node") joined to `resources` and `acks`, and the node's `acks` joined back. A delete's ack removes the
 * ack row; a deleted resource stays as a tombstone (no data) while any node has an ack row for it.
 *
 * An ack naming a resource the store no longer has (its tombstone was pruned while the ack was in flight)
 * is kept, up to a bound per node, so that the node is told to delete it; one naming a version newer than
 * the resource's (or than the global counter) is ignored.
 *
 * Durability. Resource writes, store bindings and status are committed with `synchronous = FULL` (a
 * version must never be reused after a power loss, and status acknowledged to an edge must not be lost);
 * acks with `NORMAL` (WAL: durable against a crash of the process; a power loss can only lose acks, and a
 * lost ack costs one idempotent resend). Fan-out calls `recordAcks` thousands of times per second.
 */
import { isNodeName } from '../../attestation/index.js';
import type { Clock, StateFiles } from '../../identity/index.js';
import {
  ALL_NODES,
  HUB_STATUS_PHASE_PATTERN,
  HUB_STORE_ID_PATTERN,
  MAX_HUB_ACK_ITEMS,
  MAX_HUB_STATUS_ENTRIES,
  MAX_HUB_STATUS_MESSAGE,
  MAX_RESOURCE_NODES,
  isResourceKind,
  isResourceNameOf,
  statusDetailProblem,
  validateResourceData,
  ResourceError,
  type ResourceDocument,
  type ResourceKind,
  type StatusEntry,
} from '../../protocol/index.js';
import { ResourceStoreError } from './errors.js';

/** Most documents in one `apply`. */
export const MAX_APPLY_DOCUMENTS = 1000;
/** Most live (not deleted) resources in the store. */
export const MAX_LIVE_RESOURCES = 10_000;
/** Most ack rows a node may hold for resources the store does not have (pruned tombstones). */
const MAX_ORPHAN_ACKS_PER_NODE = 2 * MAX_LIVE_RESOURCES;

export interface StoredResource {
  readonly kind: ResourceKind;
  readonly name: string;
  /** The global version at which this state was written. */
  readonly version: number;
  /** Target nodes, sorted; `['*']` for every node. */
  readonly nodes: string[];
  /** The wire form (`{data}` or `{spec}`); `{}` for a deleted resource. */
  readonly data: Record<string, unknown>;
  readonly deleted: boolean;
  readonly createdAt: number;
  readonly updatedAt: number;
}

export interface ApplyOutcome {
  readonly kind: ResourceKind;
  readonly name: string;
  readonly version: number;
  readonly action: 'created' | 'configured' | 'unchanged';
}

export interface ResourceChange {
  readonly version: number;
  /** The resource as it now is (`deleted: true` for a delete; a tombstone keeps its last targets). */
  readonly resource: StoredResource;
  /** The targets before this change (absent for a creation): nodes no longer targeted must delete it. */
  readonly previousNodes?: string[];
}

export type SyncItem =
  | { readonly op: 'put'; readonly resource: StoredResource }
  | { readonly op: 'delete'; readonly kind: ResourceKind; readonly name: string; readonly version: number };

export interface NodeAck {
  readonly node: string;
  readonly version: number;
  readonly ackedAt: number;
}

export interface NodeStatusRecord {
  readonly node: string;
  readonly kind: ResourceKind | 'Node';
  readonly name: string;
  readonly phase: string;
  readonly message?: string;
  readonly observedVersion?: number;
  readonly at: number;
  readonly seq: number;
  readonly receivedAt: number;
  /** The entry's detail (e.g. a Device's reported twins). */
  readonly detail?: Readonly<Record<string, unknown>>;
}

export interface AckItemInput {
  readonly kind: ResourceKind;
  readonly name: string;
  readonly version: number;
  readonly deleted?: boolean;
  /**
   * From the edge's inventory: the version it holds NOW, recorded even if lower than the recorded ack (the
   * edge lost the newer one); `recordAckBatch` returns such items so that the hub can send them again.
   */
  readonly held?: boolean;
}

export interface ResourceStore {
  /** One IMMEDIATE transaction for all documents; identical content is 'unchanged' (no version bump). */
  apply(docs: readonly ResourceDocument[]): ApplyOutcome[];
  /** Tombstone with a new version; undefined when there is no such live resource. */
  delete(kind: ResourceKind, name: string): { version: number } | undefined;
  /** A live resource. */
  get(kind: ResourceKind, name: string): StoredResource | undefined;
  /** Live resources, sorted by kind, then name. */
  list(kind?: ResourceKind): StoredResource[];
  /** The global version: monotonic, never reused (0 for a new store). */
  currentVersion(): number;
  /**
   * The live resource's version and whether it targets `node`, without reading its data (the ack path:
   * cheap whatever the resource's size). Undefined when there is no live resource of that name.
   */
  headFor(kind: ResourceKind, name: string, node: string): { version: number; targeted: boolean } | undefined;
  /** The resource targets `node` (its nodes include it, or '*'). */
  targets(resource: StoredResource, node: string): boolean;
  /** What `node` lacks (coalesced, in version order): see the file comment. */
  pendingFor(node: string): SyncItem[];
  /** Idempotent: an older ack than recorded is ignored; a delete ack removes the ack row. */
  recordAcks(node: string, items: readonly AckItemInput[], now: number): void;
  /** `recordAcks` for many nodes in ONE transaction (a fan-out's acks from thousands of nodes in one write). */
  recordAckBatch(batch: ReadonlyArray<{ node: string; items: readonly AckItemInput[] }>, now: number): Array<{ node: string; kind: ResourceKind; name: string }>;
  /**
   * Records the edge store's identity at the start of a session. The node's acks, status and status seq are
   * dropped (`reset`: the edge is sent everything again) when there is no binding yet, the store is another
   * one, the edge asks for it (`resync`: its store lost data), or the store's highest outbox seq is below
   * the seq already recorded (`outboxSeq`: seqs never go down in a store, so it was rolled back, e.g.
   * restored from a backup).
   */
  bindStore(node: string, storeId: string, now: number, session?: { outboxSeq?: number; resync?: boolean }): { reset: boolean };
  /** Applies the entries with seq > the node's last seq (one transaction); returns the last seq stored. */
  recordStatus(node: string, entries: readonly StatusEntry[], now: number): number;
  /** Acks of a resource, by node. */
  acksOf(kind: ResourceKind, name: string): NodeAck[];
  /** Latest status per node of a resource, by node. */
  statusOf(kind: ResourceKind, name: string): NodeStatusRecord[];
  /** Latest status per object reported by a node. */
  nodeStatus(node: string): NodeStatusRecord[];
  /** On evict: the node's acks, status and store binding. */
  forgetNode(node: string): void;
  /** Called after each commit, once per changed resource. Returns the unsubscribe function. */
  onChange(listener: (c: ResourceChange) => void): () => void;
  close(): void;
}

/** Counts for views (beyond the port: what `resource.get` needs without reading every ack row). */
export interface ResourceStoreViews {
  /** The first `limit` acks by node, and how many there are in all and at `version`. */
  ackSummary(kind: ResourceKind, name: string, version: number, limit: number): { acks: NodeAck[]; total: number; current: number };
  /** The first `limit` status records by node, and how many there are. */
  statusSummary(kind: ResourceKind, name: string, limit: number): { status: NodeStatusRecord[]; total: number };
}

export interface ResourceStoreDeps {
  files: StateFiles;
  clock: Clock;
  /** Receives exceptions thrown by `onChange` listeners (default: ignored; they never break a write). */
  onListenerError?(error: unknown): void;
  /** SQLite busy timeout for a file shared with another process (default 5000 ms). */
  busyTimeoutMs?: number;
}

/** Schema migrations; index i migrates from version i to i+1. Never edit a released step: append. */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE meta (
    key   TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
  ) STRICT;
  INSERT INTO meta (key, value) VALUES ('version', 0);
  CREATE TABLE resources (
    id         INTEGER PRIMARY KEY,
    kind       TEXT    NOT NULL CHECK (kind IN ('Workload', 'ConfigMap', 'Secret', 'Device', 'DeviceModel')),
    name       TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 253),
    version    INTEGER NOT NULL CHECK (version >= 1),
    deleted    INTEGER NOT NULL CHECK (deleted IN (0, 1)),
    nodes      TEXT    NOT NULL,
    data       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (kind, name)
  ) STRICT;
  CREATE INDEX resources_live ON resources (deleted, kind, name);
  CREATE TABLE resource_targets (
    node TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (node, kind, name)
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX resource_targets_object ON resource_targets (kind, name);
  CREATE TABLE acks (
    node     TEXT    NOT NULL,
    kind     TEXT    NOT NULL,
    name     TEXT    NOT NULL,
    version  INTEGER NOT NULL CHECK (version >= 1),
    acked_at INTEGER NOT NULL,
    PRIMARY KEY (node, kind, name)
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX acks_object ON acks (kind, name);
  CREATE TABLE node_stores (
    node       TEXT    PRIMARY KEY,
    store_id   TEXT,
    last_seq   INTEGER NOT NULL CHECK (last_seq >= 0),
    updated_at INTEGER NOT NULL
  ) STRICT;
  CREATE TABLE statuses (
    node             TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    name             TEXT    NOT NULL,
    phase            TEXT    NOT NULL,
    message          TEXT,
    observed_version INTEGER,
    at               INTEGER NOT NULL,
    seq              INTEGER NOT NULL,
    received_at      INTEGER NOT NULL,
    PRIMARY KEY (node, kind, name)
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX statuses_object ON statuses (kind, name);
  `,
  // issue #6: a status entry's detail (JSON text; e.g. a Device's reported twins).
  `ALTER TABLE statuses ADD COLUMN detail TEXT;`,
];
export const RESOURCE_STORE_SCHEMA_VERSION = MIGRATIONS.length;

interface ResourceRow {
  kind: string;
  name: string;
  version: number;
  deleted: number;
  nodes: string;
  data: string;
  created_at: number;
  updated_at: number;
}

interface StatusRow {
  node: string;
  kind: string;
  name: string;
  phase: string;
  message: string | null;
  observed_version: number | null;
  at: number;
  seq: number;
  received_at: number;
  detail: string | null;
}

const STORE_FAILURE_CODES = { io: 'resource-store/io', version: 'resource-store/version', corrupt: 'resource-store/corrupt' } as const;

const isPlainObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const isVersion = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 1;
const isTime = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

/** JSON with object keys sorted at every level: equal content gives equal text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (!isPlainObject(v)) return v;
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) Object.defineProperty(out, k, { value: v[k], enumerable: true, writable: true, configurable: true });
    return out;
  });
}

function invalid(message: string, cause?: unknown): ResourceStoreError {
  return new ResourceStoreError('resource/invalid', message, cause === undefined ? undefined : { cause });
}

function showName(s: unknown): string {
  return typeof s === 'string' ? JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}...` : s) : typeof s;
}

function checkKind(kind: unknown): ResourceKind {
  if (!isResourceKind(kind)) throw invalid(`unknown resource kind ${showName(kind)}`);
  return kind;
}

function checkName(name: unknown, kind: ResourceKind): string {
  if (!isResourceNameOf(kind, name)) throw invalid(`invalid ${kind} name ${showName(name)}`);
  return name;
}

function checkNode(node: unknown): string {
  if (!isNodeName(node)) throw invalid(`invalid node name ${showName(node)}`);
  return node as string;
}

function checkNow(now: unknown): number {
  if (!isTime(now)) throw invalid('now must be a non-negative integer (epoch ms)');
  return now;
}

/** Re-validate a document (a caller may hand the store anything typed as a ResourceDocument). */
function checkDocument(d: unknown, i: number): { kind: ResourceKind; name: string; nodes: string[]; data: Record<string, unknown> } {
  if (!isPlainObject(d)) throw invalid(`document ${i + 1}: not a resource document`);
  const kind = checkKind(d['kind']);
  const name = checkName(d['name'], kind);
  const nodes = d['nodes'];
  if (!Array.isArray(nodes) || nodes.length === 0 || nodes.length > MAX_RESOURCE_NODES) {
    throw invalid(`${kind} ${name}: nodes must be 1-${MAX_RESOURCE_NODES} node names or ["*"]`);
  }
  const set = new Set<string>();
  for (const n of nodes) {
    if (n === ALL_NODES) {
      if (nodes.length !== 1) throw invalid(`${kind} ${name}: "*" must be the only target`);
    } else checkNode(n);
    set.add(n as string);
  }
  if (set.size !== nodes.length) throw invalid(`${kind} ${name}: a node is listed twice`);
  const data = d['data'];
  try {
    validateResourceData(kind, data);
  } catch (e) {
    if (e instanceof ResourceError) throw invalid(`${kind} ${name}: ${e.message}`, e);
    throw e;
  }
  return { kind, name, nodes: [...set].sort(), data: data as Record<string, unknown> };
}

export function createResourceStore(path: string, deps: ResourceStoreDeps): ResourceStore & ResourceStoreViews {
  const db = deps.files.openDatabase(path, {
    label: 'resource store',
    migrations: MIGRATIONS,
    ...(deps.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: deps.busyTimeoutMs }),
    synchronous: 'FULL',
    error: (failure, message, o) => new ResourceStoreError(STORE_FAILURE_CODES[failure], message, o),
  });

  const stmt = {
    syncFull: db.prepare('PRAGMA synchronous = FULL'),
    syncNormal: db.prepare('PRAGMA synchronous = NORMAL'),
    versionGet: db.prepare("SELECT value FROM meta WHERE key = 'version'").pluck(),
    versionNext: db.prepare("UPDATE meta SET value = value + 1 WHERE key = 'version' RETURNING value").pluck(),
    resGet: db.prepare('SELECT kind, name, version, deleted, nodes, data, created_at, updated_at FROM resources WHERE kind = ? AND name = ?'),
    resHead: db.prepare('SELECT version, deleted FROM resources WHERE kind = ? AND name = ?'),
    resLiveAll: db.prepare('SELECT kind, name, version, deleted, nodes, data, created_at, updated_at FROM resources WHERE deleted = 0 ORDER BY kind, name'),
    resLiveKind: db.prepare('SELECT kind, name, version, deleted, nodes, data, created_at, updated_at FROM resources WHERE deleted = 0 AND kind = ? ORDER BY name'),
    resLiveCount: db.prepare('SELECT count(*) FROM resources WHERE deleted = 0').pluck(),
    resUpsert: db.prepare(`INSERT INTO resources (kind, name, version, deleted, nodes, data, created_at, updated_at)
      VALUES (@kind, @name, @version, 0, @nodes, @data, @now, @now)
      ON CONFLICT (kind, name) DO UPDATE SET version = excluded.version, deleted = 0, nodes = excluded.nodes, data = excluded.data,
        created_at = CASE WHEN resources.deleted = 1 THEN excluded.created_at ELSE resources.created_at END, updated_at = excluded.updated_at`),
    resTombstone: db.prepare("UPDATE resources SET version = ?, deleted = 1, data = '{}', updated_at = ? WHERE kind = ? AND name = ?"),
    // A tombstone nobody acknowledged is of no use: drop it (and the status reported for it).
    pruneOne: db.prepare(`DELETE FROM resources WHERE kind = ? AND name = ? AND deleted = 1
      AND NOT EXISTS (SELECT 1 FROM acks a WHERE a.kind = resources.kind AND a.name = resources.name)`),
    pruneAll: db.prepare(`DELETE FROM resources WHERE deleted = 1
      AND NOT EXISTS (SELECT 1 FROM acks a WHERE a.kind = resources.kind AND a.name = resources.name) RETURNING kind, name`),
    statusDropObject: db.prepare('DELETE FROM statuses WHERE kind = ? AND name = ?'),
    targetsDrop: db.prepare('DELETE FROM resource_targets WHERE kind = ? AND name = ?'),
    targetsAdd: db.prepare('INSERT INTO resource_targets (node, kind, name) VALUES (?, ?, ?)'),
    targetedLive: db.prepare(`SELECT 1 FROM resources r WHERE r.kind = @kind AND r.name = @name AND r.deleted = 0
      AND EXISTS (SELECT 1 FROM resource_targets t WHERE t.node IN (@node, '*') AND t.kind = r.kind AND t.name = r.name)`),
    // Driven by the node's target rows (CROSS JOIN fixes the join order): the cost follows what targets the
    // node, not the number of resources in the store.
    pendingPuts: db.prepare(`SELECT r.kind, r.name, r.version, r.deleted, r.nodes, r.data, r.created_at, r.updated_at
      FROM resource_targets t
      CROSS JOIN resources r ON r.kind = t.kind AND r.name = t.name
      LEFT JOIN acks a ON a.node = @node AND a.kind = r.kind AND a.name = r.name
      WHERE t.node IN (@node, '*') AND r.deleted = 0 AND (a.version IS NULL OR a.version < r.version)`),
    pendingDeletes: db.prepare(`SELECT a.kind, a.name, r.version AS version
      FROM acks a
      LEFT JOIN resources r ON r.kind = a.kind AND r.name = a.name
      WHERE a.node = @node AND (r.id IS NULL OR r.deleted = 1 OR NOT EXISTS (
        SELECT 1 FROM resource_targets t WHERE t.node IN (@node, '*') AND t.kind = a.kind AND t.name = a.name))`),
    ackUpsert: db.prepare(`INSERT INTO acks (node, kind, name, version, acked_at) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (node, kind, name) DO UPDATE SET version = excluded.version, acked_at = excluded.acked_at
      WHERE excluded.version > acks.version`),
    ackDeleteUpTo: db.prepare('DELETE FROM acks WHERE node = ? AND kind = ? AND name = ? AND version <= ?'),
    ackLower: db.prepare('UPDATE acks SET version = ?, acked_at = ? WHERE node = ? AND kind = ? AND name = ? AND version > ?'),
    ackCountNode: db.prepare('SELECT count(*) FROM acks WHERE node = ?').pluck(),
    acksOf: db.prepare('SELECT node, version, acked_at FROM acks WHERE kind = ? AND name = ? ORDER BY node'),
    acksOfLimit: db.prepare('SELECT node, version, acked_at FROM acks WHERE kind = ? AND name = ? ORDER BY node LIMIT ?'),
    ackCounts: db.prepare('SELECT count(*) AS total, coalesce(sum(version = ?), 0) AS current FROM acks WHERE kind = ? AND name = ?'),
    acksDropNode: db.prepare('DELETE FROM acks WHERE node = ?'),
    bindingGet: db.prepare('SELECT store_id, last_seq FROM node_stores WHERE node = ?'),
    bindingPut: db.prepare(`INSERT INTO node_stores (node, store_id, last_seq, updated_at) VALUES (?, ?, 0, ?)
      ON CONFLICT (node) DO UPDATE SET store_id = excluded.store_id, last_seq = 0, updated_at = excluded.updated_at`),
    seqPut: db.prepare(`INSERT INTO node_stores (node, store_id, last_seq, updated_at) VALUES (?, NULL, ?, ?)
      ON CONFLICT (node) DO UPDATE SET last_seq = excluded.last_seq, updated_at = excluded.updated_at`),
    bindingDrop: db.prepare('DELETE FROM node_stores WHERE node = ?'),
    statusPut: db.prepare(`INSERT INTO statuses (node, kind, name, phase, message, observed_version, at, seq, received_at, detail)
      VALUES (@node, @kind, @name, @phase, @message, @observed_version, @at, @seq, @received_at, @detail)
      ON CONFLICT (node, kind, name) DO UPDATE SET phase = excluded.phase, message = excluded.message,
        observed_version = excluded.observed_version, at = excluded.at, seq = excluded.seq, received_at = excluded.received_at,
        detail = excluded.detail`),
    statusOf: db.prepare('SELECT * FROM statuses WHERE kind = ? AND name = ? ORDER BY node'),
    statusOfLimit: db.prepare('SELECT * FROM statuses WHERE kind = ? AND name = ? ORDER BY node LIMIT ?'),
    statusCount: db.prepare('SELECT count(*) FROM statuses WHERE kind = ? AND name = ?').pluck(),
    statusOfNode: db.prepare('SELECT * FROM statuses WHERE node = ? ORDER BY kind, name'),
    statusDropNode: db.prepare('DELETE FROM statuses WHERE node = ?'),
  };

  let closed = false;
  const listeners = new Set<(c: ResourceChange) => void>();

  const corrupt = (what: string, cause?: unknown): ResourceStoreError =>
    new ResourceStoreError('resource-store/corrupt', `resource store ${path}: ${what}`, cause === undefined ? undefined : { cause });
  const ioError = (what: string, cause: unknown): ResourceStoreError => {
    const code = typeof cause === 'object' && cause !== null ? (cause as { code?: unknown }).code : undefined;
    return new ResourceStoreError('resource-store/io', `cannot ${what} resource store ${path}${typeof code === 'string' ? ` (${code})` : ''}`, {
      cause,
      ...(typeof code === 'string' ? { detail: { code } } : {}),
    });
  };
  const live = (): void => {
    if (closed) throw new ResourceStoreError('resource-store/io', `resource store ${path} is closed`);
  };

  const immediate = db.transaction((fn: () => unknown): unknown => fn()).immediate;
  /** One IMMEDIATE transaction; `durable` false commits with synchronous = NORMAL (acks only). */
  const write = <T>(fn: () => T, durable = true): T => {
    live();
    try {
      if (!durable) stmt.syncNormal.run();
      try {
        return immediate(fn) as T;
      } finally {
        if (!durable) stmt.syncFull.run();
      }
    } catch (e) {
      if (e instanceof ResourceStoreError) throw e;
      throw ioError('write', e);
    }
  };
  type CheckedAck = { kind: ResourceKind; name: string; version: number; deleted: boolean; held: boolean };
  /** Validate one node's acks (at most MAX_HUB_ACK_ITEMS). */
  const checkAcks = (items: unknown): CheckedAck[] => {
    if (!Array.isArray(items)) throw invalid('acks must be a list');
    if (items.length > MAX_HUB_ACK_ITEMS) throw new ResourceStoreError('resource-store/too-many', `at most ${MAX_HUB_ACK_ITEMS} acks per call`);
    return items.map((it: unknown) => {
      if (!isPlainObject(it)) throw invalid('an ack must be an object');
      const kind = checkKind(it['kind']);
      const name = checkName(it['name'], kind);
      if (!isVersion(it['version'])) throw invalid('an ack version must be an integer >= 1');
      const del = it['deleted'];
      if (del !== undefined && typeof del !== 'boolean') throw invalid('ack.deleted must be a boolean');
      const held = it['held'];
      if (held !== undefined && typeof held !== 'boolean') throw invalid('ack.held must be a boolean');
      return { kind, name, version: it['version'], deleted: del === true, held: held === true };
    });
  };
  /** Record one node's checked acks; runs inside a write transaction. */
  const applyAcks = (node: string, checked: readonly CheckedAck[], now: number, lowered?: Array<{ node: string; kind: ResourceKind; name: string }>): void => {
    let cv: number | undefined;
    let orphans: number | undefined;
    for (const a of checked) {
      const head = stmt.resHead.get(a.kind, a.name) as { version: number; deleted: number } | undefined;
      if (a.deleted) {
        stmt.ackDeleteUpTo.run(node, a.kind, a.name, a.version);
        if (head !== undefined && head.deleted === 1) pruneOne(a.kind, a.name);
        continue;
      }
      if (head !== undefined) {
        // A node cannot have stored a version the store never wrote.
        if (a.version > head.version) continue;
        if (a.held && head.deleted === 0) {
          // The inventory says what the node holds now: below the recorded ack, it lost the newer version.
          if (stmt.ackLower.run(a.version, now, node, a.kind, a.name, a.version).changes > 0) lowered?.push({ node, kind: a.kind, name: a.name });
        }
      } else {
        if (a.version > (cv ??= currentVersion())) continue;
        orphans ??= stmt.ackCountNode.get(node) as number;
        if (orphans >= MAX_ORPHAN_ACKS_PER_NODE) continue;
        orphans++;
      }
      stmt.ackUpsert.run(node, a.kind, a.name, a.version, now);
    }
  };
  const read = <T>(fn: () => T): T => {
    live();
    try {
      return fn();
    } catch (e) {
      if (e instanceof ResourceStoreError) throw e;
      throw ioError('read', e);
    }
  };

  const fromRow = (r: ResourceRow): StoredResource => {
    if (!isResourceKind(r.kind) || !isResourceNameOf(r.kind, r.name) || !isVersion(r.version) || !isTime(r.created_at) || !isTime(r.updated_at)) {
      throw corrupt(`a resource row is invalid (${String(r.kind).slice(0, 16)} ${String(r.name).slice(0, 64)})`);
    }
    let nodes: unknown;
    let data: unknown;
    try {
      nodes = JSON.parse(r.nodes);
      data = JSON.parse(r.data);
    } catch (e) {
      throw corrupt(`resource ${r.kind} ${r.name} has invalid JSON`, e);
    }
    if (!Array.isArray(nodes) || !nodes.every((n) => typeof n === 'string') || !isPlainObject(data)) {
      throw corrupt(`resource ${r.kind} ${r.name} has invalid nodes or data`);
    }
    return Object.freeze({
      kind: r.kind,
      name: r.name,
      version: r.version,
      nodes: nodes as string[],
      data,
      deleted: r.deleted === 1,
      createdAt: r.created_at,
      updatedAt: r.updated_at,
    });
  };

  const parseDetail = (text: string): Record<string, unknown> => {
    let d: unknown;
    try {
      d = JSON.parse(text);
    } catch (e) {
      throw corrupt('a status detail is not JSON', e);
    }
    if (statusDetailProblem(d) !== undefined) throw corrupt('a status detail is invalid');
    return d as Record<string, unknown>;
  };
  const statusFromRow = (r: StatusRow): NodeStatusRecord => {
    if (!isTime(r.at) || !isVersion(r.seq) || !isTime(r.received_at) || (r.observed_version !== null && !isVersion(r.observed_version))) {
      throw corrupt(`a status row of node ${String(r.node).slice(0, 64)} is invalid`);
    }
    return Object.freeze({
      node: r.node,
      kind: r.kind as ResourceKind | 'Node',
      name: r.name,
      phase: r.phase,
      ...(r.message === null ? {} : { message: r.message }),
      ...(r.observed_version === null ? {} : { observedVersion: r.observed_version }),
      ...(r.detail === null ? {} : { detail: parseDetail(r.detail) }),
      at: r.at,
      seq: r.seq,
      receivedAt: r.received_at,
    });
  };

  const nextVersion = (): number => {
    const v = stmt.versionNext.get() as number | undefined;
    if (!isVersion(v)) throw corrupt('the version counter is missing or invalid');
    return v;
  };

  const currentVersion = (): number => {
    const v = stmt.versionGet.get() as number | undefined;
    if (!isTime(v)) throw corrupt('the version counter is missing or invalid');
    return v;
  };

  const pruneOne = (kind: string, name: string): void => {
    if (stmt.pruneOne.run(kind, name).changes > 0) stmt.statusDropObject.run(kind, name);
  };

  const pruneTombstones = (): void => {
    for (const r of stmt.pruneAll.all() as { kind: string; name: string }[]) stmt.statusDropObject.run(r.kind, r.name);
  };

  const emit = (changes: readonly ResourceChange[]): void => {
    for (const change of changes) {
      for (const l of [...listeners]) {
        try {
          l(change);
        } catch (e) {
          deps.onListenerError?.(e);
        }
      }
    }
  };

  const store: ResourceStore & ResourceStoreViews = {
    apply(docs) {
      live();
      if (!Array.isArray(docs)) throw invalid('apply takes a list of documents');
      if (docs.length > MAX_APPLY_DOCUMENTS) {
        throw new ResourceStoreError('resource-store/too-many', `at most ${MAX_APPLY_DOCUMENTS} documents per apply (got ${docs.length})`);
      }
      const checked = docs.map((d, i) => checkDocument(d, i));
      const seen = new Map<string, number>();
      checked.forEach((d, i) => {
        const key = `${d.kind}/${d.name}`;
        const first = seen.get(key);
        if (first !== undefined) throw invalid(`document ${i + 1} repeats ${d.kind} ${d.name} of document ${first + 1}`);
        seen.set(key, i);
      });
      const now = checkNow(deps.clock.now());
      const changes: ResourceChange[] = [];
      const outcomes = write(() => {
        const out: ApplyOutcome[] = [];
        for (const d of checked) {
          const nodesJson = JSON.stringify(d.nodes);
          const dataJson = canonicalJson(d.data);
          const prev = stmt.resGet.get(d.kind, d.name) as ResourceRow | undefined;
          const wasLive = prev !== undefined && prev.deleted === 0;
          if (wasLive && prev.nodes === nodesJson && prev.data === dataJson) {
            out.push(Object.freeze({ kind: d.kind, name: d.name, version: prev.version, action: 'unchanged' as const }));
            continue;
          }
          const version = nextVersion();
          stmt.resUpsert.run({ kind: d.kind, name: d.name, version, nodes: nodesJson, data: dataJson, now });
          if (prev !== undefined) stmt.targetsDrop.run(d.kind, d.name);
          for (const n of d.nodes) stmt.targetsAdd.run(n, d.kind, d.name);
          const resource = fromRow(stmt.resGet.get(d.kind, d.name) as ResourceRow);
          changes.push(Object.freeze({ version, resource, ...(wasLive ? { previousNodes: fromRow(prev).nodes } : {}) }));
          out.push(Object.freeze({ kind: d.kind, name: d.name, version, action: wasLive ? ('configured' as const) : ('created' as const) }));
        }
        const count = stmt.resLiveCount.get() as number;
        if (count > MAX_LIVE_RESOURCES) {
          throw new ResourceStoreError('resource-store/too-many', `at most ${MAX_LIVE_RESOURCES} live resources (this apply would make ${count})`);
        }
        return out;
      });
      emit(changes);
      return outcomes;
    },

    delete(kindIn, nameIn) {
      const kind = checkKind(kindIn);
      const name = checkName(nameIn, kind);
      const now = checkNow(deps.clock.now());
      let change: ResourceChange | undefined;
      write(() => {
        const prev = stmt.resGet.get(kind, name) as ResourceRow | undefined;
        if (prev === undefined || prev.deleted === 1) return;
        const before = fromRow(prev);
        const version = nextVersion();
        stmt.resTombstone.run(version, now, kind, name);
        stmt.targetsDrop.run(kind, name);
        const resource: StoredResource = Object.freeze({ ...before, version, data: {}, deleted: true, updatedAt: now });
        change = Object.freeze({ version, resource, previousNodes: before.nodes });
        pruneOne(kind, name);
      });
      if (change === undefined) return undefined;
      emit([change]);
      return { version: change.version };
    },

    get(kindIn, nameIn) {
      const kind = checkKind(kindIn);
      const name = checkName(nameIn, kind);
      return read(() => {
        const r = stmt.resGet.get(kind, name) as ResourceRow | undefined;
        return r === undefined || r.deleted === 1 ? undefined : fromRow(r);
      });
    },

    list(kind) {
      if (kind !== undefined) checkKind(kind);
      return read(() => ((kind === undefined ? stmt.resLiveAll.all() : stmt.resLiveKind.all(kind)) as ResourceRow[]).map(fromRow));
    },

    currentVersion: () => read(currentVersion),

    headFor(kindIn, nameIn, nodeIn) {
      const kind = checkKind(kindIn);
      const name = checkName(nameIn, kind);
      const node = checkNode(nodeIn);
      return read(() => {
        const head = stmt.resHead.get(kind, name) as { version: number; deleted: number } | undefined;
        if (head === undefined || head.deleted === 1) return undefined;
        return { version: head.version, targeted: stmt.targetedLive.get({ node, kind, name }) !== undefined };
      });
    },

    targets(resource, node) {
      return resource.nodes.includes(node) || resource.nodes.includes(ALL_NODES);
    },

    pendingFor(nodeIn) {
      const node = checkNode(nodeIn);
      return read(() => {
        const items: SyncItem[] = [];
        for (const r of stmt.pendingPuts.all({ node }) as ResourceRow[]) items.push(Object.freeze({ op: 'put' as const, resource: fromRow(r) }));
        let cv: number | undefined;
        for (const d of stmt.pendingDeletes.all({ node }) as { kind: string; name: string; version: number | null }[]) {
          if (!isResourceKind(d.kind) || !isResourceNameOf(d.kind, d.name)) throw corrupt('an ack row names an invalid resource');
          // The resource is gone entirely (a pruned tombstone): any version above what the node holds will do.
          const version = d.version ?? (cv ??= currentVersion());
          items.push(Object.freeze({ op: 'delete' as const, kind: d.kind, name: d.name, version }));
        }
        const v = (i: SyncItem): number => (i.op === 'put' ? i.resource.version : i.version);
        return items.sort((a, b) => v(a) - v(b));
      });
    },

    recordAcks(nodeIn, items, nowIn) {
      const node = checkNode(nodeIn);
      const now = checkNow(nowIn);
      const checked = checkAcks(items);
      if (checked.length === 0) return;
      write(() => applyAcks(node, checked, now), false);
    },

    recordAckBatch(batch, nowIn) {
      const now = checkNow(nowIn);
      if (!Array.isArray(batch)) throw invalid('an ack batch must be a list');
      // Everything is checked before anything is written: one bad entry refuses the whole batch.
      const checked = batch.map((b: unknown) => {
        if (!isPlainObject(b)) throw invalid('an ack batch entry must be an object');
        return { node: checkNode(b['node']), items: checkAcks(b['items']) };
      });
      const lowered: Array<{ node: string; kind: ResourceKind; name: string }> = [];
      if (checked.every((b) => b.items.length === 0)) return lowered;
      write(() => {
        for (const b of checked) if (b.items.length > 0) applyAcks(b.node, b.items, now, lowered);
      }, false);
      return lowered;
    },

    bindStore(nodeIn, storeId, nowIn, session = {}) {
      const node = checkNode(nodeIn);
      const now = checkNow(nowIn);
      if (typeof storeId !== 'string' || !HUB_STORE_ID_PATTERN.test(storeId)) throw invalid('storeId must be a UUID');
      const outboxSeq = session.outboxSeq;
      if (outboxSeq !== undefined && (!Number.isSafeInteger(outboxSeq) || outboxSeq < 0)) throw invalid('outboxSeq must be a non-negative integer');
      const keep = (b: { store_id: string | null; last_seq: number } | undefined): boolean =>
        b !== undefined && b.store_id === storeId && session.resync !== true && (outboxSeq === undefined || outboxSeq >= b.last_seq);
      // The common case (a known edge store reconnecting) is one indexed read and no write.
      if (keep(read(() => stmt.bindingGet.get(node) as { store_id: string | null; last_seq: number } | undefined))) return { reset: false };
      return write(() => {
        const prev = stmt.bindingGet.get(node) as { store_id: string | null; last_seq: number } | undefined;
        if (keep(prev)) return { reset: false };
        // Another, a first, a rolled-back or a damaged edge store: nothing acknowledged is known to be in it.
        stmt.acksDropNode.run(node);
        stmt.statusDropNode.run(node);
        stmt.bindingPut.run(node, storeId, now);
        pruneTombstones();
        return { reset: true };
      });
    },

    recordStatus(nodeIn, entries, nowIn) {
      const node = checkNode(nodeIn);
      const now = checkNow(nowIn);
      if (!Array.isArray(entries)) throw invalid('status entries must be a list');
      if (entries.length > MAX_HUB_STATUS_ENTRIES) throw new ResourceStoreError('resource-store/too-many', `at most ${MAX_HUB_STATUS_ENTRIES} status entries per call`);
      const checked = entries.map((e: unknown) => {
        if (!isPlainObject(e)) throw invalid('a status entry must be an object');
        const kind = e['kind'] === 'Node' ? 'Node' : checkKind(e['kind']);
        const name = kind === 'Node' ? checkNode(e['name']) : checkName(e['name'], kind);
        const { seq, phase, message, observedVersion, at, detail } = e;
        if (detail !== undefined && statusDetailProblem(detail) !== undefined) throw invalid(`status ${statusDetailProblem(detail)}`);
        if (!isVersion(seq)) throw invalid('status seq must be an integer >= 1');
        if (typeof phase !== 'string' || !HUB_STATUS_PHASE_PATTERN.test(phase)) throw invalid('status phase is not valid');
        if (message !== undefined && (typeof message !== 'string' || message.length > MAX_HUB_STATUS_MESSAGE)) throw invalid('status message is not valid');
        if (observedVersion !== undefined && !isVersion(observedVersion)) throw invalid('status observedVersion must be an integer >= 1');
        if (!isTime(at)) throw invalid('status at must be a non-negative integer (epoch ms)');
        return { kind, name, seq, phase, message: (message as string | undefined) ?? null, observed_version: (observedVersion as number | undefined) ?? null, at, detail: detail === undefined ? null : JSON.stringify(detail) };
      });
      return write(() => {
        const prev = stmt.bindingGet.get(node) as { store_id: string | null; last_seq: number } | undefined;
        let last = prev?.last_seq ?? 0;
        const start = last;
        for (const e of checked) {
          if (e.seq <= last) continue; // a resend (at-least-once) or out of order: already applied or superseded
          last = e.seq;
          // Only status about the node itself or a live resource that targets the node (bounded by the
          // store's size; a node does not get to attach status to another node's resources).
          if (e.kind === 'Node' ? e.name !== node : stmt.targetedLive.get({ node, kind: e.kind, name: e.name }) === undefined) continue;
          stmt.statusPut.run({ node, ...e, received_at: now });
        }
        if (last !== start) stmt.seqPut.run(node, last, now);
        return last;
      });
    },

    acksOf(kindIn, nameIn) {
      const kind = checkKind(kindIn);
      const name = checkName(nameIn, kind);
      return read(() =>
        (stmt.acksOf.all(kind, name) as { node: string; version: number; acked_at: number }[]).map((r) => Object.freeze({ node: r.node, version: r.version, ackedAt: r.acked_at })),
      );
    },

    statusOf(kindIn, nameIn) {
      const kind = checkKind(kindIn);
      const name = checkName(nameIn, kind);
      return read(() => (stmt.statusOf.all(kind, name) as StatusRow[]).map(statusFromRow));
    },

    nodeStatus(nodeIn) {
      const node = checkNode(nodeIn);
      return read(() => (stmt.statusOfNode.all(node) as StatusRow[]).map(statusFromRow));
    },

    ackSummary(kindIn, nameIn, version, limit) {
      const kind = checkKind(kindIn);
      const name = checkName(nameIn, kind);
      return read(() => {
        const counts = stmt.ackCounts.get(version, kind, name) as { total: number; current: number };
        const acks = (stmt.acksOfLimit.all(kind, name, Math.max(0, Math.floor(limit))) as { node: string; version: number; acked_at: number }[]).map((r) =>
          Object.freeze({ node: r.node, version: r.version, ackedAt: r.acked_at }),
        );
        return { acks, total: counts.total, current: counts.current };
      });
    },

    statusSummary(kindIn, nameIn, limit) {
      const kind = checkKind(kindIn);
      const name = checkName(nameIn, kind);
      return read(() => ({
        status: (stmt.statusOfLimit.all(kind, name, Math.max(0, Math.floor(limit))) as StatusRow[]).map(statusFromRow),
        total: stmt.statusCount.get(kind, name) as number,
      }));
    },

    forgetNode(nodeIn) {
      const node = checkNode(nodeIn);
      write(() => {
        stmt.acksDropNode.run(node);
        stmt.statusDropNode.run(node);
        stmt.bindingDrop.run(node);
        pruneTombstones();
      });
    },

    onChange(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },

    close() {
      if (closed) return;
      closed = true;
      listeners.clear();
      db.close();
    },
  };
  return store;
}
