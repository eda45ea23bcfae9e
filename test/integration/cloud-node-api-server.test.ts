/**
 * The node API listener in-process, for limits that need short settings: a client that never finishes its
 * headers (slowloris) is disconnected by the header deadline. (Architecture.md 9: every wait a timeout.)
 */
import { join } from 'node:path';
import { connect } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { createCloudStore, createNodeApiServer, openCloudCa, type NodeApiBackend } from '../../src/cloud/index.js';
import { TrustDomain } from '../../src/identity/index.js';
import { hostStateFiles } from '../../src/cli/host/index.js';
import { tempDir } from '../helpers/index.js';

const td = TrustDomain.parse('example.org');
const silent = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

describe('node API server limits', () => {
  it('closes a connection whose request headers never complete (headersTimeout)', async () => {
    const dir = await tempDir();
    const clock = { now: () => Date.now() };
    const store = createCloudStore(join(dir, 'cloud.db'), { files: hostStateFiles, trustDomain: td, clock });
    const ca = openCloudCa({
      trustDomain: td,
      store,
      files: hostStateFiles,
      keysDir: join(dir, 'keys'),
      caTtlMs: 24 * 3_600_000,
      maxX509SvidTtlMs: 3_600_000,
      maxJwtSvidTtlMs: 300_000,
      cloudSvidTtlMs: 3_600_000,
      clock,
      logger: silent,
    });
    const refuse = (): never => {
      throw new Error('not used');
    };
    const backend: NodeApiBackend<{ nodeName: string }> = { attest: refuse, authenticate: refuse, handle: refuse };
    const server = createNodeApiServer({
      host: '127.0.0.1',
      port: 0,
      identity: ca,
      backend,
      limits: { maxConnections: 10, headersTimeoutMs: 1000, requestTimeoutMs: 2000, keepAliveTimeoutMs: 1000 },
      logger: silent,
      clock,
    });
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
      ca.close();
      store.close();
    }
  });
});
