/**
 * The reference device client `edgeward device enroll` / `device renew` (issue #6, contract "Edge: Reference
 * client") against a small HTTPS server in this test that mimics the node's enrolment API and can misbehave on
 * purpose: real TLS on 127.0.0.1, server certificate = a node SVID minted with src/identity from a test CA, the
 * CLI run in-process through its entry point, openssl checking the written files independently.
 *
 * - success: DIR 0700, svid.key 0600 (the key of svid.pem, made by the client: only a CSR is sent), svid.pem
 *   verifies with openssl against bundle.pem, device.json as printed with --json;
 * - no trust on first use: a wrong --bundle-digest, a server whose SVID is not a node ID, and a server that
 *   serves the pinned bundle but holds a certificate of another CA are refused before any POST;
 * - the server's `{error: {code, message}}` reaches the operator (exit 1); hostile answers (an SVID for another
 *   key, for another device than the answer names, an answer over 64 KiB) are refused and nothing is written;
 * - factory enrolment presents the manufacturer certificate as the TLS client certificate, body {device, csr};
 * - renew presents the current SVID, replaces every file with a new key and SVID, and refuses a bundle.json that
 *   is not the one device.json records before connecting.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/index.js';
import {
  bundleDigest,
  bundleToJson,
  certsFromPem,
  certToPem,
  generateP256,
  mintX509Svid,
  mintX509SvidFromCsr,
  parseBundleJson,
  parseCertificate,
  signerFromPrivateKey,
  SpiffeId,
  TrustDomain,
  validateX509Svid,
  type TrustBundle,
} from '../../src/identity/index.js';
import { openssl, tempDir } from '../helpers/index.js';
import { fakeIo } from '../unit/cli/fake-io.js';
import { authority, leaf, TD, type Authority, type Leaf } from './eventbus-fixture.js';

const DEVICE = 'default/sensor-1';
const DEVICE_ID = `spiffe://${TD.name}/edgeward/device/${DEVICE}`;
const TOKEN = 'ewdt_abcdefghijklmnopqrstuvwxyz0123456789';

interface Seen {
  method: string;
  path: string;
  body: Record<string, unknown> | undefined;
  clientCert: Buffer | undefined;
}

/** How the mimic answers POSTs: normally, or in one of the broken/hostile ways. */
type Mode = 'ok' | 'error' | 'other-key' | 'other-device-named' | 'huge';

interface Mimic {
  server: Server;
  addr: string;
  seen: Seen[];
  mode: Mode;
}

let ca: Authority;
let dir: string;
let digest: string;
const servers: Server[] = [];

const csrDer = (pem: string): Buffer => Buffer.from(pem.replace(/-----(BEGIN|END) CERTIFICATE REQUEST-----/g, '').replace(/\s+/g, ''), 'base64');

/** Start a mimic of the node's enrolment API presenting `serverLeaf` and serving `served` as its bundle. */
async function mimic(serverLeaf: Leaf, served: TrustBundle = ca.bundle): Promise<Mimic> {
  const m: Mimic = { server: undefined as unknown as Server, addr: '', seen: [], mode: 'ok' };
  const send = (res: import('node:http').ServerResponse, status: number, body: unknown): void => {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  m.server = createServer(
    {
      key: serverLeaf.key.export({ type: 'pkcs8', format: 'pem' }),
      cert: certToPem(serverLeaf.cert.der),
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
    },
    (req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (c: Buffer) => parts.push(c));
      req.on('end', () => {
        const peer = (req.socket as TLSSocket).getPeerCertificate(true);
        const text = Buffer.concat(parts).toString('utf8');
        const body = text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>);
        m.seen.push({ method: req.method ?? '', path: req.url ?? '', body, clientCert: peer?.raw });
        if (req.method === 'GET' && req.url === '/v1/device/bundle') return send(res, 200, bundleToJson(served));
        if (req.method !== 'POST') return send(res, 404, { error: { code: 'http/not-found', message: 'no such endpoint' } });
        if (m.mode === 'error') return send(res, 403, { error: { code: 'device-token/invalid', message: 'the token is unknown, used or expired' } });
        if (m.mode === 'huge') return send(res, 200, { pad: 'x'.repeat(70 * 1024) });
        let device = DEVICE;
        if (req.url === '/v1/device/renew') {
          // the mimic checks the current SVID the way the node does: an X509-SVID of the bundle, for a device
          if (peer?.raw === undefined) return send(res, 401, { error: { code: 'device/no-client-cert', message: 'present the current SVID' } });
          device = validateX509Svid([peer.raw], ca.bundle, Date.now()).spiffeId.path.replace(/^\/edgeward\/device\//, '');
        } else if (body?.['device'] !== undefined) {
          device = String(body['device']);
        }
        const spiffeId = SpiffeId.parse(`spiffe://${TD.name}/edgeward/device/${device}`);
        const issuer = { cert: ca.root.parsed, signer: signerFromPrivateKey(ca.key) };
        const issued =
          m.mode === 'other-key'
            ? mintX509Svid({ spiffeId, spki: generateP256().spki, issuer, now: Date.now(), ttlMs: 3_600_000 })
            : mintX509SvidFromCsr({ spiffeId, csr: csrDer(String(body?.['csr'])), issuer, now: Date.now(), ttlMs: 3_600_000 });
        const named = m.mode === 'other-device-named' ? 'default/someone-else' : device;
        return send(res, 200, {
          device: named,
          spiffeId: `spiffe://${TD.name}/edgeward/device/${named}`,
          svidPem: certToPem(issued.der),
          bundle: JSON.parse(bundleToJson(ca.bundle)) as unknown,
          expiresAt: issued.notAfter,
        });
      });
    },
  );
  servers.push(m.server);
  await new Promise<void>((resolve) => m.server.listen(0, '127.0.0.1', resolve));
  m.addr = `127.0.0.1:${(m.server.address() as AddressInfo).port}`;
  return m;
}

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const io = fakeIo();
  const code = await main(argv, io);
  return { code, out: io.stdoutText(), err: io.stderrText() };
}

const enrol = (m: Mimic, out: string, pin = digest): Promise<{ code: number; out: string; err: string }> =>
  cli('device', 'enroll', '--edge', m.addr, '--token', TOKEN, '--bundle-digest', pin, '--out', out);
const posts = (m: Mimic): Seen[] => m.seen.filter((s) => s.method === 'POST');

let node: Mimic;

beforeAll(async () => {
  ca = authority();
  digest = bundleDigest(ca.bundle);
  dir = await tempDir('edgeward-cli-device-enroll-');
  node = await mimic(leaf(ca, `spiffe://${TD.name}/edgeward/node/edge-1`));
});

beforeEach(() => {
  node.mode = 'ok';
});

afterAll(async () => {
  for (const s of servers) await new Promise<void>((resolve) => s.close(() => resolve()));
});

describe('edgeward device enroll / renew (reference client) against a mimic enrolment endpoint', () => {
  it('enrols with a token: DIR 0700, svid.key 0600 is the key of svid.pem, openssl verifies svid.pem against bundle.pem', async () => {
    const out = join(dir, 'ok');
    const r = await enrol(node, out);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(new RegExp(`^enrolled ${DEVICE_ID} expires \\d{4}-\\d\\d-\\d\\dT\\S+Z ${out}\\n$`));
    // one GET of the bundle, then one POST {token, csr}: a CSR, never a key
    expect(node.seen.slice(-2).map((s) => `${s.method} ${s.path}`)).toEqual(['GET /v1/device/bundle', 'POST /v1/device/enroll']);
    const sent = node.seen.at(-1)!;
    expect(Object.keys(sent.body ?? {}).sort()).toEqual(['csr', 'token']);
    expect(sent.body?.['token']).toBe(TOKEN);
    expect(String(sent.body?.['csr'])).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----\n/);
    expect(JSON.stringify(sent.body)).not.toContain('PRIVATE KEY');
    expect(sent.clientCert).toBeUndefined();

    expect(statSync(out).mode & 0o777).toBe(0o700);
    expect(statSync(join(out, 'svid.key')).mode & 0o777).toBe(0o600);
    const key = readFileSync(join(out, 'svid.key'), 'utf8');
    expect(key).toMatch(/^-----BEGIN PRIVATE KEY-----\n/); // PKCS#8
    const leafCert = parseCertificate(certsFromPem(readFileSync(join(out, 'svid.pem'), 'utf8'))[0]!);
    expect(leafCert.uris).toEqual([DEVICE_ID]);
    expect(createPublicKey(createPrivateKey(key)).export({ type: 'spki', format: 'der' }).equals(leafCert.spki)).toBe(true);
    const v = await openssl(['verify', '-CAfile', join(out, 'bundle.pem'), join(out, 'svid.pem')]);
    expect(v.stdout + v.stderr).toMatch(/: OK/);
    expect(bundleDigest(parseBundleJson(TD, readFileSync(join(out, 'bundle.json'), 'utf8')))).toBe(digest);
    const info = JSON.parse(readFileSync(join(out, 'device.json'), 'utf8')) as Record<string, unknown>;
    expect(info).toEqual({ device: DEVICE, spiffeId: DEVICE_ID, expiresAt: leafCert.notAfter, edge: node.addr, bundleDigest: digest });
    // exactly the five files: no temporary file left behind
    expect(readdirSync(out).sort()).toEqual(['bundle.json', 'bundle.pem', 'device.json', 'svid.key', 'svid.pem']);
  });

  it('--json prints device.json', async () => {
    const out = join(dir, 'json');
    const r = await cli('device', 'enroll', '--edge', node.addr, '--token', TOKEN, '--bundle-digest', digest, '--out', out, '--json');
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out)).toEqual(JSON.parse(readFileSync(join(out, 'device.json'), 'utf8')));
  });

  it('refuses a wrong --bundle-digest before any POST, and writes nothing', async () => {
    const before = posts(node).length;
    const out = join(dir, 'wrong-pin');
    const r = await enrol(node, out, `sha256:${'0'.repeat(64)}`);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^edgeward: device-enroll\/bundle-mismatch: /);
    expect(posts(node).length).toBe(before);
    expect(existsSync(out)).toBe(false);
  });

  it('refuses a server whose SVID is not a node ID (a workload of the trust domain), before any POST', async () => {
    const impostor = await mimic(leaf(ca, `spiffe://${TD.name}/workload/impostor`));
    const r = await enrol(impostor, join(dir, 'impostor'));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^edgeward: device-enroll\/untrusted-server: /);
    expect(posts(impostor)).toEqual([]);
    // a device SVID is not a node either
    const device = await mimic(leaf(ca, DEVICE_ID));
    const d = await enrol(device, join(dir, 'device-as-server'));
    expect(d.err).toMatch(/device-enroll\/untrusted-server/);
    expect(posts(device)).toEqual([]);
  });

  it('refuses a server that serves the pinned bundle but holds a node certificate of another CA, before any POST', async () => {
    const other = authority();
    const mitm = await mimic(leaf(other, `spiffe://${TD.name}/edgeward/node/edge-1`), ca.bundle);
    const r = await enrol(mitm, join(dir, 'mitm'));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/device-enroll\/untrusted-server/);
    expect(posts(mitm)).toEqual([]);
    expect(existsSync(join(dir, 'mitm'))).toBe(false);
  });

  it("shows the server's error code and message, exit 1, nothing written", async () => {
    node.mode = 'error';
    const out = join(dir, 'refused');
    const r = await enrol(node, out);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^edgeward: device-enroll\/refused: device-token\/invalid: the token is unknown, used or expired\n$/);
    expect(existsSync(out)).toBe(false);
  });

  it('refuses hostile answers: an SVID for another key, an answer naming another device, an answer over 64 KiB', async () => {
    for (const [mode, pattern] of [
      ['other-key', /device-enroll\/bad-response: .*not for the key made here/],
      ['other-device-named', /device-enroll\/bad-response: .*another device/],
      ['huge', /device-enroll\/bad-response: .*too large/],
    ] as const) {
      node.mode = mode;
      const out = join(dir, `hostile-${mode}`);
      const r = await enrol(node, out);
      expect(r.code, mode).toBe(1);
      expect(r.err, mode).toMatch(pattern);
      expect(existsSync(out), mode).toBe(false);
    }
  });

  it('factory enrolment: the manufacturer certificate is the TLS client certificate, body {device, csr}', async () => {
    const maker = authority(TrustDomain.parse('maker.example'));
    const fac = leaf(maker, 'spiffe://maker.example/factory/SN-1');
    writeFileSync(join(dir, 'fac.pem'), certToPem(fac.cert.der));
    writeFileSync(join(dir, 'fac.key'), fac.key.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    const out = join(dir, 'factory');
    const r = await cli('device', 'enroll', '--edge', node.addr, '--device', 'default/fac-1', '--factory-cert', join(dir, 'fac.pem'), '--factory-key', join(dir, 'fac.key'), '--bundle-digest', digest, '--out', out);
    expect(r.code, r.err).toBe(0);
    const sent = posts(node).at(-1)!;
    expect(Object.keys(sent.body ?? {}).sort()).toEqual(['csr', 'device']);
    expect(sent.body?.['device']).toBe('default/fac-1');
    expect(sent.clientCert?.equals(fac.cert.der)).toBe(true);
    expect(JSON.parse(readFileSync(join(out, 'device.json'), 'utf8'))).toMatchObject({ device: 'default/fac-1', spiffeId: `spiffe://${TD.name}/edgeward/device/default/fac-1` });
  });

  it('renews with the current SVID as the client certificate and replaces every file (new key, new SVID)', async () => {
    const out = join(dir, 'renew');
    expect((await enrol(node, out)).code).toBe(0);
    const oldKey = readFileSync(join(out, 'svid.key'), 'utf8');
    const oldDer = certsFromPem(readFileSync(join(out, 'svid.pem'), 'utf8'))[0]!;
    const r = await cli('device', 'renew', '--edge', node.addr, '--dir', out);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(new RegExp(`^renewed ${DEVICE_ID} expires \\S+Z ${out}\\n$`));
    const sent = posts(node).at(-1)!;
    expect(sent.path).toBe('/v1/device/renew');
    expect(Object.keys(sent.body ?? {})).toEqual(['csr']);
    expect(sent.clientCert?.equals(oldDer)).toBe(true);
    const newKey = readFileSync(join(out, 'svid.key'), 'utf8');
    const newLeaf = parseCertificate(certsFromPem(readFileSync(join(out, 'svid.pem'), 'utf8'))[0]!);
    expect(newKey).not.toBe(oldKey);
    expect(newLeaf.serialHex).not.toBe(parseCertificate(oldDer).serialHex);
    expect(createPublicKey(createPrivateKey(newKey)).export({ type: 'spki', format: 'der' }).equals(newLeaf.spki)).toBe(true);
    expect(statSync(join(out, 'svid.key')).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(join(out, 'device.json'), 'utf8'))).toMatchObject({ device: DEVICE, expiresAt: newLeaf.notAfter, bundleDigest: digest });
    // --edge defaults to the one device.json records; --json prints device.json
    const j = await cli('device', 'renew', '--dir', out, '--json');
    expect(j.code, j.err).toBe(0);
    expect(JSON.parse(j.out)).toEqual(JSON.parse(readFileSync(join(out, 'device.json'), 'utf8')));
  });

  it('renew refuses a missing device.json (exit 2) and a bundle.json that is not the recorded one (before connecting)', async () => {
    const empty = await tempDir('edgeward-cli-device-empty-');
    const missing = await cli('device', 'renew', '--edge', node.addr, '--dir', empty);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/device\.json is missing/);
    const out = join(dir, 'tampered');
    expect((await enrol(node, out)).code).toBe(0);
    writeFileSync(join(out, 'bundle.json'), bundleToJson(authority().bundle));
    const before = node.seen.length;
    const r = await cli('device', 'renew', '--edge', node.addr, '--dir', out);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/device-enroll\/bundle-mismatch: .*does not match the bundleDigest/);
    expect(node.seen.length).toBe(before);
  });

  it('usage errors exit 2: a malformed pin, no --out, a token together with a factory certificate, a bad --edge', async () => {
    const bad = await cli('device', 'enroll', '--edge', node.addr, '--token', TOKEN, '--bundle-digest', 'sha256:abc', '--out', join(dir, 'u1'));
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--bundle-digest/);
    expect((await cli('device', 'enroll', '--edge', node.addr, '--token', TOKEN, '--bundle-digest', digest)).code).toBe(2);
    expect((await cli('device', 'enroll', '--edge', node.addr, '--token', TOKEN, '--device', DEVICE, '--bundle-digest', digest, '--out', join(dir, 'u2'))).code).toBe(2);
    expect((await cli('device', 'enroll', '--edge', '127.0.0.1', '--token', TOKEN, '--bundle-digest', digest, '--out', join(dir, 'u3'))).code).toBe(2);
    expect((await cli('device', 'enroll', '--edge', node.addr, '--token', TOKEN, '--bundle-digest', digest, '--out', join(dir, 'u4'), '--bogus')).code).toBe(2);
  });
});
