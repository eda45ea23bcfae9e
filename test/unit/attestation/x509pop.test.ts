/**
 * x509pop node attestation (SPIRE's x509pop, reference spiffe.md §3 "Node attestation": chain to the
 * configured CA bundle with at most 4 intermediates, leaf needs digitalSignature, 32-byte nonces, signature
 * over SHA-256(challengeNonce || responseNonce) with ECDSA or RSA-PSS/SHA-256). Certificates are made by
 * openssl in a temporary directory; path rules cite RFC 5280 6.1.
 */
import { createHash, createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  createX509PopAttestor,
  createX509PopTrust,
  decodeX509PopResponse,
  encodeX509PopResponse,
  NodeAttestationError,
  x509popChallenge,
  x509popPayload,
  x509popRespond,
  x509popVerify,
  x509popVerifyChain,
  X509PopError,
  X509POP_NONCE_BYTES,
  type NodeAttestorStep,
  type X509PopErrorCode,
  type X509PopTrust,
} from '../../../src/attestation/index.js';
import { certsFromPem } from '../../../src/identity/index.js';
import { openssl, tempDir } from '../../helpers/index.js';

const CNF = `
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[int]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[int_pl0]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[int_crit]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
1.3.6.1.4.1.55555.2 = critical,ASN1:NULL
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[leaf_no_ds]
basicConstraints = critical,CA:FALSE
keyUsage = critical,keyAgreement
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[leaf_no_ku]
basicConstraints = critical,CA:FALSE
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[leaf_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,digitalSignature,keyCertSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[leaf_kcs]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyCertSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[leaf_crit]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
1.3.6.1.4.1.55555.1 = critical,ASN1:NULL
`;

interface Issued {
  der: Buffer;
  key: KeyObject;
  fingerprintOpenssl: string;
}

let dir = '';
let serial = 1;
const KEYS = { ec: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], p384: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'], rsa: ['-newkey', 'rsa:2048'] };

async function selfSigned(name: string, subj: string): Promise<Issued> {
  const crt = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  await openssl(['req', '-x509', '-config', join(dir, 'cnf'), '-extensions', 'ca', ...KEYS.ec, '-nodes', '-keyout', key, '-out', crt, '-days', '3650', '-subj', subj]);
  return load(name);
}

async function issue(name: string, subj: string, issuer: string, ext: string, opts: { days?: number; key?: keyof typeof KEYS } = {}): Promise<Issued> {
  const csr = join(dir, `${name}.csr`);
  await openssl(['req', '-new', '-config', join(dir, 'cnf'), ...KEYS[opts.key ?? 'ec'], '-nodes', '-keyout', join(dir, `${name}.key`), '-out', csr, '-subj', subj]);
  await openssl([
    'x509', '-req', '-in', csr, '-CA', join(dir, `${issuer}.pem`), '-CAkey', join(dir, `${issuer}.key`), '-set_serial', String(serial++),
    '-days', String(opts.days ?? 30), '-extfile', join(dir, 'cnf'), '-extensions', ext, '-out', join(dir, `${name}.pem`),
  ]);
  return load(name);
}

async function load(name: string): Promise<Issued> {
  const pem = await readFile(join(dir, `${name}.pem`), 'utf8');
  const der = certsFromPem(pem)[0]!;
  const key = createPrivateKey(await readFile(join(dir, `${name}.key`), 'utf8'));
  // Independent fingerprint: `openssl x509 -fingerprint -sha256` prints "sha256 Fingerprint=AB:CD:...".
  const fp = (await openssl(['x509', '-in', join(dir, `${name}.pem`), '-noout', '-fingerprint', '-sha256'])).stdout;
  return { der, key, fingerprintOpenssl: fp.slice(fp.indexOf('=') + 1).trim().replaceAll(':', '').toLowerCase() };
}

let root: Issued;
let int: Issued;
let leaf: Issued;
let trust: X509PopTrust;
const C: Record<string, Issued> = {};
let AT = 0;

beforeAll(async () => {
  dir = await tempDir('edgeward-x509pop-');
  await writeFile(join(dir, 'cnf'), CNF);
  root = await selfSigned('root', '/CN=Edgeward Test Node CA');
  int = await issue('int', '/CN=Edgeward Test Intermediate', 'root', 'int', { days: 3650 });
  leaf = await issue('leaf', '/CN=edge-1', 'int', 'leaf');
  C.leafP384 = await issue('leafP384', '/O=Edgeward/CN=edge-2', 'int', 'leaf', { key: 'p384' });
  C.leafRsa = await issue('leafRsa', '/CN=edge-3', 'int', 'leaf', { key: 'rsa' });
  C.otherRoot = await selfSigned('otherRoot', '/CN=Edgeward Test Node CA'); // same name, different key
  C.otherLeaf = await issue('otherLeaf', '/CN=edge-1', 'otherRoot', 'leaf');
  C.noDs = await issue('noDs', '/CN=edge-1', 'int', 'leaf_no_ds');
  C.noKu = await issue('noKu', '/CN=edge-1', 'int', 'leaf_no_ku');
  C.caLeaf = await issue('caLeaf', '/CN=edge-1', 'int', 'leaf_ca');
  C.crit = await issue('crit', '/CN=edge-1', 'int', 'leaf_crit');
  C.badName = await issue('badName', '/CN=Edge_1', 'int', 'leaf');
  C.noCn = await issue('noCn', '/O=edge-1', 'int', 'leaf');
  C.twoCn = await issue('twoCn', '/CN=edge-1/CN=edge-2', 'int', 'leaf');
  C.intCrit = await issue('intCrit', '/CN=Edgeward Test Intermediate 2', 'root', 'int_crit', { days: 3650 });
  C.underIntCrit = await issue('underIntCrit', '/CN=edge-1', 'intCrit', 'leaf');
  // pathLenConstraint 0 on the first intermediate forbids a second one below it (RFC 5280 4.2.1.9).
  C.pl0 = await issue('pl0', '/CN=PL0', 'root', 'int_pl0', { days: 3650 });
  C.belowPl0 = await issue('belowPl0', '/CN=Below PL0', 'pl0', 'int', { days: 3650 });
  C.leafBelowPl0 = await issue('leafBelowPl0', '/CN=edge-1', 'belowPl0', 'leaf');
  // Four intermediates: the most SPIRE's x509pop accepts.
  for (let i = 1; i <= 4; i++) C[`i${i}`] = await issue(`i${i}`, `/CN=Level ${i}`, i === 1 ? 'root' : `i${i - 1}`, 'int', { days: 3650 });
  C.deepLeaf = await issue('deepLeaf', '/CN=edge-4', 'i4', 'leaf');
  C.short = await issue('short', '/CN=edge-1', 'int', 'leaf', { days: 1 });
  // A certificate "issued" by a leaf that has keyCertSign but is not a CA (RFC 5280 6.1.4 (k)).
  C.kcsLeaf = await issue('kcsLeaf', '/CN=edge-8', 'int', 'leaf_kcs');
  C.byLeaf = await issue('byLeaf', '/CN=edge-9', 'kcsLeaf', 'leaf');
  trust = createX509PopTrust([root.der]);
  AT = Date.now() + 60_000;
});

function expectCode(fn: () => unknown, code: X509PopErrorCode): X509PopError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(X509PopError);
    expect((e as X509PopError).code).toBe(code);
    return e as X509PopError;
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}

/** Full verification of `chain` with a fresh challenge answered by `key`. */
function prove(chain: readonly Buffer[], key: KeyObject, at = AT, t: X509PopTrust = trust) {
  const challenge = x509popChallenge();
  return x509popVerify({ chain, challenge, response: x509popRespond(challenge, key) }, t, at);
}

describe('x509pop verification', () => {
  it('accepts a leaf chaining through an intermediate to the configured CA; name from the CN, fingerprint = SHA-256 of the leaf DER', () => {
    const v = prove([leaf.der, int.der], leaf.key);
    expect(v.nodeName).toBe('edge-1');
    expect(v.fingerprint).toBe(createHash('sha256').update(leaf.der).digest('hex'));
    expect(v.fingerprint).toBe(leaf.fingerprintOpenssl); // cross-checked with openssl
    expect(v.caFingerprint).toBe(root.fingerprintOpenssl);
    expect(v.path.map((c) => c.raw)).toEqual([leaf.der, int.der, root.der]);
  });

  it('accepts P-384 ECDSA and RSA-PSS/SHA-256 proofs (SPIRE: ECDSA or RSA-PSS)', () => {
    expect(prove([C.leafP384!.der, int.der], C.leafP384!.key).nodeName).toBe('edge-2');
    const rsa = prove([C.leafRsa!.der, int.der], C.leafRsa!.key);
    expect(rsa.nodeName).toBe('edge-3');
  });

  it('accepts four intermediates, in any order (SPIRE: at most 4)', () => {
    const ints = [C.i4!.der, C.i3!.der, C.i2!.der, C.i1!.der];
    expect(prove([C.deepLeaf!.der, ...ints], C.deepLeaf!.key).path.length).toBe(6);
    expect(prove([C.deepLeaf!.der, ...ints.reverse()], C.deepLeaf!.key).nodeName).toBe('edge-4');
  });

  it('x509pop/untrusted: a path longer than an intermediate\'s pathLenConstraint (RFC 5280 4.2.1.9, 6.1.4 (m))', () => {
    const e = expectCode(() => prove([C.leafBelowPl0!.der, C.belowPl0!.der, C.pl0!.der], C.leafBelowPl0!.key), 'x509pop/untrusted');
    expect(e.message).toContain('path length');
  });

  it('accepts an intermediate as the configured anchor (RFC 5280 6.1.1 (d): an anchor need not be self-signed)', () => {
    expect(prove([leaf.der], leaf.key, AT, createX509PopTrust([int.der])).nodeName).toBe('edge-1');
  });

  it('x509pop/bad-signature: a signature made with another key', () => {
    const challenge = x509popChallenge();
    const response = x509popRespond(challenge, C.otherLeaf!.key);
    expectCode(() => x509popVerify({ chain: [leaf.der, int.der], challenge, response }, trust, AT), 'x509pop/bad-signature');
  });

  it('x509pop/bad-signature: a response to another challenge (replay) or with another node nonce', () => {
    const c1 = x509popChallenge();
    const r1 = x509popRespond(c1, leaf.key);
    expectCode(() => x509popVerify({ chain: [leaf.der, int.der], challenge: x509popChallenge(), response: r1 }, trust, AT), 'x509pop/bad-signature');
    const otherNonce = { nonce: Buffer.alloc(32, 7), signature: r1.signature };
    expectCode(() => x509popVerify({ chain: [leaf.der, int.der], challenge: c1, response: otherNonce }, trust, AT), 'x509pop/bad-signature');
    const junk = { nonce: r1.nonce, signature: Buffer.from('3000', 'hex') };
    expectCode(() => x509popVerify({ chain: [leaf.der, int.der], challenge: c1, response: junk }, trust, AT), 'x509pop/bad-signature');
  });

  it('x509pop/bad-nonce: nonces of the wrong length (both are 32 bytes)', () => {
    expect(X509POP_NONCE_BYTES).toBe(32);
    expectCode(() => x509popRespond({ nonce: Buffer.alloc(16) }, leaf.key), 'x509pop/bad-nonce');
    const challenge = x509popChallenge();
    const good = x509popRespond(challenge, leaf.key);
    for (const nonce of [Buffer.alloc(31), Buffer.alloc(33), Buffer.alloc(0)]) {
      expectCode(() => x509popVerify({ chain: [leaf.der, int.der], challenge, response: { nonce, signature: good.signature } }, trust, AT), 'x509pop/bad-nonce');
    }
    expectCode(() => x509popVerify({ chain: [leaf.der, int.der], challenge: { nonce: Buffer.alloc(64) }, response: good }, trust, AT), 'x509pop/bad-nonce');
  });

  it('x509pop/untrusted: a chain to a CA that is not configured, even with the same CA name', () => {
    expectCode(() => prove([C.otherLeaf!.der], C.otherLeaf!.key), 'x509pop/untrusted');
    expectCode(() => prove([C.otherLeaf!.der, C.otherRoot!.der], C.otherLeaf!.key), 'x509pop/untrusted');
  });

  it('x509pop/untrusted: a missing intermediate, an issuer that is not a CA (RFC 5280 6.1.4 (k)), an unknown critical extension (6.1.4 (o))', () => {
    expectCode(() => prove([leaf.der], leaf.key), 'x509pop/untrusted');
    const e = expectCode(() => prove([C.byLeaf!.der, C.kcsLeaf!.der, int.der], C.byLeaf!.key), 'x509pop/untrusted');
    expect(e.message).toContain('not a CA');
    expectCode(() => prove([C.crit!.der, int.der], C.crit!.key), 'x509pop/untrusted');
    const e2 = expectCode(() => prove([C.underIntCrit!.der, C.intCrit!.der], C.underIntCrit!.key), 'x509pop/untrusted');
    expect(e2.message).toContain('1.3.6.1.4.1.55555.2');
  });

  it('x509pop/expired after the leaf\'s notAfter; x509pop/not-yet-valid before its notBefore (RFC 5280 6.1.3 (a)(2))', () => {
    const v = x509popVerifyChain([C.short!.der, int.der], trust, AT);
    const e = expectCode(() => prove([C.short!.der, int.der], C.short!.key, v.leaf.notAfter + 1000), 'x509pop/expired');
    expect(e.detail?.['role']).toBe('leaf'); // the CA (10 years) is still valid: it is the leaf that expired
    expectCode(() => prove([leaf.der, int.der], leaf.key, AT - 24 * 3_600_000), 'x509pop/not-yet-valid');
    // The CAs' own validity counts too (as in Go's verifier, which SPIRE uses).
    const e2 = expectCode(() => prove([leaf.der, int.der], leaf.key, AT + 3651 * 24 * 3_600_000), 'x509pop/expired');
    expect(e2.detail?.['role']).not.toBe('leaf');
  });

  it('x509pop/bad-usage: a leaf without digitalSignature, without keyUsage, or that is a CA', () => {
    expectCode(() => prove([C.noDs!.der, int.der], C.noDs!.key), 'x509pop/bad-usage');
    expectCode(() => prove([C.noKu!.der, int.der], C.noKu!.key), 'x509pop/bad-usage');
    expectCode(() => prove([C.caLeaf!.der, int.der], C.caLeaf!.key), 'x509pop/bad-usage');
  });

  it('x509pop/bad-name: a CN that is not a node name, no CN, two CNs', () => {
    const e = expectCode(() => prove([C.badName!.der, int.der], C.badName!.key), 'x509pop/bad-name');
    expect(e.detail?.['cn']).toBe('Edge_1');
    expectCode(() => prove([C.noCn!.der, int.der], C.noCn!.key), 'x509pop/bad-name');
    expectCode(() => prove([C.twoCn!.der, int.der], C.twoCn!.key), 'x509pop/bad-name');
  });

  it('x509pop/malformed: no certificates, too many intermediates (max 4), bytes that are not a certificate', () => {
    expectCode(() => x509popVerifyChain([], trust, AT), 'x509pop/malformed');
    expectCode(() => x509popVerifyChain([leaf.der, int.der, int.der, int.der, int.der, int.der], trust, AT), 'x509pop/malformed');
    expectCode(() => x509popVerifyChain([Buffer.from('3003020101', 'hex')], trust, AT), 'x509pop/malformed');
    expectCode(() => x509popVerifyChain([leaf.der.subarray(0, leaf.der.length - 1)], trust, AT), 'x509pop/malformed');
  });

  it('x509pop/bad-config: an empty bundle or a bundle with a non-CA certificate', () => {
    expectCode(() => createX509PopTrust([]), 'x509pop/bad-config');
    expectCode(() => createX509PopTrust([leaf.der]), 'x509pop/bad-config');
    expectCode(() => createX509PopTrust([Buffer.from('nope')]), 'x509pop/bad-config');
  });

  it('x509pop/unsupported-key: an Ed25519 key cannot answer', () => {
    expectCode(() => x509popRespond(x509popChallenge(), generateKeyPairSync('ed25519').privateKey), 'x509pop/unsupported-key');
  });

  it('response bytes are nonce || signature', () => {
    const r = x509popRespond(x509popChallenge(), leaf.key);
    const bytes = encodeX509PopResponse(r);
    expect(bytes.subarray(0, 32)).toEqual(r.nonce);
    expect(decodeX509PopResponse(bytes)).toEqual(r);
    expectCode(() => decodeX509PopResponse(Buffer.alloc(32)), 'x509pop/malformed');
  });
});

describe('x509pop node attestor', () => {
  const run = (payload: Record<string, unknown>, nodeName: string, key: KeyObject): NodeAttestorStep => {
    const session = createX509PopAttestor(trust).begin(payload, { nodeName, now: AT });
    const first = session.step(undefined, AT);
    if (first.kind !== 'challenge') throw new Error('expected a challenge');
    expect(first.challenge.length).toBe(32);
    return session.step(encodeX509PopResponse(x509popRespond({ nonce: first.challenge }, key)), AT + 1000);
  };

  it('challenge, response, done: re-attestable, fingerprint of the leaf (SPIRE x509pop flow)', () => {
    expect(run(x509popPayload([leaf.der, int.der]), 'edge-1', leaf.key)).toEqual({
      kind: 'done',
      method: 'x509pop',
      nodeName: 'edge-1',
      fingerprint: leaf.fingerprintOpenssl,
      reattestable: true,
    });
  });

  it('refuses before any challenge when the chain is bad or names another node', () => {
    const session = createX509PopAttestor(trust).begin(x509popPayload([leaf.der, int.der]), { nodeName: 'edge-2', now: AT });
    expectCode(() => session.step(undefined, AT), 'x509pop/wrong-node');
    const s2 = createX509PopAttestor(trust).begin(x509popPayload([C.otherLeaf!.der]), { nodeName: 'edge-1', now: AT });
    expectCode(() => s2.step(undefined, AT), 'x509pop/untrusted');
  });

  it('a response from another session does not verify (fresh nonce per session)', () => {
    const plugin = createX509PopAttestor(trust);
    const s1 = plugin.begin(x509popPayload([leaf.der, int.der]), { nodeName: 'edge-1', now: AT });
    const c1 = s1.step(undefined, AT);
    if (c1.kind !== 'challenge') throw new Error('expected a challenge');
    const r1 = encodeX509PopResponse(x509popRespond({ nonce: c1.challenge }, leaf.key));
    const s2 = plugin.begin(x509popPayload([leaf.der, int.der]), { nodeName: 'edge-1', now: AT });
    s2.step(undefined, AT);
    expectCode(() => s2.step(r1, AT), 'x509pop/bad-signature');
    expect(s1.step(r1, AT).kind).toBe('done');
    expect(() => s1.step(r1, AT)).toThrow(NodeAttestationError); // finished
  });

  it('refuses malformed payloads and responses', () => {
    const plugin = createX509PopAttestor(trust);
    const ctx = { nodeName: 'edge-1', now: AT };
    expectCode(() => plugin.begin({}, ctx), 'x509pop/malformed');
    expectCode(() => plugin.begin({ certificates: [] }, ctx), 'x509pop/malformed');
    expectCode(() => plugin.begin({ certificates: ['not base64!'] }, ctx), 'x509pop/malformed');
    expectCode(() => plugin.begin({ certificates: [leaf.der.toString('base64url')] }, ctx), 'x509pop/malformed');
    expectCode(() => plugin.begin({ ...x509popPayload([leaf.der]), extra: true }, ctx), 'x509pop/malformed');
    const s = plugin.begin(x509popPayload([leaf.der, int.der]), ctx);
    s.step(undefined, AT);
    expect(() => s.step(undefined, AT)).toThrow(expect.objectContaining({ code: 'node-attestation/malformed-response' }));
  });
});
