/**
 * The resource model of the hub (issue #5): what an operator applies (`edgeward apply -f FILE.yaml`), what
 * the cloud stores, and what travels in a `put` as `WireResource.data`. Pure: no I/O.
 *
 * An operator document (YAML or JSON, Kubernetes style):
 *
 *   apiVersion: edgeward.io/v1
 *   kind: ConfigMap                    # Workload | ConfigMap | Secret | Device | DeviceModel
 *   metadata:
 *     name: app-config                 # RESOURCE_NAME_PATTERN (DNS-1123 subdomain, <= 253)
 *     nodes: [edge-1]                  # node names, or ["*"] for every node; 1..1000
 *   data: {LOG_LEVEL: info}            # ConfigMap: string -> string
 *
 * - Secret: `data` (values: canonical base64) and/or `stringData` (strings, turned into base64 `data`;
 *   a key in both takes the `stringData` value, as in Kubernetes).
 * - Workload, Device, DeviceModel: `spec`, any JSON object (depth <= 16); later issues define their shapes.
 *
 * The wire form (`WireResource.data`, also what the cloud stores) is `{data: {...}}` for ConfigMap and
 * Secret (Secret values base64) and `{spec: {...}}` for the others; its JSON encoding is at most
 * MAX_RESOURCE_DATA_BYTES. `validateResourceData` checks exactly that form, so the cloud's store and an
 * edge's decoder apply the same rules. Everything is strict (deny by default, architecture.md 8-9): unknown
 * fields are refused, not ignored; every problem of a document is reported together (convention 7).
 */
import { EdgewardError } from '../../identity/index.js';
import { DEFAULT_DEVICE_NAMESPACE, isDeviceName, isNodeName } from '../../attestation/index.js';
import { deviceModelSpecProblems, deviceSpecProblems, revokedBeforeProblems } from './devices.js';

export const RESOURCE_KINDS = ['Workload', 'ConfigMap', 'Secret', 'Device', 'DeviceModel'] as const;
export type ResourceKind = (typeof RESOURCE_KINDS)[number];

export interface ResourceRef {
  readonly kind: ResourceKind;
  readonly name: string;
}

/** The only `apiVersion` of operator documents. */
export const RESOURCE_API_VERSION = 'edgeward.io/v1';
/** Resource names: a DNS-1123 subdomain (lower-case alphanumerics, '-' and '.'; 1-253; alphanumeric at both ends). */
export const RESOURCE_NAME_PATTERN = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;
/** ConfigMap and Secret keys (Kubernetes' IsConfigMapKey; `.`, `..` and a leading `..` are refused too). */
export const RESOURCE_DATA_KEY_PATTERN = /^[-._a-zA-Z0-9]{1,253}$/;
/** The largest JSON encoding (UTF-8 bytes) of a resource's wire `data`. */
export const MAX_RESOURCE_DATA_BYTES = 256 * 1024;
/** The deepest nesting of a `spec` (the spec object itself is depth 1). */
export const MAX_RESOURCE_SPEC_DEPTH = 16;
/** Most target nodes in `metadata.nodes`. */
export const MAX_RESOURCE_NODES = 1000;
/** The target that means "every node"; it must be the only item of `metadata.nodes`. */
export const ALL_NODES = '*';
/** A validated operator document: `data` is the wire form (see the file comment). */
export interface ResourceDocument {
  readonly kind: ResourceKind;
  readonly name: string;
  /** Sorted, no duplicates; `['*']` for every node. */
  readonly nodes: string[];
  readonly data: Record<string, unknown>;
}

export { ResourceError, MAX_RESOURCE_PROBLEMS, type ResourceErrorCode } from './resource-error.js';
import { ResourceError, MAX_RESOURCE_PROBLEMS } from './resource-error.js';

type Obj = Record<string, unknown>;

function isPlainObject(x: unknown): x is Obj {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return false;
  const proto = Object.getPrototypeOf(x) as unknown;
  return proto === Object.prototype || proto === null;
}

/** A user-supplied string for a message: quoted, bounded, control characters escaped by JSON. */
function show(s: unknown, max = 64): string {
  if (typeof s !== 'string') return typeof s === 'object' ? (s === null ? 'null' : Array.isArray(s) ? 'a list' : 'a mapping') : typeof s;
  return JSON.stringify(s.length > max ? `${s.slice(0, max)}...` : s);
}

function kindOf(x: unknown): string {
  if (x === null) return 'null';
  if (Array.isArray(x)) return 'a list';
  if (typeof x === 'object') return 'a mapping';
  return `a ${typeof x}`;
}

export function isResourceKind(x: unknown): x is ResourceKind {
  return typeof x === 'string' && (RESOURCE_KINDS as readonly string[]).includes(x);
}

export function isResourceName(x: unknown): x is string {
  return typeof x === 'string' && x.length <= 253 && RESOURCE_NAME_PATTERN.test(x);
}

/** Kinds whose names are `NAMESPACE/NAME` (issue #6: Device, DeviceModel; src/attestation device-name.ts). */
export const NAMESPACED_RESOURCE_KINDS: readonly ResourceKind[] = ['Device', 'DeviceModel'];

export function isNamespacedKind(kind: ResourceKind): boolean {
  return kind === 'Device' || kind === 'DeviceModel';
}

/**
 * A resource name as an operator types it: for a namespaced kind a bare NAME means `default/NAME`; undefined
 * when the text is not a valid name of `kind`.
 */
export function normalizeResourceName(kind: ResourceKind, text: unknown): string | undefined {
  if (typeof text !== 'string') return undefined;
  const full = isNamespacedKind(kind) && !text.includes('/') ? `${DEFAULT_DEVICE_NAMESPACE}/${text}` : text;
  return isResourceNameOf(kind, full) ? full : undefined;
}

/** A valid name for a resource of `kind`: `NAMESPACE/NAME` for namespaced kinds, else a DNS-1123 subdomain. */
export function isResourceNameOf(kind: ResourceKind, x: unknown): x is string {
  return isNamespacedKind(kind) ? isDeviceName(x) : isResourceName(x);
}

export function isResourceDataKey(x: unknown): x is string {
  return typeof x === 'string' && RESOURCE_DATA_KEY_PATTERN.test(x) && x !== '.' && x !== '..' && !x.startsWith('..');
}

/** Canonical base64 (RFC 4648 4, padded, no whitespace, zero pad bits): what `Buffer#toString('base64')` writes. */
const BASE64_PATTERN = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
export function isStrictBase64(x: unknown): x is string {
  if (typeof x !== 'string' || x.length % 4 !== 0 || !BASE64_PATTERN.test(x)) return false;
  return Buffer.from(x, 'base64').toString('base64') === x;
}

/** Byte length of the value a (valid) base64 string encodes. */
function base64Bytes(s: string): number {
  const pad = s.endsWith('==') ? 2 : s.endsWith('=') ? 1 : 0;
  return (s.length / 4) * 3 - pad;
}

// ---------------------------------------------------------------------------------------------------------
// Kinds on the command line

const KIND_ALIASES: Readonly<Record<string, ResourceKind>> = Object.freeze({
  workload: 'Workload',
  workloads: 'Workload',
  wl: 'Workload',
  configmap: 'ConfigMap',
  configmaps: 'ConfigMap',
  cm: 'ConfigMap',
  secret: 'Secret',
  secrets: 'Secret',
  device: 'Device',
  devices: 'Device',
  dev: 'Device',
  devicemodel: 'DeviceModel',
  devicemodels: 'DeviceModel',
  dm: 'DeviceModel',
});

/** How kinds may be named on the command line (for help and error messages). */
export const RESOURCE_KIND_NAMES = 'workload (wl), configmap (cm), secret, device (dev), devicemodel (dm)';

/** A kind as typed by an operator: case-insensitive, singular or plural, or a short alias. Throws ResourceError. */
export function parseResourceKind(text: unknown): ResourceKind {
  if (typeof text === 'string' && text.length <= 32) {
    const k = KIND_ALIASES[text.toLowerCase()];
    if (k !== undefined && Object.prototype.hasOwnProperty.call(KIND_ALIASES, text.toLowerCase())) return k;
  }
  throw new ResourceError([`unknown resource kind ${show(text, 32)}: use one of ${RESOURCE_KIND_NAMES}`]);
}

// ---------------------------------------------------------------------------------------------------------
// JSON values: types, depth and encoded size in one walk

/**
 * Walks a value that must be JSON (plain objects, arrays, strings, finite numbers, booleans, null),
 * adding its exact `JSON.stringify` size to `budget.used` and stopping as soon as it passes `budget.max`
 * (so values that share subtrees, e.g. from YAML aliases, cannot make the walk expensive).
 */
interface Budget {
  used: number;
  readonly max: number;
  readonly problems: string[];
  over: boolean;
  /** Problems found (also those not listed once the list is long). */
  found: number;
}

function budget(max: number, problems: string[]): Budget {
  return { used: 0, max, problems, over: false, found: 0 };
}

function strBytes(s: string): number {
  // JSON.stringify escapes quotes, backslashes, control characters and lone surrogates; measure what it writes.
  return Buffer.byteLength(JSON.stringify(s), 'utf8');
}

function add(b: Budget, n: number, path: string): boolean {
  b.used += n;
  if (b.used > b.max && !b.over) {
    b.over = true;
    b.found++;
    b.problems.push(`${path}: the data is larger than ${b.max} bytes (JSON encoded)`);
  }
  return !b.over;
}

function problem(b: Budget, message: string): void {
  b.found++;
  if (b.problems.length < MAX_RESOURCE_PROBLEMS * 2) b.problems.push(message);
}

function walkJson(x: unknown, path: string, depth: number, b: Budget): void {
  if (b.over) return;
  if (x === null) {
    add(b, 4, path);
    return;
  }
  switch (typeof x) {
    case 'string':
      add(b, strBytes(x), path);
      return;
    case 'boolean':
      add(b, x ? 4 : 5, path);
      return;
    case 'number':
      if (!Number.isFinite(x)) {
        problem(b, `${path}: numbers must be finite (not ${String(x)})`);
        return;
      }
      add(b, JSON.stringify(x).length, path);
      return;
    case 'object':
      break;
    default:
      problem(b, `${path}: ${typeof x} is not a JSON value`);
      return;
  }
  if (depth > MAX_RESOURCE_SPEC_DEPTH) {
    problem(b, `${path}: nested deeper than ${MAX_RESOURCE_SPEC_DEPTH} levels`);
    return;
  }
  if (Array.isArray(x)) {
    if (!add(b, 2 + Math.max(0, x.length - 1), path)) return;
    for (let i = 0; i < x.length && !b.over; i++) {
      if (!Object.prototype.hasOwnProperty.call(x, i)) {
        problem(b, `${path}[${i}]: missing list item`);
        continue;
      }
      walkJson(x[i], `${path}[${i}]`, depth + 1, b);
    }
    return;
  }
  if (!isPlainObject(x)) {
    problem(b, `${path}: not a JSON value`);
    return;
  }
  const keys = Object.keys(x);
  if (!add(b, 2 + Math.max(0, keys.length - 1), path)) return;
  for (const k of keys) {
    if (!add(b, strBytes(k) + 1, path)) return;
    walkJson(x[k], `${path}.${k.length > 40 ? `${k.slice(0, 40)}...` : k}`, depth + 1, b);
  }
}

/** A string -> string map (ConfigMap/Secret data), walked with the budget. `base64`: values must be canonical base64. */
function walkStringMap(x: unknown, path: string, b: Budget, base64: boolean): void {
  if (!isPlainObject(x)) {
    problem(b, `${path}: must be a mapping of keys to strings (got ${kindOf(x)})`);
    return;
  }
  const keys = Object.keys(x);
  if (!add(b, 2 + Math.max(0, keys.length - 1), path)) return;
  for (const k of keys) {
    if (b.over) return;
    const where = `${path}.${k.length > 40 ? `${k.slice(0, 40)}...` : k}`;
    if (!isResourceDataKey(k)) problem(b, `${path}: key ${show(k)} must be 1-253 of [-._a-zA-Z0-9] (not ".", "..", nor starting with "..")`);
    const v = x[k];
    if (typeof v !== 'string') {
      problem(b, `${where}: must be a string (got ${kindOf(v)}; quote numbers and booleans)`);
      continue;
    }
    if (base64 && !isStrictBase64(v)) problem(b, `${where}: must be canonical base64 (use stringData for plain text)`);
    add(b, strBytes(k) + 1 + strBytes(v), where);
  }
}

function checkMembers(o: Obj, allowed: readonly string[], path: string, problems: string[]): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) problems.push(`${path === '' ? '' : `${path}: `}unknown field ${show(k)} (allowed: ${allowed.join(', ')})`);
  }
}

/** The wire members of each kind's `data`. */
function wireMember(kind: ResourceKind): 'data' | 'spec' {
  return kind === 'ConfigMap' || kind === 'Secret' ? 'data' : 'spec';
}

function dataProblems(kind: ResourceKind, data: unknown, path: string): string[] {
  const problems: string[] = [];
  if (!isPlainObject(data)) return [`${path}: must be a mapping (got ${kindOf(data)})`];
  const member = wireMember(kind);
  for (const k of Object.keys(data)) {
    if (k === member || (kind === 'Device' && k === 'revokedBefore')) continue;
    problems.push(`${path}: unknown field ${show(k)} (a ${kind} has only ${member}${kind === 'Device' ? ' and revokedBefore' : ''})`);
  }
  if (kind === 'Device' && Object.prototype.hasOwnProperty.call(data, 'revokedBefore')) problems.push(...revokedBeforeProblems(data['revokedBefore'], `${path}.revokedBefore`));
  if (!Object.prototype.hasOwnProperty.call(data, member)) {
    problems.push(`${path}.${member}: missing`);
    return problems;
  }
  const b = budget(MAX_RESOURCE_DATA_BYTES, problems);
  b.used = 2 + strBytes(member) + 1;
  const inner = data[member];
  if (member === 'spec') {
    if (!isPlainObject(inner)) problems.push(`${path}.spec: must be a mapping (got ${kindOf(inner)})`);
    else {
      walkJson(inner, `${path}.spec`, 1, b);
      if (b.found === 0 && kind === 'Device') problems.push(...deviceSpecProblems(inner, `${path}.spec`));
      if (b.found === 0 && kind === 'DeviceModel') problems.push(...deviceModelSpecProblems(inner, `${path}.spec`));
    }
  } else {
    walkStringMap(inner, `${path}.data`, b, kind === 'Secret');
  }
  return problems;
}

/**
 * Check a resource's wire `data` (WireResource.data, what the cloud stores): `{data: {k: string}}` for a
 * ConfigMap, `{data: {k: base64}}` for a Secret, `{spec: {...}}` otherwise; JSON values only, a spec at
 * most MAX_RESOURCE_SPEC_DEPTH deep, the JSON encoding at most MAX_RESOURCE_DATA_BYTES. Throws ResourceError.
 */
export function validateResourceData(kind: ResourceKind, data: unknown): void {
  if (!isResourceKind(kind)) throw new ResourceError([`unknown resource kind ${show(kind, 32)}`]);
  const problems = dataProblems(kind, data, 'data');
  if (problems.length > 0) throw new ResourceError(problems, { prefix: `invalid ${kind} data` });
}

// ---------------------------------------------------------------------------------------------------------
// Operator documents

const TOP_LEVEL: Readonly<Record<ResourceKind, readonly string[]>> = {
  ConfigMap: ['apiVersion', 'kind', 'metadata', 'data'],
  Secret: ['apiVersion', 'kind', 'metadata', 'data', 'stringData'],
  Workload: ['apiVersion', 'kind', 'metadata', 'spec'],
  Device: ['apiVersion', 'kind', 'metadata', 'spec'],
  DeviceModel: ['apiVersion', 'kind', 'metadata', 'spec'],
};

function parseNodes(x: unknown, problems: string[]): string[] {
  const path = 'metadata.nodes';
  if (x === undefined) {
    problems.push(`${path}: missing (the target node names, or ["*"] for every node)`);
    return [];
  }
  if (!Array.isArray(x)) {
    problems.push(`${path}: must be a list of node names, or ["*"] (got ${kindOf(x)})`);
    return [];
  }
  if (x.length === 0 || x.length > MAX_RESOURCE_NODES) {
    problems.push(`${path}: must have 1-${MAX_RESOURCE_NODES} items (got ${x.length})`);
    if (x.length > MAX_RESOURCE_NODES) return [];
  }
  const seen = new Set<string>();
  let bad = 0;
  for (let i = 0; i < x.length; i++) {
    const n: unknown = x[i];
    if (n === ALL_NODES) {
      if (x.length > 1) problems.push(`${path}[${i}]: "*" (every node) must be the only item`);
    } else if (!isNodeName(n)) {
      if (bad++ < 5) problems.push(`${path}[${i}]: ${show(n)} is not a node name (1-63 of [a-z0-9-], no leading or trailing "-")`);
      continue;
    }
    const s = n as string;
    if (seen.has(s)) problems.push(`${path}[${i}]: ${show(s)} is listed twice`);
    seen.add(s);
  }
  return [...seen].sort();
}

/**
 * Validate an operator document (a plain JS value from YAML or JSON) and turn it into its wire form.
 * Every problem is reported together in one ResourceError (`problems`). Strict: unknown fields at the top
 * level and in `metadata` are refused; `apiVersion` must be RESOURCE_API_VERSION; `kind` is spelled exactly.
 */
export function parseResourceDocument(doc: unknown): ResourceDocument {
  if (!isPlainObject(doc)) throw new ResourceError([`a resource document must be a mapping (got ${kindOf(doc)})`]);
  const problems: string[] = [];

  if (!Object.prototype.hasOwnProperty.call(doc, 'apiVersion')) problems.push(`apiVersion: missing (must be ${RESOURCE_API_VERSION})`);
  else if (doc['apiVersion'] !== RESOURCE_API_VERSION) problems.push(`apiVersion: must be ${RESOURCE_API_VERSION} (got ${show(doc['apiVersion'])})`);

  const kindValue = doc['kind'];
  let kind: ResourceKind | undefined;
  if (kindValue === undefined) problems.push(`kind: missing (one of ${RESOURCE_KINDS.join(', ')})`);
  else if (isResourceKind(kindValue)) kind = kindValue;
  else {
    let hint = '';
    try {
      hint = ` (did you mean ${parseResourceKind(kindValue)}?)`;
    } catch {
      // not an alias either
    }
    problems.push(`kind: must be one of ${RESOURCE_KINDS.join(', ')} (got ${show(kindValue)})${hint}`);
  }

  // metadata
  const meta = doc['metadata'];
  let name: string | undefined;
  let nodes: string[] = [];
  if (meta === undefined) problems.push('metadata: missing (with name and nodes)');
  else if (!isPlainObject(meta)) problems.push(`metadata: must be a mapping (got ${kindOf(meta)})`);
  else {
    const namespaced = kind !== undefined && isNamespacedKind(kind);
    checkMembers(meta, namespaced ? ['name', 'namespace', 'nodes'] : ['name', 'nodes'], 'metadata', problems);
    const n = meta['name'];
    if (n === undefined) problems.push('metadata.name: missing');
    else if (!isResourceName(n)) problems.push(`metadata.name: ${show(n)} must be a DNS-1123 subdomain: 1-253 of [a-z0-9.-], starting and ending with [a-z0-9]`);
    else name = n;
    if (namespaced) {
      const ns = meta['namespace'] ?? DEFAULT_DEVICE_NAMESPACE;
      if (typeof ns !== 'string' || !isDeviceName(`${ns}/x`)) problems.push(`metadata.namespace: ${show(ns)} must be a DNS label: 1-63 of [a-z0-9-], starting and ending with [a-z0-9]`);
      else if (name !== undefined) {
        if (isDeviceName(`${ns}/${name}`)) name = `${ns}/${name}`;
        else {
          problems.push(`metadata.name: ${show(name)} is not a valid ${kind} name`);
          name = undefined;
        }
      }
    }
    // A Device lives on one node: metadata.nodes is [spec.nodeName] (may be omitted).
    const deviceNode = kind === 'Device' && isPlainObject(doc['spec']) ? doc['spec']['nodeName'] : undefined;
    if (kind === 'Device' && meta['nodes'] === undefined) nodes = isNodeName(deviceNode) ? [deviceNode as string] : [];
    else {
      nodes = parseNodes(meta['nodes'], problems);
      if (kind === 'Device' && isNodeName(deviceNode) && (nodes.length !== 1 || nodes[0] !== deviceNode)) {
        problems.push(`metadata.nodes: a Device is sent to its node only: omit metadata.nodes or make it [${show(deviceNode)}]`);
      }
    }
  }

  // the kind's body
  let data: Record<string, unknown> | undefined;
  if (kind !== undefined) {
    checkMembers(doc, TOP_LEVEL[kind], '', problems);
    const body = kind === 'ConfigMap' || kind === 'Secret' ? stringMapBody(kind, doc, problems) : specBody(kind, doc, problems);
    if (body !== undefined) {
      // The fields are valid; what is left to check is the size of the wire form (base64 makes a Secret bigger).
      const size = Buffer.byteLength(JSON.stringify(body), 'utf8');
      if (size > MAX_RESOURCE_DATA_BYTES) {
        problems.push(`${wireMember(kind) === 'spec' ? 'spec' : 'data'}: the data is ${size} bytes JSON encoded${kind === 'Secret' ? ' (base64)' : ''}, more than ${MAX_RESOURCE_DATA_BYTES}`);
      } else data = body;
    }
  } else {
    for (const k of Object.keys(doc)) {
      if (!['apiVersion', 'kind', 'metadata', 'data', 'stringData', 'spec'].includes(k)) problems.push(`unknown field ${show(k)}`);
    }
  }

  if (problems.length > 0 || kind === undefined || name === undefined || data === undefined) {
    // Name the resource when the document says what it is.
    const label = kind !== undefined && name !== undefined ? `${kind} ${name}` : (name ?? kind);
    throw new ResourceError(problems.length > 0 ? problems : ['invalid document'], label === undefined ? undefined : { prefix: label });
  }
  return { kind, name, nodes, data };
}

/** ConfigMap `data`, Secret `data` + `stringData` -> `{data: {...}}` (Secret values base64). Problems of the fields themselves. */
function stringMapBody(kind: 'ConfigMap' | 'Secret', doc: Obj, problems: string[]): Record<string, unknown> | undefined {
  const out: Record<string, unknown> = {};
  let ok = true;
  // One budget for both fields: the walk stops early on a huge input; the exact size is checked on the wire form.
  const b = budget(MAX_RESOURCE_DATA_BYTES, problems);
  const take = (field: 'data' | 'stringData', base64: boolean): void => {
    if (!Object.prototype.hasOwnProperty.call(doc, field)) return;
    const v = doc[field];
    const before = b.found;
    walkStringMap(v, field, b, base64);
    if (b.found > before || !isPlainObject(v)) {
      ok = false;
      return;
    }
    for (const k of Object.keys(v)) {
      const s = v[k] as string;
      Object.defineProperty(out, k, { value: field === 'stringData' ? Buffer.from(s, 'utf8').toString('base64') : s, enumerable: true, writable: true, configurable: true });
    }
  };
  take('data', kind === 'Secret');
  if (kind === 'Secret') take('stringData', false);
  return ok ? { data: out } : undefined;
}

/** `spec` -> `{spec: {...}}` (a copy). Problems of the field itself; size and depth are checked with the wire form. */
function specBody(kind: ResourceKind, doc: Obj, problems: string[]): Record<string, unknown> | undefined {
  if (!Object.prototype.hasOwnProperty.call(doc, 'spec')) {
    problems.push('spec: missing (a mapping; may be empty)');
    return undefined;
  }
  const spec = doc['spec'];
  if (!isPlainObject(spec)) {
    problems.push(`spec: must be a mapping (got ${kindOf(spec)})`);
    return undefined;
  }
  const b = budget(MAX_RESOURCE_DATA_BYTES, problems);
  walkJson(spec, 'spec', 1, b);
  if (b.found > 0) return undefined;
  const shape = kind === 'Device' ? deviceSpecProblems(spec) : kind === 'DeviceModel' ? deviceModelSpecProblems(spec) : [];
  if (shape.length > 0) {
    problems.push(...shape);
    return undefined;
  }
  // A deep copy that cannot share structure with the caller's value (JSON.parse defines `__proto__` as an own property).
  return { spec: JSON.parse(JSON.stringify(spec)) as Record<string, unknown> };
}

// ---------------------------------------------------------------------------------------------------------
// Views

/**
 * A resource's data as an operator may see it: Secret values become `<redacted N bytes>` (N: the decoded
 * length), so no view ever carries a secret; other kinds are returned as they are.
 */
export function redactResourceData(kind: ResourceKind, data: Record<string, unknown>): Record<string, unknown> {
  if (kind !== 'Secret') return data;
  const inner = isPlainObject(data) ? data['data'] : undefined;
  const out: Record<string, unknown> = {};
  if (isPlainObject(inner)) {
    for (const k of Object.keys(inner)) {
      const v = inner[k];
      const text = typeof v === 'string' && isStrictBase64(v) ? `<redacted ${base64Bytes(v)} bytes>` : '<redacted>';
      Object.defineProperty(out, k, { value: text, enumerable: true, writable: true, configurable: true });
    }
  }
  return { data: out };
}

/** One node's acknowledgement of a resource, as `resource.get` shows it (cloud only). */
export interface ResourceViewAck {
  readonly node: string;
  readonly version: number;
  /** The node acknowledged the resource's current version. */
  readonly current: boolean;
  readonly ackedAt: number;
}

/** One node's latest status of a resource, as `resource.get` shows it (cloud only). */
export interface ResourceViewStatus {
  readonly node: string;
  readonly phase: string;
  readonly message?: string;
  readonly observedVersion?: number;
  readonly at: number;
  /** The status entry's detail (a Device: `{twins, lastSeen, state?}`). */
  readonly detail?: Readonly<Record<string, unknown>>;
}

/** What the admin method `resource.get` returns per resource, on the cloud (`source: 'cloud'`) and on an edge (`'edge'`). */
export interface ResourceView {
  readonly kind: ResourceKind;
  readonly name: string;
  readonly version: number;
  readonly nodes: string[];
  readonly source: 'cloud' | 'edge';
  /** `redactResourceData`: a Secret's values are never in a view. */
  readonly data: Record<string, unknown>;
  /** Cloud: acknowledgements (possibly only the first ones: see acksTotal). */
  readonly acks?: ResourceViewAck[];
  /** Cloud: how many nodes acknowledged any version, and how many the current one. */
  readonly acksTotal?: number;
  readonly acksCurrent?: number;
  /** Cloud: the latest status per node (possibly only the first ones: see statusTotal). */
  readonly status?: ResourceViewStatus[];
  readonly statusTotal?: number;
  readonly updatedAt: number;
}

/** The result of `resource.get`: `truncated` when the list was cut to fit one admin response (`total` items exist). */
export interface ResourceGetResult {
  readonly items: ResourceView[];
  readonly total?: number;
  readonly truncated?: boolean;
}

/** A view of a resource with its data redacted (the common part of the cloud's and the edge's `resource.get`). */
export function resourceView(r: {
  kind: ResourceKind;
  name: string;
  version: number;
  nodes: readonly string[];
  data: Record<string, unknown>;
  updatedAt: number;
  source: 'cloud' | 'edge';
}): ResourceView {
  return { kind: r.kind, name: r.name, version: r.version, nodes: [...r.nodes], source: r.source, data: redactResourceData(r.kind, r.data), updatedAt: r.updatedAt };
}
