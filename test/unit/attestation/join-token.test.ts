/**
 * Join tokens (issue #4; SPIRE join_token, reference spiffe.md §3 "Node attestation": one-time, TTL 600 s by
 * default, rejected if absent, used or expired) and what KubeEdge's token lacks (kubeedge.md §4 "Token",
 * "First certificate": one shared 24 h bearer token, not bound to a node name).
 */
import { createHash, timingSafeEqual as realTimingSafeEqual } from 'node:crypto';
import { beforeEach, describe, expect, it, vi } from 'vitest';

// Count constant-time comparisons made by the verifier (src imports node:crypto through the module runner).
const calls = vi.hoisted(() => ({ timingSafeEqual: 0 }));
vi.mock('node:crypto', async (importOriginal) => {
  const orig = await importOriginal<typeof import('node:crypto')>();
  return {
    ...orig,
    timingSafeEqual: (a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView): boolean => {
      calls.timingSafeEqual++;
      return orig.timingSafeEqual(a, b);
    },
  };
});

import {
  createJoinTokenAttestor,
  DEFAULT_JOIN_TOKEN_TTL_MS,
  generateJoinToken,
  hashJoinToken,
  isJoinTokenFormat,
  JOIN_TOKEN_LENGTH,
  JoinTokenError,
  markJoinTokenUsed,
  MAX_JOIN_TOKEN_TTL_MS,
  NodeAttestationError,
  NodeNameError,
  verifyJoinToken,
  type JoinTokenConsumer,
  type JoinTokenErrorCode,
  type JoinTokenRecord,
} from '../../../src/attestation/index.js';

const T0 = 1_750_000_000_000;
const MIN = 60_000;

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof Error && 'code' in e) return String((e as { code: unknown }).code);
    throw e;
  }
  throw new Error('expected a typed error, nothing was thrown');
}

function expectJoinError(fn: () => unknown, expected: JoinTokenErrorCode): JoinTokenError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(JoinTokenError);
    expect((e as JoinTokenError).code).toBe(expected);
    return e as JoinTokenError;
  }
  throw new Error(`expected ${expected}, nothing was thrown`);
}

/** An in-memory store with SPIRE's semantics: the first presentation marks the token used. */
class MemoryTokens implements JoinTokenConsumer {
  readonly records = new Map<string, JoinTokenRecord>();
  add(r: JoinTokenRecord): void {
    this.records.set(r.tokenHash, r);
  }
  consume(tokenHash: string, now: number): JoinTokenRecord | undefined {
    const before = this.records.get(tokenHash);
    if (before !== undefined) this.records.set(tokenHash, markJoinTokenUsed(before, now));
    return before;
  }
}

describe('generateJoinToken', () => {
  it('makes a prefixed url-safe token with 256 random bits and a record holding only its SHA-256', () => {
    const bytes = Buffer.alloc(32, 0xfb); // 0xfb... encodes to '-' and '_' in base64url
    const { token, record } = generateJoinToken('edge-1', DEFAULT_JOIN_TOKEN_TTL_MS, T0, () => Buffer.from(bytes));
    expect(token).toBe('ewjt_' + bytes.toString('base64url'));
    expect(token).toMatch(/^ewjt_[A-Za-z0-9_-]{43}$/);
    expect(token.length).toBe(JOIN_TOKEN_LENGTH);
    expect(record).toEqual({
      tokenHash: createHash('sha256').update(token).digest('hex'),
      nodeName: 'edge-1',
      createdAt: T0,
      expiresAt: T0 + 10 * MIN, // SPIRE default 600 s
    });
    expect(JSON.stringify(record)).not.toContain(token.slice(5));
    expect(Object.isFrozen(record)).toBe(true);
    expect(hashJoinToken(token)).toBe(record.tokenHash);
  });

  it('draws fresh randomness for every token', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 50; i++) seen.add(generateJoinToken('edge-1', MIN, T0).token);
    expect(seen.size).toBe(50);
    for (const t of seen) expect(isJoinTokenFormat(t)).toBe(true);
  });

  it('refuses an invalid node name, a TTL out of range and a short random source', () => {
    expect(code(() => generateJoinToken('Edge_1', MIN, T0))).toBe('node-name/invalid');
    expect(() => generateJoinToken('-edge', MIN, T0)).toThrow(NodeNameError);
    expectJoinError(() => generateJoinToken('edge-1', 0, T0), 'join-token/bad-request');
    expectJoinError(() => generateJoinToken('edge-1', MAX_JOIN_TOKEN_TTL_MS + 1, T0), 'join-token/bad-request');
    expectJoinError(() => generateJoinToken('edge-1', 1.5 * MIN + 0.5, T0), 'join-token/bad-request');
    expectJoinError(() => generateJoinToken('edge-1', MIN, T0, () => Buffer.alloc(16)), 'join-token/bad-request');
    // 24 h is the ceiling: KubeEdge's token lives 24 h and is shared; ours may not live longer.
    expect(generateJoinToken('edge-1', MAX_JOIN_TOKEN_TTL_MS, T0).record.expiresAt).toBe(T0 + 24 * 60 * MIN);
  });
});

describe('verifyJoinToken', () => {
  const { token, record } = generateJoinToken('edge-1', DEFAULT_JOIN_TOKEN_TTL_MS, T0);

  beforeEach(() => {
    calls.timingSafeEqual = 0;
  });

  it('accepts the token for its node before expiry, comparing digests in constant time', () => {
    expect(verifyJoinToken(token, record, 'edge-1', T0 + 10 * MIN - 1)).toEqual({ nodeName: 'edge-1', tokenHash: record.tokenHash });
    expect(calls.timingSafeEqual).toBe(1);
  });

  it('join-token/unknown: no record, or a record of another token (checked by digest, not by lookup key)', () => {
    expectJoinError(() => verifyJoinToken(token, undefined, 'edge-1', T0), 'join-token/unknown');
    const other = generateJoinToken('edge-1', MIN, T0);
    // A store that returned the wrong record (e.g. a broken index) must not let the token through.
    expectJoinError(() => verifyJoinToken(token, other.record, 'edge-1', T0), 'join-token/unknown');
    expect(calls.timingSafeEqual).toBe(1);
    expectJoinError(() => verifyJoinToken(token, { ...record, tokenHash: 'not-hex' }, 'edge-1', T0), 'join-token/unknown');
  });

  it('join-token/expired at and after expiresAt (SPIRE: expired tokens are rejected)', () => {
    const e = expectJoinError(() => verifyJoinToken(token, record, 'edge-1', record.expiresAt), 'join-token/expired');
    expect(e.message).not.toContain(token);
    expectJoinError(() => verifyJoinToken(token, record, 'edge-1', record.expiresAt + 1), 'join-token/expired');
  });

  it('join-token/used once the store recorded a use (SPIRE deletes the token on first use)', () => {
    const used = markJoinTokenUsed(record, T0 + 1);
    expect(used.usedAt).toBe(T0 + 1);
    expect(markJoinTokenUsed(used, T0 + 5).usedAt).toBe(T0 + 1); // the first use is kept
    expectJoinError(() => verifyJoinToken(token, used, 'edge-1', T0 + 2), 'join-token/used');
    // Used takes precedence over expired.
    expectJoinError(() => verifyJoinToken(token, used, 'edge-1', record.expiresAt + 1), 'join-token/used');
  });

  it('join-token/wrong-node: the token is bound to one node name (unlike KubeEdge\'s shared token)', () => {
    expectJoinError(() => verifyJoinToken(token, record, 'edge-2', T0), 'join-token/wrong-node');
    expectJoinError(() => verifyJoinToken(token, record, 'EDGE-1', T0), 'join-token/wrong-node');
    expectJoinError(() => verifyJoinToken(token, record, 'edge-1 ', T0), 'join-token/wrong-node');
  });

  it('join-token/malformed before any comparison: prefix, length and alphabet', () => {
    for (const bad of ['', token.slice(1), 'xx' + token.slice(2), token + 'A', token.slice(0, -1) + '=', token.slice(0, -1) + '+', `ewjt_${'A'.repeat(42)}`]) {
      expectJoinError(() => verifyJoinToken(bad, record, 'edge-1', T0), 'join-token/malformed');
    }
    expectJoinError(() => hashJoinToken('ewjt_short'), 'join-token/malformed');
    expect(calls.timingSafeEqual).toBe(0);
    expect(realTimingSafeEqual(Buffer.from('a'), Buffer.from('a'))).toBe(true);
  });
});

describe('join_token node attestor', () => {
  function setup(): { tokens: MemoryTokens; token: string; record: JoinTokenRecord } {
    const tokens = new MemoryTokens();
    const g = generateJoinToken('edge-1', DEFAULT_JOIN_TOKEN_TTL_MS, T0);
    tokens.add(g.record);
    return { tokens, ...g };
  }

  it('attests without a challenge; not re-attestable (SPIRE: join_token agents renew with a CSR)', () => {
    const { tokens, token, record } = setup();
    const session = createJoinTokenAttestor(tokens).begin({ token }, { nodeName: 'edge-1', now: T0 });
    expect(session.step(undefined, T0 + 1)).toEqual({
      kind: 'done',
      method: 'join_token',
      nodeName: 'edge-1',
      fingerprint: record.tokenHash,
      reattestable: false,
    });
    expect(tokens.records.get(record.tokenHash)?.usedAt).toBe(T0 + 1);
    // The session is single-use.
    expect(() => session.step(undefined, T0 + 2)).toThrow(NodeAttestationError);
  });

  it('a second join with the same token fails with join-token/used (single use)', () => {
    const { tokens, token } = setup();
    const plugin = createJoinTokenAttestor(tokens);
    plugin.begin({ token }, { nodeName: 'edge-1', now: T0 }).step(undefined, T0);
    expectJoinError(() => plugin.begin({ token }, { nodeName: 'edge-1', now: T0 }).step(undefined, T0 + 1), 'join-token/used');
  });

  it('a presentation for the wrong node burns the token', () => {
    const { tokens, token } = setup();
    const plugin = createJoinTokenAttestor(tokens);
    expectJoinError(() => plugin.begin({ token }, { nodeName: 'edge-2', now: T0 }).step(undefined, T0), 'join-token/wrong-node');
    expectJoinError(() => plugin.begin({ token }, { nodeName: 'edge-1', now: T0 }).step(undefined, T0), 'join-token/used');
  });

  it('refuses payloads other than exactly {token}', () => {
    const { tokens, token } = setup();
    const plugin = createJoinTokenAttestor(tokens);
    const ctx = { nodeName: 'edge-1', now: T0 };
    expectJoinError(() => plugin.begin({}, ctx), 'join-token/malformed');
    expectJoinError(() => plugin.begin({ token, extra: 1 }, ctx), 'join-token/malformed');
    expectJoinError(() => plugin.begin({ token: 42 }, ctx), 'join-token/malformed');
    expectJoinError(() => plugin.begin({ token: 'ewjt_x' }, ctx), 'join-token/malformed');
    expect(tokens.records.size).toBe(1);
    expect([...tokens.records.values()][0]?.usedAt).toBeUndefined(); // nothing consumed
  });

  it('the first step takes no input (node-attestation/bad-state)', () => {
    const { tokens, token } = setup();
    const session = createJoinTokenAttestor(tokens).begin({ token }, { nodeName: 'edge-1', now: T0 });
    expect(code(() => session.step(Buffer.from('x'), T0))).toBe('node-attestation/bad-state');
    expect(code(() => session.step(undefined, T0))).toBe('node-attestation/bad-state'); // failed sessions stay failed
  });
});
