/**
 * TPM 2.0 structure parsing for the `tpm` node attestor (TCG TPM 2.0 Library, Part 2 "Structures").
 *
 * Only what a remote verifier needs: TPM2B_PUBLIC / TPMT_PUBLIC (RSA and ECC keys, Part 2 §12.2),
 * object Names (Part 1 §16), TPMS_ATTEST for quotes (Part 2 §10.12) and TPMT_SIGNATURE (Part 2 §11.3.4).
 * All integers are big-endian (Part 1 §9.3 "canonical form"). Every size field is bounded and every
 * parser must consume its whole input: trailing bytes are an error, never ignored.
 */
import { createHash, createPublicKey, constants, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { TpmAttestationError } from './errors.js';

/** TPM_ALG_ID values (Part 2 §6.3, TCG Algorithm Registry). */
export const TPM_ALG = {
  RSA: 0x0001,
  SHA1: 0x0004,
  HMAC: 0x0005,
  AES: 0x0006,
  MGF1: 0x0007,
  KEYEDHASH: 0x0008,
  XOR: 0x000a,
  SHA256: 0x000b,
  SHA384: 0x000c,
  SHA512: 0x000d,
  NULL: 0x0010,
  SM3_256: 0x0012,
  SM4: 0x0013,
  RSASSA: 0x0014,
  RSAES: 0x0015,
  RSAPSS: 0x0016,
  OAEP: 0x0017,
  ECDSA: 0x0018,
  ECDH: 0x0019,
  ECDAA: 0x001a,
  SM2: 0x001b,
  ECSCHNORR: 0x001c,
  ECMQV: 0x001d,
  KDF1_SP800_56A: 0x0020,
  KDF2: 0x0021,
  KDF1_SP800_108: 0x0022,
  ECC: 0x0023,
  SYMCIPHER: 0x0025,
  CAMELLIA: 0x0026,
  CFB: 0x0043,
} as const;

/** TPM_ECC_CURVE values (Part 2 §6.4). */
export const TPM_ECC_CURVE = { NIST_P256: 0x0003, NIST_P384: 0x0004, NIST_P521: 0x0005 } as const;

/** TPM_GENERATED_VALUE (Part 2 §6.2): every TPMS_ATTEST the TPM signs starts with it. */
export const TPM_GENERATED_VALUE = 0xff544347;
/** TPM_ST_ATTEST_QUOTE (Part 2 §6.9). */
export const TPM_ST_ATTEST_QUOTE = 0x8018;

/** TPMA_OBJECT bits (Part 2 §8.3). */
export const TPMA_OBJECT = {
  fixedTPM: 1 << 1,
  stClear: 1 << 2,
  fixedParent: 1 << 4,
  sensitiveDataOrigin: 1 << 5,
  userWithAuth: 1 << 6,
  adminWithPolicy: 1 << 7,
  noDA: 1 << 10,
  encryptedDuplication: 1 << 11,
  restricted: 1 << 16,
  decrypt: 1 << 17,
  sign: 1 << 18,
} as const;
/** Bits that are reserved in TPMA_OBJECT (Part 2 §8.3.2, Table 31): 0, 3, 8, 9, 12-15, 19-31. */
export const TPMA_OBJECT_RESERVED = 0xfff8f309;

/** Size bounds (all far above what a real TPM produces; they only cap what a peer can make us parse). */
export const MAX_TPM_PUBLIC_BYTES = 1024;
export const MAX_TPM_ATTEST_BYTES = 1024;
export const MAX_TPM_SIGNATURE_BYTES = 1024;
const MAX_DIGEST_BYTES = 64; // sizeof(TPMU_HA) for SHA-512
const MAX_NAME_BYTES = 2 + MAX_DIGEST_BYTES; // TPMU_NAME
const MAX_RSA_KEY_BYTES = 512; // TPM2B_PUBLIC_KEY_RSA: 4096-bit keys
const MAX_ECC_KEY_BYTES = 66; // P-521
const MAX_PCR_SELECTIONS = 16; // HASH_COUNT bound
const MAX_PCR_SELECT_BYTES = 8; // PCR_SELECT_MAX is 3 on PC-client TPMs; 64 PCRs is plenty

export type TpmHashName = 'sha1' | 'sha256' | 'sha384' | 'sha512';

const HASH_BY_ALG: ReadonlyMap<number, TpmHashName> = new Map([
  [TPM_ALG.SHA1, 'sha1'],
  [TPM_ALG.SHA256, 'sha256'],
  [TPM_ALG.SHA384, 'sha384'],
  [TPM_ALG.SHA512, 'sha512'],
]);
const HASH_SIZE: Readonly<Record<TpmHashName, number>> = { sha1: 20, sha256: 32, sha384: 48, sha512: 64 };

export function hashDigestSize(h: TpmHashName): number {
  return HASH_SIZE[h];
}

/** The node:crypto name of a TPM hash algorithm, or undefined when it is not one we implement. */
export function hashNameOf(alg: number): TpmHashName | undefined {
  return HASH_BY_ALG.get(alg);
}

/** TPM_ALG_ID of a hash name. */
export function hashAlgOf(h: TpmHashName): number {
  for (const [alg, name] of HASH_BY_ALG) if (name === h) return alg;
  throw new TpmAttestationError('tpm/unsupported', `unknown hash ${String(h)}`);
}

/**
 * A hash that may be used for Names, quotes and signatures here. SHA-1 is refused: a SHA-1 Name or quote
 * digest gives no collision resistance (TCG deprecates SHA-1 for attestation).
 */
export function strongHashOf(alg: number, what: string): Exclude<TpmHashName, 'sha1'> {
  const h = HASH_BY_ALG.get(alg);
  if (h === undefined || h === 'sha1') {
    throw new TpmAttestationError('tpm/unsupported', `${what}: hash algorithm 0x${hex4(alg)} is not supported (SHA-256/384/512 only)`);
  }
  return h;
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}

function malformed(message: string): never {
  throw new TpmAttestationError('tpm/malformed', message);
}

/** A bounded big-endian reader; every read past the end is `tpm/malformed`. */
export class TpmReader {
  readonly #buf: Buffer;
  readonly #what: string;
  #off = 0;

  constructor(buf: Buffer, what: string) {
    if (!Buffer.isBuffer(buf)) malformed(`${what} must be bytes`);
    this.#buf = buf;
    this.#what = what;
  }

  get offset(): number {
    return this.#off;
  }

  get remaining(): number {
    return this.#buf.length - this.#off;
  }

  #need(n: number, field: string): void {
    if (this.#buf.length - this.#off < n) malformed(`${this.#what}: truncated at ${field}`);
  }

  u8(field: string): number {
    this.#need(1, field);
    return this.#buf.readUInt8(this.#off++);
  }

  u16(field: string): number {
    this.#need(2, field);
    const v = this.#buf.readUInt16BE(this.#off);
    this.#off += 2;
    return v;
  }

  u32(field: string): number {
    this.#need(4, field);
    const v = this.#buf.readUInt32BE(this.#off);
    this.#off += 4;
    return v;
  }

  u64(field: string): bigint {
    this.#need(8, field);
    const v = this.#buf.readBigUInt64BE(this.#off);
    this.#off += 8;
    return v;
  }

  bytes(n: number, field: string): Buffer {
    this.#need(n, field);
    const b = this.#buf.subarray(this.#off, this.#off + n);
    this.#off += n;
    return b;
  }

  /** A TPM2B: UINT16 size then that many bytes, at most `max`. */
  tpm2b(max: number, field: string): Buffer {
    const size = this.u16(`${field}.size`);
    if (size > max) malformed(`${this.#what}: ${field} has ${size} bytes, at most ${max} allowed`);
    return this.bytes(size, field);
  }

  /** The bytes read since `from`. */
  since(from: number): Buffer {
    return this.#buf.subarray(from, this.#off);
  }

  end(): void {
    if (this.#off !== this.#buf.length) malformed(`${this.#what}: ${this.#buf.length - this.#off} trailing bytes`);
  }
}

/** UINT16 size || bytes (a TPM2B). */
export function tpm2b(data: Buffer): Buffer {
  if (data.length > 0xffff) throw new TpmAttestationError('tpm/malformed', 'TPM2B payload larger than 65535 bytes');
  const out = Buffer.alloc(2 + data.length);
  out.writeUInt16BE(data.length, 0);
  data.copy(out, 2);
  return out;
}

export function u16be(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n, 0);
  return b;
}

export function u32be(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

// ---------------------------------------------------------------------------------------------------
// TPMT_PUBLIC (Part 2 §12.2.4)

/** TPMT_SYM_DEF_OBJECT (Part 2 §11.1.7); null when the algorithm is TPM_ALG_NULL. */
export interface TpmSymDef {
  algorithm: number;
  keyBits: number;
  mode: number;
}

/** TPMT_RSA_SCHEME / TPMT_ECC_SCHEME / TPMT_KDF_SCHEME; null when the scheme is TPM_ALG_NULL. */
export interface TpmScheme {
  scheme: number;
  /** The scheme's hash (absent for RSAES, whose details are TPMS_EMPTY). */
  hashAlg: number | undefined;
  /** ECDAA count. */
  count?: number;
}

interface TpmPublicCommon {
  nameAlg: Exclude<TpmHashName, 'sha1'>;
  nameAlgId: number;
  objectAttributes: number;
  authPolicy: Buffer;
  symmetric: TpmSymDef | null;
  scheme: TpmScheme | null;
  /** The marshalled TPMT_PUBLIC, exactly as received (the Name is computed over these bytes). */
  tpmtPublic: Buffer;
}

export interface TpmRsaPublic extends TpmPublicCommon {
  type: 'rsa';
  keyBits: number;
  /** The public exponent (0 in the structure means 65537; this field holds the effective value). */
  exponent: number;
  modulus: Buffer;
}

export interface TpmEccPublic extends TpmPublicCommon {
  type: 'ecc';
  curveId: number;
  curve: 'P-256' | 'P-384' | 'P-521';
  kdf: TpmScheme | null;
  x: Buffer;
  y: Buffer;
}

export type TpmPublic = TpmRsaPublic | TpmEccPublic;

function readSymDefObject(r: TpmReader): TpmSymDef | null {
  const algorithm = r.u16('symmetric.algorithm');
  if (algorithm === TPM_ALG.NULL) return null;
  if (algorithm !== TPM_ALG.AES && algorithm !== TPM_ALG.SM4 && algorithm !== TPM_ALG.CAMELLIA) {
    throw new TpmAttestationError('tpm/unsupported', `symmetric algorithm 0x${hex4(algorithm)} is not supported`);
  }
  const keyBits = r.u16('symmetric.keyBits');
  const mode = r.u16('symmetric.mode');
  return { algorithm, keyBits, mode };
}

const HASH_DETAIL_RSA_SCHEMES: ReadonlySet<number> = new Set([TPM_ALG.RSASSA, TPM_ALG.RSAPSS, TPM_ALG.OAEP]);
const HASH_DETAIL_ECC_SCHEMES: ReadonlySet<number> = new Set([TPM_ALG.ECDSA, TPM_ALG.ECDH, TPM_ALG.SM2, TPM_ALG.ECSCHNORR, TPM_ALG.ECMQV]);
const KDF_SCHEMES: ReadonlySet<number> = new Set([TPM_ALG.MGF1, TPM_ALG.KDF1_SP800_56A, TPM_ALG.KDF2, TPM_ALG.KDF1_SP800_108]);

function readRsaScheme(r: TpmReader): TpmScheme | null {
  const scheme = r.u16('scheme.scheme');
  if (scheme === TPM_ALG.NULL) return null;
  if (scheme === TPM_ALG.RSAES) return { scheme, hashAlg: undefined }; // TPMS_EMPTY details
  if (!HASH_DETAIL_RSA_SCHEMES.has(scheme)) throw new TpmAttestationError('tpm/unsupported', `RSA scheme 0x${hex4(scheme)} is not supported`);
  return { scheme, hashAlg: r.u16('scheme.hashAlg') };
}

function readEccScheme(r: TpmReader): TpmScheme | null {
  const scheme = r.u16('scheme.scheme');
  if (scheme === TPM_ALG.NULL) return null;
  if (scheme === TPM_ALG.ECDAA) return { scheme, hashAlg: r.u16('scheme.hashAlg'), count: r.u16('scheme.count') };
  if (!HASH_DETAIL_ECC_SCHEMES.has(scheme)) throw new TpmAttestationError('tpm/unsupported', `ECC scheme 0x${hex4(scheme)} is not supported`);
  return { scheme, hashAlg: r.u16('scheme.hashAlg') };
}

function readKdfScheme(r: TpmReader): TpmScheme | null {
  const scheme = r.u16('kdf.scheme');
  if (scheme === TPM_ALG.NULL) return null;
  if (!KDF_SCHEMES.has(scheme)) throw new TpmAttestationError('tpm/unsupported', `KDF scheme 0x${hex4(scheme)} is not supported`);
  return { scheme, hashAlg: r.u16('kdf.hashAlg') };
}

const CURVES: ReadonlyMap<number, { curve: TpmEccPublic['curve']; size: number }> = new Map([
  [TPM_ECC_CURVE.NIST_P256, { curve: 'P-256', size: 32 }],
  [TPM_ECC_CURVE.NIST_P384, { curve: 'P-384', size: 48 }],
  [TPM_ECC_CURVE.NIST_P521, { curve: 'P-521', size: 66 }],
]);

function readTpmtPublic(r: TpmReader): TpmPublic {
  const start = r.offset;
  const type = r.u16('type');
  if (type !== TPM_ALG.RSA && type !== TPM_ALG.ECC) {
    throw new TpmAttestationError('tpm/unsupported', `public area type 0x${hex4(type)} is not supported (RSA and ECC only)`);
  }
  const nameAlgId = r.u16('nameAlg');
  const nameAlg = strongHashOf(nameAlgId, 'nameAlg');
  const objectAttributes = r.u32('objectAttributes');
  const authPolicy = r.tpm2b(MAX_DIGEST_BYTES, 'authPolicy');
  if (authPolicy.length !== 0 && authPolicy.length !== HASH_SIZE[nameAlg]) {
    malformed('authPolicy is neither empty nor a digest of the nameAlg (Part 2 §12.2.4)');
  }
  const symmetric = readSymDefObject(r);
  if (type === TPM_ALG.RSA) {
    const scheme = readRsaScheme(r);
    const keyBits = r.u16('keyBits');
    const rawExponent = r.u32('exponent');
    const modulus = r.tpm2b(MAX_RSA_KEY_BYTES, 'unique.rsa');
    if (keyBits < 1024 || keyBits % 8 !== 0 || modulus.length !== keyBits / 8) {
      malformed(`RSA modulus of ${modulus.length * 8} bits does not match keyBits ${keyBits}`);
    }
    if ((modulus[0]! & 0x80) === 0) malformed('RSA modulus is shorter than keyBits');
    const exponent = rawExponent === 0 ? 65537 : rawExponent;
    if (exponent < 3 || exponent % 2 === 0) malformed('RSA exponent must be odd and at least 3');
    return { type: 'rsa', nameAlg, nameAlgId, objectAttributes, authPolicy, symmetric, scheme, keyBits, exponent, modulus, tpmtPublic: r.since(start) };
  }
  const scheme = readEccScheme(r);
  const curveId = r.u16('curveID');
  const kdf = readKdfScheme(r);
  const x = r.tpm2b(MAX_ECC_KEY_BYTES, 'unique.ecc.x');
  const y = r.tpm2b(MAX_ECC_KEY_BYTES, 'unique.ecc.y');
  const c = CURVES.get(curveId);
  if (c === undefined) throw new TpmAttestationError('tpm/unsupported', `ECC curve 0x${hex4(curveId)} is not supported`);
  if (x.length === 0 || y.length === 0 || x.length > c.size || y.length > c.size) malformed('ECC point coordinates do not fit the curve');
  return { type: 'ecc', nameAlg, nameAlgId, objectAttributes, authPolicy, symmetric, scheme, curveId, curve: c.curve, kdf, x, y, tpmtPublic: r.since(start) };
}

/**
 * Parse a TPM2B_PUBLIC (what tpm2_createak/tpm2_createek `-u` write, Part 2 §12.2.5) or, with
 * `{ sized: false }`, a bare TPMT_PUBLIC.
 */
export function parseTpmPublic(bytes: Buffer, opts: { sized?: boolean } = {}): TpmPublic {
  if (!Buffer.isBuffer(bytes)) malformed('public area must be bytes');
  if (bytes.length > MAX_TPM_PUBLIC_BYTES) malformed(`public area larger than ${MAX_TPM_PUBLIC_BYTES} bytes`);
  const r = new TpmReader(bytes, 'TPM2B_PUBLIC');
  if (opts.sized === false) {
    const pub = readTpmtPublic(r);
    r.end();
    return pub;
  }
  const size = r.u16('size');
  if (size !== r.remaining) malformed(`TPM2B_PUBLIC size ${size} does not match the ${r.remaining} bytes that follow`);
  const pub = readTpmtPublic(r);
  r.end();
  return pub;
}

/** The object's Name (Part 1 §16): nameAlg (UINT16) || H_nameAlg(TPMT_PUBLIC). */
export function tpmObjectName(pub: TpmPublic): Buffer {
  return Buffer.concat([u16be(pub.nameAlgId), createHash(pub.nameAlg).update(pub.tpmtPublic).digest()]);
}

/** TPM_RH_ENDORSEMENT (Part 2 §7.4): the hierarchy of the EK; its qualified name is the handle itself. */
export const TPM_RH_ENDORSEMENT = 0x4000000b;

/**
 * The Qualified Name of an object (Part 1 §16): QN(B) = nameAlg_B || H_nameAlg_B(QN(parent) || Name(B)),
 * where the QN of a hierarchy is its handle. For an EK (a primary key of the endorsement hierarchy):
 * `qualifiedName(u32(TPM_RH_ENDORSEMENT), ek)`; for an AK under it: `qualifiedName(qnEk, ak)`.
 */
export function tpmQualifiedName(parentQualifiedName: Buffer, pub: TpmPublic): Buffer {
  const digest = createHash(pub.nameAlg).update(parentQualifiedName).update(tpmObjectName(pub)).digest();
  return Buffer.concat([u16be(pub.nameAlgId), digest]);
}

function leftPad(b: Buffer, size: number): Buffer {
  if (b.length === size) return b;
  const out = Buffer.alloc(size);
  b.copy(out, size - b.length);
  return out;
}

function minimalUint(n: number): Buffer {
  const b = u32be(n);
  let i = 0;
  while (i < 3 && b[i] === 0) i++;
  return b.subarray(i);
}

/** The public key of a TPM public area as a node:crypto KeyObject (the point is checked to be on the curve). */
export function tpmPublicKey(pub: TpmPublic): KeyObject {
  try {
    if (pub.type === 'rsa') {
      return createPublicKey({
        key: { kty: 'RSA', n: pub.modulus.toString('base64url'), e: minimalUint(pub.exponent).toString('base64url') },
        format: 'jwk',
      });
    }
    const size = CURVES.get(pub.curveId)!.size;
    return createPublicKey({
      key: { kty: 'EC', crv: pub.curve, x: leftPad(pub.x, size).toString('base64url'), y: leftPad(pub.y, size).toString('base64url') },
      format: 'jwk',
    });
  } catch (e) {
    throw new TpmAttestationError('tpm/malformed', 'the public area does not hold a valid public key', { cause: e });
  }
}

// ---------------------------------------------------------------------------------------------------
// TPMS_ATTEST (Part 2 §10.12.12) and TPMS_QUOTE_INFO (§10.12.4)

/** TPMS_PCR_SELECTION (Part 2 §10.6.2), decoded to PCR indices. */
export interface TpmPcrSelection {
  hashAlg: number;
  /** Ascending PCR indices whose bit is set in pcrSelect. */
  pcrs: number[];
  /** The raw pcrSelect bitmap. */
  select: Buffer;
}

export interface TpmClockInfo {
  clock: bigint;
  resetCount: number;
  restartCount: number;
  safe: boolean;
}

export interface TpmAttest {
  magic: number;
  type: number;
  qualifiedSigner: Buffer;
  extraData: Buffer;
  clockInfo: TpmClockInfo;
  firmwareVersion: bigint;
  /** Present when type is TPM_ST_ATTEST_QUOTE. */
  quote: { pcrSelection: TpmPcrSelection[]; pcrDigest: Buffer } | undefined;
}

function readPcrSelectionList(r: TpmReader): TpmPcrSelection[] {
  const count = r.u32('pcrSelect.count');
  if (count > MAX_PCR_SELECTIONS) malformed(`TPML_PCR_SELECTION has ${count} entries, at most ${MAX_PCR_SELECTIONS} allowed`);
  const out: TpmPcrSelection[] = [];
  for (let i = 0; i < count; i++) {
    const hashAlg = r.u16('pcrSelections.hash');
    const sizeofSelect = r.u8('pcrSelections.sizeofSelect');
    if (sizeofSelect > MAX_PCR_SELECT_BYTES) malformed(`pcrSelect of ${sizeofSelect} bytes, at most ${MAX_PCR_SELECT_BYTES} allowed`);
    const select = r.bytes(sizeofSelect, 'pcrSelections.pcrSelect');
    const pcrs: number[] = [];
    for (let p = 0; p < sizeofSelect * 8; p++) if ((select[p >> 3]! & (1 << (p & 7))) !== 0) pcrs.push(p);
    out.push({ hashAlg, pcrs, select });
  }
  return out;
}

/**
 * Parse a TPMS_ATTEST (what `tpm2_quote -m` writes). The magic and type are returned, not checked: the
 * caller verifies the signature first and then refuses anything that is not a TPM-generated quote.
 * For a quote the attested TPMS_QUOTE_INFO is decoded and the structure must end there.
 */
export function parseTpmsAttest(bytes: Buffer): TpmAttest {
  if (!Buffer.isBuffer(bytes)) malformed('attestation must be bytes');
  if (bytes.length > MAX_TPM_ATTEST_BYTES) malformed(`attestation larger than ${MAX_TPM_ATTEST_BYTES} bytes`);
  const r = new TpmReader(bytes, 'TPMS_ATTEST');
  const magic = r.u32('magic');
  const type = r.u16('type');
  const qualifiedSigner = r.tpm2b(MAX_NAME_BYTES, 'qualifiedSigner');
  const extraData = r.tpm2b(MAX_DIGEST_BYTES, 'extraData');
  const clock = r.u64('clockInfo.clock');
  const resetCount = r.u32('clockInfo.resetCount');
  const restartCount = r.u32('clockInfo.restartCount');
  const safeByte = r.u8('clockInfo.safe');
  if (safeByte > 1) malformed('clockInfo.safe is not a TPMI_YES_NO');
  const firmwareVersion = r.u64('firmwareVersion');
  let quote: TpmAttest['quote'];
  if (type === TPM_ST_ATTEST_QUOTE) {
    const pcrSelection = readPcrSelectionList(r);
    const pcrDigest = r.tpm2b(MAX_DIGEST_BYTES, 'pcrDigest');
    r.end();
    quote = { pcrSelection, pcrDigest };
  }
  return {
    magic,
    type,
    qualifiedSigner,
    extraData,
    clockInfo: { clock, resetCount, restartCount, safe: safeByte === 1 },
    firmwareVersion,
    quote,
  };
}

// ---------------------------------------------------------------------------------------------------
// TPMT_SIGNATURE (Part 2 §11.3.4)

export type TpmSignature =
  | { sigAlg: typeof TPM_ALG.RSASSA | typeof TPM_ALG.RSAPSS; hashAlg: number; signature: Buffer }
  | { sigAlg: typeof TPM_ALG.ECDSA; hashAlg: number; r: Buffer; s: Buffer };

/** Parse a TPMT_SIGNATURE (what `tpm2_quote -s` writes by default). RSASSA, RSAPSS and ECDSA only. */
export function parseTpmtSignature(bytes: Buffer): TpmSignature {
  if (!Buffer.isBuffer(bytes)) malformed('signature must be bytes');
  if (bytes.length > MAX_TPM_SIGNATURE_BYTES) malformed(`signature larger than ${MAX_TPM_SIGNATURE_BYTES} bytes`);
  const r = new TpmReader(bytes, 'TPMT_SIGNATURE');
  const sigAlg = r.u16('sigAlg');
  let out: TpmSignature;
  if (sigAlg === TPM_ALG.RSASSA || sigAlg === TPM_ALG.RSAPSS) {
    const hashAlg = r.u16('hash');
    out = { sigAlg, hashAlg, signature: r.tpm2b(MAX_RSA_KEY_BYTES, 'sig') };
  } else if (sigAlg === TPM_ALG.ECDSA) {
    const hashAlg = r.u16('hash');
    const sr = r.tpm2b(MAX_ECC_KEY_BYTES, 'signatureR');
    const ss = r.tpm2b(MAX_ECC_KEY_BYTES, 'signatureS');
    out = { sigAlg, hashAlg, r: sr, s: ss };
  } else {
    throw new TpmAttestationError('tpm/unsupported', `signature algorithm 0x${hex4(sigAlg)} is not supported (RSASSA, RSAPSS, ECDSA)`);
  }
  r.end();
  return out;
}

/**
 * Verify a TPMT_SIGNATURE over `message` with the key of `pub`. The signature's algorithm must fit the
 * key type and, when the key has a scheme, be that scheme with that hash (Part 3 §18.2: a key with a
 * scheme only signs with it). Returns false for a signature that does not verify; throws
 * `tpm/unsupported` for a combination that can never be valid.
 */
export function verifyTpmSignature(pub: TpmPublic, sig: TpmSignature, message: Buffer): boolean {
  const hash = strongHashOf(sig.hashAlg, 'signature');
  if (pub.scheme !== null && (pub.scheme.scheme !== sig.sigAlg || pub.scheme.hashAlg !== sig.hashAlg)) {
    throw new TpmAttestationError('tpm/unsupported', 'signature scheme differs from the key scheme');
  }
  const key = tpmPublicKey(pub);
  try {
    if (sig.sigAlg === TPM_ALG.ECDSA) {
      if (pub.type !== 'ecc') throw new TpmAttestationError('tpm/unsupported', 'ECDSA signature from a non-ECC key');
      const size = CURVES.get(pub.curveId)!.size;
      if (sig.r.length > size || sig.s.length > size) return false;
      return cryptoVerify(hash, message, { key, dsaEncoding: 'ieee-p1363' }, Buffer.concat([leftPad(sig.r, size), leftPad(sig.s, size)]));
    }
    if (pub.type !== 'rsa') throw new TpmAttestationError('tpm/unsupported', 'RSA signature from a non-RSA key');
    if (sig.signature.length !== pub.modulus.length) return false;
    if (sig.sigAlg === TPM_ALG.RSASSA) {
      return cryptoVerify(hash, message, { key, padding: constants.RSA_PKCS1_PADDING }, sig.signature);
    }
    // RSASSA-PSS: the TPM chooses the salt length (the digest size, or less for small keys); accept any.
    return cryptoVerify(hash, message, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO }, sig.signature);
  } catch (e) {
    if (e instanceof TpmAttestationError) throw e;
    return false;
  }
}

/**
 * The PCR digest a quote carries (Part 3 §18.4): H(PCR values concatenated in the order of the selection,
 * lowest index first within each bank), with the signing scheme's hash.
 */
export function pcrDigest(hash: TpmHashName, valuesInSelectionOrder: readonly Buffer[]): Buffer {
  const h = createHash(hash);
  for (const v of valuesInSelectionOrder) h.update(v);
  return h.digest();
}
