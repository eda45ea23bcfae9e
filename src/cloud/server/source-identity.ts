/**
 * The node API server's identity from any `IdentitySource` (src/identity): in SPIRE mode the cloud SVID
 * `spiffe://TD/edgeward/cloud` and the trust domain's bundle come from an external SPIFFE Workload API
 * (`WorkloadApiX509Source`) instead of the embedded CA. The server serves `svid()` as its TLS certificate
 * (swapped in place on `onChange`) and `bundle()` on `GET /v1/bundle`.
 */
import {
  EdgewardError,
  parseCertificate,
  type BundleSet,
  type IdentitySource,
  type TrustBundle,
  type TrustDomain,
} from '../../identity/index.js';
import type { CloudIdentity, CloudSvid } from '../ca/index.js';

export type SourceIdentityErrorCode = 'cloud-identity/no-bundle';
export class SourceIdentityError extends EdgewardError<SourceIdentityErrorCode> {}

/** Adapt `source` (already checked to hold an SVID of `trustDomain`) to what the node API server needs. */
export function identityFromSource(source: IdentitySource, trustDomain: TrustDomain): CloudIdentity {
  let cached: { serialHex: string; svid: CloudSvid } | undefined;
  return {
    svid(): CloudSvid {
      const s = source.svid();
      if (cached === undefined || cached.serialHex !== s.serialHex) {
        const leaf = parseCertificate(s.chainDer[0]!);
        cached = { serialHex: s.serialHex, svid: Object.freeze({ ...s, notBefore: leaf.notBefore }) };
      }
      return cached.svid;
    },
    bundles(): BundleSet {
      return source.bundles();
    },
    bundle(): TrustBundle {
      const b = source.bundles().get(trustDomain);
      if (b === undefined) throw new SourceIdentityError('cloud-identity/no-bundle', `the Workload API delivered no bundle for trust domain ${trustDomain.name}`);
      return b;
    },
    onChange: (listener) => source.onChange(listener),
    close: () => source.close(),
  };
}
