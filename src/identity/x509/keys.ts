/**
 * ECDSA P-256 keys and their DER forms.
 *
 * OpenSSL 3's generic encoders/decoders are slow (on these machines exporting an SPKI costs about as much
 * as a signature and importing one more than an ECDSA verify), so SPKI and PKCS#8 are assembled here from
 * the JWK coordinates, which node:crypto exports cheaply, and public keys are imported through JWK.
 */
import { createECDH, createPrivateKey, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { EdgewardError } from '../errors.js';
import { bitString, children, decodeBitString, decodeOid, expectTag, oid, parseOne, seq, Tag } from '../asn1/der.js';
import { OID } from './oids.js';

export type KeyErrorCode = 'key/unsupported' | 'key/malformed';
export class KeyError extends EdgewardError<KeyErrorCode> {}

/**
 * A fresh P-256 key pair. Generated through ECDH (raw scalar and point), not `generateKeyPairSync`:
 * on Node 20, exporting a JWK from a key made by `generateKeyPairSync` can deadlock when a GC during
 * the export finalises the key's generation job, which takes the same mutex (seen here: the process
 * hangs at 0% CPU in ~KeyGenJob). ECDH generation is also faster (~33k/s vs ~28k/s on one core), and the
 * SPKI and PKCS#8 forms come from fixed templates without touching OpenSSL's encoders.
 */
export interface KeyPair {
  /** SubjectPublicKeyInfo DER. */
  readonly spki: Buffer;
  /** Unencrypted PKCS#8 DER (Workload API delivery form). */
  pkcs8(): Buffer;
  /** Imported on first use (an import costs about one signature verify). */
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

// SPKI buffers produced by generateP256 in this process: their points came from OpenSSL's own key
// generation, so issuers need not import them again to prove they are usable (an import costs about
// one ECDSA verify). Keyed by object identity; frozen copies are never handed out mutable.
const generatedSpkis = new WeakSet<Buffer>();

/** True when `spki` is the very buffer `generateP256` returned (so it is a valid P-256 key). */
export function isGeneratedSpki(spki: Buffer): boolean {
  return generatedSpkis.has(spki);
}

export function generateP256(): KeyPair {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  const point = ecdh.getPublicKey();
  let d: Buffer | undefined = ecdh.getPrivateKey();
  if (d.length < 32) d = Buffer.concat([Buffer.alloc(32 - d.length), d]);
  const scalar = d;
  const spki = Buffer.concat([P256_SPKI_PREFIX, point]);
  generatedSpkis.add(spki);
  let priv: KeyObject | undefined;
  let pub: KeyObject | undefined;
  const jwk = (withD: boolean): JsonWebKey => ({
    kty: 'EC',
    crv: 'P-256',
    x: point.subarray(1, 33).toString('base64url'),
    y: point.subarray(33).toString('base64url'),
    ...(withD ? { d: scalar.toString('base64url') } : {}),
  });
  return {
    spki,
    pkcs8: () => Buffer.concat([P256_PKCS8_PREFIX, scalar, P256_PKCS8_MID, point]),
    get privateKey(): KeyObject {
      priv ??= createPrivateKey({ key: jwk(true), format: 'jwk' });
      return priv;
    },
    get publicKey(): KeyObject {
      pub ??= createPublicKey({ key: jwk(false), format: 'jwk' });
      return pub;
    },
  };
}

// SEQUENCE { SEQUENCE { ecPublicKey, prime256v1 }, BIT STRING 04||X||Y } : fixed 26-byte header.
const P256_SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex');
// PKCS#8 (RFC 5208/5915) for P-256 with the public key included, fixed layout.
const P256_PKCS8_PREFIX = Buffer.from('308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b0201010420', 'hex');
const P256_PKCS8_MID = Buffer.from('a144034200', 'hex');

function b64u(s: string | undefined): Buffer {
  if (s === undefined) throw new KeyError('key/malformed', 'JWK coordinate missing');
  return Buffer.from(s, 'base64url');
}

function p256Point(k: KeyObject): Buffer {
  const jwk = k.export({ format: 'jwk' });
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256') throw new KeyError('key/unsupported', 'only ECDSA P-256 keys are issued');
  const x = b64u(jwk.x);
  const y = b64u(jwk.y);
  return Buffer.concat([Buffer.from([4]), x, y]);
}

/**
 * SubjectPublicKeyInfo DER of a P-256 key (public or private KeyObject). Other key types use OpenSSL.
 * Do not pass a key straight from `generateKeyPairSync` (see `generateP256` on the Node 20 deadlock).
 */
export function spkiFromPublicKey(k: KeyObject): Buffer {
  if (k.asymmetricKeyType === 'ec' && k.asymmetricKeyDetails?.namedCurve === 'prime256v1') {
    return Buffer.concat([P256_SPKI_PREFIX, p256Point(k)]);
  }
  const pub = k.type === 'private' ? createPublicKey(k) : k;
  return pub.export({ format: 'der', type: 'spki' });
}

/** Unencrypted PKCS#8 DER of a P-256 private key (what the Workload API delivers, Workload API 5.2). */
export function pkcs8FromPrivateKey(k: KeyObject): Buffer {
  if (k.type !== 'private') throw new KeyError('key/malformed', 'not a private key');
  if (k.asymmetricKeyType === 'ec' && k.asymmetricKeyDetails?.namedCurve === 'prime256v1') {
    const jwk = k.export({ format: 'jwk' });
    const d = b64u(jwk.d);
    if (d.length !== 32) throw new KeyError('key/malformed', 'bad P-256 scalar');
    return Buffer.concat([P256_PKCS8_PREFIX, d, P256_PKCS8_MID, p256Point(k)]);
  }
  return k.export({ format: 'der', type: 'pkcs8' });
}

export type KeyAlgorithm = 'ec-p256' | 'ec-p384' | 'rsa';

export interface SpkiInfo {
  algorithm: KeyAlgorithm;
  /** For EC keys: the uncompressed point. */
  point?: Buffer;
}

/** Inspect an SPKI without importing it (cheap): algorithm and, for EC, the point. */
export function inspectSpki(spki: Buffer): SpkiInfo {
  const top = children(parseOne(spki, Tag.SEQUENCE));
  const algId = children(expectTag(top[0], Tag.SEQUENCE, 'SPKI algorithm'));
  const alg = decodeOid(expectTag(algId[0], Tag.OID, 'SPKI algorithm OID').value);
  const bits = decodeBitString(expectTag(top[1], Tag.BIT_STRING, 'SPKI key').value);
  if (top.length !== 2 || bits.unused !== 0) throw new KeyError('key/malformed', 'malformed SubjectPublicKeyInfo');
  if (alg === OID.ecPublicKey) {
    const curve = decodeOid(expectTag(algId[1], Tag.OID, 'EC curve').value);
    const size = curve === OID.prime256v1 ? 32 : curve === OID.secp384r1 ? 48 : 0;
    if (size === 0) throw new KeyError('key/unsupported', 'unsupported EC curve');
    if (bits.bytes.length !== 1 + 2 * size || bits.bytes[0] !== 4) {
      throw new KeyError('key/unsupported', 'only uncompressed EC points are accepted');
    }
    return { algorithm: size === 32 ? 'ec-p256' : 'ec-p384', point: bits.bytes };
  }
  if (alg === OID.rsaEncryption) return { algorithm: 'rsa' };
  throw new KeyError('key/unsupported', `unsupported public key algorithm ${alg}`);
}

/**
 * Import an SPKI as a KeyObject. EC keys go through JWK, which avoids OpenSSL 3's slow DER decoder
 * (and still makes OpenSSL check the point is on the curve). RSA keys must be at least 2048 bits.
 */
export function importSpki(spki: Buffer): KeyObject {
  const info = inspectSpki(spki);
  try {
    if (info.point !== undefined) {
      const size = (info.point.length - 1) / 2;
      return createPublicKey({
        key: {
          kty: 'EC',
          crv: info.algorithm === 'ec-p256' ? 'P-256' : 'P-384',
          x: info.point.subarray(1, 1 + size).toString('base64url'),
          y: info.point.subarray(1 + size).toString('base64url'),
        },
        format: 'jwk',
      });
    }
    const key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    const bitsLen = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bitsLen < 2048) throw new KeyError('key/unsupported', 'RSA keys under 2048 bits are refused');
    return key;
  } catch (e) {
    if (e instanceof KeyError) throw e;
    throw new KeyError('key/malformed', 'public key is not valid', { cause: e });
  }
}

/** Encode an SPKI for an algorithm identifier and key bits (used by tests and builders). */
export function encodeSpki(algOid: string, params: Buffer | undefined, keyBits: Buffer): Buffer {
  return seq(params === undefined ? seq(oid(algOid)) : seq(oid(algOid), params), bitString(keyBits));
}
