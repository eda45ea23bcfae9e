/**
 * Devices and device models (issue #6): the shapes of `Device.spec` and `DeviceModel.spec`, after KubeEdge
 * `devices.kubeedge.io/v1beta1` (kubeedge.md §6), the twin value rules and the twin topics. Pure: no I/O.
 *
 * Both kinds are namespaced: their resource name is `NAMESPACE/NAME` (src/attestation device-name.ts).
 *
 *   DeviceModel.spec: {protocol?, properties: [{name, type, accessMode, description?, unit?, minimum?, maximum?}],
 *                      factoryCAs?: [PEM CA certificate]}
 *   Device.spec:      {deviceModelRef: {name}, nodeName, protocol?: {protocolName?, configData?},
 *                      properties?: [{name, desired?: {value: string, metadata?: {string: string}}}],
 *                      factoryIdentity?: {serialNumber}}
 *
 * A Device's wire data is `{spec, revokedBefore?}`: `revokedBefore` (epoch ms) is written only by the cloud
 * (`edgeward device revoke`); SVIDs of the device issued before it are refused everywhere.
 *
 * Twin values are strings, as in KubeEdge (`desired.value`, `actual.value`); a model property's `type` says
 * what string is valid (checkTwinValue). Everything is strict: unknown fields are refused.
 */
import { isNodeName, isDeviceName, parseDeviceName, type DeviceName } from '../../attestation/index.js';
import { ResourceError } from './resource-error.js';

export const DEVICE_PROPERTY_TYPES = ['INT', 'FLOAT', 'DOUBLE', 'STRING', 'BOOLEAN', 'BYTES'] as const;
export type DevicePropertyType = (typeof DEVICE_PROPERTY_TYPES)[number];
export const DEVICE_ACCESS_MODES = ['ReadWrite', 'ReadOnly'] as const;
export type DeviceAccessMode = (typeof DEVICE_ACCESS_MODES)[number];

/** Property names: one MQTT-safe word (no '/', '+', '#'), 1-63 characters. */
export const DEVICE_PROPERTY_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
export const MAX_DEVICE_PROPERTIES = 128;
/** Longest twin value (UTF-8 bytes). */
export const MAX_TWIN_VALUE_BYTES = 1024;
export const MAX_FACTORY_CAS = 8;
export const MAX_FACTORY_CA_PEM_BYTES = 16 * 1024;
export const MAX_FACTORY_SERIAL_LENGTH = 64;
/** Longest free-text field (description, unit, protocol names). */
const MAX_TEXT = 256;

export interface ModelProperty {
  readonly name: string;
  readonly type: DevicePropertyType;
  readonly accessMode: DeviceAccessMode;
  readonly description?: string;
  readonly unit?: string;
  readonly minimum?: number;
  readonly maximum?: number;
}

export interface DeviceModelSpec {
  readonly protocol?: string;
  readonly properties: readonly ModelProperty[];
  /** PEM CA certificates of manufacturers whose device certificates may enrol devices of this model. */
  readonly factoryCAs: readonly string[];
}

export interface DeviceProperty {
  readonly name: string;
  readonly desired?: { readonly value: string; readonly metadata?: Readonly<Record<string, string>> };
}

export interface DeviceSpec {
  readonly deviceModelRef: { readonly name: string };
  readonly nodeName: string;
  readonly protocol?: { readonly protocolName?: string; readonly configData?: Readonly<Record<string, unknown>> };
  readonly properties: readonly DeviceProperty[];
  /** The manufacturer certificate's subject serialNumber (OID 2.5.4.5) that may enrol this device. */
  readonly factoryIdentity?: { readonly serialNumber: string };
}

/** A Device as both sides read it from a stored resource. */
export interface DeviceRecord extends DeviceName {
  /** `NAMESPACE/NAME`. */
  readonly fullName: string;
  readonly spec: DeviceSpec;
  /** SVIDs issued before this (epoch ms) are revoked. */
  readonly revokedBefore: number | undefined;
  /** The model's resource name, `NAMESPACE/MODEL`. */
  readonly modelName: string;
}

export interface DeviceModelRecord extends DeviceName {
  readonly fullName: string;
  readonly spec: DeviceModelSpec;
}

type Obj = Record<string, unknown>;

function isObj(x: unknown): x is Obj {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return false;
  const proto = Object.getPrototypeOf(x) as unknown;
  return proto === Object.prototype || proto === null;
}

function has(o: Obj, k: string): boolean {
  return Object.prototype.hasOwnProperty.call(o, k);
}

function show(s: unknown): string {
  return typeof s === 'string' ? JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}...` : s) : typeof s;
}

function members(o: Obj, allowed: readonly string[], path: string, problems: string[]): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) problems.push(`${path}: unknown field ${show(k)} (allowed: ${allowed.join(', ')})`);
}

function text(o: Obj, k: string, path: string, problems: string[], required = false, max = MAX_TEXT): string | undefined {
  if (!has(o, k)) {
    if (required) problems.push(`${path}.${k}: missing`);
    return undefined;
  }
  const v = o[k];
  if (typeof v !== 'string' || v.length === 0 || Buffer.byteLength(v, 'utf8') > max) {
    problems.push(`${path}.${k}: must be a string of 1-${max} bytes`);
    return undefined;
  }
  return v;
}

function list(o: Obj, k: string, path: string, max: number, problems: string[]): unknown[] {
  if (!has(o, k)) return [];
  const v = o[k];
  if (!Array.isArray(v)) {
    problems.push(`${path}.${k}: must be a list`);
    return [];
  }
  if (v.length > max) {
    problems.push(`${path}.${k}: at most ${max} items (got ${v.length})`);
    return [];
  }
  return v;
}

// ---------------------------------------------------------------------------------------------------------
// DeviceModel

/** Problems of a DeviceModel `spec` (empty: valid). */
export function deviceModelSpecProblems(spec: unknown, path = 'spec'): string[] {
  const problems: string[] = [];
  if (!isObj(spec)) return [`${path}: must be a mapping`];
  members(spec, ['protocol', 'properties', 'factoryCAs'], path, problems);
  text(spec, 'protocol', path, problems);
  const seen = new Set<string>();
  list(spec, 'properties', path, MAX_DEVICE_PROPERTIES, problems).forEach((p, i) => {
    const where = `${path}.properties[${i}]`;
    if (!isObj(p)) {
      problems.push(`${where}: must be a mapping`);
      return;
    }
    members(p, ['name', 'type', 'accessMode', 'description', 'unit', 'minimum', 'maximum'], where, problems);
    const name = p['name'];
    if (typeof name !== 'string' || !DEVICE_PROPERTY_NAME_PATTERN.test(name)) problems.push(`${where}.name: must be 1-63 of [A-Za-z0-9_.-], starting with a letter or digit`);
    else if (seen.has(name)) problems.push(`${where}.name: ${show(name)} is listed twice`);
    else seen.add(name);
    if (!(DEVICE_PROPERTY_TYPES as readonly unknown[]).includes(p['type'])) problems.push(`${where}.type: must be one of ${DEVICE_PROPERTY_TYPES.join(', ')}`);
    if (!(DEVICE_ACCESS_MODES as readonly unknown[]).includes(p['accessMode'])) problems.push(`${where}.accessMode: must be ReadWrite or ReadOnly`);
    text(p, 'description', where, problems);
    text(p, 'unit', where, problems, false, 32);
    for (const k of ['minimum', 'maximum'] as const) {
      if (has(p, k) && (typeof p[k] !== 'number' || !Number.isFinite(p[k]))) problems.push(`${where}.${k}: must be a finite number`);
    }
    if (typeof p['minimum'] === 'number' && typeof p['maximum'] === 'number' && p['minimum'] > p['maximum']) problems.push(`${where}: minimum is greater than maximum`);
    if ((has(p, 'minimum') || has(p, 'maximum')) && !['INT', 'FLOAT', 'DOUBLE'].includes(p['type'] as string)) {
      problems.push(`${where}: minimum and maximum apply only to INT, FLOAT and DOUBLE`);
    }
  });
  list(spec, 'factoryCAs', path, MAX_FACTORY_CAS, problems).forEach((pem, i) => {
    if (typeof pem !== 'string' || Buffer.byteLength(pem, 'utf8') > MAX_FACTORY_CA_PEM_BYTES || !/^-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\r?\n?$/.test(pem)) {
      problems.push(`${path}.factoryCAs[${i}]: must be one PEM certificate (at most ${MAX_FACTORY_CA_PEM_BYTES} bytes)`);
    }
  });
  return problems;
}

// ---------------------------------------------------------------------------------------------------------
// Device

/** Problems of a Device `spec` (empty: valid). */
export function deviceSpecProblems(spec: unknown, path = 'spec'): string[] {
  const problems: string[] = [];
  if (!isObj(spec)) return [`${path}: must be a mapping`];
  members(spec, ['deviceModelRef', 'nodeName', 'protocol', 'properties', 'factoryIdentity'], path, problems);
  const ref = spec['deviceModelRef'];
  if (!isObj(ref)) problems.push(`${path}.deviceModelRef: missing (a mapping with the model's name)`);
  else {
    members(ref, ['name'], `${path}.deviceModelRef`, problems);
    if (typeof ref['name'] !== 'string' || !isDeviceName(`x/${ref['name']}`)) problems.push(`${path}.deviceModelRef.name: must be a DeviceModel name in the device's namespace`);
  }
  if (!isNodeName(spec['nodeName'])) problems.push(`${path}.nodeName: must be a node name (1-63 of [a-z0-9-])`);
  if (has(spec, 'protocol')) {
    const p = spec['protocol'];
    if (!isObj(p)) problems.push(`${path}.protocol: must be a mapping`);
    else {
      members(p, ['protocolName', 'configData'], `${path}.protocol`, problems);
      text(p, 'protocolName', `${path}.protocol`, problems);
      if (has(p, 'configData') && !isObj(p['configData'])) problems.push(`${path}.protocol.configData: must be a mapping`);
    }
  }
  const seen = new Set<string>();
  list(spec, 'properties', path, MAX_DEVICE_PROPERTIES, problems).forEach((p, i) => {
    const where = `${path}.properties[${i}]`;
    if (!isObj(p)) {
      problems.push(`${where}: must be a mapping`);
      return;
    }
    members(p, ['name', 'desired'], where, problems);
    const name = p['name'];
    if (typeof name !== 'string' || !DEVICE_PROPERTY_NAME_PATTERN.test(name)) problems.push(`${where}.name: must be 1-63 of [A-Za-z0-9_.-], starting with a letter or digit`);
    else if (seen.has(name)) problems.push(`${where}.name: ${show(name)} is listed twice`);
    else seen.add(name);
    if (has(p, 'desired')) {
      const d = p['desired'];
      if (!isObj(d)) problems.push(`${where}.desired: must be a mapping with a string value`);
      else {
        members(d, ['value', 'metadata'], `${where}.desired`, problems);
        const v = d['value'];
        if (typeof v !== 'string' || Buffer.byteLength(v, 'utf8') > MAX_TWIN_VALUE_BYTES) problems.push(`${where}.desired.value: must be a string of at most ${MAX_TWIN_VALUE_BYTES} bytes (quote numbers and booleans)`);
        if (has(d, 'metadata')) {
          const m = d['metadata'];
          if (!isObj(m) || Object.keys(m).length > 16 || !Object.values(m).every((x) => typeof x === 'string' && x.length <= MAX_TEXT)) {
            problems.push(`${where}.desired.metadata: must be a mapping of at most 16 strings`);
          }
        }
      }
    }
  });
  if (has(spec, 'factoryIdentity')) {
    const f = spec['factoryIdentity'];
    if (!isObj(f)) problems.push(`${path}.factoryIdentity: must be a mapping with serialNumber`);
    else {
      members(f, ['serialNumber'], `${path}.factoryIdentity`, problems);
      const s = f['serialNumber'];
      if (typeof s !== 'string' || !/^[\x20-\x7e]{1,64}$/.test(s)) problems.push(`${path}.factoryIdentity.serialNumber: must be 1-${MAX_FACTORY_SERIAL_LENGTH} printable ASCII characters`);
    }
  }
  return problems;
}

/** Problems of a Device's `revokedBefore` wire member. */
export function revokedBeforeProblems(x: unknown, path = 'revokedBefore'): string[] {
  return Number.isSafeInteger(x) && (x as number) > 0 ? [] : [`${path}: must be a time in epoch milliseconds`];
}

/** The device of a stored Device resource (its wire data). Throws ResourceError. */
export function deviceOf(r: { readonly name: string; readonly data: Readonly<Record<string, unknown>> }): DeviceRecord {
  const problems: string[] = [];
  let dn: DeviceName | undefined;
  try {
    dn = isDeviceName(r.name) ? parseDeviceName(r.name) : undefined;
  } catch {
    dn = undefined;
  }
  if (dn === undefined) problems.push('name: a Device is named NAMESPACE/NAME');
  const data = r.data as Obj;
  if (!isObj(data)) problems.push('data: must be a mapping');
  else {
    members(data, ['spec', 'revokedBefore'], 'data', problems);
    problems.push(...deviceSpecProblems(data['spec'], 'data.spec'));
    if (has(data, 'revokedBefore')) problems.push(...revokedBeforeProblems(data['revokedBefore'], 'data.revokedBefore'));
  }
  if (problems.length > 0 || dn === undefined) throw new ResourceError(problems, { prefix: `Device ${show(r.name)}` });
  const spec = data['spec'] as unknown as DeviceSpec;
  const rb = data['revokedBefore'];
  return Object.freeze({
    namespace: dn.namespace,
    name: dn.name,
    fullName: `${dn.namespace}/${dn.name}`,
    spec: Object.freeze({ ...spec, properties: spec.properties ?? [] }),
    revokedBefore: typeof rb === 'number' ? rb : undefined,
    modelName: `${dn.namespace}/${spec.deviceModelRef.name}`,
  });
}

/** The model of a stored DeviceModel resource. Throws ResourceError. */
export function deviceModelOf(r: { readonly name: string; readonly data: Readonly<Record<string, unknown>> }): DeviceModelRecord {
  const problems: string[] = [];
  const dn = isDeviceName(r.name) ? parseDeviceName(r.name) : undefined;
  if (dn === undefined) problems.push('name: a DeviceModel is named NAMESPACE/NAME');
  const data = r.data as Obj;
  if (!isObj(data)) problems.push('data: must be a mapping');
  else {
    members(data, ['spec'], 'data', problems);
    problems.push(...deviceModelSpecProblems(data['spec'], 'data.spec'));
  }
  if (problems.length > 0 || dn === undefined) throw new ResourceError(problems, { prefix: `DeviceModel ${show(r.name)}` });
  const spec = data['spec'] as unknown as DeviceModelSpec;
  return Object.freeze({
    namespace: dn.namespace,
    name: dn.name,
    fullName: `${dn.namespace}/${dn.name}`,
    spec: Object.freeze({ ...spec, properties: spec.properties ?? [], factoryCAs: spec.factoryCAs ?? [] }),
  });
}

// ---------------------------------------------------------------------------------------------------------
// Twin values

const INT_PATTERN = /^[+-]?[0-9]{1,19}$/;
const FLOAT_PATTERN = /^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/;

/** Why `value` is not a valid twin value of `prop` (undefined: valid). */
export function checkTwinValue(prop: ModelProperty, value: unknown): string | undefined {
  if (typeof value !== 'string') return 'a twin value must be a string';
  if (Buffer.byteLength(value, 'utf8') > MAX_TWIN_VALUE_BYTES) return `a twin value is at most ${MAX_TWIN_VALUE_BYTES} bytes`;
  let n: number | undefined;
  switch (prop.type) {
    case 'INT':
      if (!INT_PATTERN.test(value) || !Number.isSafeInteger(Number(value))) return `${prop.name} is an INT`;
      n = Number(value);
      break;
    case 'FLOAT':
    case 'DOUBLE':
      if (!FLOAT_PATTERN.test(value) || !Number.isFinite(Number(value))) return `${prop.name} is a ${prop.type}`;
      n = Number(value);
      break;
    case 'BOOLEAN':
      if (value !== 'true' && value !== 'false') return `${prop.name} is a BOOLEAN ("true" or "false")`;
      break;
    case 'BYTES':
      if (value.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(value) || Buffer.from(value, 'base64').toString('base64') !== value) return `${prop.name} is BYTES (canonical base64)`;
      break;
    case 'STRING':
      break;
  }
  if (n !== undefined) {
    if (prop.minimum !== undefined && n < prop.minimum) return `${prop.name} is below its minimum ${prop.minimum}`;
    if (prop.maximum !== undefined && n > prop.maximum) return `${prop.name} is above its maximum ${prop.maximum}`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Topics (kubeedge.md §6, edge/pkg/devicetwin/dtcommon/common.go; v1beta1 device ID = NAMESPACE/NAME)

export interface TwinTopics {
  readonly update: string;
  readonly updateResult: string;
  readonly updateDelta: string;
  readonly get: string;
  readonly getResult: string;
  readonly stateUpdate: string;
}

/** The twin topic prefix of every device: `$hw/events/device/`. */
export const DEVICE_TOPIC_PREFIX = '$hw/events/device/';

export function twinTopics(d: DeviceName): TwinTopics {
  const base = `${DEVICE_TOPIC_PREFIX}${d.namespace}/${d.name}`;
  return Object.freeze({
    update: `${base}/twin/update`,
    updateResult: `${base}/twin/update/result`,
    updateDelta: `${base}/twin/update/delta`,
    get: `${base}/twin/get`,
    getResult: `${base}/twin/get/result`,
    stateUpdate: `${base}/state/update`,
  });
}

/** What a device may publish on its own (the built-in grant): twin/update, twin/get, state/update. */
export function devicePublishTopics(d: DeviceName): string[] {
  const t = twinTopics(d);
  return [t.update, t.get, t.stateUpdate];
}

/** What a device may subscribe to on its own: twin/update/delta, twin/get/result, twin/update/result. */
export function deviceSubscribeTopics(d: DeviceName): string[] {
  const t = twinTopics(d);
  return [t.updateDelta, t.getResult, t.updateResult];
}
