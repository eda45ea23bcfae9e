/**
 * The identity port (`IdentitySource`, src/identity) over the joined agent's node SVID: the embedded
 * identity plane's side of "both sides take their SVIDs and bundles from the identity port" (issue #5).
 * SPIRE mode needs no adapter: `WorkloadApiX509Source` (src/protocol) is an IdentitySource already.
 */
import { BundleSet, SpiffeId, type Clock, type IdentitySource, type SvidWithKey, type TrustBundle } from '../../identity/index.js';
import type { NodeCredentials } from '../cloud-client/client.js';
import { EdgeHubError } from './errors.js';

/** What the adapter needs of NodeSvidManager (src/edge/joined/node-svid.ts). */
export interface NodeIdentityPort {
  readonly spiffeId: string;
  readonly notAfter: number;
  readonly serialHex: string;
  readonly bundle: TrustBundle;
  readonly credentials: NodeCredentials;
  expired(now?: number): boolean;
  /** After every new node SVID (renewed or re-attested). */
  onChange(listener: () => void): () => void;
}

/** An IdentitySource whose SVID is the node SVID the manager holds now (refused once expired). */
export function nodeSvidIdentitySource(node: NodeIdentityPort, clock: Clock): IdentitySource {
  let cached: SvidWithKey | undefined;
  let bundles: { bundle: TrustBundle; set: BundleSet } | undefined;
  return {
    svid(): SvidWithKey {
      if (node.expired(clock.now())) {
        throw new EdgeHubError('edge-hub/no-identity', `the node SVID expired at ${new Date(node.notAfter).toISOString()}`);
      }
      if (cached === undefined || cached.serialHex !== node.serialHex) {
        const c = node.credentials;
        cached = Object.freeze({
          spiffeId: SpiffeId.parse(node.spiffeId),
          chainDer: Object.freeze([...c.chainDer]),
          privateKey: c.privateKey,
          notAfter: node.notAfter,
          serialHex: node.serialHex,
        });
      }
      return cached;
    },
    bundles(): BundleSet {
      const b = node.bundle;
      if (bundles === undefined || bundles.bundle !== b) bundles = { bundle: b, set: BundleSet.of([b]) };
      return bundles.set;
    },
    onChange: (listener) => node.onChange(listener),
    close: () => {},
  };
}
