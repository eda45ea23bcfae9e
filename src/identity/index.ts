/** The SPIFFE identity core: pure code (no file or network I/O; time is passed in). */
export { EdgewardError } from './errors.js';
export { ManualClock, type Clock } from './clock.js';
export {
  SpiffeId,
  SpiffeIdError,
  TrustDomain,
  MAX_SPIFFE_ID_BYTES,
  MAX_TRUST_DOMAIN_BYTES,
  SPIFFE_ID_ERROR_CODES,
  type SpiffeIdErrorCode,
} from './spiffe-id.js';
export { DerError, type DerErrorCode } from './asn1/der.js';
export {
  parseCertificate,
  certsFromPem,
  certToPem,
  derToPem,
  splitDerCerts,
  X509Error,
  MAX_CERT_BYTES,
  MAX_CHAIN_CERTS,
  type ParsedCertificate,
  type KeyUsage,
  type X509ErrorCode,
} from './x509/certificate.js';
export { OID } from './x509/oids.js';
export {
  generateP256,
  spkiFromPublicKey,
  pkcs8FromPrivateKey,
  importSpki,
  inspectSpki,
  KeyError,
  type KeyPair,
  type KeyErrorCode,
} from './x509/keys.js';
export { MemoryKeyStore, signerFromPrivateKey, type KeyStore, type Signer, type StateFiles } from './x509/signer.js';
export type { StateDatabase, StateDatabaseFailure, StateDatabaseOptions } from './state-database.js';
export { verifyCsr, buildCsr, CsrError, MAX_CSR_BYTES, type CsrErrorCode, type CsrKey, type VerifiedCsr } from './x509/csr.js';
export {
  mintRootCa,
  mintSigningCa,
  mintX509Svid,
  mintX509SvidFromCsr,
  mintCodeSigningCert,
  MintError,
  BACKDATE_MS,
  type CertIssuer,
  type IssuedCert,
  type MintErrorCode,
} from './x509/mint.js';
export {
  validateX509Svid,
  checkSvidLeaf,
  X509SvidError,
  X509_SVID_ERROR_CODES,
  type X509BundleSource,
  type X509SvidErrorCode,
  type ValidatedX509Svid,
  type X509SvidValidationOptions,
} from './x509/svid.js';
export { shouldRotate, rotationTime, rotationJitter, ROTATION_FRACTION, ROTATION_JITTER, type Validity } from './rotation.js';
export {
  CaManager,
  CaManagerError,
  type CaManagerConfig,
  type CaManagerErrorCode,
  type CaSlot,
  type CaSnapshot,
  type CaEvent,
  type SlotState,
  type JwtSigningKey,
} from './ca-manager.js';
export { parseStrictJson, JsonError, type JsonErrorCode, type StrictJsonOptions } from './strict-json.js';
export {
  mintJwtSvid,
  mintJwtSvidSync,
  validateJwtSvid,
  validateJwtSvidSync,
  JwtSvidError,
  JWT_SVID_ERROR_CODES,
  JWT_SVID_ALGORITHMS,
  MAX_JWT_SVID_BYTES,
  DEFAULT_JWT_LEEWAY_MS,
  MAX_JWT_LEEWAY_MS,
  MAX_JWT_AUDIENCES,
  MAX_JWT_AUDIENCE_LENGTH,
  MAX_JWT_KID_LENGTH,
  MIN_JWT_TTL_MS,
  MAX_JWT_TTL_MS,
  MIN_RSA_BITS,
  type JwtBundleSource,
  type JwtSvidErrorCode,
  type JwtSvidAlgorithm,
  type MintJwtSvidRequest,
  type ValidateJwtSvidOptions,
  type ValidatedJwtSvid,
} from './jwt-svid.js';
export {
  TrustBundle,
  BundleSet,
  BundleError,
  BUNDLE_ERROR_CODES,
  parseBundleJson,
  parseJwtBundleJwks,
  bundleToJson,
  jwtBundleToJwks,
  x509AuthoritiesPem,
  bundleDigest,
  parseBundleMapJson,
  bundleMapToJson,
  MAX_BUNDLE_BYTES,
  MAX_BUNDLE_KEYS,
  MAX_BUNDLE_MAP_BYTES,
  MAX_BUNDLE_MAP_TRUST_DOMAINS,
  MAX_BUNDLE_SEQUENCE,
  X509_SVID_USE,
  JWT_SVID_USE,
  type TrustBundleInit,
  type PublicJwk,
  type BundleErrorCode,
} from './bundle.js';
export {
  parseDuration,
  formatDuration,
  DurationError,
  DURATION_ERROR_CODES,
  MAX_DURATION_LENGTH,
  type DurationErrorCode,
  type DurationBounds,
} from './duration.js';
export { certIssuedBy, certSignedBy } from './x509/path.js';
export type { IdentitySource, SvidWithKey } from './identity-source.js';
export { collectProblems, isLogLevel, LOG_LEVELS, STRICT_YAML_OPTIONS, type LogLevel, type ProblemCollector } from './config-parsing.js';
export { fullJitterBackoff } from './backoff.js';
