/**
 * Conformance tests for SPIFFE IDs and trust domains (SPIFFE-ID standard, spiffe.md section 2;
 * conformance checklist items 16 and 29). Every rejection asserts the exact error code.
 */
import { describe, expect, it } from 'vitest';
import {
  MAX_SPIFFE_ID_BYTES,
  MAX_TRUST_DOMAIN_BYTES,
  SPIFFE_ID_ERROR_CODES,
  SpiffeId,
  SpiffeIdError,
  TrustDomain,
  type SpiffeIdErrorCode,
} from '../../../src/identity/index.js';

/** Run `fn`, require a SpiffeIdError and return its code. */
function codeOf(fn: () => unknown): SpiffeIdErrorCode {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SpiffeIdError);
    return (e as SpiffeIdError).code;
  }
  throw new Error('expected a SpiffeIdError, nothing was thrown');
}

const parseCode = (input: unknown): SpiffeIdErrorCode => codeOf(() => SpiffeId.parse(input));

/** `spiffe://<td>` with a trust domain name of exactly `n` bytes made of valid labels. */
function tdOfBytes(n: number): string {
  // labels of 63 'a' separated by dots, trimmed to length n (never ending with '.')
  let s = '';
  while (s.length < n) s += s.length % 64 === 63 ? '.' : 'a';
  if (s.endsWith('.')) s = s.slice(0, -1) + 'b';
  return s;
}

/** A SPIFFE ID of exactly `n` bytes: spiffe://example.org followed by '/xxx...' segments. */
function idOfBytes(n: number): string {
  const head = 'spiffe://example.org';
  let path = '';
  let room = n - head.length;
  while (room > 0) {
    // segments of 100 bytes ('/' + 99 chars); never leave a 1-byte remainder (a lone '/').
    const seg = room > 100 && room - 100 < 2 ? 50 : Math.min(room, 100);
    path += '/' + 'x'.repeat(seg - 1);
    room -= seg;
  }
  const s = head + path;
  expect(Buffer.byteLength(s)).toBe(n);
  return s;
}

describe('SpiffeId.parse: valid IDs (SPIFFE-ID 2, 2.1, 2.2, 2.3)', () => {
  it.each([
    ['spiffe://example.org', 'example.org', ''], // SPIFFE-ID 2: the path is optional (trust domain ID)
    ['spiffe://example.org/ns/prod/sa/web', 'example.org', '/ns/prod/sa/web'], // SPIFFE-ID 2.2
    ['spiffe://td/A-Z.a_z-09', 'td', '/A-Z.a_z-09'], // SPIFFE-ID 2.2: path chars [a-zA-Z0-9._-], case kept
    ['spiffe://my_td-1.example-2.org/x', 'my_td-1.example-2.org', '/x'], // SPIFFE-ID 2.1: [a-z0-9._-]
    ['spiffe://192.168.1.10/workload', '192.168.1.10', '/workload'], // SPIFFE-ID 2.1: an IPv4 address is allowed
    ['spiffe://td/...', 'td', '/...'], // SPIFFE-ID 2.2: only "." and ".." are banned segments
    ['spiffe://td/.x/..y/z.', 'td', '/.x/..y/z.'],
  ])('accepts %s', (input, td, path) => {
    const id = SpiffeId.parse(input);
    expect(id.trustDomain.name).toBe(td);
    expect(id.path).toBe(path);
    expect(id.toString()).toBe(input);
    expect(id.toJSON()).toBe(input);
    expect(id.isTrustDomainId).toBe(path === '');
  });

  it('path is case-sensitive: /A and /a are different IDs (SPIFFE-ID 2.2)', () => {
    expect(SpiffeId.parse('spiffe://td/A').equals(SpiffeId.parse('spiffe://td/a'))).toBe(false);
  });

  it('accepts an ID of exactly 2048 bytes and rejects 2049 bytes (SPIFFE-ID 2.3)', () => {
    expect(MAX_SPIFFE_ID_BYTES).toBe(2048);
    const max = idOfBytes(2048);
    expect(SpiffeId.parse(max).toString()).toBe(max);
    expect(parseCode(idOfBytes(2049))).toBe('spiffe-id/too-long');
  });

  it('counts bytes, not UTF-16 code units, for the 2048 limit (SPIFFE-ID 2.3)', () => {
    // 2046 ASCII bytes + one 3-byte character: 2047 UTF-16 code units (under the limit) but 2049 bytes.
    const input = idOfBytes(2046) + '\u20ac';
    expect(input.length).toBe(2047);
    expect(parseCode(input)).toBe('spiffe-id/too-long');
  });

  it('accepts a 255-byte trust domain and rejects a 256-byte one (SPIFFE-ID 2.1)', () => {
    expect(MAX_TRUST_DOMAIN_BYTES).toBe(255);
    const td255 = tdOfBytes(255);
    expect(td255.length).toBe(255);
    expect(SpiffeId.parse(`spiffe://${td255}/w`).trustDomain.name).toBe(td255);
    expect(TrustDomain.parse(td255).name).toBe(td255);
    const td256 = tdOfBytes(256);
    expect(td256.length).toBe(256);
    expect(parseCode(`spiffe://${td256}/w`)).toBe('spiffe-id/trust-domain-too-long');
    expect(codeOf(() => TrustDomain.parse(td256))).toBe('spiffe-id/trust-domain-too-long');
  });

  it('segments splits the path', () => {
    expect(SpiffeId.parse('spiffe://td/a/b/c').segments).toEqual(['a', 'b', 'c']);
    expect(SpiffeId.parse('spiffe://td').segments).toEqual([]);
  });
});

describe('SpiffeId.parse: rejections with exact codes (SPIFFE-ID 2, 2.1, 2.2, 2.3; checklist 29)', () => {
  it.each<[string, string, SpiffeIdErrorCode]>([
    // SPIFFE-ID 2.1: trust domain is lowercase only (go-spiffe rejects uppercase; one spelling per identity)
    ['uppercase trust domain', 'spiffe://Example.org/w', 'spiffe-id/bad-trust-domain-char'],
    ['all-uppercase trust domain', 'spiffe://EXAMPLE.ORG', 'spiffe-id/bad-trust-domain-char'],
    // SPIFFE-ID 2: scheme is "spiffe" (we accept only lowercase)
    ['uppercase scheme', 'SPIFFE://example.org/w', 'spiffe-id/wrong-scheme'],
    ['mixed-case scheme', 'Spiffe://example.org/w', 'spiffe-id/wrong-scheme'],
    // SPIFFE-ID 2.1: no port
    ['port', 'spiffe://example.org:8443/w', 'spiffe-id/has-port-or-userinfo'],
    ['port without path', 'spiffe://example.org:443', 'spiffe-id/has-port-or-userinfo'],
    // SPIFFE-ID 2.1: no userinfo
    ['userinfo', 'spiffe://user@example.org/w', 'spiffe-id/has-port-or-userinfo'],
    ['userinfo with password', 'spiffe://user:pw@example.org/w', 'spiffe-id/has-port-or-userinfo'],
    // SPIFFE-ID 2.2: no empty segment
    ['empty segment', 'spiffe://example.org/a//b', 'spiffe-id/empty-segment'],
    ['empty first segment', 'spiffe://example.org//a', 'spiffe-id/empty-segment'],
    // SPIFFE-ID 2.2: no trailing slash
    ['trailing slash', 'spiffe://example.org/a/', 'spiffe-id/trailing-slash'],
    ['bare slash path', 'spiffe://example.org/', 'spiffe-id/trailing-slash'],
    // SPIFFE-ID 2.2: no dot segments
    ['"." segment', 'spiffe://example.org/a/./b', 'spiffe-id/dot-segment'],
    ['".." segment', 'spiffe://example.org/a/../b', 'spiffe-id/dot-segment'],
    ['trailing "." segment', 'spiffe://example.org/a/.', 'spiffe-id/dot-segment'],
    ['trailing ".." segment', 'spiffe://example.org/..', 'spiffe-id/dot-segment'],
    // SPIFFE-ID 2.1 / 2.2: no percent-encoding
    ['%xx in trust domain', 'spiffe://ex%41mple.org/w', 'spiffe-id/percent-encoded'],
    ['%xx in path', 'spiffe://example.org/a%2Fb', 'spiffe-id/percent-encoded'],
    ['%20 in path', 'spiffe://example.org/a%20b', 'spiffe-id/percent-encoded'],
    // SPIFFE-ID 2: no query, no fragment
    ['query', 'spiffe://example.org/w?x=1', 'spiffe-id/has-query-or-fragment'],
    ['query right after trust domain', 'spiffe://example.org?x=1', 'spiffe-id/has-query-or-fragment'],
    ['fragment', 'spiffe://example.org/w#frag', 'spiffe-id/has-query-or-fragment'],
    ['fragment right after trust domain', 'spiffe://example.org#frag', 'spiffe-id/has-query-or-fragment'],
    // SPIFFE-ID 2.1 / 2.2: character sets
    ['space in path', 'spiffe://example.org/a b', 'spiffe-id/bad-path-char'],
    ['plus in path', 'spiffe://example.org/a+b', 'spiffe-id/bad-path-char'],
    ['unicode in path', 'spiffe://example.org/caf\u00e9', 'spiffe-id/bad-path-char'],
    ['tilde in path', 'spiffe://example.org/~w', 'spiffe-id/bad-path-char'],
    ['backslash in path', 'spiffe://example.org/a\\b', 'spiffe-id/bad-path-char'],
    ['NUL in path', 'spiffe://example.org/a\u0000b', 'spiffe-id/bad-path-char'],
    ['space in trust domain', 'spiffe://exa mple.org/w', 'spiffe-id/bad-trust-domain-char'],
    ['plus in trust domain', 'spiffe://exa+mple.org/w', 'spiffe-id/bad-trust-domain-char'],
    ['unicode in trust domain', 'spiffe://b\u00fccher.example/w', 'spiffe-id/bad-trust-domain-char'],
    // SPIFFE-ID 2.1: IPv6 literals are not allowed as trust domains
    ['IPv6 trust domain', 'spiffe://[::1]/w', 'spiffe-id/bad-trust-domain-char'],
    ['IPv6 trust domain without path', 'spiffe://[2001:db8::1]', 'spiffe-id/bad-trust-domain-char'],
    // SPIFFE-ID 2: scheme and "://"
    ['empty string', '', 'spiffe-id/empty'],
    ['single slash after scheme', 'spiffe:/example.org/w', 'spiffe-id/wrong-scheme'],
    ['no slashes after scheme', 'spiffe:example.org/w', 'spiffe-id/wrong-scheme'],
    ['http scheme', 'http://example.org/w', 'spiffe-id/wrong-scheme'],
    ['https scheme', 'https://example.org/w', 'spiffe-id/wrong-scheme'],
    ['leading whitespace', ' spiffe://example.org/w', 'spiffe-id/wrong-scheme'],
    ['bare trust domain', 'example.org', 'spiffe-id/wrong-scheme'],
    // SPIFFE-ID 2.1: the trust domain is not empty
    ['empty trust domain', 'spiffe://', 'spiffe-id/missing-trust-domain'],
    ['empty trust domain with path', 'spiffe:///w', 'spiffe-id/missing-trust-domain'],
  ])('rejects %s: %j', (_name, input, code) => {
    expect(SPIFFE_ID_ERROR_CODES).toContain(code);
    expect(parseCode(input)).toBe(code);
  });

  it('rejects an ID over 2048 bytes before anything else (SPIFFE-ID 2.3)', () => {
    expect(parseCode('spiffe://example.org/' + 'a'.repeat(3000))).toBe('spiffe-id/too-long');
    // Even when the long input is otherwise invalid, the length check is bounded work and comes first.
    expect(parseCode('x'.repeat(10_000))).toBe('spiffe-id/too-long');
  });

  it('rejects a trust domain over 255 bytes inside an ID that is under 2048 bytes (SPIFFE-ID 2.1)', () => {
    expect(parseCode(`spiffe://${'a'.repeat(300)}/w`)).toBe('spiffe-id/trust-domain-too-long');
  });

  it.each<[string, unknown]>([
    ['undefined', undefined],
    ['null', null],
    ['number', 42],
    ['object', { toString: () => 'spiffe://example.org/w' }],
    ['array', ['spiffe://example.org/w']],
    ['Buffer', Buffer.from('spiffe://example.org/w')],
    ['String object', new String('spiffe://example.org/w')],
    ['null-prototype object', Object.create(null) as unknown],
    ['symbol', Symbol('spiffe://example.org/w')],
    [
      'object whose toString throws',
      {
        toString(): string {
          throw new Error('boom');
        },
      },
    ],
  ])('rejects non-string input (%s) with spiffe-id/not-a-string', (_name, input) => {
    expect(parseCode(input)).toBe('spiffe-id/not-a-string');
    expect(codeOf(() => TrustDomain.parse(input))).toBe('spiffe-id/not-a-string');
  });

  it('errors carry the offending input (bounded) in detail, for logs', () => {
    try {
      SpiffeId.parse('spiffe://example.org/' + 'a'.repeat(1500) + '/./x');
      expect.unreachable();
    } catch (e) {
      const err = e as SpiffeIdError;
      expect(err.code).toBe('spiffe-id/dot-segment');
      expect(String(err.detail?.['input']).length).toBeLessThanOrEqual(256);
      expect(err.message).toMatch(/SPIFFE-ID 2\.2/);
    }
  });
});

describe('TrustDomain.parse (SPIFFE-ID 2.1)', () => {
  it('accepts a bare name and a trust domain ID, which name the same trust domain', () => {
    const a = TrustDomain.parse('example.org');
    const b = TrustDomain.parse('spiffe://example.org');
    expect(a.name).toBe('example.org');
    expect(a.equals(b)).toBe(true);
    expect(a.idString).toBe('spiffe://example.org');
    expect(String(a)).toBe('example.org');
  });
  it('accepts an IPv4 trust domain', () => {
    expect(TrustDomain.parse('10.0.0.1').idString).toBe('spiffe://10.0.0.1');
  });
  it.each<[string, string, SpiffeIdErrorCode]>([
    ['empty', '', 'spiffe-id/empty'],
    ['uppercase', 'Example.org', 'spiffe-id/bad-trust-domain-char'],
    ['port', 'example.org:80', 'spiffe-id/has-port-or-userinfo'],
    ['userinfo', 'u@example.org', 'spiffe-id/has-port-or-userinfo'],
    ['percent', 'ex%41mple.org', 'spiffe-id/percent-encoded'],
    ['slash (a path)', 'example.org/w', 'spiffe-id/bad-trust-domain-char'],
    ['IPv6', '[::1]', 'spiffe-id/bad-trust-domain-char'],
    ['query', 'example.org?x', 'spiffe-id/has-query-or-fragment'],
    ['ID with a path', 'spiffe://example.org/w', 'spiffe-id/bad-trust-domain-char'],
    ['ID with wrong scheme', 'http://example.org', 'spiffe-id/wrong-scheme'],
    ['ID with uppercase trust domain', 'spiffe://EXAMPLE.org', 'spiffe-id/bad-trust-domain-char'],
  ])('rejects %s: %j', (_name, input, code) => {
    expect(codeOf(() => TrustDomain.parse(input))).toBe(code);
  });
});

describe('SpiffeId.fromSegments (SPIFFE-ID 2.2, 2.3)', () => {
  const td = TrustDomain.parse('example.org');
  it('builds an ID from validated segments', () => {
    const id = SpiffeId.fromSegments(td, 'ns', 'prod', 'sa', 'web');
    expect(id.toString()).toBe('spiffe://example.org/ns/prod/sa/web');
    expect(id.equals(SpiffeId.parse('spiffe://example.org/ns/prod/sa/web'))).toBe(true);
    expect(SpiffeId.fromSegments(td).toString()).toBe('spiffe://example.org');
  });
  it.each<[string, string[], SpiffeIdErrorCode]>([
    ['empty segment', ['a', '', 'b'], 'spiffe-id/empty-segment'],
    ['empty last segment', ['a', ''], 'spiffe-id/trailing-slash'],
    ['"." segment', ['.'], 'spiffe-id/dot-segment'],
    ['".." segment', ['a', '..'], 'spiffe-id/dot-segment'],
    ['percent', ['a%2F'], 'spiffe-id/percent-encoded'],
    ['query', ['a?b'], 'spiffe-id/has-query-or-fragment'],
    ['fragment', ['a#b'], 'spiffe-id/has-query-or-fragment'],
    ['space', ['a b'], 'spiffe-id/bad-path-char'],
    ['unicode', ['\u00e9'], 'spiffe-id/bad-path-char'],
    ['too long', ['a'.repeat(2100)], 'spiffe-id/too-long'],
  ])('rejects %s', (_name, segs, code) => {
    expect(codeOf(() => SpiffeId.fromSegments(td, ...segs))).toBe(code);
  });
});

describe('equals and isUnder (never a raw substring match)', () => {
  const p = (s: string): SpiffeId => SpiffeId.parse(s);
  it('equals compares trust domain and path exactly', () => {
    expect(p('spiffe://example.org/a').equals(p('spiffe://example.org/a'))).toBe(true);
    expect(p('spiffe://example.org/a').equals(p('spiffe://example.org/a/b'))).toBe(false);
    expect(p('spiffe://example.org/a').equals(p('spiffe://example.com/a'))).toBe(false);
    expect(p('spiffe://example.org').equals(p('spiffe://example.org'))).toBe(true);
    expect(p('spiffe://example.org').equals(p('spiffe://example.org/x'))).toBe(false);
  });
  it('an ID is under itself and under its segment-wise ancestors', () => {
    expect(p('spiffe://example.org/ns/a').isUnder(p('spiffe://example.org/ns/a'))).toBe(true);
    expect(p('spiffe://example.org/ns/a/b').isUnder(p('spiffe://example.org/ns/a'))).toBe(true);
    expect(p('spiffe://example.org/ns/a/b').isUnder(p('spiffe://example.org/ns'))).toBe(true);
    expect(p('spiffe://example.org/ns/a').isUnder(p('spiffe://example.org'))).toBe(true);
  });
  it('/ns/ab is NOT under /ns/a (segment boundary, not substring)', () => {
    expect(p('spiffe://example.org/ns/ab').isUnder(p('spiffe://example.org/ns/a'))).toBe(false);
    expect(p('spiffe://example.org/ns/a-b/c').isUnder(p('spiffe://example.org/ns/a'))).toBe(false);
    expect(p('spiffe://example.org/nsx').isUnder(p('spiffe://example.org/ns'))).toBe(false);
  });
  it('a parent is not under its child', () => {
    expect(p('spiffe://example.org/ns').isUnder(p('spiffe://example.org/ns/a'))).toBe(false);
    expect(p('spiffe://example.org').isUnder(p('spiffe://example.org/ns'))).toBe(false);
  });
  it('never crosses trust domains, even when the names share a prefix', () => {
    expect(p('spiffe://example.org/ns/a').isUnder(p('spiffe://example.com/ns'))).toBe(false);
    expect(p('spiffe://example.org.evil/ns/a').isUnder(p('spiffe://example.org'))).toBe(false);
    expect(p('spiffe://example.org/ns/a').isUnder(p('spiffe://example.or'))).toBe(false);
    expect(p('spiffe://evil-example.org/ns').isUnder(p('spiffe://example.org'))).toBe(false);
  });
  it('path comparison is case-sensitive (SPIFFE-ID 2.2)', () => {
    expect(p('spiffe://example.org/NS/a').isUnder(p('spiffe://example.org/ns'))).toBe(false);
  });
});
