/**
 * The cloud CA (CaManager persisted in a real SQLite CloudStore, keys in 0600 files) and the cloud SVID:
 * half-life rotation (spiffe.md 3 "Agent rotation": rotate at 1/2 lifetime ±10 %), CA preparation persisted
 * (spiffe.md 3 "CA rotation"), the node API server swapping its TLS certificate in place, and its header
 * timeout against stalled requests.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { createCloudStore, createNodeApiServer, openCloudCa, type CloudCa, type NodeApiBackend } from '../../src/cloud/index.js';
import { bundleDigest, ManualClock, parseCertificate, rotationTime, TrustDomain, validateX509Svid } from '../../src/identity/index.js';
import { hostStateFiles } from '../../src/cli/host/index.js';
import { tempDir } from '../helpers/index.js';

const td = TrustDomain.parse('example.org');
const HOUR = 3_600_000;
const silent = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

async function open(dir: string, clock: ManualClock, caTtlMs = 7 * 24 * HOUR): Promise<{ ca: CloudCa; close(): void; store: ReturnType<typeof createCloudStore> }> {
  const store = createCloudStore(join(dir, 'cloud.db'), { files: hostStateFiles, trustDomain: td, clock });
  const ca = openCloudCa({
    trustDomain: td,
    store,
    files: hostStateFiles,
    keysDir: join(dir, 'keys'),
    caTtlMs,
    maxX509SvidTtlMs: HOUR,
    maxJwtSvidTtlMs: 5 * 60_000,
    cloudSvidTtlMs: HOUR,
    clock,
    logger: silent,
  });
  return {
    ca,
    store,
    close() {
      ca.close();
      store.close();
    },
  };
}

/** A node API server on a free port whose backend is never reached in these tests. */
function serverWith(ca: CloudCa, clock: ManualClock, limits: { maxConnections: number; headersTimeoutMs: number; requestTimeoutMs: number; keepAliveTimeoutMs: number }) {
  const refuse = (): never => {
    throw new Error('not used');
  };
  const backend: NodeApiBackend<{ nodeName: string }> = { attest: refuse, authenticate: refuse, handle: refuse };
  return createNodeApiServer({ host: '127.0.0.1', port: 0, identity: ca, backend, limits, logger: silent, clock });
}

describe('openCloudCa', () => {
  it('creates the CA, persists its snapshot, keeps keys 0600, and issues spiffe://TD/edgeward/cloud', async () => {
    const dir = await tempDir();
    const clock = new ManualClock(Date.now());
    const { ca, store, close } = await open(dir, clock);
    try {
      const svid = ca.svid();
      expect(svid.spiffeId.toString()).toBe('spiffe://example.org/edgeward/cloud');
      const v = validateX509Svid([...svid.chainDer], ca.bundle(), clock.now());
      expect(v.spiffeId.toString()).toBe('spiffe://example.org/edgeward/cloud');
      expect(svid.notAfter - svid.notBefore).toBeLessThanOrEqual(HOUR + 10_000);
      expect(store.loadCaSnapshot()).toBeDefined();
      const keys = readdirSync(join(dir, 'keys'));
      expect(keys.length).toBe(3);
      for (const k of keys) expect(statSync(join(dir, 'keys', k)).mode & 0o777).toBe(0o600);
      // The cloud SVID key is never written: only the CA's root, signing and JWT keys are on disk.
      expect(keys.every((k) => /^(root|ca|jwt)-/.test(k))).toBe(true);
    } finally {
      close();
    }
  });

  it('re-issues the cloud SVID at half-life (with a new key) and notifies once', async () => {
    const dir = await tempDir();
    const clock = new ManualClock(Date.now());
    const { ca, close } = await open(dir, clock);
    try {
      let calls = 0;
      ca.onChange(() => calls++);
      const first = ca.svid();
      ca.tick();
      expect(calls).toBe(0);
      expect(ca.svid()).toBe(first);
      clock.set(rotationTime(first) + 1);
      ca.tick();
      expect(calls).toBe(1);
      const second = ca.svid();
      expect(second.serialHex).not.toBe(first.serialHex);
      expect(parseCertificate(second.chainDer[0]!).spki.equals(parseCertificate(first.chainDer[0]!).spki)).toBe(false);
      ca.tick();
      expect(calls).toBe(1);
    } finally {
      close();
    }
  });

  it('restores the same CA from the store and key files (bundle digest stable), and persists CA preparation', async () => {
    const dir = await tempDir();
    const clock = new ManualClock(Date.now());
    const a = await open(dir, clock, 6 * HOUR);
    const digest = bundleDigest(a.ca.bundle());
    const slots = a.ca.manager.slots.length;
    a.close();
    const b = await open(dir, clock, 6 * HOUR);
    try {
      expect(bundleDigest(b.ca.bundle())).toBe(digest);
      // Half of the CA lifetime: a new signing CA is prepared (and enters the bundle) and persisted.
      clock.advance(3 * HOUR + 1000);
      const events = b.ca.tick();
      expect(events.map((e) => e.kind)).toContain('prepared');
      expect(b.store.loadCaSnapshot()!.slots.length).toBe(slots + 1);
      expect(bundleDigest(b.ca.bundle())).not.toBe(digest);
    } finally {
      b.close();
    }
  });
});

describe('node API server certificate rotation', () => {
  it('serves the new cloud SVID on new connections after rotation (setSecureContext)', async () => {
    const dir = await tempDir();
    const clock = new ManualClock(Date.now());
    const { ca, close } = await open(dir, clock);
    const server = serverWith(ca, clock, { maxConnections: 10, headersTimeoutMs: 5000, requestTimeoutMs: 10_000, keepAliveTimeoutMs: 5000 });
    const { port } = await server.start();
    const servedSerial = (): Promise<string> =>
      new Promise((resolve, reject) => {
        const s = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
          const raw = s.getPeerCertificate().raw;
          s.end();
          resolve(parseCertificate(raw).serialHex);
        });
        s.on('error', reject);
      });
    try {
      const first = ca.svid().serialHex;
      expect(await servedSerial()).toBe(first);
      clock.set(rotationTime(ca.svid()) + 1);
      ca.tick();
      expect(ca.svid().serialHex).not.toBe(first);
      expect(await servedSerial()).toBe(ca.svid().serialHex);
    } finally {
      await server.close();
      close();
    }
  });
});

describe('node API server limits', () => {
  it('closes a connection whose request headers never complete (headersTimeout)', async () => {
    const dir = await tempDir();
    const clock = new ManualClock(Date.now());
    const { ca, close } = await open(dir, clock, 24 * HOUR);
    const server = serverWith(ca, clock, { maxConnections: 10, headersTimeoutMs: 1000, requestTimeoutMs: 2000, keepAliveTimeoutMs: 1000 });
    const { port } = await server.start();
    try {
      const received = await new Promise<string>((resolve, reject) => {
        const s = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
          s.write('POST /v1/attest HTTP/1.1\r\nhost: cloud\r\ncontent-type: application/json\r\n'); // never the blank line
        });
        let text = '';
        s.on('data', (d: Buffer) => (text += d.toString()));
        s.on('close', () => resolve(text));
        s.on('error', (e) => (String((e as NodeJS.ErrnoException).code).match(/ECONNRESET|EPIPE/) ? undefined : reject(e)));
      });
      // Closed by the server (the test would time out otherwise); a 408 may or may not make it out first.
      if (received !== '') expect(received).toMatch(/^HTTP\/1\.1 408/);
    } finally {
      await server.close();
      close();
    }
  });
});
