import { EdgewardError } from '../../identity/index.js';

/**
 * Refusals and failures of the cloud's device services (issue #6; closed union, never reused for another
 * meaning). The node-API codes go on the wire to the calling edge (contract "Node API"):
 *
 * - `device-token/invalid` (403): the bootstrap token is unknown, expired, used, or for another device or
 *   node. One code for every reason, so that a prober learns nothing; the reason is only in the cloud's
 *   security log (`security.device_token_refused {reason}`).
 * - `device/unknown` (404): no Device of that name in the resource store (also: no device named).
 * - `device/wrong-node` (403): the Device's `spec.nodeName` is not the calling node.
 * - `device/revoked` (403): the Device was revoked after the proof was made (a token created before
 *   `revokedBefore`).
 * - `device/factory-refused` (403): factory enrolment refused: no `factoryIdentity`, the model lists no
 *   factory CAs, the chain does not verify to one of them now, the leaf is a CA, or its serialNumber differs.
 * - `device/renew-refused` (403): the presented SVID is not a valid X509-SVID of the current bundle for
 *   exactly this device, or it was issued before the device's `revokedBefore`.
 * - `device/not-served` (403): this cloud does not sign device SVIDs (no embedded CA, or not configured).
 *
 * Never on the node API (admin socket or startup only):
 * - `device-token/bad-ttl`: a token lifetime outside 1 min .. 24 h.
 * - `device-token/too-many`: too many unexpired tokens are outstanding (bounded store).
 * - `device-store/io` | `device-store/version` | `device-store/corrupt`: `devices.db` cannot be opened or used.
 */
export const DEVICE_ERROR_CODES = [
  'device-token/invalid',
  'device/unknown',
  'device/wrong-node',
  'device/revoked',
  'device/factory-refused',
  'device/renew-refused',
  'device/not-served',
  'device-token/bad-ttl',
  'device-token/too-many',
  'device-store/io',
  'device-store/version',
  'device-store/corrupt',
] as const;
export type DeviceErrorCode = (typeof DEVICE_ERROR_CODES)[number];
export class DeviceError extends EdgewardError<DeviceErrorCode> {}

/** The HTTP status of a device refusal on the node API (the wire's table). */
export { DEVICE_REFUSAL_HTTP_STATUS as DEVICE_HTTP_STATUS } from '../../protocol/index.js';
