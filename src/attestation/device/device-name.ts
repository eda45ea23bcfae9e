/**
 * Device names and device SPIFFE IDs (issue #6): a device is `spiffe://<td>/edgeward/device/<namespace>/<name>`.
 *
 * A device is named `NAMESPACE/NAME`, as in KubeEdge `devices.kubeedge.io/v1beta1` (kubeedge.md §6: "the device
 * ID is `<namespace>/<name>`"): the namespace is one lower-case DNS label (RFC 1123 2.1, 1-63 of [a-z0-9-]) and
 * the name a DNS-1123 subdomain (1-253 of [a-z0-9.-], alphanumeric at both ends). Every character is a legal
 * SPIFFE ID path character (SPIFFE-ID 2.2), neither part can be `.` or `..` (SPIFFE-ID 2.2 forbids dot
 * segments: both parts start with an alphanumeric), so each is exactly one path segment and names compare by
 * plain string equality. A name without a namespace means the namespace `default` (only where an operator
 * types it; stored and wire names always carry the namespace).
 */
import { EdgewardError, SpiffeId, type TrustDomain } from '../../identity/index.js';

export const DEVICE_NAME_ERROR_CODES = ['device-name/invalid', 'device-name/not-a-device-id'] as const;
export type DeviceNameErrorCode = (typeof DEVICE_NAME_ERROR_CODES)[number];
export class DeviceNameError extends EdgewardError<DeviceNameErrorCode> {}

/** The namespace of a device named without one. */
export const DEFAULT_DEVICE_NAMESPACE = 'default';
/** A namespace: one lower-case DNS label. */
export const DEVICE_NAMESPACE_PATTERN = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** A device's own name: a DNS-1123 subdomain of at most 253 characters. */
export const DEVICE_LOCAL_NAME_PATTERN = /^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?$/;
/** The path segments in front of NAMESPACE/NAME in a device SPIFFE ID. */
export const DEVICE_ID_PATH_PREFIX = ['edgeward', 'device'] as const;

export interface DeviceName {
  readonly namespace: string;
  readonly name: string;
}

/** `NAMESPACE/NAME` with both parts valid (the full form: stored and wire names). */
export function isDeviceName(input: unknown): input is string {
  if (typeof input !== 'string' || input.length > 63 + 1 + 253) return false;
  const slash = input.indexOf('/');
  if (slash < 0) return false;
  return DEVICE_NAMESPACE_PATTERN.test(input.slice(0, slash)) && DEVICE_LOCAL_NAME_PATTERN.test(input.slice(slash + 1));
}

/**
 * A device name as an operator types it: `NAMESPACE/NAME`, or `NAME` for the namespace `default`.
 * Throws `DeviceNameError('device-name/invalid')`.
 */
export function parseDeviceName(input: unknown): DeviceName {
  if (typeof input !== 'string') throw new DeviceNameError('device-name/invalid', `a device name must be a string (got ${typeof input})`);
  const full = input.includes('/') ? input : `${DEFAULT_DEVICE_NAMESPACE}/${input}`;
  if (!isDeviceName(full)) {
    throw new DeviceNameError(
      'device-name/invalid',
      'a device is named NAMESPACE/NAME: the namespace 1-63 of [a-z0-9-], the name 1-253 of [a-z0-9.-], both starting and ending with [a-z0-9]',
      { detail: { name: input.slice(0, 80) } },
    );
  }
  const slash = full.indexOf('/');
  return Object.freeze({ namespace: full.slice(0, slash), name: full.slice(slash + 1) });
}

/** `NAMESPACE/NAME`. */
export function formatDeviceName(d: DeviceName): string {
  return `${d.namespace}/${d.name}`;
}

/** `spiffe://<td>/edgeward/device/<namespace>/<name>`. Throws `DeviceNameError` for an invalid name. */
export function deviceSpiffeId(td: TrustDomain, device: DeviceName | string): SpiffeId {
  const d = typeof device === 'string' ? parseDeviceName(device) : parseDeviceName(formatDeviceName(device));
  return SpiffeId.fromSegments(td, ...DEVICE_ID_PATH_PREFIX, d.namespace, d.name);
}

/**
 * The device of a device SPIFFE ID of trust domain `td` (exact shape: four segments, no prefix matching).
 * Throws `DeviceNameError('device-name/not-a-device-id')` for any other ID.
 */
export function deviceNameFromSpiffeId(id: SpiffeId, td: TrustDomain): DeviceName {
  const segs = id.segments;
  const ns = segs[2];
  const name = segs[3];
  if (
    !id.trustDomain.equals(td) ||
    segs.length !== DEVICE_ID_PATH_PREFIX.length + 2 ||
    segs[0] !== DEVICE_ID_PATH_PREFIX[0] ||
    segs[1] !== DEVICE_ID_PATH_PREFIX[1] ||
    ns === undefined ||
    name === undefined ||
    !DEVICE_NAMESPACE_PATTERN.test(ns) ||
    !DEVICE_LOCAL_NAME_PATTERN.test(name)
  ) {
    throw new DeviceNameError('device-name/not-a-device-id', `${id.toString().slice(0, 200)} is not a device ID of trust domain ${td.name}`);
  }
  return Object.freeze({ namespace: ns, name });
}
