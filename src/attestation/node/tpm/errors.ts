/**
 * Typed errors of the `tpm` node attestor (issue #4 "attested node join"). The codes are part of the
 * public interface (architecture.md convention 1); messages never contain secrets (credential secrets,
 * seeds) and the `cause` is for logs only.
 */
import { EdgewardError } from '../../../identity/index.js';

export const TPM_ATTESTATION_ERROR_CODES = [
  /** A TPM structure, certificate or message is not well formed (or exceeds its size bound). */
  'tpm/malformed',
  /** Well formed, but an algorithm or parameter this verifier does not implement (SHA-1, ECDAA, ...). */
  'tpm/unsupported',
  /** The verifier configuration is invalid (no manufacturer CA, bad TTL, bad PCR policy). */
  'tpm/config',
  /** The EK certificate does not chain to a configured manufacturer CA (or is expired, not an EK cert). */
  'tpm/ek-untrusted',
  /** The EK public area the agent sent is not the key of the EK certificate. */
  'tpm/ek-mismatch',
  /** The AK is not a restricted, TPM-resident signing key (TPM 2.0 Part 1 §25, Part 2 §8.3). */
  'tpm/ak-attributes',
  /** The activated secret differs from the one protected to the EK (credential activation failed). */
  'tpm/credential-mismatch',
  /** The quote signature does not verify with the AK public key. */
  'tpm/quote-signature',
  /** The signed attestation structure is not a TPM-generated quote (magic / type). */
  'tpm/quote-invalid',
  /** The quote's extraData is not the nonce issued for this challenge (replayed or stale quote). */
  'tpm/stale-nonce',
  /** The quoted PCR selection or digest does not match the configured PCR policy. */
  'tpm/pcr-mismatch',
  /** The challenge response arrived after the challenge lifetime. */
  'tpm/challenge-expired',
  /** The session was already completed or failed (challenges are single use). */
  'tpm/session-state',
  /**
   * No EK is enrolled for the node name the agent claims, or another one is (deny by default: an EK
   * certificate names no node). The message carries the EK hash (`sha256:HEX`, public) so that the
   * operator can enrol it.
   */
  'tpm/ek-not-enrolled',
] as const;
export type TpmAttestationErrorCode = (typeof TPM_ATTESTATION_ERROR_CODES)[number];
export class TpmAttestationError extends EdgewardError<TpmAttestationErrorCode> {}
