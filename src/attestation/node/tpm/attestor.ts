/**
 * `tpm` on the node-attestor port (src/attestation/node/attestor.ts; reference spiffe.md §3 "Node
 * attestation": AttestAgent's challenge loop):
 *
 *   payload   {"ekCert": b64 DER, "akPublic": b64 TPM2B_PUBLIC, "ekPublic"?: b64 TPM2B_PUBLIC,
 *              "ekIntermediates"?: [b64 DER, ...]}
 *   stage 1   TpmVerifier.begin: EK chain, EK public, AK attributes, node enrollment; challenge bytes =
 *             TPM2B(credentialBlob) || TPM2B(encryptedSecret) || TPM2B(nonce)
 *   stage 2   response bytes = TPM2B(activatedSecret) || TPM2B(quote) || TPM2B(quoteSignature);
 *             TpmChallengeSession.complete
 *   done      fingerprint = sha256(EK SubjectPublicKeyInfo) hex; re-attestable (the EK never changes).
 *
 * Node names: an EK certificate names no node. With `ekHashForNode` the operator enrolls TPMs by name
 * (node name -> EK fingerprint, e.g. read off `edgeward` on the device) and a TPM can only join as the
 * node it was enrolled for; without it any TPM of the configured manufacturers can claim a name and the
 * cloud must pin the fingerprint it records with the node on first join.
 */
import { decodeBase64Strict, sequentialSession, type NodeAttestorPlugin } from '../attestor.js';
import { MAX_CERT_BYTES } from '../../../identity/index.js';
import { TpmAttestationError } from './errors.js';
import { MAX_EK_INTERMEDIATES } from './ek.js';
import { MAX_TPM_ATTEST_BYTES, MAX_TPM_PUBLIC_BYTES, MAX_TPM_SIGNATURE_BYTES, tpm2b, TpmReader } from './structures.js';
import {
  TpmVerifier,
  type TpmAttestationRequest,
  type TpmChallenge,
  type TpmChallengeResponse,
  type TpmChallengeSession,
  type TpmVerifierConfig,
} from './verifier.js';

const PAYLOAD_KEYS: ReadonlySet<string> = new Set(['ekCert', 'akPublic', 'ekPublic', 'ekIntermediates']);
const MAX_CHALLENGE_PART = 1024;
const EK_HASH = /^[0-9a-f]{64}$/;

function malformed(message: string): never {
  throw new TpmAttestationError('tpm/malformed', message);
}

/** The agent's `attest.begin` payload for method `tpm`. */
export function tpmPayload(r: TpmAttestationRequest): Record<string, unknown> {
  const out: Record<string, unknown> = { ekCert: r.ekCert.toString('base64'), akPublic: r.akPublic.toString('base64') };
  if (r.ekPublic !== undefined) out['ekPublic'] = r.ekPublic.toString('base64');
  if (r.ekIntermediates !== undefined && r.ekIntermediates.length > 0) out['ekIntermediates'] = r.ekIntermediates.map((c) => c.toString('base64'));
  return out;
}

/** Decode and shape-check a `tpm` payload (strict keys, strict base64, bounded sizes). */
export function decodeTpmPayload(payload: Readonly<Record<string, unknown>>): TpmAttestationRequest {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) malformed('tpm payload must be an object');
  const keys = Object.keys(payload);
  if (!keys.every((k) => PAYLOAD_KEYS.has(k))) malformed('tpm payload has unknown keys');
  const ekCert = decodeBase64Strict(payload['ekCert'], MAX_CERT_BYTES) ?? malformed('tpm payload ekCert must be base64 DER');
  const akPublic = decodeBase64Strict(payload['akPublic'], MAX_TPM_PUBLIC_BYTES) ?? malformed('tpm payload akPublic must be base64');
  const req: TpmAttestationRequest = { ekCert, akPublic };
  if (payload['ekPublic'] !== undefined) {
    req.ekPublic = decodeBase64Strict(payload['ekPublic'], MAX_TPM_PUBLIC_BYTES) ?? malformed('tpm payload ekPublic must be base64');
  }
  const list = payload['ekIntermediates'];
  if (list !== undefined) {
    if (!Array.isArray(list) || list.length > MAX_EK_INTERMEDIATES) malformed(`tpm payload ekIntermediates must be at most ${MAX_EK_INTERMEDIATES} certificates`);
    req.ekIntermediates = list.map((s: unknown) => decodeBase64Strict(s, MAX_CERT_BYTES) ?? malformed('tpm payload intermediate is not base64 DER'));
  }
  return req;
}

/** Challenge bytes: TPM2B(credentialBlob) || TPM2B(encryptedSecret) || TPM2B(nonce). */
export function encodeTpmChallenge(c: TpmChallenge): Buffer {
  return Buffer.concat([tpm2b(c.credentialBlob), tpm2b(c.encryptedSecret), tpm2b(c.nonce)]);
}

export function decodeTpmChallenge(bytes: Buffer): TpmChallenge {
  const r = new TpmReader(bytes, 'tpm challenge');
  const credentialBlob = Buffer.from(r.tpm2b(MAX_CHALLENGE_PART, 'credentialBlob'));
  const encryptedSecret = Buffer.from(r.tpm2b(MAX_CHALLENGE_PART, 'encryptedSecret'));
  const nonce = Buffer.from(r.tpm2b(64, 'nonce'));
  r.end();
  return { credentialBlob, encryptedSecret, nonce };
}

/** Response bytes: TPM2B(activatedSecret) || TPM2B(quote) || TPM2B(quoteSignature). */
export function encodeTpmChallengeResponse(r: TpmChallengeResponse): Buffer {
  return Buffer.concat([tpm2b(r.activatedSecret), tpm2b(r.quote), tpm2b(r.quoteSignature)]);
}

export function decodeTpmChallengeResponse(bytes: Buffer): TpmChallengeResponse {
  const r = new TpmReader(bytes, 'tpm challenge response');
  const activatedSecret = Buffer.from(r.tpm2b(64, 'activatedSecret'));
  const quote = Buffer.from(r.tpm2b(MAX_TPM_ATTEST_BYTES, 'quote'));
  const quoteSignature = Buffer.from(r.tpm2b(MAX_TPM_SIGNATURE_BYTES, 'quoteSignature'));
  r.end();
  return { activatedSecret, quote, quoteSignature };
}

export interface TpmAttestorOptions {
  /**
   * The EK fingerprint (sha256 of the EK SubjectPublicKeyInfo, lower-case hex) enrolled for a node name,
   * or undefined when the name has none (then the node is refused: `tpm/wrong-node`). Omit the option to
   * accept any TPM of the configured manufacturers under any name.
   */
  ekHashForNode?: (nodeName: string) => string | undefined;
}

/** `tpm` as a node attestor. Re-attestable: the same TPM can join again with a new AK. */
export function createTpmAttestor(config: TpmVerifierConfig, options: TpmAttestorOptions = {}): NodeAttestorPlugin {
  const verifier = new TpmVerifier(config);
  return {
    method: 'tpm',
    begin(payload, ctx) {
      const request = decodeTpmPayload(payload);
      let session: TpmChallengeSession | undefined;
      let fingerprint: string | undefined;
      return sequentialSession(ctx, [
        (_input, now) => {
          session = verifier.begin(request, now);
          fingerprint = session.ekPublicKeyHash;
          if (options.ekHashForNode !== undefined) {
            const enrolled = options.ekHashForNode(ctx.nodeName);
            if (enrolled === undefined || !EK_HASH.test(enrolled) || enrolled !== fingerprint) {
              throw new TpmAttestationError('tpm/wrong-node', 'this TPM is not enrolled for the claimed node name', { detail: { node: ctx.nodeName } });
            }
          }
          return { kind: 'challenge', challenge: encodeTpmChallenge(session.challenge) };
        },
        (input, now) => {
          const result = session!.complete(decodeTpmChallengeResponse(input!), now);
          if (result.ekPublicKeyHash !== fingerprint) throw new TpmAttestationError('tpm/ek-mismatch', 'EK changed during the attestation');
          return { kind: 'done', method: 'tpm', nodeName: ctx.nodeName, fingerprint: result.ekPublicKeyHash, reattestable: true };
        },
      ]);
    },
  };
}
