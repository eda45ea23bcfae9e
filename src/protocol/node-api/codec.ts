/**
 * Strict codec for the node API (style of src/protocol/admin/codec.ts): size-bounded, versioned, strict
 * JSON (no duplicate member names), a closed set of kinds and of members per kind, base64 validated and
 * bounded per field. The decoder is the only way bytes from a peer become a `NodeApiMessage`.
 *
 * Order of checks (so that each hostile input has one predictable code): size, UTF-8 and JSON, object,
 * `v`, `kind`, unknown members, missing members, then each member in the order the type lists them.
 */
import { EdgewardError, MAX_CERT_BYTES, MAX_CSR_BYTES, SpiffeId } from '../../identity/index.js';
import { isDeviceName } from '../../attestation/index.js';
import { parseBoundedJson, utf8LengthExceeds } from '../json-text.js';
import { NodeApiError, type NodeApiErrorCode } from './errors.js';
import {
  CLOUD_TO_EDGE_KINDS,
  EDGE_TO_CLOUD_KINDS,
  MAX_NODE_API_CHAIN_CERTS,
  MAX_NODE_API_CHALLENGE_BYTES,
  MAX_NODE_API_ERROR_CODE,
  MAX_NODE_API_ERROR_MESSAGE,
  MAX_NODE_API_ENTRIES,
  MAX_NODE_API_ENTRY_DNS_NAMES,
  MAX_NODE_API_ENTRY_SELECTORS,
  MAX_NODE_API_HINT_BYTES,
  MAX_NODE_API_JWT_AUDIENCE_LENGTH,
  MAX_NODE_API_JWT_AUDIENCES,
  MAX_NODE_API_JWT_BYTES,
  MAX_NODE_API_JWT_TTL_MS,
  MAX_NODE_API_MESSAGE_BYTES,
  MAX_NODE_API_RESULT_BYTES,
  MAX_NODE_API_SELECTOR_LENGTH,
  MAX_NODE_API_SVIDS,
  MIN_NODE_API_JWT_TTL_MS,
  NODE_API_DEVICE_TOKEN_PATTERN,
  NODE_API_ENTRY_ID_PATTERN,
  NODE_API_ERROR_CODE_PATTERN,
  NODE_API_KINDS,
  NODE_API_METHODS,
  NODE_API_NODE_NAME_PATTERN,
  NODE_API_SESSION_ID_PATTERN,
  NODE_API_VERSION,
  type CloudToEdgeMessage,
  type EdgeToCloudMessage,
  type IssuedSvid,
  type NodeApiErrorMessage,
  type NodeApiKind,
  type NodeApiMessage,
  type NodeApiMethod,
  type NodeEntry,
  type SvidCsr,
} from './messages.js';

/** Nesting bound for the whole message (the attestation payload lives at depth 2). */
const MAX_DEPTH = 16;

type Obj = Record<string, unknown>;

function fail(code: NodeApiErrorCode, message: string): never {
  throw new NodeApiError(code, message);
}

function isObject(x: unknown): x is Obj {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

const show = (name: string): string => name.slice(0, 40);

/** Exactly the members `fields` (besides v and kind): unknown first, then missing. */
function checkMembers(o: Obj, fields: readonly string[], where: string): void {
  for (const k of Object.keys(o)) {
    if (k !== 'v' && k !== 'kind' && !fields.includes(k)) fail('node-api/unknown-field', `${where}: unknown field ${JSON.stringify(show(k))}`);
  }
  for (const f of fields) if (!Object.prototype.hasOwnProperty.call(o, f)) fail('node-api/missing-field', `${where}: missing field ${f}`);
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict padded base64 of 1..maxBytes bytes. */
function bytes(x: unknown, name: string, maxBytes: number): Buffer {
  if (typeof x !== 'string') fail('node-api/bad-field', `${name} must be a base64 string`);
  if (x.length > Math.ceil(maxBytes / 3) * 4) fail('node-api/field-too-large', `${name} is larger than ${maxBytes} bytes`);
  if (x.length === 0) fail('node-api/bad-field', `${name} must not be empty`);
  if (!BASE64.test(x)) fail('node-api/bad-base64', `${name} is not padded standard base64`);
  const b = Buffer.from(x, 'base64');
  // Canonical only: the unused bits of the last character are zero, so one byte string has one encoding.
  if (b.toString('base64') !== x) fail('node-api/bad-base64', `${name} is not canonical base64`);
  if (b.length > maxBytes) fail('node-api/field-too-large', `${name} is larger than ${maxBytes} bytes`);
  return b;
}

function str(x: unknown, name: string, pattern: RegExp): string {
  if (typeof x !== 'string' || !pattern.test(x)) fail('node-api/bad-field', `${name} is not valid`);
  return x;
}

function array(x: unknown, name: string, min: number, max: number): unknown[] {
  if (!Array.isArray(x)) fail('node-api/bad-field', `${name} must be an array`);
  if (x.length > max) fail('node-api/field-too-large', `${name} has more than ${max} items`);
  if (x.length < min) fail('node-api/bad-field', `${name} must have at least ${min} item(s)`);
  return x;
}

function chain(x: unknown, name: string): Buffer[] {
  return array(x, name, 1, MAX_NODE_API_CHAIN_CERTS).map((c, i) => bytes(c, `${name}[${i}]`, MAX_CERT_BYTES));
}

function bundleText(x: unknown): string {
  if (typeof x !== 'string' || x.length === 0) fail('node-api/bad-field', 'bundle must be a non-empty string (SPIFFE bundle JSON)');
  return x;
}

/** A device name `NAMESPACE/NAME` (src/attestation device-name.ts). */
function deviceName(x: unknown): string {
  if (!isDeviceName(x)) fail('node-api/bad-field', 'device must be a device name NAMESPACE/NAME');
  return x;
}

function method(x: unknown): NodeApiMethod {
  if (typeof x !== 'string') fail('node-api/bad-field', 'method must be a string');
  if (!(NODE_API_METHODS as readonly string[]).includes(x)) fail('node-api/unknown-method', `unknown attestation method ${JSON.stringify(show(x))}`);
  return x as NodeApiMethod;
}

function entryIds<T extends { entryId: string }>(items: T[], name: string): T[] {
  const seen = new Set<string>();
  for (const it of items) {
    if (seen.has(it.entryId)) fail('node-api/bad-field', `${name}: duplicate entryId ${it.entryId}`);
    seen.add(it.entryId);
  }
  return items;
}

/** Members `required` must be present, `optional` may be; nothing else (besides v and kind when `top`). */
function checkMembersOpt(o: Obj, required: readonly string[], optional: readonly string[], where: string, top: boolean): void {
  for (const k of Object.keys(o)) {
    if (top && (k === 'v' || k === 'kind')) continue;
    if (!required.includes(k) && !optional.includes(k)) fail('node-api/unknown-field', `${where}: unknown field ${JSON.stringify(show(k))}`);
  }
  for (const f of required) if (!Object.prototype.hasOwnProperty.call(o, f)) fail('node-api/missing-field', `${where}: missing field ${f}`);
}

const has = (o: Obj, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

/** A SPIFFE ID in its canonical text form (SPIFFE-ID 2). */
function spiffeIdText(x: unknown, name: string): string {
  if (typeof x !== 'string') fail('node-api/bad-field', `${name} must be a SPIFFE ID string`);
  let id: SpiffeId;
  try {
    id = SpiffeId.parse(x);
  } catch {
    fail('node-api/bad-field', `${name} is not a valid SPIFFE ID`);
  }
  if (id.toString() !== x) fail('node-api/bad-field', `${name} is not a canonical SPIFFE ID`);
  return x;
}

/** `type:value`: printable ASCII without spaces, the type without ':' (src/attestation selector rule). */
const SELECTOR = /^[\x21-\x39\x3b-\x7e]+:[\x21-\x7e]+$/;
// Same DNS name rule as src/attestation entries and the X509-SVID minter.
const DNS_NAME = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
/** C0/C1 controls or a lone UTF-16 surrogate. */
const CONTROL_OR_LONE_SURROGATE = /[\u0000-\u001f\u007f-\u009f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const JWS_COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

function uniqueStrings(list: string[], name: string): string[] {
  if (new Set(list).size !== list.length) fail('node-api/bad-field', `${name} has duplicate items`);
  return list;
}

function integer(x: unknown, name: string, min: number, max: number): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < min || x > max) fail('node-api/bad-field', `${name} must be an integer from ${min} to ${max}`);
  return x;
}

function text(x: unknown, name: string, maxChars: number): string {
  if (typeof x !== 'string' || x.length === 0) fail('node-api/bad-field', `${name} must be a non-empty string`);
  if (x.length > maxChars) fail('node-api/field-too-large', `${name} is longer than ${maxChars} characters`);
  if (CONTROL_OR_LONE_SURROGATE.test(x)) fail('node-api/bad-field', `${name} contains control characters or lone surrogates`);
  return x;
}

const ENTRY_REQUIRED = ['id', 'spiffeId', 'parentId', 'selectors', 'revision'] as const;
const ENTRY_OPTIONAL = ['x509SvidTtlMs', 'jwtSvidTtlMs', 'dnsNames', 'hint'] as const;

function nodeEntry(item: unknown, where: string): NodeEntry {
  if (!isObject(item)) fail('node-api/bad-field', `${where} must be an object`);
  checkMembersOpt(item, ENTRY_REQUIRED, ENTRY_OPTIONAL, where, false);
  const e: NodeEntry = {
    id: str(item['id'], `${where}.id`, NODE_API_ENTRY_ID_PATTERN),
    spiffeId: spiffeIdText(item['spiffeId'], `${where}.spiffeId`),
    parentId: spiffeIdText(item['parentId'], `${where}.parentId`),
    selectors: uniqueStrings(
      array(item['selectors'], `${where}.selectors`, 1, MAX_NODE_API_ENTRY_SELECTORS).map((s, i) => {
        const n = `${where}.selectors[${i}]`;
        if (typeof s !== 'string') fail('node-api/bad-field', `${n} must be a "type:value" string`);
        if (s.length > MAX_NODE_API_SELECTOR_LENGTH) fail('node-api/field-too-large', `${n} is longer than ${MAX_NODE_API_SELECTOR_LENGTH} characters`);
        if (!SELECTOR.test(s)) fail('node-api/bad-field', `${n} is not a "type:value" selector`);
        return s;
      }),
      `${where}.selectors`,
    ),
    revision: integer(item['revision'], `${where}.revision`, 0, Number.MAX_SAFE_INTEGER),
  };
  if (has(item, 'x509SvidTtlMs')) e.x509SvidTtlMs = integer(item['x509SvidTtlMs'], `${where}.x509SvidTtlMs`, MIN_NODE_API_JWT_TTL_MS, MAX_NODE_API_JWT_TTL_MS);
  if (has(item, 'jwtSvidTtlMs')) e.jwtSvidTtlMs = integer(item['jwtSvidTtlMs'], `${where}.jwtSvidTtlMs`, MIN_NODE_API_JWT_TTL_MS, MAX_NODE_API_JWT_TTL_MS);
  if (has(item, 'dnsNames')) {
    e.dnsNames = uniqueStrings(
      array(item['dnsNames'], `${where}.dnsNames`, 1, MAX_NODE_API_ENTRY_DNS_NAMES).map((d, i) => {
        if (typeof d !== 'string' || d.length > 253 || !DNS_NAME.test(d)) fail('node-api/bad-field', `${where}.dnsNames[${i}] is not a lower-case DNS name`);
        return d;
      }),
      `${where}.dnsNames`,
    );
  }
  if (has(item, 'hint')) {
    const h = text(item['hint'], `${where}.hint`, MAX_NODE_API_HINT_BYTES);
    if (Buffer.byteLength(h, 'utf8') > MAX_NODE_API_HINT_BYTES) fail('node-api/field-too-large', `${where}.hint is larger than ${MAX_NODE_API_HINT_BYTES} bytes`);
    e.hint = h;
  }
  return e;
}

function decodeObject(o: Obj): NodeApiMessage {
  if (!Object.prototype.hasOwnProperty.call(o, 'v') || o['v'] !== NODE_API_VERSION) {
    fail('node-api/unsupported-version', `unsupported node API version ${show(String(o['v']))}`);
  }
  const kind = o['kind'];
  if (typeof kind !== 'string' || !(NODE_API_KINDS as readonly string[]).includes(kind)) {
    fail('node-api/unknown-kind', `unknown node API message kind ${show(String(kind))}`);
  }
  const k = kind as NodeApiKind;
  const v = NODE_API_VERSION;
  switch (k) {
    case 'attest.begin': {
      checkMembers(o, ['method', 'nodeName', 'payload', 'csr'], k);
      const m = method(o['method']);
      const nodeName = str(o['nodeName'], 'nodeName', NODE_API_NODE_NAME_PATTERN);
      const payload = o['payload'];
      if (!isObject(payload)) fail('node-api/bad-field', 'payload must be a JSON object');
      return { v, kind: k, method: m, nodeName, payload, csr: bytes(o['csr'], 'csr', MAX_CSR_BYTES) };
    }
    case 'attest.challenge':
      checkMembers(o, ['sessionId', 'challenge'], k);
      return {
        v,
        kind: k,
        sessionId: str(o['sessionId'], 'sessionId', NODE_API_SESSION_ID_PATTERN),
        challenge: bytes(o['challenge'], 'challenge', MAX_NODE_API_CHALLENGE_BYTES),
      };
    case 'attest.response':
      checkMembers(o, ['sessionId', 'response'], k);
      return {
        v,
        kind: k,
        sessionId: str(o['sessionId'], 'sessionId', NODE_API_SESSION_ID_PATTERN),
        response: bytes(o['response'], 'response', MAX_NODE_API_CHALLENGE_BYTES),
      };
    case 'attest.result': {
      checkMembers(o, ['svidChainDer', 'bundle', 'reattestable'], k);
      const svidChainDer = chain(o['svidChainDer'], 'svidChainDer');
      const bundle = bundleText(o['bundle']);
      const reattestable = o['reattestable'];
      if (typeof reattestable !== 'boolean') fail('node-api/bad-field', 'reattestable must be a boolean');
      return { v, kind: k, svidChainDer, bundle, reattestable };
    }
    case 'renew.request':
      checkMembers(o, ['csr'], k);
      return { v, kind: k, csr: bytes(o['csr'], 'csr', MAX_CSR_BYTES) };
    case 'renew.result':
      checkMembers(o, ['svidChainDer', 'bundle'], k);
      return { v, kind: k, svidChainDer: chain(o['svidChainDer'], 'svidChainDer'), bundle: bundleText(o['bundle']) };
    case 'svids.request': {
      checkMembers(o, ['csrs'], k);
      const csrs = array(o['csrs'], 'csrs', 1, MAX_NODE_API_SVIDS).map((item, i): SvidCsr => {
        const where = `csrs[${i}]`;
        if (!isObject(item)) fail('node-api/bad-field', `${where} must be an object`);
        checkItemMembers(item, ['entryId', 'csr'], where);
        return { entryId: str(item['entryId'], `${where}.entryId`, NODE_API_ENTRY_ID_PATTERN), csr: bytes(item['csr'], `${where}.csr`, MAX_CSR_BYTES) };
      });
      return { v, kind: k, csrs: entryIds(csrs, 'csrs') };
    }
    case 'svids.result': {
      checkMembers(o, ['svids'], k);
      const svids = array(o['svids'], 'svids', 0, MAX_NODE_API_SVIDS).map((item, i): IssuedSvid => {
        const where = `svids[${i}]`;
        if (!isObject(item)) fail('node-api/bad-field', `${where} must be an object`);
        checkItemMembers(item, ['entryId', 'svidChainDer'], where);
        return { entryId: str(item['entryId'], `${where}.entryId`, NODE_API_ENTRY_ID_PATTERN), svidChainDer: chain(item['svidChainDer'], `${where}.svidChainDer`) };
      });
      return { v, kind: k, svids: entryIds(svids, 'svids') };
    }
    case 'entries.request':
      checkMembers(o, [], k);
      return { v, kind: k };
    case 'entries.result': {
      checkMembers(o, ['entries'], k);
      const entries = array(o['entries'], 'entries', 0, MAX_NODE_API_ENTRIES).map((item, i) => nodeEntry(item, `entries[${i}]`));
      if (new Set(entries.map((e) => e.id)).size !== entries.length) fail('node-api/bad-field', 'entries: duplicate entry id');
      return { v, kind: k, entries };
    }
    case 'jwt.request': {
      checkMembersOpt(o, ['entryId', 'audience'], ['ttlMs'], k, true);
      const entryId = str(o['entryId'], 'entryId', NODE_API_ENTRY_ID_PATTERN);
      const audience = uniqueStrings(
        array(o['audience'], 'audience', 1, MAX_NODE_API_JWT_AUDIENCES).map((a, i) => text(a, `audience[${i}]`, MAX_NODE_API_JWT_AUDIENCE_LENGTH)),
        'audience',
      );
      if (!has(o, 'ttlMs')) return { v, kind: k, entryId, audience };
      return { v, kind: k, entryId, audience, ttlMs: integer(o['ttlMs'], 'ttlMs', MIN_NODE_API_JWT_TTL_MS, MAX_NODE_API_JWT_TTL_MS) };
    }
    case 'jwt.result': {
      checkMembers(o, ['token', 'expiresAt'], k);
      const token = o['token'];
      if (typeof token !== 'string') fail('node-api/bad-field', 'token must be a string');
      if (token.length > MAX_NODE_API_JWT_BYTES) fail('node-api/field-too-large', `token is larger than ${MAX_NODE_API_JWT_BYTES} bytes`);
      if (!JWS_COMPACT.test(token)) fail('node-api/bad-field', 'token is not a JWS compact serialisation');
      return { v, kind: k, token, expiresAt: integer(o['expiresAt'], 'expiresAt', 0, Number.MAX_SAFE_INTEGER) };
    }
    case 'device.enroll': {
      checkMembersOpt(o, ['csr'], ['device', 'token', 'factoryChainDer'], k, true);
      const csr = bytes(o['csr'], 'csr', MAX_CSR_BYTES);
      if (has(o, 'token') === has(o, 'factoryChainDer')) fail('node-api/bad-field', 'device.enroll carries exactly one of token and factoryChainDer');
      const device = has(o, 'device') ? deviceName(o['device']) : undefined;
      if (has(o, 'factoryChainDer')) {
        if (device === undefined) fail('node-api/missing-field', 'device.enroll: missing field device (required with factoryChainDer)');
        return { v, kind: k, device, csr, factoryChainDer: chain(o['factoryChainDer'], 'factoryChainDer') };
      }
      const token = str(o['token'], 'token', NODE_API_DEVICE_TOKEN_PATTERN);
      return device === undefined ? { v, kind: k, csr, token } : { v, kind: k, device, csr, token };
    }
    case 'device.renew':
      checkMembers(o, ['device', 'csr', 'svidChainDer'], k);
      return { v, kind: k, device: deviceName(o['device']), csr: bytes(o['csr'], 'csr', MAX_CSR_BYTES), svidChainDer: chain(o['svidChainDer'], 'svidChainDer') };
    case 'device.svid':
      checkMembers(o, ['device', 'svidChainDer', 'expiresAt'], k);
      return {
        v,
        kind: k,
        device: deviceName(o['device']),
        svidChainDer: chain(o['svidChainDer'], 'svidChainDer'),
        expiresAt: integer(o['expiresAt'], 'expiresAt', 0, Number.MAX_SAFE_INTEGER),
      };
    case 'error': {
      checkMembers(o, ['code', 'message'], k);
      const code = o['code'];
      if (typeof code !== 'string' || code.length > MAX_NODE_API_ERROR_CODE || !NODE_API_ERROR_CODE_PATTERN.test(code)) {
        fail('node-api/bad-field', 'error code is not a valid code');
      }
      const message = o['message'];
      if (typeof message !== 'string') fail('node-api/bad-field', 'error message must be a string');
      if (message.length > MAX_NODE_API_ERROR_MESSAGE) fail('node-api/field-too-large', `error message is longer than ${MAX_NODE_API_ERROR_MESSAGE} characters`);
      return { v, kind: k, code, message };
    }
    default:
      return unreachable(k);
  }
}

function unreachable(x: never): never {
  return fail('node-api/unknown-kind', `unknown node API message kind ${show(String(x))}`);
}

/** Members of an array item: exactly `fields`. */
function checkItemMembers(o: Obj, fields: readonly string[], where: string): void {
  for (const k of Object.keys(o)) if (!fields.includes(k)) fail('node-api/unknown-field', `${where}: unknown field ${JSON.stringify(show(k))}`);
  for (const f of fields) if (!Object.prototype.hasOwnProperty.call(o, f)) fail('node-api/missing-field', `${where}: missing field ${f}`);
}

export interface DecodeNodeApiOptions {
  /**
   * Largest accepted message in UTF-8 bytes (default `MAX_NODE_API_MESSAGE_BYTES`, 64 KiB; at most
   * `MAX_NODE_API_RESULT_BYTES`, 4 MiB, which is what an edge allows for the cloud's results). Messages an
   * edge sends are refused above 64 KiB whatever this says.
   */
  maxBytes?: number;
}

/** Decode any node API message (text or UTF-8 bytes). Throws `NodeApiError`. */
export function decodeNodeApiMessage(input: string | Uint8Array, options: DecodeNodeApiOptions = {}): NodeApiMessage {
  const max = Math.min(options.maxBytes ?? MAX_NODE_API_MESSAGE_BYTES, MAX_NODE_API_RESULT_BYTES);
  const value = parseBoundedJson(input, max, MAX_DEPTH, (why, cause) => {
    if (why === 'too-large') fail('node-api/too-large', `node API message is larger than ${max} bytes`);
    throw new NodeApiError(
      'node-api/malformed',
      why === 'not-utf8' ? 'node API message is not UTF-8' : why === 'not-text' ? 'node API message must be text or bytes' : 'node API message is not valid JSON',
      { cause },
    );
  });
  if (!isObject(value)) fail('node-api/malformed', 'node API message must be a JSON object');
  const m = decodeObject(value);
  // What an edge sends stays at 64 KiB even where a larger bound was allowed (the cloud's results).
  if (max > MAX_NODE_API_MESSAGE_BYTES && m.kind !== 'error' && (EDGE_TO_CLOUD_KINDS as readonly string[]).includes(m.kind)) {
    const size = typeof input === 'string' ? (utf8LengthExceeds(input, MAX_NODE_API_MESSAGE_BYTES) ? Infinity : 0) : input.byteLength;
    if (size > MAX_NODE_API_MESSAGE_BYTES) fail('node-api/too-large', `node API message is larger than ${MAX_NODE_API_MESSAGE_BYTES} bytes`);
  }
  return m;
}

function expectKinds<M extends NodeApiMessage>(m: NodeApiMessage, kinds: readonly string[], side: string): M {
  if (!kinds.includes(m.kind)) fail('node-api/unexpected-kind', `${m.kind} is not a message the ${side} accepts`);
  return m as M;
}

/** Decode a message sent by an edge (what the cloud receives): at most 64 KiB. */
export function decodeEdgeToCloud(input: string | Uint8Array): EdgeToCloudMessage {
  return expectKinds<EdgeToCloudMessage>(decodeNodeApiMessage(input), EDGE_TO_CLOUD_KINDS, 'cloud');
}

/** Decode a message sent by the cloud (what an edge receives): at most 4 MiB. */
export function decodeCloudToEdge(input: string | Uint8Array): CloudToEdgeMessage {
  return expectKinds<CloudToEdgeMessage>(decodeNodeApiMessage(input, { maxBytes: MAX_NODE_API_RESULT_BYTES }), CLOUD_TO_EDGE_KINDS, 'edge');
}

const b64 = (b: Buffer): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');

/** An entry on the wire: optional members only when set (an empty dnsNames list is omitted). */
function entryWire(e: NodeEntry): Obj {
  const o: Obj = { id: e.id, spiffeId: e.spiffeId, parentId: e.parentId, selectors: e.selectors };
  if (e.x509SvidTtlMs !== undefined) o['x509SvidTtlMs'] = e.x509SvidTtlMs;
  if (e.jwtSvidTtlMs !== undefined) o['jwtSvidTtlMs'] = e.jwtSvidTtlMs;
  if (e.dnsNames !== undefined && e.dnsNames.length > 0) o['dnsNames'] = e.dnsNames;
  if (e.hint !== undefined) o['hint'] = e.hint;
  o['revision'] = e.revision;
  return o;
}

/** The wire object of a message: exactly the members of its kind, in a fixed order. */
function toWire(m: NodeApiMessage): Obj {
  const v = NODE_API_VERSION;
  switch (m.kind) {
    case 'attest.begin':
      return { v, kind: m.kind, method: m.method, nodeName: m.nodeName, payload: m.payload, csr: b64(m.csr) };
    case 'attest.challenge':
      return { v, kind: m.kind, sessionId: m.sessionId, challenge: b64(m.challenge) };
    case 'attest.response':
      return { v, kind: m.kind, sessionId: m.sessionId, response: b64(m.response) };
    case 'attest.result':
      return { v, kind: m.kind, svidChainDer: m.svidChainDer.map(b64), bundle: m.bundle, reattestable: m.reattestable };
    case 'renew.request':
      return { v, kind: m.kind, csr: b64(m.csr) };
    case 'renew.result':
      return { v, kind: m.kind, svidChainDer: m.svidChainDer.map(b64), bundle: m.bundle };
    case 'svids.request':
      return { v, kind: m.kind, csrs: m.csrs.map((c) => ({ entryId: c.entryId, csr: b64(c.csr) })) };
    case 'svids.result':
      return { v, kind: m.kind, svids: m.svids.map((s) => ({ entryId: s.entryId, svidChainDer: s.svidChainDer.map(b64) })) };
    case 'entries.request':
      return { v, kind: m.kind };
    case 'entries.result':
      return { v, kind: m.kind, entries: m.entries.map(entryWire) };
    case 'jwt.request':
      return m.ttlMs === undefined
        ? { v, kind: m.kind, entryId: m.entryId, audience: m.audience }
        : { v, kind: m.kind, entryId: m.entryId, audience: m.audience, ttlMs: m.ttlMs };
    case 'jwt.result':
      return { v, kind: m.kind, token: m.token, expiresAt: m.expiresAt };
    case 'device.enroll': {
      const w: Obj = { v, kind: m.kind, csr: b64(m.csr) };
      if (m.device !== undefined) w['device'] = m.device;
      if (m.token !== undefined) w['token'] = m.token;
      if (m.factoryChainDer !== undefined) w['factoryChainDer'] = m.factoryChainDer.map(b64);
      return w;
    }
    case 'device.renew':
      return { v, kind: m.kind, device: m.device, csr: b64(m.csr), svidChainDer: m.svidChainDer.map(b64) };
    case 'device.svid':
      return { v, kind: m.kind, device: m.device, svidChainDer: m.svidChainDer.map(b64), expiresAt: m.expiresAt };
    case 'error':
      return { v, kind: m.kind, code: m.code, message: m.message };
    default:
      return unreachable(m);
  }
}

/**
 * Encode a message as one JSON text. The result is decoded again before it is returned, so nothing is
 * sent that the peer's decoder would refuse (same `NodeApiError` codes, e.g. `node-api/too-large`).
 */
export function encodeNodeApiMessage(m: NodeApiMessage): string {
  let text: string;
  try {
    text = JSON.stringify(toWire(m));
  } catch (e) {
    throw new NodeApiError('node-api/bad-field', 'message cannot be encoded as JSON', { cause: e });
  }
  // The cloud's results may be up to 4 MiB; everything else (and anything an edge sends) 64 KiB.
  const cloudResult = m.kind !== 'error' && (CLOUD_TO_EDGE_KINDS as readonly string[]).includes(m.kind);
  decodeNodeApiMessage(text, { maxBytes: cloudResult ? MAX_NODE_API_RESULT_BYTES : MAX_NODE_API_MESSAGE_BYTES });
  return text;
}

/**
 * An `error` message for a failure: the code and message of an `EdgewardError` (messages are written to
 * be shown to peers and never contain secrets), or `internal` for anything else. The cause is never
 * included. Codes that do not fit the wire pattern become `internal`.
 */
export function nodeApiErrorFrom(e: unknown): NodeApiErrorMessage {
  if (e instanceof EdgewardError && typeof e.code === 'string' && e.code.length <= MAX_NODE_API_ERROR_CODE && NODE_API_ERROR_CODE_PATTERN.test(e.code)) {
    return { v: NODE_API_VERSION, kind: 'error', code: e.code, message: e.message.slice(0, 256) };
  }
  return { v: NODE_API_VERSION, kind: 'error', code: 'internal', message: 'internal error' };
}
