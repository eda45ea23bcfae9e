/**
 * The port between the Workload API gRPC server (transport: headers, codes, streams) and whatever
 * decides identities (attestation, registration entries, the SVID cache, bundles). The server never
 * decides who a caller is; the source never sees gRPC.
 */
import type { UnixPeer } from '../peercred/index.js';
import type { Selector } from '../../attestation/index.js';

/** One X509-SVID as the Workload API delivers it (Workload API 5.2, X509SVID message). */
export interface X509SvidView {
  spiffeId: string;
  /** Leaf first, then intermediates (DER each; concatenated on the wire). */
  chainDer: readonly Buffer[];
  /** Unencrypted PKCS#8 DER of the SVID's private key. */
  keyPkcs8: Buffer;
  /** DER CA certificates of the SVID's trust domain (concatenated on the wire). */
  bundleDer: readonly Buffer[];
  /** Optional, unique within one response. */
  hint: string;
  /** For change suppression and rotation; epoch ms. */
  notAfter: number;
  serialHex: string;
}

export interface JwtSvidView {
  spiffeId: string;
  token: string;
  hint: string;
}

/** Attestation of a connected caller: the selectors the kernel-verified evidence yields. */
export interface AttestedCaller {
  peer: UnixPeer;
  selectors: readonly Selector[];
}

export type IdentityChange = 'entries' | 'svids' | 'bundles';

export interface WorkloadIdentitySource {
  /**
   * Attest the caller from kernel evidence (pid/uid/gid from SO_PEERCRED, /proc), with the PID-reuse
   * check done after the evidence is read. Rejects with a typed error when attestation fails
   * (the server answers Unavailable, as SPIRE does).
   */
  attest(peer: UnixPeer): Promise<AttestedCaller>;
  /** Current X509-SVIDs of every entry the caller matches (empty = no identity issued). */
  x509Svids(caller: AttestedCaller): readonly X509SvidView[];
  /** Mint (or return cached, unexpired past half-life) JWT-SVIDs for the caller's entries. */
  jwtSvids(caller: AttestedCaller, audience: readonly string[], spiffeId?: string): Promise<readonly JwtSvidView[]>;
  /**
   * Optional: `spiffe://td` -> DER CA certificates of the foreign trust domains the caller's entries
   * federate with (X509SVIDResponse.federated_bundles; absence = redaction). Omitted = none.
   */
  x509FederatedBundles?(caller: AttestedCaller): ReadonlyMap<string, readonly Buffer[]>;
  /** `spiffe://td` -> concatenable DER CA certificates, own trust domain first (X509BundlesResponse). */
  x509Bundles(): ReadonlyMap<string, readonly Buffer[]>;
  /** `spiffe://td` -> JSON JWK Set bytes (JWTBundlesResponse; plain JWKS as SPIRE returns). */
  jwtBundles(): ReadonlyMap<string, Buffer>;
  /** Validate a JWT-SVID for `audience` against the known JWT bundles. */
  validateJwtSvid(token: string, audience: string): { spiffeId: string; claims: Record<string, unknown> };
  /** Called after any change; the server then recomputes every open stream's state. Returns unsubscribe. */
  onChange(listener: (what: IdentityChange) => void): () => void;
}
