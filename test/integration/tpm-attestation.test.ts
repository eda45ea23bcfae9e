/**
 * The `tpm` node attestor end to end against a real (software) TPM: swtpm + tpm2-tools (issue #4
 * "attested node join": "EK certificate chaining to a configured manufacturer CA, credential activation to
 * bind an attestation key to that EK, then a quote over a fresh nonce. Test it for real against swtpm +
 * tpm2-tools"; failure case "a TPM quote over a stale nonce").
 *
 * The TPM is manufactured per test file by swtpm_setup with a private swtpm-localca in a temp dir (its own
 * root CA and issuer: the "manufacturer CA"), so nothing depends on /var/lib/swtpm-localca. The EK
 * certificate comes out of the TPM's NV index 0x01c00002. The verifier's software MakeCredential is proven
 * by the real TPM2_ActivateCredential recovering the secret. swtpm runs on a free 127.0.0.1 port pair and
 * only its own PID is stopped (toolchain.md).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  attestTpmNode,
  createTpmAttestor,
  decodeTpmChallenge,
  encodeTpmChallengeResponse,
  makeCredential,
  tpmPayload,
  parseTpmPublic,
  TpmAttestationError,
  TpmVerifier,
  tpmObjectName,
  type TpmAttestationErrorCode,
} from '../../src/attestation/node/tpm/index.js';
import { encodeCredentialFile, parseTpmTcti, runTpm2, TpmAgentSession, TpmDriverError, withTpmAgentSession } from '../../src/edge/tpm/index.js';
import { certsFromPem, ManualClock, parseCertificate } from '../../src/identity/index.js';
import { freePort, openssl, tempDir } from '../helpers/index.js';
import { HAVE_SWTPM, runCommand, startSwtpm, type Swtpm } from '../helpers/swtpm.js';
import { softCa } from '../unit/attestation/soft-tpm.js';

function codeOf(f: () => unknown): TpmAttestationErrorCode | string {
  try {
    f();
  } catch (e) {
    if (e instanceof TpmAttestationError) return e.code;
    return `not a TpmAttestationError: ${String(e)}`;
  }
  return 'no error';
}


describe.skipIf(!HAVE_SWTPM)('tpm node attestation against swtpm + tpm2-tools', () => {
  let tpm: Swtpm;

  beforeAll(async () => {
    tpm = await startSwtpm();
  }, 60_000);

  afterAll(async () => {
    await tpm?.stop();
  });

  const verifierOf = (cas: Buffer[] = [tpm.root]): TpmVerifier => new TpmVerifier({ manufacturerCas: cas });

  it('attests: EK cert from NV chains to the manufacturer CA, the TPM activates our credential, quote over the nonce', async () => {
    const verifier = verifierOf();
    await withTpmAgentSession({ tcti: tpm.tcti }, async (agent) => {
      expect((await stat(agent.directory)).mode & 0o777).toBe(0o700);
      const evidence = await agent.collect();
      // The EK certificate from NV is the one swtpm_setup wrote, and openssl agrees it chains to the CA.
      expect(evidence.ekCert.equals(await readFile(tpm.ekCertFile))).toBe(true);
      const pem = (der: Buffer): string => `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END CERTIFICATE-----\n`;
      await writeFile(join(tpm.dir, 'root.pem'), pem(tpm.root));
      await writeFile(join(tpm.dir, 'issuer.pem'), pem(tpm.issuer));
      await writeFile(join(tpm.dir, 'ek.pem'), pem(evidence.ekCert));
      const v = await openssl(['verify', '-CAfile', join(tpm.dir, 'root.pem'), '-untrusted', join(tpm.dir, 'issuer.pem'), join(tpm.dir, 'ek.pem')]);
      expect(v.stdout).toContain(': OK');
      // Our Name computation agrees with the TPM's.
      expect(tpmObjectName(parseTpmPublic(evidence.akPublic)).equals(evidence.akName)).toBe(true);

      const session = verifier.begin({ ekCert: evidence.ekCert, ekIntermediates: [tpm.issuer], ekPublic: evidence.ekPublic, akPublic: evidence.akPublic }, Date.now());
      const response = await agent.respond(session.challenge);
      expect(response.activatedSecret.length).toBe(32); // the real TPM opened our software MakeCredential
      const result = session.complete(response, Date.now());
      const leaf = parseCertificate(evidence.ekCert);
      expect(result.ekPublicKeyHash).toBe(createHash('sha256').update(leaf.spki).digest('hex'));
      expect(result.ekCertSerial).toBe(leaf.serialHex);
      expect(result.akName).toBe(evidence.akName.toString('hex'));
      expect(result.pcrSelection).toEqual([{ hashAlg: 0x000b, pcrs: [0, 1, 2, 3, 4, 5, 6, 7] }]);
      expect(result.ekCertPath.length).toBe(3);
    });
  });

  it('attests with an RSA AK and an EK certificate from a file, through the callback form; the fingerprint is stable', async () => {
    const verifier = verifierOf([tpm.issuer]); // the issuing CA alone may be the anchor
    const results = [];
    for (const akAlgorithm of ['rsa', 'ecc'] as const) {
      results.push(
        await withTpmAgentSession({ tcti: tpm.tcti, ekCertFile: tpm.ekCertFile, akAlgorithm }, async (agent) => {
          const evidence = await agent.collect();
          expect(parseTpmPublic(evidence.akPublic).type).toBe(akAlgorithm);
          return attestTpmNode(verifier, evidence, (c) => agent.respond(c), { now: () => Date.now() });
        }),
      );
    }
    expect(results[0]!.ekPublicKeyHash).toBe(results[1]!.ekPublicKeyHash); // same EK, new AK each time
    expect(results[0]!.akName).not.toBe(results[1]!.akName);
  });

  it('attests through the node-attestor port with wire encodings (JSON payload, challenge/response bytes)', async () => {
    const attestor = createTpmAttestor({ manufacturerCas: [tpm.root] }, { allowAnyEk: true });
    await withTpmAgentSession({ tcti: tpm.tcti }, async (agent) => {
      const evidence = await agent.collect();
      const payload = JSON.parse(JSON.stringify(tpmPayload({ ...evidence, ekIntermediates: [tpm.issuer] }))) as Record<string, unknown>;
      const session = attestor.begin(payload, { nodeName: 'edge-tpm-1', now: Date.now() });
      const first = session.step(undefined, Date.now());
      if (first.kind !== 'challenge') throw new Error('expected a challenge');
      const response = await agent.respond(decodeTpmChallenge(first.challenge));
      const done = session.step(encodeTpmChallengeResponse(response), Date.now());
      expect(done).toMatchObject({ kind: 'done', method: 'tpm', nodeName: 'edge-tpm-1', reattestable: true });
      if (done.kind === 'done') expect(done.fingerprint).toBe(createHash('sha256').update(parseCertificate(evidence.ekCert).spki).digest('hex'));
    });
  });

  it('refuses an EK certificate that does not chain to the configured manufacturer CA', async () => {
    const other = softCa('Some Other TPM Vendor', Date.now());
    await withTpmAgentSession({ tcti: tpm.tcti }, async (agent) => {
      const evidence = await agent.collect();
      expect(codeOf(() => verifierOf([other.der]).begin({ ...evidence, ekIntermediates: [tpm.issuer] }, Date.now()))).toBe('tpm/ek-untrusted');
      // the intermediate alone is not enough when only the root is trusted
      expect(codeOf(() => verifierOf().begin(evidence, Date.now()))).toBe('tpm/ek-untrusted');
    });
  });

  it('refuses a wrong activated secret and a tampered quote', async () => {
    const verifier = verifierOf();
    await withTpmAgentSession({ tcti: tpm.tcti }, async (agent) => {
      const evidence = await agent.collect();
      const request = { ...evidence, ekIntermediates: [tpm.issuer] };
      const s1 = verifier.begin(request, Date.now());
      const r1 = await agent.respond(s1.challenge);
      expect(codeOf(() => s1.complete({ ...r1, activatedSecret: randomBytes(32) }, Date.now()))).toBe('tpm/credential-mismatch');

      const s2 = verifier.begin(request, Date.now());
      const r2 = await agent.respond(s2.challenge);
      const quote = Buffer.from(r2.quote);
      quote[quote.length - 1]! ^= 0x01; // the PCR digest
      expect(codeOf(() => s2.complete({ ...r2, quote }, Date.now()))).toBe('tpm/quote-signature');
    });
  });

  it('refuses a quote over a stale nonce (the nonce of an earlier challenge)', async () => {
    const verifier = verifierOf();
    await withTpmAgentSession({ tcti: tpm.tcti }, async (agent) => {
      const evidence = await agent.collect();
      const request = { ...evidence, ekIntermediates: [tpm.issuer] };
      const first = verifier.begin(request, Date.now());
      const firstResponse = await agent.respond(first.challenge);
      expect(first.complete(firstResponse, Date.now()).akName).toBe(evidence.akName.toString('hex'));

      const second = verifier.begin(request, Date.now());
      // The TPM activates the new credential but quotes over the old nonce: a genuine, correctly signed
      // quote that is not fresh.
      const stale = await agent.respond({ ...second.challenge, nonce: first.challenge.nonce });
      expect(codeOf(() => second.complete(stale, Date.now()))).toBe('tpm/stale-nonce');

      // Replaying the whole earlier quote with the new secret is refused the same way.
      const third = verifier.begin(request, Date.now());
      const fresh = await agent.respond(third.challenge);
      expect(codeOf(() => third.complete({ ...fresh, quote: firstResponse.quote, quoteSignature: firstResponse.quoteSignature }, Date.now()))).toBe(
        'tpm/stale-nonce',
      );
    });
  });

  it('refuses an AK that is not a restricted signing key (a sign+decrypt key made by the TPM)', async () => {
    const dir = await tempDir('edgeward-tpmkey-');
    const tcti = parseTpmTcti(tpm.tcti);
    await runTpm2(tcti, 'tpm2_createprimary', ['-C', 'o', '-G', 'ecc', '-a', 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign|decrypt', '-c', 'k.ctx'], { cwd: dir });
    await runTpm2(tcti, 'tpm2_readpublic', ['-c', 'k.ctx', '-o', 'k.pub'], { cwd: dir });
    await runTpm2(tcti, 'tpm2_flushcontext', ['-t'], { cwd: dir });
    const keyPublic = await readFile(join(dir, 'k.pub'));
    expect(parseTpmPublic(keyPublic).objectAttributes & (1 << 17)).not.toBe(0);
    const evidence = await withTpmAgentSession({ tcti: tpm.tcti }, (agent) => agent.collect());
    expect(codeOf(() => verifierOf().begin({ ...evidence, ekIntermediates: [tpm.issuer], akPublic: keyPublic }, Date.now()))).toBe('tpm/ak-attributes');
  });

  it('binds the AK to the TPM: a credential made for a key that is not in the TPM cannot be activated', async () => {
    await withTpmAgentSession({ tcti: tpm.tcti }, async (agent) => {
      const evidence = await agent.collect();
      // An attacker claims a software key with AK attributes (here: an AK public area of another TPM
      // session would do the same); the verifier protects the secret to that key's Name.
      const ekKey = parseCertificate(evidence.ekCert).publicKey();
      const foreignName = Buffer.from(evidence.akName);
      foreignName[10]! ^= 0xff;
      const made = makeCredential({ publicKey: ekKey, nameAlg: 'sha256', aesKeyBits: 128 }, foreignName, randomBytes(32), randomBytes);
      const err = await agent.respond({ ...made, nonce: randomBytes(32) }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TpmDriverError);
      expect((err as TpmDriverError).code).toBe('tpm-driver/tool-failed');
      expect((err as TpmDriverError).message).toMatch(/tpm2_activatecredential/);
      // ... while the right Name works in the same session.
      const secret = randomBytes(32);
      const ok = makeCredential({ publicKey: ekKey, nameAlg: 'sha256', aesKeyBits: 128 }, evidence.akName, secret, randomBytes);
      expect((await agent.respond({ ...ok, nonce: randomBytes(32) })).activatedSecret.equals(secret)).toBe(true);
    });
  });

  it('writes the credential file in the layout tpm2_makecredential uses', async () => {
    const dir = await tempDir('edgeward-tpmcred-');
    await withTpmAgentSession({ tcti: tpm.tcti }, async (agent) => {
      const evidence = await agent.collect();
      await writeFile(join(dir, 'ek.pub'), evidence.ekPublic);
      await writeFile(join(dir, 'secret.bin'), randomBytes(32));
      const r = await runCommand('tpm2_makecredential', ['-T', 'none', '-e', join(dir, 'ek.pub'), '-s', join(dir, 'secret.bin'), '-n', evidence.akName.toString('hex'), '-o', join(dir, 'cred.bin')]);
      expect(r.code).toBe(0);
      const theirs = await readFile(join(dir, 'cred.bin'));
      const ekKey = parseCertificate(evidence.ekCert).publicKey();
      const made = makeCredential({ publicKey: ekKey, nameAlg: 'sha256', aesKeyBits: 128 }, evidence.akName, randomBytes(32), randomBytes);
      const ours = encodeCredentialFile(made.credentialBlob, made.encryptedSecret);
      expect(ours.length).toBe(theirs.length);
      expect(ours.subarray(0, 10).equals(theirs.subarray(0, 10))).toBe(true); // magic, version, TPM2B_ID_OBJECT size
    });
  });

  it('removes its working directory on close and refuses use afterwards', async () => {
    const agent = await TpmAgentSession.open({ tcti: tpm.tcti });
    await agent.collect();
    const dir = agent.directory;
    await agent.close();
    await expect(stat(dir)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(agent.collect()).rejects.toMatchObject({ code: 'tpm-driver/closed' });
  });

  it('reports a TPM that is not there as a tool failure', async () => {
    const port = await freePort();
    const err = await withTpmAgentSession({ tcti: `swtpm:host=127.0.0.1,port=${port}`, timeoutMs: 10_000 }, (a) => a.collect()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TpmDriverError);
    expect(['tpm-driver/no-ek-cert', 'tpm-driver/tool-failed']).toContain((err as TpmDriverError).code);
  });

  it('uses a clock for the challenge lifetime', async () => {
    const clock = new ManualClock(Date.now());
    await withTpmAgentSession({ tcti: tpm.tcti }, async (agent) => {
      const evidence = await agent.collect();
      const p = attestTpmNode(verifierOf(), { ...evidence, ekIntermediates: [tpm.issuer] }, async (c) => {
        const r = await agent.respond(c);
        clock.advance(61_000);
        return r;
      }, clock);
      await expect(p).rejects.toMatchObject({ code: 'tpm/challenge-expired' });
    });
  });
});
