/**
 * X.509 certificate parsing (RFC 5280 4.1, 4.2). Strict and zero-copy: everything a validator needs is
 * decoded once, the public key is imported lazily and cached per certificate object.
 */
import type { KeyObject } from 'node:crypto';
import { EdgewardError } from '../errors.js';
import {
  children,
  decodeBitString,
  decodeBoolean,
  decodeOid,
  decodeSmallUint,
  decodeTime,
  DerError,
  expectTag,
  parseOne,
  readTlv,
  Tag,
  type DerNode,
} from '../asn1/der.js';
import { importSpki, inspectSpki, KeyError, type KeyAlgorithm } from './keys.js';
import { OID } from './oids.js';

export type X509ErrorCode = 'x509/malformed' | 'x509/unsupported' | 'x509/too-large' | 'x509/bad-pem';
export class X509Error extends EdgewardError<X509ErrorCode> {}

/** A certificate larger than this is refused before parsing (bounded input, architecture.md 9). */
export const MAX_CERT_BYTES = 16 * 1024;
/** At most this many certificates in one chain or PEM bundle handed to the parser. */
export const MAX_CHAIN_CERTS = 16;

export interface KeyUsage {
  present: boolean;
  critical: boolean;
  digitalSignature: boolean;
  nonRepudiation: boolean;
  keyEncipherment: boolean;
  dataEncipherment: boolean;
  keyAgreement: boolean;
  keyCertSign: boolean;
  cRLSign: boolean;
}

export interface Extension {
  critical: boolean;
  value: Buffer;
}

export interface ParsedCertificate {
  raw: Buffer;
  tbs: Buffer;
  signatureAlgorithm: string;
  signature: Buffer;
  version: number;
  serial: Buffer;
  serialHex: string;
  issuerRaw: Buffer;
  subjectRaw: Buffer;
  /** True when the subject is an empty SEQUENCE. */
  subjectEmpty: boolean;
  notBefore: number;
  notAfter: number;
  spki: Buffer;
  keyAlgorithm: KeyAlgorithm;
  extensions: ReadonlyMap<string, Extension>;
  basicConstraintsPresent: boolean;
  isCA: boolean;
  pathLen: number | undefined;
  keyUsage: KeyUsage;
  extKeyUsage: string[] | undefined;
  extKeyUsageCritical: boolean;
  uris: string[];
  dnsNames: string[];
  /** SAN entries other than URI and DNS (e-mail, IP, ...), as their context tag numbers. */
  otherSanTags: number[];
  sanCritical: boolean;
  subjectKeyId: Buffer | undefined;
  authorityKeyId: Buffer | undefined;
  /** Imported lazily (importing a key costs about one signature verify). */
  publicKey(): KeyObject;
}

const NO_KEY_USAGE: KeyUsage = Object.freeze({
  present: false,
  critical: false,
  digitalSignature: false,
  nonRepudiation: false,
  keyEncipherment: false,
  dataEncipherment: false,
  keyAgreement: false,
  keyCertSign: false,
  cRLSign: false,
});

function bit(bytes: Buffer, n: number): boolean {
  const byte = bytes[n >> 3];
  return byte !== undefined && (byte & (0x80 >> (n & 7))) !== 0;
}

function parseKeyUsage(ext: Extension): KeyUsage {
  const { bytes } = decodeBitString(parseOne(ext.value, Tag.BIT_STRING).value);
  return {
    present: true,
    critical: ext.critical,
    digitalSignature: bit(bytes, 0),
    nonRepudiation: bit(bytes, 1),
    keyEncipherment: bit(bytes, 2),
    dataEncipherment: bit(bytes, 3),
    keyAgreement: bit(bytes, 4),
    keyCertSign: bit(bytes, 5),
    cRLSign: bit(bytes, 6),
  };
}

function parseAlgorithmOid(node: DerNode | undefined, what: string): string {
  const alg = children(expectTag(node, Tag.SEQUENCE, what));
  return decodeOid(expectTag(alg[0], Tag.OID, what).value);
}

function fail(message: string, cause?: unknown): never {
  throw new X509Error('x509/malformed', message, cause === undefined ? undefined : { cause });
}

/** Parse one DER certificate. Throws X509Error('x509/malformed') on anything that is not strict DER X.509 v3. */
export function parseCertificate(der: Buffer): ParsedCertificate {
  if (!Buffer.isBuffer(der)) fail('certificate must be bytes');
  if (der.length > MAX_CERT_BYTES) throw new X509Error('x509/too-large', `certificate is larger than ${MAX_CERT_BYTES} bytes`);
  try {
    return parseUnchecked(der);
  } catch (e) {
    if (e instanceof X509Error) throw e;
    if (e instanceof DerError || e instanceof KeyError) fail(`malformed certificate: ${e.message}`, e);
    throw e;
  }
}

function parseUnchecked(der: Buffer): ParsedCertificate {
  const top = children(parseOne(der, Tag.SEQUENCE), 3);
  if (top.length !== 3) fail('a certificate has exactly three parts');
  const tbsNode = expectTag(top[0], Tag.SEQUENCE, 'tbsCertificate');
  const signatureAlgorithm = parseAlgorithmOid(top[1], 'signatureAlgorithm');
  const sigBits = decodeBitString(expectTag(top[2], Tag.BIT_STRING, 'signature').value);
  if (sigBits.unused !== 0) fail('signature has unused bits');

  const t = children(tbsNode, 10);
  let i = 0;
  let version = 1;
  if (t[0]?.tag === 0xa0) {
    version = decodeSmallUint(expectTag(children(t[0])[0], Tag.INTEGER, 'version').value) + 1;
    i = 1;
  }
  if (version !== 3) throw new X509Error('x509/unsupported', 'only X.509 v3 certificates are accepted');
  const serialNode = expectTag(t[i++], Tag.INTEGER, 'serialNumber');
  if (serialNode.value.length === 0 || serialNode.value.length > 21) fail('serial number length out of range (RFC 5280 4.1.2.2)');
  const innerSigAlg = parseAlgorithmOid(t[i++], 'signature');
  if (innerSigAlg !== signatureAlgorithm) fail('signature algorithms disagree (RFC 5280 4.1.1.2)');
  const issuerRaw = expectTag(t[i++], Tag.SEQUENCE, 'issuer').raw;
  const validity = children(expectTag(t[i++], Tag.SEQUENCE, 'validity'));
  if (validity.length !== 2) fail('validity has two times');
  const notBefore = decodeTime(validity[0]!);
  const notAfter = decodeTime(validity[1]!);
  const subjectNode = expectTag(t[i++], Tag.SEQUENCE, 'subject');
  const spki = expectTag(t[i++], Tag.SEQUENCE, 'subjectPublicKeyInfo').raw;
  const keyAlgorithm = inspectSpki(spki).algorithm;

  const extensions = new Map<string, Extension>();
  for (; i < t.length; i++) {
    const n = t[i]!;
    if (n.tag === 0x81 || n.tag === 0x82) continue; // issuer/subject unique IDs (ignored)
    if (n.tag !== 0xa3) fail('unexpected field in tbsCertificate');
    const list = children(expectTag(children(n)[0], Tag.SEQUENCE, 'extensions'), 64);
    for (const e of list) {
      const parts = children(expectTag(e, Tag.SEQUENCE, 'extension'));
      const extOid = decodeOid(expectTag(parts[0], Tag.OID, 'extnID').value);
      let critical = false;
      let valueNode = parts[1];
      if (valueNode?.tag === Tag.BOOLEAN) {
        critical = decodeBoolean(valueNode.value);
        if (!critical) fail('DER forbids encoding the default critical=FALSE');
        valueNode = parts[2];
      }
      const value = expectTag(valueNode, Tag.OCTET_STRING, 'extnValue').value;
      // RFC 5280 4.2: a certificate MUST NOT include more than one instance of an extension.
      if (extensions.has(extOid)) fail(`duplicate extension ${extOid} (RFC 5280 4.2)`);
      extensions.set(extOid, { critical, value });
    }
  }

  let isCA = false;
  let pathLen: number | undefined;
  const bc = extensions.get(OID.basicConstraints);
  if (bc !== undefined) {
    const f = children(parseOne(bc.value, Tag.SEQUENCE));
    let j = 0;
    if (f[j]?.tag === Tag.BOOLEAN) isCA = decodeBoolean(f[j++]!.value);
    if (f[j]?.tag === Tag.INTEGER) pathLen = decodeSmallUint(f[j++]!.value);
    if (j !== f.length) fail('malformed basicConstraints');
  }
  const kuExt = extensions.get(OID.keyUsage);
  const keyUsage = kuExt === undefined ? NO_KEY_USAGE : parseKeyUsage(kuExt);

  let extKeyUsage: string[] | undefined;
  const eku = extensions.get(OID.extKeyUsage);
  if (eku !== undefined) {
    extKeyUsage = children(parseOne(eku.value, Tag.SEQUENCE), 32).map((n) => decodeOid(expectTag(n, Tag.OID, 'EKU').value));
    if (extKeyUsage.length === 0) fail('empty extKeyUsage');
  }

  const uris: string[] = [];
  const dnsNames: string[] = [];
  const otherSanTags: number[] = [];
  const san = extensions.get(OID.subjectAltName);
  if (san !== undefined) {
    const names = children(parseOne(san.value, Tag.SEQUENCE), 64);
    if (names.length === 0) fail('empty subjectAltName (RFC 5280 4.2.1.6)');
    for (const n of names) {
      if (n.tag === 0x86) uris.push(n.value.toString('latin1'));
      else if (n.tag === 0x82) dnsNames.push(n.value.toString('latin1'));
      else otherSanTags.push(n.tag & 0x1f);
    }
  }

  let subjectKeyId: Buffer | undefined;
  const ski = extensions.get(OID.subjectKeyIdentifier);
  if (ski !== undefined) subjectKeyId = parseOne(ski.value, Tag.OCTET_STRING).value;
  let authorityKeyId: Buffer | undefined;
  const aki = extensions.get(OID.authorityKeyIdentifier);
  if (aki !== undefined) {
    const first = children(parseOne(aki.value, Tag.SEQUENCE))[0];
    if (first?.tag === 0x80) authorityKeyId = first.value;
  }

  let key: KeyObject | undefined;
  return {
    raw: der,
    tbs: tbsNode.raw,
    signatureAlgorithm,
    signature: sigBits.bytes,
    version,
    serial: serialNode.value,
    serialHex: serialNode.value.toString('hex'),
    issuerRaw,
    subjectRaw: subjectNode.raw,
    subjectEmpty: subjectNode.value.length === 0,
    notBefore,
    notAfter,
    spki,
    keyAlgorithm,
    extensions,
    basicConstraintsPresent: bc !== undefined,
    isCA,
    pathLen,
    keyUsage,
    extKeyUsage,
    extKeyUsageCritical: eku?.critical ?? false,
    uris,
    dnsNames,
    otherSanTags,
    sanCritical: san?.critical ?? false,
    subjectKeyId,
    authorityKeyId,
    publicKey(): KeyObject {
      if (key === undefined) {
        try {
          key = importSpki(spki);
        } catch (e) {
          throw new X509Error('x509/unsupported', 'certificate public key cannot be used', { cause: e });
        }
      }
      return key;
    },
  };
}

/** How many distinct certificates `parseCertificateShared` keeps (least recently used dropped first). */
const SHARED_PARSE_MAX = 512;
const sharedParses = new Map<string, ParsedCertificate>();

/**
 * `parseCertificate` for certificates that recur (bundle authorities, signing CAs, SVIDs presented on
 * every connection): parsing is a pure function of the bytes, so results are kept by content (bounded)
 * and one parsed object, with its lazily imported public key, is shared by every caller that hands in the
 * same bytes. The parsed object refers to a private copy of the bytes, never to the caller's buffer.
 * Failures are not kept: bad input throws exactly what `parseCertificate` throws, every time. Callers
 * must treat the result as read-only.
 */
export function parseCertificateShared(der: Buffer): ParsedCertificate {
  if (!Buffer.isBuffer(der) || der.length > MAX_CERT_BYTES) return parseCertificate(der);
  const key = der.toString('latin1');
  let p = sharedParses.get(key);
  if (p === undefined) {
    p = parseCertificate(Buffer.from(der));
    if (sharedParses.size >= SHARED_PARSE_MAX) sharedParses.delete(sharedParses.keys().next().value!);
  } else {
    sharedParses.delete(key); // most recently used last
  }
  sharedParses.set(key, p);
  return p;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----\r?\n([A-Za-z0-9+/=\r\n]+?)-----END CERTIFICATE-----/g;

/** All CERTIFICATE blocks of a PEM text, as DER (bounded count). */
export function certsFromPem(text: string): Buffer[] {
  const out: Buffer[] = [];
  for (const m of text.matchAll(PEM_CERT)) {
    if (out.length >= MAX_CHAIN_CERTS * 8) throw new X509Error('x509/too-large', 'too many certificates in PEM');
    out.push(Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64'));
  }
  return out;
}

export function derToPem(der: Buffer, label: string): string {
  const b64 = der.toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

export function certToPem(der: Buffer): string {
  return derToPem(der, 'CERTIFICATE');
}

/** Split a concatenation of DER certificates (Workload API `x509_svid` / `bundle` fields). */
export function splitDerCerts(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  while (off < buf.length) {
    if (out.length >= MAX_CHAIN_CERTS * 8) throw new X509Error('x509/too-large', 'too many certificates');
    let step: { node: DerNode; next: number };
    try {
      step = readTlv(buf, off);
    } catch (e) {
      fail('malformed DER certificate sequence', e);
    }
    if (step.node.tag !== Tag.SEQUENCE) fail('expected a DER certificate');
    out.push(step.node.raw);
    off = step.next;
  }
  return out;
}
