/**
 * The node-attestor port (SPIRE server NodeAttestor, reference spiffe.md §3 "Node attestation": payload,
 * then challenge/response rounds, then a result with `reattestable`): the rules `sequentialSession`
 * enforces for every attestor, including the TPM one.
 */
import { describe, expect, it } from 'vitest';
import {
  decodeBase64Strict,
  findNodeAttestor,
  MAX_NODE_RESPONSE_BYTES,
  NodeAttestationError,
  sequentialSession,
  type NodeAttestationErrorCode,
  type NodeAttestorPlugin,
  type NodeAttestorStep,
} from '../../../src/attestation/index.js';

const ctx = { nodeName: 'edge-1', now: 0 };
const done = (nodeName = 'edge-1'): NodeAttestorStep => ({ kind: 'done', method: 'tpm', nodeName, fingerprint: 'ab', reattestable: true });
const challenge = (bytes = Buffer.from('c')): NodeAttestorStep => ({ kind: 'challenge', challenge: bytes });

function expectCode(fn: () => unknown, code: NodeAttestationErrorCode): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(NodeAttestationError);
    expect((e as NodeAttestationError).code).toBe(code);
    return;
  }
  throw new Error(`expected ${code}`);
}

describe('sequentialSession', () => {
  it('runs stages in order, passing each response to the next stage', () => {
    const seen: Array<Buffer | undefined> = [];
    const s = sequentialSession(ctx, [
      (i) => (seen.push(i), challenge()),
      (i) => (seen.push(i), challenge()),
      (i) => (seen.push(i), done()),
    ]);
    expect(s.step(undefined, 1).kind).toBe('challenge');
    expect(s.step(Buffer.from('r1'), 2).kind).toBe('challenge');
    expect(s.step(Buffer.from('r2'), 3)).toEqual(done());
    expect(seen).toEqual([undefined, Buffer.from('r1'), Buffer.from('r2')]);
    expectCode(() => s.step(Buffer.from('r3'), 4), 'node-attestation/bad-state');
  });

  it('node-attestation/name-mismatch when an attestor reports another node than claimed', () => {
    expectCode(() => sequentialSession(ctx, [() => done('edge-2')]).step(undefined, 0), 'node-attestation/name-mismatch');
    expectCode(() => sequentialSession(ctx, [() => done('EDGE-1')]).step(undefined, 0), 'node-attestation/name-mismatch');
  });

  it('node-attestation/malformed-response: missing, empty or oversized responses', () => {
    const mk = () => sequentialSession(ctx, [() => challenge(), () => done()]);
    let s = mk();
    s.step(undefined, 0);
    expectCode(() => s.step(undefined, 0), 'node-attestation/malformed-response');
    s = mk();
    s.step(undefined, 0);
    expectCode(() => s.step(Buffer.alloc(0), 0), 'node-attestation/malformed-response');
    s = mk();
    s.step(undefined, 0);
    expectCode(() => s.step(Buffer.alloc(MAX_NODE_RESPONSE_BYTES + 1), 0), 'node-attestation/malformed-response');
    expectCode(() => s.step(Buffer.from('x'), 0), 'node-attestation/bad-state'); // a failed session stays failed
  });

  it('node-attestation/bad-state: input on the first step, a challenge with no stage left, an empty challenge', () => {
    expectCode(() => sequentialSession(ctx, [() => done()]).step(Buffer.from('x'), 0), 'node-attestation/bad-state');
    expectCode(() => sequentialSession(ctx, [() => challenge()]).step(undefined, 0), 'node-attestation/bad-state');
    expectCode(() => sequentialSession(ctx, [() => challenge(Buffer.alloc(0)), () => done()]).step(undefined, 0), 'node-attestation/bad-state');
  });

  it('a stage error propagates and ends the session', () => {
    const s = sequentialSession(ctx, [
      () => {
        throw new Error('boom');
      },
    ]);
    expect(() => s.step(undefined, 0)).toThrow('boom');
    expectCode(() => s.step(undefined, 0), 'node-attestation/bad-state');
  });
});

describe('findNodeAttestor', () => {
  it('denies methods that are not configured', () => {
    const p: NodeAttestorPlugin = { method: 'x509pop', begin: () => sequentialSession(ctx, [() => done()]) };
    expect(findNodeAttestor([p], 'x509pop')).toBe(p);
    expectCode(() => findNodeAttestor([p], 'join_token'), 'node-attestation/unsupported-method');
    expectCode(() => findNodeAttestor([], 'tpm'), 'node-attestation/unsupported-method');
  });
});

describe('decodeBase64Strict', () => {
  it('accepts canonical padded base64 only', () => {
    expect(decodeBase64Strict('AAEC', 3)).toEqual(Buffer.from([0, 1, 2]));
    for (const bad of ['', 'AAE', 'AA=C', 'AAEC\n', 'QR==', '-_8=', 42]) expect(decodeBase64Strict(bad, 16)).toBeUndefined();
    expect(decodeBase64Strict('AAECAw==', 3)).toBeUndefined(); // over the limit
  });
});
