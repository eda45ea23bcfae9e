/**
 * The node API logic in SPIRE mode (issue #4 "Bring your own SPIRE"): SPIRE attests the nodes and issues
 * every SVID, so the cloud runs no CA for nodes. What is left is authentication and the node registry:
 *
 * - `POST /v1/attest` is closed: `node-api/attestation-external` ("node attestation is done by SPIRE").
 * - `authenticate`: the client chain must validate as an X509-SVID of the configured trust domain against
 *   the bundles the cloud's own Workload API delivers (`bundles()`, X509-SVID 5), with a node ID
 *   `spiffe://TD/edgeward/node/NAME`. The node is recorded on its first authenticated contact (method
 *   `spire`, `recordSpireNode`), so `node list/show/ban/unban/evict` work by name; a banned node is refused
 *   (`node/banned`). Serials are not pinned (SPIRE rotates node SVIDs): the last-seen serial and expiry
 *   are recorded instead.
 * - `handle`: `entries.request` returns the entries delegated to the node (as in embedded mode);
 *   `renew.request`, `svids.request` and `jwt.request` need the embedded CA and are refused with
 *   `node-api/external-identity`.
 *
 * Refusals are typed errors on the wire and security events in the log, as in embedded mode.
 */
import { nodeNameFromSpiffeId, NodeNameError } from '../../attestation/index.js';
import { EdgewardError, validateX509Svid, X509SvidError, type BundleSet, type Clock, type SpiffeId, type TrustDomain } from '../../identity/index.js';
import { decodeEdgeToCloud, MAX_NODE_API_ENTRIES, NodeApiError, type EdgeToCloudMessage } from '../../protocol/index.js';
import { CloudStoreError, type CloudStore } from '../store/index.js';
import { NodeServiceError } from './errors.js';
import { eventFor, nodeErrorReply, toNodeEntry, type AuthenticatedNode, type NodeReply, type NodeService, type NodeServiceLogger } from './service.js';

export interface SpireNodeServiceDeps {
  trustDomain: TrustDomain;
  store: CloudStore;
  /** The bundles from the cloud's Workload API (SPIRE): client SVIDs are validated against them. */
  bundles(): BundleSet;
  clock: Clock;
  logger: NodeServiceLogger;
}

/** Security event names of the SPIRE-mode refusals (other codes: as embedded mode, `eventFor`). */
function spireEvent(code: string, phase: 'attest' | 'authenticate' | 'request'): string {
  if (code === 'node-api/attestation-external') return 'security.attestation_external';
  if (code === 'node-api/external-identity') return 'security.external_identity_refused';
  return eventFor(code, phase);
}

export function createSpireNodeService(deps: SpireNodeServiceDeps): NodeService {
  const { trustDomain: td, store, clock, logger } = deps;

  const refuse = (e: unknown, phase: 'attest' | 'authenticate' | 'request', source: string, node?: string): NodeReply => {
    const reply = nodeErrorReply(e);
    const code = reply.message.kind === 'error' ? reply.message.code : 'internal';
    const who = node === undefined ? {} : { node };
    if (code === 'internal') {
      logger.error(
        { event: 'node_api.internal_error', code: e instanceof EdgewardError ? e.code : 'internal', err: e instanceof Error ? e.message : String(e), ...who, source },
        'node API request failed',
      );
      return reply;
    }
    const detail = e instanceof EdgewardError && e.detail !== undefined ? { detail: e.detail } : {};
    logger.warn({ event: spireEvent(code, phase), code, ...who, source, mode: 'spire', ...detail }, 'node API request refused');
    return reply;
  };

  const external = (kind: string): NodeServiceError =>
    new NodeServiceError('node-api/external-identity', `${kind} is not served: this cloud takes identities from SPIRE, which issues node and workload SVIDs`, {
      detail: { kind },
    });

  const dispatch = (m: EdgeToCloudMessage, node: AuthenticatedNode): NodeReply => {
    switch (m.kind) {
      case 'entries.request': {
        const entries = store.entriesDelegatedTo(node.nodeName);
        if (entries.length > MAX_NODE_API_ENTRIES) {
          throw new NodeServiceError('node/too-many-entries', `more than ${MAX_NODE_API_ENTRIES} entries are delegated to this node`);
        }
        return { status: 200, message: { v: 1, kind: 'entries.result', entries: entries.map(toNodeEntry) } };
      }
      case 'renew.request':
      case 'svids.request':
      case 'jwt.request':
        throw external(m.kind);
      case 'attest.begin':
      case 'attest.response':
      case 'error':
        throw new NodeApiError('node-api/unexpected-kind', `${m.kind} is not accepted on the node endpoint`);
      default: {
        const never: never = m;
        throw new NodeApiError('node-api/unknown-kind', `unhandled kind ${String((never as { kind?: unknown }).kind).slice(0, 40)}`);
      }
    }
  };

  return {
    attest(_body: Buffer, source: string): NodeReply {
      return refuse(
        new NodeServiceError('node-api/attestation-external', 'node attestation is done by SPIRE: register the node in SPIRE (docs/spire.md), no edgeward edge join'),
        'attest',
        source,
      );
    },

    authenticate(chainDer: readonly Buffer[], source: string): AuthenticatedNode {
      let name: string | undefined;
      try {
        const now = clock.now();
        if (!Array.isArray(chainDer) || chainDer.length === 0) {
          throw new NodeServiceError('node-api/unauthenticated', 'a client certificate (node X509-SVID) is required');
        }
        let spiffeId: SpiffeId;
        let serialHex: string;
        let notAfter: number;
        try {
          // X509-SVID 5: against the bundle of the configured trust domain, as SPIRE delivered it to us.
          const v = validateX509Svid(chainDer, deps.bundles(), now, { trustDomain: td });
          spiffeId = v.spiffeId;
          serialHex = v.leaf.serialHex;
          notAfter = v.leaf.notAfter;
          name = nodeNameFromSpiffeId(spiffeId, td);
        } catch (e) {
          if (e instanceof X509SvidError || e instanceof NodeNameError) {
            throw new NodeServiceError('node-api/unauthenticated', 'the client certificate is not a valid node X509-SVID of this trust domain', {
              cause: e,
              detail: { reason: e.code },
            });
          }
          throw e;
        }
        let created: boolean;
        try {
          created = store.recordSpireNode(name, serialHex, notAfter).created;
        } catch (e) {
          if (e instanceof CloudStoreError && e.code === 'cloud-store/node-banned') throw new NodeServiceError('node/banned', `node ${name} is banned`);
          if (e instanceof CloudStoreError && e.code === 'cloud-store/fingerprint-mismatch') {
            throw new NodeServiceError('node/credential-mismatch', `node ${name} is recorded with an embedded attestation method; an operator must evict it first`);
          }
          throw e;
        }
        if (created) logger.info({ event: 'node.attested', node: name, method: 'spire', serial: serialHex, source }, 'SPIRE node recorded on first contact');
        return { nodeName: name, spiffeId, serialHex };
      } catch (e) {
        refuse(e, 'authenticate', source, name);
        if (e instanceof NodeServiceError) throw e;
        throw new NodeServiceError('internal', 'internal error', { cause: e });
      }
    },

    handle(body: Buffer, node: AuthenticatedNode, source: string): NodeReply {
      try {
        const m = decodeEdgeToCloud(body);
        // The connection may have authenticated a while ago: a ban or an eviction since then refuses now.
        const n = store.getNode(node.nodeName);
        if (n === undefined) throw new NodeServiceError('node/unknown', `node ${node.nodeName} has no record; connect again`);
        if (n.banned) throw new NodeServiceError('node/banned', `node ${node.nodeName} is banned`);
        return dispatch(m, node);
      } catch (e) {
        return refuse(e, 'request', source, node?.nodeName);
      }
    },

    sweep(): void {
      // No attestation sessions in SPIRE mode.
    },

    get stats() {
      return { sessions: 0 };
    },
  };
}
