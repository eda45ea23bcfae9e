/**
 * Conformance tests for X509-SVID validation (src/identity/x509/svid.ts: validateX509Svid).
 *
 * Malicious certificates are made with openssl (`openssl x509 -req -CA ... -extfile`, `openssl req -x509`)
 * and with the builder module (precise control over every field). Every negative case asserts the exact
 * error code and cites the clause: X509-SVID 2 (one URI SAN), 4.1 (basic constraints), 4.3 (key usage),
 * 4.4 (extended key usage), 5.1 (path validation against the bundle of the leaf's trust domain), 5.2 (leaf
 * validation); RFC 5280 4.1/4.2 (syntax, extensions) and 6.1 (path validation); X.690 (DER).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  certToPem,
  generateP256,
  MAX_CERT_BYTES,
  MAX_CHAIN_CERTS,
  mintCodeSigningCert,
  mintX509Svid,
  OID,
  parseCertificate,
  signerFromPrivateKey,
  SpiffeId,
  spkiFromPublicKey,
  TrustDomain,
  validateX509Svid,
  X509_SVID_ERROR_CODES,
  X509SvidError,
  type ParsedCertificate,
  type Signer,
  type X509BundleSource,
  type X509SvidErrorCode,
  type X509SvidValidationOptions,
} from '../../../src/identity/index.js';
import {
  authorityKeyIdExt,
  basicConstraintsExt,
  buildCertificate,
  EMPTY_NAME,
  encodeName,
  extKeyUsageExt,
  keyIdentifier,
  keyUsageExt,
  randomSerial,
  subjectAltNameExt,
  subjectKeyIdExt,
  type ExtensionSpec,
  type KeyUsageName,
} from '../../../src/identity/x509/builder.js';
import { bitString, explicit, octetString, oid, seq, smallUint, time, tlv, uintBytes } from '../../../src/identity/asn1/der.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
/**
 * Times are relative to the wall clock once (openssl stamps NotBefore with the real time); validation
 * always happens at AT, an hour later, so no test depends on how long the run takes.
 */
const NOW = Math.floor(Date.now() / 1000) * 1000;
const AT = NOW + HOUR;
const TD_A = TrustDomain.parse('example.org');
const TD_B = TrustDomain.parse('other.test');
const LEAF_ID = 'spiffe://example.org/ns/w';
const UNKNOWN_CRITICAL: ExtensionSpec = { oid: '1.3.6.1.4.1.55555.1.1', critical: true, value: Buffer.from([0x05, 0x00]) };
const UNKNOWN_NONCRITICAL: ExtensionSpec = { ...UNKNOWN_CRITICAL, critical: false };

// ------------------------------------------------------------------ certificate factories (builder)

interface Ca {
  der: Buffer;
  parsed: ParsedCertificate;
  signer: Signer;
}

const newSigner = (): Signer => signerFromPrivateKey(generateP256().privateKey);

function rsaSigner(bits: number): Signer {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: bits });
  return {
    spki: publicKey.export({ format: 'der', type: 'spki' }),
    publicKey,
    privateKey,
    signatureAlgorithm: OID.sha256WithRsa,
    sign: (data) => cryptoSign('sha256', data, privateKey),
    signP1363: () => {
      throw new Error('not used');
    },
  };
}

let caNameCounter = 0;
interface CaOpts {
  td?: TrustDomain;
  /** Undefined: self-signed root. */
  issuer?: Ca;
  signer?: Signer;
  name?: Buffer;
  cA?: boolean;
  pathLen?: number;
  omitBasicConstraints?: boolean;
  keyUsage?: KeyUsageName[] | 'omit';
  extra?: ExtensionSpec[];
  notBefore?: number;
  notAfter?: number;
}
function makeCa(o: CaOpts = {}): Ca {
  const td = o.td ?? TD_A;
  const signer = o.signer ?? newSigner();
  const name = o.name ?? encodeName([[OID.organizationName, 'Test'], [OID.commonName, `CA ${td.name} ${++caNameCounter}`]]);
  const exts: ExtensionSpec[] = [];
  if (o.omitBasicConstraints !== true) exts.push(basicConstraintsExt(o.cA ?? true, o.pathLen));
  if (o.keyUsage !== 'omit') exts.push(keyUsageExt(o.keyUsage ?? ['keyCertSign', 'cRLSign']));
  exts.push(subjectAltNameExt([td.idString], [], false), ...(o.extra ?? []), subjectKeyIdExt(signer.spki));
  const aki = o.issuer === undefined ? keyIdentifier(signer.spki) : o.issuer.parsed.subjectKeyId!;
  exts.push(authorityKeyIdExt(aki));
  const der = buildCertificate(
    {
      serial: randomSerial(),
      issuer: o.issuer === undefined ? name : o.issuer.parsed.subjectRaw,
      subject: name,
      notBefore: o.notBefore ?? NOW - DAY,
      notAfter: o.notAfter ?? NOW + 30 * DAY,
      spki: signer.spki,
      extensions: exts,
    },
    o.issuer === undefined ? signer : o.issuer.signer,
  );
  return { der, parsed: parseCertificate(der), signer };
}

interface LeafOpts {
  uris?: string[];
  dns?: string[];
  omitSan?: boolean;
  sanCritical?: boolean;
  subject?: Buffer;
  keyUsage?: KeyUsageName[] | 'omit';
  keyUsageCritical?: boolean;
  /** basicConstraints cA; 'omit' leaves the extension out. */
  cA?: boolean | 'omit';
  eku?: string[] | 'omit';
  extra?: ExtensionSpec[];
  notBefore?: number;
  notAfter?: number;
  /** Sign with this key instead of the issuer's (forgery). */
  signWith?: Signer;
  /** AKI value; 'omit' leaves the extension out. */
  aki?: Buffer | 'omit';
  spki?: Buffer;
}
function leafExtensions(o: LeafOpts, spki: Buffer, issuer: Ca): ExtensionSpec[] {
  const exts: ExtensionSpec[] = [];
  if (o.cA !== 'omit') exts.push(basicConstraintsExt(o.cA ?? false));
  if (o.keyUsage !== 'omit') {
    exts.push({ ...keyUsageExt(o.keyUsage ?? ['digitalSignature', 'keyEncipherment']), critical: o.keyUsageCritical ?? true });
  }
  if (o.eku !== 'omit') exts.push(extKeyUsageExt(o.eku ?? [OID.serverAuth, OID.clientAuth]));
  if (o.omitSan !== true) exts.push(subjectAltNameExt(o.uris ?? [LEAF_ID], o.dns ?? [], o.sanCritical ?? false));
  exts.push(...(o.extra ?? []), subjectKeyIdExt(spki));
  if (o.aki !== 'omit') exts.push(authorityKeyIdExt(o.aki ?? issuer.parsed.subjectKeyId!));
  return exts;
}
function makeLeaf(issuer: Ca, o: LeafOpts = {}): Buffer {
  const spki = o.spki ?? spkiFromPublicKey(generateP256().publicKey);
  return buildCertificate(
    {
      serial: randomSerial(),
      issuer: issuer.parsed.subjectRaw,
      subject: o.subject ?? encodeName([[OID.organizationName, 'Test'], [OID.commonName, 'leaf']]),
      notBefore: o.notBefore ?? NOW - MINUTE,
      notAfter: o.notAfter ?? NOW + 2 * HOUR,
      spki,
      extensions: leafExtensions(o, spki, issuer),
    },
    o.signWith ?? issuer.signer,
  );
}

/** DER of one Extension, optionally with the (non-DER) explicit critical FALSE. */
function extDer(e: ExtensionSpec, explicitFalse = false): Buffer {
  if (e.critical) return seq(oid(e.oid), Buffer.from([0x01, 0x01, 0xff]), octetString(e.value));
  if (explicitFalse) return seq(oid(e.oid), Buffer.from([0x01, 0x01, 0x00]), octetString(e.value));
  return seq(oid(e.oid), octetString(e.value));
}
/** Hand-assembled leaf, for fields the builder never produces (version, DER oddities, algorithm mismatch). */
function rawLeaf(
  issuer: Ca,
  o: { version?: number | null; exts?: Buffer[] | null; outerAlg?: string; nonDerExtension?: boolean } = {},
): Buffer {
  const spki = spkiFromPublicKey(generateP256().publicKey);
  const innerAlg = seq(oid(issuer.signer.signatureAlgorithm));
  const outerAlg = seq(oid(o.outerAlg ?? issuer.signer.signatureAlgorithm));
  const exts = o.exts === undefined ? leafExtensions({}, spki, issuer).map((e) => extDer(e, o.nonDerExtension === true && e.oid === OID.extKeyUsage)) : o.exts;
  const parts: Buffer[] = [];
  if (o.version !== null) parts.push(explicit(0, smallUint(o.version ?? 2)));
  parts.push(
    uintBytes(randomSerial()),
    innerAlg,
    issuer.parsed.subjectRaw,
    seq(time(NOW - MINUTE), time(NOW + 2 * HOUR)),
    encodeName([[OID.organizationName, 'Test']]),
    spki,
  );
  if (exts !== null) parts.push(explicit(3, seq(...exts)));
  const tbs = seq(...parts);
  return seq(tbs, outerAlg, bitString(issuer.signer.sign(tbs)));
}

// ------------------------------------------------------------------ bundle sources and assertions

function source(map: Record<string, readonly Buffer[] | undefined>): X509BundleSource & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    x509AuthoritiesFor(td: TrustDomain) {
      asked.push(td.name);
      return Object.hasOwn(map, td.name) ? map[td.name] : undefined;
    },
  };
}

function codeOf(chain: readonly Buffer[], bundles: X509BundleSource, at = AT, options?: X509SvidValidationOptions): X509SvidErrorCode {
  try {
    validateX509Svid(chain, bundles, at, options);
  } catch (e) {
    expect(e).toBeInstanceOf(X509SvidError);
    const code = (e as X509SvidError).code;
    expect(X509_SVID_ERROR_CODES).toContain(code);
    return code;
  }
  throw new Error('validateX509Svid accepted the chain');
}

function flipLastByte(der: Buffer): Buffer {
  const b = Buffer.from(der);
  b[b.length - 1]! ^= 0x01;
  return b;
}

// ------------------------------------------------------------------ openssl

let dir = '';
let fileSeq = 0;
function put(name: string, data: string | Buffer): string {
  const p = join(dir, `${++fileSeq}-${name}`);
  writeFileSync(p, data);
  return p;
}
function osslBytes(args: string[]): Buffer {
  return execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
}

// ------------------------------------------------------------------ fixture: two trust domains

let rootA: Ca;
let caA: Ca; // pathLen 0, issued by rootA
let leafA: Buffer;
let rootB: Ca;
let caB: Ca;
let leafB: Buffer; // spiffe://other.test/ns/w issued by caB
/** Bundles of both trust domains, each only its own root (X509-SVID 5.1). */
let both: X509BundleSource;
let onlyA: X509BundleSource;
// openssl material
let caAPem = '';
let caAKey = '';
let leafCsr = '';

const BASE_LEAF_EXT = [
  'basicConstraints = critical,CA:FALSE',
  'keyUsage = critical,digitalSignature,keyEncipherment',
  'extendedKeyUsage = serverAuth,clientAuth',
  `subjectAltName = URI:${LEAF_ID}`,
  'subjectKeyIdentifier = hash',
  'authorityKeyIdentifier = keyid',
];
/** `openssl x509 -req -CA caA` with the given extension lines (null: no extensions, a v1 certificate). */
function opensslLeaf(extLines: string[] | null): Buffer {
  const args = ['x509', '-req', '-in', leafCsr, '-CA', caAPem, '-CAkey', caAKey, '-set_serial', `0x${randomSerial().toString('hex')}`, '-days', '1', '-outform', 'DER'];
  if (extLines !== null) args.push('-extfile', put('ext.cnf', ['[v3]', ...extLines, ''].join('\n')), '-extensions', 'v3');
  return osslBytes(args);
}
/** BASE_LEAF_EXT with the line for `key` replaced (or removed when `value` is null). */
function withExt(key: string, value: string | null): string[] {
  const lines = BASE_LEAF_EXT.filter((l) => !l.startsWith(`${key} `));
  return value === null ? lines : [...lines, `${key} = ${value}`];
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'edgeward-x509-validate-'));
  rootA = makeCa();
  caA = makeCa({ issuer: rootA, pathLen: 0 });
  leafA = makeLeaf(caA);
  rootB = makeCa({ td: TD_B });
  caB = makeCa({ td: TD_B, issuer: rootB, pathLen: 0 });
  leafB = makeLeaf(caB, { uris: ['spiffe://other.test/ns/w'] });
  both = source({ 'example.org': [rootA.der], 'other.test': [rootB.der] });
  onlyA = source({ 'example.org': [rootA.der] });

  caAPem = put('caA.pem', certToPem(caA.der));
  caAKey = put('caA.key', caA.signer.privateKey.export({ format: 'pem', type: 'pkcs8' }));
  const leafKey = join(dir, 'leaf.key');
  leafCsr = join(dir, 'leaf.csr');
  osslBytes(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', leafKey, '-subj', '/O=Test/CN=openssl leaf', '-out', leafCsr]);
});
afterAll(() => {
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

// ------------------------------------------------------------------ positive

describe('valid X509-SVIDs (X509-SVID 5)', () => {
  it('leaf + intermediate in the chain, only the root in the bundle (RFC 5280 6.1)', () => {
    const v = validateX509Svid([leafA, caA.der], both, AT);
    expect(v.spiffeId.toString()).toBe(LEAF_ID);
    expect(v.leaf.raw.equals(leafA)).toBe(true);
    expect(v.path.map((c) => c.raw)).toEqual([leafA, caA.der, rootA.der]);
  });
  it('leaf alone, the signing CA in the bundle (a bundle CA is a trust anchor, RFC 5280 6.1.1 (d))', () => {
    const v = validateX509Svid([leafA], source({ 'example.org': [caA.der] }), AT);
    expect(v.spiffeId.toString()).toBe(LEAF_ID);
    expect(v.path).toHaveLength(2);
  });
  it('the bundle of the leaf trust domain is the one consulted (X509-SVID 5.1)', () => {
    const src = source({ 'example.org': [rootA.der], 'other.test': [rootB.der] });
    validateX509Svid([leafB, caB.der], src, AT);
    expect(src.asked).toEqual(['other.test']);
  });
  it('options.trustDomain equal to the leaf trust domain is accepted', () => {
    expect(validateX509Svid([leafA, caA.der], both, AT, { trustDomain: TD_A }).spiffeId.trustDomain.name).toBe('example.org');
  });
  it('an openssl-issued leaf with the SVID profile is accepted (control for the openssl negatives)', () => {
    const der = opensslLeaf(BASE_LEAF_EXT);
    expect(validateX509Svid([der, caA.der], both, AT).spiffeId.toString()).toBe(LEAF_ID);
  });
  it('an RSA-2048 root from openssl signing a P-256 intermediate (openssl x509 -req) which signs the leaf', () => {
    const rootKey = join(dir, 'rsa-root.key');
    const rootDer = osslBytes([
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', rootKey, '-subj', '/O=Legacy/CN=RSA Root', '-days', '30',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      '-addext', 'subjectAltName=URI:spiffe://example.org', '-outform', 'DER',
    ]);
    const intKey = join(dir, 'p256-int.key');
    const intCsr = join(dir, 'p256-int.csr');
    osslBytes(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', intKey, '-subj', '/O=Legacy/CN=P-256 Intermediate', '-out', intCsr]);
    const ext = put('int.cnf', '[v3]\nbasicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectAltName=URI:spiffe://example.org\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n');
    const intDer = osslBytes([
      'x509', '-req', '-in', intCsr, '-CA', put('rsa-root.pem', certToPem(rootDer)), '-CAkey', rootKey, '-set_serial', '0x1234abcd',
      '-days', '10', '-extfile', ext, '-extensions', 'v3', '-outform', 'DER',
    ]);
    const root = parseCertificate(rootDer);
    const int = parseCertificate(intDer);
    expect(root.keyAlgorithm).toBe('rsa');
    expect(int.signatureAlgorithm).toBe(OID.sha256WithRsa);
    expect(int.keyAlgorithm).toBe('ec-p256');
    const issuer = { cert: int, signer: signerFromPrivateKey(createPrivateKey(readFileSync(intKey))) };
    const leaf = mintX509Svid({ spiffeId: SpiffeId.parse(LEAF_ID), spki: spkiFromPublicKey(generateP256().publicKey), issuer, now: AT - 10 * MINUTE, ttlMs: HOUR });
    const v = validateX509Svid([leaf.der, intDer], source({ 'example.org': [rootDer] }), AT);
    expect(v.path.map((c) => c.keyAlgorithm)).toEqual(['ec-p256', 'ec-p256', 'rsa']);
    // openssl agrees
    const r = spawnSync('openssl', ['verify', '-x509_strict', '-attime', String(AT / 1000), '-CAfile', put('r.pem', certToPem(rootDer)), '-untrusted', put('i.pem', certToPem(intDer)), put('l.pem', certToPem(leaf.der))], { encoding: 'utf8' });
    expect(`${r.stdout}${r.stderr}`).toMatch(/: OK/);
  });
  it('intermediates out of order in the chain (RFC 5280 6.1: the path is built, not assumed)', () => {
    const int1 = makeCa({ issuer: rootA, pathLen: 1 });
    const int2 = makeCa({ issuer: int1, pathLen: 0 });
    const leaf = makeLeaf(int2);
    const v = validateX509Svid([leaf, int1.der, int2.der], both, AT);
    expect(v.path.map((c) => c.raw)).toEqual([leaf, int2.der, int1.der, rootA.der]);
  });
  it('a chain of exactly 16 certificates (extra copies unused) is accepted', () => {
    const chain = [leafA, ...Array.from({ length: MAX_CHAIN_CERTS - 1 }, () => caA.der)];
    expect(chain).toHaveLength(16);
    expect(validateX509Svid(chain, both, AT).path).toHaveLength(3);
  });
  it('empty subject with a critical SAN, no EKU, DNS SANs and an unknown NON-critical extension are accepted', () => {
    const leaf = makeLeaf(caA, { subject: EMPTY_NAME, sanCritical: true, eku: 'omit', dns: ['w.example.org'], extra: [UNKNOWN_NONCRITICAL] });
    expect(validateX509Svid([leaf, caA.der], both, AT).spiffeId.toString()).toBe(LEAF_ID);
  });
  it('validity bounds are inclusive (RFC 5280 4.1.2.5)', () => {
    const leaf = makeLeaf(caA, { notBefore: NOW, notAfter: NOW + HOUR });
    expect(() => validateX509Svid([leaf, caA.der], both, NOW)).not.toThrow();
    expect(() => validateX509Svid([leaf, caA.der], both, NOW + HOUR)).not.toThrow();
  });
  it('a renewed root with the same key and name next to its expired predecessor still anchors the chain (RFC 5280 6.1.1 (d); go-spiffe/crypto/x509 try every candidate)', () => {
    const key = newSigner();
    const name = encodeName([[OID.organizationName, 'Test'], [OID.commonName, 'Renewed Root']]);
    const oldRoot = makeCa({ signer: key, name, notBefore: NOW - 60 * DAY, notAfter: NOW - DAY });
    const newRoot = makeCa({ signer: key, name, notBefore: NOW - DAY, notAfter: NOW + 60 * DAY });
    const int = makeCa({ issuer: newRoot, pathLen: 0 });
    const leaf = makeLeaf(int);
    expect(() => validateX509Svid([leaf, int.der], source({ 'example.org': [newRoot.der, oldRoot.der] }), AT)).not.toThrow();
    expect(() => validateX509Svid([leaf, int.der], source({ 'example.org': [oldRoot.der, newRoot.der] }), AT)).not.toThrow();
  });
});

// ------------------------------------------------------------------ negative: leaf profile

describe('leaf profile violations -> x509-svid/not-an-svid (X509-SVID 2, 4.1, 4.3, 4.4, 5.2)', () => {
  it('two URI SANs (openssl-made; X509-SVID 2: validators MUST reject more than one)', () => {
    const der = opensslLeaf(withExt('subjectAltName', `URI:${LEAF_ID},URI:spiffe://example.org/ns/admin`));
    expect(parseCertificate(der).uris).toHaveLength(2);
    expect(codeOf([der, caA.der], both)).toBe('x509-svid/not-an-svid');
  });
  it('two URI SANs of which only one is a SPIFFE ID (X509-SVID 2)', () => {
    expect(codeOf([makeLeaf(caA, { uris: [LEAF_ID, 'https://example.org/x'] }), caA.der], both)).toBe('x509-svid/not-an-svid');
  });
  it('zero URI SANs, a DNS SAN only (X509-SVID 2)', () => {
    expect(codeOf([makeLeaf(caA, { uris: [], dns: ['w.example.org'] }), caA.der], both)).toBe('x509-svid/not-an-svid');
  });
  it('no subjectAltName extension at all (X509-SVID 2)', () => {
    expect(codeOf([makeLeaf(caA, { omitSan: true }), caA.der], both)).toBe('x509-svid/not-an-svid');
  });
  it('a non-spiffe URI SAN (X509-SVID 2, 5.2: scheme spiffe)', () => {
    expect(codeOf([makeLeaf(caA, { uris: ['https://example.org/ns/w'] }), caA.der], both)).toBe('x509-svid/not-an-svid');
  });
  it('a root-path SPIFFE ID spiffe://example.org (X509-SVID 2, 5.2: non-root path)', () => {
    expect(codeOf([makeLeaf(caA, { uris: ['spiffe://example.org'] }), caA.der], both)).toBe('x509-svid/not-an-svid');
  });
  it.each([
    ['uppercase trust domain', 'spiffe://Example.org/ns/w'],
    ['trailing slash', 'spiffe://example.org/ns/w/'],
    ['dot segment', 'spiffe://example.org/ns/../admin'],
    ['percent-encoding', 'spiffe://example.org/ns%2Fw'],
    ['port', 'spiffe://example.org:443/ns/w'],
  ])('a URI SAN that violates the SPIFFE ID grammar: %s (SPIFFE-ID 2; X509-SVID 2)', (_n, uri) => {
    expect(codeOf([makeLeaf(caA, { uris: [uri] }), caA.der], both)).toBe('x509-svid/not-an-svid');
  });
  it('a CA leaf, cA=true (openssl-made; X509-SVID 4.1, 5.2)', () => {
    const der = opensslLeaf(withExt('basicConstraints', 'critical,CA:TRUE'));
    expect(parseCertificate(der).isCA).toBe(true);
    expect(codeOf([der, caA.der], both)).toBe('x509-svid/not-an-svid');
  });
  it('a CA leaf made with the builder, keyUsage otherwise fine (X509-SVID 4.1)', () => {
    expect(codeOf([makeLeaf(caA, { cA: true }), caA.der], both)).toBe('x509-svid/not-an-svid');
  });
  it('keyCertSign on a leaf (X509-SVID 4.3, 5.2)', () => {
    expect(codeOf([makeLeaf(caA, { keyUsage: ['digitalSignature', 'keyCertSign'] }), caA.der], both)).toBe('x509-svid/not-an-svid');
  });
  it('keyCertSign on a leaf, openssl-made (X509-SVID 4.3)', () => {
    const der = opensslLeaf(withExt('keyUsage', 'critical,digitalSignature,keyCertSign'));
    expect(codeOf([der, caA.der], both)).toBe('x509-svid/not-an-svid');
  });
  it('cRLSign on a leaf (X509-SVID 4.3, 5.2)', () => {
    expect(codeOf([makeLeaf(caA, { keyUsage: ['digitalSignature', 'cRLSign'] }), caA.der], both)).toBe('x509-svid/not-an-svid');
  });
  it('missing keyUsage (X509-SVID 4.3: MUST be present)', () => {
    expect(codeOf([makeLeaf(caA, { keyUsage: 'omit' }), caA.der], both)).toBe('x509-svid/not-an-svid');
  });
  it('non-critical keyUsage (openssl-made; X509-SVID 4.3: MUST be critical)', () => {
    const der = opensslLeaf(withExt('keyUsage', 'digitalSignature'));
    expect(parseCertificate(der).keyUsage).toMatchObject({ present: true, critical: false, digitalSignature: true });
    expect(codeOf([der, caA.der], both)).toBe('x509-svid/not-an-svid');
  });
  it('keyUsage without digitalSignature (keyEncipherment + keyAgreement only; X509-SVID 4.3)', () => {
    expect(codeOf([makeLeaf(caA, { keyUsage: ['keyEncipherment', 'keyAgreement'] }), caA.der], both)).toBe('x509-svid/not-an-svid');
  });
  it('EKU serverAuth only (X509-SVID 4.4: both serverAuth and clientAuth)', () => {
    expect(codeOf([makeLeaf(caA, { eku: [OID.serverAuth] }), caA.der], both)).toBe('x509-svid/not-an-svid');
  });
  it('EKU clientAuth only (X509-SVID 4.4)', () => {
    expect(codeOf([makeLeaf(caA, { eku: [OID.clientAuth] }), caA.der], both)).toBe('x509-svid/not-an-svid');
  });
  it('EKU codeSigning only, openssl-made (X509-SVID 4.4: a code-signing certificate is not an SVID)', () => {
    const der = opensslLeaf(withExt('extendedKeyUsage', 'codeSigning'));
    expect(codeOf([der, caA.der], both)).toBe('x509-svid/not-an-svid');
  });
  it('a minted code-signing certificate (EKU codeSigning, critical) is not an SVID (X509-SVID 4.4)', () => {
    const cs = mintCodeSigningCert({
      spiffeId: SpiffeId.parse(LEAF_ID),
      spki: spkiFromPublicKey(generateP256().publicKey),
      issuer: { cert: caA.parsed, signer: caA.signer },
      now: NOW,
      ttlMs: 2 * HOUR,
    });
    expect(codeOf([cs.der, caA.der], both)).toBe('x509-svid/not-an-svid');
  });
  it('EKU anyExtendedKeyUsage only (X509-SVID 4.4)', () => {
    expect(codeOf([makeLeaf(caA, { eku: ['2.5.29.37.0'] }), caA.der], both)).toBe('x509-svid/not-an-svid');
  });
  it('empty subject with a non-critical SAN (RFC 5280 4.2.1.6; X509-SVID 2)', () => {
    expect(codeOf([makeLeaf(caA, { subject: EMPTY_NAME, sanCritical: false }), caA.der], both)).toBe('x509-svid/not-an-svid');
  });
});

// ------------------------------------------------------------------ negative: signatures

describe('forged signatures (RFC 5280 6.1.3 (a)(1))', () => {
  it('a flipped byte in the leaf signature -> bad-signature (issuer in bundle)', () => {
    expect(codeOf([flipLastByte(leafA)], source({ 'example.org': [caA.der] }))).toBe('x509-svid/bad-signature');
  });
  it('a flipped byte in the leaf signature -> bad-signature (issuer in chain)', () => {
    expect(codeOf([flipLastByte(leafA), caA.der], both)).toBe('x509-svid/bad-signature');
  });
  it('a flipped byte in the intermediate signature -> bad-signature', () => {
    expect(codeOf([leafA, flipLastByte(caA.der)], both)).toBe('x509-svid/bad-signature');
  });
  it('the leaf SPIFFE ID swapped after signing (same length) -> bad-signature', () => {
    const tampered = Buffer.from(leafA);
    const at = tampered.indexOf(Buffer.from('/ns/w'));
    expect(at).toBeGreaterThan(0);
    tampered.write('/ns/x', at, 'latin1');
    expect(parseCertificate(tampered).uris).toEqual(['spiffe://example.org/ns/x']);
    expect(codeOf([tampered, caA.der], both)).toBe('x509-svid/bad-signature');
  });
  it('a leaf signed by a different key under the real CA name and AKI -> bad-signature', () => {
    const forged = makeLeaf(caA, { signWith: newSigner() });
    expect(codeOf([forged, caA.der], both)).toBe('x509-svid/bad-signature');
    expect(codeOf([forged], source({ 'example.org': [caA.der] }))).toBe('x509-svid/bad-signature');
  });
  it('a leaf signed by a different key under the real CA name, without AKI -> bad-signature', () => {
    expect(codeOf([makeLeaf(caA, { signWith: newSigner(), aki: 'omit' }), caA.der], both)).toBe('x509-svid/bad-signature');
  });
  it('a leaf signed by a different key under the real CA name, with the forger AKI -> untrusted', () => {
    const forger = newSigner();
    const forged = makeLeaf(caA, { signWith: forger, aki: keyIdentifier(forger.spki) });
    expect(codeOf([forged, caA.der], both)).toBe('x509-svid/untrusted');
  });
  it('an impostor intermediate with the real CA subject, self-made and claiming the root as issuer -> bad-signature', () => {
    const impostorKey = newSigner();
    const impostor = buildCertificate(
      {
        serial: randomSerial(),
        issuer: rootA.parsed.subjectRaw,
        subject: caA.parsed.subjectRaw,
        notBefore: NOW - DAY,
        notAfter: NOW + DAY,
        spki: impostorKey.spki,
        extensions: [basicConstraintsExt(true, 0), keyUsageExt(['keyCertSign']), subjectKeyIdExt(impostorKey.spki), authorityKeyIdExt(rootA.parsed.subjectKeyId!)],
      },
      impostorKey,
    );
    const impostorCa = { der: impostor, parsed: parseCertificate(impostor), signer: impostorKey };
    const leaf = makeLeaf(impostorCa);
    expect(codeOf([leaf, impostor], both)).toBe('x509-svid/bad-signature');
  });
  it('an intermediate with an RSA-1024 key is not accepted as a signer (RSA-2048 control passes)', () => {
    const strong = makeCa({ issuer: rootA, pathLen: 0, signer: rsaSigner(2048) });
    expect(() => validateX509Svid([makeLeaf(strong), strong.der], both, AT)).not.toThrow();
    const weak = makeCa({ issuer: rootA, pathLen: 0, signer: rsaSigner(1024) });
    expect(codeOf([makeLeaf(weak), weak.der], both)).toBe('x509-svid/bad-signature');
  });
});

// ------------------------------------------------------------------ negative: trust domains

describe('trust domain separation (X509-SVID 5.1: the bundle of the leaf trust domain, never a merged one)', () => {
  it('leaf of TD B, the bundle source has no entry for TD B -> unknown-trust-domain', () => {
    expect(codeOf([leafB, caB.der], onlyA)).toBe('x509-svid/unknown-trust-domain');
  });
  it('leaf of TD B, the bundle source returns an empty bundle for TD B -> unknown-trust-domain', () => {
    expect(codeOf([leafB, caB.der], source({ 'example.org': [rootA.der], 'other.test': [] }))).toBe('x509-svid/unknown-trust-domain');
  });
  it('leaf of TD B checked against TD A authorities (a naive source answering every TD with A) -> untrusted', () => {
    const naive: X509BundleSource = { x509AuthoritiesFor: () => [rootA.der, caA.der] };
    expect(codeOf([leafB, caB.der], naive)).toBe('x509-svid/untrusted');
    expect(codeOf([leafB], naive)).toBe('x509-svid/untrusted');
  });
  it('leaf of TD A signed by TD B CA, with TD A bundle -> untrusted', () => {
    const leaf = makeLeaf(caB, { uris: [LEAF_ID] });
    expect(codeOf([leaf, caB.der], both)).toBe('x509-svid/untrusted');
    expect(codeOf([leaf], both)).toBe('x509-svid/untrusted');
  });
  it('leaf of TD B signed by TD A CA (a compromised CA of one TD minting for another) -> untrusted', () => {
    const leaf = makeLeaf(caA, { uris: ['spiffe://other.test/ns/w'] });
    expect(codeOf([leaf, caA.der], both)).toBe('x509-svid/untrusted');
  });
  it('a leaf of TD A whose chain runs through TD B CA (TD A CA also offered) -> untrusted', () => {
    // caB is issued by rootB: even with rootA and caB both offered, A's bundle does not reach rootB.
    expect(codeOf([makeLeaf(caB, { uris: [LEAF_ID] }), caB.der, caA.der], both)).toBe('x509-svid/untrusted');
  });
  it('options.trustDomain other than the leaf trust domain -> wrong-trust-domain', () => {
    expect(codeOf([leafA, caA.der], both, AT, { trustDomain: TD_B })).toBe('x509-svid/wrong-trust-domain');
    expect(codeOf([leafB, caB.der], both, AT, { trustDomain: TD_A })).toBe('x509-svid/wrong-trust-domain');
  });
});

// ------------------------------------------------------------------ negative: validity periods

describe('validity periods (RFC 5280 4.1.2.5, 6.1.3 (a)(2))', () => {
  it('an expired leaf -> expired', () => {
    const leaf = makeLeaf(caA, { notBefore: NOW - 2 * HOUR, notAfter: NOW });
    expect(codeOf([leaf, caA.der], both)).toBe('x509-svid/expired');
    expect(codeOf([leaf, caA.der], both, NOW + 1000)).toBe('x509-svid/expired');
  });
  it('a not-yet-valid leaf -> not-yet-valid', () => {
    const leaf = makeLeaf(caA, { notBefore: AT + MINUTE, notAfter: AT + 2 * HOUR });
    expect(codeOf([leaf, caA.der], both)).toBe('x509-svid/not-yet-valid');
  });
  it('an expired intermediate -> expired', () => {
    const ca = makeCa({ issuer: rootA, pathLen: 0, notBefore: NOW - DAY, notAfter: NOW });
    expect(codeOf([makeLeaf(ca), ca.der], both)).toBe('x509-svid/expired');
  });
  it('a not-yet-valid intermediate -> not-yet-valid', () => {
    const ca = makeCa({ issuer: rootA, pathLen: 0, notBefore: AT + MINUTE, notAfter: AT + DAY });
    expect(codeOf([makeLeaf(ca), ca.der], both)).toBe('x509-svid/not-yet-valid');
  });
  it('an expired root in the bundle -> expired', () => {
    const root = makeCa({ notBefore: NOW - 10 * DAY, notAfter: NOW });
    const ca = makeCa({ issuer: root, pathLen: 0 });
    expect(codeOf([makeLeaf(ca), ca.der], source({ 'example.org': [root.der] }))).toBe('x509-svid/expired');
  });
  it('an expired signing CA used directly as the bundle anchor -> expired', () => {
    const ca = makeCa({ issuer: rootA, pathLen: 0, notBefore: NOW - DAY, notAfter: NOW });
    expect(codeOf([makeLeaf(ca)], source({ 'example.org': [ca.der] }))).toBe('x509-svid/expired');
  });
});

// ------------------------------------------------------------------ negative: path constraints

describe('path constraints (RFC 5280 4.2.1.3, 4.2.1.9, 6.1.4)', () => {
  it('an intermediate with basicConstraints cA=false -> untrusted (6.1.4 (k))', () => {
    const notCa = makeCa({ issuer: rootA, cA: false });
    expect(codeOf([makeLeaf(notCa), notCa.der], both)).toBe('x509-svid/untrusted');
  });
  it('an intermediate without basicConstraints -> untrusted (6.1.4 (k))', () => {
    const noBc = makeCa({ issuer: rootA, omitBasicConstraints: true });
    expect(codeOf([makeLeaf(noBc), noBc.der], both)).toBe('x509-svid/untrusted');
  });
  it('an intermediate whose keyUsage lacks keyCertSign -> untrusted (6.1.4 (n); X509-SVID 4.3)', () => {
    const noSign = makeCa({ issuer: rootA, pathLen: 0, keyUsage: ['digitalSignature', 'cRLSign'] });
    expect(codeOf([makeLeaf(noSign), noSign.der], both)).toBe('x509-svid/untrusted');
  });
  it('a bundle anchor that is not a CA -> untrusted (6.1.4 (k))', () => {
    const notCa = makeCa({ cA: false });
    expect(codeOf([makeLeaf(notCa)], source({ 'example.org': [notCa.der] }))).toBe('x509-svid/untrusted');
  });
  it('a bundle anchor whose keyUsage lacks keyCertSign -> untrusted (6.1.4 (n))', () => {
    const noSign = makeCa({ keyUsage: ['digitalSignature'] });
    expect(codeOf([makeLeaf(noSign)], source({ 'example.org': [noSign.der] }))).toBe('x509-svid/untrusted');
  });
  it('pathLen violation: a pathLen:0 intermediate above another intermediate that signs the leaf -> path-too-long (4.2.1.9, 6.1.4 (m))', () => {
    const int2 = makeCa({ issuer: caA }); // caA has pathLen 0
    expect(codeOf([makeLeaf(int2), int2.der, caA.der], both)).toBe('x509-svid/path-too-long');
  });
  it('pathLen violation at the anchor: a pathLen:0 root above an intermediate -> path-too-long', () => {
    const root = makeCa({ pathLen: 0 });
    const ca = makeCa({ issuer: root });
    expect(codeOf([makeLeaf(ca), ca.der], source({ 'example.org': [root.der] }))).toBe('x509-svid/path-too-long');
  });
  it('an unknown critical extension on the leaf -> unhandled-critical-extension (4.2, 6.1.4 (o))', () => {
    expect(codeOf([makeLeaf(caA, { extra: [UNKNOWN_CRITICAL] }), caA.der], both)).toBe('x509-svid/unhandled-critical-extension');
  });
  it('an unknown critical extension on an intermediate -> unhandled-critical-extension (4.2, 6.1.4 (o))', () => {
    const ca = makeCa({ issuer: rootA, pathLen: 0, extra: [UNKNOWN_CRITICAL] });
    expect(codeOf([makeLeaf(ca), ca.der], both)).toBe('x509-svid/unhandled-critical-extension');
  });
  it('a critical nameConstraints on an intermediate is not silently ignored -> unhandled-critical-extension (X509-SVID 4.2)', () => {
    // permittedSubtrees [0] { GeneralSubtree { uniformResourceIdentifier "example.org" } }
    const nc: ExtensionSpec = { oid: OID.nameConstraints, critical: true, value: seq(tlv(0xa0, seq(tlv(0x86, Buffer.from('example.org'))))) };
    const ca = makeCa({ issuer: rootA, pathLen: 0, extra: [nc] });
    expect(codeOf([makeLeaf(ca), ca.der], both)).toBe('x509-svid/unhandled-critical-extension');
  });
  it('a chain longer than 16 certificates -> path-too-long', () => {
    const chain = [leafA, ...Array.from({ length: MAX_CHAIN_CERTS }, () => caA.der)];
    expect(chain).toHaveLength(17);
    expect(codeOf(chain, both)).toBe('x509-svid/path-too-long');
  });
  it('an empty chain -> malformed', () => {
    expect(codeOf([], both)).toBe('x509-svid/malformed');
  });
  it('the leaf without its intermediate (missing link, root-only bundle) -> untrusted', () => {
    expect(codeOf([leafA], both)).toBe('x509-svid/untrusted');
  });
});

// ------------------------------------------------------------------ negative: encoding

describe('encoding (RFC 5280 4.1, X.690 DER)', () => {
  it('garbage bytes as the leaf -> malformed', () => {
    expect(codeOf([Buffer.from('definitely not a certificate')], both)).toBe('x509-svid/malformed');
    expect(codeOf([Buffer.alloc(0)], both)).toBe('x509-svid/malformed');
  });
  it('a PEM certificate passed as DER -> malformed', () => {
    expect(codeOf([Buffer.from(certToPem(leafA))], both)).toBe('x509-svid/malformed');
  });
  it('a truncated leaf -> malformed (several cut points)', () => {
    for (const cut of [1, 4, 50, leafA.length - 40, leafA.length - 1]) {
      expect(codeOf([leafA.subarray(0, cut), caA.der], both), `cut at ${cut}`).toBe('x509-svid/malformed');
    }
  });
  it('trailing bytes after the leaf -> malformed (X.690 DER: one element)', () => {
    expect(codeOf([Buffer.concat([leafA, Buffer.from([0x00])]), caA.der], both)).toBe('x509-svid/malformed');
    expect(codeOf([Buffer.concat([leafA, caA.der])], both)).toBe('x509-svid/malformed');
  });
  it('a garbage or truncated intermediate -> malformed', () => {
    expect(codeOf([leafA, Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01])], both)).toBe('x509-svid/malformed');
    expect(codeOf([leafA, caA.der.subarray(0, caA.der.length - 3)], both)).toBe('x509-svid/malformed');
  });
  it('a garbage certificate in the bundle -> malformed', () => {
    expect(codeOf([leafA, caA.der], source({ 'example.org': [Buffer.from('junk junk junk')] }))).toBe('x509-svid/malformed');
  });
  it('a duplicate extension (two subjectAltName) -> malformed (RFC 5280 4.2)', () => {
    const dup = makeLeaf(caA, { extra: [subjectAltNameExt(['spiffe://example.org/ns/admin'], [], false)] });
    expect(codeOf([dup, caA.der], both)).toBe('x509-svid/malformed');
  });
  it('a duplicate keyUsage extension -> malformed (RFC 5280 4.2)', () => {
    expect(codeOf([makeLeaf(caA, { extra: [keyUsageExt(['digitalSignature'])] }), caA.der], both)).toBe('x509-svid/malformed');
  });
  it('a v1 certificate made by openssl (no extensions) -> malformed (RFC 5280 4.1.2.1)', () => {
    const v1 = opensslLeaf(null);
    const text = execFileSync('openssl', ['x509', '-inform', 'DER', '-noout', '-text'], { input: v1, encoding: 'utf8' });
    expect(text).toMatch(/Version: 1 \(0x0\)/);
    expect(codeOf([v1, caA.der], both)).toBe('x509-svid/malformed');
  });
  it('a v2 certificate carrying extensions -> malformed (RFC 5280 4.1.2.1: extensions need v3); v3 control passes', () => {
    expect(() => validateX509Svid([rawLeaf(caA, { version: 2 }), caA.der], both, AT)).not.toThrow();
    expect(codeOf([rawLeaf(caA, { version: 1 }), caA.der], both)).toBe('x509-svid/malformed');
  });
  it('an extension with an explicitly encoded critical FALSE -> malformed (X.690 11.5: DEFAULT values are omitted)', () => {
    expect(codeOf([rawLeaf(caA, { nonDerExtension: true }), caA.der], both)).toBe('x509-svid/malformed');
  });
  it('inner and outer signature algorithms disagree -> malformed (RFC 5280 4.1.1.2)', () => {
    expect(codeOf([rawLeaf(caA, { outerAlg: OID.ecdsaWithSha384 }), caA.der], both)).toBe('x509-svid/malformed');
  });
  it('a certificate larger than MAX_CERT_BYTES -> malformed', () => {
    const big = makeLeaf(caA, { dns: Array.from({ length: 60 }, (_, i) => `h${i}-${'x'.repeat(300)}.example`) });
    expect(big.length).toBeGreaterThan(MAX_CERT_BYTES);
    expect(codeOf([big, caA.der], both)).toBe('x509-svid/malformed');
  });
});
