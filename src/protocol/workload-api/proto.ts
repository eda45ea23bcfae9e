/**
 * The Workload API service definition, loaded at run time from workload.proto (written from the spec
 * text; see its header) with @grpc/proto-loader, and hand-written TypeScript shapes of its messages as
 * proto-loader produces and accepts them with the options below (keepCase: proto field names; bytes as
 * Buffer; int64 as string; defaults filled in; oneof case names in a virtual field).
 *
 * The .proto is found next to this module (`new URL('./workload.proto', import.meta.url)`): in the source
 * tree for vitest, and in dist/ for the built package, where scripts/build.mjs copies every `.proto`
 * under src/ to the same relative path.
 */
import { fileURLToPath } from 'node:url';
import { dirname } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync, type Options } from '@grpc/proto-loader';
import { EdgewardError } from '../../identity/index.js';

export type WorkloadProtoErrorCode = 'workload-proto/load-failed';
/** workload.proto could not be loaded (missing from dist/, or not the expected service). */
export class WorkloadProtoError extends EdgewardError<WorkloadProtoErrorCode> {}

/** The fully qualified service name: workload.proto has no package line (spiffe.md 1, "Service identity"). */
export const WORKLOAD_API_SERVICE_NAME = 'SpiffeWorkloadAPI';
/** Method paths start with this prefix; the security header is enforced on every one of them. */
export const WORKLOAD_API_PATH_PREFIX = `/${WORKLOAD_API_SERVICE_NAME}/`;
/** gRPC metadata key and value every request must carry (Workload Endpoint 5, security header). */
export const WORKLOAD_API_HEADER = 'workload.spiffe.io';
export const WORKLOAD_API_HEADER_VALUE = 'true';

export const WORKLOAD_API_METHODS = [
  'FetchX509SVID',
  'FetchX509Bundles',
  'FetchJWTSVID',
  'FetchJWTBundles',
  'ValidateJWTSVID',
  'FetchWITSVID',
  'FetchWITBundles',
] as const;
export type WorkloadApiMethod = (typeof WORKLOAD_API_METHODS)[number];

/** Absolute path of workload.proto. */
export const WORKLOAD_PROTO_PATH = fileURLToPath(new URL('./workload.proto', import.meta.url));

/** proto-loader options shared by server, client and tests. */
export const WORKLOAD_PROTO_OPTIONS: Readonly<Options> = Object.freeze({
  keepCase: true,
  longs: String,
  enums: String,
  bytes: Buffer,
  defaults: true,
  arrays: true,
  objects: true,
  oneofs: true,
  // google/protobuf/struct.proto is bundled with protobufjs (its "common" protos), which resolves it
  // before consulting include paths; the proto's own directory is listed for completeness.
  includeDirs: [dirname(fileURLToPath(new URL('./workload.proto', import.meta.url)))],
});

let cached: { service: grpc.ServiceDefinition; client: grpc.ServiceClientConstructor } | undefined;

function load(): { service: grpc.ServiceDefinition; client: grpc.ServiceClientConstructor } {
  if (cached === undefined) {
    let obj: grpc.GrpcObject;
    try {
      obj = grpc.loadPackageDefinition(loadSync(WORKLOAD_PROTO_PATH, { ...WORKLOAD_PROTO_OPTIONS }));
    } catch (cause) {
      throw new WorkloadProtoError('workload-proto/load-failed', `cannot load ${WORKLOAD_PROTO_PATH}`, { cause });
    }
    const ctor = obj[WORKLOAD_API_SERVICE_NAME];
    if (typeof ctor !== 'function' || !('service' in ctor)) {
      throw new WorkloadProtoError('workload-proto/load-failed', `workload.proto does not define service ${WORKLOAD_API_SERVICE_NAME}`);
    }
    const client = ctor as grpc.ServiceClientConstructor;
    cached = { service: client.service, client };
  }
  return cached;
}

/** The grpc-js service definition of `SpiffeWorkloadAPI` (loaded once, on first use). */
export function workloadApiServiceDefinition(): grpc.ServiceDefinition {
  return load().service;
}

/** The generated grpc-js client constructor of `SpiffeWorkloadAPI`. */
export function workloadApiClientConstructor(): grpc.ServiceClientConstructor {
  return load().client;
}

// ---------------------------------------------------------------------------------------------------
// Message shapes (field names as in workload.proto; what proto-loader decodes with the options above).

export type X509SVIDRequest = Record<string, never>;
export type X509BundlesRequest = Record<string, never>;
export type JWTBundlesRequest = Record<string, never>;
export type WITBundlesRequest = Record<string, never>;

export interface X509SVIDMessage {
  spiffe_id: string;
  /** Concatenated DER certificates, leaf first. */
  x509_svid: Buffer;
  /** Unencrypted PKCS#8 DER. */
  x509_svid_key: Buffer;
  /** Concatenated DER CA certificates of the SVID's trust domain. */
  bundle: Buffer;
  hint: string;
}

export interface X509SVIDResponse {
  svids: X509SVIDMessage[];
  crl: Buffer[];
  /** `spiffe://td` -> concatenated DER CA certificates. */
  federated_bundles: Record<string, Buffer>;
}

export interface X509BundlesResponse {
  crl: Buffer[];
  bundles: Record<string, Buffer>;
}

export interface JWTSVIDRequest {
  audience: string[];
  spiffe_id: string;
}

export interface JWTSVIDMessage {
  spiffe_id: string;
  svid: string;
  hint: string;
}

export interface JWTSVIDResponse {
  svids: JWTSVIDMessage[];
}

export interface JWTBundlesResponse {
  /** `spiffe://td` -> JSON JWK Set bytes. */
  bundles: Record<string, Buffer>;
}

export interface ValidateJWTSVIDRequest {
  audience: string;
  svid: string;
}

/**
 * google.protobuf.Value (oneof `kind`). NB: protobufjs bundles the well-known types as JSON descriptors
 * with lowerCamelCase field names, and resolves `google/protobuf/struct.proto` to them before any include
 * path, so these names stay camelCase even with keepCase (the wire format is by field number and so is
 * unaffected).
 */
export interface StructValue {
  nullValue?: 'NULL_VALUE' | 0;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: StructMessage;
  listValue?: { values: StructValue[] };
  /** Set on decoded messages (oneofs: true): which member is present. */
  kind?: 'nullValue' | 'numberValue' | 'stringValue' | 'boolValue' | 'structValue' | 'listValue';
}

/** google.protobuf.Struct. */
export interface StructMessage {
  fields: Record<string, StructValue>;
}

export interface ValidateJWTSVIDResponse {
  spiffe_id: string;
  claims: StructMessage | null;
}

export interface WITSVIDRequest {
  spiffe_id: string;
}

// ---------------------------------------------------------------------------------------------------
// google.protobuf.Struct <-> JSON values (protobufjs has no Struct wrapper; proto-loader passes the raw
// message shape through).

/** Deepest nesting converted; claims come from a size-bounded token, this only bounds recursion. */
export const MAX_STRUCT_DEPTH = 32;

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

function toValue(v: unknown, depth: number): StructValue {
  if (depth > MAX_STRUCT_DEPTH) throw new RangeError('value nested too deeply for google.protobuf.Struct');
  if (v === null || v === undefined) return { nullValue: 0 };
  switch (typeof v) {
    case 'boolean':
      return { boolValue: v };
    case 'number':
      return { numberValue: v };
    case 'bigint':
      return { numberValue: Number(v) }; // Struct numbers are doubles
    case 'string':
      return { stringValue: v };
    case 'object':
      if (Array.isArray(v)) return { listValue: { values: v.map((x) => toValue(x, depth + 1)) } };
      return { structValue: toStructAt(v as Record<string, unknown>, depth + 1) };
    default:
      throw new TypeError(`cannot encode a ${typeof v} in google.protobuf.Struct`);
  }
}

function toStructAt(obj: Record<string, unknown>, depth: number): StructMessage {
  const fields: Record<string, StructValue> = {};
  for (const [k, v] of Object.entries(obj)) {
    Object.defineProperty(fields, k, { value: toValue(v, depth), enumerable: true, writable: true, configurable: true });
  }
  return { fields };
}

/** A JSON-like object as google.protobuf.Struct (numbers become doubles, bigint too). */
export function toStruct(obj: Record<string, unknown>): StructMessage {
  return toStructAt(obj, 0);
}

function fromValue(v: StructValue | undefined, depth: number): JsonValue {
  if (depth > MAX_STRUCT_DEPTH) throw new RangeError('google.protobuf.Struct nested too deeply');
  if (v === undefined || v === null) return null;
  const kind =
    v.kind ??
    (['nullValue', 'numberValue', 'stringValue', 'boolValue', 'structValue', 'listValue'] as const).find((k) => v[k] !== undefined);
  switch (kind) {
    case 'numberValue':
      return Number(v.numberValue);
    case 'stringValue':
      return String(v.stringValue);
    case 'boolValue':
      return v.boolValue === true;
    case 'structValue':
      return fromStructAt(v.structValue, depth + 1);
    case 'listValue':
      return (v.listValue?.values ?? []).map((x) => fromValue(x, depth + 1));
    default:
      return null;
  }
}

function fromStructAt(s: StructMessage | null | undefined, depth: number): { [key: string]: JsonValue } {
  const out: { [key: string]: JsonValue } = {};
  if (s === null || s === undefined) return out;
  for (const [k, v] of Object.entries(s.fields ?? {})) {
    // Own, plain keys only (a claim named "__proto__" must not change the prototype).
    Object.defineProperty(out, k, { value: fromValue(v, depth), enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** google.protobuf.Struct as a plain JSON object. */
export function fromStruct(s: StructMessage | null | undefined): { [key: string]: JsonValue } {
  return fromStructAt(s, 0);
}
