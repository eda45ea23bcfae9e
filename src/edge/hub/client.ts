/**
 * EdgeHub (issue #5): the edge's one WebSocket session with the cloud's CloudHub, inside mutual TLS.
 *
 * Transport: `wss://HOST:PORT/v1/hub` on the node API listener; TLS 1.3 only; the client certificate is the
 * node X509-SVID of the identity source (embedded identity plane or a SPIRE agent); the server must present
 * an X509-SVID of our trust domain's bundle whose SPIFFE ID is exactly `spiffe://TD/edgeward/cloud`,
 * checked inside the handshake (`checkCloudServer`, by ID, never by host name), so nothing is sent to any
 * other server. Frames from the cloud are at most MAX_HUB_CLOUD_FRAME_BYTES (ws `maxPayload`), text only,
 * and strictly decoded; anything else is a protocol violation (event `security.hub_protocol_violation`,
 * close 4400, reconnect with backoff), never a crash.
 *
 * Session: `hello{storeId}` first, then `welcome`; puts and deletes are applied to the edge store in
 * batches (frames arriving in the same turn of the event loop are one transaction, at most 1000 items),
 * and each batch is acknowledged with one `ack` only after it committed (kubeedge.md §3: KubeEdge acks
 * before persisting). Every stored put adds a `Stored` status entry to the durable outbox. `synced` records
 * the version the catch-up reached. The outbox is sent in seq order, one `status` batch (<= 100 entries, <=
 * 64 KiB) in flight at a time, the next after its `status.ack`; unacknowledged entries are sent again on
 * the next session (at-least-once; the cloud ignores seqs it has), so status survives cloud outages and
 * edge restarts (kubeedge.md §3 "edge->cloud messages dropped").
 *
 * Liveness: a WebSocket ping every HUB_PING_INTERVAL_MS; a session on which nothing arrived for
 * HUB_DEAD_AFTER_MS is terminated. Reconnects use capped exponential backoff with full jitter (base 1 s,
 * cap 60 s, reset after a session stayed up 60 s; kubeedge.md §9 "no jitter"); graceful reconnects
 * (rotation of our SVID, the cloud's SVID reaching NotAfter, close codes 1000/1001/4401/4410) wait only a
 * small jitter. A ban (4403, HTTP 403) keeps the edge serving its offline state and retries at the cap.
 */
import {
  derToPem,
  EdgewardError,
  fullJitterBackoff,
  parseCertificate,
  pkcs8FromPrivateKey,
  type Clock,
  type IdentitySource,
  type TrustDomain,
} from '../../identity/index.js';
import { nodeNameFromSpiffeId } from '../../attestation/index.js';
import {
  decodeCloudToEdgeHub,
  encodeHubMessage,
  hubCloseByCode,
  HubProtocolError,
  HUB_CLOSE_CODES,
  HUB_DEAD_AFTER_MS,
  HUB_PATH,
  HUB_PING_INTERVAL_MS,
  HUB_PROTOCOL_VERSION,
  MAX_HUB_ACK_ITEMS,
  MAX_HUB_CLOUD_FRAME_BYTES,
  MAX_HUB_EDGE_FRAME_BYTES,
  MAX_HUB_STATUS_ENTRIES,
  type AckItem,
  type CloudToEdgeHubMessage,
  type HubHello,
  type HubReconnect,
  type ResourceKind,
  type StatusEntry,
} from '../../protocol/index.js';
import { checkCloudServer, decodeCloudReply, type CloudAddress } from '../cloud-client/client.js';
import { CloudRefusedError } from '../cloud-client/errors.js';
import type { Timers } from '../svid/timers.js';
import type { EdgeLogger } from '../main.js';
import { EdgeHubError } from './errors.js';
import type { EdgeHubStore, HubItem, StoreChange } from './store.js';
import { wsHubConnector, type HubConnector, type HubConnectOptions, type HubSocket, type HubSocketEvents } from './socket.js';

export const HUB_BACKOFF_BASE_MS = 1_000;
export const HUB_BACKOFF_CAP_MS = 60_000;
/** A session that stayed up this long resets the backoff. */
export const HUB_BACKOFF_RESET_AFTER_MS = 60_000;
/** Graceful reconnects wait a uniform time in [0, this). */
export const HUB_GRACEFUL_JITTER_MS = 250;
/** The TLS + HTTP upgrade must complete within this (ws `handshakeTimeout`). */
export const HUB_HANDSHAKE_TIMEOUT_MS = 15_000;
/** `welcome` must follow `hello` within this. */
export const HUB_WELCOME_TIMEOUT_MS = 15_000;
/** After we close a session, the socket has this long to finish the closing handshake before it is destroyed. */
export const HUB_CLOSE_WAIT_MS = 5_000;
/** The `agent` field of `hello`. */
export const EDGE_HUB_AGENT = 'edgeward/0.1.0';
/** Budget of one `ack`/`status` frame's items (the frame limit minus room for the envelope). */
const FRAME_ITEMS_BUDGET = MAX_HUB_EDGE_FRAME_BYTES - 1024;
/** Consecutive graceful reconnects of sessions shorter than this fall back to backoff (no reconnect storm). */
const SHORT_SESSION_MS = 10_000;
const MAX_QUICK_JITTERS = 3;

/** What the hub needs of the edge store (store.ts). */
export type HubStorePort = Pick<
  EdgeHubStore,
  | 'storeId'
  | 'apply'
  | 'list'
  | 'appendStatus'
  | 'pendingStatus'
  | 'ackStatus'
  | 'outboxSize'
  | 'outboxHighSeq'
  | 'needsResync'
  | 'beginResync'
  | 'endResync'
  | 'syncedVersion'
  | 'setSyncedVersion'
>;

// ---------------------------------------------------------------------------------------------------
// The hub

export interface EdgeHubOptions {
  address: CloudAddress;
  trustDomain: TrustDomain;
  /** The node SVID (client certificate) and the bundles (to check the cloud). */
  identity: IdentitySource;
  store: HubStorePort;
  clock: Clock;
  timers: Timers;
  logger: EdgeLogger;
  /** [0, 1) uniform, for jitter (Math.random by default). */
  random?: () => number;
  /** The cloud nudged the edge (`entries`: the delegated registration entries changed). */
  onNudge?(topic: 'entries'): void;
  /**
   * The cloud refused this node: a close code name (`hub/banned`, `hub/evicted`, `hub/reauthenticate`) or an
   * upgrade refusal's code (`node-api/unauthenticated`, `node/banned`, `node/unknown`, ...). Joined agents
   * re-attest on `hub/evicted` and the unauthenticated codes (NodeSvidManager.renewNow).
   */
  onRefused?(code: string): void;
  /** After every batch stored from the cloud (or removed by a resync): what changed, in order. */
  onResourcesChanged?(changes: readonly StoreChange[]): void;
  /** The `agent` of `hello` (<= 64 printable ASCII). */
  agent?: string;
  /** Tests: the socket implementation (ws by default). */
  connector?: HubConnector;
  /** Tests: how a batch flush is deferred (setImmediate by default: frames of one event-loop turn coalesce). */
  defer?: (fn: () => void) => void;
}

export interface EdgeHubStatus {
  /** A session is open and welcomed. */
  connected: boolean;
  state: 'idle' | 'connecting' | 'syncing' | 'synced' | 'waiting' | 'closed';
  cloud: string;
  sessionId: string | null;
  /** The global version the last completed catch-up reached (persisted in the store). */
  lastSyncedVersion: number;
  lastError: string | null;
  /** Unacknowledged status entries in the outbox. */
  outbox: number;
  /** Reconnects scheduled since start. */
  reconnects: number;
  connectedAt: number | null;
  nextAttemptAt: number | null;
}

export interface StatusReport {
  kind: ResourceKind | 'Node';
  name: string;
  phase: string;
  message?: string | undefined;
  observedVersion?: number | undefined;
  /** A small JSON object (protocol status-detail.ts), e.g. a Device's reported twins. */
  detail?: Record<string, unknown> | undefined;
}

export interface ReportStatusOptions {
  /** Coalesce: unsent outbox entries of the same object are replaced by this one (store.ts AppendStatusOptions). */
  replace?: boolean;
}

export interface EdgeHub {
  start(): void;
  close(): Promise<void>;
  status(): EdgeHubStatus;
  /** Validate and append a status entry to the durable outbox (sent when a session is up). */
  reportStatus(report: StatusReport, options?: ReportStatusOptions): { seq: number };
}

interface Ending {
  code: number;
  reason: string;
  reconnect: HubReconnect | 'none';
}

interface Session {
  readonly n: number;
  readonly ws: HubSocket;
  /** Our SVID's serial on this connection. */
  readonly serial: string;
  readonly expectedNode: string | undefined;
  startedAt: number;
  open: boolean;
  welcomed: boolean;
  welcomedAt: number | undefined;
  sessionId: string | undefined;
  synced: boolean;
  /** Resync session: objects already written in it (their first frame replaced the stored row). */
  resyncForced?: Set<string>;
  lastSeen: number;
  peerNotAfter: number | undefined;
  serverRefusal: Error | undefined;
  refusal: { status: number; code: string; message: string } | undefined;
  error: unknown;
  cloudError: string | undefined;
  pending: HubItem[];
  flushScheduled: boolean;
  /** Last seq of the status batch in flight. */
  inflight: number | undefined;
  /** With `welcome.resync`: objects the catch-up named (anything else held locally is stale). */
  catchup: Set<string> | undefined;
  applied: number;
  ending: Ending | undefined;
  finished: boolean;
  timers: { ping?: unknown; dead?: unknown; welcome?: unknown; expiry?: unknown; closeWait?: unknown };
}

const key = (kind: string, name: string): string => `${kind}/${name}`;

function errText(e: unknown): string {
  if (e instanceof EdgewardError) return `${e.code}: ${e.message}`;
  return e instanceof Error ? e.message : String(e);
}

function errFields(e: unknown): Record<string, unknown> {
  return e instanceof EdgewardError ? { code: e.code, err: e.message } : { err: e instanceof Error ? e.message : String(e) };
}

class EdgeHubImpl implements EdgeHub {
  readonly #o: EdgeHubOptions;
  readonly #log: EdgeLogger;
  readonly #random: () => number;
  readonly #connector: HubConnector;
  readonly #defer: (fn: () => void) => void;
  #session: Session | undefined;
  #sessions = 0;
  #started = false;
  #closed = false;
  #attempt = 0;
  #quickJitters = 0;
  #reconnects = 0;
  #retryTimer: unknown;
  #nextAttemptAt: number | undefined;
  #lastError: string | null = null;
  #lastIdentityProblem: string | undefined;
  #unsubscribe: (() => void) | undefined;
  #closeWaiters: Array<() => void> = [];

  constructor(o: EdgeHubOptions) {
    this.#o = o;
    this.#log = o.logger;
    this.#random = o.random ?? Math.random;
    this.#connector = o.connector ?? wsHubConnector;
    this.#defer = o.defer ?? ((fn) => void setImmediate(fn));
  }

  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    this.#unsubscribe = this.#o.identity.onChange(() => this.#onIdentityChange());
    this.#connect();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribe?.();
    this.#clearRetry();
    const s = this.#session;
    if (s !== undefined && !s.finished) {
      const done = new Promise<void>((resolve) => this.#closeWaiters.push(resolve));
      this.#shutdown(s, HUB_CLOSE_CODES.goingAway.code, 'edge shutting down', 'none');
      await done;
    }
  }

  status(): EdgeHubStatus {
    const s = this.#session;
    const live = s !== undefined && !s.finished && s.ending === undefined;
    const connected = live && s.welcomed;
    let outbox = 0;
    let synced = 0;
    try {
      outbox = this.#o.store.outboxSize();
      synced = this.#o.store.syncedVersion();
    } catch {
      // a closed store: report zeros
    }
    const state: EdgeHubStatus['state'] = this.#closed
      ? 'closed'
      : connected
        ? s.synced
          ? 'synced'
          : 'syncing'
        : live
          ? 'connecting'
          : this.#retryTimer !== undefined
            ? 'waiting'
            : 'idle';
    return {
      connected,
      state,
      cloud: this.#o.address.text,
      sessionId: connected ? (s.sessionId ?? null) : null,
      lastSyncedVersion: synced,
      lastError: this.#lastError,
      outbox,
      reconnects: this.#reconnects,
      connectedAt: connected ? (s.welcomedAt ?? null) : null,
      nextAttemptAt: this.#retryTimer !== undefined ? (this.#nextAttemptAt ?? null) : null,
    };
  }

  reportStatus(report: StatusReport, options?: ReportStatusOptions): { seq: number } {
    if (this.#closed) throw new EdgeHubError('edge-hub/closed', 'the hub is closed');
    const entry: { -readonly [K in keyof Omit<StatusEntry, 'seq'>]: Omit<StatusEntry, 'seq'>[K] } = {
      kind: report.kind,
      name: report.name,
      phase: report.phase,
      at: this.#o.clock.now(),
    };
    if (report.message !== undefined) entry.message = report.message;
    if (report.observedVersion !== undefined) entry.observedVersion = report.observedVersion;
    if (report.detail !== undefined) entry.detail = report.detail;
    // What enters the durable outbox must be sendable: a row the cloud refuses would block it forever.
    try {
      encodeHubMessage({ v: HUB_PROTOCOL_VERSION, kind: 'status', entries: [{ seq: 1, ...entry }] });
    } catch (e) {
      throw new EdgeHubError('edge-hub/invalid-status', e instanceof EdgewardError ? e.message.replace(/^status\.entries\[0\]\./, '') : 'invalid status entry', { cause: e });
    }
    if (report.kind === 'Node') {
      // A node reports about itself only (the cloud would not store anything else).
      let self: string | undefined;
      try {
        self = nodeNameFromSpiffeId(this.#o.identity.svid().spiffeId, this.#o.trustDomain);
      } catch {
        self = undefined; // no usable SVID now: the name is checked by the cloud
      }
      if (self !== undefined && report.name !== self) throw new EdgeHubError('edge-hub/invalid-status', `a Node status is about this node (${self}), not ${report.name.slice(0, 63)}`);
    }
    const seq = this.#o.store.appendStatus(entry, options?.replace === true ? { replace: true } : undefined);
    const s = this.#session;
    if (s !== undefined) this.#pumpStatus(s);
    return { seq };
  }

  // ---- connection lifecycle

  #connect(): void {
    this.#retryTimer = undefined;
    this.#nextAttemptAt = undefined;
    if (this.#closed) return;
    const o = this.#o;
    let certPem: string;
    let keyPem: string;
    let caPem: string;
    let serial: string;
    let expectedNode: string | undefined;
    try {
      let svid;
      try {
        svid = o.identity.svid();
      } catch (e) {
        throw new EdgeHubError('edge-hub/no-identity', `no usable node SVID (${errText(e)})`, { cause: e });
      }
      const bundle = o.identity.bundles().get(o.trustDomain);
      if (bundle === undefined) throw new EdgeHubError('edge-hub/no-bundle', `no bundle for trust domain ${o.trustDomain.name}`);
      certPem = svid.chainDer.map((d) => derToPem(Buffer.from(d), 'CERTIFICATE')).join('');
      keyPem = derToPem(pkcs8FromPrivateKey(svid.privateKey), 'PRIVATE KEY');
      caPem = bundle.x509Authorities.map((d) => derToPem(d, 'CERTIFICATE')).join('');
      serial = svid.serialHex;
      try {
        expectedNode = nodeNameFromSpiffeId(svid.spiffeId, o.trustDomain);
      } catch {
        expectedNode = undefined;
      }
    } catch (e) {
      this.#lastError = errText(e);
      const problem = e instanceof EdgewardError ? e.code : 'unknown';
      if (this.#lastIdentityProblem !== problem) {
        this.#lastIdentityProblem = problem;
        this.#log.warn({ event: 'edge.hub_no_identity', cloud: o.address.text, ...errFields(e) }, 'the hub cannot connect without a node SVID and bundle; retrying');
      }
      this.#scheduleReconnect('backoff', undefined);
      return;
    }
    this.#lastIdentityProblem = undefined;
    const n = ++this.#sessions;
    // `s` is assigned below; the callbacks only run once the connector has returned.
    let s!: Session;
    const on: HubSocketEvents = {
      open: () => this.#onOpen(s),
      message: (data, isBinary) => this.#onMessage(s, data, isBinary),
      activity: () => {
        s.lastSeen = o.clock.now();
      },
      refused: (status, body) => this.#onRefused(s, status, body),
      error: (e) => {
        if (s.error === undefined) s.error = e;
        // ws refused a frame itself (over maxPayload: it closes with 1009; bad UTF-8, bad framing: 1007/1002).
        const wsCode = (e as { code?: unknown } | undefined)?.code;
        if (s.open && !s.finished && s.ending === undefined && typeof wsCode === 'string' && wsCode.startsWith('WS_ERR_')) {
          const code = wsCode === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? 'hub/too-large' : 'hub/malformed';
          this.#lastError = `protocol violation by the cloud: ${code}`;
          this.#log.warn(
            { event: 'security.hub_protocol_violation', code, ws_code: wsCode, cloud: o.address.text, session: s.sessionId, err: errText(e).slice(0, 200) },
            'the cloud sent an invalid hub frame; the session is closed',
          );
        }
      },
      close: (code, reason) => this.#onSocketClose(s, code, reason),
    };
    const connectOptions: HubConnectOptions = {
      url: `wss://${o.address.text}${HUB_PATH}`,
      certPem,
      keyPem,
      caPem,
      verifyServer: (chain) => {
        const refusal = checkCloudServer(chain, o.identity.bundles(), o.trustDomain, o.clock.now());
        if (refusal !== undefined) {
          s.serverRefusal = refusal;
          return refusal;
        }
        s.peerNotAfter = parseCertificate(chain[0]!).notAfter;
        return undefined;
      },
      maxPayload: MAX_HUB_CLOUD_FRAME_BYTES,
      handshakeTimeoutMs: HUB_HANDSHAKE_TIMEOUT_MS,
    };
    let ws: HubSocket;
    try {
      ws = this.#connector(connectOptions, on);
    } catch (e) {
      this.#lastError = errText(e);
      this.#log.warn({ event: 'edge.hub_connect_failed', cloud: o.address.text, ...errFields(e) }, 'cannot open the hub connection; retrying');
      this.#scheduleReconnect('backoff', undefined);
      return;
    }
    s = {
      n,
      ws,
      serial,
      expectedNode,
      startedAt: o.clock.now(),
      open: false,
      welcomed: false,
      welcomedAt: undefined,
      sessionId: undefined,
      synced: false,
      lastSeen: o.clock.now(),
      peerNotAfter: undefined,
      serverRefusal: undefined,
      refusal: undefined,
      error: undefined,
      cloudError: undefined,
      pending: [],
      flushScheduled: false,
      inflight: undefined,
      catchup: undefined,
      applied: 0,
      ending: undefined,
      finished: false,
      timers: {},
    };
    this.#session = s;
  }

  #onOpen(s: Session): void {
    if (s.finished || s.ending !== undefined) return;
    const o = this.#o;
    if (s.peerNotAfter === undefined) {
      // Never happens with the ws connector (the check runs inside the handshake); deny by default anyway.
      this.#log.warn({ event: 'security.hub_untrusted_server', cloud: o.address.text, code: 'cloud-client/untrusted-server' }, 'the hub server was not verified as the cloud; closing');
      this.#shutdown(s, HUB_CLOSE_CODES.protocol.code, 'server not verified', 'backoff', true);
      return;
    }
    s.open = true;
    s.lastSeen = o.clock.now();
    const hello: HubHello = { v: HUB_PROTOCOL_VERSION, kind: 'hello', storeId: o.store.storeId, agent: o.agent ?? EDGE_HUB_AGENT, outboxSeq: o.store.outboxHighSeq() };
    this.#send(s, o.store.needsResync() ? { ...hello, resync: true } : hello);
    s.timers.welcome = o.timers.setTimeout(() => {
      s.timers.welcome = undefined;
      if (s.welcomed || s.ending !== undefined) return;
      this.#lastError = 'no welcome from the cloud';
      this.#log.warn({ event: 'edge.hub_welcome_timeout', cloud: o.address.text, timeout_ms: HUB_WELCOME_TIMEOUT_MS }, 'the cloud did not answer hello; reconnecting');
      this.#shutdown(s, HUB_CLOSE_CODES.heartbeatTimeout.code, 'no welcome', 'backoff');
    }, HUB_WELCOME_TIMEOUT_MS);
    this.#schedulePing(s);
    this.#scheduleDeadCheck(s, HUB_DEAD_AFTER_MS);
    this.#scheduleExpiry(s);
  }

  #schedulePing(s: Session): void {
    s.timers.ping = this.#o.timers.setTimeout(() => {
      s.timers.ping = undefined;
      if (s.finished || s.ending !== undefined) return;
      s.ws.ping();
      this.#schedulePing(s);
    }, HUB_PING_INTERVAL_MS);
  }

  #scheduleDeadCheck(s: Session, inMs: number): void {
    s.timers.dead = this.#o.timers.setTimeout(() => {
      s.timers.dead = undefined;
      if (s.finished || s.ending !== undefined) return;
      const silent = this.#o.clock.now() - s.lastSeen;
      if (silent < HUB_DEAD_AFTER_MS) {
        this.#scheduleDeadCheck(s, HUB_DEAD_AFTER_MS - silent);
        return;
      }
      this.#lastError = `nothing from the cloud for ${silent} ms`;
      this.#log.warn({ event: 'edge.hub_heartbeat_timeout', cloud: this.#o.address.text, session: s.sessionId, silent_ms: silent }, 'the hub session is silent; reconnecting');
      this.#shutdown(s, HUB_CLOSE_CODES.heartbeatTimeout.code, 'heartbeat timeout', 'backoff', true);
    }, Math.max(1, inMs));
  }

  /** Close the session when the cloud's SVID reaches its NotAfter (the next connection sees its new SVID). */
  #scheduleExpiry(s: Session): void {
    const at = s.peerNotAfter;
    if (at === undefined) return;
    s.timers.expiry = this.#o.timers.setTimeout(() => {
      s.timers.expiry = undefined;
      if (s.finished || s.ending !== undefined) return;
      if (this.#o.clock.now() < at) {
        this.#scheduleExpiry(s); // a long wait is clamped by the timers: wait again
        return;
      }
      this.#log.info({ event: 'edge.hub_cloud_svid_expired', cloud: this.#o.address.text, session: s.sessionId, not_after: new Date(at).toISOString() }, "the cloud's SVID reached NotAfter; reconnecting");
      this.#shutdown(s, HUB_CLOSE_CODES.svidExpired.code, 'cloud SVID expired', 'jitter');
    }, Math.max(0, at - this.#o.clock.now()));
  }

  #onRefused(s: Session, status: number, body: Buffer): void {
    let code = `http/${status}`;
    let message = `HTTP ${status}`;
    try {
      decodeCloudReply(HUB_PATH, status, body);
    } catch (e) {
      if (e instanceof CloudRefusedError) {
        code = e.code;
        message = e.message;
      }
    }
    s.refusal = { status, code: code.slice(0, 64), message: message.slice(0, 256) };
  }

  /** Stop a session from our side: no more frames are processed; the reconnect follows its close. */
  #shutdown(s: Session, code: number, reason: string, reconnect: HubReconnect | 'none', terminate = false): void {
    if (s.finished || s.ending !== undefined) return;
    s.ending = { code, reason, reconnect };
    this.#clearSessionTimers(s);
    this.#flush(s, false);
    try {
      if (terminate || !s.open) s.ws.terminate();
      else s.ws.close(code, reason);
    } catch {
      // the close event ends the session in any case (or the guard below)
    }
    s.timers.closeWait = this.#o.timers.setTimeout(() => {
      s.timers.closeWait = undefined;
      try {
        s.ws.terminate();
      } catch {
        // already gone
      }
      this.#onSocketClose(s, 1006, 'close timeout');
    }, HUB_CLOSE_WAIT_MS);
  }

  #clearSessionTimers(s: Session): void {
    const t = this.#o.timers;
    for (const k of ['ping', 'dead', 'welcome', 'expiry'] as const) {
      if (s.timers[k] !== undefined) t.clearTimeout(s.timers[k]);
      s.timers[k] = undefined;
    }
  }

  #onSocketClose(s: Session, code: number, reason: string): void {
    if (s.finished) return;
    s.finished = true;
    this.#clearSessionTimers(s);
    if (s.timers.closeWait !== undefined) this.#o.timers.clearTimeout(s.timers.closeWait);
    s.timers.closeWait = undefined;
    // Frames received but not yet applied are still valid state: store them (the cloud resends them, unacked).
    this.#flush(s, false);
    if (this.#session === s) this.#session = undefined;
    const o = this.#o;
    const now = o.clock.now();
    const duration = s.welcomedAt === undefined ? 0 : now - s.welcomedAt;
    const fields: Record<string, unknown> = { cloud: o.address.text, session: s.sessionId, duration_ms: duration };
    let policy: HubReconnect | 'none';
    if (s.ending !== undefined) {
      policy = s.ending.reconnect;
      fields['code'] = s.ending.code;
      fields['reason'] = s.ending.reason;
    } else if (s.refusal !== undefined) {
      const r = s.refusal;
      this.#lastError = `${r.code}: ${r.message}`;
      fields['status'] = r.status;
      fields['code'] = r.code;
      fields['err'] = r.message;
      if (r.status === 403 || r.code === 'node/banned') {
        policy = 'cap';
        this.#log.warn({ event: 'edge.hub_banned', ...fields }, 'the cloud refused this node (banned); serving the offline state');
      } else {
        policy = 'backoff';
        this.#log.warn({ event: 'edge.hub_refused', ...fields }, 'the cloud refused the hub connection');
      }
      o.onRefused?.(r.code);
    } else if (!s.open) {
      const e = s.serverRefusal ?? s.error;
      this.#lastError = e === undefined ? `connection closed (${code})` : errText(e);
      policy = 'backoff';
      if (s.serverRefusal !== undefined) {
        this.#log.warn({ event: 'security.hub_untrusted_server', ...fields, ...errFields(s.serverRefusal) }, 'the hub server is not the cloud of our trust domain; not connecting');
      } else {
        this.#log.warn({ event: 'edge.hub_unreachable', ...fields, ...(e === undefined ? {} : errFields(e)) }, 'the cloud hub cannot be reached');
      }
    } else {
      // The cloud (or the network) ended an open session.
      const entry = hubCloseByCode(code);
      policy = entry?.reconnect ?? 'backoff';
      fields['code'] = code;
      fields['reason'] = reason;
      if (s.cloudError !== undefined) fields['cloud_code'] = s.cloudError;
      this.#lastError = `closed by the cloud: ${code}${entry === undefined ? '' : ` (${entry.name})`}${reason === '' ? '' : ` ${reason}`}`;
      if (code === HUB_CLOSE_CODES.banned.code) {
        this.#log.warn({ event: 'edge.hub_banned', ...fields }, 'the cloud banned this node; serving the offline state');
        o.onRefused?.(HUB_CLOSE_CODES.banned.name);
      } else if (code === HUB_CLOSE_CODES.evicted.code) {
        this.#log.warn({ event: 'edge.hub_evicted', ...fields }, 'the cloud evicted this node');
        o.onRefused?.(HUB_CLOSE_CODES.evicted.name);
      } else if (code === HUB_CLOSE_CODES.reauthenticate.code) {
        this.#log.info({ event: 'edge.hub_reauthenticate', ...fields }, 'the cloud asked this node to reconnect with a current SVID');
        o.onRefused?.(HUB_CLOSE_CODES.reauthenticate.name);
      }
    }
    this.#log.info({ event: 'edge.hub_disconnected', ...fields }, 'hub session ended');
    if (!this.#closed && policy !== 'none') this.#scheduleReconnect(policy, s.welcomedAt === undefined ? undefined : duration);
    if (this.#closed) for (const w of this.#closeWaiters.splice(0)) w();
  }

  #scheduleReconnect(policy: HubReconnect, upFor: number | undefined): void {
    if (this.#closed) return;
    this.#clearRetry();
    if (upFor !== undefined && upFor >= HUB_BACKOFF_RESET_AFTER_MS) this.#attempt = 0;
    let p = policy;
    if (p === 'jitter') {
      // A graceful close right after connecting, again and again, is not graceful: back off.
      if (upFor === undefined || upFor < SHORT_SESSION_MS) this.#quickJitters++;
      else this.#quickJitters = 0;
      if (this.#quickJitters > MAX_QUICK_JITTERS) p = 'backoff';
    }
    const base = { baseMs: HUB_BACKOFF_BASE_MS, capMs: HUB_BACKOFF_CAP_MS };
    let delay: number;
    if (p === 'jitter') delay = Math.floor(this.#random() * HUB_GRACEFUL_JITTER_MS);
    else if (p === 'cap') {
      this.#attempt = Math.max(this.#attempt, Math.ceil(Math.log2(HUB_BACKOFF_CAP_MS / HUB_BACKOFF_BASE_MS)));
      delay = fullJitterBackoff(this.#attempt, base, this.#random);
    } else delay = fullJitterBackoff(this.#attempt++, base, this.#random);
    this.#reconnects++;
    this.#nextAttemptAt = this.#o.clock.now() + delay;
    this.#retryTimer = this.#o.timers.setTimeout(() => this.#connect(), delay);
  }

  #clearRetry(): void {
    if (this.#retryTimer !== undefined) this.#o.timers.clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    this.#nextAttemptAt = undefined;
  }

  /** Our SVID (or bundle) changed: a live session reconnects with the new SVID; a waiting hub tries at once. */
  #onIdentityChange(): void {
    if (this.#closed) return;
    let serial: string;
    try {
      serial = this.#o.identity.svid().serialHex;
    } catch {
      return; // nothing usable yet: the next attempt reports it
    }
    const s = this.#session;
    if (s !== undefined && !s.finished) {
      if (s.ending === undefined && s.serial !== serial) {
        this.#log.info({ event: 'edge.hub_rotating', cloud: this.#o.address.text, session: s.sessionId, serial }, 'node SVID rotated; reconnecting the hub with it');
        this.#shutdown(s, HUB_CLOSE_CODES.normal.code, 'svid rotated', 'jitter');
      }
      return;
    }
    if (this.#retryTimer !== undefined) {
      const wait = Math.floor(this.#random() * HUB_GRACEFUL_JITTER_MS);
      if (this.#nextAttemptAt === undefined || this.#nextAttemptAt > this.#o.clock.now() + wait) {
        this.#clearRetry();
        this.#nextAttemptAt = this.#o.clock.now() + wait;
        this.#retryTimer = this.#o.timers.setTimeout(() => this.#connect(), wait);
      }
    }
  }

  // ---- frames

  #send(s: Session, m: Parameters<typeof encodeHubMessage>[0]): void {
    if (s.finished || s.ending !== undefined) return;
    s.ws.send(encodeHubMessage(m));
  }

  #violation(s: Session, code: string, message: string): void {
    this.#lastError = `protocol violation by the cloud: ${code}`;
    this.#log.warn({ event: 'security.hub_protocol_violation', code, cloud: this.#o.address.text, session: s.sessionId, err: message.slice(0, 200) }, 'the cloud sent an invalid hub frame; closing the session');
    this.#shutdown(s, HUB_CLOSE_CODES.protocol.code, code, 'backoff');
  }

  #onMessage(s: Session, data: Buffer | string, isBinary: boolean): void {
    if (s.finished || s.ending !== undefined) return;
    s.lastSeen = this.#o.clock.now();
    if (isBinary) {
      this.#violation(s, 'hub/malformed', 'binary frame');
      return;
    }
    let m: CloudToEdgeHubMessage;
    try {
      m = decodeCloudToEdgeHub(data);
    } catch (e) {
      if (e instanceof HubProtocolError) this.#violation(s, e.code, e.message);
      else this.#violation(s, 'hub/malformed', 'undecodable frame');
      return;
    }
    try {
      this.#dispatch(s, m);
    } catch (e) {
      // Never crash on a frame: an unexpected failure ends the session like an internal error.
      this.#lastError = errText(e);
      this.#log.error({ event: 'edge.hub_internal_error', cloud: this.#o.address.text, session: s.sessionId, ...errFields(e) }, 'the hub failed to handle a frame; reconnecting');
      this.#shutdown(s, HUB_CLOSE_CODES.internal.code, 'internal error', 'backoff');
    }
  }

  #dispatch(s: Session, m: CloudToEdgeHubMessage): void {
    const o = this.#o;
    if (m.kind === 'welcome') {
      if (s.welcomed) return this.#violation(s, 'hub/unexpected-kind', 'a second welcome');
      if (s.expectedNode !== undefined && m.node !== s.expectedNode) return this.#violation(s, 'hub/bad-field', `welcome names node ${m.node}, not this node`);
      s.welcomed = true;
      s.welcomedAt = o.clock.now();
      s.sessionId = m.sessionId;
      if (s.timers.welcome !== undefined) o.timers.clearTimeout(s.timers.welcome);
      s.timers.welcome = undefined;
      if (m.resync) {
        // The cloud starts over with this store: what it sends now is the truth, whatever versions are
        // stored here (a new cloud's counter may be lower); the rest is removed at `synced`.
        s.catchup = new Set();
        s.resyncForced = new Set();
        o.store.beginResync();
      }
      this.#lastError = null;
      this.#log.info({ event: 'edge.hub_connected', cloud: o.address.text, node: m.node, session: m.sessionId, resync: m.resync, outbox: o.store.outboxSize() }, 'hub session with the cloud');
      this.#pumpStatus(s);
      // Rotated while connecting: use the new SVID at once.
      try {
        if (o.identity.svid().serialHex !== s.serial) this.#onIdentityChange();
      } catch {
        // expired meanwhile: the cloud closes the session at NotAfter
      }
      return;
    }
    if (!s.welcomed) return this.#violation(s, 'hub/unexpected-kind', `${m.kind} before welcome`);
    switch (m.kind) {
      case 'put':
        s.catchup?.add(key(m.resource.kind, m.resource.name));
        this.#enqueue(s, { op: 'put', resource: m.resource });
        return;
      case 'delete':
        s.catchup?.add(key(m.resource.kind, m.resource.name));
        this.#enqueue(s, { op: 'delete', kind: m.resource.kind, name: m.resource.name, version: m.version });
        return;
      case 'synced': {
        if (!this.#flush(s, true)) return;
        const resynced = s.catchup !== undefined;
        if (resynced) {
          this.#pruneAfterResync(s, m.version);
          o.store.endResync();
        }
        const before = o.store.syncedVersion();
        o.store.setSyncedVersion(m.version);
        if (!s.synced) {
          s.synced = true;
          this.#log.info({ event: 'edge.hub_synced', cloud: o.address.text, session: s.sessionId, version: m.version, previous: before, applied: s.applied }, 'caught up with the cloud');
          if (!resynced) this.#ackInventory(s);
        }
        return;
      }
      case 'status.ack': {
        if (s.inflight === undefined) return; // nothing in flight: a duplicate ack
        // Never drop what was not sent: an ack beyond the batch in flight counts up to the batch.
        o.store.ackStatus(Math.min(m.seq, s.inflight));
        s.inflight = undefined;
        this.#pumpStatus(s);
        return;
      }
      case 'nudge':
        this.#log.debug({ event: 'edge.hub_nudge', topic: m.topic, session: s.sessionId }, 'nudged by the cloud');
        try {
          o.onNudge?.(m.topic);
        } catch (e) {
          this.#log.warn({ event: 'edge.hub_nudge_failed', topic: m.topic, ...errFields(e) }, 'handling a nudge failed');
        }
        return;
      case 'error':
        s.cloudError = m.code;
        this.#log.warn({ event: 'edge.hub_cloud_error', cloud: o.address.text, session: s.sessionId, code: m.code, err: m.message.slice(0, 256) }, 'the cloud reported an error on the hub session');
        return;
      default: {
        const never: never = m;
        return this.#violation(s, 'hub/unknown-kind', String((never as { kind?: unknown }).kind));
      }
    }
  }

  #enqueue(s: Session, item: HubItem): void {
    s.pending.push(item);
    if (s.pending.length >= MAX_HUB_ACK_ITEMS) {
      this.#flush(s, true);
      return;
    }
    if (!s.flushScheduled) {
      s.flushScheduled = true;
      this.#defer(() => {
        s.flushScheduled = false;
        this.#flush(s, true);
      });
    }
  }

  /**
   * Apply the pending items in one transaction (with a `Stored` status entry for every stored put), then,
   * if `ack` and the session is live, acknowledge them. Returns false when the store failed (the session is
   * then ending).
   */
  #flush(s: Session, ack: boolean): boolean {
    if (s.pending.length === 0) return true;
    const items = s.pending;
    s.pending = [];
    const o = this.#o;
    let acks: readonly AckItem[];
    let changed: readonly StoreChange[] = [];
    try {
      // The `Stored` status entries are written in the same transaction as the items (store.ts reportStored).
      // During a resync catch-up the first frame of each object in this session replaces what is stored
      // whatever its version (the cloud's versions may be another counter's); later frames of the same
      // object in this session compare versions as usual (a live frame may overtake a catch-up frame).
      const forced = s.resyncForced;
      const force = forced === undefined ? undefined : (kind: ResourceKind, name: string): boolean => {
        const k = key(kind, name);
        if (forced.has(k)) return false;
        forced.add(k);
        return true;
      };
      const applied = o.store.apply(items, { reportStored: true, ...(force === undefined ? {} : { force }) });
      acks = applied.acks;
      changed = applied.changed;
    } catch (e) {
      this.#lastError = errText(e);
      this.#log.error({ event: 'edge.hub_store_failed', cloud: o.address.text, session: s.sessionId, items: items.length, ...errFields(e) }, 'storing resources from the cloud failed; nothing acknowledged');
      this.#shutdown(s, HUB_CLOSE_CODES.internal.code, 'edge store failed', 'backoff');
      return false;
    }
    s.applied += items.length;
    this.#notifyChanged(changed);
    if (!ack || s.finished || s.ending !== undefined || !s.welcomed) return true;
    for (const chunk of chunkAcks(acks)) this.#send(s, { v: HUB_PROTOCOL_VERSION, kind: 'ack', items: chunk });
    this.#pumpStatus(s);
    return true;
  }

  /**
   * Once per session, after the catch-up: acknowledge every live resource held here at its version. The
   * cloud sends deletes only for what it knows a node holds (its acks); an ack lost with a cut link (the
   * put was committed here, the ack never arrived) would otherwise leave an object here that the cloud
   * deleted or stopped assigning meanwhile. Acks are idempotent at the cloud (an older or equal version is
   * ignored), and the cloud answers an ack of a deleted or unassigned resource with a delete.
   */
  #ackInventory(s: Session): void {
    if (s.finished || s.ending !== undefined) return;
    const items: AckItem[] = this.#o.store.list().map((r) => ({ kind: r.kind, name: r.name, version: r.version }));
    if (this.#o.store.needsResync()) {
      // A row did not authenticate while listing: start a session that asks for everything again.
      this.#log.warn({ event: 'edge.hub_resync_needed', cloud: this.#o.address.text, session: s.sessionId }, 'the edge store lost a row; asking the cloud for a resync');
      this.#shutdown(s, HUB_CLOSE_CODES.normal.code, 'resync', 'jitter');
      return;
    }
    for (const chunk of chunkAcks(items)) this.#send(s, { v: HUB_PROTOCOL_VERSION, kind: 'ack', items: chunk, inventory: true });
  }

  /** After a resync catch-up: resources held here that the cloud did not name are no longer ours. */
  #pruneAfterResync(s: Session, version: number): void {
    const named = s.catchup!;
    s.catchup = undefined;
    if (version < 1) return;
    const stale: HubItem[] = [];
    for (const r of this.#o.store.list()) {
      if (!named.has(key(r.kind, r.name)) && r.version <= version) stale.push({ op: 'delete', kind: r.kind, name: r.name, version });
    }
    if (stale.length === 0) return;
    for (let i = 0; i < stale.length; i += MAX_HUB_ACK_ITEMS) this.#notifyChanged(this.#o.store.apply(stale.slice(i, i + MAX_HUB_ACK_ITEMS), { force: true }).changed);
    this.#log.info({ event: 'edge.hub_resync_pruned', session: s.sessionId, removed: stale.length }, 'removed resources the cloud no longer assigns to this node');
  }

  /** Tell the agent's consumers (devices, EventBus) what was stored; a failing listener never fails the hub. */
  #notifyChanged(changed: readonly StoreChange[]): void {
    const l = this.#o.onResourcesChanged;
    if (l === undefined || changed.length === 0) return;
    try {
      l(changed);
    } catch (e) {
      this.#log.error({ event: 'edge.hub_listener_failed', ...errFields(e) }, 'a resource change listener failed');
    }
  }

  /** Send the next outbox batch if none is in flight. */
  #pumpStatus(s: Session): void {
    if (!s.welcomed || s.finished || s.ending !== undefined || s.inflight !== undefined) return;
    const o = this.#o;
    for (;;) {
      const pending = o.store.pendingStatus(MAX_HUB_STATUS_ENTRIES);
      if (pending.length === 0) return;
      const batch = fitStatus(pending);
      if (batch.kind === 'ok') {
        s.inflight = batch.entries[batch.entries.length - 1]!.seq;
        s.ws.send(batch.text);
        return;
      }
      // The oldest row can never be sent (corrupt): drop it rather than block the outbox forever.
      this.#log.error({ event: 'edge.hub_status_dropped', seq: batch.seq, code: batch.code }, 'a status entry in the outbox is not sendable; dropped');
      o.store.ackStatus(batch.seq);
    }
  }
}

/** Acks in frames of at most MAX_HUB_ACK_ITEMS items and the edge frame limit. */
function chunkAcks(acks: readonly AckItem[]): AckItem[][] {
  const out: AckItem[][] = [];
  let cur: AckItem[] = [];
  let bytes = 0;
  for (const a of acks) {
    const size = a.kind.length + a.name.length + 64;
    if (cur.length > 0 && (cur.length >= MAX_HUB_ACK_ITEMS || bytes + size > FRAME_ITEMS_BUDGET)) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(a);
    bytes += size;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

type FitResult = { kind: 'ok'; entries: readonly StatusEntry[]; text: string } | { kind: 'poison'; seq: number; code: string };

/** The longest prefix of `pending` whose `status` frame encodes within the limit. */
function fitStatus(pending: readonly StatusEntry[]): FitResult {
  let n = pending.length;
  for (;;) {
    const entries = pending.slice(0, n);
    try {
      return { kind: 'ok', entries, text: encodeHubMessage({ v: HUB_PROTOCOL_VERSION, kind: 'status', entries }) };
    } catch (e) {
      const code = e instanceof EdgewardError ? e.code : 'unknown';
      if (code === 'hub/too-large' && n > 1) {
        n = Math.max(1, Math.floor(n / 2));
        continue;
      }
      if (n > 1) {
        // A bad row somewhere in the batch: find the first one and send what precedes it.
        const bad = pending.findIndex((x) => {
          try {
            encodeHubMessage({ v: HUB_PROTOCOL_VERSION, kind: 'status', entries: [x] });
            return false;
          } catch {
            return true;
          }
        });
        if (bad > 0) {
          n = Math.min(n, bad);
          continue;
        }
        if (bad === 0) return { kind: 'poison', seq: pending[0]!.seq, code };
        // No single entry is bad: seqs out of order across rows; send one at a time.
        n = 1;
        continue;
      }
      return { kind: 'poison', seq: pending[0]!.seq, code };
    }
  }
}

/** The edge hub (see the top of this file). `start()` connects; it keeps reconnecting until `close()`. */
export function createEdgeHub(o: EdgeHubOptions): EdgeHub {
  return new EdgeHubImpl(o);
}
