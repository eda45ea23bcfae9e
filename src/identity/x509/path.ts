/**
 * The two RFC 5280 path-building primitives every chain check in Edgeward uses (X509-SVIDs, x509pop
 * node certificates, TPM EK certificates). Callers keep their own policy (roles, error codes, which
 * extensions they understand); these only answer "could `parent` have issued `child`?".
 */
import { verify as cryptoVerify } from 'node:crypto';
import type { ParsedCertificate } from './certificate.js';
import { OID, SIG_ALG_HASH } from './oids.js';

const EC_SIGNATURES: ReadonlySet<string> = new Set([OID.ecdsaWithSha256, OID.ecdsaWithSha384]);

/** RFC 5280 6.1.3 (a)(4), 4.2.1.1: names chain, and key identifiers agree when both are present. */
export function certIssuedBy(child: ParsedCertificate, parent: ParsedCertificate): boolean {
  if (!child.issuerRaw.equals(parent.subjectRaw)) return false;
  if (child.authorityKeyId !== undefined && parent.subjectKeyId !== undefined) return child.authorityKeyId.equals(parent.subjectKeyId);
  return true;
}

/**
 * RFC 5280 6.1.3 (a)(1): `child`'s signature verifies with `parent`'s key, under a supported algorithm
 * that matches the key type (an ECDSA signature never "verifies" under an RSA key, nor the reverse).
 */
export function certSignedBy(child: ParsedCertificate, parent: ParsedCertificate): boolean {
  const hash = SIG_ALG_HASH[child.signatureAlgorithm];
  if (hash === undefined) return false;
  if (EC_SIGNATURES.has(child.signatureAlgorithm) !== (parent.keyAlgorithm !== 'rsa')) return false;
  try {
    return cryptoVerify(hash, child.tbs, parent.publicKey(), child.signature);
  } catch {
    return false;
  }
}
