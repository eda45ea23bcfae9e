/**
 * A connected client's topic ACL (issue #6), compiled once at connect from its grants: a device's own twin
 * topics (src/protocol devicePublishTopics / deviceSubscribeTopics) plus what the policy grants it. Pure.
 *
 * - publish: the topic must match a publish grant (MQTT 3.1.1 4.7 matching);
 * - subscribe: the requested filter must be covered by a subscribe grant (everything it can match is granted);
 * - receive (authorizeForward, every delivery, retained and queued ones included): the topic must match a
 *   subscribe grant. Answers are cached per client (bounded), so the hot path is one Map lookup.
 */
import { devicePublishTopics, deviceSubscribeTopics } from '../../protocol/index.js';
import type { DeviceName } from '../../attestation/index.js';
import type { MqttAclPolicy, TopicGrants } from './acl-policy.js';
import { filterCovers, filterMatches } from './topics.js';

/** Cached answers per client and kind; the cache is cleared when full (a client cycling topics costs CPU, not memory). */
const MAX_CACHED = 512;

export interface ClientAcl {
  readonly grants: TopicGrants;
  canPublish(topic: string): boolean;
  canSubscribe(filter: string): boolean;
  canReceive(topic: string): boolean;
}

function cached(f: (x: string) => boolean): (x: string) => boolean {
  const cache = new Map<string, boolean>();
  return (x) => {
    const hit = cache.get(x);
    if (hit !== undefined) return hit;
    const v = f(x);
    if (cache.size >= MAX_CACHED) cache.clear();
    cache.set(x, v);
    return v;
  };
}

export function compileAcl(grants: TopicGrants): ClientAcl {
  const exactPublish = new Set(grants.publish.filter((g) => !g.includes('+') && !g.includes('#')));
  const wildPublish = grants.publish.filter((g) => g.includes('+') || g.includes('#'));
  const exactSubscribe = new Set(grants.subscribe.filter((g) => !g.includes('+') && !g.includes('#')));
  const wildSubscribe = grants.subscribe.filter((g) => g.includes('+') || g.includes('#'));
  return {
    grants,
    canPublish: cached((t) => exactPublish.has(t) || wildPublish.some((g) => filterMatches(g, t))),
    canSubscribe: cached((f) => exactSubscribe.has(f) || wildSubscribe.some((g) => filterCovers(g, f))),
    canReceive: cached((t) => exactSubscribe.has(t) || wildSubscribe.some((g) => filterMatches(g, t))),
  };
}

function substitute(grant: string, d: DeviceName): string {
  return grant
    .split('/')
    .map((l) => (l === '{namespace}' ? d.namespace : l === '{name}' ? d.name : l))
    .join('/');
}

/** A device's grants: its own twin topics, the policy's device grants for it, and any grants to its SPIFFE ID. */
export function deviceGrants(d: DeviceName, spiffeId: string, policy: MqttAclPolicy): TopicGrants {
  const own = policy.identities.get(spiffeId);
  const publish = new Set([...devicePublishTopics(d), ...policy.devices.publish.map((g) => substitute(g, d)), ...(own?.publish ?? [])]);
  const subscribe = new Set([...deviceSubscribeTopics(d), ...policy.devices.subscribe.map((g) => substitute(g, d)), ...(own?.subscribe ?? [])]);
  return { publish: [...publish], subscribe: [...subscribe] };
}
