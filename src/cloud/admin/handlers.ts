/**
 * The cloud's admin methods (served on DIR/admin/admin.sock): join tokens, the node registry, entries,
 * the bundle and status. Parameters come from the local CLI but are still validated (deny by default).
 */
import { bundleDigest, bundleToJson, EdgewardError, type Clock, type TrustDomain } from '../../identity/index.js';
import { DEFAULT_JOIN_TOKEN_TTL_MS, generateJoinToken } from '../../attestation/index.js';
import type { AttestedNode, CloudStore } from '../store/index.js';
import { CloudStoreError } from '../store/index.js';
import type { CloudCa, CloudIdentity } from '../ca/index.js';
import type { AdminHandlers, AdminSocketLogger } from '../../protocol/index.js';

/** `cloud-admin/bad-request`: an admin call's parameters are malformed. */
export type CloudAdminErrorCode = 'cloud-admin/bad-request';
export class CloudAdminError extends EdgewardError<CloudAdminErrorCode> {}

/** Registration entries as the admin socket sees them (the CloudStore's entry table). */
export interface EntryAdmin {
  create(params: Record<string, unknown>): unknown;
  list(): unknown[];
  delete(id: string): boolean;
}

/**
 * Admin refusals that depend on the cloud's mode.
 * - `cloud-admin/attestation-external`: SPIRE mode (`--spiffe-socket`): SPIRE attests the nodes, so the
 *   cloud issues no join tokens; register the node in SPIRE instead (docs/spire.md).
 */
export type CloudAdminModeErrorCode = 'cloud-admin/attestation-external';
export class CloudAdminModeError extends EdgewardError<CloudAdminModeErrorCode> {}

export interface CloudAdminDeps {
  trustDomain: TrustDomain;
  store: CloudStore;
  /** The embedded CA; absent in SPIRE mode. */
  ca?: CloudCa | undefined;
  /** The cloud SVID and bundle (default: `ca`); in SPIRE mode the Workload API source. */
  identity?: CloudIdentity | undefined;
  /** `spire` when identities come from an external Workload API (default `embedded`). */
  mode?: 'embedded' | 'spire';
  clock: Clock;
  logger: AdminSocketLogger;
  /** `HOST:PORT` edges use to reach the node API. */
  cloudAddress(): string;
  /** Live figures for `cloud.status`. */
  status(): Record<string, unknown>;
  entries?: EntryAdmin;
}

export interface NodeView {
  name: string;
  spiffeId: string;
  method: string;
  status: 'active' | 'expired' | 'banned';
  serial: string | null;
  notAfter: number | null;
  pendingSerial: string | null;
  reattestable: boolean;
  banned: boolean;
  fingerprint: string;
  attestedAt: number;
  updatedAt: number;
}

export function nodeView(n: AttestedNode, now: number): NodeView {
  return {
    name: n.name,
    spiffeId: n.spiffeId.toString(),
    method: n.method,
    status: n.banned ? 'banned' : n.notAfter !== undefined && n.notAfter > now ? 'active' : 'expired',
    serial: n.serialHex ?? null,
    notAfter: n.notAfter ?? null,
    pendingSerial: n.pendingSerialHex ?? null,
    reattestable: n.reattestable,
    banned: n.banned,
    fingerprint: n.fingerprint,
    attestedAt: n.attestedAt,
    updatedAt: n.updatedAt,
  };
}

function badRequest(message: string): CloudAdminError {
  return new CloudAdminError('cloud-admin/bad-request', message);
}

function nameParam(p: Record<string, unknown>, key = 'name'): string {
  const v = p[key];
  if (typeof v !== 'string' || v.length === 0 || v.length > 253) throw badRequest(`${key} must be a node name`);
  return v;
}

export function createCloudAdminHandlers(deps: CloudAdminDeps): AdminHandlers {
  const { store, ca, clock, logger } = deps;
  const identity: CloudIdentity | undefined = deps.identity ?? ca;
  if (identity === undefined) throw new TypeError('createCloudAdminHandlers needs ca or identity');
  const mode = deps.mode ?? 'embedded';
  const mustGet = (name: string): AttestedNode => {
    const n = store.getNode(name);
    if (n === undefined) throw new CloudStoreError('cloud-store/unknown-node', `no attested node "${name}"`, { detail: { node: name } });
    return n;
  };
  const handlers: AdminHandlers = {
    'token.create': (p) => {
      const node = nameParam(p, 'node');
      if (mode === 'spire' || ca === undefined) {
        logger.warn({ event: 'security.token_refused', code: 'cloud-admin/attestation-external', node: node.slice(0, 63) }, 'join token refused: SPIRE mode');
        throw new CloudAdminModeError(
          'cloud-admin/attestation-external',
          'this cloud runs in SPIRE mode (--spiffe-socket): SPIRE attests the nodes, so there are no join tokens; register spiffe://TD/edgeward/node/NAME in SPIRE (docs/spire.md)',
        );
      }
      const ttl = p['ttlMs'] ?? DEFAULT_JOIN_TOKEN_TTL_MS;
      if (typeof ttl !== 'number') throw badRequest('ttlMs must be a number of milliseconds');
      const now = clock.now();
      const { token, record } = generateJoinToken(node, ttl, now);
      store.addJoinToken(record);
      store.pruneExpiredTokens(now);
      logger.info({ event: 'token.created', node: record.nodeName, expires_at: record.expiresAt }, 'join token created');
      return {
        token,
        node: record.nodeName,
        expiresAt: record.expiresAt,
        bundleDigest: bundleDigest(ca.bundle()),
        cloud: deps.cloudAddress(),
        trustDomain: deps.trustDomain.name,
      };
    },
    'node.list': () => {
      const now = clock.now();
      return store.listNodes().map((n) => nodeView(n, now));
    },
    'node.show': (p) => nodeView(mustGet(nameParam(p)), clock.now()),
    'node.ban': (p) => {
      const name = nameParam(p);
      const n = store.ban(name);
      logger.info({ event: 'node.banned', node: name }, 'node banned');
      return nodeView(n, clock.now());
    },
    'node.unban': (p) => {
      const name = nameParam(p);
      const n = store.unban(name);
      logger.info({ event: 'node.unbanned', node: name }, 'node unbanned');
      return nodeView(n, clock.now());
    },
    'node.evict': (p) => {
      const name = nameParam(p);
      const evicted = store.evict(name);
      if (evicted) logger.info({ event: 'node.evicted', node: name }, 'node evicted');
      return { name, evicted };
    },
    'bundle.show': () => {
      const b = identity.bundle();
      return { trustDomain: deps.trustDomain.name, digest: bundleDigest(b), bundle: JSON.parse(bundleToJson(b)) as unknown };
    },
    'cloud.status': () => {
      const svid = identity.svid();
      return {
        mode,
        trustDomain: deps.trustDomain.name,
        cloud: deps.cloudAddress(),
        spiffeId: svid.spiffeId.toString(),
        svid: { serial: svid.serialHex, notAfter: svid.notAfter },
        bundleDigest: bundleDigest(identity.bundle()),
        caSlots: ca === undefined ? [] : ca.manager.slots.map((s) => ({ state: s.state, serial: s.cert.serialHex, notAfter: s.cert.notAfter })),
        nodes: store.listNodes().length,
        ...deps.status(),
      };
    },
  };
  const entries = deps.entries;
  if (entries !== undefined) {
    handlers['entry.create'] = (p) => entries.create(p);
    handlers['entry.list'] = () => entries.list();
    handlers['entry.delete'] = (p) => {
      const id = p['id'];
      if (typeof id !== 'string') throw badRequest('id must be a string');
      return { deleted: entries.delete(id) };
    };
  }
  return handlers;
}
