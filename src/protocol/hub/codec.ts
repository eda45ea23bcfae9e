/**
 * Strict codec of the hub protocol (messages.ts). Decoding refuses, with a typed `HubProtocolError`:
 * frames over the side's size limit, text that is not UTF-8 JSON, duplicate member names, nesting deeper
 * than the resource bound, an unknown version or kind, a kind this side must not receive, unknown or
 * missing members, and members of the wrong type or out of bounds. A put's `data` is checked with the
 * resource rules (resources.ts) on both sides, so what the cloud stores and what an edge accepts agree.
 */
import { EdgewardError } from '../../identity/index.js';
import { parseBoundedJson } from '../json-text.js';
import { isNodeName } from '../../attestation/index.js';
import {
  CLOUD_TO_EDGE_HUB_KINDS,
  EDGE_TO_CLOUD_HUB_KINDS,
  HUB_ERROR_CODE_PATTERN,
  HUB_NUDGE_TOPICS,
  HUB_PROTOCOL_VERSION,
  HUB_SESSION_ID_PATTERN,
  HUB_STATUS_PHASE_PATTERN,
  HUB_STORE_ID_PATTERN,
  MAX_HUB_ACK_ITEMS,
  MAX_HUB_AGENT_LENGTH,
  MAX_HUB_CLOUD_FRAME_BYTES,
  MAX_HUB_EDGE_FRAME_BYTES,
  MAX_HUB_ERROR_MESSAGE,
  MAX_HUB_STATUS_ENTRIES,
  MAX_HUB_STATUS_MESSAGE,
  type AckItem,
  type CloudToEdgeHubMessage,
  type EdgeToCloudHubMessage,
  type HubMessage,
  type StatusEntry,
  type WireResource,
} from './messages.js';
import { statusDetailProblem } from './status-detail.js';
import { isResourceNameOf, RESOURCE_KINDS, validateResourceData, type ResourceKind, type ResourceRef } from './resources.js';

/**
 * - `hub/too-large`: the frame exceeds the side's limit.
 * - `hub/malformed`: not UTF-8 JSON, not an object, duplicate member names, nested too deep, a binary frame.
 * - `hub/unsupported-version`: `v` is missing or not 1.
 * - `hub/unknown-kind`: `kind` is missing or unknown.
 * - `hub/unexpected-kind`: a known kind this side must not receive (or one out of order on a session).
 * - `hub/unknown-field`, `hub/missing-field`, `hub/bad-field`: members of the kind.
 */
export const HUB_PROTOCOL_ERROR_CODES = [
  'hub/too-large',
  'hub/malformed',
  'hub/unsupported-version',
  'hub/unknown-kind',
  'hub/unexpected-kind',
  'hub/unknown-field',
  'hub/missing-field',
  'hub/bad-field',
] as const;
export type HubProtocolErrorCode = (typeof HUB_PROTOCOL_ERROR_CODES)[number];
export class HubProtocolError extends EdgewardError<HubProtocolErrorCode> {}

type Obj = Record<string, unknown>;
/** Resource bodies may nest 16 deep (resources.ts); the envelope adds 3 levels. */
const MAX_DEPTH = 20;

function fail(code: HubProtocolErrorCode, message: string): never {
  throw new HubProtocolError(code, message);
}
const isObject = (x: unknown): x is Obj => typeof x === 'object' && x !== null && !Array.isArray(x);
const show = (k: string): string => (k.length > 40 ? `${k.slice(0, 40)}...` : k);

function members(o: Obj, required: readonly string[], optional: readonly string[], where: string): void {
  for (const k of Object.keys(o)) if (!required.includes(k) && !optional.includes(k)) fail('hub/unknown-field', `${where}: unknown field ${JSON.stringify(show(k))}`);
  for (const f of required) if (!Object.prototype.hasOwnProperty.call(o, f)) fail('hub/missing-field', `${where}: missing field ${f}`);
}

function version(x: unknown, where: string): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 1) fail('hub/bad-field', `${where} must be an integer >= 1`);
  return x;
}

function time(x: unknown, where: string): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) fail('hub/bad-field', `${where} must be a non-negative integer (epoch ms)`);
  return x;
}

function text(x: unknown, where: string, max: number, pattern?: RegExp): string {
  if (typeof x !== 'string' || x.length > max || (pattern !== undefined && !pattern.test(x))) fail('hub/bad-field', `${where} is not valid`);
  return x;
}

function resourceKind(x: unknown, where: string): ResourceKind {
  if (typeof x !== 'string' || !(RESOURCE_KINDS as readonly string[]).includes(x)) fail('hub/bad-field', `${where} must be one of ${RESOURCE_KINDS.join(', ')}`);
  return x as ResourceKind;
}

function resourceName(x: unknown, where: string, kind: ResourceKind): string {
  if (!isResourceNameOf(kind, x)) fail('hub/bad-field', `${where} is not a valid ${kind} name`);
  return x;
}

function ref(x: unknown, where: string): ResourceRef {
  if (!isObject(x)) fail('hub/bad-field', `${where} must be an object`);
  members(x, ['kind', 'name'], [], where);
  const kind = resourceKind(x['kind'], `${where}.kind`);
  return { kind, name: resourceName(x['name'], `${where}.name`, kind) };
}

function wireResource(x: unknown, where: string): WireResource {
  if (!isObject(x)) fail('hub/bad-field', `${where} must be an object`);
  members(x, ['kind', 'name', 'version', 'data'], [], where);
  const kind = resourceKind(x['kind'], `${where}.kind`);
  const name = resourceName(x['name'], `${where}.name`, kind);
  const v = version(x['version'], `${where}.version`);
  const data = x['data'];
  if (!isObject(data)) fail('hub/bad-field', `${where}.data must be an object`);
  try {
    validateResourceData(kind, data);
  } catch (e) {
    if (e instanceof EdgewardError) fail('hub/bad-field', `${where}.data: ${e.message.slice(0, 200)}`);
    throw e;
  }
  return { kind, name, version: v, data };
}

function array(x: unknown, where: string, min: number, max: number): unknown[] {
  if (!Array.isArray(x) || x.length < min || x.length > max) fail('hub/bad-field', `${where} must be an array of ${min}..${max} items`);
  return x;
}

function ackItem(x: unknown, where: string): AckItem {
  if (!isObject(x)) fail('hub/bad-field', `${where} must be an object`);
  members(x, ['kind', 'name', 'version'], ['deleted'], where);
  const kind = resourceKind(x['kind'], `${where}.kind`);
  const base = { kind, name: resourceName(x['name'], `${where}.name`, kind), version: version(x['version'], `${where}.version`) };
  if (!Object.prototype.hasOwnProperty.call(x, 'deleted')) return base;
  if (x['deleted'] !== true) fail('hub/bad-field', `${where}.deleted must be true when present`);
  return { ...base, deleted: true };
}

function statusEntry(x: unknown, where: string): StatusEntry {
  if (!isObject(x)) fail('hub/bad-field', `${where} must be an object`);
  members(x, ['seq', 'kind', 'name', 'phase', 'at'], ['message', 'observedVersion', 'detail'], where);
  const kindValue = x['kind'];
  const kind = kindValue === 'Node' ? 'Node' : resourceKind(kindValue, `${where}.kind`);
  // A Node entry names the node itself (node-name rules); anything else a resource.
  const name = kind === 'Node' ? (isNodeName(x['name']) ? (x['name'] as string) : fail('hub/bad-field', `${where}.name is not a valid node name`)) : resourceName(x['name'], `${where}.name`, kind);
  const entry: { -readonly [K in keyof StatusEntry]: StatusEntry[K] } = {
    seq: version(x['seq'], `${where}.seq`),
    kind,
    name,
    phase: text(x['phase'], `${where}.phase`, 32, HUB_STATUS_PHASE_PATTERN),
    at: time(x['at'], `${where}.at`),
  };
  if (Object.prototype.hasOwnProperty.call(x, 'message')) entry.message = text(x['message'], `${where}.message`, MAX_HUB_STATUS_MESSAGE);
  if (Object.prototype.hasOwnProperty.call(x, 'observedVersion')) entry.observedVersion = version(x['observedVersion'], `${where}.observedVersion`);
  if (Object.prototype.hasOwnProperty.call(x, 'detail')) {
    const problem = statusDetailProblem(x['detail']);
    if (problem !== undefined) fail('hub/bad-field', `${where}.${problem}`);
    entry.detail = x['detail'] as Record<string, unknown>;
  }
  return entry;
}

function decodeObject(o: Obj): HubMessage {
  if (o['v'] !== HUB_PROTOCOL_VERSION) fail('hub/unsupported-version', `unsupported hub protocol version ${JSON.stringify(o['v'] ?? null)?.slice(0, 20)}`);
  const kind = o['kind'];
  const v = HUB_PROTOCOL_VERSION;
  switch (kind) {
    case 'hello': {
      members(o, ['v', 'kind', 'storeId', 'agent', 'outboxSeq'], ['resync'], 'hello');
      const storeId = text(o['storeId'], 'hello.storeId', 36, HUB_STORE_ID_PATTERN);
      const agent = text(o['agent'], 'hello.agent', MAX_HUB_AGENT_LENGTH, /^[\x21-\x7e]{1,64}$/);
      const seq = o['outboxSeq'];
      if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) fail('hub/bad-field', 'hello.outboxSeq must be a non-negative integer');
      if (!Object.prototype.hasOwnProperty.call(o, 'resync')) return { v, kind, storeId, agent, outboxSeq: seq };
      if (o['resync'] !== true) fail('hub/bad-field', 'hello.resync must be true when present');
      return { v, kind, storeId, agent, outboxSeq: seq, resync: true };
    }
    case 'ack': {
      members(o, ['v', 'kind', 'items'], ['inventory'], 'ack');
      const items = array(o['items'], 'ack.items', 1, MAX_HUB_ACK_ITEMS).map((x, i) => ackItem(x, `ack.items[${i}]`));
      if (!Object.prototype.hasOwnProperty.call(o, 'inventory')) return { v, kind, items };
      if (o['inventory'] !== true) fail('hub/bad-field', 'ack.inventory must be true when present');
      if (items.some((i) => i.deleted === true)) fail('hub/bad-field', 'an inventory ack lists held resources only (no deletes)');
      return { v, kind, items, inventory: true };
    }
    case 'status': {
      members(o, ['v', 'kind', 'entries'], [], 'status');
      const entries = array(o['entries'], 'status.entries', 1, MAX_HUB_STATUS_ENTRIES).map((x, i) => statusEntry(x, `status.entries[${i}]`));
      for (let i = 1; i < entries.length; i++) if (entries[i]!.seq <= entries[i - 1]!.seq) fail('hub/bad-field', 'status.entries must have strictly increasing seq');
      return { v, kind, entries };
    }
    case 'welcome': {
      members(o, ['v', 'kind', 'node', 'sessionId', 'heartbeatMs', 'resync'], [], 'welcome');
      if (!isNodeName(o['node'])) fail('hub/bad-field', 'welcome.node is not a valid node name');
      const hb = o['heartbeatMs'];
      if (typeof hb !== 'number' || !Number.isSafeInteger(hb) || hb < 1000 || hb > 600_000) fail('hub/bad-field', 'welcome.heartbeatMs must be 1000..600000');
      if (typeof o['resync'] !== 'boolean') fail('hub/bad-field', 'welcome.resync must be a boolean');
      return { v, kind, node: o['node'] as string, sessionId: text(o['sessionId'], 'welcome.sessionId', 64, HUB_SESSION_ID_PATTERN), heartbeatMs: hb, resync: o['resync'] };
    }
    case 'put':
      members(o, ['v', 'kind', 'resource'], [], 'put');
      return { v, kind, resource: wireResource(o['resource'], 'put.resource') };
    case 'delete':
      members(o, ['v', 'kind', 'resource', 'version'], [], 'delete');
      return { v, kind, resource: ref(o['resource'], 'delete.resource'), version: version(o['version'], 'delete.version') };
    case 'synced':
      members(o, ['v', 'kind', 'version'], [], 'synced');
      // 0: nothing was ever written at the cloud.
      if (o['version'] === 0) return { v, kind, version: 0 };
      return { v, kind, version: version(o['version'], 'synced.version') };
    case 'status.ack':
      members(o, ['v', 'kind', 'seq'], [], 'status.ack');
      return { v, kind, seq: version(o['seq'], 'status.ack.seq') };
    case 'nudge':
      members(o, ['v', 'kind', 'topic'], [], 'nudge');
      if (typeof o['topic'] !== 'string' || !(HUB_NUDGE_TOPICS as readonly string[]).includes(o['topic'])) fail('hub/bad-field', 'nudge.topic is not a known topic');
      return { v, kind, topic: o['topic'] as 'entries' };
    case 'error':
      members(o, ['v', 'kind', 'code', 'message'], [], 'error');
      return { v, kind, code: text(o['code'], 'error.code', 64, HUB_ERROR_CODE_PATTERN), message: text(o['message'], 'error.message', MAX_HUB_ERROR_MESSAGE) };
    default:
      return fail('hub/unknown-kind', `unknown hub message kind ${JSON.stringify(typeof kind === 'string' ? show(kind) : null)}`);
  }
}

function decode(input: string | Uint8Array, max: number): HubMessage {
  const value = parseBoundedJson(input, max, MAX_DEPTH, (why, cause) => {
    if (why === 'too-large') fail('hub/too-large', `hub frame is larger than ${max} bytes`);
    throw new HubProtocolError('hub/malformed', why === 'not-utf8' ? 'hub frame is not UTF-8' : why === 'not-text' ? 'hub frame must be text' : 'hub frame is not valid JSON', { cause });
  });
  if (!isObject(value)) fail('hub/malformed', 'hub frame must be a JSON object');
  return decodeObject(value);
}

function expect<M extends HubMessage>(m: HubMessage, kinds: readonly string[], side: string): M {
  if (!kinds.includes(m.kind)) fail('hub/unexpected-kind', `${m.kind} is not a message the ${side} accepts`);
  return m as M;
}

/** Decode a frame an edge sent (what the cloud receives): at most 64 KiB. */
export function decodeEdgeToCloudHub(input: string | Uint8Array): EdgeToCloudHubMessage {
  return expect<EdgeToCloudHubMessage>(decode(input, MAX_HUB_EDGE_FRAME_BYTES), EDGE_TO_CLOUD_HUB_KINDS, 'cloud');
}

/** Decode a frame the cloud sent (what an edge receives): at most 1 MiB. */
export function decodeCloudToEdgeHub(input: string | Uint8Array): CloudToEdgeHubMessage {
  return expect<CloudToEdgeHubMessage>(decode(input, MAX_HUB_CLOUD_FRAME_BYTES), CLOUD_TO_EDGE_HUB_KINDS, 'edge');
}

/** The wire object: exactly the members of the kind, in a fixed order (optional ones only when set). */
function toWire(m: HubMessage): Obj {
  const v = HUB_PROTOCOL_VERSION;
  switch (m.kind) {
    case 'hello':
      return m.resync === true
        ? { v, kind: m.kind, storeId: m.storeId, agent: m.agent, outboxSeq: m.outboxSeq, resync: true }
        : { v, kind: m.kind, storeId: m.storeId, agent: m.agent, outboxSeq: m.outboxSeq };
    case 'ack': {
      const items = m.items.map((i) => (i.deleted === true ? { kind: i.kind, name: i.name, version: i.version, deleted: true } : { kind: i.kind, name: i.name, version: i.version }));
      return m.inventory === true ? { v, kind: m.kind, items, inventory: true } : { v, kind: m.kind, items };
    }
    case 'status':
      return {
        v,
        kind: m.kind,
        entries: m.entries.map((e) => {
          const o: Obj = { seq: e.seq, kind: e.kind, name: e.name, phase: e.phase, at: e.at };
          if (e.message !== undefined) o['message'] = e.message;
          if (e.observedVersion !== undefined) o['observedVersion'] = e.observedVersion;
          if (e.detail !== undefined) o['detail'] = e.detail;
          return o;
        }),
      };
    case 'welcome':
      return { v, kind: m.kind, node: m.node, sessionId: m.sessionId, heartbeatMs: m.heartbeatMs, resync: m.resync };
    case 'put':
      return { v, kind: m.kind, resource: { kind: m.resource.kind, name: m.resource.name, version: m.resource.version, data: m.resource.data } };
    case 'delete':
      return { v, kind: m.kind, resource: { kind: m.resource.kind, name: m.resource.name }, version: m.version };
    case 'synced':
      return { v, kind: m.kind, version: m.version };
    case 'status.ack':
      return { v, kind: m.kind, seq: m.seq };
    case 'nudge':
      return { v, kind: m.kind, topic: m.topic };
    case 'error':
      return { v, kind: m.kind, code: m.code, message: m.message };
    default: {
      const never: never = m;
      throw new HubProtocolError('hub/unknown-kind', `cannot encode ${String((never as { kind?: unknown }).kind)}`);
    }
  }
}

/**
 * Encode a message as one JSON text frame. The text is decoded again before it is returned, so nothing is
 * sent that the peer's decoder would refuse (same codes, e.g. `hub/too-large`). Encode a fan-out frame once
 * and send the same string to every session.
 */
export function encodeHubMessage(m: HubMessage): string {
  let textValue: string;
  try {
    textValue = JSON.stringify(toWire(m));
  } catch (e) {
    throw new HubProtocolError('hub/bad-field', 'message cannot be encoded as JSON', { cause: e });
  }
  const fromEdge = (EDGE_TO_CLOUD_HUB_KINDS as readonly string[]).includes(m.kind);
  decode(textValue, fromEdge ? MAX_HUB_EDGE_FRAME_BYTES : MAX_HUB_CLOUD_FRAME_BYTES);
  return textValue;
}

/** An `error` frame for a failure: an EdgewardError's code and message (never a cause), else `hub/internal`. */
export function hubErrorFrom(e: unknown): { v: 1; kind: 'error'; code: string; message: string } {
  if (e instanceof EdgewardError && typeof e.code === 'string' && e.code.length <= 64 && HUB_ERROR_CODE_PATTERN.test(e.code)) {
    return { v: HUB_PROTOCOL_VERSION, kind: 'error', code: e.code, message: e.message.slice(0, 256) };
  }
  return { v: HUB_PROTOCOL_VERSION, kind: 'error', code: 'hub/internal', message: 'internal error' };
}
