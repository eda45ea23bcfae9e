/**
 * Factory enrolment checks (issue #6, contract "Cloud" factory path): the manufacturer chain (leaf first)
 * verifies at `now` to one of the model's factoryCAs (RFC 5280 6.1: issuer name, signature, validity,
 * issuers are CAs with keyCertSign, path length, critical extensions), the leaf is not a CA, and the leaf
 * subject's serialNumber (OID 2.5.4.5, read from the DER name) equals the Device's
 * factoryIdentity.serialNumber. Certificates made by openssl.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { factoryChainProblem, subjectSerialNumbers } from '../../../src/cloud/devices/index.js';
import { certsFromPem, parseCertificate } from '../../../src/identity/index.js';
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
[caNoSign]
basicConstraints = critical,CA:TRUE
keyUsage = critical,cRLSign
[caPathLen0]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[leafNoSig]
basicConstraints = critical,CA:FALSE
keyUsage = critical,keyEncipherment
[leafCritical]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
1.3.6.1.4.1.55555.1 = critical,ASN1:NULL
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
async function root(name: string, subj: string, ext = 'ca', key = EC): Promise<void> {
  await openssl(['req', '-x509', '-config', join(dir, 'cnf'), '-extensions', ext, ...key, '-nodes', '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.pem`), '-days', '30', '-subj', subj]);
  await load(name);
}
async function cert(name: string, subj: string, issuer: string, ext: string, days = '30', reqFlags: string[] = []): Promise<void> {
  const csr = join(dir, `${name}.csr`);
  await openssl(['req', '-new', '-config', join(dir, 'cnf'), ...EC, '-nodes', ...reqFlags, '-keyout', join(dir, `${name}.key`), '-out', csr, '-subj', subj]);
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
  // A commonName whose printed form contains "+serialNumber=" (the "+" is escaped in it): not a serialNumber.
  await cert('cnInjection', '/O=Maker/CN=x\\+serialNumber=SN-0001', 'maker', 'leaf', '30', ['-multivalue-rdn']);
  // A real multi-valued RDN holding the serialNumber.
  await cert('multiValued', '/O=Maker/CN=thermo+serialNumber=SN-0004', 'maker', 'leaf', '30', ['-multivalue-rdn']);
  await cert('twoSerials', '/O=Maker/serialNumber=SN-0001/serialNumber=SN-0001', 'maker', 'leaf');
  await cert('noSignInter', '/O=Maker/CN=Maker Line 2', 'maker', 'caNoSign');
  await cert('leafViaNoSign', '/O=Maker/CN=thermo/serialNumber=SN-0005', 'noSignInter', 'leaf');
  await root('shortRoot', '/O=Short/CN=Short Root', 'caPathLen0');
  await cert('shortInter', '/O=Short/CN=Short Line', 'shortRoot', 'ca');
  await cert('leafTooDeep', '/O=Short/CN=thermo/serialNumber=SN-0006', 'shortInter', 'leaf');
  await cert('leafDirect', '/O=Short/CN=thermo/serialNumber=SN-0007', 'shortRoot', 'leaf');
  await cert('leafNoSig', '/O=Maker/CN=thermo/serialNumber=SN-0008', 'maker', 'leafNoSig');
  await cert('leafCritical', '/O=Maker/CN=thermo/serialNumber=SN-0009', 'maker', 'leafCritical');
  await root('rsaMaker', '/O=RSA Maker/CN=RSA Root', 'ca', ['-newkey', 'rsa:2048']);
  await cert('leafViaRsa', '/O=RSA Maker/CN=thermo/serialNumber=SN-0010', 'rsaMaker', 'leaf');
  NOW = Date.now() + 2000;
});

/** After every certificate was made (openssl sets NotBefore to the signing time). */
let NOW = 0;

describe('factory chain checks', () => {
  it('reads the subject serialNumber (OID 2.5.4.5) from the DER name, in single- and multi-valued RDNs', () => {
    const serials = (name: string): Array<string | undefined> => subjectSerialNumbers(parseCertificate(der[name]!));
    expect(serials('leaf')).toEqual(['SN-0001']);
    expect(serials('noSerial')).toEqual([]);
    expect(serials('multiValued')).toEqual(['SN-0004']);
    expect(serials('twoSerials')).toEqual(['SN-0001', 'SN-0001']);
    // The printed subject is `CN=x\+serialNumber=SN-0001`: a commonName, not a serialNumber.
    expect(serials('cnInjection')).toEqual([]);
    expect(factoryChainProblem([der['cnInjection']!], [pem['maker']!], 'SN-0001', NOW)).toMatch(/no single serialNumber/);
    expect(factoryChainProblem([der['multiValued']!], [pem['maker']!], 'SN-0004', NOW)).toBeUndefined();
    expect(factoryChainProblem([der['twoSerials']!], [pem['maker']!], 'SN-0001', NOW)).toMatch(/no single serialNumber/);
  });

  it('accepts a leaf signed by a factory CA, and one through an intermediate in the chain', () => {
    expect(factoryChainProblem([der['leaf']!], [pem['maker']!], 'SN-0001', NOW)).toBeUndefined();
    expect(factoryChainProblem([der['leafViaInter']!, der['inter']!], [pem['maker']!], 'SN-0002', NOW)).toBeUndefined();
    // Any of the model's CAs, also in one PEM text; RSA CAs too.
    expect(factoryChainProblem([der['leaf']!], [pem['impostor']!, pem['maker']!], 'SN-0001', NOW)).toBeUndefined();
    expect(factoryChainProblem([der['leaf']!], [pem['impostor']! + pem['maker']!], 'SN-0001', NOW)).toBeUndefined();
    expect(factoryChainProblem([der['leafViaRsa']!], [pem['rsaMaker']!], 'SN-0010', NOW)).toBeUndefined();
    // Extra unrelated certificates in the chain are ignored.
    expect(factoryChainProblem([der['leafViaInter']!, der['fake']!, der['inter']!], [pem['maker']!], 'SN-0002', NOW)).toBeUndefined();
  });

  it('RFC 5280 6.1.4: an issuer without keyCertSign (n) or beyond its path length (l, m) does not issue', () => {
    expect(factoryChainProblem([der['leafViaNoSign']!, der['noSignInter']!], [pem['maker']!], 'SN-0005', NOW)).toMatch(/does not verify/);
    expect(factoryChainProblem([der['leafTooDeep']!, der['shortInter']!], [pem['shortRoot']!], 'SN-0006', NOW)).toMatch(/does not verify/);
    expect(factoryChainProblem([der['leafDirect']!], [pem['shortRoot']!], 'SN-0007', NOW)).toBeUndefined();
    // An intermediate given as the anchor is not enough when it cannot sign.
    expect(factoryChainProblem([der['leafViaNoSign']!], [pem['noSignInter']!], 'SN-0005', NOW)).toMatch(/does not verify/);
  });

  it('the leaf must be able to sign (the TLS proof of possession) and have no unhandled critical extension', () => {
    expect(factoryChainProblem([der['leafNoSig']!], [pem['maker']!], 'SN-0008', NOW)).toMatch(/digitalSignature/);
    expect(factoryChainProblem([der['leafCritical']!], [pem['maker']!], 'SN-0009', NOW)).toMatch(/critical extension/);
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
