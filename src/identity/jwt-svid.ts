/**
 * JWT-SVID minting and validation (SPIFFE JWT-SVID standard, "JWT-SVID" below; RFC 7515/7518/7519).
 *
 * Implementation note: both directions use node:crypto directly for the signature and a strict parser
 * (strict-json.ts) for header and claims. jose 6 goes through WebCrypto and reached only about 40 % of
 * a raw node:crypto ES256 sign (SignJWT) and 55-65 % of a raw verify (jwtVerify / compactVerify) on
 * one core here, under the 60 % throughput target; this module reaches about 90 % of both. The
 * JWT-SVID profile is small and closed enough that doing it here is simpler to audit than restricting a
 * general JOSE library; the tests cross-check interoperability against jose in both directions.
 *
 * Minting (what we produce, SPIRE-compatible):
 * - header exactly `{"alg":"ES256","kid":<kid>,"typ":"JWT"}` (JWT-SVID 2; kid always set because
 *   go-spiffe/SPIRE validators require it);
 * - claims `sub`, `aud` (a string for one audience, an array for several), `exp`, `iat` in seconds
 *   (JWT-SVID 3.1-3.3); `exp` never exceeds the signing key's `notAfter`.
 *
 * Validation (deny by default; the first failing rule decides the error code):
 * 1. JWS Compact Serialization only, three base64url parts, at most 16 KiB (JWT-SVID 1, 5.1).
 * 2. Header members only `alg`, `kid`, `typ` (JWT-SVID 2); duplicate member names are rejected
 *    (RFC 7515 4); `alg` one of RS/ES/PS 256/384/512 (JWT-SVID 2.1, 4); `typ` absent, `JWT` or `JOSE`
 *    (JWT-SVID 2.3); `kid` required (optional in JWT-SVID 2.2, but required by go-spiffe and SPIRE).
 * 3. `sub` is a SPIFFE ID with a path (JWT-SVID 3.1); the key is looked up by `kid` ONLY in the bundle
 *    of the trust domain of `sub` (Trust Domain and Bundle 3), and must suit `alg` (an EC P-256 key
 *    only with ES256, RSA >= 2048 bits only with RS* and PS*, RFC 7518 3.3-3.5).
 * 4. The signature over the exact `header.payload` text (RFC 7515 5.2).
 * 5. `aud` present with >= 1 value containing the validator's audience (JWT-SVID 3.2); `exp` present
 *    and not past (JWT-SVID 3.3, RFC 7519 4.1.4); `nbf`/`iat` not in the future (RFC 7519 4.1.5-6);
 *    time rules allow `leewayMs` of clock skew.
 *
 * Leeway default: 30 s. go-jose (go-spiffe) uses 1 min; JWT-SVIDs live 5 min by default (SPIRE), so
 * 30 s keeps the accepted-after-expiry window at 10 % of a token's life while covering NTP-synchronised
 * hosts. Callers with poorly synchronised edge clocks may pass up to MAX_JWT_LEEWAY_MS (5 min).
 *
 * Pure module: no I/O, no wall clock (time comes in as `now`, epoch ms).
 */
import {
  constants as cryptoConstants,
  createPublicKey,
  KeyObject,
  sign as cryptoSign,
  verify as cryptoVerify,
  type JsonWebKey,
} from 'node:crypto';
import { EdgewardError } from './errors.js';
import { SpiffeId, SpiffeIdError, type TrustDomain } from './spiffe-id.js';
import { JsonError, parseStrictJson } from './strict-json.js';

export const JWT_SVID_ERROR_CODES = [
  /** Not a JWS compact serialization, bad base64url, bad UTF-8 or JSON, not a JSON object. */
  'jwt-svid/malformed',
  /** Longer than MAX_JWT_SVID_BYTES. */
  'jwt-svid/too-large',
  /** Header member not allowed, `kid` missing, `typ` not JWT/JOSE, `alg` missing. */
  'jwt-svid/bad-header',
  /** `alg` outside RS/ES/PS 256/384/512 (none, HS*, EdDSA, ...). */
  'jwt-svid/unsupported-alg',
  /** No key with that `kid` in the bundle of the subject's trust domain. */
  'jwt-svid/unknown-kid',
  /** No JWT authorities at all for the subject's trust domain. */
  'jwt-svid/untrusted-domain',
  /** The bundle key cannot be used (private or secret material, unsupported type, weak RSA). */
  'jwt-svid/bad-key',
  /** The key found does not suit `alg` (e.g. an EC P-256 key with ES384 or RS256). */
  'jwt-svid/alg-key-mismatch',
  'jwt-svid/bad-signature',
  'jwt-svid/expired',
  /** `nbf` or `iat` in the future beyond the leeway. */
  'jwt-svid/not-yet-valid',
  'jwt-svid/wrong-audience',
  /** `sub`, `aud` (or an empty `aud` array) or `exp` absent. */
  'jwt-svid/missing-claim',
  /** A registered claim of the wrong JSON type (`aud` not string/string[], `exp` not a number...). */
  'jwt-svid/bad-claim',
  /** `sub` is not a SPIFFE ID or has no path. */
  'jwt-svid/bad-subject',
  /** Invalid arguments from the caller (mint inputs, empty validator audience, bad leeway). */
  'jwt-svid/bad-request',
  /** Minting: the signing key's notAfter is not after `now`. */
  'jwt-svid/signer-expired',
] as const;
export type JwtSvidErrorCode = (typeof JWT_SVID_ERROR_CODES)[number];
export class JwtSvidError extends EdgewardError<JwtSvidErrorCode> {}

/** Where a validator finds the JWT authorities (kid -> public key) of one trust domain. */
export interface JwtBundleSource {
  jwtAuthoritiesFor(td: TrustDomain): ReadonlyMap<string, KeyObject | JsonWebKey> | undefined;
}

/** The signature algorithms a JWT-SVID may use (JWT-SVID 2.1). */
export const JWT_SVID_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512'] as const;
export type JwtSvidAlgorithm = (typeof JWT_SVID_ALGORITHMS)[number];

/** Tokens longer than this are refused before any parsing (architecture.md 9). */
export const MAX_JWT_SVID_BYTES = 16 * 1024;
export const DEFAULT_JWT_LEEWAY_MS = 30_000;
export const MAX_JWT_LEEWAY_MS = 5 * 60_000;
export const MAX_JWT_AUDIENCES = 32;
/** Longest audience value accepted when minting (a SPIFFE ID may be 2048 bytes, SPIFFE-ID 2.3). */
export const MAX_JWT_AUDIENCE_LENGTH = 2048;
export const MAX_JWT_KID_LENGTH = 1024;
/** Shortest and longest JWT-SVID lifetime we mint. */
export const MIN_JWT_TTL_MS = 1000;
export const MAX_JWT_TTL_MS = 7 * 24 * 3600_000;

// ---------------------------------------------------------------------------------------------------
// Algorithms and keys

interface AlgInfo {
  readonly name: JwtSvidAlgorithm;
  readonly family: 'ec' | 'rsa';
  readonly hash: 'sha256' | 'sha384' | 'sha512';
  /** EC: OpenSSL curve name and P1363 signature length. */
  readonly curve?: 'prime256v1' | 'secp384r1' | 'secp521r1';
  readonly sigLen?: number;
  /** RSASSA-PSS with salt length = hash length (RFC 7518 3.5). */
  readonly pssSalt?: number;
}

const ALGS: ReadonlyMap<string, AlgInfo> = new Map<string, AlgInfo>([
  ['RS256', { name: 'RS256', family: 'rsa', hash: 'sha256' }],
  ['RS384', { name: 'RS384', family: 'rsa', hash: 'sha384' }],
  ['RS512', { name: 'RS512', family: 'rsa', hash: 'sha512' }],
  ['ES256', { name: 'ES256', family: 'ec', hash: 'sha256', curve: 'prime256v1', sigLen: 64 }],
  ['ES384', { name: 'ES384', family: 'ec', hash: 'sha384', curve: 'secp384r1', sigLen: 96 }],
  ['ES512', { name: 'ES512', family: 'ec', hash: 'sha512', curve: 'secp521r1', sigLen: 132 }],
  ['PS256', { name: 'PS256', family: 'rsa', hash: 'sha256', pssSalt: 32 }],
  ['PS384', { name: 'PS384', family: 'rsa', hash: 'sha384', pssSalt: 48 }],
  ['PS512', { name: 'PS512', family: 'rsa', hash: 'sha512', pssSalt: 64 }],
]);

/** A bundle key, checked once and cached by object identity. */
interface ResolvedKey {
  readonly key: KeyObject;
  readonly family: 'ec' | 'rsa' | 'rsa-pss';
  readonly curve: string | undefined;
  /** The JWK's `alg` member, when it restricts the key to one algorithm (RFC 7517 4.4). */
  readonly jwkAlg: string | undefined;
  /** Pre-built verify input for ECDSA (JWS uses IEEE P1363 r||s, RFC 7518 3.4). */
  readonly ecInput: { key: KeyObject; dsaEncoding: 'ieee-p1363' } | undefined;
}

const EC_JWK_CURVES: ReadonlyMap<string, string> = new Map([
  ['P-256', 'prime256v1'],
  ['P-384', 'secp384r1'],
  ['P-521', 'secp521r1'],
]);
/** JWK members that carry private or secret key material (RFC 7518 6.2.2, 6.3.2, 6.4.1). */
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;
export const MIN_RSA_BITS = 2048;

// Caches are keyed by the key object itself: bundles are immutable (TrustBundle freezes its JWKs), so
// a key object that was checked once need not be re-imported. Failures are cached too, so a bad key in
// a bundle cannot be used to make every validation pay for an import.
const keyCache = new WeakMap<object, ResolvedKey | JwtSvidError>();

function badKey(message: string, cause?: unknown): JwtSvidError {
  return new JwtSvidError('jwt-svid/bad-key', message, cause === undefined ? undefined : { cause });
}

function resolveFromKeyObject(k: KeyObject, jwkAlg: string | undefined): ResolvedKey | JwtSvidError {
  // Bundles carry public keys only; a private (or secret) key here is a configuration error.
  if (k.type !== 'public') return badKey('a JWT-SVID authority must be an asymmetric public key');
  const pub = k;
  const type = pub.asymmetricKeyType;
  if (type === 'ec') {
    const curve = pub.asymmetricKeyDetails?.namedCurve;
    if (curve !== 'prime256v1' && curve !== 'secp384r1' && curve !== 'secp521r1') {
      return badKey(`unsupported EC curve ${String(curve)} (RFC 7518 3.4)`);
    }
    return { key: pub, family: 'ec', curve, jwkAlg, ecInput: { key: pub, dsaEncoding: 'ieee-p1363' } };
  }
  if (type === 'rsa' || type === 'rsa-pss') {
    const bits = pub.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) return badKey(`RSA keys must have at least ${MIN_RSA_BITS} bits (RFC 7518 3.3)`);
    return { key: pub, family: type, curve: undefined, jwkAlg, ecInput: undefined };
  }
  return badKey(`unsupported key type ${String(type)} (JWT-SVID 2.1)`);
}

function resolveFromJwk(jwk: JsonWebKey): ResolvedKey | JwtSvidError {
  for (const m of PRIVATE_JWK_MEMBERS) {
    if (jwk[m] !== undefined) return badKey('a JWT-SVID authority JWK must not contain private key material');
  }
  if (jwk.kty !== 'EC' && jwk.kty !== 'RSA') return badKey(`unsupported JWK key type ${String(jwk.kty)}`);
  if (jwk.kty === 'EC' && (typeof jwk.crv !== 'string' || !EC_JWK_CURVES.has(jwk.crv))) {
    return badKey(`unsupported EC curve ${String(jwk.crv)}`);
  }
  if (jwk.alg !== undefined && (typeof jwk.alg !== 'string' || !ALGS.has(jwk.alg))) {
    return badKey(`JWK alg ${String(jwk.alg)} is not a JWT-SVID algorithm`);
  }
  let k: KeyObject;
  try {
    // Only the public members are handed to OpenSSL, which also checks that an EC point is on the curve.
    const pub: JsonWebKey =
      jwk.kty === 'EC' ? { kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y } : { kty: 'RSA', n: jwk.n, e: jwk.e };
    k = createPublicKey({ key: pub, format: 'jwk' });
  } catch (e) {
    return badKey('JWT-SVID authority JWK is not a valid public key', e);
  }
  return resolveFromKeyObject(k, jwk.alg);
}

function resolveKey(entry: KeyObject | JsonWebKey): ResolvedKey {
  let r = keyCache.get(entry);
  if (r === undefined) {
    if (typeof entry !== 'object' || entry === null) throw badKey('JWT-SVID authority is not a key');
    r = isKeyObject(entry) ? resolveFromKeyObject(entry, undefined) : resolveFromJwk(entry);
    keyCache.set(entry, r);
  }
  if (r instanceof JwtSvidError) throw r;
  return r;
}

function isKeyObject(x: object): x is KeyObject {
  return x instanceof KeyObject;
}

function keySuits(k: ResolvedKey, alg: AlgInfo): boolean {
  if (k.jwkAlg !== undefined && k.jwkAlg !== alg.name) return false;
  if (alg.family === 'ec') return k.family === 'ec' && k.curve === alg.curve;
  if (k.family === 'rsa') return true;
  return k.family === 'rsa-pss' && alg.pssSalt !== undefined; // an RSA-PSS key only signs PS*
}

// ---------------------------------------------------------------------------------------------------
// Encoding helpers

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const B64URL = /^[A-Za-z0-9_-]+$/;

function fail(code: JwtSvidErrorCode, message: string, cause?: unknown, detail?: Record<string, string | number | boolean>): never {
  const opts: { cause?: unknown; detail?: Record<string, string | number | boolean> } = {};
  if (cause !== undefined) opts.cause = cause;
  if (detail !== undefined) opts.detail = detail;
  throw new JwtSvidError(code, message, opts);
}

function b64urlBytes(seg: string, what: string): Buffer {
  // Buffer's base64url decoder skips invalid characters, so the alphabet is checked first (RFC 7515 2).
  if (seg.length % 4 === 1 || !B64URL.test(seg)) fail('jwt-svid/malformed', `${what} is not base64url (RFC 7515 2)`);
  return Buffer.from(seg, 'base64url');
}

function jsonObjectSegment(seg: string, what: string): Record<string, unknown> {
  const bytes = b64urlBytes(seg, what);
  let v: unknown;
  try {
    v = parseStrictJson(utf8.decode(bytes));
  } catch (e) {
    if (e instanceof JsonError) {
      fail('jwt-svid/malformed', `${what} is not valid JSON${e.code === 'json/duplicate-key' ? ' (duplicate member name, RFC 7515 4)' : ''}`, e);
    }
    fail('jwt-svid/malformed', `${what} is not UTF-8 (RFC 7515 2)`, e);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('jwt-svid/malformed', `${what} is not a JSON object`);
  return v as Record<string, unknown>;
}

function toB64url(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64url');
}

// ---------------------------------------------------------------------------------------------------
// Minting

export interface MintJwtSvidRequest {
  spiffeId: SpiffeId;
  /** One or more audiences (JWT-SVID 3.2; one is strongly recommended, JWT-SVID 7.2). */
  audience: readonly string[];
  ttlMs: number;
  /** Epoch ms. */
  now: number;
  /** The trust domain's current JWT signing key (EC P-256). */
  key: { kid: string; privateKey: KeyObject };
  /** The signing key's end of validity (epoch ms): `exp` is never after it. */
  notAfter?: number;
}

const checkedSigningKeys = new WeakSet<KeyObject>();
const HEADER_CACHE_MAX = 64;
const headerCache = new Map<string, string>();

function encodedHeader(kid: string): string {
  let h = headerCache.get(kid);
  if (h === undefined) {
    h = toB64url(JSON.stringify({ alg: 'ES256', kid, typ: 'JWT' }));
    if (headerCache.size >= HEADER_CACHE_MAX) headerCache.clear();
    headerCache.set(kid, h);
  }
  return h;
}

/** Mint a JWT-SVID synchronously (the pure core of `mintJwtSvid`). */
export function mintJwtSvidSync(r: MintJwtSvidRequest): string {
  const { spiffeId, audience, ttlMs, now, key } = r;
  if (!(spiffeId instanceof SpiffeId)) fail('jwt-svid/bad-request', 'spiffeId must be a SpiffeId');
  if (spiffeId.isTrustDomainId) fail('jwt-svid/bad-request', 'a JWT-SVID subject needs a SPIFFE ID with a path (JWT-SVID 3.1)');
  if (!Array.isArray(audience) || audience.length === 0) fail('jwt-svid/bad-request', 'at least one audience is required (JWT-SVID 3.2)');
  if (audience.length > MAX_JWT_AUDIENCES) fail('jwt-svid/bad-request', `at most ${MAX_JWT_AUDIENCES} audiences`);
  for (const a of audience) {
    if (typeof a !== 'string' || a.length === 0 || a.length > MAX_JWT_AUDIENCE_LENGTH) {
      fail('jwt-svid/bad-request', `each audience must be a non-empty string of at most ${MAX_JWT_AUDIENCE_LENGTH} characters`);
    }
  }
  if (!Number.isFinite(now)) fail('jwt-svid/bad-request', 'now must be a finite epoch-ms time');
  if (!Number.isFinite(ttlMs) || ttlMs < MIN_JWT_TTL_MS || ttlMs > MAX_JWT_TTL_MS) {
    fail('jwt-svid/bad-request', `ttlMs must be between ${MIN_JWT_TTL_MS} and ${MAX_JWT_TTL_MS}`);
  }
  const kid = key?.kid;
  if (typeof kid !== 'string' || kid.length === 0 || kid.length > MAX_JWT_KID_LENGTH) {
    fail('jwt-svid/bad-request', 'kid must be a non-empty string (required by go-spiffe/SPIRE validators)');
  }
  const privateKey = key.privateKey;
  if (!checkedSigningKeys.has(privateKey)) {
    if (
      typeof privateKey !== 'object' ||
      privateKey === null ||
      privateKey.type !== 'private' ||
      privateKey.asymmetricKeyType !== 'ec' ||
      privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1'
    ) {
      fail('jwt-svid/bad-request', 'the signing key must be an EC P-256 private key (ES256)');
    }
    checkedSigningKeys.add(privateKey);
  }
  const iat = Math.floor(now / 1000);
  let exp = Math.floor((now + ttlMs) / 1000);
  if (r.notAfter !== undefined) {
    if (!Number.isFinite(r.notAfter)) fail('jwt-svid/bad-request', 'notAfter must be a finite epoch-ms time');
    exp = Math.min(exp, Math.floor(r.notAfter / 1000)); // never outlive the signing key
    if (exp <= iat) fail('jwt-svid/signer-expired', 'the JWT signing key expires before the token could be valid');
  }
  const aud = audience.length === 1 ? audience[0] : [...audience];
  const signingInput = encodedHeader(kid) + '.' + toB64url(JSON.stringify({ sub: spiffeId.toString(), aud, exp, iat }));
  // ES256 signature is r||s (IEEE P1363), RFC 7518 3.4.
  const sig = cryptoSign('sha256', Buffer.from(signingInput, 'latin1'), { key: privateKey, dsaEncoding: 'ieee-p1363' });
  return signingInput + '.' + sig.toString('base64url');
}

/** Mint a JWT-SVID (ES256). */
export async function mintJwtSvid(r: MintJwtSvidRequest): Promise<string> {
  return mintJwtSvidSync(r);
}

// ---------------------------------------------------------------------------------------------------
// Validation

export interface ValidateJwtSvidOptions {
  /** The audience this validator identifies with (JWT-SVID 3.2). */
  audience: string;
  bundles: JwtBundleSource;
  /** Epoch ms. */
  now: number;
  /** Allowed clock skew for exp/nbf/iat; default DEFAULT_JWT_LEEWAY_MS (30 s), at most 5 min. */
  leewayMs?: number;
}

export interface ValidatedJwtSvid {
  spiffeId: SpiffeId;
  /** All claims of the token, as parsed (numbers are JS numbers). */
  claims: Record<string, unknown>;
  /** `aud` as a list (as SPIRE's ValidateJWTSVID returns it). */
  audience: string[];
  /** `exp` in epoch ms. */
  expiresAt: number;
}

const ALLOWED_HEADER_MEMBERS = new Set(['alg', 'kid', 'typ']);

function numericDate(claims: Record<string, unknown>, name: string): number | undefined {
  const v = claims[name];
  if (v === undefined) return undefined;
  // RFC 7519 2: NumericDate is a JSON number of seconds (may be non-integer).
  if (typeof v !== 'number' || !Number.isFinite(v)) fail('jwt-svid/bad-claim', `${name} must be a NumericDate (RFC 7519 2)`);
  return v * 1000;
}

/** Validate a JWT-SVID synchronously (the pure core of `validateJwtSvid`). */
export function validateJwtSvidSync(token: string, opts: ValidateJwtSvidOptions): ValidatedJwtSvid {
  const { audience, bundles, now } = opts;
  const leeway = opts.leewayMs ?? DEFAULT_JWT_LEEWAY_MS;
  if (typeof audience !== 'string' || audience.length === 0) fail('jwt-svid/bad-request', 'the validator audience must be a non-empty string');
  if (!Number.isFinite(now)) fail('jwt-svid/bad-request', 'now must be a finite epoch-ms time');
  if (!Number.isFinite(leeway) || leeway < 0 || leeway > MAX_JWT_LEEWAY_MS) {
    fail('jwt-svid/bad-request', `leewayMs must be between 0 and ${MAX_JWT_LEEWAY_MS}`);
  }

  // 1. JWS Compact Serialization only (JWT-SVID 1, 5.1), bounded size (architecture.md 9).
  if (typeof token !== 'string') fail('jwt-svid/malformed', 'token must be a string');
  if (token.length > MAX_JWT_SVID_BYTES) fail('jwt-svid/too-large', `token is longer than ${MAX_JWT_SVID_BYTES} bytes`);
  const d1 = token.indexOf('.');
  const d2 = d1 === -1 ? -1 : token.indexOf('.', d1 + 1);
  if (d2 === -1 || token.indexOf('.', d2 + 1) !== -1) {
    fail('jwt-svid/malformed', 'a JWT-SVID is a JWS compact serialization of three parts (JWT-SVID 5.1)');
  }
  const header = jsonObjectSegment(token.slice(0, d1), 'JOSE header');

  // 2. Header (JWT-SVID 2): only alg, kid, typ; alg checked before anything else is processed (JWT-SVID 4).
  for (const name in header) {
    if (!ALLOWED_HEADER_MEMBERS.has(name)) {
      fail('jwt-svid/bad-header', 'header member not allowed in a JWT-SVID (JWT-SVID 2)', undefined, { member: name.slice(0, 64) });
    }
  }
  const algName = header['alg'];
  if (typeof algName !== 'string') fail('jwt-svid/bad-header', 'header alg is missing (JWT-SVID 2.1)');
  const alg = ALGS.get(algName);
  if (alg === undefined) fail('jwt-svid/unsupported-alg', 'alg is not allowed for a JWT-SVID (JWT-SVID 2.1)', undefined, { alg: algName.slice(0, 32) });
  const typ = header['typ'];
  if (typ !== undefined && typ !== 'JWT' && typ !== 'JOSE') fail('jwt-svid/bad-header', 'typ must be JWT or JOSE (JWT-SVID 2.3)');
  const kid = header['kid'];
  if (typeof kid !== 'string' || kid.length === 0 || kid.length > MAX_JWT_KID_LENGTH) {
    fail('jwt-svid/bad-header', 'kid is required (go-spiffe/SPIRE; JWT-SVID 2.2)');
  }

  // 3. Subject and key: only the bundle of the subject's trust domain (Trust Domain and Bundle 3).
  const claims = jsonObjectSegment(token.slice(d1 + 1, d2), 'JWT claims');
  const sub = claims['sub'];
  if (sub === undefined) fail('jwt-svid/missing-claim', 'sub is required (JWT-SVID 3.1)');
  let spiffeId: SpiffeId;
  try {
    spiffeId = SpiffeId.parse(sub);
  } catch (e) {
    if (e instanceof SpiffeIdError) fail('jwt-svid/bad-subject', 'sub is not a valid SPIFFE ID (JWT-SVID 3.1)', e, { reason: e.code });
    throw e;
  }
  if (spiffeId.isTrustDomainId) fail('jwt-svid/bad-subject', 'sub must be a workload SPIFFE ID with a path (JWT-SVID 3.1)');
  const td = spiffeId.trustDomain;
  const authorities = bundles.jwtAuthoritiesFor(td);
  if (authorities === undefined || authorities.size === 0) {
    // Trust Domain and Bundle 4.1.3: no (usable) keys => every SVID of that trust domain is invalid.
    fail('jwt-svid/untrusted-domain', 'no JWT authorities for the trust domain of sub', undefined, { trust_domain: td.name });
  }
  const entry = authorities.get(kid);
  if (entry === undefined) {
    fail('jwt-svid/unknown-kid', 'kid not found in the bundle of the trust domain of sub', undefined, { trust_domain: td.name, kid: kid.slice(0, 128) });
  }
  const key = resolveKey(entry);
  if (!keySuits(key, alg)) {
    fail('jwt-svid/alg-key-mismatch', `key ${kid.slice(0, 128)} cannot verify ${alg.name} (RFC 7518 3)`, undefined, { alg: alg.name });
  }

  // 4. Signature over the exact ASCII signing input (RFC 7515 5.2).
  const sig = b64urlBytes(token.slice(d2 + 1), 'signature');
  const input = Buffer.from(token.slice(0, d2), 'latin1');
  let ok = false;
  if (alg.family === 'ec') {
    ok = sig.length === alg.sigLen && safeVerify(alg.hash, input, key.ecInput!, sig);
  } else if (alg.pssSalt !== undefined) {
    ok = safeVerify(alg.hash, input, { key: key.key, padding: cryptoConstants.RSA_PKCS1_PSS_PADDING, saltLength: alg.pssSalt }, sig);
  } else {
    ok = key.family === 'rsa' && safeVerify(alg.hash, input, key.key, sig);
  }
  if (!ok) fail('jwt-svid/bad-signature', 'JWT-SVID signature does not verify', undefined, { kid: kid.slice(0, 128) });

  // 5. Registered claims (JWT-SVID 3.2, 3.3; RFC 7519 4.1.3-4.1.6).
  const aud = claims['aud'];
  let audList: string[];
  if (aud === undefined) fail('jwt-svid/missing-claim', 'aud is required (JWT-SVID 3.2)');
  if (typeof aud === 'string') {
    audList = [aud];
  } else if (Array.isArray(aud) && aud.every((a) => typeof a === 'string')) {
    if (aud.length === 0) fail('jwt-svid/missing-claim', 'aud must contain at least one value (JWT-SVID 3.2)');
    audList = aud as string[];
  } else {
    fail('jwt-svid/bad-claim', 'aud must be a string or an array of strings (RFC 7519 4.1.3)');
  }
  if (!audList.includes(audience)) fail('jwt-svid/wrong-audience', 'the validator audience is not in aud (JWT-SVID 3.2)');
  const expMs = numericDate(claims, 'exp');
  if (expMs === undefined) fail('jwt-svid/missing-claim', 'exp is required (JWT-SVID 3.3)');
  // RFC 7519 4.1.4: the current time MUST be before exp (plus leeway).
  if (now >= expMs + leeway) fail('jwt-svid/expired', 'JWT-SVID has expired (JWT-SVID 3.3)', undefined, { exp: expMs / 1000 });
  const nbfMs = numericDate(claims, 'nbf');
  if (nbfMs !== undefined && now + leeway < nbfMs) fail('jwt-svid/not-yet-valid', 'JWT-SVID is not valid yet (RFC 7519 4.1.5)');
  const iatMs = numericDate(claims, 'iat');
  if (iatMs !== undefined && now + leeway < iatMs) fail('jwt-svid/not-yet-valid', 'JWT-SVID was issued in the future (RFC 7519 4.1.6)');

  return { spiffeId, claims, audience: audList, expiresAt: expMs };
}

function safeVerify(
  hash: string,
  data: Buffer,
  key: KeyObject | { key: KeyObject; dsaEncoding?: 'ieee-p1363'; padding?: number; saltLength?: number },
  sig: Buffer,
): boolean {
  try {
    return cryptoVerify(hash, data, key, sig);
  } catch {
    return false; // malformed signature encodings are just bad signatures
  }
}

/** Validate a JWT-SVID; resolves to the SPIFFE ID and claims or rejects with a JwtSvidError. */
export async function validateJwtSvid(token: string, opts: ValidateJwtSvidOptions): Promise<ValidatedJwtSvid> {
  return validateJwtSvidSync(token, opts);
}
