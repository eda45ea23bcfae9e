/**
 * `edgeward x509 inspect`, run in-process with a fixed clock. Certificates come from the identity core
 * and, independently, from openssl (so that the command is not only tested against our own minting).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, main, MAX_INPUT_FILE_BYTES } from '../../../src/cli/index.js';
import {
  bundleToJson,
  certToPem,
  generateP256,
  mintRootCa,
  mintSigningCa,
  mintX509Svid,
  signerFromPrivateKey,
  SpiffeId,
  spkiFromPublicKey,
  TrustBundle,
  TrustDomain,
  type CertIssuer,
} from '../../../src/identity/index.js';
import { openssl, tempDir } from '../../helpers/index.js';
import { fakeIo } from './fake-io.js';

const T0 = Date.UTC(2030, 0, 1);
const HOUR = 3_600_000;
const td = TrustDomain.parse('example.org');
const workloadId = SpiffeId.fromSegments(td, 'ns', 'prod', 'web');

let dir: string;
const f = (name: string): string => join(dir, name);

function newCa(trustDomain: TrustDomain): { root: CertIssuer; signing: CertIssuer } {
  const rootSigner = signerFromPrivateKey(generateP256().privateKey);
  const root = mintRootCa({ trustDomain, signer: rootSigner, now: T0, ttlMs: 100 * HOUR });
  const caSigner = signerFromPrivateKey(generateP256().privateKey);
  const signing = mintSigningCa({ trustDomain, spki: caSigner.spki, issuer: { cert: root.parsed, signer: rootSigner }, now: T0, ttlMs: 50 * HOUR });
  return { root: { cert: root.parsed, signer: rootSigner }, signing: { cert: signing.parsed, signer: caSigner } };
}

async function run(argv: string[], now = T0 + HOUR): Promise<{ code: number; out: string; err: string }> {
  const io = fakeIo({ now });
  const code = await main(argv, io);
  return { code, out: io.stdoutText(), err: io.stderrText() };
}

let leafSerial: string;

beforeAll(async () => {
  dir = await tempDir('edgeward-inspect-');
  const ca = newCa(td);
  const leaf = mintX509Svid({
    spiffeId: workloadId,
    spki: spkiFromPublicKey(generateP256().publicKey),
    issuer: ca.signing,
    now: T0,
    ttlMs: 2 * HOUR,
    dnsNames: ['web.example.org'],
  });
  leafSerial = leaf.parsed.serialHex;
  await writeFile(f('chain.pem'), certToPem(leaf.der) + certToPem(ca.signing.cert.raw));
  await writeFile(f('chain.der'), Buffer.concat([leaf.der, ca.signing.cert.raw]));
  await writeFile(f('bundle.pem'), certToPem(ca.root.cert.raw));
  await writeFile(f('bundle.der'), ca.root.cert.raw);
  await writeFile(f('other-bundle.pem'), certToPem(newCa(td).root.cert.raw));
  // SPIFFE bundle JSON (X509-SVID 6: one x5c per x509-svid JWK); the document does not name its trust domain.
  await writeFile(f('bundle.json'), bundleToJson(TrustBundle.create({ trustDomain: td, x509Authorities: [ca.root.cert.raw] })));
  await writeFile(f('revoked.json'), '{"keys": []}');
  await writeFile(f('duplicate.json'), '{"keys": [], "keys": []}');
  await writeFile(f('broken.json'), '{"keys": [');
  await writeFile(f('root-as-leaf.pem'), certToPem(ca.root.cert.raw));
  await writeFile(f('empty.pem'), 'nothing here\n-----BEGIN PRIVATE KEY-----\n');
  await writeFile(f('garbage.der'), Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01]));
  await writeFile(f('huge.pem'), Buffer.alloc(MAX_INPUT_FILE_BYTES + 1, 0x41));
});

describe('x509 inspect: output', () => {
  it('prints the leaf fields as text', async () => {
    const r = await run(['x509', 'inspect', f('chain.pem')]);
    expect(r).toMatchObject({ code: EXIT_OK, err: '' });
    expect(r.out).toContain('(2 certificates)');
    expect(r.out).toMatch(/^spiffe_id: +spiffe:\/\/example\.org\/ns\/prod\/web$/m);
    expect(r.out).toMatch(new RegExp(`^serial: +${leafSerial}$`, 'm'));
    expect(r.out).toMatch(/^not_before: +2029-12-31T23:59:50\.000Z$/m); // X509-SVID minted 10 s back-dated
    expect(r.out).toMatch(/^not_after: +2030-01-01T02:00:00\.000Z$/m);
    expect(r.out).toMatch(/^ca: +false$/m);
    expect(r.out).toMatch(/^key_usage: +digitalSignature, keyEncipherment, keyAgreement \(critical\)$/m);
    expect(r.out).toMatch(/^ext_key_usage: +serverAuth, clientAuth$/m);
    expect(r.out).toMatch(/^dns_names: +web\.example\.org$/m);
    expect(r.out).not.toContain('x509_svid');
  });

  it('prints one JSON object with --json', async () => {
    const r = await run(['x509', 'inspect', f('chain.pem'), '--json', '--bundle', f('bundle.pem')]);
    expect(r.code).toBe(EXIT_OK);
    expect(r.out.trim().split('\n')).toHaveLength(1);
    expect(JSON.parse(r.out)).toEqual({
      file: f('chain.pem'),
      certificates: 2,
      leaf: {
        spiffe_id: 'spiffe://example.org/ns/prod/web',
        uris: ['spiffe://example.org/ns/prod/web'],
        serial: leafSerial,
        not_before: '2029-12-31T23:59:50.000Z',
        not_after: '2030-01-01T02:00:00.000Z',
        is_ca: false,
        path_len: null,
        key_usage: { critical: true, usages: ['digitalSignature', 'keyEncipherment', 'keyAgreement'] },
        ext_key_usage: { critical: false, usages: ['serverAuth', 'clientAuth'] },
        dns_names: ['web.example.org'],
      },
      svid: {
        valid: true,
        spiffe_id: 'spiffe://example.org/ns/prod/web',
        trust_domain: 'example.org',
        path_length: 3,
        bundle: { format: 'pem', x509_authorities: 1 },
      },
    });
  });

  it('reads concatenated DER chains and DER bundles', async () => {
    const r = await run(['x509', 'inspect', f('chain.der'), '--bundle', f('bundle.der')]);
    expect(r.code).toBe(EXIT_OK);
    expect(r.out).toMatch(/^x509_svid: +valid for trust domain example\.org$/m);
  });

  it('shows a CA certificate', async () => {
    const r = await run(['x509', 'inspect', f('root-as-leaf.pem'), '--json']);
    expect(r.code).toBe(EXIT_OK);
    expect(JSON.parse(r.out).leaf).toMatchObject({ spiffe_id: 'spiffe://example.org', is_ca: true, ext_key_usage: null });
  });
});

describe('x509 inspect --bundle: X509-SVID validation (X509-SVID 5)', () => {
  it('is valid within the validity period (exit 0)', async () => {
    const r = await run(['x509', 'inspect', f('chain.pem'), '--bundle', f('bundle.pem'), '--trust-domain', 'example.org']);
    expect(r).toMatchObject({ code: EXIT_OK, err: '' });
    expect(r.out).toMatch(/^x509_svid: +valid for trust domain example\.org$/m);
  });

  it('accepts the trust domain as spiffe://td', async () => {
    const r = await run(['x509', 'inspect', f('chain.pem'), '--bundle', f('bundle.pem'), '--trust-domain', 'spiffe://example.org']);
    expect(r.code).toBe(EXIT_OK);
  });

  const invalid: [string, string[], number, string][] = [
    ['expired', ['--bundle', 'bundle.pem'], T0 + 3 * HOUR, 'x509-svid/expired'],
    ['not yet valid', ['--bundle', 'bundle.pem'], T0 - HOUR, 'x509-svid/not-yet-valid'],
    // The identity core reports untrusted (no issuer found) or bad-signature (same name, other key).
    ['signed by another CA of the same trust domain', ['--bundle', 'other-bundle.pem'], T0 + HOUR, 'x509-svid/(?:untrusted|bad-signature)'],
    ['in another trust domain than --trust-domain', ['--bundle', 'bundle.pem', '--trust-domain', 'other.org'], T0 + HOUR, 'x509-svid/wrong-trust-domain'],
  ];
  for (const [name, flags, now, code] of invalid) {
    it(`is invalid when ${name} (exit 1, ${code.replace('(?:', '(')})`, async () => {
      const argv = ['x509', 'inspect', f('chain.pem'), ...flags.map((x) => (x.endsWith('.pem') ? f(x) : x))];
      const text = await run(argv, now);
      expect(text.code).toBe(EXIT_FAILURE);
      expect(text.out).toMatch(new RegExp(`^x509_svid: +INVALID ${code}: `, 'm'));
      const json = await run([...argv, '--json'], now);
      expect(json.code).toBe(EXIT_FAILURE);
      expect(JSON.parse(json.out).svid).toMatchObject({ valid: false, code: expect.stringMatching(new RegExp(`^${code}$`)) });
    });
  }

  it('accepts a SPIFFE bundle (JSON) for the leaf trust domain or --trust-domain', async () => {
    const r = await run(['x509', 'inspect', f('chain.pem'), '--bundle', f('bundle.json'), '--json']);
    expect(r).toMatchObject({ code: EXIT_OK, err: '' });
    expect(JSON.parse(r.out).svid).toMatchObject({ valid: true, bundle: { format: 'spiffe-json', x509_authorities: 1 } });
    const pinned = await run(['x509', 'inspect', f('chain.pem'), '--bundle', f('bundle.json'), '--trust-domain', 'example.org']);
    expect(pinned.code).toBe(EXIT_OK);
    expect(pinned.out).toMatch(/^bundle: +spiffe-json, 1 X\.509 authority$/m);
    const other = await run(['x509', 'inspect', f('chain.pem'), '--bundle', f('bundle.json'), '--trust-domain', 'other.org', '--json']);
    expect(other.code).toBe(EXIT_FAILURE);
    expect(JSON.parse(other.out).svid).toMatchObject({ valid: false, code: 'x509-svid/wrong-trust-domain' });
  });

  it('treats a bundle with no keys as "all revoked" (SPIFFE bundle 4.1.3)', async () => {
    const r = await run(['x509', 'inspect', f('chain.pem'), '--bundle', f('revoked.json'), '--json']);
    expect(r.code).toBe(EXIT_FAILURE);
    expect(JSON.parse(r.out).svid).toMatchObject({ valid: false, bundle: { format: 'spiffe-json', x509_authorities: 0 } });
  });

  it('rejects a malformed SPIFFE bundle with its typed code', async () => {
    const dup = await run(['x509', 'inspect', f('chain.pem'), '--bundle', f('duplicate.json')]);
    expect(dup).toMatchObject({ code: EXIT_FAILURE, out: '' });
    expect(dup.err).toMatch(/^edgeward: bundle\/duplicate-key: /);
    const broken = await run(['x509', 'inspect', f('chain.pem'), '--bundle', f('broken.json')]);
    expect(broken.code).toBe(EXIT_FAILURE);
    expect(broken.err).toMatch(/^edgeward: bundle\/malformed: /);
  });

  it('rejects a CA certificate as a leaf (X509-SVID 4.1)', async () => {
    const r = await run(['x509', 'inspect', f('root-as-leaf.pem'), '--bundle', f('bundle.pem'), '--json']);
    expect(r.code).toBe(EXIT_FAILURE);
    expect(JSON.parse(r.out).svid).toMatchObject({ valid: false, code: 'x509-svid/not-an-svid' });
  });
});

describe('x509 inspect: bad input', () => {
  const cases: [string, string[], number, RegExp][] = [
    ['a missing file', ['missing.pem'], EXIT_FAILURE, /^edgeward: cli\/file-not-found: .*missing\.pem: no such file\n$/],
    ['a file over 1 MiB', ['huge.pem'], EXIT_FAILURE, /^edgeward: cli\/file-too-large: /],
    ['a PEM file without certificates', ['empty.pem'], EXIT_FAILURE, /^edgeward: cli\/no-certificates: /],
    ['malformed DER', ['garbage.der'], EXIT_FAILURE, /^edgeward: x509\/malformed: .*certificate 1: /],
    ['a missing bundle file', ['chain.pem', '--bundle', 'nope.pem'], EXIT_FAILURE, /^edgeward: cli\/file-not-found: /],
    ['a bundle without certificates', ['chain.pem', '--bundle', 'empty.pem'], EXIT_FAILURE, /^edgeward: cli\/no-certificates: /],
    ['--trust-domain without --bundle', ['chain.pem', '--trust-domain', 'example.org'], EXIT_USAGE, /^edgeward: cli\/usage: --trust-domain requires --bundle\n/],
    ['an invalid --trust-domain', ['chain.pem', '--bundle', 'bundle.pem', '--trust-domain', 'Bad_TD!'], EXIT_USAGE, /^edgeward: cli\/usage: --trust-domain Bad_TD!: spiffe-id\//],
    ['no FILE', [], EXIT_USAGE, /^edgeward: cli\/usage: missing argument\nusage: edgeward x509 inspect FILE/],
    ['two FILEs', ['chain.pem', 'bundle.pem'], EXIT_USAGE, /^edgeward: cli\/usage: unexpected argument/],
    ['an unknown flag', ['chain.pem', '--verbose'], EXIT_USAGE, /^edgeward: cli\/usage: unknown flag --verbose\n/],
  ];
  for (const [name, args, exit, stderr] of cases) {
    it(`reports ${name}`, async () => {
      const argv = ['x509', 'inspect', ...args.map((a) => (/\.(pem|der)$/.test(a) ? f(a) : a))];
      const r = await run(argv);
      expect(r.code).toBe(exit);
      expect(r.err).toMatch(stderr);
      expect(r.err).not.toMatch(/\n\s+at /);
      expect(r.out).toBe('');
    });
  }
});

describe('x509 inspect on openssl-made certificates', () => {
  let odir: string;
  beforeAll(async () => {
    odir = await tempDir('edgeward-inspect-openssl-');
    const o = (args: string[]): Promise<unknown> => openssl(args, undefined, { cwd: odir });
    await o(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key']);
    await o(['req', '-x509', '-new', '-key', 'ca.key', '-subj', '/O=Interop/CN=Interop CA', '-days', '2', '-out', 'ca.pem',
      '-addext', 'basicConstraints=critical,CA:true', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      '-addext', 'subjectAltName=URI:spiffe://interop.test']);
    await o(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'leaf.key']);
    await o(['req', '-new', '-key', 'leaf.key', '-subj', '/O=Interop', '-out', 'leaf.csr']);
    await writeFile(join(odir, 'leaf.ext'), [
      'basicConstraints=critical,CA:false',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=serverAuth,clientAuth',
      'subjectAltName=URI:spiffe://interop.test/workload,DNS:svc.interop.test',
    ].join('\n'));
    await o(['x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1',
      '-extfile', 'leaf.ext', '-out', 'leaf.pem']);
    // A plain web certificate: DNS SAN only, RSA key.
    await o(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'web.key', '-subj', '/CN=www.example.com', '-days', '1',
      '-addext', 'subjectAltName=DNS:www.example.com,DNS:example.com', '-out', 'web.pem']);
  });

  it('validates an openssl-issued X509-SVID against its CA', async () => {
    const r = await run(['x509', 'inspect', join(odir, 'leaf.pem'), '--bundle', join(odir, 'ca.pem'), '--json'], Date.now());
    expect(r.err).toBe('');
    expect(r.code).toBe(EXIT_OK);
    const report = JSON.parse(r.out);
    expect(report.leaf).toMatchObject({
      spiffe_id: 'spiffe://interop.test/workload',
      dns_names: ['svc.interop.test'],
      key_usage: { critical: true, usages: ['digitalSignature'] },
      ext_key_usage: { usages: ['serverAuth', 'clientAuth'] },
    });
    expect(report.svid).toMatchObject({ valid: true, trust_domain: 'interop.test' });
    const serial = (await openssl(['x509', '-noout', '-serial', '-in', join(odir, 'leaf.pem')])).stdout.trim().split('=')[1];
    expect(report.leaf.serial.toUpperCase().replace(/^0+/, '')).toBe(serial?.replace(/^0+/, ''));
  });

  it('shows a non-SPIFFE certificate and says why it is not an X509-SVID', async () => {
    const web = join(odir, 'web.pem');
    const text = await run(['x509', 'inspect', web], Date.now());
    expect(text.code).toBe(EXIT_OK);
    expect(text.out).toMatch(/^spiffe_id: +\(none\)$/m);
    expect(text.out).toMatch(/^uris: +\(none\)$/m);
    expect(text.out).toMatch(/^dns_names: +www\.example\.com, example\.com$/m);
    const checked = await run(['x509', 'inspect', web, '--bundle', web, '--json'], Date.now());
    expect(checked.code).toBe(EXIT_FAILURE);
    expect(JSON.parse(checked.out).svid).toMatchObject({ valid: false, trust_domain: null, code: 'x509-svid/not-an-svid' });
  });
});
