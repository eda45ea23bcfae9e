/**
 * Strict codec for the node API (style of src/protocol/admin/codec.ts): size-bounded, versioned, strict
 * JSON (no duplicate member names), a closed set of kinds and of members per kind, base64 validated and
 * bounded per field. The decoder is the only way bytes from a peer become a `NodeApiMessage`.
 *
 * Order of checks (so that each hostile input has one predictable code): size, UTF-8 and JSON, object,
 * `v`, `kind`, unknown members, missing members, then each member in the order the type lists them.
 */
import { EdgewardError, MAX_CERT_BYTES, MAX_CSR_BYTES, parseStrictJson } from '../../identity/index.js';
import { NodeApiError, type NodeApiErrorCode } from './errors.js';
import {
  CLOUD_TO_EDGE_KINDS,
  EDGE_TO_CLOUD_KINDS,
  MAX_NODE_API_CHAIN_CERTS,
  MAX_NODE_API_CHALLENGE_BYTES,
  MAX_NODE_API_ERROR_CODE,
  MAX_NODE_API_ERROR_MESSAGE,
  MAX_NODE_API_MESSAGE_BYTES,
  MAX_NODE_API_SVIDS,
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

// ignoreBOM: keep a BOM in the text so that the JSON parser refuses it (RFC 8259 8.1), as it does for string input.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Decode any node API message (text or UTF-8 bytes). Throws `NodeApiError`. */
export function decodeNodeApiMessage(input: string | Uint8Array): NodeApiMessage {
  let text: string;
  if (typeof input === 'string') {
    // UTF-16 length is at most the UTF-8 length; only count bytes when the cheap bound does not decide.
    if (input.length > MAX_NODE_API_MESSAGE_BYTES || Buffer.byteLength(input, 'utf8') > MAX_NODE_API_MESSAGE_BYTES) {
      fail('node-api/too-large', `node API message is larger than ${MAX_NODE_API_MESSAGE_BYTES} bytes`);
    }
    text = input;
  } else {
    if (!(input instanceof Uint8Array)) fail('node-api/malformed', 'node API message must be text or bytes');
    if (input.byteLength > MAX_NODE_API_MESSAGE_BYTES) fail('node-api/too-large', `node API message is larger than ${MAX_NODE_API_MESSAGE_BYTES} bytes`);
    try {
      text = utf8.decode(input);
    } catch (e) {
      throw new NodeApiError('node-api/malformed', 'node API message is not UTF-8', { cause: e });
    }
  }
  let value: unknown;
  try {
    value = parseStrictJson(text, { maxDepth: MAX_DEPTH });
  } catch (e) {
    if (e instanceof EdgewardError) throw new NodeApiError('node-api/malformed', 'node API message is not valid JSON', { cause: e });
    throw e;
  }
  if (!isObject(value)) fail('node-api/malformed', 'node API message must be a JSON object');
  return decodeObject(value);
}

function expectKinds<M extends NodeApiMessage>(m: NodeApiMessage, kinds: readonly string[], side: string): M {
  if (!kinds.includes(m.kind)) fail('node-api/unexpected-kind', `${m.kind} is not a message the ${side} accepts`);
  return m as M;
}

/** Decode a message sent by an edge (what the cloud receives). */
export function decodeEdgeToCloud(input: string | Uint8Array): EdgeToCloudMessage {
  return expectKinds<EdgeToCloudMessage>(decodeNodeApiMessage(input), EDGE_TO_CLOUD_KINDS, 'cloud');
}

/** Decode a message sent by the cloud (what an edge receives). */
export function decodeCloudToEdge(input: string | Uint8Array): CloudToEdgeMessage {
  return expectKinds<CloudToEdgeMessage>(decodeNodeApiMessage(input), CLOUD_TO_EDGE_KINDS, 'edge');
}

const b64 = (b: Buffer): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');

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
  decodeNodeApiMessage(text);
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
