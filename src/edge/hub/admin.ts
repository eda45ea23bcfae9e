/**
 * The edge's hub admin methods (issue #5), served on the agent's private admin socket:
 *   resource.get  {kind, name?}                                    -> {items: ResourceView[], total}  from the local store
 *   status.report {kind, name, phase, message?, observedVersion?}  -> {seq}                           into the durable outbox
 * `resource.get` answers from the edge's own SQLite copy, so it works with the cloud gone (offline
 * autonomy); every view has `source: 'edge'` and no acks or status, and a Secret's values are redacted
 * (`resourceView`: never a secret in a response). Parameters are validated strictly (unknown members refused).
 */
import {
  isNamespacedKind,
  normalizeResourceName,
  parseResourceKind,
  resourceView,
  type AdminHandlers,
  type ResourceGetResult,
  type ResourceKind,
  type ResourceView,
} from '../../protocol/index.js';
import type { EdgeHub, StatusReport } from './client.js';
import { EdgeHubError } from './errors.js';
import type { EdgeHubStore } from './store.js';

/** A list response stops adding items past this many bytes (an admin message is at most 1 MiB). */
export const MAX_EDGE_VIEW_RESPONSE_BYTES = 768 * 1024;

export interface EdgeHubAdminDeps {
  store: Pick<EdgeHubStore, 'get' | 'list'>;
  /** Absent when the hub is off: `status.report` is then refused. */
  hub: Pick<EdgeHub, 'reportStatus'> | undefined;
  /** This node's name: the only target an edge knows of a resource it holds. */
  nodeName: string;
}

function bad(message: string): EdgeHubError {
  return new EdgeHubError('edge-hub/invalid-request', message);
}

function members(p: Record<string, unknown>, allowed: readonly string[], method: string): void {
  for (const k of Object.keys(p)) if (!allowed.includes(k)) throw bad(`${method}: unknown parameter ${JSON.stringify(k.slice(0, 40))}`);
}

/** `Node` (any case) for the node itself, else a resource kind or alias (parseResourceKind). */
function statusKind(x: unknown): ResourceKind | 'Node' {
  if (typeof x === 'string' && x.toLowerCase() === 'node') return 'Node';
  return parseResourceKind(x);
}

export function createEdgeHubAdminHandlers(deps: EdgeHubAdminDeps): AdminHandlers {
  const view = (r: { kind: ResourceKind; name: string; version: number; data: Record<string, unknown>; updatedAt: number }): ResourceView =>
    resourceView({ kind: r.kind, name: r.name, version: r.version, nodes: [deps.nodeName], data: r.data, updatedAt: r.updatedAt, source: 'edge' });
  return {
    'resource.get': (p): ResourceGetResult => {
      members(p, ['kind', 'name'], 'resource.get');
      if (typeof p['kind'] !== 'string') throw bad('kind must be a resource kind');
      const kind = parseResourceKind(p['kind']);
      if (p['name'] !== undefined) {
        const name = normalizeResourceName(kind, p['name']);
        if (name === undefined) throw bad(`name must be a ${kind} name${isNamespacedKind(kind) ? ' (NAMESPACE/NAME, or NAME in the namespace default)' : ' (DNS-1123 subdomain, at most 253 characters)'}`);
        const r = deps.store.get(kind, name);
        if (r === undefined) throw new EdgeHubError('resource/not-found', `no ${kind} named ${JSON.stringify(name)} on this edge`);
        return { items: [view(r)] };
      }
      const all = deps.store.list(kind);
      const items: ResourceView[] = [];
      let used = 64;
      for (const r of all) {
        const v = view(r);
        used += Buffer.byteLength(JSON.stringify(v), 'utf8') + 1;
        if (used > MAX_EDGE_VIEW_RESPONSE_BYTES && items.length > 0) break;
        items.push(v);
      }
      return items.length < all.length ? { items, total: all.length, truncated: true } : { items, total: all.length };
    },

    'status.report': (p) => {
      members(p, ['kind', 'name', 'phase', 'message', 'observedVersion'], 'status.report');
      if (deps.hub === undefined) throw new EdgeHubError('edge-hub/closed', 'the hub is off on this agent (no status outbox)');
      const report: StatusReport = {
        kind: statusKind(p['kind']),
        name: typeof p['name'] === 'string' ? p['name'] : '',
        phase: typeof p['phase'] === 'string' ? p['phase'] : '',
      };
      if (typeof p['name'] !== 'string') throw new EdgeHubError('edge-hub/invalid-status', 'name must be a string');
      if (typeof p['phase'] !== 'string') throw new EdgeHubError('edge-hub/invalid-status', 'phase must be a string');
      if (p['message'] !== undefined) {
        if (typeof p['message'] !== 'string') throw new EdgeHubError('edge-hub/invalid-status', 'message must be a string');
        report.message = p['message'];
      }
      if (p['observedVersion'] !== undefined) {
        if (typeof p['observedVersion'] !== 'number') throw new EdgeHubError('edge-hub/invalid-status', 'observedVersion must be an integer >= 1');
        report.observedVersion = p['observedVersion'];
      }
      return deps.hub.reportStatus(report);
    },
  };
}
