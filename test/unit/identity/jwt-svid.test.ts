/**
 * JWT-SVID minting and validation (src/identity/jwt-svid.ts).
 *
 * Spec: JWT-SVID 1 and 5.1 (compact serialization only), 2 (only alg/kid/typ), 2.1 (allowed algs),
 * 2.2 (kid; required by go-spiffe/SPIRE), 2.3 (typ), 3.1 (sub), 3.2 (aud), 3.3 (exp), 4 (alg checked
 * first; RFC 7515 7 / RFC 7519), 6 (keys come from the bundle of the subject's trust domain);
 * RFC 7515 4 (duplicate header names), RFC 7518 3.3-3.5 (alg <-> key), RFC 7519 4.1.4-4.1.6 (times);
 * conformance checklist items 25, 26 and 28 (spiffe.md 5).
 *
 * Tokens for negative cases are built by hand (`forge`) and signed with real keys, so that each test
 * reaches exactly the rule it names; jose is used as an independent implementation for interop.
 */
import { describe, expect, it } from 'vitest';
import {
  createHmac,
  createPublicKey,
  generateKeyPairSync,
  sign as cryptoSign,
  constants as cryptoConstants,
  type JsonWebKey,
  type KeyObject,
} from 'node:crypto';
import * as jose from 'jose';
import { SpiffeId, TrustDomain } from '../../../src/identity/spiffe-id.js';
import {
  DEFAULT_JWT_LEEWAY_MS,
  JwtSvidError,
  JWT_SVID_ERROR_CODES,
  MAX_JWT_SVID_BYTES,
  mintJwtSvid,
  mintJwtSvidSync,
  validateJwtSvid,
  validateJwtSvidSync,
  type JwtBundleSource,
  type JwtSvidErrorCode,
} from '../../../src/identity/jwt-svid.js';

// A fixed instant far from the wall clock: validation must take time only from `now`.
const NOW = Date.UTC(2031, 0, 2, 3, 4, 5, 678);
const NOW_S = Math.floor(NOW / 1000);
const TD_A = TrustDomain.parse('example.org');
const TD_B = TrustDomain.parse('other.example');
const ID_A = SpiffeId.parse('spiffe://example.org/ns/default/sa/web');
const ID_B = SpiffeId.parse('spiffe://other.example/billing');
const AUD = 'spiffe://example.org/reports';

const p256 = (): { privateKey: KeyObject; publicKey: KeyObject } => generateKeyPairSync('ec', { namedCurve: 'P-256' });
const keyA = p256();
const keyA2 = p256();
const keyB = p256();
const keyP384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
const keyP521 = generateKeyPairSync('ec', { namedCurve: 'P-521' });
const keyRsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const keyEd = generateKeyPairSync('ed25519');

/** A bundle source over explicit per-trust-domain maps (like BundleSet, but with no parsing). */
function source(byTd: Record<string, Record<string, KeyObject | JsonWebKey>>): JwtBundleSource {
  const maps = new Map(Object.entries(byTd).map(([td, keys]) => [td, new Map(Object.entries(keys))]));
  return { jwtAuthoritiesFor: (td) => maps.get(td.name) };
}

const bundles = source({
  'example.org': { ka: keyA.publicKey, ka2: keyA2.publicKey.export({ format: 'jwk' }), k384: keyP384.publicKey, k521: keyP521.publicKey, krsa: keyRsa.publicKey },
  'other.example': { kb: keyB.publicKey },
});

const opts = (extra: Partial<Parameters<typeof validateJwtSvidSync>[1]> = {}): Parameters<typeof validateJwtSvidSync>[1] => ({
  audience: AUD,
  bundles,
  now: NOW,
  ...extra,
});

const b64u = (v: unknown): string => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

type ForgeAlg = 'ES256' | 'ES384' | 'ES512' | 'RS256' | 'PS256' | 'EdDSA';
/**
 * Build a compact JWS with exactly the given header and payload (objects or raw JSON text) and sign it
 * with `key` using `signAs` (defaults to the header's alg).
 */
function forge(header: unknown, payload: unknown, key: KeyObject = keyA.privateKey, signAs?: ForgeAlg): string {
  const input = b64u(header) + '.' + b64u(payload);
  const alg = signAs ?? ((header as { alg?: string }).alg as ForgeAlg);
  const data = Buffer.from(input);
  let sig: Buffer;
  switch (alg) {
    case 'ES256':
      sig = cryptoSign('sha256', data, { key, dsaEncoding: 'ieee-p1363' });
      break;
    case 'ES384':
      sig = cryptoSign('sha384', data, { key, dsaEncoding: 'ieee-p1363' });
      break;
    case 'ES512':
      sig = cryptoSign('sha512', data, { key, dsaEncoding: 'ieee-p1363' });
      break;
    case 'RS256':
      sig = cryptoSign('sha256', data, key);
      break;
    case 'PS256':
      sig = cryptoSign('sha256', data, { key, padding: cryptoConstants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
      break;
    case 'EdDSA':
      sig = cryptoSign(null, data, key);
      break;
    default:
      throw new Error(`forge cannot sign ${String(alg)}`);
  }
  return input + '.' + sig.toString('base64url');
}

const goodHeader = { alg: 'ES256', kid: 'ka', typ: 'JWT' };
const goodClaims = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  sub: ID_A.toString(),
  aud: AUD,
  exp: NOW_S + 300,
  iat: NOW_S,
  ...extra,
});

function codeOf(fn: () => unknown): JwtSvidErrorCode | 'no-error' | 'other-error' {
  try {
    fn();
    return 'no-error';
  } catch (e) {
    return e instanceof JwtSvidError ? e.code : 'other-error';
  }
}
const validateCode = (token: string, o = opts()): ReturnType<typeof codeOf> => codeOf(() => validateJwtSvidSync(token, o));

const mint = (extra: Partial<Parameters<typeof mintJwtSvidSync>[0]> = {}): string =>
  mintJwtSvidSync({ spiffeId: ID_A, audience: [AUD], ttlMs: 300_000, now: NOW, key: { kid: 'ka', privateKey: keyA.privateKey }, ...extra });

function decodePart(token: string, i: number): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[i]!, 'base64url').toString('utf8')) as Record<string, unknown>;
}

describe('mintJwtSvid', () => {
  it('produces the exact SPIRE-compatible header and claims (JWT-SVID 2, 3; checklist 25-26)', async () => {
    const token = await mintJwtSvid({ spiffeId: ID_A, audience: [AUD], ttlMs: 300_000, now: NOW, key: { kid: 'ka', privateKey: keyA.privateKey } });
    const parts = token.split('.');
    expect(parts).toHaveLength(3);
    // Header exactly {alg, kid, typ} in that order (JWT-SVID 2: nothing else).
    expect(Buffer.from(parts[0]!, 'base64url').toString()).toBe('{"alg":"ES256","kid":"ka","typ":"JWT"}');
    const claims = decodePart(token, 1);
    expect(claims).toEqual({ sub: ID_A.toString(), aud: AUD, exp: NOW_S + 300, iat: NOW_S });
    // Single audience is a string; the ES256 signature is 64 bytes r||s (RFC 7518 3.4).
    expect(typeof claims['aud']).toBe('string');
    expect(Buffer.from(parts[2]!, 'base64url')).toHaveLength(64);
  });

  it('writes several audiences as an array (JWT-SVID 3.2)', () => {
    const token = mint({ audience: ['a', 'b'] });
    expect(decodePart(token, 1)['aud']).toEqual(['a', 'b']);
    expect(validateJwtSvidSync(token, opts({ audience: 'b' })).audience).toEqual(['a', 'b']);
  });

  it('never lets exp pass the signing key notAfter', () => {
    const notAfter = NOW + 60_500;
    const token = mint({ notAfter });
    const exp = decodePart(token, 1)['exp'] as number;
    expect(exp).toBe(Math.floor(notAfter / 1000));
    expect(exp).toBeLessThan(NOW_S + 300);
    expect(exp * 1000).toBeLessThanOrEqual(notAfter);
    // A notAfter later than now+ttl changes nothing.
    expect(decodePart(mint({ notAfter: NOW + 3_600_000 }), 1)['exp']).toBe(NOW_S + 300);
  });

  it('refuses to mint with a signing key that expires now (signer-expired)', () => {
    expect(codeOf(() => mint({ notAfter: NOW }))).toBe('jwt-svid/signer-expired');
    expect(codeOf(() => mint({ notAfter: NOW - 1 }))).toBe('jwt-svid/signer-expired');
  });

  it.each([
    ['no audience (JWT-SVID 3.2)', { audience: [] }],
    ['an empty audience value', { audience: [''] }],
    ['an oversized audience value', { audience: ['a'.repeat(2049)] }],
    ['too many audiences', { audience: Array.from({ length: 33 }, (_, i) => `a${i}`) }],
    ['a trust-domain ID as subject (JWT-SVID 3.1: workload ID)', { spiffeId: SpiffeId.parse('spiffe://example.org') }],
    ['an empty kid', { key: { kid: '', privateKey: keyA.privateKey } }],
    ['a P-384 key (we mint ES256 only)', { key: { kid: 'k', privateKey: keyP384.privateKey } }],
    ['an RSA key', { key: { kid: 'k', privateKey: keyRsa.privateKey } }],
    ['a public key', { key: { kid: 'k', privateKey: keyA.publicKey } }],
    ['a TTL under one second', { ttlMs: 999 }],
    ['a non-finite TTL', { ttlMs: Number.POSITIVE_INFINITY }],
  ])('rejects %s as bad-request', (_name, extra) => {
    expect(codeOf(() => mint(extra as Partial<Parameters<typeof mintJwtSvidSync>[0]>))).toBe('jwt-svid/bad-request');
  });

  it('is verified by an independent implementation (jose)', async () => {
    const token = mint({ audience: ['x', AUD] });
    const { payload, protectedHeader } = await jose.jwtVerify(token, keyA.publicKey, {
      algorithms: ['ES256'],
      audience: AUD,
      currentDate: new Date(NOW),
    });
    expect(protectedHeader).toEqual({ alg: 'ES256', kid: 'ka', typ: 'JWT' });
    expect(payload.sub).toBe(ID_A.toString());
  });
});

describe('validateJwtSvid: accepted tokens', () => {
  it('returns the SPIFFE ID, claims and expiry (JWT-SVID 3)', async () => {
    const r = await validateJwtSvid(mint(), opts());
    expect(r.spiffeId.equals(ID_A)).toBe(true);
    expect(r.claims).toEqual(goodClaims());
    expect(r.audience).toEqual([AUD]);
    expect(r.expiresAt).toBe((NOW_S + 300) * 1000);
  });

  it('accepts tokens minted by jose for every allowed key family (JWT-SVID 2.1; RFC 7518 3.3-3.5)', async () => {
    const cases: Array<[string, string, KeyObject]> = [
      ['ES256', 'ka', keyA.privateKey],
      ['ES384', 'k384', keyP384.privateKey],
      ['ES512', 'k521', keyP521.privateKey],
      ['RS256', 'krsa', keyRsa.privateKey],
      ['RS512', 'krsa', keyRsa.privateKey],
      ['PS256', 'krsa', keyRsa.privateKey],
      ['PS384', 'krsa', keyRsa.privateKey],
    ];
    for (const [alg, kid, key] of cases) {
      const token = await new jose.SignJWT({ sub: ID_A.toString(), aud: [AUD] })
        .setProtectedHeader({ alg, kid, typ: 'JWT' })
        .setIssuedAt(NOW_S)
        .setExpirationTime(NOW_S + 60)
        .sign(key);
      expect(validateJwtSvidSync(token, opts()).spiffeId.toString(), alg).toBe(ID_A.toString());
    }
  });

  it('accepts typ JOSE and an absent typ (JWT-SVID 2.3)', () => {
    expect(validateCode(forge({ alg: 'ES256', kid: 'ka', typ: 'JOSE' }, goodClaims()))).toBe('no-error');
    expect(validateCode(forge({ alg: 'ES256', kid: 'ka' }, goodClaims()))).toBe('no-error');
  });

  it('uses a bundle JWK (not only KeyObjects) and keeps other claims (JWT-SVID 3)', () => {
    const token = forge({ ...goodHeader, kid: 'ka2' }, goodClaims({ jti: 'abc', iss: 'edgeward' }), keyA2.privateKey);
    const r = validateJwtSvidSync(token, opts());
    expect(r.claims['jti']).toBe('abc');
  });

  it('takes time only from `now` (no wall clock)', () => {
    const old = Date.UTC(2001, 0, 1);
    const token = mint({ now: old });
    expect(validateCode(token, opts({ now: old + 1000 }))).toBe('no-error');
    expect(validateCode(token, opts({ now: old + 300_000 + DEFAULT_JWT_LEEWAY_MS }))).toBe('jwt-svid/expired');
  });
});

describe('validateJwtSvid: rejected tokens', () => {
  it('rejects alg none (JWT-SVID 2.1: validators MUST reject other algs; checklist 28)', () => {
    const unsigned = b64u({ alg: 'none', kid: 'ka', typ: 'JWT' }) + '.' + b64u(goodClaims()) + '.';
    expect(validateCode(unsigned)).toBe('jwt-svid/unsupported-alg');
    const noKid = b64u({ alg: 'none' }) + '.' + b64u(goodClaims()) + '.';
    expect(validateCode(noKid)).toBe('jwt-svid/unsupported-alg');
  });

  it('rejects HS256 forged with the public key as HMAC secret (JWT-SVID 2.1; key confusion)', () => {
    const input = b64u({ alg: 'HS256', kid: 'ka', typ: 'JWT' }) + '.' + b64u(goodClaims());
    for (const secret of [
      keyA.publicKey.export({ format: 'pem', type: 'spki' }),
      keyA.publicKey.export({ format: 'der', type: 'spki' }),
      JSON.stringify(keyA.publicKey.export({ format: 'jwk' })),
    ]) {
      const sig = createHmac('sha256', secret).update(input).digest('base64url');
      expect(validateCode(input + '.' + sig)).toBe('jwt-svid/unsupported-alg');
    }
  });

  it('rejects EdDSA even with a valid Ed25519 signature (JWT-SVID 2.1)', () => {
    const token = forge({ alg: 'EdDSA', kid: 'ked', typ: 'JWT' }, goodClaims(), keyEd.privateKey);
    const withEdKey = source({ 'example.org': { ked: keyEd.publicKey } });
    expect(validateCode(token, opts({ bundles: withEdKey }))).toBe('jwt-svid/unsupported-alg');
    // An Ed25519 key in a bundle cannot verify an allowed alg either.
    const es = forge({ alg: 'ES256', kid: 'ked', typ: 'JWT' }, goodClaims(), keyA.privateKey);
    expect(validateCode(es, opts({ bundles: withEdKey }))).toBe('jwt-svid/bad-key');
  });

  it.each(['HS384', 'HS512', 'ES256K', 'RSA-OAEP', 'es256', 'Ed25519', ''])('rejects alg %j (JWT-SVID 2.1)', (alg) => {
    expect(validateCode(forge({ alg, kid: 'ka', typ: 'JWT' }, goodClaims(), keyA.privateKey, 'ES256'))).toBe('jwt-svid/unsupported-alg');
  });

  it('rejects a missing alg (JWT-SVID 2.1: alg MUST be set)', () => {
    expect(validateCode(forge({ kid: 'ka', typ: 'JWT' }, goodClaims(), keyA.privateKey, 'ES256'))).toBe('jwt-svid/bad-header');
  });

  it('rejects an unknown kid (JWT-SVID 2.2 via go-spiffe; checklist 28)', () => {
    expect(validateCode(forge({ ...goodHeader, kid: 'nope' }, goodClaims()))).toBe('jwt-svid/unknown-kid');
  });

  it('rejects a missing or empty kid (kid required: go-spiffe/SPIRE, JWT-SVID 2.2)', () => {
    expect(validateCode(forge({ alg: 'ES256', typ: 'JWT' }, goodClaims()))).toBe('jwt-svid/bad-header');
    expect(validateCode(forge({ ...goodHeader, kid: '' }, goodClaims()))).toBe('jwt-svid/bad-header');
    expect(validateCode(forge({ ...goodHeader, kid: 7 }, goodClaims()))).toBe('jwt-svid/bad-header');
  });

  it('rejects a wrong audience (JWT-SVID 3.2; checklist 28)', () => {
    expect(validateCode(forge(goodHeader, goodClaims({ aud: 'spiffe://example.org/other' })))).toBe('jwt-svid/wrong-audience');
    expect(validateCode(forge(goodHeader, goodClaims({ aud: ['a', 'b'] })))).toBe('jwt-svid/wrong-audience');
    // Exact match only: no prefix or case folding.
    expect(validateCode(forge(goodHeader, goodClaims({ aud: AUD + '/x' })))).toBe('jwt-svid/wrong-audience');
    expect(validateCode(forge(goodHeader, goodClaims({ aud: AUD.toUpperCase() })))).toBe('jwt-svid/wrong-audience');
  });

  it('rejects a missing or empty aud (JWT-SVID 3.2: MUST be present with one or more values)', () => {
    const { aud: _aud, ...noAud } = goodClaims();
    expect(validateCode(forge(goodHeader, noAud))).toBe('jwt-svid/missing-claim');
    expect(validateCode(forge(goodHeader, goodClaims({ aud: [] })))).toBe('jwt-svid/missing-claim');
  });

  it('rejects aud of the wrong type (RFC 7519 4.1.3)', () => {
    expect(validateCode(forge(goodHeader, goodClaims({ aud: 5 })))).toBe('jwt-svid/bad-claim');
    expect(validateCode(forge(goodHeader, goodClaims({ aud: [AUD, 5] })))).toBe('jwt-svid/bad-claim');
    expect(validateCode(forge(goodHeader, goodClaims({ aud: null })))).toBe('jwt-svid/bad-claim');
  });

  it('rejects an expired token, with the leeway (JWT-SVID 3.3, App. A; RFC 7519 4.1.4; checklist 28)', () => {
    const token = forge(goodHeader, goodClaims({ exp: NOW_S - 10 }));
    // 10 s past exp is inside the default 30 s leeway...
    expect(validateCode(token)).toBe('no-error');
    // ...but not with leeway 0, nor 30 s later.
    expect(validateCode(token, opts({ leewayMs: 0 }))).toBe('jwt-svid/expired');
    expect(validateCode(token, opts({ now: NOW + 20_000 }))).toBe('jwt-svid/expired');
    // "before exp" is strict: now == exp is expired with no leeway.
    expect(validateCode(forge(goodHeader, goodClaims({ exp: NOW / 1000 })), opts({ leewayMs: 0 }))).toBe('jwt-svid/expired');
  });

  it('rejects a missing or non-numeric exp (JWT-SVID 3.3: validators MUST reject tokens without exp)', () => {
    const { exp: _exp, ...noExp } = goodClaims();
    expect(validateCode(forge(goodHeader, noExp))).toBe('jwt-svid/missing-claim');
    expect(validateCode(forge(goodHeader, goodClaims({ exp: String(NOW_S + 300) })))).toBe('jwt-svid/bad-claim');
  });

  it('rejects nbf and iat in the future beyond the leeway (RFC 7519 4.1.5, 4.1.6)', () => {
    expect(validateCode(forge(goodHeader, goodClaims({ nbf: NOW_S + 60 })))).toBe('jwt-svid/not-yet-valid');
    expect(validateCode(forge(goodHeader, goodClaims({ iat: NOW_S + 60 })))).toBe('jwt-svid/not-yet-valid');
    expect(validateCode(forge(goodHeader, goodClaims({ iat: NOW_S + 10 })))).toBe('no-error');
    expect(validateCode(forge(goodHeader, goodClaims({ iat: 'yesterday' })))).toBe('jwt-svid/bad-claim');
  });

  it.each(['jku', 'x5u', 'jwk', 'x5c', 'x5t', 'crit', 'b64', 'cty', 'zip', 'enc', 'foo', '__proto__'])(
    'rejects an extra header member %s (JWT-SVID 2: any other header MUST NOT be included)',
    (member) => {
      const header = `{"alg":"ES256","kid":"ka","typ":"JWT",${JSON.stringify(member)}:"x"}`;
      expect(validateCode(forge(header, goodClaims(), keyA.privateKey, 'ES256'))).toBe('jwt-svid/bad-header');
    },
  );

  it('rejects a typ other than JWT/JOSE (JWT-SVID 2.3)', () => {
    for (const typ of ['at+jwt', 'jwt', 'JWS', 1]) {
      expect(validateCode(forge({ ...goodHeader, typ }, goodClaims())), String(typ)).toBe('jwt-svid/bad-header');
    }
  });

  it('rejects duplicate header members (RFC 7515 4) instead of picking one', () => {
    const header = '{"alg":"ES256","kid":"ka","typ":"JWT","alg":"none"}';
    expect(validateCode(forge(header, goodClaims(), keyA.privateKey, 'ES256'))).toBe('jwt-svid/malformed');
    const claims = `{"sub":"${ID_A.toString()}","aud":"${AUD}","exp":${NOW_S + 300},"sub":"spiffe://example.org/admin"}`;
    expect(validateCode(forge(goodHeader, claims))).toBe('jwt-svid/malformed');
  });

  it('rejects a sub of trust domain B signed by a key of trust domain A (Trust Domain and Bundle 3; checklist 28)', () => {
    const claimsB = goodClaims({ sub: ID_B.toString() });
    // kid of A's key: not in B's bundle, never looked up in A's.
    expect(validateCode(forge({ ...goodHeader, kid: 'ka' }, claimsB, keyA.privateKey))).toBe('jwt-svid/unknown-kid');
    // Same kid in both bundles: B's key is used, so A's signature fails.
    const sameKid = source({ 'example.org': { k1: keyA.publicKey }, 'other.example': { k1: keyB.publicKey } });
    const token = forge({ ...goodHeader, kid: 'k1' }, claimsB, keyA.privateKey);
    expect(validateCode(token, opts({ bundles: sameKid }))).toBe('jwt-svid/bad-signature');
    // Signed with B's own key it passes: the failure above is the trust domain rule.
    expect(validateCode(forge({ ...goodHeader, kid: 'k1' }, claimsB, keyB.privateKey), opts({ bundles: sameKid }))).toBe('no-error');
    // No bundle at all for B.
    const onlyA = source({ 'example.org': { k1: keyA.publicKey } });
    expect(validateCode(token, opts({ bundles: onlyA }))).toBe('jwt-svid/untrusted-domain');
  });

  it('rejects every token of a trust domain whose bundle has no JWT keys (Trust Domain and Bundle 4.1.3)', () => {
    const empty = source({ 'example.org': {} });
    expect(validateCode(mint(), opts({ bundles: empty }))).toBe('jwt-svid/untrusted-domain');
  });

  it('rejects a tampered payload, header or signature (RFC 7515 5.2; checklist 28)', () => {
    const token = mint();
    const [h, p, s] = token.split('.') as [string, string, string];
    const evil = b64u(goodClaims({ sub: 'spiffe://example.org/admin' }));
    expect(validateCode(`${h}.${evil}.${s}`)).toBe('jwt-svid/bad-signature');
    const longer = b64u(goodClaims({ exp: NOW_S + 86_400 }));
    expect(validateCode(`${h}.${longer}.${s}`)).toBe('jwt-svid/bad-signature');
    const sig = Buffer.from(s, 'base64url');
    sig[10] = sig[10]! ^ 1;
    expect(validateCode(`${h}.${p}.${sig.toString('base64url')}`)).toBe('jwt-svid/bad-signature');
    // A signature of the wrong length (DER instead of r||s) is a bad signature too.
    const der = cryptoSign('sha256', Buffer.from(`${h}.${p}`), keyA.privateKey);
    expect(validateCode(`${h}.${p}.${der.toString('base64url')}`)).toBe('jwt-svid/bad-signature');
    expect(validateCode(`${h}.${p}.`)).toBe('jwt-svid/malformed');
  });

  it('rejects the JWS JSON serialization (JWT-SVID 1, 5.1: compact only)', () => {
    const [h, p, s] = mint().split('.') as [string, string, string];
    expect(validateCode(JSON.stringify({ payload: p, protected: h, signature: s }))).toBe('jwt-svid/malformed');
    expect(validateCode(JSON.stringify({ payload: p, signatures: [{ protected: h, signature: s }] }))).toBe('jwt-svid/malformed');
  });

  it('rejects malformed compact serializations (RFC 7515 3.1, 2)', () => {
    const token = mint();
    const [h, p, s] = token.split('.') as [string, string, string];
    for (const bad of [
      '',
      'abc',
      `${h}.${p}`,
      `${h}.${p}.${s}.${s}`,
      `${h}.${p}.${s}.`,
      ` ${token}`,
      `${token}\n`,
      `${h}=.${p}.${s}`, // padding is not base64url
      `${h}.${p}.${s.slice(0, -1)}+`,
      `${b64u('[1,2]')}.${p}.${s}`, // header not an object
      `${b64u('{"alg":"ES256",}')}.${p}.${s}`, // not JSON
      `${Buffer.from([0xef, 0xbb, 0xbf, ...Buffer.from(JSON.stringify(goodHeader))]).toString('base64url')}.${p}.${s}`, // BOM
      `${Buffer.from([0x7b, 0xff, 0x7d]).toString('base64url')}.${p}.${s}`, // not UTF-8
    ]) {
      expect(validateCode(bad), JSON.stringify(bad.slice(0, 40))).toBe('jwt-svid/malformed');
    }
    expect(codeOf(() => validateJwtSvidSync(42 as unknown as string, opts()))).toBe('jwt-svid/malformed');
  });

  it('rejects an oversized token before parsing it (architecture.md 9)', () => {
    const big = forge(goodHeader, goodClaims({ pad: 'x'.repeat(MAX_JWT_SVID_BYTES) }));
    expect(validateCode(big)).toBe('jwt-svid/too-large');
    expect(validateCode('a'.repeat(MAX_JWT_SVID_BYTES + 1))).toBe('jwt-svid/too-large');
  });

  it.each([
    ['an https URL', 'https://example.org/web'],
    ['an uppercase trust domain', 'spiffe://Example.org/web'],
    ['a trust-domain ID without path', 'spiffe://example.org'],
    ['a trailing slash', 'spiffe://example.org/web/'],
    ['a dot segment', 'spiffe://example.org/a/../admin'],
    ['a number', 12],
    ['an empty string', ''],
  ])('rejects a sub that is %s (JWT-SVID 3.1)', (_name, sub) => {
    expect(validateCode(forge(goodHeader, goodClaims({ sub })))).toBe('jwt-svid/bad-subject');
  });

  it('rejects a missing sub (JWT-SVID 3.1)', () => {
    const { sub: _sub, ...noSub } = goodClaims();
    expect(validateCode(forge(goodHeader, noSub))).toBe('jwt-svid/missing-claim');
  });

  it('rejects a key that does not suit alg (RFC 7518 3.3-3.5)', () => {
    // P-384 signature claiming ES384 but kid names the P-256 key.
    expect(validateCode(forge({ ...goodHeader, alg: 'ES384', kid: 'ka' }, goodClaims(), keyP384.privateKey))).toBe('jwt-svid/alg-key-mismatch');
    // RS256 with an EC key; ES256 with an RSA key; ES256 with the P-521 key.
    expect(validateCode(forge({ ...goodHeader, alg: 'RS256', kid: 'ka' }, goodClaims(), keyRsa.privateKey))).toBe('jwt-svid/alg-key-mismatch');
    expect(validateCode(forge({ ...goodHeader, alg: 'ES256', kid: 'krsa' }, goodClaims()))).toBe('jwt-svid/alg-key-mismatch');
    expect(validateCode(forge({ ...goodHeader, alg: 'ES256', kid: 'k521' }, goodClaims()))).toBe('jwt-svid/alg-key-mismatch');
    // A JWK restricted by its own alg member.
    const restricted = source({ 'example.org': { kr: { ...keyRsa.publicKey.export({ format: 'jwk' }), alg: 'PS256' } } });
    expect(validateCode(forge({ ...goodHeader, alg: 'RS256', kid: 'kr' }, goodClaims(), keyRsa.privateKey), opts({ bundles: restricted }))).toBe(
      'jwt-svid/alg-key-mismatch',
    );
    expect(validateCode(forge({ ...goodHeader, alg: 'PS256', kid: 'kr' }, goodClaims(), keyRsa.privateKey), opts({ bundles: restricted }))).toBe('no-error');
  });

  it('refuses unusable bundle keys: private JWK, secret key, weak RSA (bad-key)', () => {
    const token = forge({ ...goodHeader, kid: 'kx' }, goodClaims());
    const privJwk = source({ 'example.org': { kx: keyA.privateKey.export({ format: 'jwk' }) } });
    expect(validateCode(token, opts({ bundles: privJwk }))).toBe('jwt-svid/bad-key');
    const octJwk = source({ 'example.org': { kx: { kty: 'oct', k: 'c2VjcmV0' } } });
    expect(validateCode(token, opts({ bundles: octJwk }))).toBe('jwt-svid/bad-key');
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const weakSrc = source({ 'example.org': { kx: weak.publicKey } });
    expect(validateCode(forge({ ...goodHeader, alg: 'RS256', kid: 'kx' }, goodClaims(), weak.privateKey), opts({ bundles: weakSrc }))).toBe('jwt-svid/bad-key');
    const offCurve = source({ 'example.org': { kx: { ...keyA.publicKey.export({ format: 'jwk' }), y: keyB.publicKey.export({ format: 'jwk' }).y } } });
    expect(validateCode(token, opts({ bundles: offCurve }))).toBe('jwt-svid/bad-key');
  });

  it('rejects bad validator arguments (bad-request)', () => {
    const token = mint();
    expect(validateCode(token, opts({ audience: '' }))).toBe('jwt-svid/bad-request');
    expect(validateCode(token, opts({ leewayMs: -1 }))).toBe('jwt-svid/bad-request');
    expect(validateCode(token, opts({ leewayMs: 10 * 60_000 }))).toBe('jwt-svid/bad-request');
    expect(validateCode(token, opts({ now: Number.NaN }))).toBe('jwt-svid/bad-request');
  });

  it('rejects asynchronously with typed errors whose message is ours, jose-free', async () => {
    const err = await validateJwtSvid('a.b.c', opts()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JwtSvidError);
    expect((err as JwtSvidError).code).toBe('jwt-svid/malformed');
    expect(JWT_SVID_ERROR_CODES).toContain((err as JwtSvidError).code);
    await expect(mintJwtSvid({ spiffeId: ID_A, audience: [], ttlMs: 1000, now: NOW, key: { kid: 'k', privateKey: keyA.privateKey } })).rejects.toMatchObject({
      code: 'jwt-svid/bad-request',
    });
  });
});

describe('JWK handling', () => {
  it('verifies with a JWK from the bundle exactly like with the KeyObject', () => {
    const jwkSrc = source({ 'example.org': { ka: keyA.publicKey.export({ format: 'jwk' }) } });
    const derived = source({ 'example.org': { ka: createPublicKey(keyA.privateKey) } });
    expect(validateCode(mint(), opts({ bundles: derived }))).toBe('no-error');
    // A private KeyObject in a bundle is a configuration error, not a verification key.
    const privSrc = source({ 'example.org': { ka: keyA.privateKey } });
    expect(validateCode(mint(), opts({ bundles: privSrc }))).toBe('jwt-svid/bad-key');
    expect(validateCode(mint(), opts({ bundles: jwkSrc }))).toBe('no-error');
  });
});
