/**
 * PKCS#10 certification requests (RFC 2986). The only thing Edgeward takes from a CSR is its public key,
 * and only after the CSR's self-signature proves possession of the matching private key. Subject,
 * requested extensions, SANs, key usages, basic constraints and lifetimes in the CSR are ignored: the
 * issuer decides them (issue #2: "identity ... decided by the issuer, never copied from the CSR").
 */
import { sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { EdgewardError } from '../errors.js';
import { bitString, children, decodeBitString, decodeOid, decodeSmallUint, derNull, DerError, expectTag, oid, parseOne, seq, Tag, tlv } from '../asn1/der.js';
import { importSpki, KeyError } from './keys.js';
import { OID, SIG_ALG_HASH } from './oids.js';

export type CsrErrorCode = 'csr/malformed' | 'csr/too-large' | 'csr/bad-signature' | 'csr/unsupported-key';
export class CsrError extends EdgewardError<CsrErrorCode> {}

export const MAX_CSR_BYTES = 8 * 1024;

export interface VerifiedCsr {
  /** The requester's SubjectPublicKeyInfo DER: the only field an issuer may use. */
  spki: Buffer;
}

/** Parse a DER PKCS#10 request and verify its signature. */
export function verifyCsr(der: Buffer): VerifiedCsr {
  if (!Buffer.isBuffer(der)) throw new CsrError('csr/malformed', 'CSR must be bytes');
  if (der.length > MAX_CSR_BYTES) throw new CsrError('csr/too-large', `CSR is larger than ${MAX_CSR_BYTES} bytes`);
  let info: Buffer;
  let spki: Buffer;
  let hash: string | undefined;
  let signature: Buffer;
  try {
    const top = children(parseOne(der, Tag.SEQUENCE), 3);
    if (top.length !== 3) throw new CsrError('csr/malformed', 'a CSR has exactly three parts');
    const infoNode = expectTag(top[0], Tag.SEQUENCE, 'certificationRequestInfo');
    info = infoNode.raw;
    const fields = children(infoNode, 4);
    if (decodeSmallUint(expectTag(fields[0], Tag.INTEGER, 'version').value) !== 0) {
      throw new CsrError('csr/malformed', 'CSR version must be 0 (RFC 2986 4.1)');
    }
    expectTag(fields[1], Tag.SEQUENCE, 'subject');
    spki = expectTag(fields[2], Tag.SEQUENCE, 'subjectPKInfo').raw;
    const alg = decodeOid(expectTag(children(expectTag(top[1], Tag.SEQUENCE, 'signatureAlgorithm'))[0], Tag.OID, 'alg').value);
    hash = SIG_ALG_HASH[alg];
    const bits = decodeBitString(expectTag(top[2], Tag.BIT_STRING, 'signature').value);
    if (bits.unused !== 0) throw new CsrError('csr/malformed', 'signature has unused bits');
    signature = bits.bytes;
  } catch (e) {
    if (e instanceof CsrError) throw e;
    if (e instanceof DerError) throw new CsrError('csr/malformed', `malformed CSR: ${e.message}`, { cause: e });
    throw e;
  }
  if (hash === undefined) throw new CsrError('csr/unsupported-key', 'unsupported CSR signature algorithm');
  let ok: boolean;
  try {
    ok = cryptoVerify(hash, info, importSpki(spki), signature);
  } catch (e) {
    if (e instanceof KeyError) {
      throw new CsrError(e.code === 'key/unsupported' ? 'csr/unsupported-key' : 'csr/malformed', e.message, { cause: e });
    }
    ok = false;
  }
  if (!ok) throw new CsrError('csr/bad-signature', 'CSR signature does not verify (no proof of possession)');
  return { spki };
}

/** What `buildCsr` needs: the public key and the matching private key (a KeyPair or a Signer). */
export interface CsrKey {
  readonly spki: Buffer;
  readonly privateKey: KeyObject;
}

/**
 * A minimal PKCS#10 request (RFC 2986 4) that only proves possession of `key`: empty subject, no
 * attributes, signed with ECDSA-SHA256 (P-256) or SHA256-RSA. The issuer decides everything else, so
 * there is nothing else worth sending.
 */
export function buildCsr(key: CsrKey): Buffer {
  if (!Buffer.isBuffer(key.spki) || key.privateKey?.type !== 'private') throw new CsrError('csr/unsupported-key', 'a CSR needs an SPKI and its private key');
  const kind = key.privateKey.asymmetricKeyType;
  const alg = kind === 'ec' ? OID.ecdsaWithSha256 : kind === 'rsa' ? OID.sha256WithRsa : undefined;
  if (alg === undefined) throw new CsrError('csr/unsupported-key', 'CSR keys must be ECDSA or RSA');
  // certificationRequestInfo: version 0, empty Name, SubjectPublicKeyInfo, attributes [0] IMPLICIT SET OF (empty).
  const info = seq(tlv(Tag.INTEGER, Buffer.from([0])), seq(), key.spki, Buffer.from([0xa0, 0x00]));
  const signature = cryptoSign('sha256', info, key.privateKey);
  const der = seq(info, seq(oid(alg), ...(kind === 'rsa' ? [derNull()] : [])), bitString(signature));
  if (der.length > MAX_CSR_BYTES) throw new CsrError('csr/too-large', `CSR is larger than ${MAX_CSR_BYTES} bytes`);
  return der;
}
