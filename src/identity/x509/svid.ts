/**
 * X509-SVID validation (X509-SVID 5, "Validation"): RFC 5280 path validation against the bundle of the
 * leaf's own trust domain (never a merged bundle), then the SPIFFE leaf rules.
 *
 * Trust anchors are every CA certificate in that trust domain's bundle (RFC 5280 6.1.1 (d): a trust
 * anchor is a trusted public key and name, whether or not its certificate is self-signed), so a leaf
 * whose issuer is itself in the bundle needs one signature check, and a leaf that carries its
 * intermediate chains through it to a bundle root.
 */
import { EdgewardError } from '../errors.js';
import { SpiffeId, SpiffeIdError, type TrustDomain } from '../spiffe-id.js';
import { MAX_CHAIN_CERTS, parseCertificateShared, X509Error, type ParsedCertificate } from './certificate.js';
import { OID } from './oids.js';
import { certIssuedBy, certSignedBy } from './path.js';

export const X509_SVID_ERROR_CODES = [
  'x509-svid/malformed',
  'x509-svid/not-an-svid',
  'x509-svid/expired',
  'x509-svid/not-yet-valid',
  'x509-svid/untrusted',
  'x509-svid/wrong-trust-domain',
  'x509-svid/unknown-trust-domain',
  'x509-svid/bad-signature',
  'x509-svid/path-too-long',
  'x509-svid/unhandled-critical-extension',
] as const;
export type X509SvidErrorCode = (typeof X509_SVID_ERROR_CODES)[number];
export class X509SvidError extends EdgewardError<X509SvidErrorCode> {}

/** Where a validator finds the X.509 authorities (DER CA certificates) of one trust domain. */
export interface X509BundleSource {
  x509AuthoritiesFor(td: TrustDomain): readonly Buffer[] | undefined;
}

export interface X509SvidValidationOptions {
  /** When set, the SVID must belong to this trust domain. */
  trustDomain?: TrustDomain;
}

export interface ValidatedX509Svid {
  spiffeId: SpiffeId;
  leaf: ParsedCertificate;
  /** The verified path from the leaf up to and including the trust anchor. */
  path: ParsedCertificate[];
}

// Extensions this validator understands; an unknown critical extension fails validation (RFC 5280 6.1.3 / 6.1.4 (o)).
const HANDLED_EXTENSIONS = new Set<string>([
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage,
  OID.subjectAltName,
  OID.subjectKeyIdentifier,
  OID.authorityKeyIdentifier,
]);

// ---- caches of parsed certificates: parsing and key import are pure functions of the bytes, so they
// are cached (anchors by Buffer identity, then everything by content: a bundle parsed again from its JSON
// holds new buffers with the same authorities). Signatures and validity are checked on every validation;
// nothing about trust is cached.
const anchorCache = new WeakMap<Buffer, ParsedCertificate>();

function parseAnchor(der: Buffer): ParsedCertificate {
  let p = anchorCache.get(der);
  if (p === undefined) {
    p = parseCertificateShared(der);
    anchorCache.set(der, p);
  }
  return p;
}

function parseChainCert(der: Buffer): ParsedCertificate {
  return parseCertificateShared(der);
}

function err(code: X509SvidErrorCode, message: string, detail?: Record<string, string | number | boolean>): X509SvidError {
  return new X509SvidError(code, message, detail === undefined ? undefined : { detail });
}

/** The SPIFFE leaf rules (X509-SVID 4.1-4.4 and 5). Returns the leaf's SPIFFE ID. */
export function checkSvidLeaf(leaf: ParsedCertificate): SpiffeId {
  // X509-SVID 2: exactly one URI SAN; validators MUST reject more than one.
  if (leaf.uris.length !== 1) {
    throw err('x509-svid/not-an-svid', `an X509-SVID has exactly one URI SAN, this one has ${leaf.uris.length} (X509-SVID 2)`);
  }
  let id: SpiffeId;
  try {
    id = SpiffeId.parse(leaf.uris[0]);
  } catch (e) {
    if (e instanceof SpiffeIdError) throw new X509SvidError('x509-svid/not-an-svid', `URI SAN is not a SPIFFE ID: ${e.message}`, { cause: e });
    throw e;
  }
  if (id.isTrustDomainId) throw err('x509-svid/not-an-svid', 'a leaf SVID ID must have a path (X509-SVID 2)');
  // X509-SVID 4.1: a leaf has cA=false.
  if (leaf.isCA) throw err('x509-svid/not-an-svid', 'a leaf SVID must not be a CA (X509-SVID 4.1)');
  // X509-SVID 4.3: keyUsage present and critical, digitalSignature set, keyCertSign and cRLSign clear.
  if (!leaf.keyUsage.present) throw err('x509-svid/not-an-svid', 'a leaf SVID must have keyUsage (X509-SVID 4.3)');
  if (!leaf.keyUsage.critical) throw err('x509-svid/not-an-svid', 'keyUsage must be critical (X509-SVID 4.3)');
  if (!leaf.keyUsage.digitalSignature) throw err('x509-svid/not-an-svid', 'leaf keyUsage must include digitalSignature (X509-SVID 4.3)');
  if (leaf.keyUsage.keyCertSign || leaf.keyUsage.cRLSign) {
    throw err('x509-svid/not-an-svid', 'a leaf SVID must not have keyCertSign or cRLSign (X509-SVID 4.3, 5.2)');
  }
  // X509-SVID 4.4: when EKU is present it contains both serverAuth and clientAuth.
  if (leaf.extKeyUsage !== undefined && !(leaf.extKeyUsage.includes(OID.serverAuth) && leaf.extKeyUsage.includes(OID.clientAuth))) {
    throw err('x509-svid/not-an-svid', 'extKeyUsage must include serverAuth and clientAuth (X509-SVID 4.4)');
  }
  // RFC 5280 4.2.1.6: with an empty subject the SAN extension MUST be critical.
  if (leaf.subjectEmpty && !leaf.sanCritical) throw err('x509-svid/not-an-svid', 'empty subject requires a critical SAN (RFC 5280 4.2.1.6)');
  return id;
}

function checkCriticalExtensions(c: ParsedCertificate, role: string): void {
  for (const [oid, ext] of c.extensions) {
    if (ext.critical && !HANDLED_EXTENSIONS.has(oid)) {
      throw err('x509-svid/unhandled-critical-extension', `${role} has an unhandled critical extension ${oid} (RFC 5280 4.2)`);
    }
  }
}

function checkTime(c: ParsedCertificate, now: number, role: string): void {
  if (now < c.notBefore) throw err('x509-svid/not-yet-valid', `${role} is not valid yet`, { role, not_before: c.notBefore });
  if (now > c.notAfter) throw err('x509-svid/expired', `${role} has expired`, { role, not_after: c.notAfter });
}

/** RFC 5280 6.1.4 (k), (n): a certificate used to sign another must be a CA with keyCertSign. */
function checkIssuerCapable(c: ParsedCertificate, role: string): void {
  if (!c.basicConstraintsPresent || !c.isCA) throw err('x509-svid/untrusted', `${role} is not a CA (RFC 5280 6.1.4 (k))`);
  if (c.keyUsage.present && !c.keyUsage.keyCertSign) throw err('x509-svid/untrusted', `${role} lacks keyCertSign (RFC 5280 6.1.4 (n))`);
}

/**
 * Validate an X509-SVID chain (leaf first, optional intermediates) at time `now` (epoch ms).
 * Returns the SPIFFE ID or throws X509SvidError.
 */
export function validateX509Svid(
  chain: readonly Buffer[],
  bundles: X509BundleSource,
  now: number,
  options: X509SvidValidationOptions = {},
): ValidatedX509Svid {
  if (chain.length === 0) throw err('x509-svid/malformed', 'empty certificate chain');
  if (chain.length > MAX_CHAIN_CERTS) throw err('x509-svid/path-too-long', `more than ${MAX_CHAIN_CERTS} certificates in the chain`);
  let certs: ParsedCertificate[];
  try {
    certs = chain.map(parseChainCert);
  } catch (e) {
    if (e instanceof X509Error) throw new X509SvidError('x509-svid/malformed', e.message, { cause: e });
    throw e;
  }
  const leaf = certs[0]!;
  const spiffeId = checkSvidLeaf(leaf);
  checkCriticalExtensions(leaf, 'leaf');
  const td = spiffeId.trustDomain;
  if (options.trustDomain !== undefined && !options.trustDomain.equals(td)) {
    throw err('x509-svid/wrong-trust-domain', `SVID belongs to trust domain ${td.name}, expected ${options.trustDomain.name}`);
  }
  // X509-SVID 5.1: use the bundle of the leaf's own trust domain, never another's.
  const anchorsDer = bundles.x509AuthoritiesFor(td);
  if (anchorsDer === undefined || anchorsDer.length === 0) {
    throw err('x509-svid/unknown-trust-domain', `no X.509 authorities for trust domain ${td.name}`);
  }
  let anchors: ParsedCertificate[];
  try {
    anchors = anchorsDer.map(parseAnchor);
  } catch (e) {
    if (e instanceof X509Error) throw new X509SvidError('x509-svid/malformed', `bundle certificate: ${e.message}`, { cause: e });
    throw e;
  }

  const path: ParsedCertificate[] = [leaf];
  const used = new Set<number>([0]);
  let current = leaf;
  // Number of intermediate CA certificates between `current` and the leaf (for pathLenConstraint).
  let intermediatesBelow = 0;
  // Every candidate issuer whose signature verifies is tried in turn (as Go's verifier does): an expired
  // predecessor of a renewed root must not hide the renewed one. The first failure is reported if none passes.
  let firstFailure: X509SvidError | undefined;
  let sawCandidate = false;
  const accept = (cand: ParsedCertificate, role: 'trust anchor' | 'intermediate CA'): boolean => {
    if (!certIssuedBy(current, cand)) return false;
    sawCandidate = true;
    if (!certSignedBy(current, cand)) return false;
    try {
      checkIssuerCapable(cand, role);
      if (role === 'intermediate CA') {
        // X509-SVID 4.3: signing certificates MUST set keyCertSign, so an intermediate needs keyUsage.
        if (!cand.keyUsage.present) throw err('x509-svid/untrusted', 'intermediate CA has no keyUsage (X509-SVID 4.3)');
        checkCriticalExtensions(cand, role);
      }
      if (cand.pathLen !== undefined && intermediatesBelow > cand.pathLen) {
        throw err('x509-svid/path-too-long', `path length constraint of the ${role} exceeded (RFC 5280 4.2.1.9)`);
      }
      checkTime(cand, now, role);
      return true;
    } catch (e) {
      if (!(e instanceof X509SvidError)) throw e;
      firstFailure ??= e;
      return false;
    }
  };
  for (;;) {
    sawCandidate = false; // per level of the path
    const anchor = anchors.find((a) => accept(a, 'trust anchor'));
    if (anchor !== undefined) {
      path.push(anchor);
      break;
    }
    let next: ParsedCertificate | undefined;
    for (let i = 1; i < certs.length && next === undefined; i++) {
      if (!used.has(i) && accept(certs[i]!, 'intermediate CA')) {
        next = certs[i]!;
        used.add(i);
      }
    }
    if (next === undefined) {
      if (firstFailure !== undefined) throw firstFailure;
      if (sawCandidate) throw err('x509-svid/bad-signature', 'certificate signature does not verify against its issuer');
      throw err('x509-svid/untrusted', `certificate does not chain to the bundle of trust domain ${td.name}`);
    }
    path.push(next);
    current = next;
    intermediatesBelow++;
  }
  checkTime(leaf, now, 'SVID');
  return { spiffeId, leaf, path };
}
