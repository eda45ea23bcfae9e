/**
 * The device twin engine (issue #6, "Device twins"): desired values come from the cloud (the Device spec in the
 * directory), devices report actual values over MQTT, the edge stores them (twin-store.ts), answers on the
 * device's reply topics, publishes deltas when desired ≠ reported, and reports each device's twins to the cloud
 * as a coalesced `Device` status through the hub's durable outbox.
 *
 * Topics (KubeEdge edge/pkg/devicetwin/dtcommon/common.go, kubeedge.md §6; v1beta1 device ID `NS/NAME`, hence
 * two `+` levels). The engine subscribes on the EventBus's internal side (trusted, not subject to the ACL) to
 *
 *   $hw/events/device/+/+/twin/update    -> twin/update/result (+ twin/update/delta when something differs)
 *   $hw/events/device/+/+/twin/get       -> twin/get/result
 *   $hw/events/device/+/+/state/update   (stored; no reply: devices may not subscribe to state/update/result)
 *
 * (MQTT 3.1.1 4.7.2: these filters start with the literal `$hw`, so they do match `$`-topics; 4.7.1.2: `+`
 * matches exactly one level.) Replies are published with QoS 1 (MQTT 3.1.1 4.3.2); a device receives them at
 * the QoS it subscribed with, whichever is lower (3.8.4).
 *
 * Identity: the device is the broker-authenticated one (`device` of the bus message: its X509-SVID, checked by
 * the EventBus), never the topic. A message whose topic names another device (or that no device published) is
 * dropped with `security.twin_spoofed`; the broker's ACL should already have refused it (defence in depth).
 *
 * Reporting: `report({kind: 'Device', name: NS/NAME, phase: Online|Offline, observedVersion, detail: {twins:
 * {PROP: {value, at}}, lastSeen, state?}}, {replace: true})`, at most once per device per `flushIntervalMs` (one
 * timer for all devices), and the outbox keeps only the newest entry per device (`replace`). A device only
 * seen again (a twin/get, a malformed message) is reported again when its lastSeen is `lastSeenReportMs` old.
 * A report that throws (outbox full, hub closed) is logged and the device stays dirty; the store's seq survives
 * restarts, so unreported changes are reported after one; a device last reported Online is reported Offline.
 *
 * Bounded: every map is keyed by devices of the directory (the store holds at most MAX_TWIN_DEVICES); payloads
 * at most MAX_TWIN_MESSAGE_BYTES; at most MAX_TWIN_INFLIGHT_PUBLISHES publishes in flight (more are dropped);
 * at most MAX_TWIN_REPORTS_PER_FLUSH reports per flush; security logs at most `logsPerMinute` per device (or
 * publisher) per minute, with the number suppressed in the next line.
 */
import { createHash } from 'node:crypto';
import { isDeviceName } from '../../attestation/index.js';
import type { Clock } from '../../identity/index.js';
import {
  DEVICE_TOPIC_PREFIX,
  MAX_HUB_STATUS_DETAIL_BYTES,
  checkTwinValue,
  statusDetailProblem,
  twinTopics,
  type ModelProperty,
} from '../../protocol/index.js';
import type { Timers } from '../svid/timers.js';
import type { DeviceDirectory, DeviceDirectoryChange, LocalDevice } from './directory.js';
import {
  TwinMessageError,
  decodeStateUpdate,
  decodeTwinGet,
  decodeTwinUpdate,
  encodeTwinDelta,
  encodeTwinGetResult,
  encodeTwinResult,
  newTwinEventId,
  peekTwinEventId,
  type TwinDeltaEntry,
  type TwinResultError,
} from './twin-messages.js';
import { TwinStoreError, type DeviceTwinRecord, type StoredTwinValue, type TwinStore } from './twin-store.js';

/** The internal subscriptions of the engine. */
export const TWIN_TOPIC_FILTERS = {
  update: `${DEVICE_TOPIC_PREFIX}+/+/twin/update`,
  get: `${DEVICE_TOPIC_PREFIX}+/+/twin/get`,
  stateUpdate: `${DEVICE_TOPIC_PREFIX}+/+/state/update`,
} as const;
export const DEFAULT_TWIN_FLUSH_INTERVAL_MS = 1000;
export const DEFAULT_TWIN_LAST_SEEN_REPORT_MS = 60_000;
export const DEFAULT_TWIN_LOGS_PER_MINUTE = 5;
export const MAX_TWIN_REPORTS_PER_FLUSH = 500;
export const MAX_TWIN_INFLIGHT_PUBLISHES = 1024;
const LOG_WINDOW_MS = 60_000;
const MAX_LOG_KEYS = 10_000;

/** A message the EventBus delivers to an internal subscriber. */
export interface TwinBusMessage {
  readonly topic: string;
  readonly payload: Uint8Array;
  /** The broker-authenticated device (`NAMESPACE/NAME`) of the publishing client; undefined: not a device. */
  readonly device?: string | undefined;
  readonly spiffeId?: string | undefined;
  readonly clientId?: string | undefined;
}

/** The port onto the EventBus's internal (trusted, ACL-free) side. */
export interface TwinBus {
  publish(topic: string, payload: Buffer, qos: 0 | 1): Promise<unknown> | void;
  /** Returns the unsubscribe function. */
  subscribe(filter: string, handler: (msg: TwinBusMessage) => void): () => void;
}

/** What the engine reports (assignable to the hub's StatusReport). */
export interface DeviceStatusReport {
  readonly kind: 'Device';
  /** `NAMESPACE/NAME`. */
  readonly name: string;
  readonly phase: 'Online' | 'Offline';
  /** The Device resource version held here. */
  readonly observedVersion?: number;
  /** `{twins: {PROP: {value, at}}, lastSeen, state?, truncated?: true, omitted?: n}` (≤ MAX_HUB_STATUS_DETAIL_BYTES). */
  readonly detail: Record<string, unknown>;
}

/** pino-compatible logger subset. */
export interface TwinLogger {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
}

export interface TwinEngineOptions {
  bus: TwinBus;
  directory: DeviceDirectory;
  /** Owned by the caller (the engine never closes it). */
  store: TwinStore;
  /** `EdgeHub.reportStatus` (bind it: `(s, o) => hub.reportStatus(s, o)`); may throw (outbox full). */
  report(status: DeviceStatusReport, options: { replace: true }): unknown;
  clock: Clock;
  timers: Timers;
  logger: TwinLogger;
  /** Least time between two reports of one device (default 1000 ms). */
  flushIntervalMs?: number;
  /** A device only seen again is reported when its reported lastSeen is this old (default 60 s). */
  lastSeenReportMs?: number;
  /** Security log lines per device (or publisher) per minute (default 5). */
  logsPerMinute?: number;
}

export interface TwinEngineStats {
  /** Devices with twins in the store (-1: the store failed). */
  devices: number;
  connected: number;
  dirty: number;
  inflightPublishes: number;
  droppedPublishes: number;
}

export interface TwinEngine {
  /** Subscribe, forget twins of devices no longer in the directory, report what is pending. Call once the directory is loaded. */
  start(): void;
  /** Unsubscribe and stop the timer (pending reports stay dirty in the store). */
  close(): void;
  /** The EventBus integrator calls these on a device client's CONNECT accepted / connection closed. */
  deviceConnected(device: string): void;
  deviceDisconnected(device: string): void;
  /** Report every dirty device now (at most MAX_TWIN_REPORTS_PER_FLUSH), e.g. before a shutdown. */
  flush(): void;
  stats(): TwinEngineStats;
}

type TwinKind = 'update' | 'get' | 'state';
const SUFFIX: Readonly<Record<TwinKind, string>> = { update: '/twin/update', get: '/twin/get', state: '/state/update' };

/** The device a twin topic names (`$hw/events/device/NS/NAME<suffix>`), undefined when it is not one. */
export function twinTopicDevice(topic: string, suffix: string): string | undefined {
  if (typeof topic !== 'string' || topic.length > 512 || !topic.startsWith(DEVICE_TOPIC_PREFIX) || !topic.endsWith(suffix)) return undefined;
  const mid = topic.slice(DEVICE_TOPIC_PREFIX.length, topic.length - suffix.length);
  // isDeviceName: exactly NS/NAME, neither part may hold '/', '+' or '#'
  return isDeviceName(mid) ? mid : undefined;
}

const NUMERIC = new Set(['INT', 'FLOAT', 'DOUBLE']);

/** Desired and reported are the same value of `prop` (numbers compared as numbers: "21.5" = "21.50"). */
export function sameTwinValue(prop: ModelProperty, desired: string, reported: string): boolean {
  if (desired === reported) return true;
  if (!NUMERIC.has(prop.type) || checkTwinValue(prop, reported) !== undefined || checkTwinValue(prop, desired) !== undefined) return false;
  return Number(desired) === Number(reported);
}

/**
 * The desired values of a device that the edge acts on: ReadWrite properties of its model with a `desired`
 * value in the Device spec that is valid for the property. `invalid` lists the ones left out as invalid.
 */
export function desiredValues(dev: LocalDevice): { desired: Map<string, { prop: ModelProperty; value: string }>; invalid: string[] } {
  const desired = new Map<string, { prop: ModelProperty; value: string }>();
  const invalid: string[] = [];
  if (dev.model === undefined) return { desired, invalid };
  const props = new Map<string, ModelProperty>();
  for (const p of dev.model.properties) props.set(p.name, p);
  for (const p of dev.spec.properties ?? []) {
    const prop = props.get(p.name);
    const value = p.desired?.value;
    if (prop === undefined || prop.accessMode !== 'ReadWrite' || value === undefined) continue;
    if (checkTwinValue(prop, value) !== undefined) invalid.push(p.name);
    else desired.set(p.name, { prop, value });
  }
  return { desired, invalid };
}

/** The properties whose desired value differs from the reported one (or was never reported). */
export function twinDelta(dev: LocalDevice, reported: ReadonlyMap<string, StoredTwinValue>): TwinDeltaEntry[] {
  const out: TwinDeltaEntry[] = [];
  for (const [name, d] of desiredValues(dev).desired) {
    const r = reported.get(name);
    if (r === undefined || !sameTwinValue(d.prop, d.value, r.value)) out.push({ name, desired: d.value, reported: r });
  }
  return out;
}

function bytes(x: unknown): number {
  return Buffer.byteLength(JSON.stringify(x), 'utf8');
}

/**
 * The status detail of a twin record within `maxBytes` (JSON): `{twins: {PROP: {value, at}}, lastSeen, state?}`;
 * when everything does not fit, the oldest reported values are left out and the detail says
 * `truncated: true, omitted: N`.
 */
export function twinStatusDetail(rec: Pick<DeviceTwinRecord, 'reported' | 'lastSeen' | 'state'>, maxBytes = MAX_HUB_STATUS_DETAIL_BYTES): Record<string, unknown> {
  const head: Record<string, unknown> = { twins: {}, lastSeen: rec.lastSeen };
  if (rec.state !== undefined) head['state'] = rec.state;
  const all = [...rec.reported].map(([name, v]) => ({ name, v: { value: v.value, at: v.at }, size: bytes(name) + 1 + bytes({ value: v.value, at: v.at }) }));
  const build = (keep: typeof all, omitted: number): Record<string, unknown> => {
    const twins: Record<string, unknown> = {};
    for (const e of [...keep].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) twins[e.name] = e.v;
    const d: Record<string, unknown> = { ...head, twins };
    if (omitted > 0) {
      d['truncated'] = true;
      d['omitted'] = omitted;
    }
    return d;
  };
  const base = bytes(head);
  const total = base + all.reduce((s, e) => s + e.size, 0) + Math.max(0, all.length - 1);
  if (total <= maxBytes) return build(all, 0);
  // newest first (ties by name), as many as fit beside the truncation note
  all.sort((a, b) => b.v.at - a.v.at || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  let budget = maxBytes - base - bytes({ truncated: true, omitted: all.length });
  const keep: typeof all = [];
  for (const e of all) {
    const cost = e.size + (keep.length > 0 ? 1 : 0);
    if (cost > budget) continue;
    budget -= cost;
    keep.push(e);
  }
  let d = build(keep, all.length - keep.length);
  while (keep.length > 0 && (bytes(d) > maxBytes || statusDetailProblem(d) !== undefined)) {
    keep.pop();
    d = build(keep, all.length - keep.length);
  }
  return d;
}

/** At most `perWindow` log lines per key per minute; remembers at most MAX_LOG_KEYS keys. */
class LogBudget {
  readonly #entries = new Map<string, { start: number; n: number; suppressed: number }>();
  constructor(
    private readonly perWindow: number,
    private readonly clock: Clock,
  ) {}
  /** undefined: suppress this line; otherwise how many lines of this key were suppressed before it. */
  take(key: string): number | undefined {
    const now = this.clock.now();
    let e = this.#entries.get(key);
    if (e === undefined || now - e.start >= LOG_WINDOW_MS) {
      if (e === undefined && this.#entries.size >= MAX_LOG_KEYS) this.#entries.clear();
      const suppressed = e?.suppressed ?? 0;
      e = { start: now, n: 0, suppressed: 0 };
      this.#entries.set(key, e);
      e.n = 1;
      return suppressed;
    }
    if (e.n < this.perWindow) {
      e.n++;
      const s = e.suppressed;
      e.suppressed = 0;
      return s;
    }
    e.suppressed++;
    return undefined;
  }
  forget(prefix: string): void {
    for (const k of [...this.#entries.keys()]) if (k.startsWith(prefix)) this.#entries.delete(k);
  }
}

const clip = (s: unknown, n: number): string | undefined => (typeof s === 'string' ? (s.length > n ? `${s.slice(0, n)}...` : s) : undefined);
const codeOf = (e: unknown): string => (typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'string' ? (e as { code: string }).code : 'error');

function digest(desired: Map<string, { value: string }>): string {
  const h = createHash('sha256');
  for (const [k, v] of [...desired].sort((a, b) => (a[0] < b[0] ? -1 : 1))) h.update(`${k}\u0000${v.value}\u0000`);
  return h.digest('base64');
}

export function createTwinEngine(options: TwinEngineOptions): TwinEngine {
  return new Engine(options);
}

class Engine implements TwinEngine {
  readonly #o: TwinEngineOptions;
  readonly #flushMs: number;
  readonly #lastSeenMs: number;
  readonly #logs: LogBudget;
  /** Open connections per device (hooks), or 1 for a device that published when no hook was ever called. */
  readonly #connected = new Map<string, number>();
  /** Digest of each device's desired values, to tell a desired change from any other put. */
  readonly #desired = new Map<string, string>();
  /** Devices to report (insertion order). */
  readonly #dirty = new Set<string>();
  /** When each device was last reported. */
  readonly #reportedAt = new Map<string, number>();
  readonly #unsubscribe: Array<() => void> = [];
  #timer: unknown;
  #hooked = false;
  #started = false;
  #closed = false;
  #inflight = 0;
  #dropped = 0;

  constructor(o: TwinEngineOptions) {
    this.#o = o;
    this.#flushMs = o.flushIntervalMs ?? DEFAULT_TWIN_FLUSH_INTERVAL_MS;
    this.#lastSeenMs = o.lastSeenReportMs ?? DEFAULT_TWIN_LAST_SEEN_REPORT_MS;
    this.#logs = new LogBudget(o.logsPerMinute ?? DEFAULT_TWIN_LOGS_PER_MINUTE, o.clock);
  }

  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    const { directory, store, bus } = this.#o;
    for (const dev of directory.list()) this.#desired.set(dev.fullName, digest(desiredValues(dev).desired));
    for (const s of store.devices()) {
      if (directory.get(s.device) === undefined) store.forget(s.device);
      // unreported changes, and devices the cloud last saw Online: this process has no connection of them
      else if (s.dirty || s.reportedPhase === 'Online') this.#dirty.add(s.device);
    }
    this.#unsubscribe.push(directory.onChange((c) => this.#onDirectoryChange(c)));
    this.#unsubscribe.push(bus.subscribe(TWIN_TOPIC_FILTERS.update, (m) => this.#onMessage('update', m)));
    this.#unsubscribe.push(bus.subscribe(TWIN_TOPIC_FILTERS.get, (m) => this.#onMessage('get', m)));
    this.#unsubscribe.push(bus.subscribe(TWIN_TOPIC_FILTERS.stateUpdate, (m) => this.#onMessage('state', m)));
    if (this.#dirty.size > 0) this.#schedule();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const u of this.#unsubscribe.splice(0)) {
      try {
        u();
      } catch {
        // closing anyway
      }
    }
    if (this.#timer !== undefined) this.#o.timers.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  stats(): TwinEngineStats {
    let devices = -1;
    try {
      devices = this.#o.store.count();
    } catch {
      devices = -1;
    }
    return { devices, connected: this.#connected.size, dirty: this.#dirty.size, inflightPublishes: this.#inflight, droppedPublishes: this.#dropped };
  }

  // ------------------------------------------------------------------------------------------------------
  // Connections

  deviceConnected(device: string): void {
    this.#hooked = true;
    if (this.#closed || !isDeviceName(device) || this.#o.directory.get(device) === undefined) return;
    const n = this.#connected.get(device) ?? 0;
    this.#connected.set(device, n + 1);
    if (n === 0) this.#phaseChanged(device);
  }

  deviceDisconnected(device: string): void {
    this.#hooked = true;
    if (this.#closed) return;
    const n = this.#connected.get(device) ?? 0;
    if (n === 0) return;
    if (n > 1) {
      this.#connected.set(device, n - 1);
      return;
    }
    this.#connected.delete(device);
    if (this.#o.directory.get(device) !== undefined) this.#phaseChanged(device);
  }

  #phaseChanged(device: string): void {
    try {
      this.#o.store.touch(device, this.#o.clock.now(), { dirty: true });
    } catch (e) {
      this.#storeFailed(device, e);
    }
    this.#markDirty(device);
  }

  // ------------------------------------------------------------------------------------------------------
  // Directory

  #onDirectoryChange(c: DeviceDirectoryChange): void {
    if (this.#closed) return;
    try {
      if (c.op === 'delete') {
        this.#forget(c.fullName);
        return;
      }
      const dev = this.#o.directory.get(c.fullName);
      if (dev === undefined) return;
      const { store } = this.#o;
      if (dev.model !== undefined) store.retainProperties(dev.fullName, dev.model.properties.map((p) => p.name));
      const rec = store.get(dev.fullName);
      const { desired, invalid } = desiredValues(dev);
      if (invalid.length > 0) this.#logDesiredInvalid(dev.fullName, invalid);
      const d = digest(desired);
      if (this.#desired.get(dev.fullName) !== d) {
        this.#desired.set(dev.fullName, d);
        this.#publishDelta(dev, rec?.reported ?? new Map());
      }
      // the version (or the model) changed: the next report says which version it observed
      if (rec !== undefined) this.#markDirty(dev.fullName);
    } catch (e) {
      if (e instanceof TwinStoreError) this.#storeFailed(c.fullName, e);
      else this.#o.logger.warn({ event: 'edge.twin_change_failed', device: clip(c.fullName, 320), code: codeOf(e) }, 'a device change could not be applied to its twin');
    }
  }

  #forget(device: string): void {
    try {
      this.#o.store.forget(device);
    } catch (e) {
      this.#storeFailed(device, e);
    }
    this.#connected.delete(device);
    this.#desired.delete(device);
    this.#dirty.delete(device);
    this.#reportedAt.delete(device);
    this.#logs.forget(`${device}|`);
  }

  // ------------------------------------------------------------------------------------------------------
  // Messages

  #onMessage(kind: TwinKind, msg: TwinBusMessage): void {
    if (this.#closed) return;
    try {
      this.#handle(kind, msg);
    } catch (e) {
      this.#o.logger.warn({ event: 'edge.twin_message_failed', kind, code: codeOf(e) }, 'a twin message could not be handled');
    }
  }

  #handle(kind: TwinKind, msg: TwinBusMessage): void {
    const target = twinTopicDevice(msg.topic, SUFFIX[kind]);
    const publisher = typeof msg.device === 'string' ? msg.device : undefined;
    if (target === undefined || publisher === undefined || publisher !== target) {
      const reason = target === undefined ? 'bad-topic' : publisher === undefined ? 'not-a-device' : 'other-device';
      const who = clip(msg.spiffeId, 300) ?? clip(msg.clientId, 300) ?? '?';
      const suppressed = this.#logs.take(`spoof|${who}`);
      if (suppressed !== undefined) {
        this.#o.logger.warn(
          { event: 'security.twin_spoofed', reason, device: target ?? null, publisher: clip(publisher, 320) ?? null, spiffe_id: clip(msg.spiffeId, 300), client_id: clip(msg.clientId, 128), topic: clip(msg.topic, 256), suppressed },
          'a twin message for another device was dropped',
        );
      }
      return;
    }
    const dev = this.#o.directory.get(publisher);
    if (dev === undefined) {
      const suppressed = this.#logs.take('unknown|');
      if (suppressed !== undefined) this.#o.logger.info({ event: 'edge.twin_unknown_device', device: publisher, suppressed }, 'a twin message from a device not on this node was dropped');
      return;
    }
    const now = this.#o.clock.now();
    let phaseChanged = false;
    if (!this.#hooked && !this.#connected.has(publisher)) {
      // no connection hooks are wired: a device that publishes is connected (the broker authenticated it)
      this.#connected.set(publisher, 1);
      phaseChanged = true;
    }
    const topics = twinTopics(dev);
    switch (kind) {
      case 'update':
        return this.#onUpdate(dev, msg, now, topics.updateResult, phaseChanged);
      case 'get':
        return this.#onGet(dev, msg, now, topics.getResult, phaseChanged);
      case 'state':
        return this.#onState(dev, msg, now, phaseChanged);
    }
  }

  #onUpdate(dev: LocalDevice, msg: TwinBusMessage, now: number, resultTopic: string, phaseChanged: boolean): void {
    const device = dev.fullName;
    if (dev.model === undefined) {
      this.#seen(device, now, phaseChanged);
      this.#publish(resultTopic, encodeTwinResult({ eventId: peekTwinEventId(msg.payload), timestamp: now, error: NO_MODEL }));
      return;
    }
    let m;
    try {
      m = decodeTwinUpdate(msg.payload, dev.model);
    } catch (e) {
      if (!(e instanceof TwinMessageError)) throw e;
      this.#invalid(device, 'twin/update', e, msg);
      this.#seen(device, now, phaseChanged);
      this.#publish(resultTopic, encodeTwinResult({ eventId: peekTwinEventId(msg.payload), timestamp: now, error: { code: e.code, status: 400, reason: e.message } }));
      return;
    }
    let rec: DeviceTwinRecord | undefined;
    try {
      this.#o.store.putReported(device, m.values, now);
      rec = this.#o.store.get(device);
    } catch (e) {
      if (!(e instanceof TwinStoreError)) throw e;
      this.#storeFailed(device, e);
      const error: TwinResultError =
        e.code === 'twin-store/full' ? { code: 'twin/store-full', status: 500, reason: 'the edge holds no more twins' } : { code: 'twin/unavailable', status: 500, reason: 'the edge could not store the twin' };
      this.#publish(resultTopic, encodeTwinResult({ eventId: m.eventId, timestamp: now, error }));
      return;
    }
    this.#markDirty(device);
    this.#publish(resultTopic, encodeTwinResult({ eventId: m.eventId, timestamp: now }));
    // KubeEdge publishes twin/update/delta after an update when expected ≠ actual (dtmanager twin.go dealDelta)
    if (rec !== undefined) this.#publishDelta(dev, rec.reported);
  }

  #onGet(dev: LocalDevice, msg: TwinBusMessage, now: number, resultTopic: string, phaseChanged: boolean): void {
    const device = dev.fullName;
    let m;
    try {
      m = decodeTwinGet(msg.payload);
    } catch (e) {
      if (!(e instanceof TwinMessageError)) throw e;
      this.#invalid(device, 'twin/get', e, msg);
      this.#seen(device, now, phaseChanged);
      this.#publish(resultTopic, encodeTwinResult({ eventId: undefined, timestamp: now, error: { code: e.code, status: 400, reason: e.message } }));
      return;
    }
    this.#seen(device, now, phaseChanged);
    if (dev.model === undefined) {
      this.#publish(resultTopic, encodeTwinResult({ eventId: m.eventId, timestamp: now, error: NO_MODEL }));
      return;
    }
    let reported: ReadonlyMap<string, StoredTwinValue> = new Map();
    try {
      reported = this.#o.store.get(device)?.reported ?? reported;
    } catch (e) {
      if (!(e instanceof TwinStoreError)) throw e;
      this.#storeFailed(device, e);
      this.#publish(resultTopic, encodeTwinResult({ eventId: m.eventId, timestamp: now, error: { code: 'twin/unavailable', status: 500, reason: 'the edge could not read the twin' } }));
      return;
    }
    const { desired } = desiredValues(dev);
    const entries = dev.model.properties.map((p) => ({ name: p.name, type: p.type, desired: desired.get(p.name)?.value, reported: reported.get(p.name) }));
    this.#publish(resultTopic, encodeTwinGetResult({ eventId: m.eventId, timestamp: now, entries }));
  }

  #onState(dev: LocalDevice, msg: TwinBusMessage, now: number, phaseChanged: boolean): void {
    const device = dev.fullName;
    let m;
    try {
      m = decodeStateUpdate(msg.payload);
    } catch (e) {
      if (!(e instanceof TwinMessageError)) throw e;
      this.#invalid(device, 'state/update', e, msg);
      this.#seen(device, now, phaseChanged);
      return;
    }
    try {
      this.#o.store.setState(device, m.state, now);
    } catch (e) {
      if (!(e instanceof TwinStoreError)) throw e;
      this.#storeFailed(device, e);
      return;
    }
    this.#markDirty(device);
  }

  /** The device was seen; a change to report when its phase changed or its reported lastSeen is old. */
  #seen(device: string, now: number, phaseChanged: boolean): void {
    const stale = now - (this.#reportedAt.get(device) ?? Number.NEGATIVE_INFINITY) >= this.#lastSeenMs;
    const dirty = phaseChanged || stale;
    try {
      this.#o.store.touch(device, now, { dirty });
    } catch (e) {
      this.#storeFailed(device, e);
      return;
    }
    if (dirty) this.#markDirty(device);
  }

  #invalid(device: string, topic: string, e: TwinMessageError, msg: TwinBusMessage): void {
    const suppressed = this.#logs.take(`${device}|invalid`);
    if (suppressed === undefined) return;
    this.#o.logger.warn(
      { event: 'security.twin_invalid_payload', device, topic, code: e.code, reason: clip(e.message, 200), spiffe_id: clip(msg.spiffeId, 300), bytes: msg.payload?.byteLength ?? 0, suppressed },
      'a device published an invalid twin message',
    );
  }

  #logDesiredInvalid(device: string, names: string[]): void {
    const suppressed = this.#logs.take(`${device}|desired`);
    if (suppressed === undefined) return;
    this.#o.logger.warn({ event: 'edge.twin_desired_invalid', device, properties: names.slice(0, 16), suppressed }, 'desired values that are not valid for the model are not sent to the device');
  }

  #storeFailed(device: string, e: unknown): void {
    const suppressed = this.#logs.take(`${device}|store`);
    if (suppressed === undefined) return;
    this.#o.logger.warn({ event: 'edge.twin_store_failed', device: clip(device, 320), code: codeOf(e), suppressed }, 'the device twin store failed');
  }

  // ------------------------------------------------------------------------------------------------------
  // Publishing

  #publishDelta(dev: LocalDevice, reported: ReadonlyMap<string, StoredTwinValue>): void {
    const entries = twinDelta(dev, reported);
    if (entries.length === 0) return;
    this.#publish(twinTopics(dev).updateDelta, encodeTwinDelta({ eventId: newTwinEventId(), timestamp: this.#o.clock.now(), entries }));
  }

  #publish(topic: string, payload: Buffer): void {
    if (this.#inflight >= MAX_TWIN_INFLIGHT_PUBLISHES) {
      this.#dropped++;
      const suppressed = this.#logs.take('publish|dropped');
      if (suppressed !== undefined) this.#o.logger.warn({ event: 'edge.twin_publish_dropped', topic: clip(topic, 256), inflight: this.#inflight, suppressed }, 'too many twin publishes in flight; dropped');
      return;
    }
    this.#inflight++;
    let p: Promise<unknown>;
    try {
      p = Promise.resolve(this.#o.bus.publish(topic, payload, 1));
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(
      () => undefined,
      (e: unknown) => {
        const suppressed = this.#logs.take('publish|failed');
        if (suppressed !== undefined) this.#o.logger.warn({ event: 'edge.twin_publish_failed', topic: clip(topic, 256), code: codeOf(e), suppressed }, 'a twin publish failed');
      },
    ).finally(() => {
      this.#inflight--;
    });
  }

  // ------------------------------------------------------------------------------------------------------
  // Reporting

  #markDirty(device: string): void {
    this.#dirty.add(device);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#closed || !this.#started) return;
    this.#timer = this.#o.timers.setTimeout(() => {
      this.#timer = undefined;
      if (this.#closed) return;
      this.flush();
      if (this.#dirty.size > 0) this.#schedule();
    }, this.#flushMs);
  }

  flush(): void {
    if (this.#closed) return;
    const batch = [...this.#dirty].slice(0, MAX_TWIN_REPORTS_PER_FLUSH);
    for (const device of batch) {
      const r = this.#reportOne(device);
      this.#dirty.delete(device);
      if (r.ok) continue;
      const code = codeOf(r.error);
      if (code === 'edge-hub/invalid-status') {
        // permanent: the hub refuses this entry as such; retrying it would block every other device
        this.#o.logger.warn({ event: 'edge.twin_report_refused', device, code }, 'the hub refused a device status; not retried until the device changes');
        continue;
      }
      // transient (outbox full, hub closed, store failed): keep it dirty (at the end) and stop, the rest would fail too
      this.#dirty.add(device);
      const suppressed = this.#logs.take('report|failed');
      if (suppressed !== undefined) {
        this.#o.logger.warn({ event: 'edge.twin_report_failed', device, code, pending: this.#dirty.size, suppressed }, 'device twins could not be reported; kept for the next flush');
      }
      break;
    }
  }

  /** `{ok: true}`: reported (or nothing to report). */
  #reportOne(device: string): { ok: true } | { ok: false; error: unknown } {
    const dev = this.#o.directory.get(device);
    if (dev === undefined) {
      this.#forget(device);
      return { ok: true };
    }
    const { store } = this.#o;
    let rec: DeviceTwinRecord | undefined;
    try {
      rec = store.get(device);
    } catch (e) {
      return { ok: false, error: e };
    }
    if (rec === undefined) return { ok: true };
    const phase = (this.#connected.get(device) ?? 0) > 0 ? 'Online' : 'Offline';
    const status: { -readonly [K in keyof DeviceStatusReport]: DeviceStatusReport[K] } = { kind: 'Device', name: device, phase, detail: twinStatusDetail(rec) };
    if (Number.isSafeInteger(dev.version) && dev.version >= 1) status.observedVersion = dev.version;
    try {
      this.#o.report(status, { replace: true });
    } catch (e) {
      return { ok: false, error: e };
    }
    this.#reportedAt.set(device, this.#o.clock.now());
    try {
      store.markReported(device, rec.seq, phase);
    } catch (e) {
      // reported; only the bookkeeping failed (it is reported again after a restart)
      this.#storeFailed(device, e);
    }
    return { ok: true };
  }
}

const NO_MODEL: TwinResultError = { code: 'twin/no-model', status: 404, reason: "the device's model is not on this node" };
