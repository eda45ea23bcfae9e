/**
 * The hub protocol (issue #5): one WebSocket per edge node, inside mutual TLS where both sides present
 * their X509-SVIDs, on the node API listener at `HUB_PATH`. One JSON text frame is one message; every
 * message carries `v: 1` and is tagged by `kind`.
 *
 *   edge -> cloud  hello {storeId, agent, outboxSeq} first frame of a session (anything else first: 4400)
 *   cloud -> edge  welcome {node, sessionId, heartbeatMs, resync}
 *   cloud -> edge  put {resource} | delete {resource, version}   the catch-up: only what the node lacks
 *   cloud -> edge  synced {version}                  the catch-up is complete up to this global version
 *   edge -> cloud  ack {items, inventory?}           sent only after the items are committed at the edge;
 *                                                    once per session, after synced, the whole inventory
 *   edge -> cloud  status {entries}                  from the edge's durable outbox, in seq order
 *   cloud -> edge  status.ack {seq}                  every entry with seq <= this is stored at the cloud
 *   cloud -> edge  nudge {topic}                     e.g. the node's registration entries changed
 *   cloud -> edge  error {code, message}             just before the cloud closes the session
 *
 * Delivery is at-least-once and idempotent both ways: a resource is applied only if its version is newer
 * than the stored one, and status entries are applied only if their seq is newer than the last stored.
 * Unlike KubeEdge's viaduct (kubeedge.md §3), the node is never named by a header or a field: the cloud
 * takes it from the client certificate alone.
 */
import type { ResourceKind, ResourceRef } from './resources.js';

export const HUB_PROTOCOL_VERSION = 1;
/** The WebSocket upgrade path on the node API listener. */
export const HUB_PATH = '/v1/hub';
/** Largest frame an edge sends (the cloud's ws `maxPayload`; larger frames are closed with 1009). */
export const MAX_HUB_EDGE_FRAME_BYTES = 64 * 1024;
/** Largest frame the cloud sends (the edge's ws `maxPayload`). */
export const MAX_HUB_CLOUD_FRAME_BYTES = 1024 * 1024;
/** The edge sends a WebSocket ping this often. */
export const HUB_PING_INTERVAL_MS = 10_000;
/** The edge drops a session on which nothing arrived for this long (ping answers included). */
export const HUB_DEAD_AFTER_MS = 25_000;
/** The cloud drops a session on which nothing arrived for this long: a dead peer is found within 30 s. */
export const HUB_CLOUD_IDLE_MS = 30_000;
/** A live session is probed with a ping when a second connection for its node arrives; no pong in this long: dropped. */
export const HUB_PROBE_MS = 5_000;
/** The cloud waits this long for `hello` after the upgrade. */
export const HUB_HELLO_TIMEOUT_MS = 10_000;
/** Most items in one `ack`, entries in one `status`. */
export const MAX_HUB_ACK_ITEMS = 1000;
export const MAX_HUB_STATUS_ENTRIES = 100;
export const MAX_HUB_STATUS_MESSAGE = 1024;
export const MAX_HUB_AGENT_LENGTH = 64;
export const MAX_HUB_ERROR_MESSAGE = 1024;
/** `StatusEntry.phase`: a short CamelCase word (`Stored`, `Running`, `Failed`). */
export const HUB_STATUS_PHASE_PATTERN = /^[A-Z][A-Za-z]{0,31}$/;
/** `hello.storeId`: a UUID (the edge store's identity, made when its database is created). */
export const HUB_STORE_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Session ids are opaque: 16-64 characters of base64url's alphabet. */
export const HUB_SESSION_ID_PATTERN = /^[A-Za-z0-9_-]{16,64}$/;
/** Error codes on the wire: `area/word-word`. */
export const HUB_ERROR_CODE_PATTERN = /^[a-z][a-z0-9-]*(\/[a-z0-9][a-z0-9-]*)*$/;

/** A resource on the wire: `data` is the kind's body (`{data}` for ConfigMap/Secret, `{spec}` otherwise). */
export interface WireResource extends ResourceRef {
  /** The cloud's global resource version when this state was written (integer >= 1). */
  readonly version: number;
  readonly data: Record<string, unknown>;
}

export interface AckItem extends ResourceRef {
  readonly version: number;
  /** The acknowledged item was a delete. */
  readonly deleted?: true;
}

/** One status update from the edge's outbox. `kind: 'Node'` is about the node itself. */
export interface StatusEntry {
  readonly seq: number;
  readonly kind: ResourceKind | 'Node';
  readonly name: string;
  readonly phase: string;
  readonly message?: string;
  readonly observedVersion?: number;
  readonly at: number;
  /** A small JSON object (status-detail.ts), e.g. a Device's reported twins (issue #6). */
  readonly detail?: Readonly<Record<string, unknown>>;
}

export interface HubHello {
  readonly v: 1;
  readonly kind: 'hello';
  readonly storeId: string;
  readonly agent: string;
  /**
   * The highest status seq the edge store ever allocated (0: none). Seqs never go down in a store, so one
   * below what the cloud already recorded means the store was rolled back (restored from a backup): the
   * cloud then forgets what it knew of the store and sends everything again (`welcome.resync`).
   */
  readonly outboxSeq: number;
  /** The edge store lost data the cloud believes it holds (a row that no longer authenticates): send everything. */
  readonly resync?: true;
}
export interface HubAck {
  readonly v: 1;
  readonly kind: 'ack';
  readonly items: readonly AckItem[];
  /**
   * The edge's inventory (sent once per session after `synced`): these versions are what the edge holds
   * now, so the cloud records them even where it had recorded a newer one (the edge lost it: a restored
   * backup, a row that no longer authenticates), and then sends what is lacking.
   */
  readonly inventory?: true;
}
export interface HubStatus {
  readonly v: 1;
  readonly kind: 'status';
  readonly entries: readonly StatusEntry[];
}
export interface HubWelcome {
  readonly v: 1;
  readonly kind: 'welcome';
  readonly node: string;
  readonly sessionId: string;
  readonly heartbeatMs: number;
  /** The cloud had recorded another edge store for this node: its acknowledgements were reset. */
  readonly resync: boolean;
}
export interface HubPut {
  readonly v: 1;
  readonly kind: 'put';
  readonly resource: WireResource;
}
export interface HubDelete {
  readonly v: 1;
  readonly kind: 'delete';
  readonly resource: ResourceRef;
  readonly version: number;
}
export interface HubSynced {
  readonly v: 1;
  readonly kind: 'synced';
  readonly version: number;
}
export interface HubStatusAck {
  readonly v: 1;
  readonly kind: 'status.ack';
  readonly seq: number;
}
export const HUB_NUDGE_TOPICS = ['entries'] as const;
export type HubNudgeTopic = (typeof HUB_NUDGE_TOPICS)[number];
export interface HubNudge {
  readonly v: 1;
  readonly kind: 'nudge';
  readonly topic: HubNudgeTopic;
}
export interface HubError {
  readonly v: 1;
  readonly kind: 'error';
  readonly code: string;
  readonly message: string;
}

export type EdgeToCloudHubMessage = HubHello | HubAck | HubStatus;
export type CloudToEdgeHubMessage = HubWelcome | HubPut | HubDelete | HubSynced | HubStatusAck | HubNudge | HubError;
export type HubMessage = EdgeToCloudHubMessage | CloudToEdgeHubMessage;

export const EDGE_TO_CLOUD_HUB_KINDS = ['hello', 'ack', 'status'] as const;
export const CLOUD_TO_EDGE_HUB_KINDS = ['welcome', 'put', 'delete', 'synced', 'status.ack', 'nudge', 'error'] as const;

/**
 * WebSocket close codes of the hub (RFC 6455 7.4: 4000-4999 are for applications), one table for both
 * sides. `reconnect` says how an edge reacts: at once (after a small jitter), with backoff, or with backoff
 * at its cap (the cloud refused the node).
 */
export const HUB_CLOSE_CODES = {
  normal: { code: 1000, name: 'normal', reconnect: 'jitter' },
  goingAway: { code: 1001, name: 'going-away', reconnect: 'jitter' },
  tooLarge: { code: 1009, name: 'too-large', reconnect: 'backoff' },
  protocol: { code: 4400, name: 'hub/protocol', reconnect: 'backoff' },
  reauthenticate: { code: 4401, name: 'hub/reauthenticate', reconnect: 'jitter' },
  banned: { code: 4403, name: 'hub/banned', reconnect: 'cap' },
  evicted: { code: 4404, name: 'hub/evicted', reconnect: 'cap' },
  heartbeatTimeout: { code: 4408, name: 'hub/heartbeat-timeout', reconnect: 'backoff' },
  probeFailed: { code: 4409, name: 'hub/probe-failed', reconnect: 'backoff' },
  svidExpired: { code: 4410, name: 'hub/svid-expired', reconnect: 'jitter' },
  overloaded: { code: 4429, name: 'hub/overloaded', reconnect: 'backoff' },
  internal: { code: 4500, name: 'hub/internal', reconnect: 'backoff' },
} as const;
export type HubCloseName = keyof typeof HUB_CLOSE_CODES;
export type HubReconnect = 'jitter' | 'backoff' | 'cap';

/** The entry of a close code (undefined for a code outside the table, e.g. 1006 abnormal closure). */
export function hubCloseByCode(code: number): (typeof HUB_CLOSE_CODES)[HubCloseName] | undefined {
  for (const k of Object.keys(HUB_CLOSE_CODES) as HubCloseName[]) if (HUB_CLOSE_CODES[k].code === code) return HUB_CLOSE_CODES[k];
  return undefined;
}

/**
 * HTTP statuses of a refused upgrade (the body is a node-API `error` message) and their codes.
 */
export const HUB_UPGRADE_REFUSALS = {
  unauthenticated: { status: 401, code: 'node-api/unauthenticated' },
  banned: { status: 403, code: 'node/banned' },
  notFound: { status: 404, code: 'http/not-found' },
  sessionExists: { status: 409, code: 'hub/session-exists' },
  upgradeRequired: { status: 426, code: 'hub/upgrade-required' },
  overloaded: { status: 503, code: 'hub/overloaded' },
} as const;
