/**
 * Factory enrolment checks (issue #6, contract "Cloud" factory path): the manufacturer chain (leaf first)
 * verifies at `now` to one of the model's factoryCAs (RFC 5280 6.1: issuer name, signature, validity,
 * issuers are CAs), the leaf is not a CA, and the leaf subject's serialNumber (OID 2.5.4.5) equals the
 * Device's factoryIdentity.serialNumber. Certificates made by openssl.
 */
import { X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { factoryChainProblem, subjectSerialNumbers } from '../../../src/cloud/devices/index.js';
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
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
`;
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
let dir = '';
let serial = 1;
const pem: Record<string, string> = {};
const der: Record<string, Buffer> = {};

async function load(name: string): Promise<void> {
  pem[name] = await readFile(join(dir, `${name}.pem`), 'utf8');
  der[name] = certsFromPem(pem[name]!)[0]!;
}
async function root(name: string, subj: string): Promise<void> {
  await openssl(['req', '-x509', '-config', join(dir, 'cnf'), '-extensions', 'ca', ...EC, '-nodes', '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.pem`), '-days', '30', '-subj', subj]);
  await load(name);
}
async function cert(name: string, subj: string, issuer: string, ext: 'ca' | 'leaf', days = '30'): Promise<void> {
  const csr = join(dir, `${name}.csr`);
  await openssl(['req', '-new', '-config', join(dir, 'cnf'), ...EC, '-nodes', '-keyout', join(dir, `${name}.key`), '-out', csr, '-subj', subj]);
  await openssl([
    'x509', '-req', '-in', csr, '-CA', join(dir, `${issuer}.pem`), '-CAkey', join(dir, `${issuer}.key`), '-set_serial', String(serial++),
    '-days', days, '-extfile', join(dir, 'cnf'), '-extensions', ext, '-out', join(dir, `${name}.pem`),
  ]);
  await load(name);
}

beforeAll(async () => {
  dir = await tempDir('edgeward-device-factory-');
  await writeFile(join(dir, 'cnf'), CNF);
  await root('maker', '/O=Maker/CN=Maker Root');
  await root('impostor', '/O=Maker/CN=Maker Root'); // same name, another key
  await cert('inter', '/O=Maker/CN=Maker Line 1', 'maker', 'ca');
  await cert('leaf', '/O=Maker/CN=thermo/serialNumber=SN-0001', 'maker', 'leaf');
  await cert('leafViaInter', '/O=Maker/CN=thermo/serialNumber=SN-0002', 'inter', 'leaf');
  await cert('caLeaf', '/O=Maker/CN=thermo/serialNumber=SN-0003', 'maker', 'ca');
  await cert('noSerial', '/O=Maker/CN=thermo', 'maker', 'leaf');
  await cert('fake', '/O=Maker/CN=thermo/serialNumber=SN-0001', 'impostor', 'leaf');
  NOW = Date.now() + 2000;
});

/** After every certificate was made (openssl sets NotBefore to the signing time). */
let NOW = 0;

describe('factory chain checks', () => {
  it('reads the subject serialNumber (OID 2.5.4.5)', () => {
    expect(subjectSerialNumbers(new X509Certificate(der['leaf']!))).toEqual(['SN-0001']);
    expect(subjectSerialNumbers(new X509Certificate(der['noSerial']!))).toEqual([]);
  });

  it('accepts a leaf signed by a factory CA, and one through an intermediate in the chain', () => {
    expect(factoryChainProblem([der['leaf']!], [pem['maker']!], 'SN-0001', NOW)).toBeUndefined();
    expect(factoryChainProblem([der['leafViaInter']!, der['inter']!], [pem['maker']!], 'SN-0002', NOW)).toBeUndefined();
    // Any of the model's CAs.
    expect(factoryChainProblem([der['leaf']!], [pem['impostor']!, pem['maker']!], 'SN-0001', NOW)).toBeUndefined();
  });

  it('refuses a chain that does not verify to a factory CA (same issuer name, other key; missing intermediate)', () => {
    expect(factoryChainProblem([der['fake']!], [pem['maker']!], 'SN-0001', NOW)).toMatch(/does not verify/);
    expect(factoryChainProblem([der['leafViaInter']!], [pem['maker']!], 'SN-0002', NOW)).toMatch(/does not verify/);
    expect(factoryChainProblem([der['leaf']!], [pem['impostor']!], 'SN-0001', NOW)).toMatch(/does not verify/);
  });

  it('refuses another serialNumber, none, a CA leaf, no factory CAs, garbage', () => {
    expect(factoryChainProblem([der['leaf']!], [pem['maker']!], 'SN-9999', NOW)).toMatch(/serialNumber does not match/);
    expect(factoryChainProblem([der['noSerial']!], [pem['maker']!], 'SN-0001', NOW)).toMatch(/serialNumber/);
    expect(factoryChainProblem([der['caLeaf']!], [pem['maker']!], 'SN-0003', NOW)).toMatch(/is a CA/);
    expect(factoryChainProblem([der['leaf']!], [], 'SN-0001', NOW)).toMatch(/no factory CAs/);
    expect(factoryChainProblem([Buffer.from('nope')], [pem['maker']!], 'SN-0001', NOW)).toMatch(/malformed/);
    expect(factoryChainProblem([], [pem['maker']!], 'SN-0001', NOW)).toMatch(/no factory certificate/);
  });

  it('checks validity at now (RFC 5280 6.1.3 (a)(2))', () => {
    expect(factoryChainProblem([der['leaf']!], [pem['maker']!], 'SN-0001', NOW + 40 * 86_400_000)).toMatch(/validity/);
    expect(factoryChainProblem([der['leaf']!], [pem['maker']!], 'SN-0001', NOW - 86_400_000)).toMatch(/validity/);
  });
});
