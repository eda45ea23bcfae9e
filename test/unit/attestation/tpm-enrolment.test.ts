/**
 * TPM EK enrolment (issue #4 "attested node join", security gap): an EK certificate names no node, so the
 * `tpm` attestor denies by default and accepts a TPM only under the node name its EK hash is enrolled for,
 * as SPIRE's TPM node attestors pin the EK hash. `allowAnyEk: true` is the explicit, unsafe opt-out.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  createTpmAttestor,
  decodeTpmChallenge,
  ekCertificateHash,
  encodeTpmChallengeResponse,
  isEkHash,
  tpmPayload,
  TpmAttestationError,
  type TpmAttestorOptions,
} from '../../../src/attestation/node/tpm/index.js';
import { EdgewardError } from '../../../src/identity/index.js';
import { SoftTpm, softCa } from './soft-tpm.js';

const NOW = Date.UTC(2025, 0, 15, 12, 0, 0);
const ca = softCa('Enrolment Manufacturer CA', NOW);
const tpm = new SoftTpm(ca, NOW);
const other = new SoftTpm(ca, NOW);
const hashOf = (t: SoftTpm): string => `sha256:${createHash('sha256').update(t.ek.publicKey.export({ format: 'der', type: 'spki' })).digest('hex')}`;

function attest(t: SoftTpm, options: TpmAttestorOptions, nodeName: string) {
  const attestor = createTpmAttestor({ manufacturerCas: [ca.der] }, options);
  const session = attestor.begin(tpmPayload({ ekCert: t.ekCert, akPublic: t.akPublic, ekPublic: t.ekPublic }), { nodeName, now: NOW });
  const first = session.step(undefined, NOW);
  if (first.kind !== 'challenge') throw new Error('expected a challenge');
  return session.step(encodeTpmChallengeResponse(t.respond(decodeTpmChallenge(first.challenge))), NOW + 1);
}

function refusal(f: () => unknown): TpmAttestationError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(TpmAttestationError);
    return e as TpmAttestationError;
  }
  throw new Error('expected a TpmAttestationError');
}

describe('ekCertificateHash', () => {
  it('is sha256: + hex SHA-256 of the EK certificate SubjectPublicKeyInfo (the tpm:ek-hash selector value)', () => {
    expect(ekCertificateHash(tpm.ekCert)).toBe(hashOf(tpm));
    expect(isEkHash(ekCertificateHash(tpm.ekCert))).toBe(true);
    expect(ekCertificateHash(tpm.ekCert)).not.toBe(ekCertificateHash(other.ekCert));
    // The attestor's fingerprint (recorded with the node) is the same hash without the prefix.
    const done = attest(tpm, { allowAnyEk: true }, 'edge-1');
    expect(done.kind === 'done' && `sha256:${done.fingerprint}`).toBe(ekCertificateHash(tpm.ekCert));
  });

  it('refuses bytes that are not a certificate with tpm/malformed', () => {
    expect(refusal(() => ekCertificateHash(Buffer.from('not a certificate'))).code).toBe('tpm/malformed');
  });

  it('isEkHash accepts only sha256: and 64 lower-case hex digits', () => {
    expect(isEkHash(`sha256:${'a'.repeat(64)}`)).toBe(true);
    for (const bad of ['a'.repeat(64), `sha256:${'A'.repeat(64)}`, `sha256:${'a'.repeat(63)}`, `sha512:${'a'.repeat(64)}`, `sha256:${'a'.repeat(64)} `, 42, undefined]) {
      expect(isEkHash(bad)).toBe(false);
    }
  });
});

describe('tpm attestor enrolment (deny by default)', () => {
  it('accepts the TPM enrolled for the claimed name', () => {
    const done = attest(tpm, { enrolled: new Map([['edge-1', hashOf(tpm)]]) }, 'edge-1');
    expect(done).toMatchObject({ kind: 'done', method: 'tpm', nodeName: 'edge-1', reattestable: true });
  });

  it('refuses with tpm/ek-not-enrolled when nothing is enrolled, naming the EK hash so the operator can enrol it', () => {
    const e = refusal(() => attest(tpm, { enrolled: new Map() }, 'edge-1'));
    expect(e.code).toBe('tpm/ek-not-enrolled');
    expect(e.message).toContain(hashOf(tpm));
    expect(e.message).toContain('edge-1');
    expect(e.detail).toEqual({ node: 'edge-1', ek_hash: hashOf(tpm) });
  });

  it('refuses an enrolled TPM under another node name, and another TPM under an enrolled name', () => {
    const enrolled = new Map([['edge-1', hashOf(tpm)]]);
    expect(refusal(() => attest(tpm, { enrolled }, 'edge-2')).code).toBe('tpm/ek-not-enrolled');
    const e = refusal(() => attest(other, { enrolled }, 'edge-1'));
    expect(e.code).toBe('tpm/ek-not-enrolled');
    expect(e.message).toContain(hashOf(other));
    expect(e.message).not.toContain(hashOf(tpm)); // the refusal names the presented EK, not the enrolled one
  });

  it('refuses before making a challenge (no credential is sent to an unenrolled TPM)', () => {
    const attestor = createTpmAttestor({ manufacturerCas: [ca.der] }, { enrolled: () => undefined });
    const session = attestor.begin(tpmPayload({ ekCert: tpm.ekCert, akPublic: tpm.akPublic }), { nodeName: 'edge-1', now: NOW });
    expect(refusal(() => session.step(undefined, NOW)).code).toBe('tpm/ek-not-enrolled');
  });

  it('a lookup returning a malformed hash (bare hex, upper case) enrols nothing', () => {
    const bare = hashOf(tpm).slice('sha256:'.length);
    expect(refusal(() => attest(tpm, { enrolled: () => bare }, 'edge-1')).code).toBe('tpm/ek-not-enrolled');
    expect(refusal(() => attest(tpm, { enrolled: () => `sha256:${bare.toUpperCase()}` }, 'edge-1')).code).toBe('tpm/ek-not-enrolled');
  });

  it('an untrusted EK is refused as untrusted before enrolment is looked at', () => {
    const foreign = new SoftTpm(softCa('Other Manufacturer', NOW), NOW);
    expect(refusal(() => attest(foreign, { enrolled: () => hashOf(foreign) }, 'edge-1')).code).toBe('tpm/ek-untrusted');
  });

  it('allowAnyEk: true (unsafe opt-out) accepts any TPM of the manufacturer under any name', () => {
    expect(attest(tpm, { allowAnyEk: true }, 'edge-1').kind).toBe('done');
    expect(attest(other, { allowAnyEk: true }, 'anything').kind).toBe('done');
  });

  it('refuses contradictory or missing options with tpm/config', () => {
    const cfg = { manufacturerCas: [ca.der] };
    const codeOf = (f: () => unknown): string => {
      try {
        f();
      } catch (e) {
        return e instanceof EdgewardError ? e.code : String(e);
      }
      return 'no error';
    };
    expect(codeOf(() => createTpmAttestor(cfg, { allowAnyEk: true, enrolled: new Map() } as unknown as TpmAttestorOptions))).toBe('tpm/config');
    expect(codeOf(() => createTpmAttestor(cfg, undefined as unknown as TpmAttestorOptions))).toBe('tpm/config');
    expect(codeOf(() => createTpmAttestor(cfg, {} as unknown as TpmAttestorOptions))).toBe('tpm/config');
    expect(codeOf(() => createTpmAttestor(cfg, { enrolled: new Map([['edge-1', 'ab'.repeat(32)]]) }))).toBe('tpm/config');
  });
});
