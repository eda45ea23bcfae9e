/**
 * The edge TPM driver's input handling (no TPM needed): the `--tpm` TCTI string, EK certificate
 * decoding (NV padding, PEM), the tpm2-tools credential file layout, and option validation.
 * The driver against a real TPM is in test/integration/tpm-attestation.test.ts.
 */
import { describe, expect, it } from 'vitest';
import {
  decodeEkCertificate,
  encodeCredentialFile,
  parseTpmTcti,
  runTpm2,
  TpmAgentSession,
  TpmDriverError,
  type TpmDriverErrorCode,
} from '../../../src/edge/tpm/index.js';
import { certToPem } from '../../../src/identity/index.js';
import { EK_CERT_HEX } from '../attestation/tpm-fixtures.js';

async function codeOf(f: () => unknown): Promise<TpmDriverErrorCode | string> {
  try {
    await f();
  } catch (e) {
    if (e instanceof TpmDriverError) return e.code;
    return `not a TpmDriverError: ${String(e)}`;
  }
  return 'no error';
}

describe('--tpm TCTI strings', () => {
  it('accepts swtpm with an IP literal and a port, and kernel devices', () => {
    expect(parseTpmTcti('swtpm:host=127.0.0.1,port=2321')).toEqual({ kind: 'swtpm', host: '127.0.0.1', port: 2321, tcti: 'swtpm:host=127.0.0.1,port=2321' });
    expect(parseTpmTcti('swtpm:host=::1,port=65534')).toMatchObject({ kind: 'swtpm', host: '::1', port: 65534 });
    expect(parseTpmTcti('device:/dev/tpmrm0')).toEqual({ kind: 'device', path: '/dev/tpmrm0', tcti: 'device:/dev/tpmrm0' });
    expect(parseTpmTcti('device:/dev/tpm1')).toMatchObject({ path: '/dev/tpm1' });
  });

  it.each([
    '',
    'swtpm',
    'swtpm:',
    'swtpm:host=localhost,port=2321', // a name, not an IP literal
    'swtpm:host=127.0.0.1', // no port
    'swtpm:port=2321,host=127.0.0.1', // fixed order
    'swtpm:host=127.0.0.1,port=0',
    'swtpm:host=127.0.0.1,port=02321',
    'swtpm:host=127.0.0.1,port=65535', // port + 1 is the control port
    'swtpm:host=127.0.0.1,port=99999',
    'swtpm:host=127.0.0.1,port=2321,extra=1',
    'swtpm:host=127.0.0.1,port=2321 ',
    'swtpm:host=999.0.0.1,port=2321',
    'swtpm:host=fe80::1%eth0,port=2321',
    'mssim:host=127.0.0.1,port=2321',
    'device:/dev/sda',
    'device:/dev/tpm0;rm -rf /',
    'device:/dev/tpmrm0/../sda',
    'abrmd',
    `swtpm:host=${'1'.repeat(200)},port=1`,
  ])('refuses %j', async (v) => {
    expect(await codeOf(() => parseTpmTcti(v))).toBe('tpm-driver/bad-tcti');
  });

  it('refuses non-strings', async () => {
    expect(await codeOf(() => parseTpmTcti(42 as unknown as string))).toBe('tpm-driver/bad-tcti');
  });
});

describe('EK certificate decoding', () => {
  const der = Buffer.from(EK_CERT_HEX, 'hex');
  it('takes DER as is, cuts NV padding, and reads PEM', () => {
    expect(decodeEkCertificate(der).equals(der)).toBe(true);
    expect(decodeEkCertificate(Buffer.concat([der, Buffer.alloc(100, 0xff)])).equals(der)).toBe(true);
    expect(decodeEkCertificate(Buffer.concat([der, Buffer.alloc(7)])).equals(der)).toBe(true);
    expect(decodeEkCertificate(Buffer.from(certToPem(der))).equals(der)).toBe(true);
  });

  it('refuses truncated DER, trailing data, non-certificates', async () => {
    expect(await codeOf(() => decodeEkCertificate(der.subarray(0, der.length - 1)))).toBe('tpm-driver/no-ek-cert');
    expect(await codeOf(() => decodeEkCertificate(Buffer.concat([der, Buffer.from('junk')])))).toBe('tpm-driver/no-ek-cert');
    expect(await codeOf(() => decodeEkCertificate(Buffer.from('hello world')))).toBe('tpm-driver/no-ek-cert');
    expect(await codeOf(() => decodeEkCertificate(Buffer.from('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n')))).toBe('tpm-driver/no-ek-cert');
  });
});

describe('tpm2-tools credential file', () => {
  it('is magic 0xBADCC0DE, version 1, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET', () => {
    const f = encodeCredentialFile(Buffer.alloc(68, 1), Buffer.alloc(256, 2));
    expect(f.subarray(0, 8).toString('hex')).toBe('badcc0de00000001');
    expect(f.readUInt16BE(8)).toBe(68);
    expect(f.readUInt16BE(10 + 68)).toBe(256);
    expect(f.length).toBe(8 + 2 + 68 + 2 + 256);
  });
});

describe('TpmAgentSession options', () => {
  it('validates before touching the file system or the TPM', async () => {
    expect(await codeOf(() => TpmAgentSession.open({ tcti: 'swtpm:host=example.com,port=1' }))).toBe('tpm-driver/bad-tcti');
    expect(await codeOf(() => TpmAgentSession.open({ tcti: 'device:/dev/tpmrm0', timeoutMs: 5 }))).toBe('tpm-driver/bad-option');
    expect(await codeOf(() => TpmAgentSession.open({ tcti: 'device:/dev/tpmrm0', pcrSelection: 'sha256:0;1' }))).toBe('tpm-driver/bad-option');
    expect(await codeOf(() => TpmAgentSession.open({ tcti: 'device:/dev/tpmrm0', pcrSelection: 'sha256:24' }))).toBe('tpm-driver/bad-option');
    expect(await codeOf(() => TpmAgentSession.open({ tcti: 'device:/dev/tpmrm0', akAlgorithm: 'dsa' as 'ecc' }))).toBe('tpm-driver/bad-option');
    expect(await codeOf(() => runTpm2(parseTpmTcti('device:/dev/tpmrm0'), 'sh', ['-c', 'id'], { cwd: '/' }))).toBe('tpm-driver/bad-option');
  });

  it('refuses respond() before collect() and any use after close()', async () => {
    const s = await TpmAgentSession.open({ tcti: 'device:/dev/tpmrm0' });
    expect(await codeOf(() => s.respond({ credentialBlob: Buffer.alloc(1), encryptedSecret: Buffer.alloc(1), nonce: Buffer.alloc(1) }))).toBe('tpm-driver/closed');
    await s.close();
    await s.close(); // idempotent
    expect(await codeOf(() => s.collect())).toBe('tpm-driver/closed');
  });
});
