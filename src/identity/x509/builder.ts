/**
 * Building and signing X.509 v3 certificates (RFC 5280 4.1) from a template. Only the issuer decides
 * what goes in: callers pass a complete template, never fields copied from a request.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  bitString,
  boolean,
  children,
  decodeBitString,
  expectTag,
  parseOne,
  explicit,
  octetString,
  oid,
  seq,
  set,
  smallUint,
  tlv,
  time,
  uintBytes,
  utf8,
  Tag,
} from '../asn1/der.js';
import { OID } from './oids.js';
import type { Signer } from './signer.js';

export interface ExtensionSpec {
  oid: string;
  critical: boolean;
  /** DER of the extension value (the content of extnValue). */
  value: Buffer;
}

export interface CertTemplate {
  serial: Buffer;
  issuer: Buffer;
  subject: Buffer;
  notBefore: number;
  notAfter: number;
  spki: Buffer;
  extensions: ExtensionSpec[];
}

/** A random positive serial of 16 bytes (RFC 5280 4.1.2.2: positive, at most 20 octets; CA/B: >= 64 bits of entropy). */
const SERIAL_POOL_SIZE = 4096;
let serialPool = Buffer.alloc(0);
let serialOffset = SERIAL_POOL_SIZE;
export function randomSerial(): Buffer {
  // Draw from a pooled CSPRNG buffer (one randomFillSync per 256 serials); each serial is a fresh copy.
  if (serialOffset + 16 > serialPool.length) {
    serialPool = randomBytes(SERIAL_POOL_SIZE);
    serialOffset = 0;
  }
  const b = Buffer.from(serialPool.subarray(serialOffset, serialOffset + 16));
  serialPool.fill(0, serialOffset, serialOffset + 16);
  serialOffset += 16;
  b[0] = (b[0]! & 0x7f) | 0x40; // positive, and always 16 significant octets (RFC 5280 4.1.2.2)
  return b;
}

/** A Name from (attribute OID, value) pairs, one RDN each, values as UTF8String (PrintableString for C). */
export function encodeName(attrs: ReadonlyArray<readonly [string, string]>): Buffer {
  return seq(
    ...attrs.map(([type, value]) =>
      set(seq(oid(type), type === OID.countryName ? tlv(Tag.PRINTABLE_STRING, Buffer.from(value, 'latin1')) : utf8(value))),
    ),
  );
}

export const EMPTY_NAME: Buffer = seq();

/** Key identifier per RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING bits. */
export function keyIdentifier(spki: Buffer): Buffer {
  // (excluding tag, length and the unused-bits octet). A P-256 SPKI has a fixed 26-byte header.
  const bits = spki.length === 91 ? spki.subarray(26) : decodeBitString(expectTag(children(parseOne(spki, Tag.SEQUENCE))[1], Tag.BIT_STRING, 'SPKI key').value).bytes;
  return createHash('sha1').update(bits).digest();
}

const KU_BITS = {
  digitalSignature: 0,
  keyEncipherment: 2,
  keyAgreement: 4,
  keyCertSign: 5,
  cRLSign: 6,
} as const;
export type KeyUsageName = keyof typeof KU_BITS;

export function keyUsageExt(usages: KeyUsageName[]): ExtensionSpec {
  let v = 0;
  for (const u of usages) v |= 0x80 >> KU_BITS[u];
  // DER BIT STRING: drop trailing zero bits (X.690 11.2.2).
  let unused = 0;
  while (unused < 7 && ((v >> unused) & 1) === 0) unused++;
  return { oid: OID.keyUsage, critical: true, value: bitString(Buffer.from([v]), unused) };
}

export function basicConstraintsExt(ca: boolean, pathLen?: number): ExtensionSpec {
  const parts: Buffer[] = [];
  if (ca) parts.push(boolean(true));
  if (ca && pathLen !== undefined) parts.push(smallUint(pathLen));
  return { oid: OID.basicConstraints, critical: true, value: seq(...parts) };
}

export function extKeyUsageExt(oids: string[]): ExtensionSpec {
  return { oid: OID.extKeyUsage, critical: false, value: seq(...oids.map(oid)) };
}

export function subjectAltNameExt(uris: string[], dnsNames: string[], critical: boolean): ExtensionSpec {
  const names = [
    ...uris.map((u) => tlv(0x86, Buffer.from(u, 'latin1'))),
    ...dnsNames.map((d) => tlv(0x82, Buffer.from(d, 'latin1'))),
  ];
  return { oid: OID.subjectAltName, critical, value: seq(...names) };
}

export function subjectKeyIdExt(spki: Buffer): ExtensionSpec {
  return { oid: OID.subjectKeyIdentifier, critical: false, value: octetString(keyIdentifier(spki)) };
}

export function authorityKeyIdExt(keyId: Buffer): ExtensionSpec {
  return { oid: OID.authorityKeyIdentifier, critical: false, value: seq(tlv(0x80, keyId)) };
}

/** Assemble the TBSCertificate, sign it with `signer` and return the certificate DER. */
/** The DER `Extension` structure (RFC 5280 4.1): extnID, critical (only when TRUE, per DER), extnValue. */
export function encodeExtension(e: ExtensionSpec): Buffer {
  return e.critical ? seq(oid(e.oid), boolean(true), octetString(e.value)) : seq(oid(e.oid), octetString(e.value));
}

const encodedCache = new WeakMap<ExtensionSpec, Buffer>();
/** Freeze an extension whose value never changes (profiles share them); its encoding is computed once. */
export function constantExtension(e: ExtensionSpec): ExtensionSpec {
  const frozen = Object.freeze({ ...e });
  encodedCache.set(frozen, encodeExtension(frozen));
  return frozen;
}

export function buildCertificate(t: CertTemplate, signer: Signer): Buffer {
  const sigAlg = seq(oid(signer.signatureAlgorithm));
  const exts = t.extensions.map((e) => encodedCache.get(e) ?? encodeExtension(e));
  const tbs = seq(
    explicit(0, smallUint(2)), // v3
    uintBytes(t.serial),
    sigAlg,
    t.issuer,
    seq(time(t.notBefore), time(t.notAfter)),
    t.subject,
    t.spki,
    explicit(3, seq(...exts)),
  );
  return seq(tbs, sigAlg, bitString(signer.sign(tbs)));
}
