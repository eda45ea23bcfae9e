/**
 * The cloud's resource admin methods (issue #5), served on its private admin socket:
 *   resource.apply  {documents: unknown[]}   -> {results: ApplyOutcome[]}    all or nothing, 1..1000 documents
 *   resource.get    {kind, name?}            -> ResourceGetResult            views with acks and status; secrets redacted
 *   resource.delete {kind, name}             -> {kind, name, version}
 * Parameters come from the local CLI but are still validated strictly (deny by default): unknown members are
 * refused, every document is checked with `parseResourceDocument`, and every problem is reported together.
 * A response always fits one admin message (MAX_ADMIN_MESSAGE_BYTES): lists are cut (`truncated`), per-node
 * acks and status are bounded (the totals say how many there are).
 */
import type { Clock } from '../../identity/index.js';
import {
  isNamespacedKind,
  normalizeResourceName,
  parseResourceDocument,
  parseResourceKind,
  ResourceError,
  resourceView,
  type AdminHandlers,
  type AdminSocketLogger,
  type ResourceDocument,
  type ResourceGetResult,
  type ResourceKind,
  type ResourceView,
} from '../../protocol/index.js';
import { CloudAdminError } from '../admin/index.js';
import { ResourceStoreError } from './errors.js';
import { MAX_APPLY_DOCUMENTS, type ResourceStore, type ResourceStoreViews, type StoredResource } from './store.js';

/** Per resource in a list: the first acks by node (the totals are always given). */
export const LIST_VIEW_ACKS = 20;
/** For one resource (`get KIND NAME`): the first acks and status records by node. */
export const DETAIL_VIEW_ACKS = 1000;
export const DETAIL_VIEW_STATUS = 300;
/** A list response stops adding items past this many bytes (an admin message is at most 1 MiB). */
export const MAX_VIEW_RESPONSE_BYTES = 768 * 1024;

export interface ResourceAdminDeps {
  store: ResourceStore & Partial<ResourceStoreViews>;
  clock: Clock;
  logger: AdminSocketLogger;
}

function badRequest(message: string): CloudAdminError {
  return new CloudAdminError('cloud-admin/bad-request', message);
}

function members(p: Record<string, unknown>, allowed: readonly string[], method: string): void {
  for (const k of Object.keys(p)) if (!allowed.includes(k)) throw badRequest(`${method}: unknown parameter ${JSON.stringify(k.slice(0, 40))}`);
}

function kindParam(p: Record<string, unknown>): ResourceKind {
  if (typeof p['kind'] !== 'string') throw badRequest('kind must be a resource kind');
  return parseResourceKind(p['kind']);
}

function nameParam(p: Record<string, unknown>, kind: ResourceKind): string {
  const n = normalizeResourceName(kind, p['name']);
  if (n === undefined) {
    throw badRequest(isNamespacedKind(kind) ? `name must be a ${kind} name (NAMESPACE/NAME, or NAME in the namespace default)` : 'name must be a resource name (DNS-1123 subdomain, at most 253 characters)');
  }
  return n;
}

export function createResourceAdminHandlers(deps: ResourceAdminDeps): AdminHandlers {
  const { store, logger } = deps;

  const view = (r: StoredResource, detail: boolean): ResourceView => {
    const ackLimit = detail ? DETAIL_VIEW_ACKS : LIST_VIEW_ACKS;
    let acks;
    let total: number;
    let current: number;
    if (store.ackSummary !== undefined) {
      const s = store.ackSummary(r.kind, r.name, r.version, ackLimit);
      acks = s.acks;
      total = s.total;
      current = s.current;
    } else {
      const all = store.acksOf(r.kind, r.name);
      acks = all.slice(0, ackLimit);
      total = all.length;
      current = all.filter((a) => a.version === r.version).length;
    }
    const base = resourceView({ ...r, source: 'cloud' });
    const out: ResourceView = {
      ...base,
      acks: acks.map((a) => ({ node: a.node, version: a.version, current: a.version === r.version, ackedAt: a.ackedAt })),
      acksTotal: total,
      acksCurrent: current,
    };
    if (!detail) return out;
    let status;
    let statusTotal: number;
    if (store.statusSummary !== undefined) {
      const s = store.statusSummary(r.kind, r.name, DETAIL_VIEW_STATUS);
      status = s.status;
      statusTotal = s.total;
    } else {
      const all = store.statusOf(r.kind, r.name);
      status = all.slice(0, DETAIL_VIEW_STATUS);
      statusTotal = all.length;
    }
    return {
      ...out,
      status: status.map((s) => ({
        node: s.node,
        phase: s.phase,
        ...(s.message === undefined ? {} : { message: s.message }),
        ...(s.observedVersion === undefined ? {} : { observedVersion: s.observedVersion }),
        ...(s.detail === undefined ? {} : { detail: s.detail }),
        at: s.at,
      })),
      statusTotal,
    };
  };

  return {
    'resource.apply': (p) => {
      members(p, ['documents'], 'resource.apply');
      const documents = p['documents'];
      if (!Array.isArray(documents) || documents.length === 0) throw badRequest('documents must be a non-empty list of resource documents');
      if (documents.length > MAX_APPLY_DOCUMENTS) {
        throw new ResourceStoreError('resource-store/too-many', `at most ${MAX_APPLY_DOCUMENTS} documents per apply (got ${documents.length})`);
      }
      const problems: string[] = [];
      const docs: ResourceDocument[] = [];
      documents.forEach((d: unknown, i) => {
        try {
          docs.push(parseResourceDocument(d));
        } catch (e) {
          if (!(e instanceof ResourceError)) throw e;
          problems.push(`document ${i + 1}: ${e.message}`);
        }
      });
      if (problems.length > 0) throw new ResourceError(problems, { prefix: `${problems.length} of ${documents.length} documents are invalid; nothing was applied` });
      // A Device's revokedBefore is the cloud's (`edgeward device revoke`, issue #6): a re-apply keeps it.
      const kept = docs.map((d) => {
        if (d.kind !== 'Device') return d;
        const revokedBefore = store.get('Device', d.name)?.data['revokedBefore'];
        return revokedBefore === undefined ? d : { ...d, data: { ...d.data, revokedBefore } };
      });
      const results = store.apply(kept);
      for (const r of results) {
        if (r.action === 'unchanged') continue;
        logger.info({ event: 'resource.applied', kind: r.kind, name: r.name, version: r.version, action: r.action }, 'resource applied');
      }
      return { results };
    },

    'resource.get': (p): ResourceGetResult => {
      members(p, ['kind', 'name'], 'resource.get');
      const kind = kindParam(p);
      if (p['name'] !== undefined) {
        const name = nameParam(p, kind);
        const r = store.get(kind, name);
        if (r === undefined) throw new ResourceStoreError('resource/not-found', `no ${kind} named ${JSON.stringify(name)}`);
        return { items: [view(r, true)] };
      }
      const all = store.list(kind);
      const items: ResourceView[] = [];
      let used = 64;
      for (const r of all) {
        const v = view(r, false);
        used += Buffer.byteLength(JSON.stringify(v), 'utf8') + 1;
        if (used > MAX_VIEW_RESPONSE_BYTES && items.length > 0) break;
        items.push(v);
      }
      return items.length < all.length ? { items, total: all.length, truncated: true } : { items, total: all.length };
    },

    'resource.delete': (p) => {
      members(p, ['kind', 'name'], 'resource.delete');
      const kind = kindParam(p);
      const name = nameParam(p, kind);
      const r = store.delete(kind, name);
      if (r === undefined) throw new ResourceStoreError('resource/not-found', `no ${kind} named ${JSON.stringify(name)}`);
      logger.info({ event: 'resource.deleted', kind, name, version: r.version }, 'resource deleted');
      return { kind, name, version: r.version };
    },
  };
}
