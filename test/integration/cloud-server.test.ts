/**
 * The cloud core as a real process (`edgeward cloud start`, built CLI in dist/) on 127.0.0.1: the node API
 * over real TLS 1.3, the admin socket through the real CLI, SQLite and key files on disk.
 * Contract "Node API transport"; issue #4 "Cloud core".
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { statSync, readdirSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bundleDigest,
  derToPem,
  parseBundleJson,
  parseCertificate,
  TrustDomain,
  validateX509Svid,
  type TrustBundle,
} from '../../src/identity/index.js';
import { decodeCloudToEdge, encodeNodeApiMessage, type CloudToEdgeMessage, type EdgeToCloudMessage } from '../../src/protocol/index.js';
import { openssl, runCli, startDaemon, tempDir, type Daemon } from '../helpers/index.js';

const TD = TrustDomain.parse('edgeward.local');

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  socket: TLSSocket;
}

interface ReqOptions {
  method?: string;
  path: string;
  body?: string | Buffer;
  headers?: Record<string, string | number>;
  agent?: Agent;
  cert?: string;
  key?: string;
}

let dir: string;
let cloud: Daemon;
let host: string;
let port: number;
let printedDigest: string;

async function startCloud(): Promise<void> {
  cloud = startDaemon(['cloud', 'start', '--data-dir', dir, '--listen', '127.0.0.1:0']);
  const addr = (await cloud.waitForLine(/^EDGEWARD_CLOUD=/)).slice('EDGEWARD_CLOUD='.length);
  printedDigest = (await cloud.waitForLine(/^EDGEWARD_BUNDLE_DIGEST=/)).slice('EDGEWARD_BUNDLE_DIGEST='.length);
  const m = /^(127\.0\.0\.1):([0-9]+)$/.exec(addr);
  expect(m).not.toBeNull();
  host = m![1]!;
  port = Number(m![2]);
}

function call(o: ReqOptions): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        port,
        method: o.method ?? 'GET',
        path: o.path,
        headers: o.headers,
        // The server's identity is checked explicitly (SPIFFE ID + bundle) in its own test.
        rejectUnauthorized: false,
        ...(o.agent !== undefined ? { agent: o.agent } : { agent: false }),
        ...(o.cert !== undefined ? { cert: o.cert, key: o.key } : {}),
        minVersion: 'TLSv1.3',
      },
      (res) => {
        const socket = res.socket as TLSSocket; // (a keep-alive agent takes it back at 'end')
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8'), socket }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(o.body);
  });
}

function post(path: string, m: EdgeToCloudMessage | string, extra: Partial<ReqOptions> = {}): Promise<Reply> {
  const body = typeof m === 'string' ? m : encodeNodeApiMessage(m);
  return call({ method: 'POST', path, body, headers: { 'content-type': 'application/json' }, ...extra });
}

function message(r: Reply): CloudToEdgeMessage {
  expect(r.headers['content-type']).toBe('application/json');
  return decodeCloudToEdge(r.text);
}

function errorCode(r: Reply): string {
  const m = message(r);
  if (m.kind !== 'error') throw new Error(`expected an error, got ${m.kind}`);
  return m.code;
}

async function fetchBundle(): Promise<TrustBundle> {
  const r = await call({ path: '/v1/bundle' });
  expect(r.status).toBe(200);
  return parseBundleJson(TD, r.text);
}

/** A fresh P-256 key and a PKCS#10 CSR for it (made by openssl: an independent implementation). */
async function keyAndCsr(cn: string): Promise<{ key: KeyObject; keyPem: string; csr: Buffer }> {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const keyPem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  const keyFile = join(dir, `csr-${cn}-${Math.random().toString(36).slice(2)}.pem`);
  writeFileSync(keyFile, keyPem, { mode: 0o600 });
  const r = await openssl(['req', '-new', '-key', keyFile, '-subj', `/CN=${cn}`, '-outform', 'DER']);
  return { key: privateKey, keyPem, csr: r.stdoutBytes };
}

async function createToken(node: string): Promise<{ token: string; bundleDigest: string; cloud: string; joinCommand: string }> {
  const r = await runCli(['token', 'create', '--node', node, '--json', '--data-dir', dir]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as { token: string; bundleDigest: string; cloud: string; joinCommand: string };
}

/** Attest with a join token over real HTTPS; returns the node SVID chain and its key. */
async function join_(node: string): Promise<{ chain: Buffer[]; certPem: string; keyPem: string }> {
  const { token } = await createToken(node);
  const { keyPem, csr } = await keyAndCsr(node);
  const r = await post('/v1/attest', { v: 1, kind: 'attest.begin', method: 'join_token', nodeName: node, payload: { token }, csr });
  const m = message(r);
  if (m.kind !== 'attest.result') throw new Error(`attestation failed: ${r.status} ${r.text}`);
  expect(r.status).toBe(200);
  return { chain: m.svidChainDer, certPem: m.svidChainDer.map((d) => derToPem(d, 'CERTIFICATE')).join(''), keyPem };
}

/** Run the CLI and parse its JSON output (failing with its stderr). */
async function cliJson<T>(args: string[]): Promise<T> {
  const r = await runCli(args);
  if (r.code !== 0 || r.stdout === '') throw new Error(`edgeward ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

beforeAll(async () => {
  dir = await tempDir('edgeward-cloud-');
  await startCloud();
}, 30_000);

afterAll(async () => {
  await cloud?.stop();
});

describe('edgeward cloud start: node API transport', () => {
  it('serves the bundle whose digest it printed, and presents the cloud SVID as its TLS certificate', async () => {
    expect(printedDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    const bundle = await fetchBundle();
    expect(bundleDigest(bundle)).toBe(printedDigest);

    const peer = await new Promise<Buffer[]>((resolve, reject) => {
      const s = connect({ host, port, rejectUnauthorized: false, minVersion: 'TLSv1.3' }, () => {
        const chain: Buffer[] = [];
        let c = s.getPeerCertificate(true) as { raw?: Buffer; issuerCertificate?: unknown };
        while (c?.raw !== undefined && !chain.some((d) => d.equals(c.raw!))) {
          chain.push(c.raw);
          c = c.issuerCertificate as typeof c;
        }
        expect(s.getProtocol()).toBe('TLSv1.3');
        s.end();
        resolve(chain);
      });
      s.on('error', reject);
    });
    // X509-SVID 5: validated against the bundle, by SPIFFE ID (not host name).
    expect(peer).toHaveLength(2); // the SVID and its signing CA; the root is in the bundle
    expect(parseCertificate(peer[1]!).isCA).toBe(true);
    const v = validateX509Svid(peer, bundle, Date.now());
    expect(v.spiffeId.toString()).toBe('spiffe://edgeward.local/edgeward/cloud');
    const text = await openssl(['x509', '-inform', 'DER', '-noout', '-ext', 'subjectAltName'], peer[0]);
    expect(text.stdout).toContain('URI:spiffe://edgeward.local/edgeward/cloud');
  });

  it('refuses TLS 1.2', async () => {
    const err = await new Promise<Error | undefined>((resolve) => {
      const s = connect({ host, port, rejectUnauthorized: false, maxVersion: 'TLSv1.2' }, () => {
        s.destroy();
        resolve(undefined);
      });
      s.on('error', (e) => resolve(e));
    });
    expect(err).toBeInstanceOf(Error);
    await cloud.waitForLog((l) => l.event === 'security.tls_handshake_failed');
  });

  it('answers POST /v1/node without a client certificate with 401 node-api/unauthenticated', async () => {
    const r = await post('/v1/node', { v: 1, kind: 'entries.request' });
    expect(r.status).toBe(401);
    expect(errorCode(r)).toBe('node-api/unauthenticated');
    await cloud.waitForLog((l) => l.event === 'security.node_unauthenticated' && l.code === 'node-api/unauthenticated');
  });

  it('refuses an oversized body with 413 (declared or streamed) and keeps serving', async () => {
    const big = Buffer.alloc(100 * 1024, 0x20);
    const r = await post('/v1/attest', big.toString('utf8'));
    expect(r.status).toBe(413);
    expect(errorCode(r)).toBe('node-api/too-large');

    // Streamed without Content-Length: the server stops reading and closes the connection.
    const streamed = await new Promise<{ status: number; text: string; closed: boolean }>((resolve, reject) => {
      const req = request(
        { host, port, method: 'POST', path: '/v1/attest', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' }, rejectUnauthorized: false, agent: false },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const sock = res.socket;
            const done = (): void => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8'), closed: true });
            if (sock.destroyed) done();
            else sock.once('close', done);
          });
        },
      );
      req.on('error', (e) => (String((e as NodeJS.ErrnoException).code).match(/EPIPE|ECONNRESET/) ? undefined : reject(e)));
      const chunk = Buffer.alloc(16 * 1024, 0x20);
      let sent = 0;
      const pump = (): void => {
        while (sent < 4 * 1024 * 1024 && !req.destroyed) {
          sent += chunk.length;
          if (!req.write(chunk)) {
            req.once('drain', pump);
            return;
          }
        }
      };
      pump();
    });
    expect(streamed.status).toBe(413);
    expect(decodeCloudToEdge(streamed.text)).toMatchObject({ kind: 'error', code: 'node-api/too-large' });
    expect(streamed.closed).toBe(true);
    await cloud.waitForLog((l) => l.event === 'security.request_too_large');

    expect((await call({ path: '/v1/bundle' })).status).toBe(200);
  });

  it('answers malformed JSON with 400, a wrong media type with 415, an unknown path with 404, all as JSON', async () => {
    const bad = await post('/v1/attest', '{"v":1,"kind":');
    expect(bad.status).toBe(400);
    expect(errorCode(bad)).toBe('node-api/malformed');
    const dup = await post('/v1/attest', '{"v":1,"v":1}');
    expect(dup.status).toBe(400);
    const media = await call({ method: 'POST', path: '/v1/attest', body: '{}', headers: { 'content-type': 'text/plain' } });
    expect(media.status).toBe(415);
    expect(errorCode(media)).toBe('http/unsupported-media-type');
    const missing = await call({ path: '/v1/nothing' });
    expect(missing.status).toBe(404);
    expect(errorCode(missing)).toBe('http/not-found');
    const method = await call({ method: 'GET', path: '/v1/attest' });
    expect(method.status).toBe(405);
    expect(errorCode(method)).toBe('http/method-not-allowed');
  });

  it('creates join tokens through the CLI and prints the complete join command', async () => {
    const t = await createToken('edge-cli');
    expect(t.token).toMatch(/^ewjt_/);
    expect(t.bundleDigest).toBe(printedDigest);
    expect(t.cloud).toBe(`${host}:${port}`);
    expect(t.joinCommand).toBe(
      `edgeward edge join --cloud ${host}:${port} --token ${t.token} --bundle-digest ${printedDigest} --node edge-cli --data-dir /var/lib/edgeward/edge`,
    );
    const human = await runCli(['token', 'create', '--node', 'edge-cli', '--ttl', '1m', '--data-dir', dir]);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/edgeward edge join --cloud 127\.0\.0\.1:[0-9]+ --token ewjt_\S+ --bundle-digest sha256:[0-9a-f]{64} --node edge-cli --data-dir/);
    // The token is never logged.
    expect(cloud.stderrText()).not.toContain(t.token);
    const badTtl = await runCli(['token', 'create', '--node', 'edge-cli', '--ttl', '2d', '--data-dir', dir]);
    expect(badTtl.code).toBe(2);
    const badName = await runCli(['token', 'create', '--node', 'Not_A_Name', '--data-dir', dir]);
    expect(badName.code).toBe(1);
    expect(badName.stderr).toContain('node-name/invalid');
  });

  it('keeps its data dir private: 0700 dirs, 0600 database and key files', () => {
    const mode = (p: string): number => statSync(p).mode & 0o777;
    expect(mode(dir)).toBe(0o700);
    expect(mode(join(dir, 'cloud.db'))).toBe(0o600);
    expect(mode(join(dir, 'keys'))).toBe(0o700);
    const keys = readdirSync(join(dir, 'keys'));
    expect(keys.length).toBeGreaterThanOrEqual(3); // root, signing CA, JWT key
    for (const k of keys) expect(mode(join(dir, 'keys', k))).toBe(0o600);
    expect(mode(join(dir, 'admin'))).toBe(0o700);
    expect(mode(join(dir, 'admin', 'admin.sock'))).toBe(0o600);
  });
});

describe('attested join over real HTTPS', () => {
  it('joins with a token, renews with the node SVID as client certificate, and lists the node', async () => {
    const bundle = await fetchBundle();
    const { chain, certPem, keyPem } = await join_('edge-1');
    const v = validateX509Svid(chain, bundle, Date.now());
    expect(v.spiffeId.toString()).toBe('spiffe://edgeward.local/edgeward/node/edge-1');

    const { csr } = await keyAndCsr('ignored');
    const r = await post('/v1/node', { v: 1, kind: 'renew.request', csr }, { cert: certPem, key: keyPem });
    expect(r.status).toBe(200);
    const m = message(r);
    if (m.kind !== 'renew.result') throw new Error(r.text);
    const renewed = validateX509Svid(m.svidChainDer, bundle, Date.now());
    expect(renewed.spiffeId.toString()).toBe('spiffe://edgeward.local/edgeward/node/edge-1');
    expect(renewed.leaf.serialHex).not.toBe(v.leaf.serialHex);

    const list = await runCli(['node', 'list', '--json', '--data-dir', dir]);
    expect(list.code).toBe(0);
    const nodes = JSON.parse(list.stdout) as Array<{ name: string; status: string; method: string; spiffeId: string }>;
    expect(nodes.find((n) => n.name === 'edge-1')).toMatchObject({ status: 'active', method: 'join_token', spiffeId: 'spiffe://edgeward.local/edgeward/node/edge-1' });
    const table = await runCli(['node', 'list', '--data-dir', dir]);
    expect(table.stdout).toMatch(/^NAME\s+METHOD\s+STATUS/m);
    expect(table.stdout).toMatch(/^edge-1\s+join_token\s+active/m);
    const show = await runCli(['node', 'show', 'edge-1', '--data-dir', dir]);
    expect(show.stdout).toContain('spiffe://edgeward.local/edgeward/node/edge-1');
  });

  it('refuses a reused token', async () => {
    const { token } = await createToken('edge-reuse');
    const first = await keyAndCsr('edge-reuse');
    const ok = await post('/v1/attest', { v: 1, kind: 'attest.begin', method: 'join_token', nodeName: 'edge-reuse', payload: { token }, csr: first.csr });
    expect(message(ok).kind).toBe('attest.result');
    const again = await post('/v1/attest', { v: 1, kind: 'attest.begin', method: 'join_token', nodeName: 'edge-reuse', payload: { token }, csr: first.csr });
    expect(again.status).toBe(403);
    expect(errorCode(again)).toBe('join-token/used');
  });

  it('closes a banned node\'s open keep-alive connection at once and refuses it afterwards', async () => {
    const { certPem, keyPem } = await join_('edge-ban');
    const agent = new Agent({ keepAlive: true, maxSockets: 1, cert: certPem, key: keyPem, rejectUnauthorized: false });
    try {
      const first = await post('/v1/node', { v: 1, kind: 'entries.request' }, { agent });
      expect(first.status).toBe(200);
      expect(message(first).kind).toBe('entries.result');
      const socket = first.socket;
      expect(socket.destroyed).toBe(false);
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      // A renewal on the same connection changes the node's record (a pending serial), which makes the
      // connection authenticate again; it must still be found and closed by the ban below.
      const { csr } = await keyAndCsr('ignored');
      const renewed = await post('/v1/node', { v: 1, kind: 'renew.request', csr }, { agent });
      expect(message(renewed).kind).toBe('renew.result');
      expect(renewed.socket).toBe(socket);

      const ban = await runCli(['node', 'ban', 'edge-ban', '--data-dir', dir]);
      expect(ban.code).toBe(0);
      await closed; // no timing assertion: the server closed the connection the node had open
      await cloud.waitForLog((l) => l.event === 'security.node_banned_connection_closed' && l.node === 'edge-ban');

      const after = await post('/v1/node', { v: 1, kind: 'entries.request' }, { cert: certPem, key: keyPem });
      expect(after.status).toBe(403);
      expect(errorCode(after)).toBe('node/banned');
      const shown = await cliJson<{ status: string }>(['node', 'show', 'edge-ban', '--json', '--data-dir', dir]);
      expect(shown.status).toBe('banned');

      expect((await runCli(['node', 'unban', 'edge-ban', '--data-dir', dir])).code).toBe(0);
      expect(await cliJson(['node', 'evict', 'edge-ban', '--json', '--data-dir', dir])).toEqual({ name: 'edge-ban', evicted: true });
      const gone = await post('/v1/node', { v: 1, kind: 'entries.request' }, { cert: certPem, key: keyPem });
      expect(gone.status).toBe(401);
      expect(errorCode(gone)).toBe('node/unknown');
      expect((await runCli(['node', 'evict', 'edge-ban', '--data-dir', dir])).code).toBe(1);
    } finally {
      agent.destroy();
    }
  });
});

describe('registration entries on the cloud', () => {
  it('edgeward entry create|list|delete work against the cloud data dir', async () => {
    const created = await runCli([
      'entry', 'create', '--spiffe-id', 'spiffe://edgeward.local/web', '--parent', 'spiffe://edgeward.local/edgeward/node/edge-1',
      '--selector', 'unix:uid:1000', '--json', '--data-dir', dir,
    ]);
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    const e = JSON.parse(created.stdout) as { id: string; spiffeId: string };
    expect(e.spiffeId).toBe('spiffe://edgeward.local/web');
    const list = await cliJson<Array<{ id: string }>>(['entry', 'list', '--json', '--data-dir', dir]);
    expect(list.map((x) => x.id)).toContain(e.id);
    const bad = await runCli(['entry', 'create', '--spiffe-id', 'spiffe://other.td/web', '--parent', 'spiffe://edgeward.local/edgeward/node/edge-1', '--selector', 'unix:uid:1', '--data-dir', dir]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('entry/invalid');
    expect((await runCli(['entry', 'delete', e.id, '--data-dir', dir])).code).toBe(0);
  });
});

describe('restart', () => {
  it('keeps the same CA: the bundle digest is stable across a restart', async () => {
    const before = printedDigest;
    expect(await cloud.stop()).toBe(0);
    await startCloud();
    expect(printedDigest).toBe(before);
    expect(bundleDigest(await fetchBundle())).toBe(before);
    const list = await cliJson<Array<{ name: string }>>(['node', 'list', '--json', '--data-dir', dir]);
    expect(list.map((n) => n.name)).toContain('edge-1');
  }, 30_000);
});
