/**
 * Conformance tests for X.509 issuance (src/identity/x509/mint.ts, csr.ts, keys.ts), cross-checked with
 * the real `openssl` binary: every minted root, signing CA, X509-SVID and code-signing certificate is
 * verified by `openssl verify -x509_strict` and its extensions are read back with `openssl x509 -text`.
 *
 * Spec: X509-SVID 2 (one URI SAN), 3 (signing certificates), 4.1 (basic constraints), 4.3 (key usage),
 * 4.4 (extended key usage); RFC 5280 4.1.2.2 (serial), 4.1.2.5 (validity), 4.2.1.x (extensions);
 * RFC 2986 (PKCS#10); conformance checklist items 16-20 (spiffe.md 5).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BACKDATE_MS,
  certToPem,
  CsrError,
  EdgewardError,
  generateP256,
  KeyError,
  MAX_CSR_BYTES,
  MintError,
  mintCodeSigningCert,
  mintRootCa,
  mintSigningCa,
  mintX509Svid,
  mintX509SvidFromCsr,
  OID,
  parseCertificate,
  pkcs8FromPrivateKey,
  signerFromPrivateKey,
  SpiffeId,
  spkiFromPublicKey,
  TrustDomain,
  validateX509Svid,
  verifyCsr,
  X509SvidError,
  type CertIssuer,
  type IssuedCert,
  type Signer,
} from '../../../src/identity/index.js';
import { randomSerial } from '../../../src/identity/x509/builder.js';

const SECOND = 1000;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** Fixed issuance time (whole second); openssl checks at this time with -attime. */
const T0 = Date.UTC(2030, 0, 1, 0, 0, 0);
const td = TrustDomain.parse('example.org');
const otherTd = TrustDomain.parse('other.test');
const WORKLOAD = SpiffeId.parse('spiffe://example.org/ns/prod/sa/web');

// ------------------------------------------------------------------ openssl helpers

let dir = '';
let seq = 0;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'edgeward-x509-mint-'));
});
afterAll(() => {
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

/** Write `data` to a fresh file in the temp dir and return its path. */
function put(name: string, data: string | Buffer): string {
  const p = join(dir, `${++seq}-${name}`);
  writeFileSync(p, data);
  return p;
}
function ossl(args: string[]): string {
  return execFileSync('openssl', args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
function osslBytes(args: string[]): Buffer {
  return execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
}
function pemFile(der: Buffer): string {
  return put('cert.pem', certToPem(der));
}
function text(der: Buffer): string {
  return ossl(['x509', '-inform', 'DER', '-in', put('cert.der', der), '-noout', '-text']);
}

interface ExtText {
  critical: boolean;
  value: string;
}
/** One extension as openssl prints it ("X509v3 <name>: critical" then the value line). */
function ext(t: string, name: string): ExtText | undefined {
  const m = new RegExp(`^\\s*X509v3 ${name}:( critical)?\\s*\\n\\s*(.*)$`, 'm').exec(t);
  return m === null ? undefined : { critical: m[1] !== undefined, value: m[2]!.trim() };
}
function mustExt(t: string, name: string): ExtText {
  const e = ext(t, name);
  expect(e, `extension ${name} in\n${t}`).toBeDefined();
  return e!;
}
function field(t: string, name: 'Issuer' | 'Subject'): string {
  const m = new RegExp(`^\\s*${name}:(.*)$`, 'm').exec(t);
  expect(m).not.toBeNull();
  return m![1]!.trim();
}

interface VerifyOpts {
  roots: Buffer[];
  untrusted?: Buffer[];
  purpose?: 'sslclient' | 'sslserver';
  at?: number;
  extra?: string[];
}
/** `openssl verify -x509_strict -attime ... -CAfile roots [-untrusted ...] [-purpose ...] cert`. */
function opensslVerify(cert: Buffer, o: VerifyOpts): { ok: boolean; out: string } {
  const args = ['verify', '-x509_strict', '-attime', String(Math.floor((o.at ?? T0 + 60 * SECOND) / 1000))];
  args.push('-CAfile', put('roots.pem', o.roots.map(certToPem).join('')));
  if (o.untrusted !== undefined && o.untrusted.length > 0) args.push('-untrusted', put('untrusted.pem', o.untrusted.map(certToPem).join('')));
  if (o.purpose !== undefined) args.push('-purpose', o.purpose);
  args.push(...(o.extra ?? []), pemFile(cert));
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  const out = `${r.stdout}${r.stderr}`;
  return { ok: r.status === 0 && /: OK\s*$/.test(r.stdout), out };
}

/** Require an EdgewardError subclass and return its code. */
function codeOf(fn: () => unknown, type: abstract new (...a: never[]) => EdgewardError): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(type);
    return (e as EdgewardError).code;
  }
  throw new Error('expected an error, nothing was thrown');
}

// ------------------------------------------------------------------ a PKI minted once per file

const newSigner = (): Signer => signerFromPrivateKey(generateP256().privateKey);

interface Pki {
  rootSigner: Signer;
  root: IssuedCert;
  rootIssuer: CertIssuer;
  caSigner: Signer;
  ca: IssuedCert;
  caIssuer: CertIssuer;
  workloadKey: KeyObject;
  svid: IssuedCert;
  codeSigning: IssuedCert;
}
function makePki(trustDomain: TrustDomain): Pki {
  const rootSigner = newSigner();
  const root = mintRootCa({ trustDomain, signer: rootSigner, now: T0, ttlMs: 30 * DAY });
  const rootIssuer = { cert: root.parsed, signer: rootSigner };
  const caSigner = newSigner();
  const ca = mintSigningCa({ trustDomain, spki: caSigner.spki, issuer: rootIssuer, now: T0, ttlMs: 7 * DAY });
  const caIssuer = { cert: ca.parsed, signer: caSigner };
  const wk = generateP256();
  const svid = mintX509Svid({
    spiffeId: SpiffeId.fromSegments(trustDomain, 'ns', 'prod', 'sa', 'web'),
    spki: spkiFromPublicKey(wk.publicKey),
    issuer: caIssuer,
    now: T0,
    ttlMs: HOUR,
    dnsNames: ['web.example.org', 'web'],
  });
  const codeSigning = mintCodeSigningCert({
    spiffeId: SpiffeId.fromSegments(trustDomain, 'release', 'signer'),
    spki: spkiFromPublicKey(generateP256().publicKey),
    issuer: caIssuer,
    now: T0,
    ttlMs: 10 * 60 * SECOND,
  });
  return { rootSigner, root, rootIssuer, caSigner, ca, caIssuer, workloadKey: wk.privateKey, svid, codeSigning };
}

let pki: Pki;
let other: Pki;
beforeAll(() => {
  pki = makePki(td);
  other = makePki(otherTd);
});

const bundleOf = (...certs: Buffer[]) => ({
  x509AuthoritiesFor: (t: TrustDomain) => (t.equals(td) ? certs : undefined),
});

// ------------------------------------------------------------------ root CA

describe('root CA (X509-SVID 3, 4.1, 4.3; checklist 20)', () => {
  it('is self-signed: openssl verifies it against itself, checking its self-signature', () => {
    const r = opensslVerify(pki.root.der, { roots: [pki.root.der], extra: ['-check_ss_sig'] });
    expect(r.out).toMatch(/: OK/);
    expect(r.ok).toBe(true);
    const t = text(pki.root.der);
    expect(field(t, 'Issuer')).toBe(field(t, 'Subject'));
    expect(pki.root.parsed.issuerRaw.equals(pki.root.parsed.subjectRaw)).toBe(true);
  });
  it('another root does not verify it (the openssl check can fail)', () => {
    expect(opensslVerify(pki.root.der, { roots: [other.root.der] }).ok).toBe(false);
  });
  it('has critical CA:TRUE, critical keyCertSign, one URI SAN = the trust domain ID, SKI = AKI', () => {
    const t = text(pki.root.der);
    expect(mustExt(t, 'Basic Constraints')).toEqual({ critical: true, value: 'CA:TRUE' });
    const ku = mustExt(t, 'Key Usage');
    expect(ku.critical).toBe(true);
    expect(ku.value).toContain('Certificate Sign');
    expect(ku.value).not.toContain('Digital Signature');
    expect(mustExt(t, 'Subject Alternative Name').value).toBe('URI:spiffe://example.org');
    const ski = mustExt(t, 'Subject Key Identifier').value;
    expect(ski).toMatch(/^[0-9A-F]{2}(:[0-9A-F]{2}){19}$/);
    expect(mustExt(t, 'Authority Key Identifier').value.replace(/^keyid:/, '')).toBe(ski);
    expect(ext(t, 'Extended Key Usage')).toBeUndefined();
  });
  it('lives exactly its TTL from NotBefore = now - 10 s (RFC 5280 4.1.2.5)', () => {
    expect(pki.root.parsed.notBefore).toBe(T0 - BACKDATE_MS);
    expect(pki.root.parsed.notAfter).toBe(T0 + 30 * DAY);
  });
});

// ------------------------------------------------------------------ signing CA

describe('signing CA (X509-SVID 3, 4.1, 4.3; checklist 20)', () => {
  it('openssl verifies it against the root', () => {
    const r = opensslVerify(pki.ca.der, { roots: [pki.root.der] });
    expect(r.out).toMatch(/: OK/);
    expect(r.ok).toBe(true);
    expect(opensslVerify(pki.ca.der, { roots: [other.root.der] }).ok).toBe(false);
  });
  it('has critical CA:TRUE pathlen:0, critical keyCertSign, URI SAN without path, AKI = root SKI', () => {
    const t = text(pki.ca.der);
    expect(mustExt(t, 'Basic Constraints')).toEqual({ critical: true, value: 'CA:TRUE, pathlen:0' });
    const ku = mustExt(t, 'Key Usage');
    expect(ku.critical).toBe(true);
    expect(ku.value).toContain('Certificate Sign');
    expect(mustExt(t, 'Subject Alternative Name').value).toBe('URI:spiffe://example.org');
    const rootSki = mustExt(text(pki.root.der), 'Subject Key Identifier').value;
    expect(mustExt(t, 'Authority Key Identifier').value.replace(/^keyid:/, '')).toBe(rootSki);
    expect(mustExt(t, 'Subject Key Identifier').value).not.toBe(rootSki);
    expect(field(t, 'Issuer')).toBe(field(text(pki.root.der), 'Subject'));
  });
  it('successive CAs of one trust domain have distinct subjects', () => {
    const again = mintSigningCa({ trustDomain: td, spki: newSigner().spki, issuer: pki.rootIssuer, now: T0, ttlMs: DAY });
    expect(again.parsed.subjectRaw.equals(pki.ca.parsed.subjectRaw)).toBe(false);
  });
  it('never outlives the root (NotAfter clamped to the issuer NotAfter)', () => {
    const late = T0 + 29 * DAY;
    const ca = mintSigningCa({ trustDomain: td, spki: newSigner().spki, issuer: pki.rootIssuer, now: late, ttlMs: 7 * DAY });
    expect(ca.parsed.notAfter).toBe(pki.root.parsed.notAfter);
    expect(opensslVerify(ca.der, { roots: [pki.root.der], at: late + HOUR }).ok).toBe(true);
  });
});

// ------------------------------------------------------------------ leaf X509-SVID

describe('leaf X509-SVID (X509-SVID 2, 4.1, 4.3, 4.4; checklist 16-19)', () => {
  it('openssl verifies the chain root <- CA <- SVID', () => {
    const r = opensslVerify(pki.svid.der, { roots: [pki.root.der], untrusted: [pki.ca.der] });
    expect(r.out).toMatch(/: OK/);
    expect(r.ok).toBe(true);
  });
  it('openssl accepts it for TLS client and TLS server use (EKU clientAuth + serverAuth)', () => {
    for (const purpose of ['sslclient', 'sslserver'] as const) {
      const r = opensslVerify(pki.svid.der, { roots: [pki.root.der], untrusted: [pki.ca.der], purpose });
      expect(r.out).toMatch(/: OK/);
    }
  });
  it('openssl refuses it without the intermediate, against another trust domain, and before/after its lifetime', () => {
    expect(opensslVerify(pki.svid.der, { roots: [pki.root.der] }).ok).toBe(false);
    expect(opensslVerify(pki.svid.der, { roots: [other.root.der], untrusted: [pki.ca.der] }).ok).toBe(false);
    expect(opensslVerify(pki.svid.der, { roots: [pki.root.der], untrusted: [pki.ca.der], at: T0 + 2 * HOUR }).ok).toBe(false);
    expect(opensslVerify(pki.svid.der, { roots: [pki.root.der], untrusted: [pki.ca.der], at: T0 - HOUR }).ok).toBe(false);
  });
  it('has critical CA:FALSE (X509-SVID 4.1)', () => {
    expect(mustExt(text(pki.svid.der), 'Basic Constraints')).toEqual({ critical: true, value: 'CA:FALSE' });
  });
  it('has critical keyUsage with digitalSignature and without keyCertSign/cRLSign (X509-SVID 4.3)', () => {
    const ku = mustExt(text(pki.svid.der), 'Key Usage');
    expect(ku.critical).toBe(true);
    expect(ku.value).toMatch(/^Digital Signature\b/);
    expect(ku.value).not.toContain('Certificate Sign');
    expect(ku.value).not.toContain('CRL Sign');
  });
  it('has EKU serverAuth + clientAuth and nothing else (X509-SVID 4.4)', () => {
    expect(mustExt(text(pki.svid.der), 'Extended Key Usage').value).toBe('TLS Web Server Authentication, TLS Web Client Authentication');
  });
  it('has exactly one URI SAN = the SPIFFE ID, plus the requested DNS SANs (X509-SVID 2; checklist 16, 19)', () => {
    const san = mustExt(text(pki.svid.der), 'Subject Alternative Name').value;
    expect(san.match(/URI:/g)).toHaveLength(1);
    expect(san).toBe('URI:spiffe://example.org/ns/prod/sa/web, DNS:web.example.org, DNS:web');
    expect(pki.svid.parsed.uris).toEqual(['spiffe://example.org/ns/prod/sa/web']);
    expect(pki.svid.parsed.dnsNames).toEqual(['web.example.org', 'web']);
  });
  it('has SKI and an AKI equal to the signing CA SKI (RFC 5280 4.2.1.1, 4.2.1.2)', () => {
    const t = text(pki.svid.der);
    const caSki = mustExt(text(pki.ca.der), 'Subject Key Identifier').value;
    expect(mustExt(t, 'Subject Key Identifier').value).toMatch(/^[0-9A-F]{2}(:[0-9A-F]{2}){19}$/);
    expect(mustExt(t, 'Authority Key Identifier').value.replace(/^keyid:/, '')).toBe(caSki);
  });
  it('has a non-empty subject with CN = first DNS name (SPIRE template) and an ECDSA P-256 signature', () => {
    const t = text(pki.svid.der);
    expect(field(t, 'Subject')).toMatch(/CN = web\.example\.org/);
    expect(t).toMatch(/Signature Algorithm: ecdsa-with-SHA256/);
    expect(t).toMatch(/NIST CURVE: P-256/);
    expect(t).toMatch(/Version: 3 \(0x2\)/);
  });
  it('NotBefore is 10 s back and NotAfter is now + TTL (SPIRE template; RFC 5280 4.1.2.5)', () => {
    expect(BACKDATE_MS).toBe(10 * SECOND);
    expect(pki.svid.parsed.notBefore).toBe(T0 - 10 * SECOND);
    expect(pki.svid.parsed.notAfter).toBe(T0 + HOUR);
    const dates = ossl(['x509', '-in', pemFile(pki.svid.der), '-noout', '-dates', '-dateopt', 'iso_8601']);
    expect(dates).toContain('notBefore=2029-12-31 23:59:50Z');
    expect(dates).toContain('notAfter=2030-01-01 01:00:00Z');
  });
  it('our own validator agrees with openssl', () => {
    const v = validateX509Svid([pki.svid.der, pki.ca.der], bundleOf(pki.root.der), T0);
    expect(v.spiffeId.toString()).toBe('spiffe://example.org/ns/prod/sa/web');
  });
  it('the workload key signs data the leaf public key verifies', () => {
    const data = Buffer.from('proof of possession');
    const sig = cryptoSign('sha256', data, pki.workloadKey);
    expect(cryptoVerify('sha256', data, pki.svid.parsed.publicKey(), sig)).toBe(true);
  });
  it('an SVID without DNS names has only the URI SAN and a subject without CN', () => {
    const s = mintX509Svid({ spiffeId: WORKLOAD, spki: spkiFromPublicKey(generateP256().publicKey), issuer: pki.caIssuer, now: T0, ttlMs: HOUR });
    const t = text(s.der);
    expect(mustExt(t, 'Subject Alternative Name').value).toBe('URI:spiffe://example.org/ns/prod/sa/web');
    expect(field(t, 'Subject')).toBe('O = Edgeward');
    expect(opensslVerify(s.der, { roots: [pki.root.der], untrusted: [pki.ca.der], purpose: 'sslserver' }).ok).toBe(true);
  });
  it('an SVID issued directly by the root (no intermediate) also verifies', () => {
    const s = mintX509Svid({ spiffeId: WORKLOAD, spki: spkiFromPublicKey(generateP256().publicKey), issuer: pki.rootIssuer, now: T0, ttlMs: HOUR });
    expect(opensslVerify(s.der, { roots: [pki.root.der], purpose: 'sslclient' }).ok).toBe(true);
  });
});

// ------------------------------------------------------------------ code signing

describe('code-signing certificate (RFC 5280 4.2.1.12; not an X509-SVID)', () => {
  it('openssl verifies it as a certificate', () => {
    const r = opensslVerify(pki.codeSigning.der, { roots: [pki.root.der], untrusted: [pki.ca.der] });
    expect(r.out).toMatch(/: OK/);
  });
  it('openssl refuses it for TLS client or server use', () => {
    for (const purpose of ['sslclient', 'sslserver'] as const) {
      const r = opensslVerify(pki.codeSigning.der, { roots: [pki.root.der], untrusted: [pki.ca.der], purpose });
      expect(r.ok).toBe(false);
      expect(r.out).toMatch(/unsuitable certificate purpose/);
    }
  });
  it('has critical EKU codeSigning only, critical digitalSignature only, CA:FALSE, empty subject with critical SAN', () => {
    const t = text(pki.codeSigning.der);
    expect(mustExt(t, 'Extended Key Usage')).toEqual({ critical: true, value: 'Code Signing' });
    expect(mustExt(t, 'Key Usage')).toEqual({ critical: true, value: 'Digital Signature' });
    expect(mustExt(t, 'Basic Constraints')).toEqual({ critical: true, value: 'CA:FALSE' });
    expect(field(t, 'Subject')).toBe('');
    // RFC 5280 4.2.1.6: empty subject => SAN MUST be critical.
    expect(mustExt(t, 'Subject Alternative Name')).toEqual({ critical: true, value: 'URI:spiffe://example.org/release/signer' });
    expect(mustExt(t, 'Authority Key Identifier').value.replace(/^keyid:/, '')).toBe(mustExt(text(pki.ca.der), 'Subject Key Identifier').value);
  });
  it('is rejected by the X509-SVID validator (X509-SVID 4.4: no serverAuth/clientAuth)', () => {
    const code = codeOf(() => validateX509Svid([pki.codeSigning.der, pki.ca.der], bundleOf(pki.root.der), T0), X509SvidError);
    expect(code).toBe('x509-svid/not-an-svid');
  });
  it('refuses a signer identity without a path', () => {
    const code = codeOf(
      () => mintCodeSigningCert({ spiffeId: SpiffeId.parse('spiffe://example.org'), spki: pki.caSigner.spki, issuer: pki.caIssuer, now: T0, ttlMs: HOUR }),
      MintError,
    );
    expect(code).toBe('mint/bad-request');
  });
});

// ------------------------------------------------------------------ CSR issuance

const EVIL_REQ_CNF = `
[req]
distinguished_name = dn
prompt = no
req_extensions = ext
[dn]
CN = evil-admin
O = Evil Corp
[ext]
basicConstraints = critical,CA:TRUE,pathlen:5
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
extendedKeyUsage = codeSigning,OCSPSigning,serverAuth,clientAuth
subjectAltName = URI:spiffe://example.org/admin,URI:spiffe://other.test/root,DNS:evil.example.com
# privateKeyUsagePeriod: the nearest thing PKCS#10 has to asking for a validity (10 years)
2.5.29.16 = ASN1:SEQUENCE:pkup
[pkup]
notBefore = IMP:0,GENTIME:20300101000000Z
notAfter = IMP:1,GENTIME:20400101000000Z
`;

/** `openssl req -new` with a fresh key; returns the CSR DER and the key's SPKI DER. */
function opensslCsr(newkey: string[], extraArgs: string[] = ['-subj', '/CN=workload']): { csr: Buffer; spki: Buffer } {
  const keyPath = join(dir, `${++seq}-csr-key.pem`);
  const csr = osslBytes(['req', '-new', ...newkey, '-nodes', '-keyout', keyPath, ...extraArgs, '-outform', 'DER']);
  const spki = osslBytes(['pkey', '-in', keyPath, '-pubout', '-outform', 'DER']);
  return { csr, spki };
}
const EC_P256 = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];

describe('issuing from a PKCS#10 CSR: the issuer decides everything (RFC 2986; X509-SVID 4.x)', () => {
  let evil: { csr: Buffer; spki: Buffer };
  let issued: IssuedCert;
  let t: string;
  beforeAll(() => {
    evil = opensslCsr(EC_P256, ['-config', put('evil.cnf', EVIL_REQ_CNF)]);
    // Sanity: the CSR really asks for all of it.
    const req = ossl(['req', '-inform', 'DER', '-in', put('evil.csr', evil.csr), '-noout', '-text']);
    expect(req).toContain('CA:TRUE, pathlen:5');
    expect(req).toContain('Certificate Sign');
    expect(req).toContain('Code Signing, OCSP Signing');
    expect(req).toContain('URI:spiffe://example.org/admin');
    expect(req).toContain('Private Key Usage Period');
    issued = mintX509SvidFromCsr({ spiffeId: WORKLOAD, csr: evil.csr, issuer: pki.caIssuer, now: T0, ttlMs: HOUR });
    t = text(issued.der);
  });

  it('the issued certificate verifies with openssl as a TLS client and server certificate', () => {
    expect(opensslVerify(issued.der, { roots: [pki.root.der], untrusted: [pki.ca.der], purpose: 'sslclient' }).ok).toBe(true);
    expect(opensslVerify(issued.der, { roots: [pki.root.der], untrusted: [pki.ca.der], purpose: 'sslserver' }).ok).toBe(true);
  });
  it('carries the CSR public key and nothing else from the CSR', () => {
    expect(issued.parsed.spki.equals(evil.spki)).toBe(true);
    expect(verifyCsr(evil.csr).spki.equals(evil.spki)).toBe(true);
  });
  it('basicConstraints is CA:FALSE, not the requested CA:TRUE pathlen:5 (X509-SVID 4.1)', () => {
    expect(mustExt(t, 'Basic Constraints')).toEqual({ critical: true, value: 'CA:FALSE' });
    expect(t).not.toContain('pathlen');
  });
  it('keyUsage has no keyCertSign/cRLSign although requested (X509-SVID 4.3)', () => {
    const ku = mustExt(t, 'Key Usage');
    expect(ku.value).not.toContain('Certificate Sign');
    expect(ku.value).not.toContain('CRL Sign');
    expect(ku.value).toContain('Digital Signature');
  });
  it('EKU is exactly serverAuth + clientAuth: no codeSigning, no OCSPSigning (X509-SVID 4.4)', () => {
    expect(mustExt(t, 'Extended Key Usage').value).toBe('TLS Web Server Authentication, TLS Web Client Authentication');
    expect(t).not.toContain('Code Signing');
    expect(t).not.toContain('OCSP Signing');
  });
  it('the only URI SAN is the ID the issuer chose, not the requested ones; no requested DNS SAN (X509-SVID 2)', () => {
    expect(mustExt(t, 'Subject Alternative Name').value).toBe('URI:spiffe://example.org/ns/prod/sa/web');
    expect(t).not.toContain('admin');
    expect(t).not.toContain('other.test');
    expect(t).not.toContain('evil.example.com');
  });
  it('the subject is the issuer template, not the requested CN/O', () => {
    expect(field(t, 'Subject')).toBe('O = Edgeward');
    expect(t).not.toContain('evil-admin');
    expect(t).not.toContain('Evil Corp');
  });
  it('validity is the issuer TTL (1 h), not the requested 10 years; no Private Key Usage Period copied', () => {
    expect(issued.parsed.notAfter - issued.parsed.notBefore).toBe(HOUR + BACKDATE_MS);
    expect(issued.parsed.notAfter).toBe(T0 + HOUR);
    expect(t).not.toContain('Private Key Usage Period');
    expect([...issued.parsed.extensions.keys()].sort()).toEqual(
      [OID.basicConstraints, OID.keyUsage, OID.extKeyUsage, OID.subjectAltName, OID.subjectKeyIdentifier, OID.authorityKeyIdentifier].sort(),
    );
  });
  it('an RSA-2048 CSR is accepted and the SVID verifies with openssl', () => {
    const rsa = opensslCsr(['-newkey', 'rsa:2048']);
    const s = mintX509SvidFromCsr({ spiffeId: WORKLOAD, csr: rsa.csr, issuer: pki.caIssuer, now: T0, ttlMs: HOUR });
    expect(s.parsed.spki.equals(rsa.spki)).toBe(true);
    expect(s.parsed.keyAlgorithm).toBe('rsa');
    expect(opensslVerify(s.der, { roots: [pki.root.der], untrusted: [pki.ca.der], purpose: 'sslclient' }).ok).toBe(true);
  });
});

describe('CSR rejections (RFC 2986; proof of possession)', () => {
  let good: Buffer;
  beforeAll(() => {
    good = opensslCsr(EC_P256).csr;
  });
  const both = (csr: unknown): string[] => [
    codeOf(() => verifyCsr(csr as Buffer), CsrError),
    codeOf(() => mintX509SvidFromCsr({ spiffeId: WORKLOAD, csr: csr as Buffer, issuer: pki.caIssuer, now: T0, ttlMs: HOUR }), CsrError),
  ];

  it('the unmodified CSR is accepted (so the rejections below are caused by the damage)', () => {
    expect(() => verifyCsr(good)).not.toThrow();
  });
  it('a flipped byte in the signature -> csr/bad-signature', () => {
    const bad = Buffer.from(good);
    bad[bad.length - 1]! ^= 0x01;
    expect(both(bad)).toEqual(['csr/bad-signature', 'csr/bad-signature']);
  });
  it('a changed subject under the original signature -> csr/bad-signature', () => {
    const bad = Buffer.from(good);
    const at = bad.indexOf(Buffer.from('workload'));
    expect(at).toBeGreaterThan(0);
    bad[at] = 'W'.charCodeAt(0);
    expect(both(bad)).toEqual(['csr/bad-signature', 'csr/bad-signature']);
  });
  it('a CSR whose key is replaced by another key -> csr/bad-signature', () => {
    const mine = opensslCsr(EC_P256);
    const bad = Buffer.from(good);
    const ownKey = verifyCsr(good).spki;
    const at = bad.indexOf(ownKey);
    mine.spki.copy(bad, at);
    expect(both(bad)).toEqual(['csr/bad-signature', 'csr/bad-signature']);
  });
  it('an RSA-1024 key is refused -> csr/unsupported-key', () => {
    const weak = opensslCsr(['-newkey', 'rsa:1024']).csr;
    expect(ossl(['req', '-inform', 'DER', '-in', put('weak.csr', weak), '-noout', '-verify'])).toBeDefined(); // openssl: signature is fine
    expect(both(weak)).toEqual(['csr/unsupported-key', 'csr/unsupported-key']);
  });
  it('a P-256 key of the wrong (secp256k1) curve is refused -> csr/unsupported-key', () => {
    const k1 = opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:secp256k1']).csr;
    expect(both(k1)).toEqual(['csr/unsupported-key', 'csr/unsupported-key']);
  });
  it('garbage bytes -> csr/malformed', () => {
    expect(both(Buffer.from('this is not a certification request'))).toEqual(['csr/malformed', 'csr/malformed']);
    expect(both(Buffer.alloc(0))).toEqual(['csr/malformed', 'csr/malformed']);
    expect(both(Buffer.from([0x30, 0x03, 0x02, 0x01, 0x00]))).toEqual(['csr/malformed', 'csr/malformed']);
  });
  it('a truncated CSR -> csr/malformed (at every 16th cut point)', () => {
    for (let cut = 1; cut < good.length; cut += 16) {
      expect(codeOf(() => verifyCsr(good.subarray(0, cut)), CsrError), `cut at ${cut}`).toBe('csr/malformed');
    }
  });
  it('trailing bytes after the CSR -> csr/malformed', () => {
    expect(both(Buffer.concat([good, Buffer.from([0x00])]))).toEqual(['csr/malformed', 'csr/malformed']);
  });
  it('a PEM CSR passed as DER -> csr/malformed', () => {
    const pem = ossl(['req', '-inform', 'DER', '-in', put('g.csr', good), '-outform', 'PEM']);
    expect(both(Buffer.from(pem))).toEqual(['csr/malformed', 'csr/malformed']);
  });
  it('an oversized CSR (> MAX_CSR_BYTES) -> csr/too-large, before any parsing', () => {
    expect(MAX_CSR_BYTES).toBe(8 * 1024);
    const big = Buffer.concat([good, Buffer.alloc(MAX_CSR_BYTES + 1 - good.length, 0x41)]);
    expect(big.length).toBe(MAX_CSR_BYTES + 1);
    expect(both(big)).toEqual(['csr/too-large', 'csr/too-large']);
  });
  it('a non-Buffer input -> csr/malformed', () => {
    expect(both(good.toString('base64'))).toEqual(['csr/malformed', 'csr/malformed']);
  });
  it('the identity rules still apply to CSR issuance (other trust domain -> mint/bad-request)', () => {
    const code = codeOf(
      () => mintX509SvidFromCsr({ spiffeId: SpiffeId.parse('spiffe://other.test/w'), csr: good, issuer: pki.caIssuer, now: T0, ttlMs: HOUR }),
      MintError,
    );
    expect(code).toBe('mint/bad-request');
  });
});

// ------------------------------------------------------------------ lifetimes

describe('lifetimes (RFC 5280 4.1.2.5; checklist 19)', () => {
  it('an SVID never outlives its issuer: a 10 h SVID from a CA with 1 h left ends with the CA', () => {
    const ca = mintSigningCa({ trustDomain: td, spki: pki.caSigner.spki, issuer: pki.rootIssuer, now: T0, ttlMs: 2 * HOUR });
    const issuer = { cert: ca.parsed, signer: pki.caSigner };
    const now = T0 + HOUR;
    const s = mintX509Svid({ spiffeId: WORKLOAD, spki: spkiFromPublicKey(generateP256().publicKey), issuer, now, ttlMs: 10 * HOUR });
    expect(s.parsed.notAfter).toBe(ca.parsed.notAfter);
    expect(s.parsed.notAfter).toBe(T0 + 2 * HOUR);
    expect(opensslVerify(s.der, { roots: [pki.root.der], untrusted: [ca.der], at: T0 + 2 * HOUR - 5 * SECOND }).ok).toBe(true);
    expect(() => validateX509Svid([s.der, ca.der], bundleOf(pki.root.der), now)).not.toThrow();
  });
  it('NotBefore is never before the issuer NotBefore', () => {
    const s = mintX509Svid({ spiffeId: WORKLOAD, spki: spkiFromPublicKey(generateP256().publicKey), issuer: pki.caIssuer, now: T0 - 5 * SECOND, ttlMs: HOUR });
    expect(s.parsed.notBefore).toBe(pki.ca.parsed.notBefore);
  });
  it('NotBefore is 10 s back at any whole-second time', () => {
    for (const now of [T0 + 1000, T0 + 37 * SECOND, T0 + 5 * HOUR]) {
      const s = mintX509Svid({ spiffeId: WORKLOAD, spki: pki.caSigner.spki, issuer: pki.caIssuer, now, ttlMs: HOUR });
      expect(s.parsed.notBefore).toBe(now - 10 * SECOND);
      expect(s.parsed.notAfter).toBe(now + HOUR);
    }
  });
  it('an expired issuer refuses to issue -> mint/issuer-expired', () => {
    const end = pki.ca.parsed.notAfter;
    const req = (now: number) => () => mintX509Svid({ spiffeId: WORKLOAD, spki: pki.caSigner.spki, issuer: pki.caIssuer, now, ttlMs: HOUR });
    expect(codeOf(req(end), MintError)).toBe('mint/issuer-expired');
    expect(codeOf(req(end + DAY), MintError)).toBe('mint/issuer-expired');
    expect(() => req(end - 2 * SECOND)()).not.toThrow();
  });
  it.each([0, 999, -HOUR, Number.NaN, Number.POSITIVE_INFINITY])('a TTL of %s -> mint/bad-request', (ttlMs) => {
    const code = codeOf(() => mintX509Svid({ spiffeId: WORKLOAD, spki: pki.caSigner.spki, issuer: pki.caIssuer, now: T0, ttlMs }), MintError);
    expect(code).toBe('mint/bad-request');
  });
});

// ------------------------------------------------------------------ serial numbers

describe('serial numbers (RFC 5280 4.1.2.2: positive, <= 20 octets, unpredictable)', () => {
  it('many minted SVIDs have distinct, positive serials of 16 octets', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const s = mintX509Svid({ spiffeId: WORKLOAD, spki: pki.caSigner.spki, issuer: pki.caIssuer, now: T0, ttlMs: HOUR });
      const serial = s.parsed.serial;
      expect(serial.length).toBe(16);
      expect(serial[0]! & 0x80).toBe(0); // positive: top bit clear, no leading 00 needed
      expect(serial[0]).not.toBe(0); // minimal encoding, never zero
      seen.add(s.parsed.serialHex);
    }
    expect(seen.size).toBe(300);
  });
  it('randomSerial never repeats and is always positive and non-zero', () => {
    const seen = new Set<string>();
    let orBits = 0;
    for (let i = 0; i < 5000; i++) {
      const b = randomSerial();
      expect(b[0]! >= 1 && b[0]! <= 0x7f).toBe(true);
      orBits |= b[15]!;
      seen.add(b.toString('hex'));
    }
    expect(seen.size).toBe(5000);
    expect(orBits).toBe(0xff); // the low octet varies over all bits
  });
  it('openssl reads the same serial we parsed', () => {
    const out = ossl(['x509', '-in', pemFile(pki.svid.der), '-noout', '-serial']).trim();
    expect(out).toBe(`serial=${pki.svid.parsed.serialHex.toUpperCase()}`);
    expect(pki.svid.parsed.serialHex).not.toBe(pki.ca.parsed.serialHex);
  });
});

// ------------------------------------------------------------------ DNS SANs

describe('DNS SANs (RFC 5280 4.2.1.6, RFC 1034 preferred name syntax; checklist 19)', () => {
  const mint = (dnsNames: string[]) => () =>
    mintX509Svid({ spiffeId: WORKLOAD, spki: pki.caSigner.spki, issuer: pki.caIssuer, now: T0, ttlMs: HOUR, dnsNames });
  const label63 = 'a'.repeat(63);
  const name253 = `${label63}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;

  it('accepts valid names and wildcards and openssl shows them as DNS SANs', () => {
    const good = ['web', 'web.example.org', '*.example.org', 'a-b.c-d.example', '0day.example', `${label63}.example`, name253];
    expect(name253.length).toBe(253);
    const s = mint(good)();
    expect(s.parsed.dnsNames).toEqual(good);
    const san = mustExt(text(s.der), 'Subject Alternative Name').value;
    for (const n of good) expect(san).toContain(`DNS:${n}`);
    expect(san.match(/URI:/g)).toHaveLength(1);
  });
  it.each([
    ['uppercase', 'Web.Example.org'],
    ['empty label', 'a..example'],
    ['leading hyphen', '-web.example'],
    ['trailing hyphen', 'web-.example'],
    ['underscore', 'web_1.example'],
    ['space', 'web example'],
    ['empty', ''],
    ['dot only', '.'],
    ['trailing dot', 'example.org.'],
    ['leading dot', '.example.org'],
    ['bare wildcard', '*'],
    ['wildcard without domain', '*.'],
    ['wildcard not leftmost', 'foo.*.example'],
    ['double wildcard', '*.*.example'],
    ['partial wildcard', 'w*.example'],
    ['64-char label', `${'a'.repeat(64)}.example`],
    ['254 chars', `${name253}d`],
    ['unicode', 'b\u00fccher.example'],
    ['port', 'web.example:443'],
    ['userinfo', 'user@web.example'],
    ['slash', 'web.example/x'],
    ['NUL injection', 'web.example\u0000.evil.com'],
    ['newline injection', 'web.example\nDNS:evil.com'],
  ])('refuses %s -> mint/bad-dns-name', (_name, bad) => {
    expect(codeOf(mint([bad]), MintError)).toBe('mint/bad-dns-name');
    expect(codeOf(mint(['ok.example', bad]), MintError)).toBe('mint/bad-dns-name');
  });
  it('at most 32 DNS names', () => {
    const names = Array.from({ length: 33 }, (_, i) => `h${i}.example`);
    expect(() => mint(names.slice(0, 32))()).not.toThrow();
    expect(codeOf(mint(names), MintError)).toBe('mint/bad-dns-name');
  });
});

// ------------------------------------------------------------------ trust domain binding

describe('identity binding of mintX509Svid (X509-SVID 2, 3)', () => {
  it('refuses a SPIFFE ID of another trust domain than the CA -> mint/bad-request', () => {
    const code = codeOf(
      () => mintX509Svid({ spiffeId: SpiffeId.parse('spiffe://other.test/ns/w'), spki: pki.caSigner.spki, issuer: pki.caIssuer, now: T0, ttlMs: HOUR }),
      MintError,
    );
    expect(code).toBe('mint/bad-request');
    // ...also when the other trust domain name merely starts with ours
    const code2 = codeOf(
      () => mintX509Svid({ spiffeId: SpiffeId.parse('spiffe://example.org.evil/w'), spki: pki.caSigner.spki, issuer: pki.caIssuer, now: T0, ttlMs: HOUR }),
      MintError,
    );
    expect(code2).toBe('mint/bad-request');
  });
  it('refuses a root-path (trust domain) ID for a leaf -> mint/bad-request', () => {
    const code = codeOf(
      () => mintX509Svid({ spiffeId: SpiffeId.parse('spiffe://example.org'), spki: pki.caSigner.spki, issuer: pki.caIssuer, now: T0, ttlMs: HOUR }),
      MintError,
    );
    expect(code).toBe('mint/bad-request');
  });
  it('a CA of the other trust domain issues for its own trust domain', () => {
    const s = mintX509Svid({ spiffeId: SpiffeId.parse('spiffe://other.test/w'), spki: pki.caSigner.spki, issuer: other.caIssuer, now: T0, ttlMs: HOUR });
    expect(opensslVerify(s.der, { roots: [other.root.der], untrusted: [other.ca.der] }).ok).toBe(true);
  });
  it('refuses a leaf public key that no relying party could use: RSA-1024 and an off-curve EC point (same rule as the CSR path)', () => {
    // The CSR path refuses these (csr/unsupported-key, csr/malformed); the direct-SPKI path must not issue for them either.
    const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'der', type: 'spki' });
    const offCurve = Buffer.concat([pki.caSigner.spki.subarray(0, 27), Buffer.alloc(64, 0x01)]);
    for (const spki of [rsa1024, offCurve]) {
      let thrown: unknown;
      try {
        mintX509Svid({ spiffeId: WORKLOAD, spki, issuer: pki.caIssuer, now: T0, ttlMs: HOUR });
      } catch (e) {
        thrown = e;
      }
      expect(thrown, 'a certificate was issued for an unusable key').toBeInstanceOf(EdgewardError);
      expect(['key/unsupported', 'key/malformed', 'mint/bad-request']).toContain((thrown as EdgewardError).code);
    }
  });
});

// ------------------------------------------------------------------ keys

describe('key encodings (RFC 5208/5915 PKCS#8, RFC 5480 SPKI; Workload API x509_svid_key)', () => {
  it('pkcs8FromPrivateKey parses with `openssl pkey -inform DER`, passes -check and matches the certificate key', () => {
    const der = pkcs8FromPrivateKey(pki.workloadKey);
    const keyPath = put('key.der', der);
    expect(ossl(['pkey', '-inform', 'DER', '-in', keyPath, '-check', '-noout'])).toMatch(/Key is valid/);
    const pub = osslBytes(['pkey', '-inform', 'DER', '-in', keyPath, '-pubout', '-outform', 'DER']);
    expect(pub.equals(pki.svid.parsed.spki)).toBe(true);
    // and the same as the key openssl reads out of the certificate
    const certPub = ossl(['x509', '-in', pemFile(pki.svid.der), '-noout', '-pubkey']);
    const certPubDer = osslBytes(['pkey', '-pubin', '-in', put('pub.pem', certPub), '-outform', 'DER']);
    expect(certPubDer.equals(pub)).toBe(true);
  });
  it('pkcs8FromPrivateKey equals node own PKCS#8 export and round-trips', () => {
    const k = generateP256().privateKey;
    const der = pkcs8FromPrivateKey(k);
    expect(der.equals(k.export({ format: 'der', type: 'pkcs8' }))).toBe(true);
    const back = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    expect(back.export({ format: 'jwk' })).toEqual(k.export({ format: 'jwk' }));
  });
  it('pkcs8FromPrivateKey handles non-P-256 keys through node and refuses a public key', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    expect(pkcs8FromPrivateKey(rsa.privateKey).equals(rsa.privateKey.export({ format: 'der', type: 'pkcs8' }))).toBe(true);
    expect(codeOf(() => pkcs8FromPrivateKey(generateP256().publicKey), KeyError)).toBe('key/malformed');
  });
  it('spkiFromPublicKey equals node own SPKI export (public and private KeyObjects, P-256, P-384, RSA)', () => {
    const p256 = generateP256();
    const node = p256.publicKey.export({ format: 'der', type: 'spki' });
    expect(spkiFromPublicKey(p256.publicKey).equals(node)).toBe(true);
    expect(spkiFromPublicKey(p256.privateKey).equals(node)).toBe(true);
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    expect(spkiFromPublicKey(p384.publicKey).equals(p384.publicKey.export({ format: 'der', type: 'spki' }))).toBe(true);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    expect(spkiFromPublicKey(rsa.privateKey).equals(rsa.publicKey.export({ format: 'der', type: 'spki' }))).toBe(true);
    // and openssl agrees it is a valid SPKI
    const out = ossl(['pkey', '-pubin', '-inform', 'DER', '-in', put('spki.der', spkiFromPublicKey(p256.publicKey)), '-noout', '-text']);
    expect(out).toMatch(/NIST CURVE: P-256/);
    expect(createPublicKey({ key: spkiFromPublicKey(p256.publicKey), format: 'der', type: 'spki' }).export({ format: 'jwk' })).toEqual(
      p256.publicKey.export({ format: 'jwk' }),
    );
  });
  it('a key generated by openssl converts to the same PKCS#8 bytes openssl writes (key file interop)', () => {
    const keyPath = join(dir, `${++seq}-k.pem`);
    ossl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyPath]);
    const k = createPrivateKey(readFileSync(keyPath));
    // `openssl pkey -outform DER` writes SEC1 for EC keys; PKCS#8 needs pkcs8 -topk8.
    const fromOpenssl = osslBytes(['pkcs8', '-topk8', '-nocrypt', '-in', keyPath, '-outform', 'DER']);
    expect(pkcs8FromPrivateKey(k).equals(fromOpenssl)).toBe(true);
  });
});
