/**
 * The EventBus topic ACL policy (issue #6): policies/mqtt-acl.yaml, schema policies/schema/mqtt-acl.schema.json.
 *
 *   apiVersion: edgeward.io/v1
 *   kind: MqttAclPolicy
 *   devices:                       # granted to every device of this node, on top of its own twin topics
 *     publish: ["devices/{namespace}/{name}/telemetry"]
 *     subscribe: []
 *   identities:                    # granted by exact SPIFFE ID (workloads of this node, other devices)
 *     - spiffeId: spiffe://example.org/apps/collector
 *       publish: []
 *       subscribe: ["devices/+/+/telemetry"]
 *
 * Deny by default: a client gets only what is listed (plus a device's own twin topics, built in). `{namespace}`
 * and `{name}` are the connecting device's, and must each be a whole topic level. Topics beginning with `$`
 * are allowed only under `$hw/` (the KubeEdge twin topics); `$SYS` is never grantable; a bare `#` is refused for
 * publish. SPIFFE IDs are compared exactly (architecture.md 8), never by prefix or pattern, and must be in the
 * node's trust domain. The loader validates by hand with the schema's rules plus these; every problem is
 * reported together (`policy/invalid`). Bounded input: 1 MiB file, at most 1000 identities, 64 grants each.
 */
import { SpiffeId, type TrustDomain } from '../../identity/index.js';
import { PolicyError, type PolicyProblem } from '../registration/errors.js';
import { parseYaml, readBounded } from '../policy-file.js';
import { isTopicFilter } from './topics.js';

export const MQTT_ACL_API_VERSION = 'edgeward.io/v1';
export const MQTT_ACL_KIND = 'MqttAclPolicy';
export const MAX_ACL_POLICY_BYTES = 1024 * 1024;
export const MAX_ACL_IDENTITIES = 1000;
export const MAX_ACL_GRANTS = 64;
/** Longest grant (UTF-8 bytes) and deepest grant (levels). */
export const MAX_ACL_GRANT_BYTES = 1024;
export const MAX_ACL_GRANT_LEVELS = 32;
/** The placeholders a device grant may use, each a whole level. */
export const ACL_PLACEHOLDERS = ['{namespace}', '{name}'] as const;

export interface TopicGrants {
  readonly publish: readonly string[];
  readonly subscribe: readonly string[];
}

export interface MqttAclPolicy {
  /** Grants for every device (with placeholders). */
  readonly devices: TopicGrants;
  /** Grants by exact SPIFFE ID (canonical text). */
  readonly identities: ReadonlyMap<string, TopicGrants>;
}

/** The policy that grants nothing beyond a device's own twin topics. */
export const EMPTY_MQTT_ACL_POLICY: MqttAclPolicy = Object.freeze({
  devices: Object.freeze({ publish: [], subscribe: [] }),
  identities: new Map<string, TopicGrants>(),
});

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 64 ? `${v.slice(0, 64)}...` : v);
  return v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v;
}

/** Problems of one grant (a topic filter, possibly with placeholders when `placeholders`). */
function grantProblem(g: unknown, op: 'publish' | 'subscribe', placeholders: boolean): string | undefined {
  if (typeof g !== 'string' || g.length === 0) return 'must be a non-empty topic filter';
  if (Buffer.byteLength(g, 'utf8') > MAX_ACL_GRANT_BYTES) return `must be at most ${MAX_ACL_GRANT_BYTES} bytes`;
  const levels = g.split('/');
  for (const l of levels) {
    if (l.includes('{') || l.includes('}')) {
      if (!placeholders) return 'placeholders ({namespace}, {name}) are only for device grants';
      if (!(ACL_PLACEHOLDERS as readonly string[]).includes(l)) return `${show(l)}: a placeholder must be a whole level, {namespace} or {name}`;
    }
  }
  // Placeholders stand for one concrete level: check the filter with them replaced.
  const concrete = levels.map((l) => ((ACL_PLACEHOLDERS as readonly string[]).includes(l) ? 'x' : l)).join('/');
  if (!isTopicFilter(concrete, MAX_ACL_GRANT_LEVELS)) return `not a valid MQTT topic filter (MQTT 3.1.1 4.7; at most ${MAX_ACL_GRANT_LEVELS} levels)`;
  if (g.startsWith('$') && !g.startsWith('$hw/')) return 'topics beginning with "$" are reserved ($SYS is never granted); only $hw/... (KubeEdge twin topics) may be granted';
  if (op === 'publish' && g === '#') return 'a bare "#" is not a publish grant';
  return undefined;
}

function grants(v: unknown, path: string, placeholders: boolean, problems: PolicyProblem[]): TopicGrants {
  const out = { publish: [] as string[], subscribe: [] as string[] };
  if (v === undefined) return out;
  if (!isPlainObject(v)) {
    problems.push({ path, message: 'must be a mapping with publish and/or subscribe' });
    return out;
  }
  for (const k of Object.keys(v)) if (k !== 'publish' && k !== 'subscribe') problems.push({ path, message: `unknown field ${show(k)} (allowed: publish, subscribe)` });
  for (const op of ['publish', 'subscribe'] as const) {
    const list = v[op];
    if (list === undefined) continue;
    if (!Array.isArray(list) || list.length > MAX_ACL_GRANTS) {
      problems.push({ path: `${path}.${op}`, message: `must be a list of at most ${MAX_ACL_GRANTS} topic filters` });
      continue;
    }
    list.forEach((g: unknown, i) => {
      const p = grantProblem(g, op, placeholders);
      if (p !== undefined) problems.push({ path: `${path}.${op}[${i}]`, message: `${show(g)}: ${p}` });
      else if (!out[op].includes(g as string)) out[op].push(g as string);
    });
  }
  return out;
}

/** Validate a parsed policy document. Throws `policy/invalid` with every problem. */
export function validateMqttAclPolicy(doc: unknown, trustDomain: TrustDomain): MqttAclPolicy {
  const problems: PolicyProblem[] = [];
  if (!isPlainObject(doc)) throw new PolicyError('policy/invalid', 'an MQTT ACL policy must be a mapping', { problems: [{ path: '', message: 'must be a mapping' }] });
  for (const k of Object.keys(doc)) {
    if (!['apiVersion', 'kind', 'devices', 'identities'].includes(k)) problems.push({ path: k, message: 'unknown field (allowed: apiVersion, kind, devices, identities)' });
  }
  if (doc['apiVersion'] !== MQTT_ACL_API_VERSION) problems.push({ path: 'apiVersion', message: `must be ${MQTT_ACL_API_VERSION}` });
  if (doc['kind'] !== MQTT_ACL_KIND) problems.push({ path: 'kind', message: `must be ${MQTT_ACL_KIND}` });
  const devices = grants(doc['devices'], 'devices', true, problems);
  const identities = new Map<string, TopicGrants>();
  const list = doc['identities'] ?? [];
  if (!Array.isArray(list) || list.length > MAX_ACL_IDENTITIES) problems.push({ path: 'identities', message: `must be a list of at most ${MAX_ACL_IDENTITIES} items` });
  else {
    list.forEach((item: unknown, i) => {
      const path = `identities[${i}]`;
      if (!isPlainObject(item)) {
        problems.push({ path, message: 'must be a mapping with spiffeId, publish and/or subscribe' });
        return;
      }
      for (const k of Object.keys(item)) if (!['spiffeId', 'publish', 'subscribe'].includes(k)) problems.push({ path, message: `unknown field ${show(k)}` });
      let id: SpiffeId | undefined;
      try {
        id = SpiffeId.parse(item['spiffeId'] as string);
      } catch {
        problems.push({ path: `${path}.spiffeId`, message: `${show(item['spiffeId'])} is not a SPIFFE ID` });
      }
      if (id !== undefined && !id.trustDomain.equals(trustDomain)) problems.push({ path: `${path}.spiffeId`, message: `must be in the node's trust domain ${trustDomain.name}` });
      if (id !== undefined && id.isTrustDomainId) problems.push({ path: `${path}.spiffeId`, message: 'must have a path (a trust domain is not a client)' });
      const g = grants({ ...(item['publish'] === undefined ? {} : { publish: item['publish'] }), ...(item['subscribe'] === undefined ? {} : { subscribe: item['subscribe'] }) }, path, false, problems);
      if (id !== undefined) {
        const key = id.toString();
        if (identities.has(key)) problems.push({ path: `${path}.spiffeId`, message: `${key} is listed twice` });
        else identities.set(key, Object.freeze({ publish: Object.freeze(g.publish), subscribe: Object.freeze(g.subscribe) }));
      }
    });
  }
  if (problems.length > 0) {
    throw new PolicyError('policy/invalid', `invalid MQTT ACL policy: ${problems[0]!.path}: ${problems[0]!.message}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ''}`, { problems: problems.slice(0, 50), detail: { problems: problems.length } });
  }
  return Object.freeze({ devices: Object.freeze({ publish: Object.freeze(devices.publish), subscribe: Object.freeze(devices.subscribe) }), identities });
}

/** Read and validate a policy file (bounded, strict YAML). Throws `PolicyError`. */
export function loadMqttAclPolicy(path: string, trustDomain: TrustDomain): MqttAclPolicy {
  const text = readBounded(path, MAX_ACL_POLICY_BYTES).toString('utf8');
  return validateMqttAclPolicy(parseYaml(text, 0), trustDomain);
}
