/**
 * SPIRE mode in the cloud store (issue #4 "Bring your own SPIRE"): nodes attested by SPIRE are recorded
 * with method `spire` on their first authenticated contact (schema 3 allows the method), their last-seen
 * serial follows SPIRE's rotation (not pinned), and ban/unban/evict work on them as on any node.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import {
  CLOUD_STORE_SCHEMA_VERSION,
  CloudStoreError,
  createCloudStore,
  type CloudStore,
  type NodeChange,
} from '../../src/cloud/store/index.js';
import { ManualClock, TrustDomain } from '../../src/identity/index.js';
import { tempDir } from '../helpers/index.js';
import { hostStateFiles } from '../../src/cli/host/index.js';

const td = TrustDomain.parse('example.org');
const T0 = Date.UTC(2026, 0, 1);
const HOUR = 3_600_000;

async function open(): Promise<{ store: CloudStore; path: string; clock: ManualClock }> {
  const dir = await tempDir('edgeward-cloud-spire-');
  const path = join(dir, 'cloud.db');
  const clock = new ManualClock(T0);
  return { store: createCloudStore(path, { files: hostStateFiles, trustDomain: td, clock }), path, clock };
}

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e instanceof CloudStoreError, String(e)).toBe(true);
    return (e as CloudStoreError).code;
  }
  throw new Error('expected a typed error');
}

describe('cloud store: SPIRE nodes (method spire)', () => {
  it('records a node on first contact, then only its last-seen serial; one change event for the creation', async () => {
    const { store, clock } = await open();
    try {
      const changes: NodeChange[] = [];
      store.onChange((c) => changes.push(c));
      const first = store.recordSpireNode('spire-1', '0a01', T0 + HOUR);
      expect(first.created).toBe(true);
      expect(first.node).toMatchObject({ name: 'spire-1', method: 'spire', serialHex: '0a01', notAfter: T0 + HOUR, banned: false, reattestable: false });
      expect(first.node.selectors).toEqual(['node:method:spire', 'node:name:spire-1']);
      expect(first.node.spiffeId.toString()).toBe('spiffe://example.org/edgeward/node/spire-1');
      clock.advance(1000);
      // SPIRE rotated the node SVID: any serial is accepted and recorded (no pinning).
      const again = store.recordSpireNode('spire-1', '0b02', T0 + 2 * HOUR);
      expect(again.created).toBe(false);
      expect(store.getNode('spire-1')).toMatchObject({ serialHex: '0b02', notAfter: T0 + 2 * HOUR, attestedAt: T0, updatedAt: T0 + 1000 });
      expect(changes).toEqual([{ kind: 'attested', name: 'spire-1' }]);
    } finally {
      store.close();
    }
  });

  it('a banned SPIRE node is refused until unbanned; evict forgets it; an embedded-mode record is not taken over', async () => {
    const { store } = await open();
    try {
      store.recordSpireNode('spire-1', '01', T0 + HOUR);
      store.ban('spire-1');
      expect(codeOf(() => store.recordSpireNode('spire-1', '02', T0 + HOUR))).toBe('cloud-store/node-banned');
      expect(store.getNode('spire-1')).toMatchObject({ banned: true, serialHex: undefined });
      store.unban('spire-1');
      expect(store.recordSpireNode('spire-1', '02', T0 + HOUR).node).toMatchObject({ banned: false, serialHex: '02' });
      expect(store.evict('spire-1')).toBe(true);
      expect(store.recordSpireNode('spire-1', '03', T0 + HOUR).created).toBe(true);

      store.upsertAttestedNode({ name: 'tpm-1', method: 'tpm', fingerprint: 'a'.repeat(64), serialHex: '01', notAfter: T0 + HOUR, reattestable: true });
      expect(codeOf(() => store.recordSpireNode('tpm-1', '04', T0 + HOUR))).toBe('cloud-store/fingerprint-mismatch');
      // ...and attestation cannot take over a SPIRE record either.
      expect(
        codeOf(() => store.upsertAttestedNode({ name: 'spire-1', method: 'join_token', fingerprint: 'b'.repeat(64), serialHex: '05', notAfter: T0 + HOUR, reattestable: false })),
      ).toBe('cloud-store/fingerprint-mismatch');
      expect(codeOf(() => store.recordSpireNode('spire-1', 'XYZ', T0 + HOUR))).toBe('cloud-store/invalid');
    } finally {
      store.close();
    }
  });

  it('migrates a schema-2 database (method CHECK without spire): rows kept, spire accepted afterwards', async () => {
    const { store, path } = await open();
    store.upsertAttestedNode({ name: 'old-1', method: 'x509pop', fingerprint: 'c'.repeat(64), serialHex: '0c', notAfter: T0 + HOUR, reattestable: true, selectors: ['x509pop:subject:cn:old-1'] });
    store.ban('old-1');
    store.close();
    // Rebuild the schema-2 nodes table exactly as migration 2 left it.
    const raw = new Database(path);
    raw.exec(`
      CREATE TABLE nodes_v2 (
        name TEXT PRIMARY KEY, method TEXT NOT NULL CHECK (method IN ('join_token', 'x509pop', 'tpm')), fingerprint TEXT NOT NULL,
        serial TEXT, not_after INTEGER, pending_serial TEXT, pending_not_after INTEGER,
        reattestable INTEGER NOT NULL CHECK (reattestable IN (0, 1)), banned INTEGER NOT NULL CHECK (banned IN (0, 1)),
        attested_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, selectors TEXT NOT NULL DEFAULT '[]') STRICT;
      INSERT INTO nodes_v2 SELECT * FROM nodes;
      DROP TABLE nodes;
      ALTER TABLE nodes_v2 RENAME TO nodes;
      UPDATE schema_version SET version = 2;`);
    expect(() => raw.prepare(`INSERT INTO nodes (name, method, fingerprint, reattestable, banned, attested_at, updated_at) VALUES ('x', 'spire', 'spire', 0, 0, 0, 0)`).run()).toThrow(/CHECK/);
    raw.close();
    const again = createCloudStore(path, { files: hostStateFiles, trustDomain: td, clock: new ManualClock(T0) });
    try {
      expect(again.getNode('old-1')).toMatchObject({ method: 'x509pop', banned: true, selectors: ['node:method:x509pop', 'node:name:old-1', 'x509pop:subject:cn:old-1'] });
      expect(again.recordSpireNode('spire-1', '01', T0 + HOUR).node.method).toBe('spire');
    } finally {
      again.close();
    }
    const check = new Database(path, { readonly: true });
    try {
      expect(check.prepare('SELECT version FROM schema_version').all()).toEqual([{ version: CLOUD_STORE_SCHEMA_VERSION }]);
      expect(CLOUD_STORE_SCHEMA_VERSION).toBe(3);
    } finally {
      check.close();
    }
  });
});
