/**
 * The payloads of the device twin topics (issue #6), after KubeEdge's devicetwin messages
 * (kubeedge/kubeedge edge/pkg/devicetwin/dttype/types.go: BaseMessage {event_id, timestamp}, DeviceTwinUpdate
 * {twin: {PROP: MsgTwin}}, MsgTwin {expected?, actual?, metadata?}, TwinValue {value, metadata?: {timestamp}},
 * DeviceTwinDelta {twin, delta: {PROP: value}}, Result {code?, reason?}; topics in dtcommon/common.go,
 * kubeedge.md §6). Pure: no I/O.
 *
 * What a device publishes (decoded here, strictly: size bounded before parsing, strict UTF-8, strict JSON with
 * duplicate member names refused, nesting bounded, unknown members refused):
 *
 *   .../twin/update   {event_id?, timestamp?, twin: {PROP: {actual: {value: "21.5", metadata?: {timestamp?}},
 *                                                           metadata?: {type?: "Updated"}}}}
 *   .../twin/get      {event_id?, timestamp?}   (an empty payload is accepted: `mosquitto_pub -n`)
 *   .../state/update  {event_id?, timestamp?, state: "online" | "offline" | ...}
 *
 * Rules beyond KubeEdge's (which accepts any twin key and value and lets a device write `expected`, i.e. the
 * desired value, from the edge: kubeedge.md §6, #4166):
 * - a device reports `actual` values only; `expected` is the cloud's (Device spec), so it is refused here;
 * - every property must be one of the device's model (`unknown-property`), and every value must be valid for
 *   the property's type and range (checkTwinValue, `invalid-value`); one bad entry refuses the whole message;
 * - a device reports actual values of any property of its model, ReadOnly and ReadWrite alike;
 * - the device's own timestamps are read (shape-checked) but not trusted: the edge stamps what it stores.
 *
 * What the edge publishes (encoded here):
 *
 *   .../twin/update/result  {event_id, timestamp}  or, refused,
 *                           {event_id, timestamp, code: 400|404|500, reason, error: {code: "twin-message/..."}}
 *                           (`code`/`reason` as KubeEdge's Result; `error.code` is Edgeward's stable code)
 *   .../twin/update/delta   {event_id, timestamp, twin: {PROP: {expected: {value}, actual?: {value, metadata:
 *                           {timestamp}}}}, delta: {PROP: "desired value"}}   (only the properties that differ)
 *   .../twin/get/result     {event_id, timestamp, twin: {PROP: {expected?: {value}, actual?: {value, metadata:
 *                           {timestamp}}, metadata: {type: "float"}}}}   (every property of the model)
 */
import { randomUUID } from 'node:crypto';
import { EdgewardError, parseStrictJson } from '../../identity/index.js';
import { MAX_DEVICE_PROPERTIES, checkTwinValue, type DeviceModelSpec, type DevicePropertyType, type ModelProperty } from '../../protocol/index.js';

/** Largest twin payload a device may publish (UTF-8 bytes); checked before anything is parsed. */
export const MAX_TWIN_MESSAGE_BYTES = 16 * 1024;
/** Deepest JSON nesting of a twin payload (twin/update needs 5). */
export const MAX_TWIN_MESSAGE_DEPTH = 6;
/** Longest `event_id` (printable ASCII; KubeEdge uses UUIDs, some mappers send ""). */
export const MAX_TWIN_EVENT_ID_LENGTH = 128;
/** A device state word (KubeEdge dtcommon: online, offline, ok, unknown). */
export const DEVICE_STATE_PATTERN = /^[A-Za-z][A-Za-z0-9_.-]{0,31}$/;
/** `twin.PROP.metadata.type`: KubeEdge devices send "Updated", mappers a value type ("int", "string"...). Informational. */
const TWIN_TYPE_PATTERN = /^[A-Za-z][A-Za-z0-9_-]{0,31}$/;
const EVENT_ID_PATTERN = /^[\x20-\x7e]*$/;

/**
 * - `twin-message/too-large`: over MAX_TWIN_MESSAGE_BYTES.
 * - `twin-message/malformed`: not UTF-8, not strict JSON, too deep, or not the message's shape (wrong types,
 *   unknown or missing members, `expected` from a device, too many properties).
 * - `twin-message/unknown-property`: a property the device's model does not have.
 * - `twin-message/invalid-value`: a value that is not valid for its property (type, range, length).
 */
export const TWIN_MESSAGE_ERROR_CODES = ['twin-message/too-large', 'twin-message/malformed', 'twin-message/unknown-property', 'twin-message/invalid-value'] as const;
export type TwinMessageErrorCode = (typeof TWIN_MESSAGE_ERROR_CODES)[number];
export class TwinMessageError extends EdgewardError<TwinMessageErrorCode> {}

export interface TwinUpdateMessage {
  readonly eventId: string | undefined;
  readonly timestamp: number | undefined;
  /** The reported (actual) values, in message order; names unique (strict JSON), each a model property. */
  readonly values: ReadonlyArray<{ readonly name: string; readonly value: string }>;
}

export interface TwinGetMessage {
  readonly eventId: string | undefined;
  readonly timestamp: number | undefined;
}

export interface StateUpdateMessage {
  readonly eventId: string | undefined;
  readonly timestamp: number | undefined;
  readonly state: string;
}

type Obj = Record<string, unknown>;

function isObj(x: unknown): x is Obj {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return false;
  const proto = Object.getPrototypeOf(x) as unknown;
  return proto === Object.prototype || proto === null;
}

const hasOwn = (o: Obj, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

/** A short, quoted rendering of peer text for messages (peer text is never echoed unbounded). */
function show(s: string): string {
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}...` : s);
}

function malformed(message: string, cause?: unknown): never {
  throw new TwinMessageError('twin-message/malformed', message, cause === undefined ? undefined : { cause });
}

function onlyMembers(o: Obj, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) malformed(`${where}: unknown member ${show(k)} (allowed: ${allowed.join(', ')})`);
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Parse one payload: bounded, strict UTF-8 (a BOM is kept so that the parser refuses it), strict JSON. */
function parsePayload(payload: Uint8Array | string, emptyAs?: Obj): Obj {
  let text: string;
  if (typeof payload === 'string') {
    if (payload.length > MAX_TWIN_MESSAGE_BYTES || Buffer.byteLength(payload, 'utf8') > MAX_TWIN_MESSAGE_BYTES) {
      throw new TwinMessageError('twin-message/too-large', `a twin message is at most ${MAX_TWIN_MESSAGE_BYTES} bytes`);
    }
    text = payload;
  } else {
    if (!(payload instanceof Uint8Array)) malformed('a twin message must be bytes');
    if (payload.byteLength > MAX_TWIN_MESSAGE_BYTES) throw new TwinMessageError('twin-message/too-large', `a twin message is at most ${MAX_TWIN_MESSAGE_BYTES} bytes`);
    try {
      text = utf8.decode(payload);
    } catch (e) {
      malformed('a twin message must be UTF-8 JSON', e);
    }
  }
  if (text.length === 0 && emptyAs !== undefined) return emptyAs;
  let v: unknown;
  try {
    v = parseStrictJson(text, { maxDepth: MAX_TWIN_MESSAGE_DEPTH });
  } catch (e) {
    if (e instanceof EdgewardError) malformed(`a twin message must be strict JSON (${e.message.slice(0, 120)})`, e);
    throw e;
  }
  if (!isObj(v)) malformed('a twin message must be a JSON object');
  return v;
}

/** `event_id` and `timestamp` (KubeEdge BaseMessage), both optional. */
function base(o: Obj): { eventId: string | undefined; timestamp: number | undefined } {
  let eventId: string | undefined;
  let timestamp: number | undefined;
  if (hasOwn(o, 'event_id')) {
    const e = o['event_id'];
    if (typeof e !== 'string' || e.length > MAX_TWIN_EVENT_ID_LENGTH || !EVENT_ID_PATTERN.test(e)) {
      malformed(`event_id must be a string of at most ${MAX_TWIN_EVENT_ID_LENGTH} printable ASCII characters`);
    }
    eventId = e;
  }
  if (hasOwn(o, 'timestamp')) {
    const t = o['timestamp'];
    if (typeof t !== 'number' || !Number.isSafeInteger(t) || t < 0) malformed('timestamp must be a non-negative integer (epoch ms)');
    timestamp = t;
  }
  return { eventId, timestamp };
}

/** Optional `{timestamp?}` value metadata (KubeEdge ValueMetadata). */
function valueMetadata(x: unknown, where: string): void {
  if (!isObj(x)) malformed(`${where} must be an object`);
  onlyMembers(x, ['timestamp'], where);
  if (hasOwn(x, 'timestamp')) {
    const t = x['timestamp'];
    if (typeof t !== 'number' || !Number.isSafeInteger(t) || t < 0) malformed(`${where}.timestamp must be a non-negative integer (epoch ms)`);
  }
}

/**
 * Decode a `twin/update` a device published, against its model. Throws TwinMessageError.
 * (KubeEdge DeviceTwinUpdate; a device reports `actual` only: kubeedge.md §6.)
 */
export function decodeTwinUpdate(payload: Uint8Array | string, model: DeviceModelSpec): TwinUpdateMessage {
  const o = parsePayload(payload);
  onlyMembers(o, ['event_id', 'timestamp', 'twin'], 'twin/update');
  const b = base(o);
  const twin = o['twin'];
  if (!isObj(twin)) malformed('twin/update: twin must be an object of properties');
  const names = Object.keys(twin);
  if (names.length === 0) malformed('twin/update: twin names no property');
  if (names.length > MAX_DEVICE_PROPERTIES) malformed(`twin/update: at most ${MAX_DEVICE_PROPERTIES} properties`);
  const props = new Map<string, ModelProperty>();
  for (const p of model.properties) props.set(p.name, p);
  const values: Array<{ name: string; value: string }> = [];
  for (const name of names) {
    const prop = props.get(name);
    if (prop === undefined) throw new TwinMessageError('twin-message/unknown-property', `the device's model has no property ${show(name)}`);
    const where = `twin.${show(name)}`;
    const entry = twin[name];
    if (!isObj(entry)) malformed(`${where} must be an object`);
    if (hasOwn(entry, 'expected')) malformed(`${where}: a device reports actual values only (desired values come from the cloud)`);
    onlyMembers(entry, ['actual', 'metadata'], where);
    const actual = entry['actual'];
    if (!isObj(actual)) malformed(`${where}.actual must be an object with a string value`);
    onlyMembers(actual, ['value', 'metadata'], `${where}.actual`);
    if (hasOwn(actual, 'metadata')) valueMetadata(actual['metadata'], `${where}.actual.metadata`);
    if (hasOwn(entry, 'metadata')) {
      const m = entry['metadata'];
      if (!isObj(m)) malformed(`${where}.metadata must be an object`);
      onlyMembers(m, ['type'], `${where}.metadata`);
      if (hasOwn(m, 'type') && (typeof m['type'] !== 'string' || !TWIN_TYPE_PATTERN.test(m['type']))) malformed(`${where}.metadata.type must be a short word (e.g. "Updated")`);
    }
    const value = actual['value'];
    if (typeof value !== 'string') malformed(`${where}.actual.value must be a string (twin values are strings: quote numbers and booleans)`);
    const problem = checkTwinValue(prop, value);
    if (problem !== undefined) throw new TwinMessageError('twin-message/invalid-value', problem);
    values.push({ name, value });
  }
  return { ...b, values };
}

/** Decode a `twin/get` (KubeEdge: `{event_id}`; empty payload: no event id). Throws TwinMessageError. */
export function decodeTwinGet(payload: Uint8Array | string): TwinGetMessage {
  const o = parsePayload(payload, {});
  onlyMembers(o, ['event_id', 'timestamp'], 'twin/get');
  return base(o);
}

/** Decode a `state/update` (KubeEdge DeviceUpdate's state). Throws TwinMessageError. */
export function decodeStateUpdate(payload: Uint8Array | string): StateUpdateMessage {
  const o = parsePayload(payload);
  onlyMembers(o, ['event_id', 'timestamp', 'state'], 'state/update');
  const b = base(o);
  const state = o['state'];
  if (typeof state !== 'string' || !DEVICE_STATE_PATTERN.test(state)) malformed('state/update: state must be a word of 1-32 of [A-Za-z0-9_.-] (e.g. "online")');
  return { ...b, state };
}

/**
 * The `event_id` of a payload that was refused (for its result), when it is a bounded strict JSON object with a
 * valid `event_id`; undefined otherwise. Never throws.
 */
export function peekTwinEventId(payload: Uint8Array | string): string | undefined {
  try {
    const e = parsePayload(payload)['event_id'];
    return typeof e === 'string' && e.length <= MAX_TWIN_EVENT_ID_LENGTH && EVENT_ID_PATTERN.test(e) ? e : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Encoders

/** A refusal carried by a result message. */
export interface TwinResultError {
  /** Edgeward's stable code, e.g. `twin-message/invalid-value` or `twin/no-model`. */
  readonly code: string;
  /** KubeEdge-style numeric code (dtcommon: 400 bad request, 404 not found, 500 internal). */
  readonly status: 400 | 404 | 429 | 500;
  /** Human-readable reason (about the device's own message; internal causes are never sent). */
  readonly reason: string;
}

/** A reported value as the edge stored it. */
export interface ReportedTwinValue {
  readonly value: string;
  /** When the edge received it (epoch ms). */
  readonly at: number;
}

const MAX_REASON_LENGTH = 256;

function encode(o: Obj): Buffer {
  return Buffer.from(JSON.stringify(o), 'utf8');
}

function actualOf(r: ReportedTwinValue): Obj {
  return { value: r.value, metadata: { timestamp: r.at } };
}

/** A fresh event id for messages the edge originates (deltas). */
export function newTwinEventId(): string {
  return randomUUID();
}

/** `twin/update/result` (and the refusal shape of `twin/get/result`): `{event_id, timestamp}` or with a refusal. */
export function encodeTwinResult(r: { eventId: string | undefined; timestamp: number; error?: TwinResultError | undefined }): Buffer {
  const o: Obj = { event_id: r.eventId ?? '', timestamp: r.timestamp };
  if (r.error !== undefined) {
    o['code'] = r.error.status;
    o['reason'] = r.error.reason.length > MAX_REASON_LENGTH ? `${r.error.reason.slice(0, MAX_REASON_LENGTH)}...` : r.error.reason;
    o['error'] = { code: r.error.code };
  }
  return encode(o);
}

export interface TwinDeltaEntry {
  readonly name: string;
  /** The desired value (Device spec). */
  readonly desired: string;
  /** What the device reported last, if it did. */
  readonly reported: ReportedTwinValue | undefined;
}

/**
 * `twin/update/delta` (KubeEdge DeviceTwinDelta): `delta` maps each property whose desired value differs from
 * the reported one (or was never reported) to the desired value; `twin` carries expected/actual of just those.
 */
export function encodeTwinDelta(d: { eventId: string; timestamp: number; entries: readonly TwinDeltaEntry[] }): Buffer {
  const twin: Obj = {};
  const delta: Obj = {};
  for (const e of d.entries) {
    const t: Obj = { expected: { value: e.desired } };
    if (e.reported !== undefined) t['actual'] = actualOf(e.reported);
    twin[e.name] = t;
    delta[e.name] = e.desired;
  }
  return encode({ event_id: d.eventId, timestamp: d.timestamp, twin, delta });
}

export interface TwinDocumentEntry {
  readonly name: string;
  readonly type: DevicePropertyType;
  readonly desired: string | undefined;
  readonly reported: ReportedTwinValue | undefined;
}

/** `twin/get/result` (KubeEdge DeviceTwinResult): expected (desired) and actual (reported) of every property. */
export function encodeTwinGetResult(r: { eventId: string | undefined; timestamp: number; entries: readonly TwinDocumentEntry[] }): Buffer {
  const twin: Obj = {};
  for (const e of r.entries) {
    const t: Obj = {};
    if (e.desired !== undefined) t['expected'] = { value: e.desired };
    if (e.reported !== undefined) t['actual'] = actualOf(e.reported);
    // KubeEdge's twin metadata type is the value type in lower case (dtcommon TypeInt "int", TypeString "string").
    t['metadata'] = { type: e.type.toLowerCase() };
    twin[e.name] = t;
  }
  return encode({ event_id: r.eventId ?? '', timestamp: r.timestamp, twin });
}
