/**
 * The admin protocol between the `edgeward` CLI and a local agent or cloud process: one JSON request and
 * one JSON response per connection over a private Unix socket (0600 in the data dir), each a single line.
 * Versioned (`v`), size-bounded, strictly decoded: unknown versions, fields or methods are refused.
 */
import { EdgewardError, parseStrictJson } from '../../identity/index.js';

export const ADMIN_PROTOCOL_VERSION = 1;
export const MAX_ADMIN_MESSAGE_BYTES = 1024 * 1024;

export const ADMIN_METHODS = [
  'entry.create',
  'entry.list',
  'entry.delete',
  'bundle.show',
  'agent.status',
  // the cloud core (issue #4)
  'cloud.status',
  'token.create',
  'node.list',
  'node.show',
  'node.ban',
  'node.unban',
  'node.evict',
  // resources and the hub (issue #5): apply/get/delete on the cloud, get and status.report on an edge
  'resource.apply',
  'resource.get',
  'resource.delete',
  'status.report',
  // devices (issue #6): bootstrap tokens and revocation on the cloud
  'device.token',
  'device.revoke',
] as const;
export type AdminMethod = (typeof ADMIN_METHODS)[number];

export interface AdminRequest {
  v: typeof ADMIN_PROTOCOL_VERSION;
  method: AdminMethod;
  params: Record<string, unknown>;
}

export type AdminResponse =
  | { v: typeof ADMIN_PROTOCOL_VERSION; ok: true; result: unknown }
  | { v: typeof ADMIN_PROTOCOL_VERSION; ok: false; error: { code: string; message: string } };

export type AdminProtocolErrorCode = 'admin/malformed' | 'admin/too-large' | 'admin/unsupported-version' | 'admin/unknown-method';
export class AdminProtocolError extends EdgewardError<AdminProtocolErrorCode> {}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function parse(line: string): Record<string, unknown> {
  if (Buffer.byteLength(line) > MAX_ADMIN_MESSAGE_BYTES) throw new AdminProtocolError('admin/too-large', 'admin message too large');
  let v: unknown;
  try {
    v = parseStrictJson(line);
  } catch (e) {
    throw new AdminProtocolError('admin/malformed', 'admin message is not valid JSON', { cause: e });
  }
  if (!isObject(v)) throw new AdminProtocolError('admin/malformed', 'admin message must be a JSON object');
  if (v['v'] !== ADMIN_PROTOCOL_VERSION) throw new AdminProtocolError('admin/unsupported-version', `unsupported admin protocol version ${String(v['v'])}`);
  return v;
}

export function encodeAdminMessage(m: AdminRequest | AdminResponse): string {
  return JSON.stringify(m) + '\n';
}

export function decodeAdminRequest(line: string): AdminRequest {
  const v = parse(line);
  for (const k of Object.keys(v)) if (k !== 'v' && k !== 'method' && k !== 'params') throw new AdminProtocolError('admin/malformed', `unknown field ${k.slice(0, 40)}`);
  const method = v['method'];
  if (typeof method !== 'string' || !(ADMIN_METHODS as readonly string[]).includes(method)) {
    throw new AdminProtocolError('admin/unknown-method', `unknown admin method ${String(method).slice(0, 40)}`);
  }
  const params = v['params'] ?? {};
  if (!isObject(params)) throw new AdminProtocolError('admin/malformed', 'params must be an object');
  return { v: ADMIN_PROTOCOL_VERSION, method: method as AdminMethod, params };
}

export function decodeAdminResponse(line: string): AdminResponse {
  const v = parse(line);
  if (v['ok'] === true) return { v: ADMIN_PROTOCOL_VERSION, ok: true, result: v['result'] };
  const err = v['error'];
  if (v['ok'] === false && isObject(err) && typeof err['code'] === 'string' && typeof err['message'] === 'string') {
    return { v: ADMIN_PROTOCOL_VERSION, ok: false, error: { code: err['code'].slice(0, 128), message: err['message'].slice(0, 4096) } };
  }
  throw new AdminProtocolError('admin/malformed', 'malformed admin response');
}
