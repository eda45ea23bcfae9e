/**
 * SPIFFE trust bundles and bundle maps (SPIFFE Trust Domain and Bundle, "TDB" below, sections 3-6;
 * X509-SVID 6; JWT-SVID 6).
 *
 * A bundle is a JWK Set (TDB 4) with `keys` (required, may be empty), `spiffe_sequence` and
 * `spiffe_refresh_hint`. Its trust domain is never read from the document: it is always supplied by the
 * caller (TDB 3, 5: the `<trust_domain_name, bundle>` tuple is recorded independently).
 *
 * Parsing rules (strict where the specs say MUST, deny by default, bounded):
 * - JSON is parsed strictly (strict-json.ts): duplicate member names anywhere are rejected (TDB 6.3),
 *   at most MAX_BUNDLE_BYTES and MAX_BUNDLE_KEYS JWKs.
 * - `keys` MUST be present (TDB 4.1.3); an empty array is valid and means "all keys revoked" (callers
 *   must then treat every SVID of that trust domain as invalid; the validators do).
 * - A JWK whose `kty` is not `EC` or `RSA` (unknown to us, including a missing `kty`) is ignored
 *   (TDB 4.2.1); one whose `use` is missing or not `x509-svid`/`jwt-svid` is ignored (TDB 4.2.2;
 *   `wit-svid` is ignored too: WIT is not implemented).
 * - `x509-svid` JWKs (X509-SVID 6): a missing or empty `x5c` makes the entry ignored (X509-SVID 6.2);
 *   more than one certificate is REJECTED (X509-SVID 6.1 says exactly one; go-spiffe rejects too);
 *   the certificate must be a CA (cA=true, keyCertSign when keyUsage is present, X509-SVID 4.1/4.3);
 *   the JWK's key members must be those of the certificate's key (RFC 7517 4.7); a `kid` is REJECTED.
 *   X509-SVID 6.1 says publishers MUST NOT set `kid` and says nothing for consumers (go-spiffe ignores
 *   it); we reject, because a bundle that breaks a MUST of its own format is not trusted material.
 * - `jwt-svid` JWKs (JWT-SVID 6): `kid` MUST be set (JWT-SVID 6.1) and be unique within the bundle
 *   (go-spiffe keeps the last duplicate; we reject); public EC P-256/P-384/P-521 or RSA >= 2048 keys
 *   only; an `alg` member, if present, must be a JWT-SVID algorithm matching the key.
 * - Any accepted JWK carrying private or secret members (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`, `k`)
 *   makes the whole bundle rejected: a publisher leaking private keys is not to be trusted.
 * - `spiffe_sequence`: an integer in [0, 2^64-1] kept as bigint (TDB 4.1.1: at least 64 bits).
 *   `spiffe_refresh_hint`: a non-negative integer number of seconds (TDB 4.1.2). Both optional; in
 *   JSON text both must be integer literals (`1e3` and `5.0` are refused, as Go's encoding/json does).
 *
 * Pure module: no I/O, no clock.
 */
import { createPublicKey, createHash, KeyObject, type JsonWebKey } from 'node:crypto';
import { EdgewardError } from './errors.js';
import { SpiffeIdError, TrustDomain } from './spiffe-id.js';
import { JsonError, parseStrictJson } from './strict-json.js';
import { certToPem, parseCertificateShared, X509Error, type ParsedCertificate } from './x509/certificate.js';
import type { X509BundleSource } from './x509/svid.js';
import { MAX_JWT_KID_LENGTH, MIN_RSA_BITS, type JwtBundleSource } from './jwt-svid.js';

export const BUNDLE_ERROR_CODES = [
  /** Not JSON, wrong JSON types, a JWK that is not an object. */
  'bundle/malformed',
  /** Larger than MAX_BUNDLE_BYTES / MAX_BUNDLE_MAP_BYTES, or too many keys or trust domains. */
  'bundle/too-large',
  /** A duplicate member name in some JSON object (TDB 5.1.1, 6.3). */
  'bundle/duplicate-key',
  /** The `keys` member is absent (TDB 4.1.3). */
  'bundle/missing-keys',
  /** An x509-svid JWK that is not acceptable (several certs, kid set, not a CA, key mismatch...). */
  'bundle/bad-x509-authority',
  /** A jwt-svid JWK whose key is unusable (unsupported curve, weak RSA, invalid point, bad alg). */
  'bundle/bad-jwt-authority',
  /** A jwt-svid JWK without `kid` (JWT-SVID 6.1). */
  'bundle/missing-kid',
  'bundle/duplicate-kid',
  /** Private or secret key material in the bundle. */
  'bundle/private-key',
  'bundle/bad-sequence',
  'bundle/bad-refresh-hint',
  /** A bundle-map key that is not a canonical trust domain name. */
  'bundle/bad-trust-domain',
  /** Two bundles for one trust domain in a BundleSet. */
  'bundle/duplicate-trust-domain',
] as const;
export type BundleErrorCode = (typeof BUNDLE_ERROR_CODES)[number];
export class BundleError extends EdgewardError<BundleErrorCode> {}

export const MAX_BUNDLE_BYTES = 1024 * 1024;
/** JWK entries per bundle (all uses, including ignored ones). */
export const MAX_BUNDLE_KEYS = 256;
export const MAX_BUNDLE_MAP_BYTES = 8 * 1024 * 1024;
export const MAX_BUNDLE_MAP_TRUST_DOMAINS = 1024;
export const MAX_BUNDLE_SEQUENCE = (1n << 64n) - 1n;
const MAX_JSON_DEPTH = 16;

export const X509_SVID_USE = 'x509-svid';
export const JWT_SVID_USE = 'jwt-svid';

/** A public JWK as kept in a bundle: only `kty` and key members (plus `alg` when the source had one). */
export type PublicJwk = Readonly<
  { kty: 'EC'; crv: 'P-256' | 'P-384' | 'P-521'; x: string; y: string; alg?: string } | { kty: 'RSA'; n: string; e: string; alg?: string }
>;

// ---------------------------------------------------------------------------------------------------
// helpers

function err(code: BundleErrorCode, message: string, cause?: unknown, detail?: Record<string, string | number | boolean>): BundleError {
  const opts: { cause?: unknown; detail?: Record<string, string | number | boolean> } = {};
  if (cause !== undefined) opts.cause = cause;
  if (detail !== undefined) opts.detail = detail;
  return new BundleError(code, message, opts);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Members of a JWK that carry private or secret key material (RFC 7518 6.2.2, 6.3.2, 6.4.1). */
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;
const KNOWN_KTY = new Set(['EC', 'RSA']);
const EC_CURVES: ReadonlyMap<string, { node: string; alg: string }> = new Map([
  ['P-256', { node: 'prime256v1', alg: 'ES256' }],
  ['P-384', { node: 'secp384r1', alg: 'ES384' }],
  ['P-521', { node: 'secp521r1', alg: 'ES512' }],
]);
const RSA_ALGS = new Set(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']);

function hasPrivateMembers(jwk: Record<string, unknown>): boolean {
  for (const m of PRIVATE_JWK_MEMBERS) if (jwk[m] !== undefined) return true;
  return false;
}

/** The canonical public JWK of a public KeyObject (EC P-256/384/521 or RSA >= 2048 bits). */
function publicJwkOf(k: KeyObject, alg: string | undefined, code: BundleErrorCode): PublicJwk {
  const j = k.export({ format: 'jwk' });
  let out: PublicJwk;
  if (j.kty === 'EC' && typeof j.crv === 'string' && EC_CURVES.has(j.crv) && typeof j.x === 'string' && typeof j.y === 'string') {
    if (alg !== undefined && EC_CURVES.get(j.crv)!.alg !== alg) throw err(code, `alg ${alg} does not match curve ${j.crv}`);
    out = { kty: 'EC', crv: j.crv as 'P-256' | 'P-384' | 'P-521', x: j.x, y: j.y };
  } else if (j.kty === 'RSA' && typeof j.n === 'string' && typeof j.e === 'string') {
    if ((k.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_BITS) throw err(code, `RSA keys must have at least ${MIN_RSA_BITS} bits`);
    if (alg !== undefined && !RSA_ALGS.has(alg)) throw err(code, `alg ${alg} is not an RSA JWT-SVID algorithm`);
    out = { kty: 'RSA', n: j.n, e: j.e };
  } else {
    throw err(code, 'only EC P-256/P-384/P-521 and RSA keys are supported');
  }
  if (alg !== undefined) out = { ...out, alg };
  return Object.freeze(out);
}

/**
 * The canonical public JWK of a certificate's key (`publicJwkOf` without `alg`), kept per parsed
 * certificate: `parseCertificateShared` hands out one object per distinct certificate, and the JWK is a
 * pure function of its key. Failures are not kept.
 */
const certJwkCache = new WeakMap<ParsedCertificate, PublicJwk>();
function certPublicJwk(cert: ParsedCertificate, code: BundleErrorCode): PublicJwk {
  let j = certJwkCache.get(cert);
  if (j === undefined) {
    j = publicJwkOf(cert.publicKey(), undefined, code);
    certJwkCache.set(cert, j);
  }
  return j;
}

/**
 * Canonical public JWKs (without `alg`) of JWT authorities given as JWK members, by those members: the
 * import (which makes OpenSSL check the point or the modulus) and the export are pure functions of them.
 * Bounded; failures are not kept.
 */
const JWT_JWK_CACHE_MAX = 256;
const jwtJwkCache = new Map<string, PublicJwk>();

function importedJwtJwk(v: Record<string, unknown>): PublicJwk {
  let key: string | undefined;
  if (v['kty'] === 'EC' && typeof v['crv'] === 'string' && typeof v['x'] === 'string' && typeof v['y'] === 'string') {
    key = `EC\u0000${v['crv']}\u0000${v['x']}\u0000${v['y']}`;
  } else if (v['kty'] === 'RSA' && typeof v['n'] === 'string' && typeof v['e'] === 'string') {
    key = `RSA\u0000${v['n']}\u0000${v['e']}`;
  }
  const hit = key === undefined ? undefined : jwtJwkCache.get(key);
  if (hit !== undefined) return hit;
  let k: KeyObject;
  try {
    if (v['kty'] === 'EC') {
      if (typeof v['crv'] !== 'string' || !EC_CURVES.has(v['crv'])) throw new Error(`unsupported curve ${String(v['crv']).slice(0, 32)}`);
      k = createPublicKey({ key: { kty: 'EC', crv: v['crv'], x: v['x'] as string, y: v['y'] as string }, format: 'jwk' });
    } else if (v['kty'] === 'RSA') {
      k = createPublicKey({ key: { kty: 'RSA', n: v['n'] as string, e: v['e'] as string }, format: 'jwk' });
    } else {
      throw new Error(`unsupported key type ${String(v['kty']).slice(0, 32)}`);
    }
  } catch (e) {
    throw new JwkImportError(e);
  }
  const out = publicJwkOf(k, undefined, 'bundle/bad-jwt-authority');
  if (key !== undefined) {
    if (jwtJwkCache.size >= JWT_JWK_CACHE_MAX) jwtJwkCache.delete(jwtJwkCache.keys().next().value!);
    jwtJwkCache.set(key, out);
  }
  return out;
}

/** The JWK members are not a valid supported public key (carries the import failure). */
class JwkImportError extends Error {
  constructor(readonly importCause: unknown) {
    super('JWK import failed');
  }
}

/** `alg` on top of a canonical JWK: checked as `publicJwkOf` checks it (the key itself was checked). */
function withAlg(j: PublicJwk, alg: string | undefined, code: BundleErrorCode): PublicJwk {
  if (alg === undefined) return j;
  if (j.kty === 'EC') {
    if (EC_CURVES.get(j.crv)!.alg !== alg) throw err(code, `alg ${alg} does not match curve ${j.crv}`);
  } else if (!RSA_ALGS.has(alg)) {
    throw err(code, `alg ${alg} is not an RSA JWT-SVID algorithm`);
  }
  return Object.freeze({ ...j, alg });
}

/** Validate a JWT authority (JWK object or KeyObject) and return its canonical public JWK. */
function normalizeJwtAuthority(v: unknown, kid: string): PublicJwk {
  const detail = { kid: kid.slice(0, 128) };
  if (v instanceof KeyObject) {
    if (v.type === 'private') throw err('bundle/private-key', 'a bundle must not contain private keys', undefined, detail);
    if (v.type !== 'public') throw err('bundle/bad-jwt-authority', 'a JWT authority must be a public key', undefined, detail);
    return publicJwkOf(v, undefined, 'bundle/bad-jwt-authority');
  }
  if (!isObject(v)) throw err('bundle/malformed', 'a JWT authority must be a JWK object', undefined, detail);
  if (hasPrivateMembers(v)) throw err('bundle/private-key', 'a bundle must not contain private key material (JWK d/p/q/k...)', undefined, detail);
  const alg = v['alg'];
  if (alg !== undefined && typeof alg !== 'string') throw err('bundle/bad-jwt-authority', 'JWK alg must be a string', undefined, detail);
  let canonical: PublicJwk;
  try {
    canonical = importedJwtJwk(v);
  } catch (e) {
    if (e instanceof JwkImportError) throw err('bundle/bad-jwt-authority', 'JWT authority is not a valid supported public key', e.importCause, detail);
    if (e instanceof BundleError) throw err(e.code, e.message, e.cause, detail);
    throw e;
  }
  try {
    return withAlg(canonical, alg, 'bundle/bad-jwt-authority');
  } catch (e) {
    if (e instanceof BundleError) throw err(e.code, e.message, e.cause, detail);
    throw e;
  }
}

function parseCaCert(der: Buffer, index: number): ParsedCertificate {
  let cert: ParsedCertificate;
  try {
    cert = parseCertificateShared(der);
  } catch (e) {
    if (e instanceof X509Error) throw err('bundle/bad-x509-authority', `X.509 authority ${index} is not a valid certificate`, e, { index });
    throw e;
  }
  // X509-SVID 4.1 / 4.3: a signing certificate has cA=true and keyCertSign.
  if (!cert.basicConstraintsPresent || !cert.isCA) {
    throw err('bundle/bad-x509-authority', `X.509 authority ${index} is not a CA certificate (X509-SVID 4.1)`, undefined, { index });
  }
  if (cert.keyUsage.present && !cert.keyUsage.keyCertSign) {
    throw err('bundle/bad-x509-authority', `X.509 authority ${index} lacks keyCertSign (X509-SVID 4.3)`, undefined, { index });
  }
  return cert;
}

/**
 * `fromText`: the value comes from our JSON parser, which returns integer literals of these members as
 * bigint; a JS number then means a fraction or exponent literal (`1.0`, `1e3`), which is refused as
 * Go's encoding/json (SPIRE, go-spiffe) refuses it.
 */
function sequenceOf(v: unknown, fromText = false): bigint | undefined {
  if (v === undefined) return undefined;
  let s: bigint;
  if (typeof v === 'bigint') s = v;
  else if (!fromText && typeof v === 'number' && Number.isSafeInteger(v)) s = BigInt(v);
  else throw err('bundle/bad-sequence', 'spiffe_sequence must be an integer (TDB 4.1.1)');
  if (s < 0n || s > MAX_BUNDLE_SEQUENCE) throw err('bundle/bad-sequence', 'spiffe_sequence must be in [0, 2^64-1] (TDB 4.1.1)');
  return s;
}

function refreshHintOf(v: unknown, fromText = false): number | undefined {
  if (v === undefined) return undefined;
  const n = typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= 0n ? Number(v) : fromText ? undefined : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    throw err('bundle/bad-refresh-hint', 'spiffe_refresh_hint must be a non-negative integer number of seconds (TDB 4.1.2)');
  }
  return n;
}

class FrozenMap<K, V> extends Map<K, V> {
  #frozen = false;
  constructor(entries: Iterable<readonly [K, V]>) {
    super();
    for (const [k, v] of entries) super.set(k, v);
    this.#frozen = true;
  }
  override set(k: K, v: V): this {
    if (this.#frozen) throw new TypeError('a bundle is immutable');
    return super.set(k, v);
  }
  override delete(_k: K): boolean {
    throw new TypeError('a bundle is immutable');
  }
  override clear(): void {
    throw new TypeError('a bundle is immutable');
  }
}

// ---------------------------------------------------------------------------------------------------
// TrustBundle

export interface TrustBundleInit {
  trustDomain: TrustDomain;
  /** DER CA certificates (X509-SVID 6). */
  x509Authorities?: Iterable<Buffer>;
  /** kid -> public key (JWT-SVID 6). */
  jwtAuthorities?: Iterable<readonly [string, KeyObject | JsonWebKey]>;
  sequence?: bigint | number;
  refreshHintSeconds?: number;
}

/**
 * The trust material of ONE trust domain. Immutable: arrays and maps are frozen, certificates are
 * copied on creation. Serves as X509BundleSource and JwtBundleSource for its own trust domain only
 * (any other trust domain gets `undefined`, never these keys: X509-SVID 5, TDB 3).
 */
export class TrustBundle implements X509BundleSource, JwtBundleSource {
  readonly trustDomain: TrustDomain;
  readonly x509Authorities: readonly Buffer[];
  readonly jwtAuthorities: ReadonlyMap<string, PublicJwk>;
  readonly sequence: bigint | undefined;
  readonly refreshHintSeconds: number | undefined;

  private constructor(
    td: TrustDomain,
    x509: Buffer[],
    jwt: Map<string, PublicJwk>,
    sequence: bigint | undefined,
    refreshHintSeconds: number | undefined,
  ) {
    this.trustDomain = td;
    this.x509Authorities = Object.freeze(x509);
    this.jwtAuthorities = new FrozenMap(jwt);
    this.sequence = sequence;
    this.refreshHintSeconds = refreshHintSeconds;
    Object.freeze(this);
  }

  /**
   * Build a bundle from trust material (e.g. the CA manager's authorities). Every certificate must be a
   * CA, every JWT key public and supported; duplicate certificates are dropped.
   */
  static create(init: TrustBundleInit): TrustBundle {
    if (!(init.trustDomain instanceof TrustDomain)) throw err('bundle/bad-trust-domain', 'trustDomain must be a TrustDomain');
    const x509: Buffer[] = [];
    let i = -1;
    for (const der of init.x509Authorities ?? []) {
      i++;
      if (!Buffer.isBuffer(der)) throw err('bundle/bad-x509-authority', `X.509 authority ${i} must be DER bytes`);
      if (x509.some((d) => d.equals(der))) continue;
      parseCaCert(der, i);
      x509.push(Buffer.from(der));
      if (x509.length > MAX_BUNDLE_KEYS) throw err('bundle/too-large', `more than ${MAX_BUNDLE_KEYS} authorities`);
    }
    const jwt = new Map<string, PublicJwk>();
    for (const [kid, key] of init.jwtAuthorities ?? []) {
      if (typeof kid !== 'string' || kid.length === 0 || kid.length > MAX_JWT_KID_LENGTH) {
        throw err('bundle/missing-kid', 'every JWT authority needs a non-empty kid (JWT-SVID 6.1)');
      }
      if (jwt.has(kid)) throw err('bundle/duplicate-kid', 'duplicate JWT authority kid', undefined, { kid: kid.slice(0, 128) });
      jwt.set(kid, normalizeJwtAuthority(key, kid));
      if (x509.length + jwt.size > MAX_BUNDLE_KEYS) throw err('bundle/too-large', `more than ${MAX_BUNDLE_KEYS} authorities`);
    }
    return new TrustBundle(init.trustDomain, x509, jwt, sequenceOf(init.sequence), refreshHintOf(init.refreshHintSeconds));
  }

  /** @internal construction from already-validated parts. */
  static fromValidated(td: TrustDomain, x509: Buffer[], jwt: Map<string, PublicJwk>, seq: bigint | undefined, hint: number | undefined): TrustBundle {
    return new TrustBundle(td, x509, jwt, seq, hint);
  }

  /** A copy with some fields replaced (e.g. a new sequence number). */
  with(changes: Omit<Partial<TrustBundleInit>, 'trustDomain'>): TrustBundle {
    if (changes.x509Authorities === undefined && changes.jwtAuthorities === undefined) {
      const seq = 'sequence' in changes ? sequenceOf(changes.sequence) : this.sequence;
      const hint = 'refreshHintSeconds' in changes ? refreshHintOf(changes.refreshHintSeconds) : this.refreshHintSeconds;
      return new TrustBundle(this.trustDomain, [...this.x509Authorities], new Map(this.jwtAuthorities), seq, hint);
    }
    return TrustBundle.create({
      trustDomain: this.trustDomain,
      x509Authorities: changes.x509Authorities ?? this.x509Authorities,
      jwtAuthorities: changes.jwtAuthorities ?? this.jwtAuthorities,
      sequence: 'sequence' in changes ? changes.sequence : this.sequence,
      refreshHintSeconds: 'refreshHintSeconds' in changes ? changes.refreshHintSeconds : this.refreshHintSeconds,
    });
  }

  /** True when the bundle has no usable keys: every SVID of the trust domain is invalid (TDB 4.1.3). */
  get isEmpty(): boolean {
    return this.x509Authorities.length === 0 && this.jwtAuthorities.size === 0;
  }

  x509AuthoritiesFor(td: TrustDomain): readonly Buffer[] | undefined {
    return td.name === this.trustDomain.name ? this.x509Authorities : undefined;
  }

  jwtAuthoritiesFor(td: TrustDomain): ReadonlyMap<string, JsonWebKey> | undefined {
    return td.name === this.trustDomain.name ? (this.jwtAuthorities as ReadonlyMap<string, JsonWebKey>) : undefined;
  }
}

// ---------------------------------------------------------------------------------------------------
// Parsing

type JsonInput = string | Uint8Array;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const BIGINT_KEYS: ReadonlySet<string> = new Set(['spiffe_sequence', 'spiffe_refresh_hint']);
const STD_BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function parseJsonText(input: JsonInput, maxBytes: number, what: string): unknown {
  let text: string;
  if (typeof input === 'string') {
    if (input.length > maxBytes || (input.length * 3 > maxBytes && Buffer.byteLength(input) > maxBytes)) {
      throw err('bundle/too-large', `${what} is larger than ${maxBytes} bytes`);
    }
    text = input;
  } else if (input instanceof Uint8Array) {
    if (input.length > maxBytes) throw err('bundle/too-large', `${what} is larger than ${maxBytes} bytes`);
    try {
      text = utf8.decode(input);
    } catch (e) {
      throw err('bundle/malformed', `${what} is not UTF-8`, e);
    }
  } else {
    throw err('bundle/malformed', `${what} must be JSON text`);
  }
  try {
    return parseStrictJson(text, { maxDepth: MAX_JSON_DEPTH, bigIntKeys: BIGINT_KEYS });
  } catch (e) {
    if (e instanceof JsonError) {
      if (e.code === 'json/duplicate-key') throw err('bundle/duplicate-key', `${what} has a duplicate JSON member name (TDB 6.3)`, e);
      throw err('bundle/malformed', `${what} is not valid JSON`, e);
    }
    throw e;
  }
}

function x509FromJwk(jwk: Record<string, unknown>, index: number): Buffer | undefined {
  const detail = { index };
  const x5c = jwk['x5c'];
  // X509-SVID 6.2: no x5c, or an empty one => ignore the entry.
  if (x5c === undefined || (Array.isArray(x5c) && x5c.length === 0)) return undefined;
  if (!Array.isArray(x5c)) throw err('bundle/bad-x509-authority', 'x5c must be an array (RFC 7517 4.7)', undefined, detail);
  // X509-SVID 6.1: exactly one CA certificate per entry (go-spiffe rejects more; so do we).
  if (x5c.length !== 1) throw err('bundle/bad-x509-authority', `x5c must hold exactly one certificate, not ${x5c.length} (X509-SVID 6.1)`, undefined, detail);
  // X509-SVID 6.1: the kid of an x509-svid entry MUST NOT be set.
  if (jwk['kid'] !== undefined) throw err('bundle/bad-x509-authority', 'an x509-svid JWK must not have a kid (X509-SVID 6.1)', undefined, detail);
  if (hasPrivateMembers(jwk)) throw err('bundle/private-key', 'a bundle must not contain private key material', undefined, detail);
  const b64 = x5c[0];
  // RFC 7517 4.7: x5c values are base64 (not base64url) DER.
  if (typeof b64 !== 'string' || b64.length % 4 !== 0 || !STD_BASE64.test(b64)) {
    throw err('bundle/bad-x509-authority', 'x5c[0] is not base64 DER (RFC 7517 4.7)', undefined, detail);
  }
  const der = Buffer.from(b64, 'base64');
  const cert = parseCaCert(der, index);
  // RFC 7517 4.7: the certificate's key MUST match the key members of the JWK.
  let certJwk: PublicJwk;
  try {
    certJwk = certPublicJwk(cert, 'bundle/bad-x509-authority');
  } catch (e) {
    if (e instanceof BundleError) throw err(e.code, e.message, e.cause, detail);
    throw err('bundle/bad-x509-authority', 'x5c certificate key is not usable', e, detail);
  }
  const same =
    certJwk.kty === 'EC'
      ? jwk['kty'] === 'EC' && jwk['crv'] === certJwk.crv && jwk['x'] === certJwk.x && jwk['y'] === certJwk.y
      : jwk['kty'] === 'RSA' && jwk['n'] === certJwk.n && jwk['e'] === certJwk.e;
  if (!same) throw err('bundle/bad-x509-authority', 'JWK key members do not match the x5c certificate key (RFC 7517 4.7)', undefined, detail);
  return der;
}

function bundleFromObject(td: TrustDomain, doc: unknown, jwksForm: boolean, fromText: boolean): TrustBundle {
  if (!isObject(doc)) throw err('bundle/malformed', 'a bundle is a JSON object (TDB 4.1)');
  const keys = doc['keys'];
  if (keys === undefined) throw err('bundle/missing-keys', 'the keys member is required (TDB 4.1.3)');
  if (!Array.isArray(keys)) throw err('bundle/malformed', 'keys must be an array (TDB 4.1.3)');
  if (keys.length > MAX_BUNDLE_KEYS) throw err('bundle/too-large', `more than ${MAX_BUNDLE_KEYS} keys in a bundle`);
  const sequence = jwksForm ? undefined : sequenceOf(doc['spiffe_sequence'], fromText);
  const refreshHint = jwksForm ? undefined : refreshHintOf(doc['spiffe_refresh_hint'], fromText);
  const x509: Buffer[] = [];
  const jwt = new Map<string, PublicJwk>();
  keys.forEach((jwk: unknown, index: number) => {
    if (!isObject(jwk)) throw err('bundle/malformed', 'each element of keys must be a JWK object (RFC 7517 5)', undefined, { index });
    // TDB 4.2.1: unknown (or missing) kty => ignore the whole JWK.
    const kty = jwk['kty'];
    if (typeof kty !== 'string' || !KNOWN_KTY.has(kty)) return;
    // TDB 4.2.2: missing or unknown use => ignore. The Workload API JWKS form has no use at all.
    const use = jwk['use'];
    const effectiveUse = jwksForm && use === undefined ? JWT_SVID_USE : use;
    if (effectiveUse === X509_SVID_USE && !jwksForm) {
      const der = x509FromJwk(jwk, index);
      if (der !== undefined && !x509.some((d) => d.equals(der))) x509.push(der);
    } else if (effectiveUse === JWT_SVID_USE) {
      const kid = jwk['kid'];
      // JWT-SVID 6.1: the kid of a jwt-svid entry MUST be set.
      if (typeof kid !== 'string' || kid.length === 0) throw err('bundle/missing-kid', 'a jwt-svid JWK must have a kid (JWT-SVID 6.1)', undefined, { index });
      if (kid.length > MAX_JWT_KID_LENGTH) throw err('bundle/bad-jwt-authority', 'kid is too long', undefined, { index });
      if (jwt.has(kid)) throw err('bundle/duplicate-kid', 'two jwt-svid JWKs share a kid', undefined, { index, kid: kid.slice(0, 128) });
      jwt.set(kid, normalizeJwtAuthority(jwk, kid));
    }
  });
  return TrustBundle.fromValidated(td, x509, jwt, sequence, refreshHint);
}

/**
 * Parse a SPIFFE bundle (TDB 4) for the trust domain `td` (which is never taken from the document).
 * `json` is JSON text (bytes or string; duplicate member names are detected) or an already parsed
 * object (then duplicates cannot be detected and `spiffe_sequence` must be a safe integer or bigint).
 */
export function parseBundleJson(td: TrustDomain, json: JsonInput | object): TrustBundle {
  if (!(td instanceof TrustDomain)) throw err('bundle/bad-trust-domain', 'td must be a TrustDomain');
  if (typeof json === 'string' || json instanceof Uint8Array) return bundleFromObject(td, parseJsonText(json, MAX_BUNDLE_BYTES, 'bundle'), false, true);
  return bundleFromObject(td, json, false, false);
}

/**
 * Parse the plain JWKS of the Workload API (`JWTBundlesResponse.bundles` values): keys without `use`
 * (or with `use: "jwt-svid"`) are JWT authorities and need a kid; nothing else is taken.
 */
export function parseJwtBundleJwks(td: TrustDomain, json: JsonInput): TrustBundle {
  if (!(td instanceof TrustDomain)) throw err('bundle/bad-trust-domain', 'td must be a TrustDomain');
  return bundleFromObject(td, parseJsonText(json, MAX_BUNDLE_BYTES, 'JWT bundle'), true, true);
}

// ---------------------------------------------------------------------------------------------------
// Serialisation

// Bundle certificates are never mutated (TrustBundle owns copies), so their JWK form is cached.
const x509JwkCache = new WeakMap<Buffer, string>();

/** The JSON text of the x509-svid JWK of one CA certificate. */
function x509JwkText(der: Buffer): string {
  let s = x509JwkCache.get(der);
  if (s === undefined) {
    const key = certPublicJwk(parseCertificateShared(der), 'bundle/bad-x509-authority');
    // Member order as go-jose (SPIRE) writes them: use, kty, crv, x, y | n, e, x5c.
    s = JSON.stringify(
      key.kty === 'EC'
        ? { use: X509_SVID_USE, kty: 'EC', crv: key.crv, x: key.x, y: key.y, x5c: [der.toString('base64')] }
        : { use: X509_SVID_USE, kty: 'RSA', n: key.n, e: key.e, x5c: [der.toString('base64')] },
    );
    x509JwkCache.set(der, s);
  }
  return s;
}

function jwtJwk(kid: string, key: PublicJwk, use: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = use ? { use: JWT_SVID_USE, kty: key.kty, kid } : { kty: key.kty, kid };
  if (key.kty === 'EC') {
    out['crv'] = key.crv;
    if (key.alg !== undefined) out['alg'] = key.alg;
    out['x'] = key.x;
    out['y'] = key.y;
  } else {
    if (key.alg !== undefined) out['alg'] = key.alg;
    out['n'] = key.n;
    out['e'] = key.e;
  }
  return out;
}

function bundleJsonText(b: TrustBundle, includeRefreshHint: boolean): string {
  const keys = [...b.x509Authorities.map(x509JwkText), ...[...b.jwtAuthorities].map(([kid, k]) => JSON.stringify(jwtJwk(kid, k, true)))];
  let s = '{"keys":[' + keys.join(',') + ']';
  if (b.sequence !== undefined) s += ',"spiffe_sequence":' + b.sequence.toString();
  if (includeRefreshHint && b.refreshHintSeconds !== undefined) s += ',"spiffe_refresh_hint":' + String(b.refreshHintSeconds);
  return s + '}';
}

/**
 * The standard SPIFFE bundle document (TDB 4; what a federation bundle endpoint serves): x509-svid
 * JWKs with the certificate's key members, `use` and a one-certificate `x5c`, no `kid` (X509-SVID 6.1);
 * jwt-svid JWKs with the public key, `use` and `kid` (JWT-SVID 6.1); then `spiffe_sequence` and
 * `spiffe_refresh_hint` when set. Compact JSON, X.509 authorities first, in bundle order.
 */
/** Bundles are immutable: each one's JSON is built once (GET /v1/bundle serves it on every request). */
const bundleJsonCache = new WeakMap<TrustBundle, string>();

export function bundleToJson(b: TrustBundle): string {
  let json = bundleJsonCache.get(b);
  if (json === undefined) {
    json = bundleJsonText(b, true);
    bundleJsonCache.set(b, json);
  }
  return json;
}

/**
 * The plain JWKS the Workload API returns for a trust domain's JWT authorities (`JWTBundlesResponse`,
 * as SPIRE): `{"keys":[{kty, kid, key members}]}`, no `use`, no `spiffe_*` members, no X.509 keys.
 */
export function jwtBundleToJwks(b: TrustBundle): string {
  return JSON.stringify({ keys: [...b.jwtAuthorities].map(([kid, k]) => jwtJwk(kid, k, false)) });
}

/** The X.509 authorities as concatenated PEM CERTIFICATE blocks. */
export function x509AuthoritiesPem(b: TrustBundle): string {
  return b.x509Authorities.map((d) => certToPem(d)).join('');
}

/**
 * A digest that identifies a bundle's trust material, for pinning (e.g. at join): `sha256:` + 64
 * lowercase hex digits, SHA-256 over the UTF-8 bytes of this canonical JSON text (no whitespace):
 *
 *   {"jwt_authorities":[J...],"trust_domain":"<name>","x509_authorities":["<base64 DER>",...]}
 *
 * - `x509_authorities`: each CA certificate as standard base64 with padding (RFC 4648 4), distinct,
 *   sorted by the DER bytes (unsigned byte-wise comparison, shorter prefix first).
 * - `jwt_authorities`: one object per key, sorted by `kid` (UTF-16 code unit order, i.e. JavaScript's
 *   default sort); each object's members in lexicographic order of their names, namely
 *   EC: `alg`? `crv`, `kid`, `kty`, `x`, `y`; RSA: `alg`? `e`, `kid`, `kty`, `n` (`alg` only when
 *   the key has one); values are the canonical public JWK members (EC coordinates at full curve
 *   length, RSA `n` without leading zero bytes, base64url without padding).
 * - Strings are written as JSON.stringify writes them (which is also RFC 8785 JCS, since every name
 *   is ASCII and every value a string), so the text is RFC 8785-canonical.
 * `spiffe_sequence` and `spiffe_refresh_hint` are deliberately NOT covered: two bundles with the same
 * authorities have the same digest whatever their sequence number, so a pin survives re-publication
 * but not any change of keys.
 */
export function bundleDigest(b: TrustBundle): string {
  const x509 = [...b.x509Authorities].sort(Buffer.compare).map((d) => d.toString('base64'));
  const jwt = [...b.jwtAuthorities]
    .sort(([a], [c]) => (a < c ? -1 : a > c ? 1 : 0))
    .map(([kid, k]) => {
      const o: Record<string, string> = {};
      if (k.alg !== undefined) o['alg'] = k.alg;
      if (k.kty === 'EC') {
        o['crv'] = k.crv;
        o['kid'] = kid;
        o['kty'] = 'EC';
        o['x'] = k.x;
        o['y'] = k.y;
      } else {
        o['e'] = k.e;
        o['kid'] = kid;
        o['kty'] = 'RSA';
        o['n'] = k.n;
      }
      return o;
    });
  const canonical = JSON.stringify({ jwt_authorities: jwt, trust_domain: b.trustDomain.name, x509_authorities: x509 });
  return 'sha256:' + createHash('sha256').update(canonical, 'utf8').digest('hex');
}

// ---------------------------------------------------------------------------------------------------
// Bundle sets and bundle maps (federation)

/**
 * Bundles of several trust domains, each kept under its own trust domain (never merged: X509-SVID 5,
 * TDB 3, Federation). Immutable; `with`/`without` return new sets.
 */
export class BundleSet implements X509BundleSource, JwtBundleSource {
  readonly #byName: ReadonlyMap<string, TrustBundle>;

  private constructor(byName: Map<string, TrustBundle>) {
    this.#byName = byName;
  }

  static of(bundles: Iterable<TrustBundle>): BundleSet {
    const m = new Map<string, TrustBundle>();
    for (const b of bundles) {
      if (!(b instanceof TrustBundle)) throw err('bundle/malformed', 'a BundleSet holds TrustBundles');
      if (m.has(b.trustDomain.name)) {
        throw err('bundle/duplicate-trust-domain', 'two bundles for one trust domain', undefined, { trust_domain: b.trustDomain.name });
      }
      m.set(b.trustDomain.name, b);
    }
    return new BundleSet(m);
  }

  static empty(): BundleSet {
    return new BundleSet(new Map());
  }

  get size(): number {
    return this.#byName.size;
  }

  get(td: TrustDomain | string): TrustBundle | undefined {
    return this.#byName.get(typeof td === 'string' ? td : td.name);
  }

  has(td: TrustDomain | string): boolean {
    return this.#byName.has(typeof td === 'string' ? td : td.name);
  }

  /** A set with `bundle` added or replacing the bundle of its trust domain. */
  with(bundle: TrustBundle): BundleSet {
    const m = new Map(this.#byName);
    m.set(bundle.trustDomain.name, bundle);
    return new BundleSet(m);
  }

  without(td: TrustDomain | string): BundleSet {
    const m = new Map(this.#byName);
    m.delete(typeof td === 'string' ? td : td.name);
    return new BundleSet(m);
  }

  /** Trust domains in name order. */
  trustDomains(): TrustDomain[] {
    return [...this.#byName.keys()].sort().map((n) => this.#byName.get(n)!.trustDomain);
  }

  /** Bundles in trust-domain name order. */
  bundles(): TrustBundle[] {
    return [...this.#byName.keys()].sort().map((n) => this.#byName.get(n)!);
  }

  [Symbol.iterator](): Iterator<TrustBundle> {
    return this.bundles()[Symbol.iterator]();
  }

  x509AuthoritiesFor(td: TrustDomain): readonly Buffer[] | undefined {
    return this.#byName.get(td.name)?.x509Authorities;
  }

  jwtAuthoritiesFor(td: TrustDomain): ReadonlyMap<string, JsonWebKey> | undefined {
    return this.#byName.get(td.name)?.jwtAuthoritiesFor(td);
  }
}

/**
 * Parse a SPIFFE Bundle Map (TDB 5): `{"trust_domains": {"<td name>": <bundle>, ...}}`. The
 * `trust_domains` member is required and may be empty (TDB 5.1.1); keys must be canonical trust domain
 * names (SPIFFE-ID 2.1, no `spiffe://`); duplicate names - or any other duplicate member - reject the
 * whole map (TDB 5.1.1, 6.3). Refresh hints inside bundles are parsed but carry no meaning for the map
 * (TDB 5.1.1). Members other than `trust_domains` are ignored.
 */
export function parseBundleMapJson(json: JsonInput): BundleSet {
  const doc = parseJsonText(json, MAX_BUNDLE_MAP_BYTES, 'bundle map');
  if (!isObject(doc)) throw err('bundle/malformed', 'a bundle map is a JSON object (TDB 5.1)');
  const tds = doc['trust_domains'];
  if (tds === undefined) throw err('bundle/malformed', 'the trust_domains member is required (TDB 5.1.1)');
  if (!isObject(tds)) throw err('bundle/malformed', 'trust_domains must be an object (TDB 5.1.1)');
  const names = Object.keys(tds);
  if (names.length > MAX_BUNDLE_MAP_TRUST_DOMAINS) throw err('bundle/too-large', `more than ${MAX_BUNDLE_MAP_TRUST_DOMAINS} trust domains`);
  const bundles: TrustBundle[] = [];
  for (const name of names) {
    let td: TrustDomain;
    try {
      td = TrustDomain.parse(name);
    } catch (e) {
      if (e instanceof SpiffeIdError) throw err('bundle/bad-trust-domain', 'bundle map key is not a trust domain name (TDB 5.1.1)', e, { key: name.slice(0, 256) });
      throw e;
    }
    if (td.name !== name) throw err('bundle/bad-trust-domain', 'bundle map keys are bare trust domain names (TDB 5.1.1)', undefined, { key: name.slice(0, 256) });
    try {
      bundles.push(bundleFromObject(td, tds[name], false, true));
    } catch (e) {
      if (e instanceof BundleError) {
        throw err(e.code, `bundle of ${name}: ${e.message}`, e.cause ?? e, { ...(e.detail ?? {}), trust_domain: name });
      }
      throw e;
    }
  }
  return BundleSet.of(bundles);
}

/**
 * A SPIFFE Bundle Map (TDB 5): trust domains in name order, each bundle as `bundleToJson` writes it
 * but without `spiffe_refresh_hint` (TDB 5.1.1: producers SHOULD omit it).
 */
export function bundleMapToJson(set: BundleSet): string {
  const parts = set.bundles().map((b) => JSON.stringify(b.trustDomain.name) + ':' + bundleJsonText(b, false));
  return '{"trust_domains":{' + parts.join(',') + '}}';
}
