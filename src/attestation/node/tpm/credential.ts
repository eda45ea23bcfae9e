/**
 * Credential protection (TPM 2.0 Part 1 §24 "Credential Protection"; Part 3 §12.6 TPM2_MakeCredential),
 * done by the verifier in software so that only the TPM holding the EK private key can recover the
 * secret, and only while an object with the given Name is loaded in it (TPM2_ActivateCredential).
 *
 *   seed            = random(digest size of the EK nameAlg)
 *   encryptedSecret = RSA-OAEP(EK, hash = EK nameAlg, label = "IDENTITY\0", seed)       (Part 1 §24.4, §B.10.3)
 *   symKey          = KDFa(nameAlg, seed, "STORAGE", Name(AK), "", EK symmetric keyBits) (Part 1 §24.4)
 *   encIdentity     = CFB(symKey, IV = 0, TPM2B(credential))                            (Part 1 §24.4)
 *   HMACkey         = KDFa(nameAlg, seed, "INTEGRITY", "", "", digest bits)             (Part 1 §24.5)
 *   outerHMAC       = HMAC(HMACkey, encIdentity || Name(AK))                              (Part 1 §24.5)
 *   idObject        = TPM2B(outerHMAC) || encIdentity           (TPM2B_ID_OBJECT contents, Part 2 §12.4.3)
 *
 * Only RSA EKs are supported (the TCG default `tpm2_createek -G rsa` EK, template L-1: SHA-256 nameAlg,
 * AES-128-CFB). ECC EKs need ECDH-based secret sharing (Part 1 §B.10.2) and are not implemented.
 */
import { constants, createCipheriv, createHmac, publicEncrypt, type KeyObject } from 'node:crypto';
import { TpmAttestationError } from './errors.js';
import { hashDigestSize, TPM_ALG, tpm2b, u32be, type TpmHashName } from './structures.js';

/** The largest KDFa output we produce (bounded; the credential path needs at most 512 bits). */
export const MAX_KDFA_BITS = 8192;

/**
 * KDFa (Part 1 §11.4.10.2): SP 800-108 KDF in counter mode with HMAC as the PRF.
 *   K(i) = HMAC(key, [i]_32 || Label || 0x00 || ContextU || ContextV || [bits]_32), i = 1, 2, ...
 * The result is the first `bits` bits; when `bits` is not a multiple of 8 the excess high-order bits of
 * the first octet are cleared (as the TPM reference code does). A label that already ends with 0x00 is
 * used as is.
 */
export function kdfa(hash: TpmHashName, key: Buffer, label: string | Buffer, contextU: Buffer, contextV: Buffer, bits: number): Buffer {
  if (!Number.isInteger(bits) || bits <= 0 || bits > MAX_KDFA_BITS) {
    throw new TpmAttestationError('tpm/config', `KDFa output size must be 1..${MAX_KDFA_BITS} bits`);
  }
  let labelBytes = typeof label === 'string' ? Buffer.from(label, 'latin1') : label;
  if (labelBytes.length === 0 || labelBytes[labelBytes.length - 1] !== 0) labelBytes = Buffer.concat([labelBytes, Buffer.alloc(1)]);
  const out = Buffer.alloc(Math.ceil(bits / 8));
  const sizeBits = u32be(bits);
  let off = 0;
  for (let counter = 1; off < out.length; counter++) {
    const block = createHmac(hash, key).update(u32be(counter)).update(labelBytes).update(contextU).update(contextV).update(sizeBits).digest();
    off += block.copy(out, off);
  }
  if (bits % 8 !== 0) out[0] = out[0]! & ((1 << (bits % 8)) - 1);
  return out;
}

/** How the EK protects credentials: its key and the algorithms of its public area. */
export interface EkProtection {
  /** The EK's RSA public key. */
  publicKey: KeyObject;
  /** The EK's nameAlg: OAEP hash, KDFa and HMAC hash (SHA-256 for the TCG default template). */
  nameAlg: Exclude<TpmHashName, 'sha1'>;
  /** The EK's symmetric algorithm: AES in CFB mode with this key size (128 for the default template). */
  aesKeyBits: 128 | 192 | 256;
}

/** The TCG default RSA EK template (EK Credential Profile, template L-1): SHA-256, AES-128-CFB. */
export const DEFAULT_EK_NAME_ALG = 'sha256';
export const DEFAULT_EK_AES_KEY_BITS = 128;

export interface MadeCredential {
  /** TPM2B_ID_OBJECT contents: TPM2B(outerHMAC) || encIdentity. */
  credentialBlob: Buffer;
  /** TPM2B_ENCRYPTED_SECRET contents: the OAEP-encrypted seed. */
  encryptedSecret: Buffer;
}

const IDENTITY_LABEL = Buffer.from('IDENTITY\0', 'latin1');

/**
 * TPM2_MakeCredential in software. `objectName` is the Name of the key that must be loaded for the
 * activation (the AK); `credential` is the secret (1..digest-size bytes, Part 3 §12.6.1).
 * `random` supplies the seed (node:crypto randomBytes in production).
 */
export function makeCredential(ek: EkProtection, objectName: Buffer, credential: Buffer, random: (n: number) => Buffer): MadeCredential {
  const digestSize = hashDigestSize(ek.nameAlg);
  if (credential.length === 0 || credential.length > digestSize) {
    throw new TpmAttestationError('tpm/config', `credential must be 1..${digestSize} bytes (Part 3 §12.6.1)`);
  }
  if (objectName.length < 2 + 32 || objectName.length > 2 + 64) {
    throw new TpmAttestationError('tpm/malformed', 'object Name is not a digest Name');
  }
  if (ek.publicKey.asymmetricKeyType !== 'rsa') throw new TpmAttestationError('tpm/unsupported', 'only RSA endorsement keys are supported');
  const seed = random(digestSize);
  if (!Buffer.isBuffer(seed) || seed.length !== digestSize) throw new TpmAttestationError('tpm/config', 'random source returned a wrong-sized seed');
  try {
    const encryptedSecret = publicEncrypt(
      { key: ek.publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: ek.nameAlg, oaepLabel: IDENTITY_LABEL },
      seed,
    );
    const symKey = kdfa(ek.nameAlg, seed, 'STORAGE', objectName, Buffer.alloc(0), ek.aesKeyBits);
    const cipher = createCipheriv(`aes-${ek.aesKeyBits}-cfb`, symKey, Buffer.alloc(16));
    const encIdentity = Buffer.concat([cipher.update(tpm2b(credential)), cipher.final()]);
    const hmacKey = kdfa(ek.nameAlg, seed, 'INTEGRITY', Buffer.alloc(0), Buffer.alloc(0), digestSize * 8);
    const outerHmac = createHmac(ek.nameAlg, hmacKey).update(encIdentity).update(objectName).digest();
    symKey.fill(0);
    hmacKey.fill(0);
    return { credentialBlob: Buffer.concat([tpm2b(outerHmac), encIdentity]), encryptedSecret };
  } finally {
    seed.fill(0);
  }
}

/** The symmetric algorithm fields of an EK public area, checked to be AES-CFB (what makeCredential implements). */
export function aesKeyBitsOf(sym: { algorithm: number; keyBits: number; mode: number } | null): 128 | 192 | 256 {
  if (sym === null || sym.algorithm !== TPM_ALG.AES || sym.mode !== TPM_ALG.CFB) {
    throw new TpmAttestationError('tpm/unsupported', 'the EK symmetric algorithm must be AES-CFB');
  }
  if (sym.keyBits !== 128 && sym.keyBits !== 192 && sym.keyBits !== 256) {
    throw new TpmAttestationError('tpm/unsupported', `AES key size ${sym.keyBits} is not supported`);
  }
  return sym.keyBits;
}
