import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, errorFields } from '../../../src/cli/index.js';
import { EdgewardError } from '../../../src/identity/index.js';

function capture(): { stream: Writable; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString('utf8'));
      cb();
    },
  });
  return {
    stream,
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

describe('createLogger', () => {
  it('writes JSON lines with the fixed field names and bound fields', () => {
    const c = capture();
    const log = createLogger({ name: 'edge', destination: c.stream, bindings: { node: 'edge-1' } });
    log.warn({ event: 'mtls.deny', peer: '127.0.0.1:5000', spiffe_id: 'spiffe://td/x', code: 'authz/denied' }, 'connection refused');
    const [line] = c.lines();
    expect(line).toMatchObject({
      level: 'warn',
      name: 'edge',
      node: 'edge-1',
      event: 'mtls.deny',
      peer: '127.0.0.1:5000',
      spiffe_id: 'spiffe://td/x',
      code: 'authz/denied',
      msg: 'connection refused',
    });
  });

  it('redacts keys, tokens and credentials at the top level and nested', () => {
    const c = capture();
    const log = createLogger({ name: 'cloud', destination: c.stream });
    log.info(
      { token: 'join-token', key: 'pem', req: { authorization: 'Bearer abc', headers: { cookie: 'c' } }, svid: { privateKey: 'k' } },
      'request',
    );
    const text = JSON.stringify(c.lines());
    for (const secret of ['join-token', '"pem"', 'Bearer abc', '"c"', '"k"']) expect(text).not.toContain(secret);
    expect(text).toContain('[redacted]');
  });

  it('errorFields carries the stable code of typed errors', () => {
    expect(errorFields(new EdgewardError('x509-svid/expired', 'expired')).code).toBe('x509-svid/expired');
    expect(errorFields(new Error('boom')).code).toBe('internal');
  });

  it('respects the level', () => {
    const c = capture();
    const log = createLogger({ name: 'cli', destination: c.stream, level: 'warn' });
    log.info('ignored');
    log.error('kept');
    expect(c.lines().map((l) => l['msg'])).toEqual(['kept']);
  });
});
