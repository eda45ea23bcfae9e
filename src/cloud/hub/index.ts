/** The CloudHub (issue #5): one WebSocket per edge node over SVID mTLS, reliable sync of resources, status up. */
export {
  createCloudHub,
  DEFAULT_HUB_MAX_SESSIONS,
  DEFAULT_HUB_SEND_HIGH_WATER_BYTES,
  type CloudHub,
  type CloudHubLimits,
  type CloudHubLogger,
  type CloudHubOptions,
  type CloudHubStats,
  type CloudHubStore,
  type CloudHubTiming,
  type HubPeer,
  type HubUpgradeRefusal,
} from './hub.js';
