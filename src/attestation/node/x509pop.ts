/**
 * `x509pop` node attestation: X.509 proof of possession (SPIRE's x509pop plugin, reference §3 "Node
 * attestation"). The node holds a pre-provisioned certificate that chains to a CA the operator configured;
 * the cloud
 *
 *   1. verifies the presented chain (leaf first, at most 4 intermediates) to that CA bundle at `now`
 *      (RFC 5280 6.1, the subset below); the leaf must carry the digitalSignature key usage (SPIRE:
 *      "cert needs digitalSignature KU");
 *   2. sends a fresh 32-byte challenge nonce;
 *   3. gets back the node's own fresh 32-byte nonce and a signature over SHA-256(challengeNonce ||
 *      responseNonce) made with the leaf's private key: ECDSA P-256/P-384 (DER-encoded r,s) or RSA-PSS with
 *      SHA-256 (MGF1-SHA-256, salt = digest length when signing, any salt length accepted when verifying,
 *      as Go's rsa.VerifyPSS with nil options does in SPIRE). The node's nonce means the node never signs a
 *      message chosen entirely by the cloud.
 *
 * Differences from SPIRE, all deliberate:
 * - Node name: the leaf's subject commonName (exactly one CN attribute, UTF8String or PrintableString),
 *   which must be a valid node name (node-name.ts) and equal the name the node claims. DNS SANs are not
 *   used (a CN is what operators already put in device certificates, and SPIRE exposes it as the
 *   `x509pop:subject:cn` selector). Use a CA dedicated to node identities: every name it certifies is a
 *   node this cloud will accept.
 * - Fingerprint: hex SHA-256 of the leaf DER (SPIRE derives the agent ID from a SHA-1 of it).
 * - Leaves that are CA certificates are refused; unknown critical extensions anywhere fail the path
 *   (RFC 5280 6.1.4 (o)); the trust anchors' own validity is checked too (as Go's verifier does).
 * - Wire encoding of the port: challenge bytes = the 32-byte nonce; response bytes = the node's 32-byte
 *   nonce followed by the signature.
 *
 * Pure: time is passed in; randomness from node:crypto or an injected source.
 */
import { constants, createHash, randomBytes, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import {
  certIssuedBy,
  certSignedBy,
  EdgewardError,
  MAX_CERT_BYTES,
  OID,
  parseCertificate,
  X509Error,
  type ParsedCertificate,
} from '../../identity/index.js';
import { decodeBase64Strict, hasExactKeys, sequentialSession, type NodeAttestorPlugin } from './attestor.js';
import type { RandomSource } from './join-token.js';
import { isNodeName } from './node-name.js';

/**
 * - `x509pop/malformed`: payload, certificate or response bytes cannot be parsed.
 * - `x509pop/untrusted`: the chain does not verify to the configured CA bundle (unknown issuer, bad
 *   certificate signature, issuer not a CA, path too long, unhandled critical extension).
 * - `x509pop/expired` / `x509pop/not-yet-valid`: a certificate of the path is outside its validity at `now`.
 * - `x509pop/bad-usage`: the leaf lacks the digitalSignature key usage, or is a CA certificate.
 * - `x509pop/bad-name`: the leaf's subject has no single commonName that is a valid node name.
 * - `x509pop/wrong-node`: the certificate names another node than the one claimed.
 * - `x509pop/bad-nonce`: a nonce is not exactly 32 bytes.
 * - `x509pop/bad-signature`: the proof-of-possession signature does not verify with the leaf's key.
 * - `x509pop/unsupported-key`: the key cannot make an x509pop signature (not ECDSA P-256/P-384 or RSA).
 * - `x509pop/bad-config`: the configured CA bundle is empty or holds something other than CA certificates.
 */
export const X509POP_ERROR_CODES = [
  'x509pop/malformed',
  'x509pop/untrusted',
  'x509pop/expired',
  'x509pop/not-yet-valid',
  'x509pop/bad-usage',
  'x509pop/bad-name',
  'x509pop/wrong-node',
  'x509pop/bad-nonce',
  'x509pop/bad-signature',
  'x509pop/unsupported-key',
  'x509pop/bad-config',
] as const;
export type X509PopErrorCode = (typeof X509POP_ERROR_CODES)[number];
export class X509PopError extends EdgewardError<X509PopErrorCode> {}

/** Both nonces are 32 bytes (SPIRE x509pop). */
export const X509POP_NONCE_BYTES = 32;
/** At most 4 intermediates between the leaf and the configured CA (SPIRE x509pop). */
export const MAX_X509POP_INTERMEDIATES = 4;
/** Enough for an RSA-8192 signature; DER ECDSA P-384 needs at most 104. */
export const MAX_X509POP_SIGNATURE_BYTES = 1024;
/** Most CA certificates in the configured bundle. */
export const MAX_X509POP_ANCHORS = 64;

export interface X509PopChallenge {
  /** 32 fresh random bytes chosen by the cloud. */
  readonly nonce: Buffer;
}

export interface X509PopResponse {
  /** 32 fresh random bytes chosen by the node. */
  readonly nonce: Buffer;
  /** Signature over SHA-256(challenge.nonce || nonce) with the leaf's private key. */
  readonly signature: Buffer;
}

/** The operator-configured CA bundle, parsed once. */
export interface X509PopTrust {
  readonly anchors: readonly ParsedCertificate[];
}

export interface VerifiedX509PopChain {
  readonly nodeName: string;
  /** hex SHA-256 of the leaf DER: the stable node fingerprint. */
  readonly fingerprint: string;
  /** hex SHA-256 of the DER of the trust anchor the path ends at. */
  readonly caFingerprint: string;
  readonly leaf: ParsedCertificate;
  /** Leaf, intermediates, trust anchor. */
  readonly path: readonly ParsedCertificate[];
}

function fail(code: X509PopErrorCode, message: string, detail?: Record<string, string | number | boolean>): never {
  throw new X509PopError(code, message, detail === undefined ? undefined : { detail });
}

function sha256Hex(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Parse the operator's CA bundle (DER certificates). Throws `x509pop/bad-config`. */
export function createX509PopTrust(caCertsDer: readonly Buffer[]): X509PopTrust {
  if (caCertsDer.length === 0) fail('x509pop/bad-config', 'the x509pop CA bundle is empty');
  if (caCertsDer.length > MAX_X509POP_ANCHORS) fail('x509pop/bad-config', `the x509pop CA bundle holds more than ${MAX_X509POP_ANCHORS} certificates`);
  const anchors = caCertsDer.map((der, i) => {
    let c: ParsedCertificate;
    try {
      c = parseCertificate(der);
    } catch (e) {
      if (e instanceof X509Error) throw new X509PopError('x509pop/bad-config', `x509pop CA certificate ${i}: ${e.message}`, { cause: e });
      throw e;
    }
    // RFC 5280 6.1.4 (k): only a CA certificate can vouch for others.
    if (!c.basicConstraintsPresent || !c.isCA) fail('x509pop/bad-config', `x509pop CA certificate ${i} is not a CA certificate`);
    return c;
  });
  return Object.freeze({ anchors: Object.freeze(anchors) });
}

/** The cloud's challenge: 32 fresh random bytes. */
export function x509popChallenge(rand: RandomSource = randomBytes): X509PopChallenge {
  const nonce = rand(X509POP_NONCE_BYTES);
  if (!Buffer.isBuffer(nonce) || nonce.length !== X509POP_NONCE_BYTES) fail('x509pop/bad-nonce', 'random source returned the wrong number of bytes');
  return { nonce };
}

function signedData(challengeNonce: Buffer, responseNonce: Buffer): Buffer {
  if (!Buffer.isBuffer(challengeNonce) || challengeNonce.length !== X509POP_NONCE_BYTES) {
    fail('x509pop/bad-nonce', `the challenge nonce must be ${X509POP_NONCE_BYTES} bytes`);
  }
  if (!Buffer.isBuffer(responseNonce) || responseNonce.length !== X509POP_NONCE_BYTES) {
    fail('x509pop/bad-nonce', `the response nonce must be ${X509POP_NONCE_BYTES} bytes`);
  }
  return Buffer.concat([challengeNonce, responseNonce]);
}

type SigKind = 'ecdsa' | 'rsa-pss';

function sigKindOf(key: KeyObject): SigKind {
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1' || curve === 'secp384r1') return 'ecdsa';
  }
  if (key.asymmetricKeyType === 'rsa' || key.asymmetricKeyType === 'rsa-pss') return 'rsa-pss';
  fail('x509pop/unsupported-key', 'x509pop needs an ECDSA P-256/P-384 or RSA key');
}

/**
 * The node's answer (agent side): its own 32-byte nonce and a signature over
 * SHA-256(challenge.nonce || nonce). `crypto.sign('sha256', data)` hashes `data` once and signs the
 * digest, which is what SPIRE's agent does with the precomputed hash.
 */
export function x509popRespond(challenge: X509PopChallenge, privateKey: KeyObject, rand: RandomSource = randomBytes): X509PopResponse {
  if (privateKey.type !== 'private') fail('x509pop/unsupported-key', 'x509pop needs the private key');
  const kind = sigKindOf(privateKey);
  const nonce = rand(X509POP_NONCE_BYTES);
  const data = signedData(challenge.nonce, nonce);
  const signature =
    kind === 'ecdsa'
      ? cryptoSign('sha256', data, { key: privateKey, dsaEncoding: 'der' })
      : cryptoSign('sha256', data, { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST });
  return { nonce, signature };
}

/** Response bytes for the port: nonce (32 bytes) || signature. */
export function encodeX509PopResponse(r: X509PopResponse): Buffer {
  signedData(Buffer.alloc(X509POP_NONCE_BYTES), r.nonce);
  return Buffer.concat([r.nonce, r.signature]);
}

export function decodeX509PopResponse(bytes: Buffer): X509PopResponse {
  if (!Buffer.isBuffer(bytes) || bytes.length <= X509POP_NONCE_BYTES) fail('x509pop/malformed', 'x509pop response is too short');
  if (bytes.length > X509POP_NONCE_BYTES + MAX_X509POP_SIGNATURE_BYTES) fail('x509pop/malformed', 'x509pop response is too long');
  return { nonce: Buffer.from(bytes.subarray(0, X509POP_NONCE_BYTES)), signature: Buffer.from(bytes.subarray(X509POP_NONCE_BYTES)) };
}

/** Check the proof-of-possession signature against the (already verified) leaf. */
export function x509popVerifySignature(leaf: ParsedCertificate, challenge: X509PopChallenge, response: X509PopResponse): void {
  const data = signedData(challenge.nonce, response.nonce);
  if (!Buffer.isBuffer(response.signature) || response.signature.length === 0 || response.signature.length > MAX_X509POP_SIGNATURE_BYTES) {
    fail('x509pop/malformed', 'x509pop signature is empty or too long');
  }
  let key: KeyObject;
  try {
    key = leaf.publicKey();
  } catch (e) {
    throw new X509PopError('x509pop/unsupported-key', 'the leaf public key cannot be used', { cause: e });
  }
  const kind = sigKindOf(key);
  let ok: boolean;
  try {
    ok =
      kind === 'ecdsa'
        ? cryptoVerify('sha256', data, { key, dsaEncoding: 'der' }, response.signature)
        : cryptoVerify('sha256', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO }, response.signature);
  } catch {
    ok = false; // e.g. a signature that is not valid DER
  }
  if (!ok) fail('x509pop/bad-signature', 'x509pop signature does not verify with the certificate key');
}

// ---------------------------------------------------------------- RFC 5280 path validation (subset)

/** Extensions this validator processes; any other critical extension fails the path (RFC 5280 6.1.4 (o), 6.1.5 (f)). */
const HANDLED_EXTENSIONS = new Set<string>([
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage,
  OID.subjectAltName,
  OID.subjectKeyIdentifier,
  OID.authorityKeyIdentifier,
]);

function checkCritical(c: ParsedCertificate, role: string): void {
  for (const [oid, ext] of c.extensions) {
    if (ext.critical && !HANDLED_EXTENSIONS.has(oid)) fail('x509pop/untrusted', `${role} has an unhandled critical extension ${oid} (RFC 5280 6.1.4 (o))`);
  }
}

function checkTime(c: ParsedCertificate, now: number, role: string): void {
  // RFC 5280 6.1.3 (a)(2): the certificate validity period includes the current time.
  if (now < c.notBefore) fail('x509pop/not-yet-valid', `${role} certificate is not valid yet`, { role, not_before: c.notBefore });
  if (now > c.notAfter) fail('x509pop/expired', `${role} certificate has expired`, { role, not_after: c.notAfter });
}

/** RFC 5280 6.1.4 (k), (l), (m), (n) for a certificate that signs another. */
function checkIssuer(c: ParsedCertificate, role: string, intermediatesBelow: number): void {
  if (!c.basicConstraintsPresent || !c.isCA) fail('x509pop/untrusted', `${role} is not a CA certificate (RFC 5280 6.1.4 (k))`);
  if (c.keyUsage.present && !c.keyUsage.keyCertSign) fail('x509pop/untrusted', `${role} lacks keyCertSign (RFC 5280 6.1.4 (n))`);
  if (c.pathLen !== undefined && intermediatesBelow > c.pathLen) fail('x509pop/untrusted', `${role} path length constraint exceeded (RFC 5280 4.2.1.9)`);
}

function parseChain(chain: readonly Buffer[]): ParsedCertificate[] {
  if (!Array.isArray(chain) || chain.length === 0) fail('x509pop/malformed', 'x509pop needs at least the leaf certificate');
  if (chain.length > 1 + MAX_X509POP_INTERMEDIATES) {
    fail('x509pop/malformed', `x509pop accepts a leaf and at most ${MAX_X509POP_INTERMEDIATES} intermediates`);
  }
  return chain.map((der, i) => {
    try {
      return parseCertificate(der);
    } catch (e) {
      if (e instanceof X509Error) throw new X509PopError('x509pop/malformed', `certificate ${i}: ${e.message}`, { cause: e });
      throw e;
    }
  });
}

/**
 * Build and check the path leaf -> intermediates (from `certs`, any order) -> one trust anchor. Every
 * candidate issuer whose signature verifies is tried; when none passes, the first failure is reported.
 */
function buildPath(certs: readonly ParsedCertificate[], anchors: readonly ParsedCertificate[], now: number): ParsedCertificate[] {
  const path: ParsedCertificate[] = [certs[0]!];
  const used = new Set<number>([0]);
  let current = certs[0]!;
  let intermediatesBelow = 0;
  for (;;) {
    let firstFailure: unknown;
    const accept = (cand: ParsedCertificate, role: string): boolean => {
      if (!certIssuedBy(current, cand) || !certSignedBy(current, cand)) return false;
      try {
        checkIssuer(cand, role, intermediatesBelow);
        if (role === 'intermediate CA') checkCritical(cand, role);
        checkTime(cand, now, role);
        return true;
      } catch (e) {
        if (!(e instanceof X509PopError)) throw e;
        firstFailure ??= e;
        return false;
      }
    };
    const anchor = anchors.find((a) => accept(a, 'trust anchor'));
    if (anchor !== undefined) {
      path.push(anchor);
      return path;
    }
    let next = -1;
    if (intermediatesBelow < MAX_X509POP_INTERMEDIATES) {
      for (let i = 1; i < certs.length && next === -1; i++) if (!used.has(i) && accept(certs[i]!, 'intermediate CA')) next = i;
    }
    if (next === -1) {
      if (firstFailure !== undefined) throw firstFailure;
      fail('x509pop/untrusted', 'the certificate does not chain to the configured x509pop CA bundle');
    }
    used.add(next);
    current = certs[next]!;
    path.push(current);
    intermediatesBelow++;
  }
}

// ---------------------------------------------------------------- subject commonName (RFC 5280 4.1.2.4)

const CN_OID_DER = Buffer.from([0x55, 0x04, 0x03]); // 2.5.4.3 id-at-commonName
const UTF8_STRING = 0x0c;
const PRINTABLE_STRING = 0x13;

interface Tlv {
  tag: number;
  start: number;
  end: number;
}

/** One DER TLV at `off` within [off, limit): single-byte tags, definite minimal lengths. */
function readTlv(buf: Buffer, off: number, limit: number): Tlv {
  if (off + 2 > limit) fail('x509pop/malformed', 'truncated subject name');
  const tag = buf[off]!;
  let len = buf[off + 1]!;
  let start = off + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 3 || start + n > limit) fail('x509pop/malformed', 'bad length in subject name');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[start + i]!;
    if (len < 0x80 || (n > 1 && buf[start] === 0)) fail('x509pop/malformed', 'non-minimal length in subject name (X.690 10.1)');
    start += n;
  }
  const end = start + len;
  if (end > limit) fail('x509pop/malformed', 'truncated subject name');
  return { tag, start, end };
}

/** Every commonName value of a DER Name as [tag, text]. */
function commonNames(name: Buffer): Array<{ tag: number; value: string }> {
  const top = readTlv(name, 0, name.length);
  if (top.tag !== 0x30 || top.end !== name.length) fail('x509pop/malformed', 'subject is not a SEQUENCE');
  const out: Array<{ tag: number; value: string }> = [];
  for (let off = top.start; off < top.end; ) {
    const rdn = readTlv(name, off, top.end);
    if (rdn.tag !== 0x31) fail('x509pop/malformed', 'subject RDN is not a SET');
    for (let a = rdn.start; a < rdn.end; ) {
      const atv = readTlv(name, a, rdn.end);
      if (atv.tag !== 0x30) fail('x509pop/malformed', 'subject attribute is not a SEQUENCE');
      const type = readTlv(name, atv.start, atv.end);
      if (type.tag !== 0x06) fail('x509pop/malformed', 'subject attribute type is not an OID');
      const value = readTlv(name, type.end, atv.end);
      if (value.end !== atv.end) fail('x509pop/malformed', 'trailing data in subject attribute');
      if (name.subarray(type.start, type.end).equals(CN_OID_DER)) {
        out.push({ tag: value.tag, value: name.subarray(value.start, value.end).toString('utf8') });
      }
      a = atv.end;
    }
    off = rdn.end;
  }
  return out;
}

/**
 * The node name a certificate certifies: its one subject commonName, which must be a valid node name.
 * Throws `x509pop/bad-name`.
 */
export function x509popNodeName(leaf: ParsedCertificate): string {
  const cns = commonNames(leaf.subjectRaw);
  if (cns.length !== 1) fail('x509pop/bad-name', `the certificate subject must have exactly one commonName (has ${cns.length})`);
  const cn = cns[0]!;
  if (cn.tag !== UTF8_STRING && cn.tag !== PRINTABLE_STRING) fail('x509pop/bad-name', 'the commonName must be a UTF8String or PrintableString');
  if (!isNodeName(cn.value)) {
    fail('x509pop/bad-name', 'the certificate commonName is not a valid node name ([a-z0-9-], 1-63, no leading or trailing "-")', {
      cn: cn.value.slice(0, 80),
    });
  }
  return cn.value;
}

// ---------------------------------------------------------------- verification

/**
 * Step 1 (before the challenge): verify the chain to the configured CA at `now` and derive the node
 * name and fingerprint. Throws `X509PopError`.
 */
export function x509popVerifyChain(chain: readonly Buffer[], trust: X509PopTrust, now: number): VerifiedX509PopChain {
  const certs = parseChain(chain);
  const leaf = certs[0]!;
  checkCritical(leaf, 'leaf');
  const path = buildPath(certs, trust.anchors, now);
  checkTime(leaf, now, 'leaf');
  // SPIRE x509pop: the leaf must be usable for signatures (the proof of possession is a signature).
  // An absent keyUsage extension does not count (SPIRE tests the bit, which is 0 without the extension).
  if (!leaf.keyUsage.present || !leaf.keyUsage.digitalSignature) fail('x509pop/bad-usage', 'the leaf certificate lacks the digitalSignature key usage');
  if (leaf.isCA) fail('x509pop/bad-usage', 'the leaf certificate is a CA certificate');
  const nodeName = x509popNodeName(leaf);
  return Object.freeze({
    nodeName,
    fingerprint: sha256Hex(leaf.raw),
    caFingerprint: sha256Hex(path[path.length - 1]!.raw),
    leaf,
    path: Object.freeze(path),
  });
}

/** Chain and proof of possession together, at `now`. Throws `X509PopError`. */
export function x509popVerify(
  evidence: { readonly chain: readonly Buffer[]; readonly challenge: X509PopChallenge; readonly response: X509PopResponse },
  trust: X509PopTrust,
  now: number,
): VerifiedX509PopChain {
  const verified = x509popVerifyChain(evidence.chain, trust, now);
  x509popVerifySignature(verified.leaf, evidence.challenge, evidence.response);
  return verified;
}

// ---------------------------------------------------------------- the node-attestor port

export interface X509PopAttestorOptions {
  /** Source of challenge nonces (default crypto.randomBytes). */
  rand?: RandomSource;
}

/**
 * Agent payload for `attest.begin` with method x509pop: `{"certificates": [base64 DER, ...]}`, leaf first
 * (SPIRE's payload shape, with base64 as JSON has no bytes).
 */
export function x509popPayload(chain: readonly Buffer[]): { certificates: string[] } {
  return { certificates: chain.map((c) => c.toString('base64')) };
}

/**
 * `x509pop` as a node attestor: stage 1 verifies the chain (refusing before any challenge, as SPIRE does)
 * and sends the nonce; stage 2 verifies chain and signature again at the time of the response. The node
 * name must equal the claimed one. Re-attestable.
 */
export function createX509PopAttestor(trust: X509PopTrust, options: X509PopAttestorOptions = {}): NodeAttestorPlugin {
  const rand = options.rand ?? randomBytes;
  return {
    method: 'x509pop',
    begin(payload, ctx) {
      const list = hasExactKeys(payload, ['certificates']) ? payload['certificates'] : undefined;
      if (!Array.isArray(list) || list.length === 0 || list.length > 1 + MAX_X509POP_INTERMEDIATES) {
        fail('x509pop/malformed', `x509pop payload must be {"certificates": [1..${1 + MAX_X509POP_INTERMEDIATES} base64 DER certificates]}`);
      }
      const chain = list.map((s: unknown) => decodeBase64Strict(s, MAX_CERT_BYTES) ?? fail('x509pop/malformed', 'x509pop certificate is not base64 DER'));
      let challenge: X509PopChallenge | undefined;
      return sequentialSession(ctx, [
        (_input, now) => {
          const v = x509popVerifyChain(chain, trust, now);
          if (v.nodeName !== ctx.nodeName) fail('x509pop/wrong-node', 'the certificate names another node', { node: v.nodeName, claimed: ctx.nodeName });
          challenge = x509popChallenge(rand);
          return { kind: 'challenge', challenge: Buffer.from(challenge.nonce) };
        },
        (input, now) => {
          const response = decodeX509PopResponse(input!);
          const v = x509popVerify({ chain, challenge: challenge!, response }, trust, now);
          return { kind: 'done', method: 'x509pop', nodeName: v.nodeName, fingerprint: v.fingerprint, reattestable: true };
        },
      ]);
    },
  };
}
