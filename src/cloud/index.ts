/** The cloud core (issue 4): store, CA and cloud SVID, node service, node API server, admin socket, composition root. */
export * from './store/index.js';
export * from './ca/index.js';
export * from './server/index.js';
export * from './admin/index.js';
export {
  parseCloudConfig,
  parseListenAddress,
  formatListenAddress,
  CloudConfigError,
  DEFAULT_CLOUD_TRUST_DOMAIN,
  DEFAULT_CLOUD_LISTEN,
  DEFAULT_CLOUD_CA_TTL_MS,
  type CloudConfig,
  type CloudConfigInput,
  type CloudConfigErrorCode,
  type CloudAttestorsConfig,
  type CloudListenAddress,
  type CloudLogLevel,
} from './config.js';
export { runCloud, CloudError, type CloudDeps, type CloudErrorCode, type CloudLogger, type RunningCloud } from './main.js';
export * from './node-service/index.js';
export * from './resources/index.js';
export * from './hub/index.js';
export * from './devices/index.js';
