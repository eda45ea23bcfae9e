/**
 * SPIFFE IDs and trust domains, exactly per the SPIFFE-ID standard (SPIFFE-ID.md).
 *
 * Rules enforced (clause numbers of SPIFFE-ID.md):
 * - 2.   scheme is `spiffe`, followed by `://`; no query, fragment, userinfo or port.
 * - 2.1  trust domain: non-empty, only `[a-z0-9._-]` (lowercase), no percent-encoding, <= 255 bytes.
 * - 2.2  path: segments of `[a-zA-Z0-9._-]`, no empty segment, no `.`/`..` segment, no trailing `/`,
 *        no percent-encoding.
 * - 2.3  implementations MUST support IDs up to 2048 bytes and SHOULD NOT generate longer ones; we
 *        reject longer ones (deny by default).
 * The scheme and trust domain are case-insensitive in the spec, but go-spiffe rejects uppercase and we
 * always emit lowercase: we reject uppercase too, so that two spellings never name one identity.
 */
import { EdgewardError } from './errors.js';

export const SPIFFE_ID_ERROR_CODES = [
  'spiffe-id/empty',
  'spiffe-id/wrong-scheme',
  'spiffe-id/missing-trust-domain',
  'spiffe-id/bad-trust-domain-char',
  'spiffe-id/trust-domain-too-long',
  'spiffe-id/has-port-or-userinfo',
  'spiffe-id/has-query-or-fragment',
  'spiffe-id/empty-segment',
  'spiffe-id/dot-segment',
  'spiffe-id/trailing-slash',
  'spiffe-id/bad-path-char',
  'spiffe-id/percent-encoded',
  'spiffe-id/too-long',
  'spiffe-id/not-a-string',
] as const;
export type SpiffeIdErrorCode = (typeof SPIFFE_ID_ERROR_CODES)[number];

export class SpiffeIdError extends EdgewardError<SpiffeIdErrorCode> {}

export const MAX_SPIFFE_ID_BYTES = 2048;
export const MAX_TRUST_DOMAIN_BYTES = 255;
const SCHEME_PREFIX = 'spiffe://';

function isTdChar(c: number): boolean {
  // a-z 0-9 . _ -
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x5f || c === 0x2d;
}
function isPathChar(c: number): boolean {
  // a-z A-Z 0-9 . _ -
  return isTdChar(c) || (c >= 0x41 && c <= 0x5a);
}

function fail(code: SpiffeIdErrorCode, message: string, input: string): never {
  throw new SpiffeIdError(code, message, { detail: { input: input.slice(0, 256) } });
}

function checkTrustDomainName(td: string, input: string): void {
  if (td.length === 0) fail('spiffe-id/missing-trust-domain', 'trust domain is missing (SPIFFE-ID 2.1)', input);
  if (Buffer.byteLength(td) > MAX_TRUST_DOMAIN_BYTES) {
    fail('spiffe-id/trust-domain-too-long', 'trust domain is longer than 255 bytes (SPIFFE-ID 2.1)', input);
  }
  for (let i = 0; i < td.length; i++) {
    const c = td.charCodeAt(i);
    if (isTdChar(c)) continue;
    if (c === 0x3a || c === 0x40) {
      fail('spiffe-id/has-port-or-userinfo', 'trust domain must not carry a port or userinfo (SPIFFE-ID 2.1)', input);
    }
    if (c === 0x25) fail('spiffe-id/percent-encoded', 'percent-encoding is not allowed (SPIFFE-ID 2.1)', input);
    if (c === 0x3f || c === 0x23) {
      fail('spiffe-id/has-query-or-fragment', 'a SPIFFE ID has no query or fragment (SPIFFE-ID 2)', input);
    }
    fail(
      'spiffe-id/bad-trust-domain-char',
      'trust domain may contain only lowercase letters, digits, ".", "_" and "-" (SPIFFE-ID 2.1)',
      input,
    );
  }
}

/** A validated trust domain name such as `example.org` (no scheme). */
export class TrustDomain {
  readonly name: string;
  private constructor(name: string) {
    this.name = name;
  }
  /** Parse a bare name (`example.org`) or a trust domain ID (`spiffe://example.org`). */
  static parse(input: unknown): TrustDomain {
    if (typeof input !== 'string') fail('spiffe-id/not-a-string', 'trust domain must be a string', typeof input);
    if (input.length === 0) fail('spiffe-id/empty', 'trust domain is empty', input);
    if (input.includes('://')) {
      const id = SpiffeId.parse(input);
      if (id.path !== '') fail('spiffe-id/bad-trust-domain-char', 'a trust domain ID has no path', input);
      return id.trustDomain;
    }
    checkTrustDomainName(input, input);
    return new TrustDomain(input);
  }
  /** @internal used by SpiffeId.parse once the name has been checked. */
  static fromChecked(name: string): TrustDomain {
    return new TrustDomain(name);
  }
  /** `spiffe://name`: the trust domain's own SPIFFE ID (used for CA certificates, X509-SVID 3). */
  get idString(): string {
    return SCHEME_PREFIX + this.name;
  }
  equals(other: TrustDomain): boolean {
    return this.name === other.name;
  }
  toString(): string {
    return this.name;
  }
}

/** A validated SPIFFE ID. Compare with `equals` (exact) or `isUnder` (explicit path-prefix rule). */
export class SpiffeId {
  readonly trustDomain: TrustDomain;
  /** The path, `""` or starting with `/`. */
  readonly path: string;
  private constructor(td: TrustDomain, path: string) {
    this.trustDomain = td;
    this.path = path;
  }

  static parse(input: unknown): SpiffeId {
    if (typeof input !== 'string') fail('spiffe-id/not-a-string', 'SPIFFE ID must be a string', typeof input);
    if (input.length === 0) fail('spiffe-id/empty', 'SPIFFE ID is empty', input);
    if (Buffer.byteLength(input) > MAX_SPIFFE_ID_BYTES) {
      fail('spiffe-id/too-long', 'SPIFFE ID is longer than 2048 bytes (SPIFFE-ID 2.3)', input);
    }
    if (!input.startsWith(SCHEME_PREFIX)) {
      fail('spiffe-id/wrong-scheme', 'SPIFFE ID must start with "spiffe://" in lowercase (SPIFFE-ID 2)', input);
    }
    const rest = input.slice(SCHEME_PREFIX.length);
    const slash = rest.indexOf('/');
    const td = slash === -1 ? rest : rest.slice(0, slash);
    checkTrustDomainName(td, input);
    const path = slash === -1 ? '' : rest.slice(slash);
    SpiffeId.checkPath(path, input);
    return new SpiffeId(TrustDomain.fromChecked(td), path);
  }

  /** Build `spiffe://td/seg1/seg2...` from segments, validating each one. */
  static fromSegments(td: TrustDomain, ...segments: string[]): SpiffeId {
    const path = segments.length === 0 ? '' : '/' + segments.join('/');
    const whole = td.idString + path;
    if (Buffer.byteLength(whole) > MAX_SPIFFE_ID_BYTES) {
      fail('spiffe-id/too-long', 'SPIFFE ID is longer than 2048 bytes (SPIFFE-ID 2.3)', whole);
    }
    SpiffeId.checkPath(path, whole);
    return new SpiffeId(td, path);
  }

  private static checkPath(path: string, input: string): void {
    if (path === '') return;
    // path starts with '/'; walk the segments.
    let segStart = 1;
    for (let i = 1; i <= path.length; i++) {
      const c = i < path.length ? path.charCodeAt(i) : 0x2f;
      if (c === 0x2f) {
        const len = i - segStart;
        if (len === 0) {
          if (i === path.length) fail('spiffe-id/trailing-slash', 'path must not end with "/" (SPIFFE-ID 2.2)', input);
          fail('spiffe-id/empty-segment', 'path segments must not be empty (SPIFFE-ID 2.2)', input);
        }
        if ((len === 1 && path.charCodeAt(segStart) === 0x2e) || (len === 2 && path.startsWith('..', segStart))) {
          fail('spiffe-id/dot-segment', 'path segments must not be "." or ".." (SPIFFE-ID 2.2)', input);
        }
        segStart = i + 1;
        continue;
      }
      if (isPathChar(c)) continue;
      if (c === 0x25) fail('spiffe-id/percent-encoded', 'percent-encoding is not allowed (SPIFFE-ID 2.2)', input);
      if (c === 0x3f || c === 0x23) {
        fail('spiffe-id/has-query-or-fragment', 'a SPIFFE ID has no query or fragment (SPIFFE-ID 2)', input);
      }
      fail('spiffe-id/bad-path-char', 'path segments may contain only letters, digits, ".", "_" and "-" (SPIFFE-ID 2.2)', input);
    }
  }

  /** Is this a path-less trust domain ID (`spiffe://td`)? */
  get isTrustDomainId(): boolean {
    return this.path === '';
  }
  get segments(): string[] {
    return this.path === '' ? [] : this.path.slice(1).split('/');
  }
  equals(other: SpiffeId): boolean {
    return this.trustDomain.name === other.trustDomain.name && this.path === other.path;
  }
  /** True when `this` is `prefix` or lies below it segment-wise (never a raw substring test). */
  isUnder(prefix: SpiffeId): boolean {
    if (this.trustDomain.name !== prefix.trustDomain.name) return false;
    if (prefix.path === '') return true;
    return this.path === prefix.path || this.path.startsWith(prefix.path + '/');
  }
  toString(): string {
    return SCHEME_PREFIX + this.trustDomain.name + this.path;
  }
  toJSON(): string {
    return this.toString();
  }
}
