/**
 * PKCS#10 certification requests (RFC 2986). The only thing Edgeward takes from a CSR is its public key,
 * and only after the CSR's self-signature proves possession of the matching private key. Subject,
 * requested extensions, SANs, key usages, basic constraints and lifetimes in the CSR are ignored: the
 * issuer decides them (issue #2: "identity ... decided by the issuer, never copied from the CSR").
 */
import { verify as cryptoVerify } from 'node:crypto';
import { EdgewardError } from '../errors.js';
import { children, decodeBitString, decodeOid, decodeSmallUint, DerError, expectTag, parseOne, Tag } from '../asn1/der.js';
import { importSpki, KeyError } from './keys.js';
import { SIG_ALG_HASH } from './oids.js';

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
