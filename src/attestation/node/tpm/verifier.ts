/**
 * The `tpm` node attestor, verifier side (issue #4 "attested node join"; reference spiffe.md §3
 * "Node attestation": SPIRE's AttestAgent challenge loop, tpm_devid's proof of residency by credential
 * activation against an EK certificate chained to the manufacturer CA).
 *
 * Pure: no I/O, time is passed in, randomness comes from node:crypto (or the configured source).
 *
 *   agent -> verifier  TpmAttestationRequest  { ekCert (+ intermediates), ekPublic?, akPublic }
 *     1. the EK certificate chains to a configured manufacturer CA                    (tpm/ek-untrusted)
 *     2. the EK public area, when sent, holds the certificate's key                    (tpm/ek-mismatch)
 *     3. the AK is a restricted signing key that never leaves the TPM                (tpm/ak-attributes)
 *   verifier -> agent  TpmChallenge { credentialBlob, encryptedSecret, nonce }
 *     MakeCredential(EK, Name(AK), secret) and a fresh 32-byte nonce for the quote
 *   agent -> verifier  TpmChallengeResponse { activatedSecret, quote, quoteSignature }
 *     4. activatedSecret = secret (constant time): the TPM that holds the EK private key has an object
 *        with Name(AK) loaded, so the AK is resident in that TPM          (tpm/credential-mismatch)
 *     5. the quote signature verifies with the AK                                      (tpm/quote-signature)
 *     6. the quote is TPM-generated (magic) and a quote (type); with ekPublic, its signer is the AK
 *        under that EK (qualified name)                                                (tpm/quote-invalid)
 *     7. extraData is the nonce of this challenge (not one of an earlier challenge)     (tpm/stale-nonce)
 *     8. optional PCR policy                                                           (tpm/pcr-mismatch)
 *
 * A session is single use: after `complete` (success or failure) it refuses further responses, so a
 * peer gets one guess at the secret per challenge.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock, ParsedCertificate } from '../../../identity/index.js';
import { aesKeyBitsOf, DEFAULT_EK_AES_KEY_BITS, DEFAULT_EK_NAME_ALG, makeCredential, type EkProtection } from './credential.js';
import { MAX_EK_INTERMEDIATES, parseManufacturerCa, verifyEkCertificate } from './ek.js';
import { TpmAttestationError } from './errors.js';
import {
  hashAlgOf,
  hashDigestSize,
  parseTpmPublic,
  parseTpmsAttest,
  parseTpmtSignature,
  pcrDigest,
  strongHashOf,
  TPM_ALG,
  TPM_GENERATED_VALUE,
  TPM_RH_ENDORSEMENT,
  TPM_ST_ATTEST_QUOTE,
  TPMA_OBJECT,
  TPMA_OBJECT_RESERVED,
  tpmObjectName,
  tpmPublicKey,
  tpmQualifiedName,
  u32be,
  verifyTpmSignature,
  type TpmAttest,
  type TpmHashName,
  type TpmPublic,
  type TpmRsaPublic,
} from './structures.js';

/** Node attestor type name (as SPIRE's plugin names: `tpm`). */
export const TPM_ATTESTOR_TYPE = 'tpm';
export const TPM_NONCE_BYTES = 32;
export const TPM_SECRET_BYTES = 32;
export const DEFAULT_TPM_CHALLENGE_TTL_MS = 60_000;
export const MAX_TPM_CHALLENGE_TTL_MS = 10 * 60_000;

/** AK attributes that must be set: a TPM-generated, non-duplicable, restricted signing key. */
export const AK_REQUIRED_ATTRIBUTES =
  TPMA_OBJECT.fixedTPM |
  TPMA_OBJECT.fixedParent |
  TPMA_OBJECT.sensitiveDataOrigin |
  TPMA_OBJECT.userWithAuth |
  TPMA_OBJECT.restricted |
  TPMA_OBJECT.sign;
/** AK attributes that must be clear (a key that can also decrypt could be made to sign non-TPM data). */
export const AK_FORBIDDEN_ATTRIBUTES = TPMA_OBJECT.decrypt | TPMA_OBJECT_RESERVED;

/** Expected PCR values: the quote must select exactly these PCRs of this bank, with these values. */
export interface TpmPcrPolicy {
  hashAlg: Exclude<TpmHashName, 'sha1'>;
  /** PCR index (0..63) -> expected value (digest size of hashAlg). */
  values: ReadonlyMap<number, Buffer>;
}

export interface TpmVerifierConfig {
  /** DER certificates of the TPM manufacturer CAs that EK certificates must chain to. */
  manufacturerCas: readonly Buffer[];
  /** How long after `begin` a response is accepted (default 60 s, at most 10 min). */
  challengeTtlMs?: number;
  /** Check the validity period of the EK certificate path (default true). */
  checkEkValidity?: boolean;
  pcrPolicy?: TpmPcrPolicy;
  /** Randomness for seeds, secrets and nonces (default node:crypto randomBytes; tests inject their own). */
  randomBytes?: (n: number) => Buffer;
}

/** First message of the agent. */
export interface TpmAttestationRequest {
  /** DER EK certificate (from NV index 0x01c00002 for the RSA EK). */
  ekCert: Buffer;
  /** DER intermediate CA certificates, if the manufacturer CA is not the EK certificate's issuer. */
  ekIntermediates?: readonly Buffer[];
  /**
   * The EK public area (TPM2B_PUBLIC, `tpm2_createek -u`). Optional: without it the TCG default template
   * (SHA-256, AES-128-CFB) is assumed. With it, it must hold the certificate's key, and the quote's
   * qualified signer must be the AK under this EK.
   */
  ekPublic?: Buffer;
  /** The AK public area (TPM2B_PUBLIC, `tpm2_createak -u`). */
  akPublic: Buffer;
}

export interface TpmChallenge {
  /** TPM2B_ID_OBJECT contents (without the size field). */
  credentialBlob: Buffer;
  /** TPM2B_ENCRYPTED_SECRET contents (without the size field). */
  encryptedSecret: Buffer;
  /** 32 fresh random bytes; the quote's extraData (qualifyingData) must be exactly this. */
  nonce: Buffer;
}

export interface TpmChallengeResponse {
  /** What TPM2_ActivateCredential returned (the TPM2B_DIGEST contents). */
  activatedSecret: Buffer;
  /** The TPMS_ATTEST the AK signed (`tpm2_quote -m`). */
  quote: Buffer;
  /** The TPMT_SIGNATURE over it (`tpm2_quote -s`, default format). */
  quoteSignature: Buffer;
}

export interface TpmAttestationResult {
  /** sha256 of the EK certificate's SubjectPublicKeyInfo (DER), lower-case hex: the stable node fingerprint. */
  ekPublicKeyHash: string;
  /** Serial number of the EK certificate, lower-case hex. */
  ekCertSerial: string;
  /** Name of the AK (nameAlg || H(TPMT_PUBLIC)), lower-case hex. */
  akName: string;
  /** The AK public area (TPM2B_PUBLIC) as sent. */
  akPublic: Buffer;
  /** DER certificates from the EK certificate to the manufacturer CA. */
  ekCertPath: Buffer[];
  /** TPMS_CLOCK_INFO and firmware version from the quote (reset/restart counters, for later re-attestation checks). */
  clock: { clock: bigint; resetCount: number; restartCount: number; safe: boolean };
  firmwareVersion: bigint;
  /** The quoted PCR selection and digest. */
  pcrSelection: { hashAlg: number; pcrs: number[] }[];
  pcrDigest: string;
}

function fail(code: TpmAttestationError['code'], message: string, cause?: unknown): never {
  throw new TpmAttestationError(code, message, cause === undefined ? undefined : { cause });
}

/** Check the AK public area is a restricted signing key resident in a TPM (TPM 2.0 Part 2 §8.3). */
export function checkAkPublic(ak: TpmPublic): void {
  const a = ak.objectAttributes;
  if ((a & AK_REQUIRED_ATTRIBUTES) !== AK_REQUIRED_ATTRIBUTES) {
    fail('tpm/ak-attributes', 'the AK must be fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, restricted and sign');
  }
  if ((a & AK_FORBIDDEN_ATTRIBUTES) !== 0) fail('tpm/ak-attributes', 'the AK must not be a decryption key or set reserved attributes');
  if (ak.symmetric !== null) fail('tpm/ak-attributes', 'a signing key has no symmetric algorithm');
  if (ak.type === 'rsa') {
    if (ak.keyBits < 2048) fail('tpm/unsupported', 'RSA AKs under 2048 bits are refused');
    if (ak.scheme !== null && ak.scheme.scheme !== TPM_ALG.RSASSA && ak.scheme.scheme !== TPM_ALG.RSAPSS) {
      fail('tpm/ak-attributes', 'the AK scheme is not a signing scheme');
    }
  } else if (ak.scheme !== null && ak.scheme.scheme !== TPM_ALG.ECDSA) {
    fail('tpm/unsupported', 'only ECDSA ECC AKs are supported');
  }
  if (ak.scheme !== null) strongHashOf(ak.scheme.hashAlg ?? 0, 'AK scheme');
  tpmPublicKey(ak); // a valid key (point on the curve)
}

function parseEkPublic(bytes: Buffer, cert: ParsedCertificate): { ek: TpmRsaPublic; protection: EkProtection } {
  const ek = parseTpmPublic(bytes);
  if (ek.type !== 'rsa') fail('tpm/unsupported', 'only RSA endorsement keys are supported');
  const certJwk = cert.publicKey().export({ format: 'jwk' });
  const tpmJwk = tpmPublicKey(ek).export({ format: 'jwk' });
  if (certJwk.n !== tpmJwk.n || certJwk.e !== tpmJwk.e) fail('tpm/ek-mismatch', 'the EK public area is not the key of the EK certificate');
  const a = ek.objectAttributes;
  if ((a & TPMA_OBJECT.restricted) === 0 || (a & TPMA_OBJECT.decrypt) === 0 || (a & TPMA_OBJECT.sign) !== 0 || (a & TPMA_OBJECT.fixedTPM) === 0) {
    fail('tpm/ek-mismatch', 'the EK public area is not a restricted, fixedTPM decryption key');
  }
  return { ek, protection: { publicKey: cert.publicKey(), nameAlg: ek.nameAlg, aesKeyBits: aesKeyBitsOf(ek.symmetric) } };
}

function checkPcrPolicy(policy: TpmPcrPolicy | undefined): void {
  if (policy === undefined) return;
  const size = hashDigestSize(policy.hashAlg);
  if (policy.values.size === 0) fail('tpm/config', 'a PCR policy needs at least one PCR');
  for (const [i, v] of policy.values) {
    if (!Number.isInteger(i) || i < 0 || i > 63) fail('tpm/config', `PCR index ${i} out of range`);
    if (!Buffer.isBuffer(v) || v.length !== size) fail('tpm/config', `PCR ${i} value must be ${size} bytes`);
  }
}

/** Holds the configuration (parsed manufacturer CAs) and starts challenge sessions. */
export class TpmVerifier {
  readonly #anchors: ParsedCertificate[];
  readonly #ttl: number;
  readonly #checkValidity: boolean;
  readonly #pcrPolicy: TpmPcrPolicy | undefined;
  readonly #random: (n: number) => Buffer;

  constructor(config: TpmVerifierConfig) {
    if (config.manufacturerCas.length === 0) fail('tpm/config', 'at least one manufacturer CA is required');
    this.#anchors = config.manufacturerCas.map(parseManufacturerCa);
    const ttl = config.challengeTtlMs ?? DEFAULT_TPM_CHALLENGE_TTL_MS;
    if (!Number.isInteger(ttl) || ttl < 1000 || ttl > MAX_TPM_CHALLENGE_TTL_MS) {
      fail('tpm/config', `challengeTtlMs must be 1000..${MAX_TPM_CHALLENGE_TTL_MS}`);
    }
    this.#ttl = ttl;
    this.#checkValidity = config.checkEkValidity ?? true;
    checkPcrPolicy(config.pcrPolicy);
    this.#pcrPolicy =
      config.pcrPolicy === undefined
        ? undefined
        : { hashAlg: config.pcrPolicy.hashAlg, values: new Map([...config.pcrPolicy.values].map(([i, v]) => [i, Buffer.from(v)] as const)) };
    this.#random = config.randomBytes ?? randomBytes;
  }

  /** Step 1: verify the EK certificate and the AK, and issue a challenge valid until now + TTL. */
  begin(request: TpmAttestationRequest, now: number): TpmChallengeSession {
    if (typeof request !== 'object' || request === null) fail('tpm/malformed', 'attestation request must be an object');
    if (!Buffer.isBuffer(request.ekCert) || !Buffer.isBuffer(request.akPublic)) fail('tpm/malformed', 'ekCert and akPublic must be bytes');
    const intermediates = request.ekIntermediates ?? [];
    if (!Array.isArray(intermediates) || intermediates.length > MAX_EK_INTERMEDIATES || !intermediates.every((b) => Buffer.isBuffer(b))) {
      fail('tpm/malformed', `ekIntermediates must be at most ${MAX_EK_INTERMEDIATES} DER certificates`);
    }
    if (!Number.isFinite(now)) fail('tpm/config', 'now must be a finite epoch time');

    const { leaf, path } = verifyEkCertificate(request.ekCert, intermediates, this.#anchors, now, { checkValidity: this.#checkValidity });
    let protection: EkProtection;
    let ekPublic: TpmRsaPublic | undefined;
    if (request.ekPublic !== undefined) {
      if (!Buffer.isBuffer(request.ekPublic)) fail('tpm/malformed', 'ekPublic must be bytes');
      ({ ek: ekPublic, protection } = parseEkPublic(request.ekPublic, leaf));
    } else {
      protection = { publicKey: leaf.publicKey(), nameAlg: DEFAULT_EK_NAME_ALG, aesKeyBits: DEFAULT_EK_AES_KEY_BITS };
    }

    const ak = parseTpmPublic(request.akPublic);
    checkAkPublic(ak);
    const akName = tpmObjectName(ak);
    const expectedSigner = ekPublic === undefined ? undefined : tpmQualifiedName(tpmQualifiedName(u32be(TPM_RH_ENDORSEMENT), ekPublic), ak);

    const secret = Buffer.from(this.#random(TPM_SECRET_BYTES));
    const nonce = Buffer.from(this.#random(TPM_NONCE_BYTES));
    if (secret.length !== TPM_SECRET_BYTES || nonce.length !== TPM_NONCE_BYTES) fail('tpm/config', 'random source returned wrong-sized output');
    const made = makeCredential(protection, akName, secret, this.#random);
    return createSession(
      { credentialBlob: made.credentialBlob, encryptedSecret: made.encryptedSecret, nonce: Buffer.from(nonce) },
      {
        ekPublicKeyHash: createHash('sha256').update(leaf.spki).digest('hex'),
        secret,
        nonce,
        ak,
        akName,
        akPublic: Buffer.from(request.akPublic),
        expectedSigner,
        leaf,
        path,
        expiresAt: now + this.#ttl,
        pcrPolicy: this.#pcrPolicy,
      },
    );
  }
}

interface SessionState {
  ekPublicKeyHash: string;
  secret: Buffer;
  nonce: Buffer;
  ak: TpmPublic;
  akName: Buffer;
  akPublic: Buffer;
  expectedSigner: Buffer | undefined;
  leaf: ParsedCertificate;
  path: ParsedCertificate[];
  expiresAt: number;
  pcrPolicy: TpmPcrPolicy | undefined;
}

const MAX_ACTIVATED_SECRET_BYTES = 64;

let createSession: (challenge: TpmChallenge, state: SessionState) => TpmChallengeSession;

/** One outstanding challenge. Created by `TpmVerifier.begin`; answered once with `complete`. */
export class TpmChallengeSession {
  static {
    createSession = (challenge, state) => {
      const s = new TpmChallengeSession(challenge, state.expiresAt, state.ekPublicKeyHash);
      s.#state = state;
      return s;
    };
  }

  /** What to send to the agent. */
  readonly challenge: TpmChallenge;
  /** Epoch ms after which `complete` refuses the response. */
  readonly expiresAt: number;
  /**
   * sha256 of the (verified) EK certificate's SubjectPublicKeyInfo, hex: known after step 1, so that a
   * caller can check node enrollment before sending the challenge. Proven only once `complete` succeeds.
   */
  readonly ekPublicKeyHash: string;
  #state: SessionState | undefined;

  private constructor(challenge: TpmChallenge, expiresAt: number, ekPublicKeyHash: string) {
    this.challenge = challenge;
    this.expiresAt = expiresAt;
    this.ekPublicKeyHash = ekPublicKeyHash;
  }

  /** True until `complete` has been called. */
  get open(): boolean {
    return this.#state !== undefined;
  }

  /** Step 2: check the agent's response at time `now`. Single use: the session closes whatever the outcome. */
  complete(response: TpmChallengeResponse, now: number): TpmAttestationResult {
    const st = this.#state;
    if (st === undefined) fail('tpm/session-state', 'this challenge was already answered');
    this.#state = undefined;
    try {
      return finish(st, response, now);
    } finally {
      st.secret.fill(0);
    }
  }
}

function finish(st: SessionState, response: TpmChallengeResponse, now: number): TpmAttestationResult {
  if (typeof response !== 'object' || response === null) fail('tpm/malformed', 'challenge response must be an object');
  const { activatedSecret, quote, quoteSignature } = response;
  if (!Buffer.isBuffer(activatedSecret) || !Buffer.isBuffer(quote) || !Buffer.isBuffer(quoteSignature)) {
    fail('tpm/malformed', 'activatedSecret, quote and quoteSignature must be bytes');
  }
  if (!Number.isFinite(now) || now > st.expiresAt) fail('tpm/challenge-expired', 'the challenge response arrived after the challenge expired');
  if (activatedSecret.length > MAX_ACTIVATED_SECRET_BYTES) fail('tpm/malformed', 'activated secret is too long');

  // 4. Proof of residency: only the EK's TPM, with Name(AK) loaded, can recover the secret (Part 1 §24).
  const same = activatedSecret.length === st.secret.length && timingSafeEqual(activatedSecret, st.secret);
  if (!same) fail('tpm/credential-mismatch', 'the activated credential does not match the issued secret');

  // 5. The quote is signed by the AK.
  const attest = parseTpmsAttest(quote);
  const sig = parseTpmtSignature(quoteSignature);
  let valid: boolean;
  try {
    valid = verifyTpmSignature(st.ak, sig, quote);
  } catch (e) {
    if (e instanceof TpmAttestationError && e.code === 'tpm/unsupported') fail('tpm/quote-signature', `quote signature not acceptable: ${e.message}`, e);
    throw e;
  }
  if (!valid) fail('tpm/quote-signature', 'the quote signature does not verify with the AK');

  // 6. TPM-generated quote (Part 2 §10.12.12: magic TPM_GENERATED_VALUE, type TPM_ST_ATTEST_QUOTE).
  if (attest.magic !== TPM_GENERATED_VALUE) fail('tpm/quote-invalid', 'the signed structure is not TPM-generated');
  if (attest.type !== TPM_ST_ATTEST_QUOTE || attest.quote === undefined) fail('tpm/quote-invalid', 'the signed structure is not a quote');
  if (st.expectedSigner !== undefined && !attest.qualifiedSigner.equals(st.expectedSigner)) {
    fail('tpm/quote-invalid', 'the quote signer is not the AK under the presented EK (qualified name)');
  }

  // 7. Freshness: the quote covers the nonce of this challenge.
  if (attest.extraData.length !== st.nonce.length || !timingSafeEqual(attest.extraData, st.nonce)) {
    fail('tpm/stale-nonce', 'the quote is not over the nonce of this challenge');
  }

  // 8. Optional PCR policy.
  if (st.pcrPolicy !== undefined) checkQuotedPcrs(st.pcrPolicy, attest, strongHashOf(sig.hashAlg, 'signature'));

  return {
    ekPublicKeyHash: st.ekPublicKeyHash,
    ekCertSerial: st.leaf.serialHex,
    akName: st.akName.toString('hex'),
    akPublic: st.akPublic,
    ekCertPath: st.path.map((c) => c.raw),
    clock: { ...attest.clockInfo },
    firmwareVersion: attest.firmwareVersion,
    pcrSelection: attest.quote.pcrSelection.map((s) => ({ hashAlg: s.hashAlg, pcrs: [...s.pcrs] })),
    pcrDigest: attest.quote.pcrDigest.toString('hex'),
  };
}

/** The quote must select exactly the policy's PCRs (in the policy's bank only) and their digest must match. */
function checkQuotedPcrs(policy: TpmPcrPolicy, attest: TpmAttest, signHash: TpmHashName): void {
  const bank = hashAlgOf(policy.hashAlg);
  const wanted = [...policy.values.keys()].sort((a, b) => a - b);
  const selected = attest.quote!.pcrSelection.filter((s) => s.pcrs.length > 0);
  if (selected.length !== 1 || selected[0]!.hashAlg !== bank || selected[0]!.pcrs.join(',') !== wanted.join(',')) {
    fail('tpm/pcr-mismatch', 'the quote does not select exactly the PCRs of the policy');
  }
  const expected = pcrDigest(signHash, wanted.map((i) => policy.values.get(i)!));
  if (!expected.equals(attest.quote!.pcrDigest)) fail('tpm/pcr-mismatch', 'the quoted PCR values differ from the policy');
}

/**
 * Run the whole exchange with a callback that carries the challenge to the agent and returns its
 * response (the shape of SPIRE's AttestAgent challenge loop). Time is read from `clock` when the request
 * arrives and when the response comes back.
 */
export async function attestTpmNode(
  verifier: TpmVerifier,
  request: TpmAttestationRequest,
  respond: (challenge: TpmChallenge) => Promise<TpmChallengeResponse>,
  clock: Clock,
): Promise<TpmAttestationResult> {
  const session = verifier.begin(request, clock.now());
  const response = await respond(session.challenge);
  return session.complete(response, clock.now());
}
