/**
 * Devices on the edge node (issue #6): the DeviceDirectory port and its registry over the hub store, the HTTPS
 * enrolment endpoint that relays CSRs to the cloud, and the twins (engine and SQLite store).
 */
export type { DeviceDirectory, DeviceDirectoryChange, LocalDevice } from './directory.js';
export { createDeviceRegistry, type DeviceRegistry, type DeviceRegistryOptions } from './registry.js';
export { createEnrollServer, DEFAULT_ENROLL_LIMITS, MAX_ENROLL_BODY_BYTES, type EnrollLimits, type EnrollServer, type EnrollServerOptions } from './enroll-server.js';
export {
  createTwinEngine,
  TWIN_TOPIC_FILTERS,
  type DeviceStatusReport,
  type TwinBus,
  type TwinBusMessage,
  type TwinEngine,
  type TwinEngineOptions,
  type TwinEngineStats,
} from './twins.js';
export { openTwinStore, TWIN_DB_FILE, TwinStoreError, type TwinStore, type TwinStoreErrorCode, type TwinStoreOptions } from './twin-store.js';
