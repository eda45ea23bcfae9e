/**
 * The `tpm` node attestor, verifier side (issue #4): TPM 2.0 structure parsing (Part 2), Names and
 * qualified names (Part 1 §16), KDFa (Part 1 §11.4.10.2) against the TPM reference code's self-test
 * vectors, MakeCredential (Part 1 §24), EK path validation, and the challenge state machine.
 * Vectors marked "swtpm" were produced by a real (software) TPM with tpm2-tools, not by this code.
 */
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  attestTpmNode,
  checkAkPublic,
  createTpmAttestor,
  decodeTpmChallenge,
  decodeTpmPayload,
  encodeTpmChallenge,
  decodeTpmChallengeResponse,
  encodeTpmChallengeResponse,
  tpmPayload,
  kdfa,
  makeCredential,
  parseManufacturerCa,
  parseTpmPublic,
  parseTpmsAttest,
  parseTpmtSignature,
  pcrDigest,
  TpmAttestationError,
  TpmVerifier,
  tpmObjectName,
  tpmPublicKey,
  tpmQualifiedName,
  TPM_RH_ENDORSEMENT,
  verifyEkCertificate,
  verifyTpmSignature,
  type TpmAttestationErrorCode,
  type TpmChallenge,
} from '../../../src/attestation/node/tpm/index.js';
import { certsFromPem, ManualClock, parseCertificate } from '../../../src/identity/index.js';
import {
  ECC_AK,
  ECC_AK_QUALIFIED_NAME,
  EK_CERT_HEX,
  EK_PUBLIC_HEX,
  ISSUER_CA_PEM,
  ROOT_CA_PEM,
  RSA_AK,
  RSAPSS_AK,
  ZERO_PCRS_0_7_DIGEST,
} from './tpm-fixtures.js';
import { AK_ATTRS, ALG, eccTpmtPublic, sized, softActivateCredential, softCa, softEkCert, SoftTpm, tpmName } from './soft-tpm.js';

const hex = (s: string): Buffer => Buffer.from(s, 'hex');
const ROOT = certsFromPem(ROOT_CA_PEM)[0]!;
const ISSUER = certsFromPem(ISSUER_CA_PEM)[0]!;
const EK_CERT = hex(EK_CERT_HEX);
/** A time inside the swtpm certificates' validity (they were made with NotAfter 9999-12-31). */
const FIXTURE_NOW = Date.parse('2030-01-01T00:00:00Z');
const NOW = Date.parse('2031-06-01T12:00:00Z');

function codeOf(f: () => unknown): TpmAttestationErrorCode | string {
  try {
    f();
  } catch (e) {
    if (e instanceof TpmAttestationError) return e.code;
    return `not a TpmAttestationError: ${String(e)}`;
  }
  return 'no error';
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

describe('TPM2B_PUBLIC (Part 2 §12.2) and Names (Part 1 §16), swtpm vectors', () => {
  it('parses the ECC AK and computes the Name tpm2_createak printed', () => {
    const ak = parseTpmPublic(hex(ECC_AK.public));
    expect(ak.type).toBe('ecc');
    expect(ak.nameAlg).toBe('sha256');
    expect(ak.objectAttributes).toBe(AK_ATTRS);
    expect(ak.scheme).toEqual({ scheme: ALG.ECDSA, hashAlg: ALG.SHA256 });
    expect(ak.symmetric).toBeNull();
    if (ak.type !== 'ecc') throw new Error('unreachable');
    expect(ak.curve).toBe('P-256');
    expect(ak.x.length).toBe(32);
    expect(tpmObjectName(ak).toString('hex')).toBe(ECC_AK.name);
    expect(tpmPublicKey(ak).asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(() => checkAkPublic(ak)).not.toThrow();
  });

  it('parses the RSA AKs (RSASSA, RSAPSS) and their Names', () => {
    for (const v of [RSA_AK, RSAPSS_AK]) {
      const ak = parseTpmPublic(hex(v.public));
      if (ak.type !== 'rsa') throw new Error('expected RSA');
      expect(ak.keyBits).toBe(2048);
      expect(ak.exponent).toBe(65537);
      expect(tpmObjectName(ak).toString('hex')).toBe(v.name);
      expect(() => checkAkPublic(ak)).not.toThrow();
    }
  });

  it('parses the RSA EK (TCG template L-1: AES-128-CFB, restricted decrypt) holding the certificate key', () => {
    const ek = parseTpmPublic(hex(EK_PUBLIC_HEX));
    if (ek.type !== 'rsa') throw new Error('expected RSA');
    expect(ek.symmetric).toEqual({ algorithm: ALG.AES, keyBits: 128, mode: ALG.CFB });
    expect(ek.scheme).toBeNull();
    expect(ek.objectAttributes).toBe(0x000300b2);
    expect(ek.authPolicy.toString('hex')).toBe('837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa');
    const certJwk = parseCertificate(EK_CERT).publicKey().export({ format: 'jwk' });
    expect(Buffer.from(certJwk.n!, 'base64url').equals(ek.modulus)).toBe(true);
  });

  it('computes the AK qualified name QN = H(QN(EK) || Name(AK)), QN(EK) = H(TPM_RH_ENDORSEMENT || Name(EK))', () => {
    const ek = parseTpmPublic(hex(EK_PUBLIC_HEX));
    const ak = parseTpmPublic(hex(ECC_AK.public));
    const qn = tpmQualifiedName(tpmQualifiedName(u32(TPM_RH_ENDORSEMENT), ek), ak);
    expect(qn.toString('hex')).toBe(ECC_AK_QUALIFIED_NAME);
    expect(parseTpmsAttest(hex(ECC_AK.quote)).qualifiedSigner.toString('hex')).toBe(ECC_AK_QUALIFIED_NAME);
  });

  it('accepts a bare TPMT_PUBLIC with { sized: false }', () => {
    const bytes = hex(ECC_AK.public);
    expect(tpmObjectName(parseTpmPublic(bytes.subarray(2), { sized: false })).toString('hex')).toBe(ECC_AK.name);
  });

  it('refuses malformed public areas', () => {
    const good = hex(ECC_AK.public);
    expect(codeOf(() => parseTpmPublic(good.subarray(0, good.length - 1)))).toBe('tpm/malformed'); // size mismatch
    expect(codeOf(() => parseTpmPublic(Buffer.concat([good, Buffer.alloc(1)])))).toBe('tpm/malformed'); // trailing byte
    const truncated = Buffer.from(good.subarray(0, good.length - 1));
    truncated.writeUInt16BE(truncated.length - 2, 0); // a consistent size over a point cut short
    expect(() => parseTpmPublic(truncated)).toThrow(/truncated at unique\.ecc\.y/);
    expect(codeOf(() => parseTpmPublic(Buffer.alloc(2000)))).toBe('tpm/malformed'); // over the size bound
    expect(codeOf(() => parseTpmPublic(Buffer.alloc(0)))).toBe('tpm/malformed');
    expect(codeOf(() => parseTpmPublic('00' as unknown as Buffer))).toBe('tpm/malformed');
    // A TPM2B larger than its type allows (x of 67 bytes).
    const t = eccTpmtPublic({ x: Buffer.alloc(67, 1), y: Buffer.alloc(32, 1) });
    expect(codeOf(() => parseTpmPublic(sized(t)))).toBe('tpm/malformed');
    // authPolicy of a size that is no digest.
    const withPolicy = Buffer.from(hex(ECC_AK.public).subarray(2));
    const p = Buffer.concat([withPolicy.subarray(0, 8), Buffer.from([0x00, 0x05, 1, 2, 3, 4, 5]), withPolicy.subarray(10)]);
    expect(codeOf(() => parseTpmPublic(sized(p)))).toBe('tpm/malformed');
  });

  it('refuses unsupported algorithms: KEYEDHASH objects, SHA-1 Names, unknown curves and schemes', () => {
    const t = Buffer.from(hex(ECC_AK.public).subarray(2));
    const patch = (off: number, v: number): Buffer => {
      const c = Buffer.from(t);
      c.writeUInt16BE(v, off);
      return sized(c);
    };
    expect(codeOf(() => parseTpmPublic(patch(0, 0x0008)))).toBe('tpm/unsupported'); // type KEYEDHASH
    expect(codeOf(() => parseTpmPublic(patch(2, 0x0004)))).toBe('tpm/unsupported'); // nameAlg SHA-1
    expect(codeOf(() => parseTpmPublic(patch(2, 0x0099)))).toBe('tpm/unsupported'); // unknown nameAlg
    expect(codeOf(() => parseTpmPublic(patch(10, 0x000a)))).toBe('tpm/unsupported'); // symmetric XOR
    expect(codeOf(() => parseTpmPublic(patch(12, 0x0099)))).toBe('tpm/unsupported'); // scheme
    expect(codeOf(() => parseTpmPublic(patch(16, 0x0010)))).toBe('tpm/unsupported'); // curve 0x10
  });

  it('refuses a point that is not on the curve when the key is used', () => {
    const t = eccTpmtPublic({ x: Buffer.alloc(32, 1), y: Buffer.alloc(32, 2) });
    expect(codeOf(() => tpmPublicKey(parseTpmPublic(sized(t))))).toBe('tpm/malformed');
  });
});

describe('AK attributes (Part 2 §8.3)', () => {
  const base = parseTpmPublic(hex(ECC_AK.public));
  const withAttrs = (attrs: number) => {
    const t = Buffer.from(base.tpmtPublic);
    t.writeUInt32BE(attrs >>> 0, 4);
    return parseTpmPublic(sized(t));
  };
  it.each([
    ['decrypt set', AK_ATTRS | (1 << 17)],
    ['restricted clear', AK_ATTRS & ~(1 << 16)],
    ['sign clear', AK_ATTRS & ~(1 << 18)],
    ['fixedTPM clear (duplicable)', AK_ATTRS & ~(1 << 1)],
    ['fixedParent clear', AK_ATTRS & ~(1 << 4)],
    ['sensitiveDataOrigin clear (imported key)', AK_ATTRS & ~(1 << 5)],
    ['a reserved bit', AK_ATTRS | (1 << 0)],
    ['x509sign/reserved bit 19', AK_ATTRS | (1 << 19)],
  ])('refuses an AK with %s', (_label, attrs) => {
    expect(codeOf(() => checkAkPublic(withAttrs(attrs)))).toBe('tpm/ak-attributes');
  });
  it('allows noDA and adminWithPolicy', () => {
    expect(() => checkAkPublic(withAttrs(AK_ATTRS | (1 << 10) | (1 << 7)))).not.toThrow();
  });
});

describe('TPMS_ATTEST (Part 2 §10.12) and TPMT_SIGNATURE (§11.3.4), swtpm vectors', () => {
  it('parses a quote: magic, type, nonce in extraData, clock info, PCR selection and digest', () => {
    const q = parseTpmsAttest(hex(ECC_AK.quote));
    expect(q.magic).toBe(0xff544347);
    expect(q.type).toBe(0x8018);
    expect(q.extraData.toString('hex')).toBe(ECC_AK.nonce);
    expect(q.clockInfo.safe).toBe(true);
    expect(q.quote?.pcrSelection).toEqual([{ hashAlg: ALG.SHA256, pcrs: [0, 1, 2, 3, 4, 5, 6, 7], select: Buffer.from([0xff, 0, 0]) }]);
    expect(q.quote?.pcrDigest.toString('hex')).toBe(ZERO_PCRS_0_7_DIGEST);
    expect(pcrDigest('sha256', Array.from({ length: 8 }, () => Buffer.alloc(32))).toString('hex')).toBe(ZERO_PCRS_0_7_DIGEST);
  });

  it('verifies ECDSA, RSASSA and RSAPSS quote signatures made by the TPM', () => {
    for (const v of [ECC_AK, RSA_AK, RSAPSS_AK]) {
      const ak = parseTpmPublic(hex(v.public));
      const sig = parseTpmtSignature(hex(v.signature));
      expect(verifyTpmSignature(ak, sig, hex(v.quote))).toBe(true);
      const tampered = hex(v.quote);
      tampered[tampered.length - 1]! ^= 1;
      expect(verifyTpmSignature(ak, sig, tampered)).toBe(false);
    }
  });

  it('refuses a signature whose scheme differs from the key scheme or type', () => {
    const rsassaKey = parseTpmPublic(hex(RSA_AK.public));
    // the RSASSA key never signs RSAPSS (Part 3 §18.2: a key with a scheme signs only with it)
    expect(codeOf(() => verifyTpmSignature(rsassaKey, parseTpmtSignature(hex(RSAPSS_AK.signature)), hex(RSAPSS_AK.quote)))).toBe('tpm/unsupported');
    expect(codeOf(() => verifyTpmSignature(parseTpmPublic(hex(ECC_AK.public)), parseTpmtSignature(hex(RSA_AK.signature)), hex(RSA_AK.quote)))).toBe(
      'tpm/unsupported',
    );
  });

  it('refuses malformed attestations and signatures', () => {
    const q = hex(ECC_AK.quote);
    expect(codeOf(() => parseTpmsAttest(q.subarray(0, q.length - 1)))).toBe('tpm/malformed');
    expect(codeOf(() => parseTpmsAttest(Buffer.concat([q, Buffer.alloc(1)])))).toBe('tpm/malformed');
    expect(codeOf(() => parseTpmsAttest(Buffer.alloc(5000)))).toBe('tpm/malformed');
    const safe = Buffer.from(q);
    safe[0x4c + 16]! = 2; // clockInfo.safe is a TPMI_YES_NO
    expect(codeOf(() => parseTpmsAttest(safe))).toBe('tpm/malformed');
    const manySel = Buffer.from(q);
    manySel.writeUInt32BE(1000, 0x4c + 17 + 8); // TPML_PCR_SELECTION.count
    expect(codeOf(() => parseTpmsAttest(manySel))).toBe('tpm/malformed');
    const s = hex(ECC_AK.signature);
    expect(codeOf(() => parseTpmtSignature(s.subarray(0, s.length - 1)))).toBe('tpm/malformed');
    expect(codeOf(() => parseTpmtSignature(Buffer.concat([s, Buffer.alloc(1)])))).toBe('tpm/malformed');
    const hmac = Buffer.from(s);
    hmac.writeUInt16BE(0x0005, 0); // TPM_ALG_HMAC
    expect(codeOf(() => parseTpmtSignature(hmac))).toBe('tpm/unsupported');
    const sha1 = Buffer.from(s);
    sha1.writeUInt16BE(0x0004, 2);
    expect(codeOf(() => verifyTpmSignature(parseTpmPublic(hex(ECC_AK.public)), parseTpmtSignature(sha1), q))).toBe('tpm/unsupported');
  });

  it('returns the header of a non-quote attestation without decoding the rest (the verifier refuses it)', () => {
    const q = Buffer.from(hex(ECC_AK.quote));
    q.writeUInt16BE(0x8017, 4); // TPM_ST_ATTEST_CERTIFY
    const a = parseTpmsAttest(q);
    expect(a.type).toBe(0x8017);
    expect(a.quote).toBeUndefined();
  });
});

describe('KDFa (Part 1 §11.4.10.2)', () => {
  // The TPM reference implementation's KDFa self-test (KdfTestData.h, Ken Goldman / TCG): key, label
  // "KDFSELFTESTLABEL\0", contextU, contextV, 160 bits, one expected output per hash.
  const key = hex('271FA08BBDC5060EC3DFA928FF9B73123A12DA0C');
  const label = Buffer.from('KDFSELFTESTLABEL\0', 'latin1');
  const u = hex('CE244F395DCA7391');
  const v = hex('DA504031DDF12E83');
  it.each([
    ['sha512', '8be2c1b85b78569b9fa759f5857c56d684810fd3'],
    ['sha384', '1dce70c9113eb2dba47bd9cfc72bf46f45b09312'],
    ['sha256', 'bb0259e1c8ba607e6a2cd704b69a902e9ade84c4'],
    ['sha1', '55b5a7184aa07423c47dae766c26a2377d7cf851'],
  ] as const)('matches the reference self-test vector for %s', (h, expected) => {
    expect(kdfa(h, key, label, u, v, 160).toString('hex')).toBe(expected);
    // the terminating zero is added when missing
    expect(kdfa(h, key, 'KDFSELFTESTLABEL', u, v, 160).toString('hex')).toBe(expected);
  });

  it('produces multi-block output and clears excess high bits for a non-octet size', () => {
    const long = kdfa('sha256', key, 'STORAGE', u, Buffer.alloc(0), 512);
    expect(long.length).toBe(64);
    const odd = kdfa('sha256', key, 'STORAGE', u, Buffer.alloc(0), 12);
    expect(odd.length).toBe(2);
    expect(odd[0]! & 0xf0).toBe(0);
  });

  it('refuses sizes out of range', () => {
    expect(codeOf(() => kdfa('sha256', key, 'X', u, v, 0))).toBe('tpm/config');
    expect(codeOf(() => kdfa('sha256', key, 'X', u, v, 1e6))).toBe('tpm/config');
  });
});

describe('MakeCredential (Part 1 §24)', () => {
  const ek = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const akName = hex(ECC_AK.name);
  const ekProt = { publicKey: ek.publicKey, nameAlg: 'sha256' as const, aesKeyBits: 128 as const };

  it('produces a blob that a (software) ActivateCredential opens only for the right Name', () => {
    const secret = randomBytes(32);
    const made = makeCredential(ekProt, akName, secret, randomBytes);
    expect(made.encryptedSecret.length).toBe(256);
    expect(made.credentialBlob.readUInt16BE(0)).toBe(32); // TPM2B(outerHMAC)
    expect(made.credentialBlob.length).toBe(2 + 32 + 2 + 32); // || CFB(TPM2B(secret))
    expect(softActivateCredential(ek.privateKey, akName, made.credentialBlob, made.encryptedSecret).equals(secret)).toBe(true);
    const otherName = Buffer.from(akName);
    otherName[5]! ^= 1;
    expect(() => softActivateCredential(ek.privateKey, otherName, made.credentialBlob, made.encryptedSecret)).toThrow('TPM_RC_INTEGRITY');
    const tampered = Buffer.from(made.credentialBlob);
    tampered[tampered.length - 1]! ^= 1;
    expect(() => softActivateCredential(ek.privateKey, akName, tampered, made.encryptedSecret)).toThrow('TPM_RC_INTEGRITY');
  });

  it('is deterministic in the seed apart from the OAEP encryption', () => {
    const seed = Buffer.alloc(32, 9);
    const a = makeCredential(ekProt, akName, Buffer.alloc(32, 1), () => Buffer.from(seed));
    const b = makeCredential(ekProt, akName, Buffer.alloc(32, 1), () => Buffer.from(seed));
    expect(a.credentialBlob.equals(b.credentialBlob)).toBe(true);
    expect(a.encryptedSecret.equals(b.encryptedSecret)).toBe(false);
  });

  it('refuses an empty or over-long credential and non-RSA EKs', () => {
    expect(codeOf(() => makeCredential(ekProt, akName, Buffer.alloc(0), randomBytes))).toBe('tpm/config');
    expect(codeOf(() => makeCredential(ekProt, akName, Buffer.alloc(33), randomBytes))).toBe('tpm/config');
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    expect(codeOf(() => makeCredential({ ...ekProt, publicKey: ec.publicKey }, akName, Buffer.alloc(32), randomBytes))).toBe('tpm/unsupported');
  });
});

describe('EK certificate path (TCG EK Credential Profile; RFC 5280 6.1)', () => {
  const anchors = [parseManufacturerCa(ROOT)];

  it('accepts the swtpm EK certificate through its intermediate, or with the issuer as the anchor', () => {
    const r = verifyEkCertificate(EK_CERT, [ISSUER], anchors, FIXTURE_NOW);
    expect(r.path.length).toBe(3);
    expect(r.leaf.serialHex).toBe('02');
    expect(verifyEkCertificate(EK_CERT, [], [parseManufacturerCa(ISSUER)], FIXTURE_NOW).path.length).toBe(2);
  });

  it('refuses a path to another CA, a missing intermediate, and times outside validity', () => {
    const other = softCa('other manufacturer', FIXTURE_NOW);
    expect(codeOf(() => verifyEkCertificate(EK_CERT, [ISSUER], [parseManufacturerCa(other.der)], FIXTURE_NOW))).toBe('tpm/ek-untrusted');
    expect(codeOf(() => verifyEkCertificate(EK_CERT, [], anchors, FIXTURE_NOW))).toBe('tpm/ek-untrusted');
    expect(codeOf(() => verifyEkCertificate(EK_CERT, [ISSUER], anchors, Date.parse('2001-01-01T00:00:00Z')))).toBe('tpm/ek-untrusted');
    expect(verifyEkCertificate(EK_CERT, [ISSUER], anchors, Date.parse('2001-01-01T00:00:00Z'), { checkValidity: false }).path.length).toBe(3);
  });

  it('refuses a tampered certificate signature and too many intermediates', () => {
    const t = Buffer.from(EK_CERT);
    t[t.length - 5]! ^= 1;
    expect(codeOf(() => verifyEkCertificate(t, [ISSUER], anchors, FIXTURE_NOW))).toBe('tpm/ek-untrusted');
    expect(codeOf(() => verifyEkCertificate(EK_CERT, [ISSUER, ISSUER, ISSUER, ISSUER, ISSUER], anchors, FIXTURE_NOW))).toBe('tpm/ek-untrusted');
    expect(codeOf(() => verifyEkCertificate(Buffer.from('not a cert'), [], anchors, FIXTURE_NOW))).toBe('tpm/malformed');
  });

  it('refuses a CA certificate or an EC key as the EK certificate, and an EK certificate without keyEncipherment', () => {
    expect(codeOf(() => verifyEkCertificate(ISSUER, [], anchors, FIXTURE_NOW))).toBe('tpm/ek-untrusted');
    const ca = softCa('m', NOW);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const noKu = softEkCert(ca, rsa.publicKey.export({ format: 'der', type: 'spki' }), NOW, { keyUsage: false });
    expect(verifyEkCertificate(noKu, [], [parseManufacturerCa(ca.der)], NOW).path.length).toBe(2); // keyUsage absent: allowed
    const spki = rsa.publicKey.export({ format: 'der', type: 'spki' });
    const tls = softEkCert(ca, spki, NOW, { eku: ['1.3.6.1.5.5.7.3.1'] }); // serverAuth only: not an EK certificate
    expect(codeOf(() => verifyEkCertificate(tls, [], [parseManufacturerCa(ca.der)], NOW))).toBe('tpm/ek-untrusted');
    expect(verifyEkCertificate(softEkCert(ca, spki, NOW, { eku: ['2.5.29.37.0'] }), [], [parseManufacturerCa(ca.der)], NOW).path.length).toBe(2);
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const ecEk = softEkCert(ca, ec.publicKey.export({ format: 'der', type: 'spki' }), NOW);
    expect(codeOf(() => verifyEkCertificate(ecEk, [], [parseManufacturerCa(ca.der)], NOW))).toBe('tpm/unsupported');
  });

  it('refuses a non-CA as a manufacturer CA (configuration error)', () => {
    expect(codeOf(() => parseManufacturerCa(EK_CERT))).toBe('tpm/config');
    expect(codeOf(() => new TpmVerifier({ manufacturerCas: [] }))).toBe('tpm/config');
    expect(codeOf(() => new TpmVerifier({ manufacturerCas: [ROOT], challengeTtlMs: 10 }))).toBe('tpm/config');
  });
});

describe('verifier state machine (software TPM)', () => {
  const ca = softCa('Soft TPM Manufacturer CA', NOW);
  const tpm = new SoftTpm(ca, NOW);
  const verifier = new TpmVerifier({ manufacturerCas: [ca.der] });
  const request = { ekCert: tpm.ekCert, akPublic: tpm.akPublic };

  it('attests: credential activation, quote over the fresh nonce; result has the EK fingerprint and AK Name', () => {
    const s = verifier.begin(request, NOW);
    expect(s.challenge.nonce.length).toBe(32);
    expect(s.expiresAt).toBe(NOW + 60_000);
    const r = s.complete(tpm.respond(s.challenge), NOW + 1000);
    const spki = tpm.ek.publicKey.export({ format: 'der', type: 'spki' });
    expect(r.ekPublicKeyHash).toBe(createHash('sha256').update(spki).digest('hex'));
    expect(r.akName).toBe(tpm.akName.toString('hex'));
    expect(r.ekCertPath.length).toBe(2);
    expect(r.pcrSelection).toEqual([{ hashAlg: ALG.SHA256, pcrs: [0, 1, 2, 3, 4, 5, 6, 7] }]);
    expect(r.clock.resetCount).toBe(1);
    expect(s.open).toBe(false);
  });

  it('with ekPublic: checks it is the certificate key and that the quote signer is the AK under that EK', () => {
    const s = verifier.begin({ ...request, ekPublic: tpm.ekPublic }, NOW);
    expect(s.complete(tpm.respond(s.challenge), NOW).akName).toBe(tpm.akName.toString('hex'));
    const s2 = verifier.begin({ ...request, ekPublic: tpm.ekPublic }, NOW);
    expect(codeOf(() => s2.complete(tpm.respond(s2.challenge, { qualifiedSigner: tpm.akName }), NOW))).toBe('tpm/quote-invalid');
    const other = new SoftTpm(ca, NOW);
    expect(codeOf(() => verifier.begin({ ...request, ekPublic: other.ekPublic }, NOW))).toBe('tpm/ek-mismatch');
  });

  it('refuses a quote over the nonce of an earlier challenge (stale nonce)', () => {
    const first = verifier.begin(request, NOW);
    const oldResponse = tpm.respond(first.challenge);
    first.complete(oldResponse, NOW);
    const second = verifier.begin(request, NOW + 5000);
    const replay = { ...oldResponse, activatedSecret: tpm.activate(second.challenge) };
    expect(codeOf(() => second.complete(replay, NOW + 6000))).toBe('tpm/stale-nonce');
  });

  it('refuses a wrong activated secret, a tampered quote, a quote signed by another key', () => {
    const s1 = verifier.begin(request, NOW);
    const r1 = tpm.respond(s1.challenge);
    expect(codeOf(() => s1.complete({ ...r1, activatedSecret: randomBytes(32) }, NOW))).toBe('tpm/credential-mismatch');
    const s2 = verifier.begin(request, NOW);
    const r2 = tpm.respond(s2.challenge);
    const q = Buffer.from(r2.quote);
    q[q.length - 40]! ^= 1;
    expect(codeOf(() => s2.complete({ ...r2, quote: q }, NOW))).toBe('tpm/quote-signature');
    const s3 = verifier.begin(request, NOW);
    const other = new SoftTpm(ca, NOW);
    const r3 = { activatedSecret: tpm.activate(s3.challenge), ...other.quote({ extraData: s3.challenge.nonce }) };
    expect(codeOf(() => s3.complete(r3, NOW))).toBe('tpm/quote-signature');
  });

  it('refuses a signed structure that is not a TPM-generated quote (magic, type)', () => {
    for (const f of [{ magic: 0x12345678 }, { type: 0x8017 }]) {
      const s = verifier.begin(request, NOW);
      expect(codeOf(() => s.complete(tpm.respond(s.challenge, f), NOW))).toBe('tpm/quote-invalid');
    }
  });

  it('refuses a late response and a second response to the same challenge', () => {
    const s = verifier.begin(request, NOW);
    const r = tpm.respond(s.challenge);
    expect(codeOf(() => s.complete(r, NOW + 60_001))).toBe('tpm/challenge-expired');
    expect(codeOf(() => s.complete(r, NOW))).toBe('tpm/session-state');
    const s2 = verifier.begin(request, NOW);
    const r2 = tpm.respond(s2.challenge);
    expect(codeOf(() => s2.complete({ ...r2, activatedSecret: Buffer.alloc(32) }, NOW))).toBe('tpm/credential-mismatch');
    expect(codeOf(() => s2.complete(r2, NOW))).toBe('tpm/session-state'); // one guess per challenge
  });

  it('refuses an AK with the decrypt attribute and an EK certificate from another manufacturer', () => {
    const decryptAk = new SoftTpm(ca, NOW, AK_ATTRS | (1 << 17));
    expect(codeOf(() => verifier.begin({ ekCert: decryptAk.ekCert, akPublic: decryptAk.akPublic }, NOW))).toBe('tpm/ak-attributes');
    const foreign = new SoftTpm(softCa('Other CA', NOW), NOW);
    expect(codeOf(() => verifier.begin({ ekCert: foreign.ekCert, akPublic: foreign.akPublic }, NOW))).toBe('tpm/ek-untrusted');
  });

  it('refuses malformed requests and responses', () => {
    expect(codeOf(() => verifier.begin({ ekCert: 'x' as unknown as Buffer, akPublic: tpm.akPublic }, NOW))).toBe('tpm/malformed');
    expect(codeOf(() => verifier.begin({ ...request, akPublic: Buffer.alloc(3) }, NOW))).toBe('tpm/malformed');
    expect(codeOf(() => verifier.begin({ ...request, ekIntermediates: Array(5).fill(ca.der) as Buffer[] }, NOW))).toBe('tpm/malformed');
    const s = verifier.begin(request, NOW);
    expect(codeOf(() => s.complete({ activatedSecret: Buffer.alloc(32), quote: 'q' as unknown as Buffer, quoteSignature: Buffer.alloc(0) }, NOW))).toBe(
      'tpm/malformed',
    );
    const s2 = verifier.begin(request, NOW);
    const r2 = tpm.respond(s2.challenge);
    expect(codeOf(() => s2.complete({ ...r2, quote: Buffer.concat([r2.quote, Buffer.alloc(1)]) }, NOW))).toBe('tpm/malformed');
  });

  it('applies a PCR policy: exact selection and values', () => {
    const zero = new Map(Array.from({ length: 8 }, (_, i) => [i, Buffer.alloc(32)] as const));
    const strict = new TpmVerifier({ manufacturerCas: [ca.der], pcrPolicy: { hashAlg: 'sha256', values: zero } });
    const s = strict.begin(request, NOW);
    expect(s.complete(tpm.respond(s.challenge), NOW).pcrDigest).toBe(ZERO_PCRS_0_7_DIGEST);
    const s2 = strict.begin(request, NOW);
    expect(codeOf(() => s2.complete(tpm.respond(s2.challenge, { pcrDigest: Buffer.alloc(32, 1) }), NOW))).toBe('tpm/pcr-mismatch');
    const s3 = strict.begin(request, NOW);
    expect(codeOf(() => s3.complete(tpm.respond(s3.challenge, { pcrs: [0, 1, 2] }), NOW))).toBe('tpm/pcr-mismatch');
    expect(codeOf(() => new TpmVerifier({ manufacturerCas: [ca.der], pcrPolicy: { hashAlg: 'sha256', values: new Map([[0, Buffer.alloc(3)]]) } }))).toBe(
      'tpm/config',
    );
  });

  it('runs the exchange through the callback form with a clock', async () => {
    const clock = new ManualClock(NOW);
    let seen: TpmChallenge | undefined;
    const r = await attestTpmNode(verifier, request, async (c) => {
      seen = c;
      clock.advance(500);
      return tpm.respond(c);
    }, clock);
    expect(seen?.nonce.length).toBe(32);
    expect(r.akName).toBe(tpm.akName.toString('hex'));
    await expect(
      attestTpmNode(verifier, request, async (c) => {
        clock.advance(61_000);
        return tpm.respond(c);
      }, clock),
    ).rejects.toMatchObject({ code: 'tpm/challenge-expired' });
  });

  it('uses the Name of the AK the agent sent: a credential for another Name cannot be activated', () => {
    const s = verifier.begin(request, NOW);
    const wrongName = tpmName(tpm.akTpmt);
    wrongName[3]! ^= 1;
    expect(() => softActivateCredential(tpm.ek.privateKey, wrongName, s.challenge.credentialBlob, s.challenge.encryptedSecret)).toThrow('TPM_RC_INTEGRITY');
  });
});

describe('tpm on the node-attestor port', () => {
  const ca = softCa('Port Manufacturer CA', NOW);
  const tpm = new SoftTpm(ca, NOW);
  const request = { ekCert: tpm.ekCert, akPublic: tpm.akPublic, ekPublic: tpm.ekPublic };
  const ctx = { nodeName: 'edge-1', now: NOW };
  const fingerprint = createHash('sha256').update(tpm.ek.publicKey.export({ format: 'der', type: 'spki' })).digest('hex');

  function runPort(attestor: ReturnType<typeof createTpmAttestor>, tweak?: (c: TpmChallenge) => TpmChallenge) {
    const session = attestor.begin(tpmPayload(request), ctx);
    const first = session.step(undefined, NOW);
    if (first.kind !== 'challenge') throw new Error('expected a challenge');
    const challenge = decodeTpmChallenge(first.challenge);
    const response = tpm.respond(tweak === undefined ? challenge : tweak(challenge));
    return { session, done: () => session.step(encodeTpmChallengeResponse(response), NOW + 10) };
  }

  it('runs begin -> challenge bytes -> response bytes -> done with the EK fingerprint, re-attestable', () => {
    const { session, done } = runPort(createTpmAttestor({ manufacturerCas: [ca.der] }, { allowAnyEk: true }));
    expect(done()).toEqual({ kind: 'done', method: 'tpm', nodeName: 'edge-1', fingerprint, reattestable: true });
    expect(() => session.step(Buffer.alloc(1), NOW)).toThrow(); // single use
  });

  it('binds node names to enrolled EK fingerprints (deny by default)', () => {
    const enrolled = createTpmAttestor({ manufacturerCas: [ca.der] }, { enrolled: (n: string) => (n === 'edge-1' ? `sha256:${fingerprint}` : undefined) });
    expect(runPort(enrolled).done().kind).toBe('done');
    const other = createTpmAttestor({ manufacturerCas: [ca.der] }, { enrolled: () => `sha256:${'ab'.repeat(32)}` });
    expect(codeOf(() => other.begin(tpmPayload(request), ctx).step(undefined, NOW))).toBe('tpm/ek-not-enrolled');
    const none = createTpmAttestor({ manufacturerCas: [ca.der] }, { enrolled: new Map() });
    expect(codeOf(() => none.begin(tpmPayload(request), ctx).step(undefined, NOW))).toBe('tpm/ek-not-enrolled');
  });

  it('refuses a stale nonce through the port too', () => {
    const attestor = createTpmAttestor({ manufacturerCas: [ca.der] }, { allowAnyEk: true });
    const { done } = runPort(attestor, (c) => ({ ...c, nonce: Buffer.alloc(32, 1) }));
    expect(codeOf(done)).toBe('tpm/stale-nonce');
  });

  it('decodes payloads strictly', () => {
    const ok = tpmPayload({ ...request, ekIntermediates: [ca.der] });
    expect(decodeTpmPayload(ok).ekIntermediates?.length).toBe(1);
    expect(codeOf(() => decodeTpmPayload({ ...ok, extra: 1 }))).toBe('tpm/malformed');
    expect(codeOf(() => decodeTpmPayload({ akPublic: ok['akPublic'] }))).toBe('tpm/malformed');
    expect(codeOf(() => decodeTpmPayload({ ...ok, ekCert: 'not base64!' }))).toBe('tpm/malformed');
    expect(codeOf(() => decodeTpmPayload({ ...ok, ekIntermediates: Array(5).fill(ok['ekCert']) }))).toBe('tpm/malformed');
    expect(codeOf(() => decodeTpmPayload([] as unknown as Record<string, unknown>))).toBe('tpm/malformed');
  });

  it('round-trips challenge and response bytes and refuses trailing or truncated bytes', () => {
    const c = { credentialBlob: randomBytes(68), encryptedSecret: randomBytes(256), nonce: randomBytes(32) };
    expect(decodeTpmChallenge(encodeTpmChallenge(c))).toEqual(c);
    const r = { activatedSecret: randomBytes(32), quote: randomBytes(145), quoteSignature: randomBytes(72) };
    const rb = encodeTpmChallengeResponse(r);
    expect(decodeTpmChallengeResponse(rb)).toEqual(r);
    expect(codeOf(() => decodeTpmChallengeResponse(Buffer.concat([rb, Buffer.alloc(1)])))).toBe('tpm/malformed');
    expect(codeOf(() => decodeTpmChallengeResponse(rb.subarray(0, rb.length - 1)))).toBe('tpm/malformed');
    expect(codeOf(() => decodeTpmChallenge(Buffer.alloc(1)))).toBe('tpm/malformed');
  });
});
