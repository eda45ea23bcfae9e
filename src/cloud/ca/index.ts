/** The cloud CA (CaManager persisted in the CloudStore) and the cloud's own SVID. */
export {
  openCloudCa,
  CloudCaError,
  CLOUD_CA_TICK_MS,
  type CloudCa,
  type CloudCaErrorCode,
  type CloudCaLogger,
  type CloudCaOptions,
  type CloudIdentity,
  type CloudSvid,
} from './cloud-ca.js';
