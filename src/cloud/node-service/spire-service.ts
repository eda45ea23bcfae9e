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
import type { BundleSet, Clock, TrustDomain } from '../../identity/index.js';
import { decodeEdgeToCloud, NodeApiError, type EdgeToCloudMessage } from '../../protocol/index.js';
import { CloudStoreError, type CloudStore } from '../store/index.js';
import { NodeServiceError } from './errors.js';
import {
  delegatedEntriesReply,
  eventFor,
  logRefusal,
  unhandledKind,
  validateNodeChain,
  type AuthenticatedNode,
  type NodeApiPhase,
  type NodeReply,
  type NodeService,
  type NodeServiceLogger,
} from './service.js';

export interface SpireNodeServiceDeps {
  trustDomain: TrustDomain;
  store: CloudStore;
  /** The bundles from the cloud's Workload API (SPIRE): client SVIDs are validated against them. */
  bundles(): BundleSet;
  clock: Clock;
  logger: NodeServiceLogger;
}

/** Security event names of the SPIRE-mode refusals (other codes: as embedded mode, `eventFor`). */
function spireEvent(code: string, phase: NodeApiPhase): string {
  if (code === 'node-api/attestation-external') return 'security.attestation_external';
  if (code === 'node-api/external-identity') return 'security.external_identity_refused';
  return eventFor(code, phase);
}

export function createSpireNodeService(deps: SpireNodeServiceDeps): NodeService {
  const { trustDomain: td, store, clock, logger } = deps;

  const refuse = (e: unknown, phase: NodeApiPhase, source: string, node?: string): NodeReply =>
    logRefusal(logger, e, phase, source, node, { event: spireEvent, fields: { mode: 'spire' } });


  const external = (kind: string): NodeServiceError =>
    new NodeServiceError('node-api/external-identity', `${kind} is not served: this cloud takes identities from SPIRE, which issues node and workload SVIDs`, {
      detail: { kind },
    });

  const dispatch = (m: EdgeToCloudMessage, node: AuthenticatedNode): NodeReply => {
    switch (m.kind) {
      case 'entries.request':
        return delegatedEntriesReply(store, node.nodeName);
      case 'renew.request':
      case 'svids.request':
      case 'jwt.request':
      case 'device.enroll':
      case 'device.renew':
        throw external(m.kind);
      case 'attest.begin':
      case 'attest.response':
      case 'error':
        throw new NodeApiError('node-api/unexpected-kind', `${m.kind} is not accepted on the node endpoint`);
      default:
        throw unhandledKind(m);
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
        // X509-SVID 5: against the bundle of the configured trust domain, as SPIRE delivered it to us.
        const v = validateNodeChain(chainDer, deps.bundles(), clock.now(), td);
        const { spiffeId, serialHex, notAfter } = v;
        name = v.name;
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
