/**
 * A small, strict DER (X.690) reader and writer: just what X.509 certificates, CSRs, SPKI and PKCS#8
 * need. Reading is zero-copy (values are views into the input) and bounded (depth, lengths); anything
 * that is not canonical DER (indefinite or non-minimal lengths, trailing bytes) is rejected.
 */
import { EdgewardError } from '../errors.js';

export type DerErrorCode = 'der/truncated' | 'der/bad-length' | 'der/unexpected-tag' | 'der/trailing-data' | 'der/bad-value';
export class DerError extends EdgewardError<DerErrorCode> {}

export const Tag = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** One TLV element; `value` and `raw` are views into the original buffer. */
export interface DerNode {
  tag: number;
  /** The content octets. */
  value: Buffer;
  /** The whole TLV (tag, length and content). */
  raw: Buffer;
}

/** Read one TLV at `offset`; returns the node and the offset just after it. */
export function readTlv(buf: Buffer, offset: number): { node: DerNode; next: number } {
  if (offset + 2 > buf.length) throw new DerError('der/truncated', 'DER element is truncated');
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('der/unexpected-tag', 'multi-byte DER tags are not supported');
  let len = buf[offset + 1]!;
  let p = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0) throw new DerError('der/bad-length', 'indefinite length is not DER');
    if (n > 4) throw new DerError('der/bad-length', 'DER length is too large');
    if (p + n > buf.length) throw new DerError('der/truncated', 'DER length is truncated');
    if (buf[p] === 0) throw new DerError('der/bad-length', 'non-minimal DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p + i]!;
    if (len < 0x80) throw new DerError('der/bad-length', 'non-minimal DER length');
    p += n;
  }
  const end = p + len;
  if (end > buf.length) throw new DerError('der/truncated', 'DER content is truncated');
  return { node: { tag, value: buf.subarray(p, end), raw: buf.subarray(offset, end) }, next: end };
}

/** Parse exactly one element spanning the whole buffer. */
export function parseOne(buf: Buffer, expectedTag?: number): DerNode {
  const { node, next } = readTlv(buf, 0);
  if (next !== buf.length) throw new DerError('der/trailing-data', 'trailing bytes after DER element');
  if (expectedTag !== undefined && node.tag !== expectedTag) {
    throw new DerError('der/unexpected-tag', `expected DER tag 0x${expectedTag.toString(16)}, got 0x${node.tag.toString(16)}`);
  }
  return node;
}

/** The children of a constructed element (SEQUENCE, SET, [n] EXPLICIT). Bounded by `max`. */
export function children(node: DerNode, max = 4096): DerNode[] {
  if ((node.tag & 0x20) === 0) throw new DerError('der/unexpected-tag', 'expected a constructed DER element');
  const out: DerNode[] = [];
  let off = 0;
  while (off < node.value.length) {
    if (out.length >= max) throw new DerError('der/bad-value', 'too many DER elements');
    const { node: child, next } = readTlv(node.value, off);
    out.push(child);
    off = next;
  }
  return out;
}

export function expectTag(node: DerNode | undefined, tag: number, what: string): DerNode {
  if (node === undefined) throw new DerError('der/truncated', `missing ${what}`);
  if (node.tag !== tag) {
    throw new DerError('der/unexpected-tag', `${what}: expected tag 0x${tag.toString(16)}, got 0x${node.tag.toString(16)}`);
  }
  return node;
}

/** Decode an OBJECT IDENTIFIER's content to dotted form. */
export function decodeOid(value: Buffer): string {
  if (value.length === 0 || value.length > 64) throw new DerError('der/bad-value', 'bad OID length');
  const parts: number[] = [];
  let acc = 0;
  for (let i = 0; i < value.length; i++) {
    const b = value[i]!;
    if (acc === 0 && b === 0x80) throw new DerError('der/bad-value', 'non-minimal OID arc');
    acc = acc * 128 + (b & 0x7f);
    if (acc > Number.MAX_SAFE_INTEGER / 128) throw new DerError('der/bad-value', 'OID arc too large');
    if ((b & 0x80) === 0) {
      parts.push(acc);
      acc = 0;
    } else if (i === value.length - 1) {
      throw new DerError('der/bad-value', 'truncated OID arc');
    }
  }
  const first = parts[0]!;
  const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...head, ...parts.slice(1)].join('.');
}

export function decodeBoolean(value: Buffer): boolean {
  if (value.length !== 1 || (value[0] !== 0 && value[0] !== 0xff)) throw new DerError('der/bad-value', 'bad DER BOOLEAN');
  return value[0] === 0xff;
}

/** A BIT STRING's content: unused-bit count then the bits. */
export function decodeBitString(value: Buffer): { unused: number; bytes: Buffer } {
  if (value.length === 0) throw new DerError('der/bad-value', 'empty BIT STRING');
  const unused = value[0]!;
  if (unused > 7 || (unused > 0 && value.length === 1)) throw new DerError('der/bad-value', 'bad BIT STRING padding');
  return { unused, bytes: value.subarray(1) };
}

/** A small non-negative INTEGER (e.g. a version or a path length). */
export function decodeSmallUint(value: Buffer): number {
  if (value.length === 0 || value.length > 4) throw new DerError('der/bad-value', 'INTEGER out of range');
  if (value[0]! & 0x80) throw new DerError('der/bad-value', 'negative INTEGER');
  if (value.length > 1 && value[0] === 0 && (value[1]! & 0x80) === 0) throw new DerError('der/bad-value', 'non-minimal INTEGER');
  let n = 0;
  for (const b of value) n = n * 256 + b;
  return n;
}

/** UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ) to epoch ms, per RFC 5280 4.1.2.5. */
export function decodeTime(node: DerNode): number {
  const s = node.value.toString('latin1');
  let m: RegExpExecArray | null;
  let year: number;
  if (node.tag === Tag.UTC_TIME) {
    m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
    if (!m) throw new DerError('der/bad-value', 'bad UTCTime');
    const yy = Number(m[1]);
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
  } else if (node.tag === Tag.GENERALIZED_TIME) {
    m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
    if (!m) throw new DerError('der/bad-value', 'bad GeneralizedTime');
    year = Number(m[1]);
  } else {
    throw new DerError('der/unexpected-tag', 'expected a time');
  }
  const [mo, d, h, mi, se] = [m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number];
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 59) throw new DerError('der/bad-value', 'time out of range');
  return Date.UTC(year, mo - 1, d, h, mi, se);
}

// ---------------------------------------------------------------- writer

function encodeLength(len: number): Buffer {
  if (len < 0x80) return Buffer.from([len]);
  const bytes: number[] = [];
  for (let n = len; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export function tlv(tag: number, ...contents: Buffer[]): Buffer {
  let len = 0;
  for (const c of contents) len += c.length;
  const hdr = len < 0x80 ? 2 : len < 0x100 ? 3 : len < 0x10000 ? 4 : 5;
  const out = Buffer.allocUnsafe(hdr + len);
  out[0] = tag;
  if (hdr === 2) out[1] = len;
  else encodeLength(len).copy(out, 1);
  let off = hdr;
  for (const c of contents) {
    c.copy(out, off);
    off += c.length;
  }
  return out;
}

export const seq = (...items: Buffer[]): Buffer => tlv(Tag.SEQUENCE, ...items);
export const set = (...items: Buffer[]): Buffer => tlv(Tag.SET, ...items);
/** [n] EXPLICIT (constructed, context-specific). */
export const explicit = (n: number, inner: Buffer): Buffer => tlv(0xa0 | n, inner);
export const octetString = (b: Buffer): Buffer => tlv(Tag.OCTET_STRING, b);
export const bitString = (b: Buffer, unused = 0): Buffer => tlv(Tag.BIT_STRING, Buffer.from([unused]), b);
export const derNull = (): Buffer => Buffer.from([0x05, 0x00]);
export const boolean = (v: boolean): Buffer => Buffer.from([0x01, 0x01, v ? 0xff : 0x00]);
export const utf8 = (s: string): Buffer => tlv(Tag.UTF8_STRING, Buffer.from(s, 'utf8'));

/** An unsigned INTEGER from big-endian magnitude bytes (adds a leading 0 when the top bit is set). */
export function uintBytes(mag: Buffer): Buffer {
  let i = 0;
  while (i < mag.length - 1 && mag[i] === 0) i++;
  const m = mag.subarray(i);
  return tlv(Tag.INTEGER, m[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), m]) : m);
}
export function smallUint(n: number): Buffer {
  const bytes: number[] = [];
  let v = n;
  do {
    bytes.unshift(v & 0xff);
    v = Math.floor(v / 256);
  } while (v > 0);
  return uintBytes(Buffer.from(bytes));
}

const oidCache = new Map<string, Buffer>();
export function oid(dotted: string): Buffer {
  const hit = oidCache.get(dotted);
  if (hit) return hit;
  const arcs = dotted.split('.').map(Number);
  const out: number[] = [arcs[0]! * 40 + arcs[1]!];
  for (const arc of arcs.slice(2)) {
    const chunk: number[] = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  const enc = tlv(Tag.OID, Buffer.from(out));
  oidCache.set(dotted, enc);
  return enc;
}

/** RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; whole seconds. */
export function time(ms: number): Buffer {
  const d = new Date(Math.floor(ms / 1000) * 1000);
  const y = d.getUTCFullYear();
  const p2 = (n: number): string => String(n).padStart(2, '0');
  const rest = `${p2(d.getUTCMonth() + 1)}${p2(d.getUTCDate())}${p2(d.getUTCHours())}${p2(d.getUTCMinutes())}${p2(d.getUTCSeconds())}Z`;
  if (y >= 1950 && y < 2050) return tlv(Tag.UTC_TIME, Buffer.from(p2(y % 100) + rest, 'latin1'));
  return tlv(Tag.GENERALIZED_TIME, Buffer.from(String(y).padStart(4, '0') + rest, 'latin1'));
}
