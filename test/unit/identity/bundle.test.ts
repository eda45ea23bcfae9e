/**
 * SPIFFE trust bundles and bundle maps (src/identity/bundle.ts).
 *
 * Spec: SPIFFE Trust Domain and Bundle ("TDB") 3 (bundle kept with its trust domain), 4.1.1
 * (spiffe_sequence, >= 64 bits), 4.1.2 (spiffe_refresh_hint), 4.1.3 (keys required, may be empty),
 * 4.2.1 (unknown kty ignored), 4.2.2 (missing/unknown use ignored), 5.1.1 (bundle map, duplicate trust
 * domains rejected, refresh hint omitted), 6.3 (JSON key duplication); X509-SVID 6.1/6.2 (x5c with one
 * CA certificate, no kid); JWT-SVID 6.1 (kid required); RFC 7517 4.7 (x5c key matches the JWK);
 * conformance checklist items 27 and 30 (spiffe.md 5).
 *
 * CA certificates come from the real `openssl` binary (EC P-256 and RSA) and from our own mint.ts.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { SpiffeId, TrustDomain } from '../../../src/identity/spiffe-id.js';
import { certsFromPem, parseCertificate } from '../../../src/identity/x509/certificate.js';
import { generateP256, spkiFromPublicKey } from '../../../src/identity/x509/keys.js';
import { mintRootCa, mintSigningCa, mintX509Svid } from '../../../src/identity/x509/mint.js';
import { signerFromPrivateKey } from '../../../src/identity/x509/signer.js';
import { validateX509Svid, X509SvidError } from '../../../src/identity/x509/svid.js';
import { mintJwtSvidSync, validateJwtSvidSync, JwtSvidError } from '../../../src/identity/jwt-svid.js';
import {
  BundleError,
  BundleSet,
  bundleDigest,
  bundleMapToJson,
  bundleToJson,
  jwtBundleToJwks,
  MAX_BUNDLE_BYTES,
  MAX_BUNDLE_KEYS,
  parseBundleJson,
  parseBundleMapJson,
  parseJwtBundleJwks,
  TrustBundle,
  x509AuthoritiesPem,
  type BundleErrorCode,
} from '../../../src/identity/bundle.js';

const NOW = Date.UTC(2030, 5, 1);
const TD = TrustDomain.parse('example.org');
const TD_B = TrustDomain.parse('other.example');

// ------------------------------------------------------------------ fixtures

let dir = '';
/** openssl-made certificates (DER): EC P-256 CA, RSA-2048 CA, a non-CA leaf. */
let osslEcCa: Buffer;
let osslRsaCa: Buffer;
let osslLeaf: Buffer;
/** mint.ts-made root and signing CA. */
let ourRoot: Buffer;
let ourSigning: Buffer;
let ourIssuer: { cert: ReturnType<typeof parseCertificate>; signer: ReturnType<typeof signerFromPrivateKey> };

function opensslCert(name: string, newkey: string[], ext: string[]): Buffer {
  execFileSync(
    'openssl',
    ['req', '-x509', ...newkey, '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '3650', '-subj', `/O=${name}`, ...ext.flatMap((e) => ['-addext', e])],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return certsFromPem(readFileSync(join(dir, `${name}.pem`), 'utf8'))[0]!;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'edgeward-bundle-'));
  const caExt = ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign', 'subjectAltName=URI:spiffe://example.org'];
  osslEcCa = opensslCert('ecca', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], caExt);
  osslRsaCa = opensslCert('rsaca', ['-newkey', 'rsa:2048'], caExt);
  osslLeaf = opensslCert('leaf', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'subjectAltName=URI:spiffe://example.org/leaf',
  ]);
  const rootSigner = signerFromPrivateKey(generateP256().privateKey);
  const root = mintRootCa({ trustDomain: TD, signer: rootSigner, now: NOW - 3_600_000, ttlMs: 30 * 86_400_000 });
  ourRoot = root.der;
  const signingSigner = signerFromPrivateKey(generateP256().privateKey);
  const signing = mintSigningCa({
    trustDomain: TD,
    spki: signingSigner.spki,
    issuer: { cert: root.parsed, signer: rootSigner },
    now: NOW - 3_600_000,
    ttlMs: 7 * 86_400_000,
  });
  ourSigning = signing.der;
  ourIssuer = { cert: signing.parsed, signer: signingSigner };
});
afterAll(() => {
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

const jwtA = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwtB = generateKeyPairSync('ec', { namedCurve: 'P-384' });
const jwtRsa = generateKeyPairSync('rsa', { modulusLength: 2048 });

const pubJwk = (k: KeyObject): Record<string, unknown> => k.export({ format: 'jwk' }) as Record<string, unknown>;
const b64 = (der: Buffer): string => der.toString('base64');

/** The x509-svid JWK for a DER CA certificate, as a conforming producer writes it. */
function x509Entry(der: Buffer, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { use: 'x509-svid', ...pubJwk(parseCertificate(der).publicKey()), x5c: [b64(der)], ...extra };
}
function jwtEntry(kid: string, k: KeyObject, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { use: 'jwt-svid', kid, ...pubJwk(k), ...extra };
}
const doc = (keys: unknown[], extra: Record<string, unknown> = {}): string => JSON.stringify({ keys, ...extra });

function codeOf(fn: () => unknown): BundleErrorCode | 'no-error' | 'other-error' {
  try {
    fn();
    return 'no-error';
  } catch (e) {
    return e instanceof BundleError ? e.code : 'other-error';
  }
}
const parseCode = (json: string): ReturnType<typeof codeOf> => codeOf(() => parseBundleJson(TD, json));

function fullBundle(): TrustBundle {
  return TrustBundle.create({
    trustDomain: TD,
    x509Authorities: [ourRoot, ourSigning, osslEcCa, osslRsaCa],
    jwtAuthorities: new Map<string, KeyObject | Record<string, unknown>>([
      ['kid-a', jwtA.publicKey],
      ['kid-b', pubJwk(jwtB.publicKey)],
      ['kid-rsa', jwtRsa.publicKey],
    ]) as Map<string, KeyObject>,
    sequence: 9_223_372_036_854_775_813n,
    refreshHintSeconds: 300,
  });
}

// ------------------------------------------------------------------ tests

describe('TrustBundle and the SPIFFE bundle format', () => {
  it('round-trips through bundleToJson / parseBundleJson (TDB 4; checklist 30)', () => {
    const b = fullBundle();
    const json = bundleToJson(b);
    const back = parseBundleJson(TD, json);
    expect(back.trustDomain.name).toBe('example.org');
    expect(back.x509Authorities.map(b64)).toEqual([ourRoot, ourSigning, osslEcCa, osslRsaCa].map(b64));
    expect([...back.jwtAuthorities.keys()]).toEqual(['kid-a', 'kid-b', 'kid-rsa']);
    expect(back.jwtAuthorities.get('kid-a')).toEqual(pubJwk(jwtA.publicKey));
    expect(back.sequence).toBe(9_223_372_036_854_775_813n);
    expect(back.refreshHintSeconds).toBe(300);
    expect(bundleToJson(back)).toBe(json);
    expect(bundleDigest(back)).toBe(bundleDigest(b));
  });

  it('writes x509-svid keys with use, key members and one x5c, and no kid (X509-SVID 6.1)', () => {
    const parsed = JSON.parse(bundleToJson(fullBundle())) as { keys: Array<Record<string, unknown>>; spiffe_sequence: number };
    const x509 = parsed.keys.filter((k) => k['use'] === 'x509-svid');
    expect(x509).toHaveLength(4);
    for (const k of x509) {
      expect(k['kid']).toBeUndefined();
      expect(k['x5c']).toHaveLength(1);
      const certKey = pubJwk(parseCertificate(Buffer.from((k['x5c'] as string[])[0]!, 'base64')).publicKey());
      for (const m of ['kty', 'crv', 'x', 'y', 'n', 'e']) expect(k[m], m).toEqual(certKey[m]);
    }
    expect(x509[0]).toEqual({ use: 'x509-svid', ...pubJwk(parseCertificate(ourRoot).publicKey()), x5c: [b64(ourRoot)] });
    // JWT-SVID 6.1: use jwt-svid and kid set; public members only.
    const jwt = parsed.keys.filter((k) => k['use'] === 'jwt-svid');
    expect(jwt.map((k) => k['kid'])).toEqual(['kid-a', 'kid-b', 'kid-rsa']);
    expect(jwt[0]).toEqual({ use: 'jwt-svid', kid: 'kid-a', ...pubJwk(jwtA.publicKey) });
    for (const k of jwt) expect(k['d']).toBeUndefined();
  });

  it('keeps spiffe_sequence with full 64-bit precision (TDB 4.1.1)', () => {
    const max = '18446744073709551615';
    const b = parseBundleJson(TD, `{"keys":[],"spiffe_sequence":${max}}`);
    expect(b.sequence).toBe(18_446_744_073_709_551_615n);
    expect(bundleToJson(b)).toBe(`{"keys":[],"spiffe_sequence":${max}}`);
    // 2^53 + 1 is not representable as a double: it must survive anyway.
    expect(parseBundleJson(TD, '{"keys":[],"spiffe_sequence":9007199254740993}').sequence).toBe(9_007_199_254_740_993n);
  });

  it.each([
    ['2^64', '18446744073709551616'],
    ['a negative number', '-1'],
    ['a fraction', '1.5'],
    ['an exponent', '1e3'],
    ['a string', '"5"'],
    ['a 100-digit number', '1'.repeat(100)],
    ['null', 'null'],
  ])('rejects spiffe_sequence that is %s (TDB 4.1.1: an integer)', (_n, v) => {
    expect(parseCode(`{"keys":[],"spiffe_sequence":${v}}`)).toBe('bundle/bad-sequence');
  });

  it.each([
    ['negative', '-1'],
    ['a fraction', '2.5'],
    ['a string', '"300"'],
    ['an exponent', '3e2'],
    ['a float zero fraction', '300.0'],
  ])('rejects spiffe_refresh_hint that is %s (TDB 4.1.2: integer seconds)', (_n, v) => {
    expect(parseCode(`{"keys":[],"spiffe_refresh_hint":${v}}`)).toBe('bundle/bad-refresh-hint');
  });

  it('requires keys, which may be empty (TDB 4.1.3)', () => {
    expect(parseCode('{"spiffe_sequence":1}')).toBe('bundle/missing-keys');
    expect(parseCode('{"keys":{}}')).toBe('bundle/malformed');
    expect(parseCode('{"keys":[1]}')).toBe('bundle/malformed');
    expect(parseCode('[]')).toBe('bundle/malformed');
    const empty = parseBundleJson(TD, '{"keys":[]}');
    expect(empty.isEmpty).toBe(true);
    expect(empty.sequence).toBeUndefined();
    expect(empty.refreshHintSeconds).toBeUndefined();
  });

  it('makes an empty bundle invalidate every SVID of its trust domain (TDB 4.1.3)', () => {
    const empty = parseBundleJson(TD, '{"keys":[]}');
    const token = mintJwtSvidSync({
      spiffeId: SpiffeId.parse('spiffe://example.org/w'),
      audience: ['a'],
      ttlMs: 60_000,
      now: NOW,
      key: { kid: 'kid-a', privateKey: jwtA.privateKey },
    });
    expect(() => validateJwtSvidSync(token, { audience: 'a', bundles: empty, now: NOW })).toThrow(
      expect.objectContaining({ code: 'jwt-svid/untrusted-domain' }) as Error,
    );
  });

  it('ignores JWKs with an unknown or missing kty (TDB 4.2.1)', () => {
    const b = parseBundleJson(
      TD,
      doc([
        { kty: 'OKP', crv: 'Ed25519', x: 'AAAA', use: 'jwt-svid', kid: 'okp' },
        { kty: 'oct', k: 'c2VjcmV0', use: 'jwt-svid', kid: 'oct' },
        { kty: 'PQ-FUTURE', use: 'x509-svid', x5c: ['!!'] },
        { use: 'jwt-svid', kid: 'no-kty' },
        jwtEntry('good', jwtA.publicKey),
      ]),
    );
    expect([...b.jwtAuthorities.keys()]).toEqual(['good']);
  });

  it('ignores JWKs with a missing or unknown use, case-sensitively (TDB 4.2.2)', () => {
    const b = parseBundleJson(
      TD,
      doc([
        { ...pubJwk(jwtA.publicKey), kid: 'no-use' },
        jwtEntry('enc', jwtA.publicKey, { use: 'enc' }),
        jwtEntry('upper', jwtA.publicKey, { use: 'JWT-SVID' }),
        jwtEntry('wit', jwtA.publicKey, { use: 'wit-svid' }),
        x509Entry(osslEcCa, { use: 'X509-SVID' }),
        x509Entry(osslRsaCa),
      ]),
    );
    expect(b.jwtAuthorities.size).toBe(0);
    expect(b.x509Authorities.map(b64)).toEqual([b64(osslRsaCa)]);
  });

  it('ignores x509-svid entries without x5c or with an empty x5c (X509-SVID 6.2)', () => {
    const { x5c: _x5c, ...noX5c } = x509Entry(osslEcCa);
    const b = parseBundleJson(TD, doc([noX5c, x509Entry(osslEcCa, { x5c: [] })]));
    expect(b.x509Authorities).toHaveLength(0);
  });

  it('rejects an x5c with two certificates (X509-SVID 6.1: exactly one; go-spiffe)', () => {
    expect(parseCode(doc([x509Entry(osslEcCa, { x5c: [b64(osslEcCa), b64(osslRsaCa)] })]))).toBe('bundle/bad-x509-authority');
  });

  it('rejects an x509-svid entry with a kid (X509-SVID 6.1: kid MUST NOT be set)', () => {
    expect(parseCode(doc([x509Entry(osslEcCa, { kid: 'k' })]))).toBe('bundle/bad-x509-authority');
  });

  it('rejects an x5c certificate that is not a CA (X509-SVID 4.1) or not a certificate', () => {
    expect(parseCode(doc([x509Entry(osslLeaf)]))).toBe('bundle/bad-x509-authority');
    expect(parseCode(doc([{ ...x509Entry(osslEcCa), x5c: [b64(Buffer.from('not a certificate'))] }]))).toBe('bundle/bad-x509-authority');
    // RFC 7517 4.7: x5c is base64, not base64url.
    expect(parseCode(doc([{ ...x509Entry(osslEcCa), x5c: [osslEcCa.toString('base64url')] }]))).toBe('bundle/bad-x509-authority');
    expect(parseCode(doc([{ ...x509Entry(osslEcCa), x5c: b64(osslEcCa) }]))).toBe('bundle/bad-x509-authority');
    expect(codeOf(() => TrustBundle.create({ trustDomain: TD, x509Authorities: [osslLeaf] }))).toBe('bundle/bad-x509-authority');
  });

  it('rejects an x509-svid JWK whose key members are not the certificate key (RFC 7517 4.7)', () => {
    const other = pubJwk(generateP256().publicKey);
    expect(parseCode(doc([{ ...x509Entry(osslEcCa), x: other['x'], y: other['y'] }]))).toBe('bundle/bad-x509-authority');
    expect(parseCode(doc([{ ...x509Entry(osslRsaCa), kty: 'EC' }]))).toBe('bundle/bad-x509-authority');
  });

  it('rejects a jwt-svid key without kid (JWT-SVID 6.1: kid MUST be set)', () => {
    const { kid: _kid, ...noKid } = jwtEntry('x', jwtA.publicKey);
    expect(parseCode(doc([noKid]))).toBe('bundle/missing-kid');
    expect(parseCode(doc([jwtEntry('', jwtA.publicKey)]))).toBe('bundle/missing-kid');
    expect(parseCode(doc([jwtEntry('x', jwtA.publicKey, { kid: 5 })]))).toBe('bundle/missing-kid');
  });

  it('rejects two jwt-svid keys with one kid (no silent last-wins)', () => {
    expect(parseCode(doc([jwtEntry('k', jwtA.publicKey), jwtEntry('k', jwtB.publicKey)]))).toBe('bundle/duplicate-kid');
  });

  it('refuses private key material anywhere it would be used', () => {
    // JWK private members (RFC 7518 6.2.2 d, 6.3.2 p/q/...).
    expect(parseCode(doc([{ use: 'jwt-svid', kid: 'k', ...pubJwk(jwtA.privateKey) }]))).toBe('bundle/private-key');
    expect(parseCode(doc([{ use: 'jwt-svid', kid: 'k', ...(jwtRsa.privateKey.export({ format: 'jwk' }) as object) }]))).toBe('bundle/private-key');
    expect(parseCode(doc([x509Entry(osslEcCa, { d: 'AAAA' })]))).toBe('bundle/private-key');
    // A private KeyObject handed to create().
    expect(codeOf(() => TrustBundle.create({ trustDomain: TD, jwtAuthorities: [['k', jwtA.privateKey]] }))).toBe('bundle/private-key');
    expect(codeOf(() => TrustBundle.create({ trustDomain: TD, jwtAuthorities: [['k', pubJwk(jwtA.privateKey)]] }))).toBe('bundle/private-key');
  });

  it('rejects unusable jwt-svid keys (unsupported curve, invalid point, weak RSA, wrong alg)', () => {
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const a = pubJwk(jwtA.publicKey);
    const offCurve = { ...a, y: pubJwk(generateP256().publicKey)['y'] };
    for (const entry of [
      { use: 'jwt-svid', kid: 'k', kty: 'EC', crv: 'secp256k1', x: a['x'], y: a['y'] },
      { use: 'jwt-svid', kid: 'k', ...offCurve },
      { use: 'jwt-svid', kid: 'k', kty: 'EC', crv: 'P-256' },
      jwtEntry('k', weak.publicKey),
      jwtEntry('k', jwtA.publicKey, { alg: 'ES384' }),
      jwtEntry('k', jwtA.publicKey, { alg: 'HS256' }),
      jwtEntry('k', jwtRsa.publicKey, { alg: 'ES256' }),
    ]) {
      expect(parseCode(doc([entry])), JSON.stringify(entry).slice(0, 80)).toBe('bundle/bad-jwt-authority');
    }
    // A matching alg is kept and enforced.
    const ok = parseBundleJson(TD, doc([jwtEntry('k', jwtRsa.publicKey, { alg: 'PS256' })]));
    expect(ok.jwtAuthorities.get('k')?.alg).toBe('PS256');
  });

  it('rejects duplicate JSON member names anywhere in a bundle (TDB 6.3)', () => {
    expect(parseCode('{"keys":[],"keys":[]}')).toBe('bundle/duplicate-key');
    const entry = JSON.stringify(jwtEntry('k', jwtA.publicKey));
    expect(parseCode(`{"keys":[${entry.slice(0, -1)},"kid":"other"}]}`)).toBe('bundle/duplicate-key');
    // Duplicates are compared after unescaping.
    expect(parseCode('{"keys":[],"k\\u0065ys":[]}')).toBe('bundle/duplicate-key');
  });

  it('rejects non-JSON and non-strict JSON', () => {
    for (const bad of ['', '{', '{"keys":[],}', "{'keys':[]}", '\ufeff{"keys":[]}', '{"keys":[]} x', '{"keys":[NaN]}', '{"keys":[01]}']) {
      expect(parseCode(bad), JSON.stringify(bad)).toBe('bundle/malformed');
    }
    expect(codeOf(() => parseBundleJson(TD, Buffer.from([0x7b, 0xff, 0x7d])))).toBe('bundle/malformed');
  });

  it('bounds the input: bytes, keys and nesting (architecture.md 9)', () => {
    expect(parseCode(`{"keys":[],"pad":"${'x'.repeat(MAX_BUNDLE_BYTES)}"}`)).toBe('bundle/too-large');
    expect(codeOf(() => parseBundleJson(TD, Buffer.alloc(MAX_BUNDLE_BYTES + 1, 0x20)))).toBe('bundle/too-large');
    const many = Array.from({ length: MAX_BUNDLE_KEYS + 1 }, () => ({ kty: 'unknown' }));
    expect(parseCode(doc(many))).toBe('bundle/too-large');
    expect(parseCode(`{"keys":[],"x":${'['.repeat(100)}${']'.repeat(100)}}`)).toBe('bundle/malformed');
  });

  it('accepts an already parsed object (no duplicate detection possible)', () => {
    const b = parseBundleJson(TD, { keys: [jwtEntry('k', jwtA.publicKey)], spiffe_sequence: 7, spiffe_refresh_hint: 60 });
    expect(b.sequence).toBe(7n);
    expect(codeOf(() => parseBundleJson(TD, { keys: [], spiffe_sequence: 2 ** 60 }))).toBe('bundle/bad-sequence');
  });

  it('serves its own trust domain only (TDB 3; X509-SVID 5)', () => {
    const b = fullBundle();
    expect(b.x509AuthoritiesFor(TD)).toHaveLength(4);
    expect(b.jwtAuthoritiesFor(TD)?.size).toBe(3);
    expect(b.x509AuthoritiesFor(TD_B)).toBeUndefined();
    expect(b.jwtAuthoritiesFor(TD_B)).toBeUndefined();
    // The trust domain comes from the caller, never from the document.
    expect(parseBundleJson(TD_B, bundleToJson(b)).trustDomain.name).toBe('other.example');
  });

  it('is immutable', () => {
    const b = fullBundle();
    expect(() => (b.jwtAuthorities as Map<string, unknown>).set('x', {})).toThrow(TypeError);
    expect(() => (b.jwtAuthorities as Map<string, unknown>).delete('kid-a')).toThrow(TypeError);
    expect(() => (b.x509Authorities as Buffer[]).push(osslEcCa)).toThrow(TypeError);
    expect(Object.isFrozen(b.jwtAuthorities.get('kid-a'))).toBe(true);
    // with() returns a new bundle.
    const c = b.with({ sequence: 1 });
    expect(c.sequence).toBe(1n);
    expect(b.sequence).toBe(9_223_372_036_854_775_813n);
    expect(c.with({ jwtAuthorities: [] }).jwtAuthorities.size).toBe(0);
  });

  it('drops duplicate CA certificates', () => {
    const b = parseBundleJson(TD, doc([x509Entry(osslEcCa), x509Entry(osslEcCa)]));
    expect(b.x509Authorities).toHaveLength(1);
  });

  it('validates X509-SVIDs and JWT-SVIDs as a bundle source (X509-SVID 5; JWT-SVID 6.2)', () => {
    const b = parseBundleJson(TD, bundleToJson(fullBundle()));
    const leafKey = generateP256();
    const leaf = mintX509Svid({ spiffeId: SpiffeId.parse('spiffe://example.org/web'), spki: spkiFromPublicKey(leafKey.publicKey), issuer: ourIssuer, now: NOW, ttlMs: 3_600_000 });
    expect(validateX509Svid([leaf.der, ourSigning], b, NOW).spiffeId.toString()).toBe('spiffe://example.org/web');
    // The same bundle under another trust domain name vouches for nothing in example.org.
    const elsewhere = BundleSet.of([parseBundleJson(TD_B, bundleToJson(fullBundle()))]);
    expect(() => validateX509Svid([leaf.der, ourSigning], elsewhere, NOW)).toThrow(X509SvidError);

    const token = mintJwtSvidSync({ spiffeId: SpiffeId.parse('spiffe://example.org/web'), audience: ['a'], ttlMs: 60_000, now: NOW, key: { kid: 'kid-a', privateKey: jwtA.privateKey } });
    expect(validateJwtSvidSync(token, { audience: 'a', bundles: b, now: NOW }).spiffeId.toString()).toBe('spiffe://example.org/web');
    expect(() => validateJwtSvidSync(token, { audience: 'a', bundles: elsewhere, now: NOW })).toThrow(JwtSvidError);
  });
});

describe('other bundle forms', () => {
  it('jwtBundleToJwks is a plain JWKS: kty/kid/key members only, no X.509 keys (checklist 27)', () => {
    const jwks = JSON.parse(jwtBundleToJwks(fullBundle())) as Record<string, unknown> & { keys: Array<Record<string, unknown>> };
    expect(Object.keys(jwks)).toEqual(['keys']);
    expect(jwks.keys).toHaveLength(3);
    expect(jwks.keys[0]).toEqual({ kid: 'kid-a', ...pubJwk(jwtA.publicKey) });
    expect(Object.keys(jwks.keys[0]!)).toEqual(['kty', 'kid', 'crv', 'x', 'y']);
    expect(Object.keys(jwks.keys[2]!)).toEqual(['kty', 'kid', 'n', 'e']);
    for (const k of jwks.keys) {
      expect(k['use']).toBeUndefined();
      expect(k['x5c']).toBeUndefined();
      expect(typeof k['kid']).toBe('string');
    }
    const back = parseJwtBundleJwks(TD, jwtBundleToJwks(fullBundle()));
    expect([...back.jwtAuthorities.keys()]).toEqual(['kid-a', 'kid-b', 'kid-rsa']);
    expect(back.x509Authorities).toHaveLength(0);
    // go-spiffe rejects JWKS keys without kid; so do we.
    expect(codeOf(() => parseJwtBundleJwks(TD, JSON.stringify({ keys: [pubJwk(jwtA.publicKey)] })))).toBe('bundle/missing-kid');
  });

  it('x509AuthoritiesPem lists every CA as PEM', () => {
    const pem = x509AuthoritiesPem(fullBundle());
    expect(certsFromPem(pem).map(b64)).toEqual([ourRoot, ourSigning, osslEcCa, osslRsaCa].map(b64));
    // openssl reads it back too.
    writeFileSync(join(dir, 'authorities.pem'), pem);
    const out = execFileSync('openssl', ['crl2pkcs7', '-nocrl', '-certfile', 'authorities.pem'], { cwd: dir, encoding: 'utf8' });
    expect(out).toContain('BEGIN PKCS7');
  });

  it('bundleDigest follows the documented canonical form', () => {
    const b = TrustBundle.create({
      trustDomain: TD,
      x509Authorities: [osslRsaCa, osslEcCa],
      jwtAuthorities: [
        ['z', jwtRsa.publicKey],
        ['a', jwtA.publicKey],
      ],
      sequence: 3,
    });
    const a = pubJwk(jwtA.publicKey);
    const r = pubJwk(jwtRsa.publicKey);
    const x509Sorted = [osslRsaCa, osslEcCa].sort(Buffer.compare).map(b64);
    const canonical =
      '{"jwt_authorities":[' +
      `{"crv":"P-256","kid":"a","kty":"EC","x":"${String(a['x'])}","y":"${String(a['y'])}"},` +
      `{"e":"${String(r['e'])}","kid":"z","kty":"RSA","n":"${String(r['n'])}"}` +
      '],"trust_domain":"example.org","x509_authorities":[' +
      x509Sorted.map((s) => `"${s}"`).join(',') +
      ']}';
    const expected = 'sha256:' + createHash('sha256').update(canonical).digest('hex');
    expect(bundleDigest(b)).toBe(expected);
    expect(bundleDigest(b)).toMatch(/^sha256:[0-9a-f]{64}$/);
    // Independent of order, sequence and refresh hint; sensitive to keys and trust domain.
    const reordered = TrustBundle.create({
      trustDomain: TD,
      x509Authorities: [osslEcCa, osslRsaCa],
      jwtAuthorities: [
        ['a', jwtA.publicKey],
        ['z', jwtRsa.publicKey],
      ],
      sequence: 99,
      refreshHintSeconds: 5,
    });
    expect(bundleDigest(reordered)).toBe(expected);
    expect(bundleDigest(reordered.with({ jwtAuthorities: [['a', jwtA.publicKey]] }))).not.toBe(expected);
    expect(bundleDigest(reordered.with({ x509Authorities: [osslEcCa] }))).not.toBe(expected);
    expect(bundleDigest(parseBundleJson(TD_B, bundleToJson(b)))).not.toBe(expected);
  });
});

describe('bundle maps and BundleSet (TDB 5)', () => {
  const mapOf = (entries: Array<[string, string]>): string => `{"trust_domains":{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}}`;
  const mapCode = (json: string): ReturnType<typeof codeOf> => codeOf(() => parseBundleMapJson(json));

  it('round-trips, sorted by trust domain, without refresh hints (TDB 5.1.1)', () => {
    const a = fullBundle();
    const b = TrustBundle.create({ trustDomain: TD_B, jwtAuthorities: [['kb', jwtB.publicKey]], sequence: 1, refreshHintSeconds: 60 });
    const set = BundleSet.of([b, a]);
    const json = bundleMapToJson(set);
    expect(json.startsWith('{"trust_domains":{"example.org":')).toBe(true);
    expect(json).not.toContain('spiffe_refresh_hint');
    const back = parseBundleMapJson(json);
    expect(back.trustDomains().map(String)).toEqual(['example.org', 'other.example']);
    expect(bundleDigest(back.get(TD)!)).toBe(bundleDigest(a));
    expect(back.get('other.example')?.sequence).toBe(1n);
    expect(bundleMapToJson(back)).toBe(json);
  });

  it('rejects duplicate trust domain keys (TDB 5.1.1, 6.3)', () => {
    const one = bundleToJson(fullBundle());
    const two = '{"keys":[]}';
    expect(mapCode(mapOf([['example.org', one], ['example.org', two]]))).toBe('bundle/duplicate-key');
    // The same name spelled with an escape is still a duplicate.
    expect(mapCode(`{"trust_domains":{"example.org":${two},"example\\u002eorg":${one}}}`)).toBe('bundle/duplicate-key');
    // Two trust_domains members as well.
    expect(mapCode(`{"trust_domains":{},"trust_domains":{"example.org":${one}}}`)).toBe('bundle/duplicate-key');
  });

  it('requires trust_domains, which may be empty (TDB 5.1.1)', () => {
    expect(mapCode('{}')).toBe('bundle/malformed');
    expect(mapCode('{"trust_domains":[]}')).toBe('bundle/malformed');
    expect(parseBundleMapJson('{"trust_domains":{}}').size).toBe(0);
  });

  it('rejects keys that are not canonical trust domain names (TDB 5.1.1; SPIFFE-ID 2.1)', () => {
    for (const key of ['Example.org', 'spiffe://example.org', 'example.org/path', '', 'exa mple.org']) {
      expect(mapCode(mapOf([[key, '{"keys":[]}']])), key).toBe('bundle/bad-trust-domain');
    }
  });

  it('reports which bundle of a map is bad', () => {
    const e = (() => {
      try {
        parseBundleMapJson(mapOf([['example.org', '{"keys":[]}'], ['other.example', '{"nokeys":1}']]));
      } catch (x) {
        return x;
      }
      return undefined;
    })();
    expect(e).toBeInstanceOf(BundleError);
    expect((e as BundleError).code).toBe('bundle/missing-keys');
    expect((e as BundleError).detail?.['trust_domain']).toBe('other.example');
  });

  it('never merges trust domains: each bundle serves only its own (TDB 3)', () => {
    const a = TrustBundle.create({ trustDomain: TD, jwtAuthorities: [['k', jwtA.publicKey]] });
    const b = TrustBundle.create({ trustDomain: TD_B, jwtAuthorities: [['k', jwtB.publicKey]] });
    const set = BundleSet.of([a, b]);
    expect(set.jwtAuthoritiesFor(TD)?.get('k')).toEqual(pubJwk(jwtA.publicKey));
    expect(set.jwtAuthoritiesFor(TD_B)?.get('k')).toEqual(pubJwk(jwtB.publicKey));
    expect(set.x509AuthoritiesFor(TrustDomain.parse('third.example'))).toBeUndefined();
    expect(codeOf(() => BundleSet.of([a, a.with({ sequence: 2 })]))).toBe('bundle/duplicate-trust-domain');
    // with / without
    const replaced = set.with(a.with({ sequence: 5 }));
    expect(replaced.get(TD)?.sequence).toBe(5n);
    expect(set.get(TD)?.sequence).toBeUndefined();
    expect(replaced.without(TD_B).has(TD_B)).toBe(false);
    expect([...replaced].map((x) => x.trustDomain.name)).toEqual(['example.org', 'other.example']);
  });
});
