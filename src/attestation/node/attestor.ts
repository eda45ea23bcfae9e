/**
 * The node-attestor port (issue #4), modelled on SPIRE's server NodeAttestor (reference §3 "Node
 * attestation": `AttestAgent` is a stream whose first message carries `{type, payload}`; the server may
 * answer with challenge bytes, the agent replies with a challenge response, repeat; the final message is
 * the result with `reattestable`). SPIRE drives the plugin through a callback; here the plugin is a pure,
 * synchronous state machine so that the cloud (which owns I/O and time) drives it:
 *
 *   const session = plugin.begin(payload, { nodeName, now });   // validates the payload's shape
 *   let step = session.step(undefined, now);                     // first step: no input yet
 *   while (step.kind === 'challenge') {
 *     send(step.challenge);                                      // bytes, base64 on the wire
 *     step = session.step(await receive(), now2);                // the agent's response bytes
 *   }
 *   // step.kind === 'done': step.nodeName, step.fingerprint, step.reattestable
 *
 * Payloads are JSON objects (method-specific), challenges and responses are opaque bytes (method-specific
 * encodings, base64 on the wire), so the TPM attestor (src/attestation/node/tpm) fits the same port.
 * A session is single-use: after `done` or after any thrown error every further step throws
 * `node-attestation/bad-state`.
 */
import { EdgewardError } from '../../identity/index.js';
import { isNodeName } from './node-name.js';

export const NODE_ATTESTATION_METHODS = ['join_token', 'x509pop', 'tpm'] as const;
export type NodeAttestationMethod = (typeof NODE_ATTESTATION_METHODS)[number];

/**
 * - `node-attestation/unsupported-method`: no attestor is configured for the requested method.
 * - `node-attestation/malformed-response`: a step got input of the wrong shape (missing, not bytes, too large).
 * - `node-attestation/bad-state`: a step after the session finished or failed, or too many rounds.
 * - `node-attestation/name-mismatch`: an attestor reported a node name other than the one claimed (a
 *   defence against a faulty plugin; the built-in attestors refuse earlier with their own codes).
 */
export const NODE_ATTESTATION_ERROR_CODES = [
  'node-attestation/unsupported-method',
  'node-attestation/malformed-response',
  'node-attestation/bad-state',
  'node-attestation/name-mismatch',
] as const;
export type NodeAttestationErrorCode = (typeof NODE_ATTESTATION_ERROR_CODES)[number];
export class NodeAttestationError extends EdgewardError<NodeAttestationErrorCode> {}

/** Largest challenge or response (bytes) a session exchanges in one round. */
export const MAX_NODE_CHALLENGE_BYTES = 16 * 1024;
export const MAX_NODE_RESPONSE_BYTES = 16 * 1024;
/** Most challenge rounds in one attestation (x509pop uses 1; TPM credential activation a few). */
export const MAX_NODE_ATTESTATION_ROUNDS = 8;

export interface NodeAttestationContext {
  /** The node name the agent claims (`attest.begin.nodeName`), already a valid node name. */
  readonly nodeName: string;
  /** Time of `begin` (epoch ms). */
  readonly now: number;
}

export interface NodeAttestationDone {
  readonly kind: 'done';
  readonly method: NodeAttestationMethod;
  readonly nodeName: string;
  /**
   * Stable, method-specific identifier of the credential that proved the node (hex): x509pop the SHA-256
   * of the leaf certificate DER, join_token the token hash. The cloud records it with the node.
   */
  readonly fingerprint: string;
  /** True when the node can attest again with the same evidence (x509pop, tpm); false for join_token. */
  readonly reattestable: boolean;
}

export interface NodeAttestationChallenge {
  readonly kind: 'challenge';
  readonly challenge: Buffer;
}

export type NodeAttestorStep = NodeAttestationChallenge | NodeAttestationDone;

export interface NodeAttestorSession {
  /**
   * Advance the attestation. `input` is undefined on the first call, then the agent's response to the
   * previous challenge. Throws the method's typed error when attestation fails.
   */
  step(input: Buffer | undefined, now: number): NodeAttestorStep;
}

export interface NodeAttestorPlugin {
  readonly method: NodeAttestationMethod;
  /** Start one attestation. Throws the method's typed error when `payload` is malformed. */
  begin(payload: Readonly<Record<string, unknown>>, ctx: NodeAttestationContext): NodeAttestorSession;
}

/** The plugin for `method`, or `node-attestation/unsupported-method` (deny by default). */
export function findNodeAttestor(plugins: readonly NodeAttestorPlugin[], method: string): NodeAttestorPlugin {
  const p = plugins.find((x) => x.method === method);
  if (p === undefined) {
    throw new NodeAttestationError('node-attestation/unsupported-method', `node attestation method ${method.slice(0, 40)} is not enabled`);
  }
  return p;
}

/** One stage of a session: stage 0 receives `undefined`, stage i > 0 the response to stage i-1's challenge. */
export type NodeAttestorStage = (input: Buffer | undefined, now: number) => NodeAttestorStep;

/**
 * A session that runs `stages` in order and enforces the port's rules: first input undefined, later inputs
 * bytes within bounds, challenges within bounds, a `done` whose node name equals the claimed one, at most
 * `MAX_NODE_ATTESTATION_ROUNDS` challenges, nothing after `done` or after a failure.
 */
export function sequentialSession(ctx: NodeAttestationContext, stages: readonly NodeAttestorStage[]): NodeAttestorSession {
  let next = 0;
  let finished = false;
  return {
    step(input: Buffer | undefined, now: number): NodeAttestorStep {
      if (finished || next >= stages.length || next > MAX_NODE_ATTESTATION_ROUNDS) {
        finished = true;
        throw new NodeAttestationError('node-attestation/bad-state', 'node attestation session is finished');
      }
      const stage = stages[next]!;
      try {
        if (next === 0 && input !== undefined) {
          throw new NodeAttestationError('node-attestation/bad-state', 'the first step of a node attestation takes no input');
        }
        if (next > 0) {
          if (!Buffer.isBuffer(input) || input.length === 0) {
            throw new NodeAttestationError('node-attestation/malformed-response', 'a challenge response must be non-empty bytes');
          }
          if (input.length > MAX_NODE_RESPONSE_BYTES) {
            throw new NodeAttestationError('node-attestation/malformed-response', `a challenge response is limited to ${MAX_NODE_RESPONSE_BYTES} bytes`);
          }
        }
        next++;
        const out = stage(input, now);
        if (out.kind === 'challenge') {
          if (next >= stages.length) throw new NodeAttestationError('node-attestation/bad-state', 'attestor sent a challenge with no stage to check the response');
          if (!Buffer.isBuffer(out.challenge) || out.challenge.length === 0 || out.challenge.length > MAX_NODE_CHALLENGE_BYTES) {
            throw new NodeAttestationError('node-attestation/bad-state', 'attestor produced an invalid challenge');
          }
          return out;
        }
        finished = true;
        if (!isNodeName(out.nodeName) || out.nodeName !== ctx.nodeName) {
          throw new NodeAttestationError('node-attestation/name-mismatch', 'attested node name differs from the claimed one', {
            detail: { node: ctx.nodeName },
          });
        }
        return out;
      } catch (e) {
        finished = true;
        throw e;
      }
    },
  };
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Strict standard base64 (RFC 4648 4, padded, canonical: no whitespace, zero trailing bits). Returns
 * undefined for anything else, including the empty string.
 */
export function decodeBase64Strict(s: unknown, maxBytes: number): Buffer | undefined {
  if (typeof s !== 'string' || s.length === 0 || s.length > Math.ceil(maxBytes / 3) * 4 || !BASE64.test(s)) return undefined;
  const b = Buffer.from(s, 'base64');
  if (b.length > maxBytes || b.toString('base64') !== s) return undefined;
  return b;
}

/** True when `payload` has exactly the keys in `allowed` (order irrelevant) and each is present. */
export function hasExactKeys(payload: Readonly<Record<string, unknown>>, allowed: readonly string[]): boolean {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) return false;
  const keys = Object.keys(payload);
  return keys.length === allowed.length && keys.every((k) => allowed.includes(k));
}
