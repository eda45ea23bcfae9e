/** The cloud's device services (issue #6): bootstrap tokens, device SVID issuance, and the device admin methods. */
export { DeviceError, DEVICE_ERROR_CODES, DEVICE_HTTP_STATUS, type DeviceErrorCode } from './errors.js';
export {
  openDeviceTokenStore,
  deviceTokenId,
  DEVICE_TOKEN_PREFIX,
  DEVICE_TOKEN_PATTERN,
  DEVICE_TOKEN_RANDOM_BYTES,
  DEFAULT_DEVICE_TOKEN_TTL_MS,
  MIN_DEVICE_TOKEN_TTL_MS,
  MAX_DEVICE_TOKEN_TTL_MS,
  MAX_DEVICE_TOKENS,
  type ConsumeResult,
  type DeviceTokenStore,
  type DeviceTokenStoreDeps,
  type IssuedDeviceToken,
  type TokenRefusal,
} from './tokens.js';
export { factoryChainProblem, subjectSerialNumbers, MAX_FACTORY_CHAIN_CERTS } from './factory.js';
export {
  createDeviceIssuer,
  DEFAULT_DEVICE_SVID_TTL_MS,
  type DeviceIssuer,
  type DeviceIssuerDeps,
  type DeviceIssuerLogger,
} from './issuance.js';
export { createDeviceAdminHandlers, DEVICE_ADMIN_METHODS, type DeviceAdminHandlers, type DeviceAdminDeps, type DeviceRevokeResult, type DeviceTokenResult } from './admin.js';
