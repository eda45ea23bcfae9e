/**
 * SPIFFE_ENDPOINT_SOCKET parsing (SPIFFE Workload Endpoint 4, spiffe.md 1 "Endpoint"): `unix:///abs/path`
 * with nothing else, or `tcp://<IP>:<port>` with nothing else.
 */
import { describe, expect, it } from 'vitest';
import {
  EndpointError,
  endpointToString,
  grpcTarget,
  parseEndpoint,
  resolveEndpoint,
  SPIFFE_ENDPOINT_SOCKET,
} from '../../../src/protocol/index.js';

function code(v: string): string | undefined {
  try {
    parseEndpoint(v);
    return undefined;
  } catch (e) {
    expect(e).toBeInstanceOf(EndpointError);
    return (e as EndpointError).code;
  }
}

describe('parseEndpoint: unix', () => {
  it('accepts unix:///abs/path (no authority) and the equivalent unix:/abs/path', () => {
    expect(parseEndpoint('unix:///tmp/spire-agent/public/api.sock')).toEqual({ kind: 'unix', path: '/tmp/spire-agent/public/api.sock' });
    expect(parseEndpoint('unix:/run/edgeward/api.sock')).toEqual({ kind: 'unix', path: '/run/edgeward/api.sock' });
    expect(parseEndpoint('UNIX:///a.sock')).toEqual({ kind: 'unix', path: '/a.sock' }); // RFC 3986 3.1: scheme is case-insensitive
  });

  it('percent-decodes the path (RFC 3986 2.1) and refuses unencoded specials', () => {
    expect(parseEndpoint('unix:///tmp/my%20sock/a.sock')).toEqual({ kind: 'unix', path: '/tmp/my sock/a.sock' });
    expect(parseEndpoint("unix:///tmp/a-b_c.d~e!$&'()*+,;=:@.sock").kind).toBe('unix');
    for (const bad of ['unix:///tmp/my sock', 'unix:///tmp/a%zz', 'unix:///tmp/a%00b', 'unix:///tmp/%ff', 'unix:///tmp/a"b', 'unix:///tmp/a\\b']) {
      expect(code(bad), bad).toBe('endpoint/invalid');
    }
  });

  it('refuses authority, userinfo, query, fragment, relative and directory paths (Workload Endpoint 4)', () => {
    const bad = [
      'unix://host/tmp/a.sock',
      'unix://user@/tmp/a.sock',
      'unix://localhost/tmp/a.sock',
      'unix:///tmp/a.sock?x=1',
      'unix:///tmp/a.sock?',
      'unix:///tmp/a.sock#frag',
      'unix:tmp/a.sock',
      'unix:a.sock',
      'unix:',
      'unix://',
      'unix:///',
      'unix:///tmp/',
      'unix:////tmp/a.sock',
      'unix:///tmp//a.sock',
      'unix:///tmp/./a.sock',
      'unix:///tmp/../a.sock',
      `unix:///${'a'.repeat(107)}`,
    ];
    for (const b of bad) expect(code(b), b).toBe('endpoint/invalid');
    expect(code(`unix:///${'a'.repeat(106)}`)).toBeUndefined(); // 107 bytes with the slash: fits sun_path
  });
});

describe('parseEndpoint: tcp', () => {
  it('accepts IP literals with a port', () => {
    expect(parseEndpoint('tcp://127.0.0.1:8000')).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 8000 });
    expect(parseEndpoint('tcp://[::1]:1')).toEqual({ kind: 'tcp', host: '::1', port: 1 });
    expect(parseEndpoint('tcp://[FE80::1]:65535')).toEqual({ kind: 'tcp', host: 'fe80::1', port: 65535 });
    expect(parseEndpoint('TCP://10.0.0.1:443').kind).toBe('tcp');
  });

  it('refuses host names, paths, queries, fragments, userinfo and bad ports (spiffe.md 1)', () => {
    const bad = [
      'tcp://127.0.0.1:8000/foo',
      'tcp://127.0.0.1:8000/',
      'tcp://127.0.0.1:8000?x',
      'tcp://127.0.0.1:8000#x',
      'tcp://user@127.0.0.1:8000',
      'tcp://localhost:8000',
      'tcp://example.org:8000',
      'tcp://127.0.0.1',
      'tcp://127.0.0.1:',
      'tcp://127.0.0.1:0',
      'tcp://127.0.0.1:65536',
      'tcp://127.0.0.1:08000',
      'tcp://127.0.0.1:+80',
      'tcp://127.0.0.1:80x',
      'tcp://127.000.0.1:80',
      'tcp://1.2.3:80',
      'tcp://::1:80',
      'tcp://[::1]',
      'tcp://[::1]80',
      'tcp://[fe80::1%25eth0]:80',
      'tcp://[127.0.0.1]:80',
      'tcp:127.0.0.1:80',
      'tcp://',
    ];
    for (const b of bad) expect(code(b), b).toBe('endpoint/invalid');
  });
});

describe('parseEndpoint: everything else', () => {
  it('refuses other schemes, non-URIs, whitespace and oversized values', () => {
    for (const b of ['', '/tmp/a.sock', 'npipe:foo', 'http://127.0.0.1:80', 'unix-abstract:foo', ' unix:///a.sock', 'unix:///a.sock\n', 'x'.repeat(2000)]) {
      expect(code(b), JSON.stringify(b.slice(0, 20))).toBe('endpoint/invalid');
    }
    expect(() => parseEndpoint(42 as unknown as string)).toThrow(EndpointError);
  });
});

describe('resolveEndpoint, grpcTarget, endpointToString', () => {
  it('prefers the explicit value, then SPIFFE_ENDPOINT_SOCKET; missing is a typed error', () => {
    const env = { [SPIFFE_ENDPOINT_SOCKET]: 'unix:///from/env.sock' };
    expect(resolveEndpoint('unix:///explicit.sock', env)).toEqual({ kind: 'unix', path: '/explicit.sock' });
    expect(resolveEndpoint(undefined, env)).toEqual({ kind: 'unix', path: '/from/env.sock' });
    expect(resolveEndpoint('', env)).toEqual({ kind: 'unix', path: '/from/env.sock' });
    expect(() => resolveEndpoint(undefined, {})).toThrow(expect.objectContaining({ code: 'endpoint/missing' }));
    expect(() => resolveEndpoint(undefined, { [SPIFFE_ENDPOINT_SOCKET]: 'tcp://x:1' })).toThrow(expect.objectContaining({ code: 'endpoint/invalid' }));
  });

  it('makes grpc-js targets and canonical URIs that parse back to the same endpoint', () => {
    expect(grpcTarget({ kind: 'unix', path: '/tmp/a.sock' })).toBe('unix:/tmp/a.sock');
    expect(grpcTarget({ kind: 'tcp', host: '127.0.0.1', port: 8000 })).toBe('ipv4:127.0.0.1:8000');
    expect(grpcTarget({ kind: 'tcp', host: '::1', port: 8000 })).toBe('ipv6:[::1]:8000');
    for (const v of ['unix:///tmp/my%20sock/a.sock', 'tcp://127.0.0.1:8000', 'tcp://[::1]:9']) {
      const ep = parseEndpoint(v);
      expect(parseEndpoint(endpointToString(ep))).toEqual(ep);
    }
    expect(endpointToString(parseEndpoint('unix:/a/b.sock'))).toBe('unix:///a/b.sock');
  });
});
