/**
 * A software stand-in for the TPM side of the `tpm` node attestor, for unit tests of the verifier's state
 * machine without swtpm. It marshals TPM structures independently of the code under test (TPM 2.0 Part 2)
 * and implements TPM2_ActivateCredential (Part 3 §12.5) with the EK private key; the one shared piece is
 * KDFa, which the unit tests check against the TPM reference code's self-test vectors. The real-TPM proof
 * is in test/integration/tpm-attestation.test.ts; this file only lets the unit tests reach every branch.
 */
import {
  constants,
  createDecipheriv,
  createHash,
  createHmac,
  generateKeyPairSync,
  privateDecrypt,
  sign as cryptoSign,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto';
import { kdfa, type TpmChallenge, type TpmChallengeResponse } from '../../../src/attestation/node/tpm/index.js';
import { generateP256, signerFromPrivateKey } from '../../../src/identity/index.js';
import {
  basicConstraintsExt,
  buildCertificate,
  encodeName,
  extKeyUsageExt,
  keyUsageExt,
  randomSerial,
  subjectKeyIdExt,
  authorityKeyIdExt,
  keyIdentifier,
  type ExtensionSpec,
} from '../../../src/identity/x509/builder.js';
import { OID } from '../../../src/identity/x509/oids.js';
import type { Signer } from '../../../src/identity/x509/signer.js';

export const ALG = { RSA: 0x0001, SHA256: 0x000b, AES: 0x0006, NULL: 0x0010, RSASSA: 0x0014, ECDSA: 0x0018, ECC: 0x0023, CFB: 0x0043 } as const;
/** fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|restricted|sign (tpm2_createak's AK). */
export const AK_ATTRS = 0x00050072;
/** fixedTPM|fixedParent|sensitiveDataOrigin|adminWithPolicy|restricted|decrypt (TCG EK template L-1). */
export const EK_ATTRS = 0x000300b2;
/** The TCG EK policy digest (PolicySecret(TPM_RH_ENDORSEMENT)), EK Credential Profile B.3.3. */
const EK_POLICY = Buffer.from('837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa', 'hex');

const u16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
const u64 = (n: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(n);
  return b;
};
export const sized = (b: Buffer): Buffer => Buffer.concat([u16(b.length), b]);

/** TPMT_PUBLIC of an ECC P-256 key (unsized). */
export function eccTpmtPublic(o: { x: Buffer; y: Buffer; attributes?: number; scheme?: number; schemeHash?: number; nameAlg?: number; symmetric?: Buffer }): Buffer {
  const scheme = o.scheme ?? ALG.ECDSA;
  return Buffer.concat([
    u16(ALG.ECC),
    u16(o.nameAlg ?? ALG.SHA256),
    u32(o.attributes ?? AK_ATTRS),
    sized(Buffer.alloc(0)),
    o.symmetric ?? u16(ALG.NULL),
    scheme === ALG.NULL ? u16(ALG.NULL) : Buffer.concat([u16(scheme), u16(o.schemeHash ?? ALG.SHA256)]),
    u16(0x0003), // NIST P-256
    u16(ALG.NULL), // kdf
    sized(o.x),
    sized(o.y),
  ]);
}

/** TPMT_PUBLIC of an RSA EK made from the TCG default template (unsized). */
export function rsaEkTpmtPublic(modulus: Buffer, attributes = EK_ATTRS): Buffer {
  return Buffer.concat([
    u16(ALG.RSA),
    u16(ALG.SHA256),
    u32(attributes),
    sized(EK_POLICY),
    Buffer.concat([u16(ALG.AES), u16(128), u16(ALG.CFB)]),
    u16(ALG.NULL),
    u16(modulus.length * 8),
    u32(0),
    sized(modulus),
  ]);
}

export function tpmName(tpmtPublic: Buffer): Buffer {
  return Buffer.concat([u16(ALG.SHA256), createHash('sha256').update(tpmtPublic).digest()]);
}

export interface AttestFields {
  magic?: number;
  type?: number;
  qualifiedSigner?: Buffer;
  extraData: Buffer;
  clock?: bigint;
  resetCount?: number;
  restartCount?: number;
  safe?: number;
  firmwareVersion?: bigint;
  /** PCR indices of the sha256 bank. */
  pcrs?: number[];
  pcrDigest?: Buffer;
}

/** TPMS_ATTEST for a quote (Part 2 §10.12.12). */
export function encodeQuote(f: AttestFields): Buffer {
  const select = Buffer.alloc(3);
  for (const p of f.pcrs ?? [0, 1, 2, 3, 4, 5, 6, 7]) select[p >> 3]! |= 1 << (p & 7);
  const pcrDigest = f.pcrDigest ?? createHash('sha256').update(Buffer.alloc(32 * (f.pcrs ?? [0, 1, 2, 3, 4, 5, 6, 7]).length)).digest();
  return Buffer.concat([
    u32(f.magic ?? 0xff544347),
    u16(f.type ?? 0x8018),
    sized(f.qualifiedSigner ?? Buffer.concat([u16(ALG.SHA256), Buffer.alloc(32, 7)])),
    sized(f.extraData),
    u64(f.clock ?? 1234n),
    u32(f.resetCount ?? 1),
    u32(f.restartCount ?? 0),
    Buffer.from([f.safe ?? 1]),
    u64(f.firmwareVersion ?? 0x2019102300163636n),
    u32(1),
    u16(ALG.SHA256),
    Buffer.from([3]),
    select,
    sized(pcrDigest),
  ]);
}

/** TPMT_SIGNATURE (ECDSA, SHA-256) of `message` with a P-256 key. */
export function ecdsaSignature(key: KeyObject, message: Buffer): Buffer {
  const rs = cryptoSign('sha256', message, { key, dsaEncoding: 'ieee-p1363' });
  return Buffer.concat([u16(ALG.ECDSA), u16(ALG.SHA256), sized(rs.subarray(0, 32)), sized(rs.subarray(32))]);
}

/**
 * TPM2_ActivateCredential in software (Part 1 §24, Part 3 §12.5) for an EK with SHA-256 nameAlg and
 * AES-128-CFB: recover the seed, check the outer HMAC, decrypt the credential. Throws when anything fails,
 * as the TPM would (TPM_RC_INTEGRITY / TPM_RC_VALUE).
 */
export function softActivateCredential(ekPrivate: KeyObject, akName: Buffer, credentialBlob: Buffer, encryptedSecret: Buffer): Buffer {
  const seed = privateDecrypt(
    { key: ekPrivate, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: Buffer.from('IDENTITY\0', 'latin1') },
    encryptedSecret,
  );
  const hmacSize = credentialBlob.readUInt16BE(0);
  const outerHmac = credentialBlob.subarray(2, 2 + hmacSize);
  const encIdentity = credentialBlob.subarray(2 + hmacSize);
  const hmacKey = kdfa('sha256', seed, 'INTEGRITY', Buffer.alloc(0), Buffer.alloc(0), 256);
  const expected = createHmac('sha256', hmacKey).update(encIdentity).update(akName).digest();
  if (expected.length !== outerHmac.length || !timingSafeEqual(expected, outerHmac)) throw new Error('TPM_RC_INTEGRITY');
  const symKey = kdfa('sha256', seed, 'STORAGE', akName, Buffer.alloc(0), 128);
  const d = createDecipheriv('aes-128-cfb', symKey, Buffer.alloc(16));
  const plain = Buffer.concat([d.update(encIdentity), d.final()]);
  const size = plain.readUInt16BE(0);
  if (size + 2 !== plain.length) throw new Error('TPM_RC_SIZE');
  return plain.subarray(2);
}

function dirNameSan(): ExtensionSpec {
  // subjectAltName: critical, one directoryName with TPM manufacturer/model/version (EK profile 3.2.9).
  const attr = (o: string, v: string): Buffer => {
    const oidDer = oidBytes(o);
    const val = Buffer.concat([Buffer.from([0x0c, v.length]), Buffer.from(v, 'latin1')]);
    const seqBody = Buffer.concat([oidDer, val]);
    const seqDer = Buffer.concat([Buffer.from([0x30, seqBody.length]), seqBody]);
    return Buffer.concat([Buffer.from([0x31, seqDer.length]), seqDer]);
  };
  const name = Buffer.concat([attr('2.23.133.2.1', 'id:00001014'), attr('2.23.133.2.2', 'soft'), attr('2.23.133.2.3', 'id:00000001')]);
  const nameSeq = Buffer.concat([Buffer.from([0x30, name.length]), name]);
  const dirName = Buffer.concat([Buffer.from([0xa4, nameSeq.length]), nameSeq]);
  return { oid: OID.subjectAltName, critical: true, value: Buffer.concat([Buffer.from([0x30, dirName.length]), dirName]) };
}

function oidBytes(o: string): Buffer {
  const parts = o.split('.').map(Number);
  const body: number[] = [parts[0]! * 40 + parts[1]!];
  for (const p of parts.slice(2)) {
    const stack: number[] = [p & 0x7f];
    for (let v = p >> 7; v > 0; v >>= 7) stack.unshift((v & 0x7f) | 0x80);
    body.push(...stack);
  }
  return Buffer.concat([Buffer.from([0x06, body.length]), Buffer.from(body)]);
}

export interface SoftCa {
  der: Buffer;
  signer: Signer;
  subject: Buffer;
}

export function softCa(cn: string, now: number): SoftCa {
  const k = generateP256();
  const signer = signerFromPrivateKey(k.privateKey, k.spki);
  const subject = encodeName([[OID.commonName, cn]]);
  const der = buildCertificate(
    {
      serial: randomSerial(),
      issuer: subject,
      subject,
      notBefore: now - 3_600_000,
      notAfter: now + 365 * 86_400_000,
      spki: k.spki,
      extensions: [basicConstraintsExt(true), keyUsageExt(['keyCertSign', 'cRLSign']), subjectKeyIdExt(k.spki)],
    },
    signer,
  );
  return { der, signer, subject };
}

/** An EK certificate shaped like swtpm's: placeholder subject, critical dirName SAN, EKU tcg-kp-EKCertificate. */
export function softEkCert(ca: SoftCa, ekSpki: Buffer, now: number, opts: { notAfter?: number; keyUsage?: boolean; eku?: string[] } = {}): Buffer {
  return buildCertificate(
    {
      serial: randomSerial(),
      issuer: ca.subject,
      subject: encodeName([[OID.commonName, 'unknown']]),
      notBefore: now - 3_600_000,
      notAfter: opts.notAfter ?? now + 365 * 86_400_000,
      spki: ekSpki,
      extensions: [
        extKeyUsageExt(opts.eku ?? ['2.23.133.8.1']),
        dirNameSan(),
        basicConstraintsExt(false),
        authorityKeyIdExt(keyIdentifier(ca.signer.spki)),
        ...(opts.keyUsage === false ? [] : [keyUsageExt(['keyEncipherment'])]),
      ],
    },
    ca.signer,
  );
}

/** A whole software TPM: RSA-2048 EK with a certificate from `ca`, a P-256 AK, and ActivateCredential/Quote. */
export class SoftTpm {
  readonly ek = generateKeyPairSync('rsa', { modulusLength: 2048 });
  readonly ak = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  readonly ekCert: Buffer;
  readonly ekModulus: Buffer;
  readonly ekTpmt: Buffer;
  readonly akTpmt: Buffer;
  readonly akName: Buffer;

  constructor(ca: SoftCa, now: number, akAttributes = AK_ATTRS) {
    const ekSpki = this.ek.publicKey.export({ format: 'der', type: 'spki' });
    this.ekCert = softEkCert(ca, ekSpki, now);
    this.ekModulus = Buffer.from(this.ek.publicKey.export({ format: 'jwk' }).n!, 'base64url');
    this.ekTpmt = rsaEkTpmtPublic(this.ekModulus);
    const jwk = this.ak.publicKey.export({ format: 'jwk' });
    this.akTpmt = eccTpmtPublic({ x: Buffer.from(jwk.x!, 'base64url'), y: Buffer.from(jwk.y!, 'base64url'), attributes: akAttributes });
    this.akName = tpmName(this.akTpmt);
  }

  get akPublic(): Buffer {
    return sized(this.akTpmt);
  }

  get ekPublic(): Buffer {
    return sized(this.ekTpmt);
  }

  /** QN(AK) for an AK that is a child of the EK primary (Part 1 §16). */
  get akQualifiedName(): Buffer {
    const qnEk = Buffer.concat([u16(ALG.SHA256), createHash('sha256').update(u32(0x4000000b)).update(tpmName(this.ekTpmt)).digest()]);
    return Buffer.concat([u16(ALG.SHA256), createHash('sha256').update(qnEk).update(this.akName).digest()]);
  }

  activate(c: TpmChallenge): Buffer {
    return softActivateCredential(this.ek.privateKey, this.akName, c.credentialBlob, c.encryptedSecret);
  }

  quote(f: AttestFields): { quote: Buffer; quoteSignature: Buffer } {
    const quote = encodeQuote({ qualifiedSigner: this.akQualifiedName, ...f });
    return { quote, quoteSignature: ecdsaSignature(this.ak.privateKey, quote) };
  }

  respond(c: TpmChallenge, f: Partial<AttestFields> = {}): TpmChallengeResponse {
    return { activatedSecret: this.activate(c), ...this.quote({ extraData: c.nonce, ...f }) };
  }
}
