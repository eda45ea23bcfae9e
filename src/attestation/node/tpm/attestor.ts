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
 * Node names: an EK certificate names no node, so the attestor denies by default (as SPIRE's TPM
 * plugins pin EK hashes): the operator enrols each TPM by node name (`enrolled`: node name ->
 * `sha256:HEX`, the hash printed by `edgeward edge tpm-ek-hash` on the device, also recorded as the
 * node selector `tpm:ek-hash:HEX`), and a TPM can only join as the node it was enrolled for; anything
 * else is `tpm/ek-not-enrolled`, whose message carries the EK hash (public) so the operator can enrol
 * it. `allowAnyEk: true` is the explicit, UNSAFE opt-out: any TPM of the configured manufacturers may
 * then claim any unused node name (the cloud still pins the fingerprint it records on first join).
 */
import { createHash } from 'node:crypto';
import { decodeBase64Strict, sequentialSession, type NodeAttestorPlugin } from '../attestor.js';
import { MAX_CERT_BYTES, parseCertificate } from '../../../identity/index.js';
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
/** `sha256:` + 64 lower-case hex digits. */
const EK_HASH = /^sha256:[0-9a-f]{64}$/;

/**
 * The EK hash of an EK certificate (DER) as operators enrol it: `sha256:` + hex(SHA-256(the certificate's
 * SubjectPublicKeyInfo DER)), lower case. The same value as `TpmAttestationResult.ekPublicKeyHash` (and the
 * `tpm:ek-hash:HEX` node selector) with the prefix. Throws `tpm/malformed` for an unparsable certificate.
 */
export function ekCertificateHash(ekCertDer: Buffer): string {
  let spki: Buffer;
  try {
    spki = parseCertificate(ekCertDer).spki;
  } catch (e) {
    throw new TpmAttestationError('tpm/malformed', `EK certificate: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  return `sha256:${createHash('sha256').update(spki).digest('hex')}`;
}

/** True for a well-formed enrolled EK hash (`sha256:` + 64 lower-case hex digits). */
export function isEkHash(s: unknown): s is string {
  return typeof s === 'string' && EK_HASH.test(s);
}

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

/**
 * Which TPM may join as which node. Deny by default: a node name without an enrolled EK hash is refused.
 * Required (no default) so that every caller decides.
 */
export type TpmAttestorOptions =
  | {
      /**
       * Node name -> enrolled EK hash (`sha256:HEX`, see `ekCertificateHash`), as a map or a lookup.
       * Names not listed (or listed with another hash) are refused with `tpm/ek-not-enrolled`.
       */
      readonly enrolled: ReadonlyMap<string, string> | ((nodeName: string) => string | undefined);
      readonly allowAnyEk?: false;
    }
  | {
      /**
       * UNSAFE opt-out: accept any TPM whose EK certificate chains to a configured manufacturer CA under
       * any node name (a stolen or second-hand TPM of that manufacturer can claim any unused name).
       */
      readonly allowAnyEk: true;
      readonly enrolled?: undefined;
    };

function enrolmentLookup(options: TpmAttestorOptions): ((nodeName: string) => string | undefined) | 'any' {
  if (typeof options !== 'object' || options === null) throw new TpmAttestationError('tpm/config', 'tpm attestor options are required (enrolled EKs or allowAnyEk)');
  if (options.allowAnyEk === true) {
    if (options.enrolled !== undefined) throw new TpmAttestationError('tpm/config', 'allowAnyEk and enrolled exclude each other');
    return 'any';
  }
  const e = options.enrolled;
  if (typeof e === 'function') return e;
  if (!(e instanceof Map)) throw new TpmAttestationError('tpm/config', 'enrolled must be a Map of node name -> sha256:HEX or a lookup function');
  for (const [name, hash] of e) {
    if (!isEkHash(hash)) throw new TpmAttestationError('tpm/config', `enrolled EK hash for ${String(name).slice(0, 63)} must be sha256: and 64 lower-case hex digits`);
  }
  const copy = new Map(e);
  return (n) => copy.get(n);
}

/** `tpm` as a node attestor. Re-attestable: the same TPM can join again with a new AK. */
export function createTpmAttestor(config: TpmVerifierConfig, options: TpmAttestorOptions): NodeAttestorPlugin {
  const verifier = new TpmVerifier(config);
  const lookup = enrolmentLookup(options);
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
          // Deny by default (checked before any challenge is made): the EK must be enrolled for this name.
          if (lookup !== 'any') {
            const ekHash = `sha256:${fingerprint}`;
            const enrolled = lookup(ctx.nodeName);
            if (!isEkHash(enrolled) || enrolled !== ekHash) {
              throw new TpmAttestationError(
                'tpm/ek-not-enrolled',
                `the TPM with EK ${ekHash} is not enrolled for node ${ctx.nodeName}; enrol it in attestors.tpm.enrolled`,
                { detail: { node: ctx.nodeName, ek_hash: ekHash } },
              );
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
