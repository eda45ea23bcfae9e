/**
 * Issuance profiles. Each profile fixes every field of the certificate; callers choose only the
 * identity, the key and the lifetime.
 *
 * - Leaf X509-SVID (X509-SVID 4.1-4.4): exactly one URI SAN (the SPIFFE ID, non-root path), optional
 *   DNS SANs, basicConstraints cA=false, keyUsage critical digitalSignature (+keyEncipherment,
 *   keyAgreement as SPIRE), EKU serverAuth+clientAuth, random serial, SKI/AKI, NotBefore 10 s back,
 *   NotAfter never past the issuer's NotAfter.
 * - Signing certificates (X509-SVID 4.1, 4.3): cA=true, keyCertSign (+cRLSign), URI SAN = the trust
 *   domain ID without a path.
 * - Code-signing certificates (release signing): EKU codeSigning only, keyUsage digitalSignature. They
 *   are deliberately NOT X509-SVIDs (no serverAuth/clientAuth) and cannot be used for mTLS.
 */
import { EdgewardError } from '../errors.js';
import type { SpiffeId, TrustDomain } from '../spiffe-id.js';
import {
  authorityKeyIdExt,
  basicConstraintsExt,
  buildCertificate,
  constantExtension,
  EMPTY_NAME,
  encodeName,
  extKeyUsageExt,
  keyIdentifier,
  keyUsageExt,
  randomSerial,
  subjectAltNameExt,
  subjectKeyIdExt,
  type ExtensionSpec,
} from './builder.js';
import { parseCertificate, type ParsedCertificate } from './certificate.js';
import { verifyCsr } from './csr.js';
import { importSpki, isGeneratedSpki } from './keys.js';
import { OID } from './oids.js';
import type { Signer } from './signer.js';

export type MintErrorCode = 'mint/bad-request' | 'mint/issuer-expired' | 'mint/bad-dns-name';
export class MintError extends EdgewardError<MintErrorCode> {}

/** NotBefore is set this far back to absorb clock skew between issuer and relying parties (SPIRE: 10 s). */
export const BACKDATE_MS = 10_000;
export const MAX_DNS_NAMES = 32;

/** A certificate together with the key that signs with it. */
export interface CertIssuer {
  cert: ParsedCertificate;
  signer: Signer;
}

export interface IssuedCert {
  der: Buffer;
  serialHex: string;
  notBefore: number;
  notAfter: number;
  /** Parsed on first access (most callers need only the DER and the times). */
  readonly parsed: ParsedCertificate;
}

function lifetime(now: number, ttlMs: number, issuer: CertIssuer | undefined): { notBefore: number; notAfter: number } {
  if (!Number.isFinite(ttlMs) || ttlMs < 1000) throw new MintError('mint/bad-request', 'TTL must be at least one second');
  let notBefore = now - BACKDATE_MS;
  let notAfter = now + ttlMs;
  if (issuer !== undefined) {
    if (issuer.cert.notAfter <= now) throw new MintError('mint/issuer-expired', 'the issuing CA has expired');
    notBefore = Math.max(notBefore, issuer.cert.notBefore);
    notAfter = Math.min(notAfter, issuer.cert.notAfter); // never outlive the issuer (X509-SVID 4.x, SPIRE)
  }
  return { notBefore, notAfter };
}

// RFC 1035/5280 preferred name syntax, lowercase, optional leading "*." wildcard label.
const DNS_NAME = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
function checkDnsNames(names: readonly string[]): string[] {
  if (names.length > MAX_DNS_NAMES) throw new MintError('mint/bad-dns-name', `at most ${MAX_DNS_NAMES} DNS names`);
  for (const n of names) {
    if (n.length > 253 || !DNS_NAME.test(n)) throw new MintError('mint/bad-dns-name', `invalid DNS name "${n.slice(0, 80)}"`);
  }
  return [...names];
}

function issue(
  subjectSpki: Buffer,
  subject: Buffer,
  extensions: ExtensionSpec[],
  times: { notBefore: number; notAfter: number },
  issuer: CertIssuer | { selfSigned: Signer },
  keyChecked = false,
): IssuedCert {
  // Refuse a key no relying party could use (unsupported type, RSA < 2048, point off the curve) before
  // signing anything. A CSR's key was already imported when its signature was checked, and a key from
  // generateP256 in this process is known good.
  if (!keyChecked && !isGeneratedSpki(subjectSpki)) importSpki(subjectSpki);
  const signer = 'selfSigned' in issuer ? issuer.selfSigned : issuer.signer;
  const issuerName = 'selfSigned' in issuer ? subject : issuer.cert.subjectRaw;
  const aki = 'selfSigned' in issuer ? keyIdentifier(subjectSpki) : (issuer.cert.subjectKeyId ?? keyIdentifier(issuer.cert.spki));
  const serial = randomSerial();
  const der = buildCertificate(
    {
      serial,
      issuer: issuerName,
      subject,
      notBefore: times.notBefore,
      notAfter: times.notAfter,
      spki: subjectSpki,
      extensions: [...extensions, subjectKeyIdExt(subjectSpki), authorityKeyIdExt(aki)],
    },
    signer,
  );
  let parsed: ParsedCertificate | undefined;
  // Certificates carry whole seconds (RFC 5280 4.1.2.5); report the times as encoded.
  return {
    der,
    serialHex: serial.toString('hex'),
    notBefore: Math.floor(times.notBefore / 1000) * 1000,
    notAfter: Math.floor(times.notAfter / 1000) * 1000,
    get parsed(): ParsedCertificate {
      parsed ??= parseCertificate(der);
      return parsed;
    },
  };
}

function caSubject(td: TrustDomain, role: string): Buffer {
  // A random serialNumber attribute keeps successive CAs' subjects distinct (as SPIRE does), so that
  // path builders never confuse a rotated CA with its predecessor.
  return encodeName([
    [OID.organizationName, 'Edgeward'],
    [OID.commonName, `${role} ${td.name}`.slice(0, 64)],
    [OID.serialNumber, randomSerial().toString('hex')],
  ]);
}

export interface RootCaRequest {
  trustDomain: TrustDomain;
  signer: Signer;
  now: number;
  ttlMs: number;
}

/** A self-signed root CA for a trust domain (X509-SVID 4.1: cA=true, keyCertSign, URI SAN spiffe://td). */
export function mintRootCa(r: RootCaRequest): IssuedCert {
  return issue(
    r.signer.spki,
    caSubject(r.trustDomain, 'Edgeward Root CA'),
    [basicConstraintsExt(true), keyUsageExt(['keyCertSign', 'cRLSign']), subjectAltNameExt([r.trustDomain.idString], [], false)],
    lifetime(r.now, r.ttlMs, undefined),
    { selfSigned: r.signer },
  );
}

export interface SigningCaRequest {
  trustDomain: TrustDomain;
  spki: Buffer;
  issuer: CertIssuer;
  now: number;
  ttlMs: number;
}

/** An intermediate signing CA below the root; pathLen 0 so that it can sign only leaves. */
export function mintSigningCa(r: SigningCaRequest): IssuedCert {
  return issue(
    r.spki,
    caSubject(r.trustDomain, 'Edgeward Signing CA'),
    [basicConstraintsExt(true, 0), keyUsageExt(['keyCertSign', 'cRLSign']), subjectAltNameExt([r.trustDomain.idString], [], false)],
    lifetime(r.now, r.ttlMs, r.issuer),
    r.issuer,
  );
}

export interface X509SvidRequest {
  spiffeId: SpiffeId;
  /** SubjectPublicKeyInfo DER of the workload's key. */
  spki: Buffer;
  issuer: CertIssuer;
  now: number;
  ttlMs: number;
  dnsNames?: readonly string[];
}

const LEAF_SUBJECT = encodeName([[OID.organizationName, 'Edgeward']]);
function leafSubject(dnsNames: string[]): Buffer {
  // Subject is optional (X509-SVID 2); we set O (and CN = first DNS name, as SPIRE) so tools show something.
  return dnsNames.length > 0 ? encodeName([[OID.organizationName, 'Edgeward'], [OID.commonName, dnsNames[0]!]]) : LEAF_SUBJECT;
}

// The fixed part of the leaf X509-SVID profile (X509-SVID 4.1, 4.3, 4.4), encoded once.
const LEAF_BASIC_CONSTRAINTS = constantExtension(basicConstraintsExt(false));
const LEAF_KEY_USAGE = constantExtension(keyUsageExt(['digitalSignature', 'keyEncipherment', 'keyAgreement']));
const LEAF_EKU = constantExtension(extKeyUsageExt([OID.serverAuth, OID.clientAuth]));

/** A leaf X509-SVID for a public key the issuer already trusts to belong to the workload. */
export function mintX509Svid(r: X509SvidRequest): IssuedCert {
  return mintLeaf(r, false);
}

function mintLeaf(r: X509SvidRequest, keyChecked: boolean): IssuedCert {
  if (r.spiffeId.isTrustDomainId) throw new MintError('mint/bad-request', 'a leaf SVID needs a SPIFFE ID with a path (X509-SVID 2)');
  // A CA's URI SAN is its trust domain ID (X509-SVID 4.1); a CA without one (an upstream root) does not constrain.
  const caTd = r.issuer.cert.uris[0];
  if (caTd !== undefined && caTd !== r.spiffeId.trustDomain.idString) {
    throw new MintError('mint/bad-request', 'the SPIFFE ID is not in the issuing CA trust domain');
  }
  const dns = checkDnsNames(r.dnsNames ?? []);
  return issue(
    r.spki,
    leafSubject(dns),
    [
      LEAF_BASIC_CONSTRAINTS,
      LEAF_KEY_USAGE,
      LEAF_EKU,
      subjectAltNameExt([r.spiffeId.toString()], dns, false), // subject is not empty, so SAN need not be critical
    ],
    lifetime(r.now, r.ttlMs, r.issuer),
    r.issuer,
    keyChecked,
  );
}

export interface CsrSvidRequest extends Omit<X509SvidRequest, 'spki'> {
  /** DER PKCS#10. Only its (verified) public key is used. */
  csr: Buffer;
}

/** Issue an X509-SVID from a CSR: the CSR contributes its public key and nothing else. */
export function mintX509SvidFromCsr(r: CsrSvidRequest): IssuedCert {
  const { spki } = verifyCsr(r.csr);
  return mintLeaf({ ...r, spki }, true);
}

export interface CodeSigningRequest {
  spiffeId: SpiffeId;
  spki: Buffer;
  issuer: CertIssuer;
  now: number;
  ttlMs: number;
}

/** A short-lived code-signing certificate (EKU codeSigning only; RFC 5280 4.2.1.12). */
export function mintCodeSigningCert(r: CodeSigningRequest): IssuedCert {
  if (r.spiffeId.isTrustDomainId) throw new MintError('mint/bad-request', 'a signer identity needs a path');
  return issue(
    r.spki,
    EMPTY_NAME,
    [
      basicConstraintsExt(false),
      keyUsageExt(['digitalSignature']),
      { ...extKeyUsageExt([OID.codeSigning]), critical: true },
      // Subject is empty, so the SAN extension MUST be critical (RFC 5280 4.2.1.6).
      subjectAltNameExt([r.spiffeId.toString()], [], true),
    ],
    lifetime(r.now, r.ttlMs, r.issuer),
    r.issuer,
  );
}
