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
export { MemoryKeyStore, signerFromPrivateKey, type KeyStore, type Signer } from './x509/signer.js';
export { verifyCsr, CsrError, MAX_CSR_BYTES, type CsrErrorCode, type VerifiedCsr } from './x509/csr.js';
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
