/**
 * CloudHub (issue #5; contract "Cloud hub"): one WebSocket per edge node on the node API listener
 * (`HUB_PATH`), inside mutual TLS. The node API server authenticates the client certificate (the node is
 * taken from it alone, never from a header or a field) and hands the upgraded request over with the node's
 * name and the peer's chain; everything after that is here.
 *
 * A session: the edge sends `hello` (within `HUB_HELLO_TIMEOUT_MS`), the hub binds the edge store
 * (`bindStore`), answers `welcome`, sends what the node lacks (`pendingFor`: coalesced puts and deletes)
 * with back-pressure, then `synced`. Live changes (`store.onChange`) are encoded once and the same frame
 * is written to every live session the resource targets; nodes that stopped being targeted get a delete.
 * Acks are buffered and written every `ackFlushMs` or `ackFlushItems`; status entries are stored at once
 * and acknowledged with `status.ack`.
 *
 * Sessions (decided in the contract, unlike KubeEdge's last-connection-wins, kubeedge.md §3):
 * - the first live session of a node wins: a second upgrade gets 409 `hub/session-exists` (a cloned node
 *   shows up as `security.hub_duplicate_session`) and the live session is probed with a ping; no pong (or
 *   anything else) within `HUB_PROBE_MS` and it is terminated (`hub.session_probe_failed`), so a rebooted
 *   edge whose old TCP connection is half-dead gets back in on its next attempt;
 * - nothing received (frame, ping or pong) for `HUB_CLOUD_IDLE_MS`: closed 4408; the peer SVID's NotAfter:
 *   4410; the node's record changed and its chain no longer authenticates: 4401; ban/evict: 4403/4404; a
 *   peer that does not read (send buffer over `sendHighWaterBytes`): 4429; a malformed frame, an unknown
 *   version or kind, a binary frame, a message before `hello`: an `error` frame, then 4400 and
 *   `security.hub_protocol_violation`; a frame over 64 KiB: 1009 (ws's `maxPayload`).
 *
 * Memory (issue #5: <= 80 KB of cloud RSS per idle session at 10,000 sessions, ~60 KB of it the TLS
 * WebSocket itself): a session is one small object; the ws listeners are shared functions (`this` is the
 * WebSocket, the session hangs off it); there is no timer per session: one sweep a second walks every
 * session for the idle, hello, probe, NotAfter and close-grace deadlines. Catch-up lists exist only while a
 * catch-up runs. Frames are Buffers shared by every recipient, and recently sent put/delete frames are
 * cached by (kind, name, version) (a version is never reused) so that 10,000 catch-ups after a cloud
 * restart encode each resource once.
 *
 * Nothing a peer sends can crash the process: every ws handler is wrapped, ws `error` events are handled,
 * and unexpected failures close only the session concerned (4500).
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { EdgewardError, type Clock } from '../../identity/index.js';
import { RateLimiter } from '../../attestation/index.js';
import {
  ALL_NODES,
  decodeEdgeToCloudHub,
  encodeHubMessage,
  HUB_CLOSE_CODES,
  HUB_CLOUD_IDLE_MS,
  HUB_HELLO_TIMEOUT_MS,
  HUB_PING_INTERVAL_MS,
  HUB_PROBE_MS,
  HUB_PROTOCOL_VERSION,
  HUB_UPGRADE_REFUSALS,
  HubProtocolError,
  MAX_HUB_ACK_ITEMS,
  MAX_HUB_EDGE_FRAME_BYTES,
  type CloudToEdgeHubMessage,
  type HubAck,
  type HubHello,
  type HubStatus,
  type ResourceKind,
} from '../../protocol/index.js';
import type { AckItemInput, ResourceChange, ResourceStore, StoredResource, SyncItem } from '../resources/index.js';

/** What the hub needs of the resource store (the `ResourceStore` port of src/cloud/resources). */
export type CloudHubStore = Pick<ResourceStore, 'bindStore' | 'pendingFor' | 'recordAcks' | 'recordAckBatch' | 'headFor' | 'recordStatus' | 'currentVersion' | 'targets' | 'get' | 'onChange'>;

export interface CloudHubLogger {
  debug(obj: Record<string, unknown>, msg: string): void;
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

export interface CloudHubLimits {
  /** Sessions at once (awaiting hello included); one more is refused before the upgrade with 503. Default 20,000. */
  maxSessions: number;
  /**
   * A session whose unsent output exceeds this is a slow reader: closed 4429. Default 1 MiB. (Resource
   * frames stop being queued for a session at `CATCHUP_WATER_BYTES` already: it catches up from the store
   * once its output drained; a session that stays backed up for `slowReaderMs` is closed 4429 too.)
   */
  sendHighWaterBytes: number;
  /** Hub connections per node: burst (default `HUB_NODE_CONNECT_BURST`, 10) and sustained rate (default 1 per 6 s). */
  connectBurst: number;
  connectsPerSecond: number;
}

/** Deadlines and batching (defaults from the protocol; tests shorten them). */
export interface CloudHubTiming {
  /** Nothing received for this long: 4408 (HUB_CLOUD_IDLE_MS, 30 s). */
  idleMs: number;
  /** A probed session must answer within this (HUB_PROBE_MS, 5 s). */
  probeMs: number;
  /** `hello` must arrive within this after the upgrade (HUB_HELLO_TIMEOUT_MS, 10 s). */
  helloTimeoutMs: number;
  /** How often the sweep runs (1 s). */
  sweepIntervalMs: number;
  /** Buffered acks are written at most this long after they arrived (50 ms)... */
  ackFlushMs: number;
  /** ...or as soon as this many are buffered (1000). */
  ackFlushItems: number;
  /** A session we closed that has not finished its closing handshake after this is terminated (2 s). */
  closeGraceMs: number;
  /** A session whose output stays backed up (it does not read) this long is closed 4429 (30 s). */
  slowReaderMs: number;
  /** The ping interval told to the edge in `welcome` (HUB_PING_INTERVAL_MS, 10 s). */
  heartbeatMs: number;
}

export interface CloudHubOptions {
  store: CloudHubStore;
  logger: CloudHubLogger;
  clock: Clock;
  /**
   * The node API backend's `authenticate` (registered, not banned, current serial): run again with the
   * session's peer chain by `reauthenticate` / `recheckAll`. Throws when the chain no longer authenticates.
   */
  authenticate(chainDer: readonly Buffer[], source: string): { nodeName: string };
  limits?: Partial<CloudHubLimits>;
  timing?: Partial<CloudHubTiming>;
  /** Start the sweep interval (default true; unit tests driving a ManualClock call `sweep()` themselves). */
  sweepTimer?: boolean;
}

/** What the node API server answers (HTTP status, node-API error code) when the hub refuses an upgrade. */
export interface HubUpgradeRefusal {
  status: number;
  code: string;
  message: string;
}

/** The authenticated peer of an upgrade: its certificate chain (leaf first) and the leaf's NotAfter. */
export interface HubPeer {
  chainDer: readonly Buffer[];
  notAfter: number;
}

export interface CloudHubStats {
  sessions: number;
  awaitingHello: number;
  catchingUp: number;
  live: number;
  closing: number;
  /** Sessions whose output is backed up: live changes wait for them in the store. */
  behind: number;
  maxSessions: number;
  /** Since start. */
  opened: number;
  closed: number;
  refusedDuplicate: number;
  refusedOverloaded: number;
  slowReadersClosed: number;
  protocolViolations: number;
  /** Acks received and not yet written. */
  pendingAcks: number;
}

export interface CloudHub {
  /**
   * Take over an authenticated upgrade request of `node`. Returns a refusal (409 another live session, 503
   * too many sessions or shutting down) without touching the socket; the caller answers it. Otherwise the
   * socket belongs to the hub.
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, node: string, peer: HubPeer): HubUpgradeRefusal | undefined;
  /** Close the node's session at once: 4403 (banned) or 4404 (evicted; its buffered acks are dropped). Returns how many were closed. */
  closeNode(name: string, reason: 'banned' | 'evicted'): number;
  /** Run `authenticate` again with the peer chain of the node's session; 4401 if it throws. */
  reauthenticate(name: string): void;
  /** `reauthenticate` every session (the cloud identity or bundle changed), a few hundred per event-loop turn. */
  recheckAll(): void;
  /** Tell the node (or every node) that its registration entries changed. */
  nudgeEntries(node?: string): void;
  stats(): CloudHubStats;
  /** The deadlines (idle, hello, probe, NotAfter, close grace) at `clock.now()`. Runs every `sweepIntervalMs`. */
  sweep(): void;
  /** Write the buffered acks now. */
  flushAcks(): void;
  /** Close every session with 1001, wait for them (at most `closeGraceMs`), write the last acks. */
  close(): Promise<void>;
}

export const DEFAULT_HUB_MAX_SESSIONS = 20_000;
export const DEFAULT_HUB_SEND_HIGH_WATER_BYTES = 1024 * 1024;
/** A catch-up writes while less than this is waiting to be sent, then waits for the socket to drain. */
const CATCHUP_WATER_BYTES = 256 * 1024;
/** Sessions re-authenticated per event-loop turn by `recheckAll`. */
const RECHECK_BATCH = 200;
/** The frame cache: at most this many bytes and entries. */
const FRAME_CACHE_BYTES = 16 * 1024 * 1024;
const FRAME_CACHE_ENTRIES = 20_000;

const AWAITING_HELLO = 0;
const CATCHING_UP = 1;
const LIVE = 2;
const CLOSING = 3;
type SessionState = typeof AWAITING_HELLO | typeof CATCHING_UP | typeof LIVE | typeof CLOSING;

/**
 * What a catch-up still has to send: references only (a session that reads slowly must not pin the parsed
 * resources it lacks); a put's frame is built when it is sent, from the frame cache or the store.
 */
type CatchUpRef = { readonly op: 'put' | 'delete'; readonly kind: ResourceKind; readonly name: string; readonly version: number };

interface CatchUp {
  items: CatchUpRef[];
  next: number;
  version: number;
  /** Send `synced` at the end (the catch-up after hello; not a catch-up after a backed-up output drained). */
  readonly announce: boolean;
}

interface Session {
  readonly ws: WebSocket;
  readonly node: string;
  readonly id: string;
  readonly source: string;
  readonly chainDer: readonly Buffer[];
  readonly notAfter: number;
  readonly openedAt: number;
  lastSeen: number;
  state: SessionState;
  /** When a probe ping was sent (0: none outstanding). */
  probeAt: number;
  closingAt: number;
  closeCode: number;
  closeReason: string;
  catchup: CatchUp | undefined;
  /** Live changes from this version on were skipped (output backed up): caught up from the store once drained (0: none). */
  behindFrom: number;
  /** Since when the session's output has been backed up (0: it is not). */
  stalledSince: number;
  /** Status frames: a token bucket (tokens, last refill) bounding the durable writes a peer can cause. */
  statusTokens: number;
  statusAt: number;
  /** Inventory ack items received on this session (bounded: an inventory is sent once per session). */
  inventoryItems: number;
}

const SESSION: unique symbol = Symbol('edgeward.hub.session');
type HubSocket = WebSocket & { [SESSION]?: Session };

const SEND_OPTS = { binary: false, compress: false, fin: true } as const;
const V = HUB_PROTOCOL_VERSION;

type CloseName = keyof typeof HUB_CLOSE_CODES;

/**
 * Status frames a session may send: a burst, then a sustained rate (each frame is one durable write). An
 * edge sends one batch of <= 100 entries at a time, the next after `status.ack`: 200 frames/s drains 20,000
 * entries/s. Over it: 4429 and `security.hub_rate_limited`.
 */
const STATUS_FRAME_BURST = 400;
const STATUS_FRAMES_PER_SECOND = 200;
/** Inventory ack items one session may send (the edge store holds at most 20,000 resources). */
const MAX_INVENTORY_ITEMS_PER_SESSION = 20_000;
/**
 * Hub connections per node: a burst, then one per 6 s (rotation, backoff and graceful reconnects stay far
 * below; a node reconnecting in a loop would otherwise make the cloud rebind and resend at will).
 */
export const HUB_NODE_CONNECT_BURST = 10;
export const HUB_NODE_CONNECTS_PER_SECOND = 1 / 6;

/** Close codes after which acks still in flight from the peer are kept (the peer did nothing wrong). */
const ACKS_WHILE_CLOSING = new Set<number>([
  HUB_CLOSE_CODES.goingAway.code,
  HUB_CLOSE_CODES.heartbeatTimeout.code,
  HUB_CLOSE_CODES.svidExpired.code,
  HUB_CLOSE_CODES.overloaded.code,
]);

function codeOf(e: unknown): string {
  return e instanceof EdgewardError ? e.code : 'internal';
}

function positive(v: number | undefined, dflt: number): number {
  return v !== undefined && Number.isFinite(v) && v > 0 ? v : dflt;
}

export function createCloudHub(opts: CloudHubOptions): CloudHub {
  const { store, logger: log, clock } = opts;
  const limits: CloudHubLimits = {
    maxSessions: Math.floor(positive(opts.limits?.maxSessions, DEFAULT_HUB_MAX_SESSIONS)),
    sendHighWaterBytes: positive(opts.limits?.sendHighWaterBytes, DEFAULT_HUB_SEND_HIGH_WATER_BYTES),
    connectBurst: positive(opts.limits?.connectBurst, HUB_NODE_CONNECT_BURST),
    connectsPerSecond: positive(opts.limits?.connectsPerSecond, HUB_NODE_CONNECTS_PER_SECOND),
  };
  const t = opts.timing ?? {};
  const timing: CloudHubTiming = {
    idleMs: positive(t.idleMs, HUB_CLOUD_IDLE_MS),
    probeMs: positive(t.probeMs, HUB_PROBE_MS),
    helloTimeoutMs: positive(t.helloTimeoutMs, HUB_HELLO_TIMEOUT_MS),
    sweepIntervalMs: positive(t.sweepIntervalMs, 1000),
    ackFlushMs: positive(t.ackFlushMs, 50),
    ackFlushItems: Math.min(MAX_HUB_ACK_ITEMS, Math.floor(positive(t.ackFlushItems, MAX_HUB_ACK_ITEMS))),
    closeGraceMs: positive(t.closeGraceMs, 2000),
    slowReaderMs: positive(t.slowReaderMs, 30_000),
    heartbeatMs: positive(t.heartbeatMs, HUB_PING_INTERVAL_MS),
  };

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_HUB_EDGE_FRAME_BYTES,
    perMessageDeflate: false,
    clientTracking: false,
    skipUTF8Validation: false,
  });
  // The node API server checks the upgrade headers first; should ws still refuse one, no HTML goes out.
  wss.on('wsClientError', (e: Error, socket: Duplex) => {
    log.warn({ event: 'security.hub_upgrade_refused', code: 'http/bad-request', err: e.message.slice(0, 100) }, 'hub upgrade refused');
    socket.destroy();
  });

  /** The node's session (one per node: the first live one wins). */
  const byNode = new Map<string, Session>();
  /** Closing sessions already replaced by a newer session of their node: they finish their closing handshake. */
  const lingering = new Set<Session>();
  const connectLimiter = new RateLimiter({ capacity: limits.connectBurst, refillPerSecond: limits.connectsPerSecond, maxKeys: Math.max(10_000, limits.maxSessions * 2) });
  let acks: Array<AckItemInput & { node: string }> = [];
  let ackTimer: NodeJS.Timeout | undefined;
  let closed = false;
  const counters = { opened: 0, closed: 0, refusedDuplicate: 0, refusedOverloaded: 0, slowReadersClosed: 0, protocolViolations: 0 };

  // ------------------------------------------------------------------------------------------ frames

  const frameCache = new Map<string, Buffer>();
  let frameCacheBytes = 0;
  const cached = (key: string, make: () => CloudToEdgeHubMessage): Buffer => {
    const hit = frameCache.get(key);
    if (hit !== undefined) return hit;
    const frame = Buffer.from(encodeHubMessage(make()), 'utf8');
    frameCache.set(key, frame);
    frameCacheBytes += frame.length;
    while (frameCacheBytes > FRAME_CACHE_BYTES || frameCache.size > FRAME_CACHE_ENTRIES) {
      const oldest = frameCache.keys().next();
      if (oldest.done === true) break;
      frameCacheBytes -= frameCache.get(oldest.value)!.length;
      frameCache.delete(oldest.value);
    }
    return frame;
  };
  const putFrame = (r: StoredResource): Buffer =>
    cached(`p\0${r.kind}\0${r.name}\0${r.version}`, () => ({ v: V, kind: 'put', resource: { kind: r.kind, name: r.name, version: r.version, data: r.data } }));
  const deleteFrame = (kind: ResourceKind, name: string, version: number): Buffer =>
    cached(`d\0${kind}\0${name}\0${version}`, () => ({ v: V, kind: 'delete', resource: { kind, name }, version }));
  const NUDGE_ENTRIES = Buffer.from(encodeHubMessage({ v: V, kind: 'nudge', topic: 'entries' }), 'utf8');

  // ------------------------------------------------------------------------------------------ sessions

  const who = (s: Session): Record<string, unknown> => ({ node: s.node, session: s.id });

  /** Forget the session as its node's session (a replacement may already be there). */
  const detach = (s: Session): void => {
    if (byNode.get(s.node) === s) byNode.delete(s.node);
    lingering.delete(s);
    s.catchup = undefined;
  };

  /**
   * Close a session we decided to close: an `error` frame naming why, then the close frame. The closing
   * handshake is bounded by the sweep (terminated after `closeGraceMs`).
   */
  const closeSession = (s: Session, name: CloseName, code: string, message: string): void => {
    if (s.state === CLOSING) return;
    const c = HUB_CLOSE_CODES[name];
    s.state = CLOSING;
    s.closingAt = clock.now();
    s.closeCode = c.code;
    s.closeReason = code;
    s.catchup = undefined;
    const ws = s.ws;
    try {
      if (ws.readyState === WebSocket.OPEN) {
        ws.send(encodeHubMessage({ v: V, kind: 'error', code, message: message.slice(0, 256) }), SEND_OPTS);
        ws.close(c.code, c.name);
      } else {
        ws.terminate();
      }
    } catch (e) {
      log.error({ event: 'hub.close_failed', ...who(s), code: codeOf(e), err: String(e).slice(0, 200) }, 'hub session close failed');
      ws.terminate();
    }
  };

  const violation = (s: Session, e: HubProtocolError): void => {
    counters.protocolViolations++;
    log.warn({ event: 'security.hub_protocol_violation', code: e.code, ...who(s), source: s.source, err: e.message.slice(0, 200) }, 'hub protocol violation');
    closeSession(s, 'protocol', e.code, e.message);
  };

  const internalError = (s: Session, e: unknown, what: string): void => {
    log.error({ event: 'hub.internal_error', ...who(s), code: codeOf(e), err: String(e).slice(0, 300), what }, 'hub session failed');
    closeSession(s, 'internal', 'hub/internal', 'internal error');
  };

  const slowReader = (s: Session, why: string): void => {
    counters.slowReadersClosed++;
    log.warn({ event: 'hub.slow_reader', code: 'hub/overloaded', ...who(s), buffered: s.ws.bufferedAmount, why }, 'hub session closed: the node does not read');
    closeSession(s, 'overloaded', 'hub/overloaded', 'the node reads too slowly');
  };

  /** A control frame (status.ack, nudge, a delete after an ack): small; a peer that does not read is closed. */
  const sendControl = (s: Session, frame: Buffer): void => {
    if (s.state === CLOSING || s.state === AWAITING_HELLO) return;
    const ws = s.ws;
    if (ws.readyState !== WebSocket.OPEN) return;
    if (ws.bufferedAmount > limits.sendHighWaterBytes) {
      slowReader(s, 'buffer');
      return;
    }
    ws.send(frame, SEND_OPTS);
  };

  /**
   * A resource frame of the fan-out (the same Buffer for every session). A session whose output is backed
   * up does not queue it: it is marked behind from this version and, once its output drained, is sent what
   * it lacks from the store (state-based sync: only versions from `behindFrom` on, coalesced). So a large
   * apply costs each session at most the water mark of queued output, never the whole burst.
   */
  const sendResource = (s: Session, frame: Buffer, version: number): void => {
    if (s.state === CLOSING || s.state === AWAITING_HELLO || s.behindFrom !== 0) return;
    const ws = s.ws;
    if (ws.readyState !== WebSocket.OPEN) return;
    if (ws.bufferedAmount >= CATCHUP_WATER_BYTES) {
      s.behindFrom = version;
      if (s.stalledSince === 0) s.stalledSince = clock.now();
      // In a catch-up, the pump takes the skipped versions at its end.
      if (s.state === LIVE) whenDrained(s);
      return;
    }
    ws.send(frame, SEND_OPTS);
  };

  /** Resume `s` once everything queued so far is written: the callback of a ping (the edge answers it; harmless). */
  const whenDrained = (s: Session): void => {
    try {
      s.ws.ping(undefined, undefined, (err) => {
        if (err === undefined || err === null) resumeSafe(s);
      });
    } catch (e) {
      internalError(s, e, 'drain');
    }
  };

  const itemVersion = (i: SyncItem): number => (i.op === 'put' ? i.resource.version : i.version);
  /** What the node lacks among the versions it was not sent live (a resync after a backed-up output). */
  const refOf = (i: SyncItem): CatchUpRef =>
    i.op === 'put' ? { op: 'put', kind: i.resource.kind, name: i.resource.name, version: i.resource.version } : { op: 'delete', kind: i.kind, name: i.name, version: i.version };
  const lackingFrom = (s: Session, from: number): CatchUpRef[] => store.pendingFor(s.node).filter((i) => itemVersion(i) >= from).map(refOf);
  /**
   * The frame of a catch-up reference, built now: a put is sent as the resource is now (a newer version is
   * as good; one deleted or no longer targeting the node meanwhile is skipped: its delete goes live).
   */
  const refFrame = (s: Session, r: CatchUpRef): Buffer | undefined => {
    if (r.op === 'delete') return deleteFrame(r.kind, r.name, r.version);
    const hit = frameCache.get(`p\0${r.kind}\0${r.name}\0${r.version}`);
    if (hit !== undefined) return hit;
    const now = store.get(r.kind, r.name);
    if (now === undefined || !store.targets(now, s.node)) return undefined;
    return putFrame(now);
  };

  /** Send catch-up frames until the socket's buffer reaches the water mark; resume when it drained. */
  const pumpCatchup = (s: Session): void => {
    const c = s.catchup;
    if (c === undefined || s.state !== CATCHING_UP) return;
    const ws = s.ws;
    for (;;) {
      while (c.next < c.items.length) {
        if (ws.readyState !== WebSocket.OPEN) return;
        if (ws.bufferedAmount >= CATCHUP_WATER_BYTES) {
          if (s.stalledSince === 0) s.stalledSince = clock.now();
          whenDrained(s);
          return;
        }
        s.stalledSince = 0;
        const frame = refFrame(s, c.items[c.next]!);
        c.next++;
        if (frame !== undefined) ws.send(frame, SEND_OPTS);
      }
      // Live changes skipped meanwhile (the output was backed up): take them from the store, then end.
      if (s.behindFrom === 0) break;
      const from = s.behindFrom;
      s.behindFrom = 0;
      c.version = store.currentVersion();
      c.items = lackingFrom(s, from);
      c.next = 0;
    }
    s.catchup = undefined;
    s.state = LIVE;
    s.stalledSince = 0;
    if (c.announce) {
      ws.send(encodeHubMessage({ v: V, kind: 'synced', version: c.version }), SEND_OPTS);
      log.debug({ event: 'hub.session_synced', ...who(s), version: c.version }, 'hub catch-up complete');
    }
  };

  /** The output drained: continue a catch-up, or catch a live session up on what it skipped. */
  const resume = (s: Session): void => {
    if (s.state === CATCHING_UP) {
      pumpCatchup(s);
      return;
    }
    if (s.state !== LIVE || s.behindFrom === 0) return;
    const from = s.behindFrom;
    s.behindFrom = 0;
    s.state = CATCHING_UP;
    s.catchup = { items: [], next: 0, version: store.currentVersion(), announce: false };
    s.catchup.items = lackingFrom(s, from);
    pumpCatchup(s);
  };
  const resumeSafe = (s: Session): void => {
    try {
      resume(s);
    } catch (e) {
      internalError(s, e, 'catch-up');
    }
  };

  // ---- messages

  const onHello = (s: Session, m: HubHello): void => {
    const now = clock.now();
    const { reset } = store.bindStore(s.node, m.storeId, now, { outboxSeq: m.outboxSeq, ...(m.resync === true ? { resync: true } : {}) });
    s.ws.send(encodeHubMessage({ v: V, kind: 'welcome', node: s.node, sessionId: s.id, heartbeatMs: timing.heartbeatMs, resync: reset }), SEND_OPTS);
    // Snapshot and list in the same turn: every change after this is a live frame (onChange), so nothing
    // falls in between. A live frame may overtake an older catch-up frame of the same resource: the edge
    // applies a resource only when its version is newer, so the order does not matter.
    const version = store.currentVersion();
    const items = store.pendingFor(s.node).map(refOf);
    s.state = CATCHING_UP;
    s.catchup = { items, next: 0, version, announce: true };
    log.info({ event: 'hub.session_hello', ...who(s), agent: m.agent, resync: reset, pending: items.length }, 'hub session catching up');
    pumpCatchup(s);
  };

  const onAck = (s: Session, m: HubAck): void => {
    const held = m.inventory === true;
    if (held) {
      s.inventoryItems += m.items.length;
      if (s.inventoryItems > MAX_INVENTORY_ITEMS_PER_SESSION) throw new HubProtocolError('hub/unexpected-kind', 'an inventory is sent once per session');
    }
    for (const i of m.items) {
      acks.push(
        i.deleted === true
          ? { node: s.node, kind: i.kind, name: i.name, version: i.version, deleted: true }
          : held
            ? { node: s.node, kind: i.kind, name: i.name, version: i.version, held: true }
            : { node: s.node, kind: i.kind, name: i.name, version: i.version },
      );
    }
    if (acks.length >= timing.ackFlushItems) flushAcks();
    else if (ackTimer === undefined) {
      ackTimer = setTimeout(flushAcksSafe, timing.ackFlushMs);
      ackTimer.unref();
    }
  };

  const onStatus = (s: Session, m: HubStatus): void => {
    const now = clock.now();
    s.statusTokens = Math.min(STATUS_FRAME_BURST, s.statusTokens + ((now - s.statusAt) / 1000) * STATUS_FRAMES_PER_SECOND);
    s.statusAt = now;
    if (s.statusTokens < 1) {
      log.warn({ event: 'security.hub_rate_limited', code: 'hub/status-rate', ...who(s), limit_per_s: STATUS_FRAMES_PER_SECOND }, 'hub status frames over the rate limit; session closed');
      closeSession(s, 'overloaded', 'hub/status-rate', 'too many status frames');
      return;
    }
    s.statusTokens -= 1;
    // The node is the certificate's: an entry about another node is not this node's to report. It is not
    // stored (recordStatus skips it, and entries about resources that do not target the node), but the
    // session goes on and the seq advances: one bad entry must not block the node's outbox for good.
    const foreign = m.entries.filter((e) => e.kind === 'Node' && e.name !== s.node);
    if (foreign.length > 0) {
      log.warn({ event: 'security.hub_foreign_status', code: 'hub/foreign-status', ...who(s), entries: foreign.length, claimed: foreign[0]!.name }, 'hub status entries about another node ignored');
    }
    const last = store.recordStatus(s.node, m.entries, clock.now());
    if (last >= 1) sendControl(s, Buffer.from(encodeHubMessage({ v: V, kind: 'status.ack', seq: last }), 'utf8'));
  };

  const onFrame = (s: Session, data: RawData, isBinary: boolean): void => {
    if (isBinary) throw new HubProtocolError('hub/malformed', 'binary frames are not accepted: one JSON text frame per message');
    const m = decodeEdgeToCloudHub(Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data));
    switch (m.kind) {
      case 'hello':
        if (s.state !== AWAITING_HELLO) throw new HubProtocolError('hub/unexpected-kind', 'hello was already received on this session');
        onHello(s, m);
        return;
      case 'ack':
        if (s.state === AWAITING_HELLO) throw new HubProtocolError('hub/unexpected-kind', 'hello must be the first message');
        onAck(s, m);
        return;
      case 'status':
        if (s.state === AWAITING_HELLO) throw new HubProtocolError('hub/unexpected-kind', 'hello must be the first message');
        onStatus(s, m);
        return;
      default: {
        const never: never = m;
        throw new HubProtocolError('hub/unknown-kind', `unhandled kind ${String((never as { kind?: unknown }).kind)}`);
      }
    }
  };

  // ---- ws listeners: shared by every session (`this` is the WebSocket)

  function onMessage(this: WebSocket, data: RawData, isBinary: boolean): void {
    const s = (this as HubSocket)[SESSION];
    if (s === undefined) return;
    if (s.state === CLOSING) {
      // Acks the peer sent before it saw our close are still good, unless the close was about the peer.
      if (!ACKS_WHILE_CLOSING.has(s.closeCode) || isBinary) return;
      try {
        const m = decodeEdgeToCloudHub(Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer));
        if (m.kind === 'ack') onAck(s, m);
      } catch {
        // ignored: the session is closing
      }
      return;
    }
    s.lastSeen = clock.now();
    s.probeAt = 0;
    try {
      onFrame(s, data, isBinary);
    } catch (e) {
      if (e instanceof HubProtocolError) violation(s, e);
      else internalError(s, e, 'message');
    }
  }

  function onAlive(this: WebSocket): void {
    const s = (this as HubSocket)[SESSION];
    if (s === undefined || s.state === CLOSING) return;
    s.lastSeen = clock.now();
    s.probeAt = 0;
  }

  function onError(this: WebSocket, e: Error & { code?: string }): void {
    const s = (this as HubSocket)[SESSION];
    if (s === undefined) return;
    try {
      // ws's receiver refused a frame (too large: 1009; invalid UTF-8, opcode or masking: 1002/1007) and
      // has already started the close with that code.
      const code = e.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? 'hub/too-large' : 'hub/malformed';
      counters.protocolViolations++;
      log.warn({ event: 'security.hub_protocol_violation', code, ws_error: typeof e.code === 'string' ? e.code : 'unknown', ...who(s), source: s.source }, 'hub protocol violation');
      if (s.state !== CLOSING) {
        s.state = CLOSING;
        s.closingAt = clock.now();
        s.closeCode = code === 'hub/too-large' ? HUB_CLOSE_CODES.tooLarge.code : HUB_CLOSE_CODES.protocol.code;
        s.closeReason = code;
        s.catchup = undefined;
      }
    } catch {
      // never throw from a listener
    }
  }

  function onClose(this: WebSocket, code: number, reason: Buffer): void {
    const s = (this as HubSocket)[SESSION];
    if (s === undefined) return;
    try {
      detach(s);
      counters.closed++;
      const by = s.closeCode !== 0 ? 'cloud' : 'edge';
      log.info(
        {
          event: 'hub.session_closed',
          ...who(s),
          code: s.closeCode !== 0 ? s.closeCode : code,
          reason: s.closeReason !== '' ? s.closeReason : reason.toString('utf8').slice(0, 123),
          by,
          duration_ms: clock.now() - s.openedAt,
        },
        'hub session closed',
      );
      s.state = CLOSING;
      delete (this as HubSocket)[SESSION];
    } catch {
      // never throw from a listener
    }
  }

  const accept = (ws: WebSocket, node: string, peer: HubPeer, source: string): void => {
    const now = clock.now();
    const s: Session = {
      ws,
      node,
      id: randomBytes(16).toString('base64url'),
      source,
      chainDer: peer.chainDer,
      notAfter: peer.notAfter,
      openedAt: now,
      lastSeen: now,
      state: AWAITING_HELLO,
      probeAt: 0,
      closingAt: 0,
      closeCode: 0,
      closeReason: '',
      catchup: undefined,
      behindFrom: 0,
      stalledSince: 0,
      statusTokens: STATUS_FRAME_BURST,
      statusAt: now,
      inventoryItems: 0,
    };
    (ws as HubSocket)[SESSION] = s;
    ws.on('message', onMessage);
    ws.on('ping', onAlive);
    ws.on('pong', onAlive);
    ws.on('error', onError);
    ws.on('close', onClose);
    byNode.set(node, s);
    counters.opened++;
    log.info({ event: 'hub.session_opened', ...who(s), source }, 'hub session opened');
  };

  // ------------------------------------------------------------------------------------------ acks

  const flushAcks = (): void => {
    if (ackTimer !== undefined) {
      clearTimeout(ackTimer);
      ackTimer = undefined;
    }
    if (acks.length === 0) return;
    const batch = acks;
    acks = [];
    const now = clock.now();
    // The resource's head as it is now for the acking node, read once per flush and never its data (an ack
    // frame must not make the cloud parse the resources it names). null: no live resource of that name.
    const heads = new Map<string, { version: number; targeted: boolean } | null>();
    const headOf = (node: string, kind: ResourceKind, name: string): { version: number; targeted: boolean } | null | undefined => {
      const key = `${node}\0${kind}\0${name}`;
      let h = heads.get(key);
      if (h === undefined) {
        try {
          h = store.headFor(kind, name, node) ?? null;
        } catch {
          return undefined;
        }
        heads.set(key, h);
      }
      return h;
    };
    const perNode = new Map<string, AckItemInput[]>();
    const foreign = new Map<string, { items: number; kind: ResourceKind; name: string }>();
    const deletes: Array<{ node: string; kind: ResourceKind; name: string; version: number }> = [];
    for (const a of batch) {
      if (a.deleted !== true) {
        const h = headOf(a.node, a.kind, a.name);
        if (h === undefined) continue; // the store failed: the ack comes again (inventory, resend)
        if (h === null || !h.targeted) {
          // Not (or no longer) this node's: never recorded (a node does not get to appear as holding another
          // node's resource). It is told to delete it, at the global version whether or not the name exists,
          // so that the answer reveals neither existence nor version. The legitimate case: the ack crossed a
          // delete or an untargeting (in flight, or buffered here, when the fan-out looked for holders).
          // Logged every time: a node probing names of other nodes' resources is seen (the legitimate case,
          // an ack crossing a change, shows up here too, rarely).
          const f = foreign.get(a.node);
          if (f === undefined) foreign.set(a.node, { items: 1, kind: a.kind, name: a.name });
          else f.items++;
          deletes.push({ node: a.node, kind: a.kind, name: a.name, version: Math.max(1, store.currentVersion()) });
          continue;
        }
      }
      let list = perNode.get(a.node);
      if (list === undefined) perNode.set(a.node, (list = []));
      list.push(
        a.deleted === true
          ? { kind: a.kind, name: a.name, version: a.version, deleted: true }
          : a.held === true
            ? { kind: a.kind, name: a.name, version: a.version, held: true }
            : { kind: a.kind, name: a.name, version: a.version },
      );
    }
    for (const [node, f] of foreign) {
      log.warn({ event: 'security.hub_foreign_ack', code: 'hub/foreign-ack', node, items: f.items, kind: f.kind, name: f.name }, 'hub acks for resources that do not (or no longer) target the node: not recorded, a delete sent');
    }
    // Every node's acks of this flush in one transaction (a fan-out's 10,000 acks are one write).
    const writes: Array<{ node: string; items: AckItemInput[] }> = [];
    for (const [node, items] of perNode) {
      for (let i = 0; i < items.length; i += MAX_HUB_ACK_ITEMS) writes.push({ node, items: items.slice(i, i + MAX_HUB_ACK_ITEMS) });
    }
    if (writes.length > 0) {
      try {
        // Inventory acks below what was recorded: the node lost those versions; send the current ones again.
        for (const l of store.recordAckBatch(writes, now)) {
          const sess = byNode.get(l.node);
          const r = sess === undefined ? undefined : store.get(l.kind, l.name);
          if (sess !== undefined && r !== undefined && store.targets(r, l.node)) sendControl(sess, putFrame(r));
        }
      } catch (e) {
        // Lost acks cost an idempotent resend at the node's next catch-up.
        log.error({ event: 'hub.ack_write_failed', nodes: perNode.size, code: codeOf(e), err: String(e).slice(0, 200), items: writes.reduce((n, b) => n + b.items.length, 0) }, 'hub acks not recorded');
      }
    }
    for (const d of deletes) {
      const s = byNode.get(d.node);
      if (s !== undefined) sendControl(s, deleteFrame(d.kind, d.name, d.version));
    }
  };
  const flushAcksSafe = (): void => {
    try {
      flushAcks();
    } catch (e) {
      log.error({ event: 'hub.ack_flush_failed', code: codeOf(e), err: String(e).slice(0, 200) }, 'hub ack flush failed');
    }
  };

  // ------------------------------------------------------------------------------------------ fan-out

  const forTargets = (nodes: readonly string[], fn: (s: Session) => void): void => {
    if (nodes.includes(ALL_NODES)) {
      for (const s of byNode.values()) fn(s);
      return;
    }
    for (const n of nodes) {
      const s = byNode.get(n);
      if (s !== undefined) fn(s);
    }
  };

  const onChange = (c: ResourceChange): void => {
    if (closed) return;
    const r = c.resource;
    if (r.deleted) {
      // Every node that was targeted (now or just before) may hold it.
      const frame = deleteFrame(r.kind, r.name, r.version);
      const sent = new Set<Session>();
      const send = (s: Session): void => {
        if (sent.has(s)) return;
        sent.add(s);
        sendResource(s, frame, r.version);
      };
      forTargets(r.nodes, send);
      if (c.previousNodes !== undefined) forTargets(c.previousNodes, send);
      return;
    }
    const frame = putFrame(r);
    forTargets(r.nodes, (s) => sendResource(s, frame, r.version));
    // Nodes the resource no longer targets delete it (never a node it did not target: no name leaks).
    if (c.previousNodes !== undefined && !r.nodes.includes(ALL_NODES)) {
      const del = deleteFrame(r.kind, r.name, r.version);
      forTargets(c.previousNodes, (s) => {
        if (!store.targets(r, s.node)) sendResource(s, del, r.version);
      });
    }
  };
  const unsubscribe = store.onChange((c) => {
    try {
      onChange(c);
    } catch (e) {
      log.error({ event: 'hub.fanout_failed', code: codeOf(e), err: String(e).slice(0, 200), kind: c.resource.kind, name: c.resource.name }, 'hub fan-out failed');
    }
  });

  // ------------------------------------------------------------------------------------------ checks

  const recheck = (s: Session): void => {
    if (s.state === CLOSING) return;
    let ok = false;
    let code = 'node-api/unauthenticated';
    try {
      ok = opts.authenticate(s.chainDer, s.source).nodeName === s.node;
    } catch (e) {
      code = codeOf(e);
    }
    // (authenticate may have re-entered: a promotion notifies the node registry, which may close this session)
    if (ok || (s.state as SessionState) === CLOSING) return;
    log.warn({ event: 'security.hub_reauthentication_failed', code, ...who(s), source: s.source }, 'hub session no longer authenticates');
    closeSession(s, 'reauthenticate', 'hub/reauthenticate', 'the node SVID no longer authenticates; connect again');
  };

  let recheckQueue: string[] = [];
  let recheckNext = 0;
  let recheckScheduled = false;
  const runRecheck = (): void => {
    recheckScheduled = false;
    try {
      const end = Math.min(recheckQueue.length, recheckNext + RECHECK_BATCH);
      for (; recheckNext < end; recheckNext++) {
        const s = byNode.get(recheckQueue[recheckNext]!);
        if (s !== undefined) recheck(s);
      }
    } catch (e) {
      log.error({ event: 'hub.recheck_failed', code: codeOf(e), err: String(e).slice(0, 200) }, 'hub session re-check failed');
    }
    if (recheckNext < recheckQueue.length && !closed) {
      recheckScheduled = true;
      setImmediate(runRecheck);
    } else {
      recheckQueue = [];
      recheckNext = 0;
    }
  };

  const sweep = (): void => {
    const now = clock.now();
    const due: Array<[Session, 'terminate' | 'expired' | 'hello' | 'idle' | 'probe' | 'slow']> = [];
    for (const s of lingering) if (now - s.closingAt >= timing.closeGraceMs) due.push([s, 'terminate']);
    for (const s of byNode.values()) {
      if (s.state === CLOSING) {
        if (now - s.closingAt >= timing.closeGraceMs) due.push([s, 'terminate']);
      } else if (now >= s.notAfter) due.push([s, 'expired']);
      else if (s.state === AWAITING_HELLO && now - s.openedAt >= timing.helloTimeoutMs) due.push([s, 'hello']);
      else if (now - s.lastSeen >= timing.idleMs) due.push([s, 'idle']);
      else if (s.probeAt !== 0 && now - s.probeAt >= timing.probeMs) due.push([s, 'probe']);
      else if ((s.stalledSince !== 0 && now - s.stalledSince >= timing.slowReaderMs) || s.ws.bufferedAmount > limits.sendHighWaterBytes) due.push([s, 'slow']);
    }
    for (const [s, what] of due) {
      try {
        switch (what) {
          case 'terminate':
            detach(s);
            s.ws.terminate();
            break;
          case 'expired':
            log.info({ event: 'hub.svid_expired', code: 'hub/svid-expired', ...who(s), not_after: s.notAfter }, 'hub session closed at the peer SVID NotAfter');
            closeSession(s, 'svidExpired', 'hub/svid-expired', 'the node SVID expired; connect again with the renewed SVID');
            break;
          case 'hello':
            log.warn({ event: 'security.hub_hello_timeout', code: 'hub/hello-timeout', ...who(s), source: s.source }, 'hub session closed: no hello');
            closeSession(s, 'heartbeatTimeout', 'hub/hello-timeout', 'no hello received');
            break;
          case 'idle':
            log.info({ event: 'hub.session_idle', code: 'hub/heartbeat-timeout', ...who(s), idle_ms: now - s.lastSeen }, 'hub session closed: nothing received');
            closeSession(s, 'heartbeatTimeout', 'hub/heartbeat-timeout', 'nothing received for too long');
            break;
          case 'slow':
            slowReader(s, s.stalledSince !== 0 ? 'stalled' : 'buffer');
            break;
          case 'probe':
            // The old session did not answer while another connection of its node waited: it is gone.
            log.warn({ event: 'hub.session_probe_failed', code: 'hub/probe-failed', ...who(s), source: s.source }, 'hub session terminated: no answer to the probe');
            s.state = CLOSING;
            s.closingAt = now;
            s.closeCode = HUB_CLOSE_CODES.probeFailed.code;
            s.closeReason = 'hub/probe-failed';
            detach(s);
            s.ws.terminate();
            break;
        }
      } catch (e) {
        log.error({ event: 'hub.sweep_failed', ...who(s), code: codeOf(e), err: String(e).slice(0, 200) }, 'hub sweep failed for a session');
      }
    }
  };
  const sweepTimer = opts.sweepTimer === false ? undefined : setInterval(() => {
    try {
      sweep();
    } catch (e) {
      log.error({ event: 'hub.sweep_failed', code: codeOf(e), err: String(e).slice(0, 200) }, 'hub sweep failed');
    }
  }, timing.sweepIntervalMs);
  sweepTimer?.unref();

  // ------------------------------------------------------------------------------------------ the hub

  return {
    handleUpgrade(req, socket, head, node, peer) {
      const source = (socket as Duplex & { remoteAddress?: string }).remoteAddress ?? 'unknown';
      if (closed) {
        log.warn({ event: 'security.hub_overloaded', code: HUB_UPGRADE_REFUSALS.overloaded.code, node, source, reason: 'shutting down' }, 'hub session refused: the cloud is shutting down');
        return { ...HUB_UPGRADE_REFUSALS.overloaded, message: 'the cloud is shutting down' };
      }
      const d = connectLimiter.take(node, clock.now());
      if (!d.allowed) {
        log.warn({ event: 'security.hub_rate_limited', code: 'hub/connect-rate', node, source, retry_after_ms: d.retryAfterMs }, 'hub connection refused: this node reconnects too often');
        return { ...HUB_UPGRADE_REFUSALS.overloaded, message: `this node reconnects too often; retry in ${Math.ceil(d.retryAfterMs / 1000)} s` };
      }
      const existing = byNode.get(node);
      if (existing !== undefined) {
        // Closing already (our close, or the edge's close whose handshake is still under way), or a session
        // that never said hello (it cannot hold the node's place: a clone must not keep the node out).
        if (existing.state === CLOSING || existing.state === AWAITING_HELLO || existing.ws.readyState !== existing.ws.OPEN) {
          // The new connection takes over at once, and the old one finishes its closing handshake on the
          // side (the peer learns why it was closed).
          if (existing.state !== CLOSING) closeSession(existing, 'heartbeatTimeout', 'hub/replaced', 'another connection of this node took over before this one said hello');
          byNode.delete(node);
          lingering.add(existing);
        } else {
          counters.refusedDuplicate++;
          // Both addresses: with a cloned SVID either one may be the clone.
          log.warn(
            {
              event: 'security.hub_duplicate_session',
              code: HUB_UPGRADE_REFUSALS.sessionExists.code,
              node,
              source,
              session: existing.id,
              existing_source: existing.source,
              existing_opened_at: new Date(existing.openedAt).toISOString(),
            },
            'second hub connection for a node refused',
          );
          if (existing.probeAt === 0) {
            existing.probeAt = clock.now();
            try {
              existing.ws.ping();
            } catch {
              // the sweep terminates it if it does not answer
            }
          }
          return { ...HUB_UPGRADE_REFUSALS.sessionExists, message: 'this node already has a live hub session' };
        }
      }
      if (byNode.size >= limits.maxSessions) {
        counters.refusedOverloaded++;
        log.warn({ event: 'security.hub_overloaded', code: HUB_UPGRADE_REFUSALS.overloaded.code, node, source, sessions: byNode.size }, 'hub session refused: too many sessions');
        return { ...HUB_UPGRADE_REFUSALS.overloaded, message: 'too many hub sessions; try again later' };
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        try {
          accept(ws, node, peer, source);
        } catch (e) {
          log.error({ event: 'hub.internal_error', node, code: codeOf(e), err: String(e).slice(0, 200) }, 'hub session could not start');
          ws.terminate();
        }
      });
      return undefined;
    },

    closeNode(name, reason) {
      // Nothing more of this node is recorded: neither what is buffered nor what a closing session still sends.
      acks = acks.filter((a) => a.node !== name);
      for (const l of lingering) if (l.node === name) l.closeCode = reason === 'banned' ? HUB_CLOSE_CODES.banned.code : HUB_CLOSE_CODES.evicted.code;
      const s = byNode.get(name);
      if (s !== undefined && s.state === CLOSING) s.closeCode = reason === 'banned' ? HUB_CLOSE_CODES.banned.code : HUB_CLOSE_CODES.evicted.code;
      if (s === undefined || s.state === CLOSING) return 0;
      log.warn({ event: 'security.hub_session_closed', code: reason === 'banned' ? 'hub/banned' : 'hub/evicted', ...who(s) }, 'hub session of a node closed');
      if (reason === 'banned') closeSession(s, 'banned', 'hub/banned', 'this node is banned');
      else closeSession(s, 'evicted', 'hub/evicted', 'this node was evicted; attest again');
      return 1;
    },

    reauthenticate(name) {
      const s = byNode.get(name);
      if (s !== undefined) recheck(s);
    },

    recheckAll() {
      recheckQueue = [...byNode.keys()];
      recheckNext = 0;
      if (!recheckScheduled && recheckQueue.length > 0) {
        recheckScheduled = true;
        setImmediate(runRecheck);
      }
    },

    nudgeEntries(node) {
      if (node !== undefined) {
        const s = byNode.get(node);
        if (s !== undefined) sendControl(s, NUDGE_ENTRIES);
        return;
      }
      for (const s of byNode.values()) sendControl(s, NUDGE_ENTRIES);
    },

    stats() {
      const st = { awaitingHello: 0, catchingUp: 0, live: 0, closing: 0, behind: 0 };
      for (const s of byNode.values()) {
        if (s.behindFrom !== 0) st.behind++;
        if (s.state === AWAITING_HELLO) st.awaitingHello++;
        else if (s.state === CATCHING_UP) st.catchingUp++;
        else if (s.state === LIVE) st.live++;
        else st.closing++;
      }
      return { sessions: byNode.size, ...st, maxSessions: limits.maxSessions, ...counters, pendingAcks: acks.length };
    },

    sweep,
    flushAcks,

    async close() {
      if (closed) return;
      closed = true;
      unsubscribe();
      if (sweepTimer !== undefined) clearInterval(sweepTimer);
      flushAcksSafe();
      const all = [...byNode.values(), ...lingering];
      for (const s of all) closeSession(s, 'goingAway', 'hub/going-away', 'the cloud is shutting down');
      // Wait for the closing handshakes (acks in flight are still taken), at most closeGraceMs. Wall time on
      // purpose: this waits for real sockets, whatever the injected clock says.
      const deadline = Date.now() + timing.closeGraceMs;
      while (all.some((s) => s.ws.readyState !== WebSocket.CLOSED) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      for (const s of all) {
        detach(s);
        if (s.ws.readyState !== WebSocket.CLOSED) s.ws.terminate();
      }
      flushAcksSafe();
      if (ackTimer !== undefined) clearTimeout(ackTimer);
      ackTimer = undefined;
      wss.close();
    },
  };
}
