/** The EventBus (issue #6): the edge node's MQTT broker over mTLS with device SVIDs and per-identity topic ACLs. */
export {
  createEventBus,
  DEFAULT_EVENTBUS_LIMITS,
  EventBusError,
  type EventBus,
  type EventBusErrorCode,
  type EventBusLimits,
  type EventBusMessage,
  type EventBusOptions,
  type EventBusStats,
} from './broker.js';
export {
  EMPTY_MQTT_ACL_POLICY,
  loadMqttAclPolicy,
  validateMqttAclPolicy,
  MQTT_ACL_API_VERSION,
  MQTT_ACL_KIND,
  type MqttAclPolicy,
  type TopicGrants,
} from './acl-policy.js';
export { compileAcl, deviceGrants, type ClientAcl } from './acl.js';
export { filterCovers, filterMatches, isTopicFilter, isTopicName } from './topics.js';
export { FrameScanner } from './frame-scanner.js';
