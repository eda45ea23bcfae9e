/**
 * Factory enrolment checks (issue #6, contract "Cloud" factory path), pure functions of (chain, the model's
 * factory CAs, the Device's serial, now):
 *
 * - the manufacturer chain (leaf first, strict DER X.509 v3: `parseCertificate`) builds a path at `now` to one
 *   of the DeviceModel's `factoryCAs` (RFC 5280 6.1: issuer name and key identifiers chain, signature, every
 *   certificate in its validity period, every issuer a CA with keyCertSign when key usage is present, path
 *   length constraints, no unhandled critical extension);
 * - the leaf is not a CA (basicConstraints cA), and may sign (digitalSignature when key usage is present: it
 *   proved possession in the TLS handshake at the edge);
 * - the leaf subject has exactly one serialNumber attribute (X.520 / RFC 5280 A.1 `X520SerialNumber`, OID
 *   2.5.4.5, the IEEE 802.1AR IDevID convention) equal to the Device's `spec.factoryIdentity.serialNumber`.
 *
 * The serialNumber is read from the DER subject, never from a printed form of the name: a printed subject
 * escapes `+` and `,` inside values, so a commonName such as `x+serialNumber=SN-1` must not pass as a serial.
 */
import {
  certIssuedBy,
  certsFromPem,
  certSignedBy,
  OID,
  parseCertificate,
  X509Error,
  type ParsedCertificate,
} from '../../identity/index.js';

/** Longest factory chain looked at (leaf and intermediates). */
export const MAX_FACTORY_CHAIN_CERTS = 8;

/** Extensions whose meaning the path check handles (RFC 5280 6.1.4 (o): any other critical one refuses). */
const HANDLED_EXTENSIONS: ReadonlySet<string> = new Set([
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage,
  OID.subjectAltName,
  OID.subjectKeyIdentifier,
  OID.authorityKeyIdentifier,
]);

const PRINTABLE_STRING = 0x13;
const UTF8_STRING = 0x0c;

class NameError extends Error {}

interface Tlv {
  tag: number;
  start: number;
  end: number;
}

/** One DER TLV at `off` within [off, limit): single-byte tags, definite minimal lengths (X.690 10.1). */
function readTlv(buf: Buffer, off: number, limit: number): Tlv {
  if (off + 2 > limit) throw new NameError('truncated name');
  const tag = buf[off]!;
  let len = buf[off + 1]!;
  let start = off + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 3 || start + n > limit) throw new NameError('bad length in name');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[start + i]!;
    if (len < 0x80 || (n > 1 && buf[start] === 0)) throw new NameError('non-minimal length in name');
    start += n;
  }
  const end = start + len;
  if (end > limit) throw new NameError('truncated name');
  return { tag, start, end };
}

const SERIAL_NUMBER_OID_DER = Buffer.from([0x55, 0x04, 0x05]); // 2.5.4.5 id-at-serialNumber

/**
 * The values of every serialNumber attribute (OID 2.5.4.5) of a certificate's subject, from the DER Name
 * (single- and multi-valued RDNs alike). A value that is not a PrintableString or UTF8String is returned as
 * `undefined` (it never matches). Throws on a malformed name.
 */
export function subjectSerialNumbers(cert: ParsedCertificate): Array<string | undefined> {
  const name = cert.subjectRaw;
  const top = readTlv(name, 0, name.length);
  if (top.tag !== 0x30 || top.end !== name.length) throw new NameError('the subject is not a SEQUENCE');
  const out: Array<string | undefined> = [];
  for (let off = top.start; off < top.end; ) {
    const rdn = readTlv(name, off, top.end);
    if (rdn.tag !== 0x31) throw new NameError('a subject RDN is not a SET');
    for (let a = rdn.start; a < rdn.end; ) {
      const atv = readTlv(name, a, rdn.end);
      if (atv.tag !== 0x30) throw new NameError('a subject attribute is not a SEQUENCE');
      const type = readTlv(name, atv.start, atv.end);
      if (type.tag !== 0x06) throw new NameError('a subject attribute type is not an OID');
      const value = readTlv(name, type.end, atv.end);
      if (value.end !== atv.end) throw new NameError('trailing data in a subject attribute');
      if (name.subarray(type.start, type.end).equals(SERIAL_NUMBER_OID_DER)) {
        const text = value.tag === PRINTABLE_STRING || value.tag === UTF8_STRING ? name.subarray(value.start, value.end).toString('utf8') : undefined;
        out.push(text);
      }
      a = atv.end;
    }
    off = rdn.end;
  }
  return out;
}

const unhandledCritical = (c: ParsedCertificate): string | undefined => {
  for (const [oid, ext] of c.extensions) if (ext.critical && !HANDLED_EXTENSIONS.has(oid)) return oid;
  return undefined;
};

const validAt = (c: ParsedCertificate, now: number): boolean => c.notBefore <= now && now <= c.notAfter;

/** RFC 5280 6.1.4 (k), (l), (m), (n), (o) and 6.1.3 (a)(2) for a certificate that signs `intermediatesBelow` + 1 below it. */
const canIssue = (c: ParsedCertificate, intermediatesBelow: number, now: number, anchor: boolean): boolean =>
  c.basicConstraintsPresent &&
  c.isCA &&
  (!c.keyUsage.present || c.keyUsage.keyCertSign) &&
  (c.pathLen === undefined || intermediatesBelow <= c.pathLen) &&
  (anchor || unhandledCritical(c) === undefined) &&
  validAt(c, now);

const parse = (der: Buffer): ParsedCertificate | undefined => {
  try {
    return parseCertificate(der);
  } catch (e) {
    if (e instanceof X509Error) return undefined;
    throw e;
  }
};

/**
 * Why a factory chain (leaf first, DER) does not verify at `now` to one of `anchorsPem` for the device serial
 * `serial`, or undefined when it does. The reasons are for the cloud's log, not for the peer.
 */
export function factoryChainProblem(chainDer: readonly Buffer[], anchorsPem: readonly string[], serial: string, now: number): string | undefined {
  if (!Array.isArray(chainDer) || chainDer.length === 0) return 'no factory certificate';
  if (chainDer.length > MAX_FACTORY_CHAIN_CERTS) return 'factory chain too long';
  const certs: ParsedCertificate[] = [];
  for (const der of chainDer) {
    const c = parse(der);
    if (c === undefined) return 'factory certificate malformed';
    certs.push(c);
  }
  const anchors: ParsedCertificate[] = [];
  for (const p of anchorsPem) {
    let ders: Buffer[];
    try {
      ders = certsFromPem(p);
    } catch {
      return 'model factory CA malformed';
    }
    for (const der of ders) {
      const c = parse(der);
      if (c === undefined) return 'model factory CA malformed';
      anchors.push(c);
    }
  }
  if (anchors.length === 0) return 'the device model lists no factory CAs';

  const leaf = certs[0]!;
  if (leaf.isCA) return 'factory leaf is a CA';
  if (leaf.keyUsage.present && !leaf.keyUsage.digitalSignature) return 'factory leaf lacks the digitalSignature key usage';
  const critical = unhandledCritical(leaf);
  if (critical !== undefined) return `factory leaf has an unhandled critical extension ${critical}`;
  if (!validAt(leaf, now)) return 'factory leaf outside its validity period';
  let serials: Array<string | undefined>;
  try {
    serials = subjectSerialNumbers(leaf);
  } catch {
    return 'factory leaf subject malformed';
  }
  if (serials.length !== 1) return 'factory leaf subject has no single serialNumber';
  if (serials[0] !== serial) return 'factory serialNumber does not match the device';

  // Path building (RFC 5280 6.1): an anchor that issued the current certificate ends the path; else an unused
  // intermediate from the chain that issued it.
  const issued = (child: ParsedCertificate, parent: ParsedCertificate): boolean => certIssuedBy(child, parent) && certSignedBy(child, parent);
  const used = new Set<number>([0]);
  let current = leaf;
  for (let below = 0; below < MAX_FACTORY_CHAIN_CERTS; below++) {
    if (anchors.some((a) => canIssue(a, below, now, true) && issued(current, a))) return undefined;
    const next = certs.findIndex((c, i) => !used.has(i) && canIssue(c, below, now, false) && issued(current, c));
    if (next < 0) break;
    used.add(next);
    current = certs[next]!;
  }
  return 'factory chain does not verify to a factory CA of the model';
}
