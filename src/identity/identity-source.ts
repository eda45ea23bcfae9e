/**
 * The identity port (issue 4, "Bring your own SPIRE"): where a process that needs its own X509-SVID and
 * the bundles to validate its peers (the cloud core, the joined edge agent) takes them from.
 *
 * Two implementations: the embedded identity plane (the cloud's own CA, the edge's cloud-signed node
 * SVID) and a SPIFFE Workload API client (`WorkloadApiX509Source` in src/protocol/workload-api), which
 * follows an external SPIRE agent. Consumers depend on this interface only. Pure types: no I/O here.
 */
import type { KeyObject } from 'node:crypto';
import type { BundleSet } from './bundle.js';
import type { SpiffeId } from './spiffe-id.js';

/** One X509-SVID with its private key, as a TLS endpoint needs it. */
export interface SvidWithKey {
  readonly spiffeId: SpiffeId;
  /** Leaf first, then intermediates (never the root), as DER. */
  readonly chainDer: readonly Buffer[];
  readonly privateKey: KeyObject;
  /** The leaf's NotAfter (epoch ms). */
  readonly notAfter: number;
  /** The leaf's serial number, lower-case hex (for logs and rotation checks). */
  readonly serialHex: string;
}

export interface IdentitySource {
  /** The current SVID. Throws a typed error (`EdgewardError`) when there is none, or it has expired. */
  svid(): SvidWithKey;
  /** Bundles of our own trust domain (and federated ones, if any) for validating peers. */
  bundles(): BundleSet;
  /** Called after the SVID or the bundles changed (rotation, new CA). Returns the unsubscribe function. */
  onChange(listener: () => void): () => void;
  close(): Promise<void> | void;
}
