/**
 * EK certificate path validation against configured TPM manufacturer CAs (TCG EK Credential Profile
 * for TPM 2.0; RFC 5280 §6.1 reduced to what EK chains need).
 *
 * EK certificates are not X509-SVIDs: they usually have an empty or placeholder subject, a critical
 * subjectAltName holding a directoryName (TPM manufacturer/model/version, EK profile §3.2.9), a subject
 * directory attributes extension and no SPIFFE ID, so `validateX509Svid` cannot be used. The checks here:
 *   - the leaf is not a CA, has an RSA key of at least 2048 bits and, when keyUsage is present,
 *     keyEncipherment (EK profile §3.2.13: an RSA EK is a decryption key); when extKeyUsage is present
 *     it includes tcg-kp-EKCertificate (§3.2.16) or anyExtendedKeyUsage;
 *   - every issuer is named by the child (issuer = subject; AKI = SKI when both exist), its signature
 *     over the child verifies, it is a CA with keyCertSign (when keyUsage is present) and its path length
 *     constraint holds (RFC 5280 §6.1.4 (k), (l), (n));
 *   - at most MAX_EK_INTERMEDIATES intermediates; the path ends at a configured manufacturer CA, which
 *     need not be self-signed;
 *   - unknown critical extensions are refused (RFC 5280 §4.2); validity is checked at `now` unless the
 *     caller turns that off (some shipped EK certificates carry odd validity periods).
 */
import { certIssuedBy, certSignedBy, OID, parseCertificate, X509Error, type ParsedCertificate } from '../../../identity/index.js';
import { TpmAttestationError } from './errors.js';

/** At most this many intermediate certificates between the EK certificate and a manufacturer CA. */
export const MAX_EK_INTERMEDIATES = 4;

/** tcg-kp-EKCertificate (TCG EK Credential Profile §3.2.16). */
export const OID_TCG_KP_EK_CERTIFICATE = '2.23.133.8.1';

const ANY_EKU = '2.5.29.37.0';

/** Extensions this validator understands (so they may be critical). */
const KNOWN_EXTENSIONS: ReadonlySet<string> = new Set([
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage,
  OID.subjectAltName,
  OID.subjectKeyIdentifier,
  OID.authorityKeyIdentifier,
  '2.5.29.9', // subjectDirectoryAttributes (EK profile §3.2.10: TPM specification)
  '2.5.29.32', // certificatePolicies (no policy processing: any policy is acceptable)
  '2.5.29.31', // cRLDistributionPoints
  '1.3.6.1.5.5.7.1.1', // authorityInfoAccess
]);

function untrusted(message: string, cause?: unknown): never {
  throw new TpmAttestationError('tpm/ek-untrusted', message, cause === undefined ? undefined : { cause });
}

/** Parse a configured manufacturer CA certificate (a configuration error when it is not usable). */
export function parseManufacturerCa(der: Buffer): ParsedCertificate {
  let c: ParsedCertificate;
  try {
    c = parseCertificate(der);
  } catch (e) {
    throw new TpmAttestationError('tpm/config', `manufacturer CA certificate is not valid: ${(e as Error).message}`, { cause: e });
  }
  if (!c.basicConstraintsPresent || !c.isCA) throw new TpmAttestationError('tpm/config', 'manufacturer CA certificate is not a CA');
  return c;
}

function parseChainCert(der: Buffer, role: string): ParsedCertificate {
  try {
    return parseCertificate(der);
  } catch (e) {
    if (e instanceof X509Error) throw new TpmAttestationError('tpm/malformed', `${role} certificate: ${e.message}`, { cause: e });
    throw e;
  }
}

function checkCritical(c: ParsedCertificate, role: string): void {
  for (const [oid, ext] of c.extensions) {
    if (ext.critical && !KNOWN_EXTENSIONS.has(oid)) untrusted(`${role} has an unknown critical extension ${oid} (RFC 5280 4.2)`);
  }
}

function checkTime(c: ParsedCertificate, now: number, role: string): void {
  if (now < c.notBefore) untrusted(`${role} is not valid yet`);
  if (now > c.notAfter) untrusted(`${role} has expired`);
}

export interface EkPathOptions {
  /** Check notBefore/notAfter of every certificate at `now` (default true). */
  checkValidity?: boolean;
}

export interface VerifiedEkCertificate {
  leaf: ParsedCertificate;
  /** Leaf first, ending with the manufacturer CA. */
  path: ParsedCertificate[];
}

/**
 * Verify that `ekCertDer` chains (through at most MAX_EK_INTERMEDIATES of `intermediatesDer`) to one of
 * `anchors`. Throws `tpm/malformed` for an unparsable certificate and `tpm/ek-untrusted` otherwise.
 */
export function verifyEkCertificate(
  ekCertDer: Buffer,
  intermediatesDer: readonly Buffer[],
  anchors: readonly ParsedCertificate[],
  now: number,
  opts: EkPathOptions = {},
): VerifiedEkCertificate {
  if (intermediatesDer.length > MAX_EK_INTERMEDIATES) untrusted(`more than ${MAX_EK_INTERMEDIATES} intermediate certificates`);
  const leaf = parseChainCert(ekCertDer, 'EK');
  const intermediates = intermediatesDer.map((d) => parseChainCert(d, 'intermediate'));
  const checkValidity = opts.checkValidity ?? true;

  if (leaf.isCA) untrusted('the EK certificate is a CA certificate');
  if (leaf.keyAlgorithm !== 'rsa') throw new TpmAttestationError('tpm/unsupported', 'only RSA endorsement keys are supported');
  if (leaf.keyUsage.present && !leaf.keyUsage.keyEncipherment) untrusted('the EK certificate lacks keyEncipherment (EK profile 3.2.13)');
  // RFC 5280 4.2.1.12: an extKeyUsage restricts the key to its purposes; an EK certificate's is
  // tcg-kp-EKCertificate (EK profile 3.2.16). Absent extKeyUsage (older EK certificates) is accepted.
  if (leaf.extKeyUsage !== undefined && !leaf.extKeyUsage.includes(OID_TCG_KP_EK_CERTIFICATE) && !leaf.extKeyUsage.includes(ANY_EKU)) {
    untrusted('the certificate extKeyUsage does not allow use as an EK certificate (tcg-kp-EKCertificate)');
  }
  try {
    leaf.publicKey(); // RSA >= 2048 bits, a usable key
  } catch (e) {
    untrusted('the EK certificate key is not usable', e);
  }
  checkCritical(leaf, 'EK certificate');
  if (checkValidity) checkTime(leaf, now, 'EK certificate');

  const path: ParsedCertificate[] = [leaf];
  const used = new Set<number>();
  let current = leaf;
  let intermediatesBelow = 0;
  let firstProblem: string | undefined;
  const acceptIssuer = (cand: ParsedCertificate, role: string): boolean => {
    if (!certIssuedBy(current, cand) || !certSignedBy(current, cand)) return false;
    const problem =
      !cand.basicConstraintsPresent || !cand.isCA
        ? `${role} is not a CA (RFC 5280 6.1.4 (k))`
        : cand.keyUsage.present && !cand.keyUsage.keyCertSign
          ? `${role} lacks keyCertSign (RFC 5280 6.1.4 (n))`
          : cand.pathLen !== undefined && intermediatesBelow > cand.pathLen
            ? `path length constraint of the ${role} exceeded (RFC 5280 4.2.1.9)`
            : checkValidity && (now < cand.notBefore || now > cand.notAfter)
              ? `${role} is outside its validity period`
              : undefined;
    if (problem !== undefined) {
      firstProblem ??= problem;
      return false;
    }
    return true;
  };
  for (;;) {
    const anchor = anchors.find((a) => acceptIssuer(a, 'manufacturer CA'));
    if (anchor !== undefined) {
      path.push(anchor);
      return { leaf, path };
    }
    let next: ParsedCertificate | undefined;
    for (let i = 0; i < intermediates.length && next === undefined; i++) {
      const cand = intermediates[i]!;
      if (used.has(i)) continue;
      if (acceptIssuer(cand, 'intermediate CA')) {
        checkCritical(cand, 'intermediate CA');
        next = cand;
        used.add(i);
      }
    }
    if (next === undefined) untrusted(firstProblem ?? 'the EK certificate does not chain to a configured manufacturer CA');
    path.push(next);
    current = next;
    intermediatesBelow++;
  }
}
