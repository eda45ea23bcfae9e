/**
 * The cloud core's SQLite store on a real file (issue #4; reference §3 "Node attestation" join_token,
 * "Ban/evict", "Agent renewal"; §5 item 34).
 */
import { chmodSync, existsSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import {
  EntryValidationError,
  generateJoinToken,
  hashJoinToken,
  JoinTokenError,
  NodeNameError,
  verifyJoinToken,
} from '../../src/attestation/index.js';
import {
  CLOUD_STORE_SCHEMA_VERSION,
  CloudStoreError,
  createCloudStore,
  MAX_NODE_FINGERPRINT_LENGTH,
  type AttestedNodeInput,
  type CloudStore,
  type NodeChange,
} from '../../src/cloud/store/index.js';
import { ManualClock, TrustDomain, type CaSnapshot } from '../../src/identity/index.js';
import { tempDir } from '../helpers/index.js';
import { hostStateFiles } from '../../src/cli/host/index.js';

const td = TrustDomain.parse('example.org');
const T0 = Date.UTC(2026, 0, 1);
const FP_A = 'a'.repeat(64);
const FP_B = 'b'.repeat(64);

async function open(): Promise<{ store: CloudStore; path: string; clock: ManualClock; dir: string }> {
  const dir = await tempDir('edgeward-cloud-');
  const path = join(dir, 'cloud.db');
  const clock = new ManualClock(T0);
  return { store: createCloudStore(path, { files: hostStateFiles, trustDomain: td, clock }), path, clock, dir };
}

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e instanceof CloudStoreError || e instanceof NodeNameError || e instanceof JoinTokenError, String(e)).toBe(true);
    return (e as CloudStoreError).code;
  }
  throw new Error('expected a typed error');
}

function node(extra: Partial<AttestedNodeInput> = {}): AttestedNodeInput {
  return { name: 'edge-1', method: 'tpm', fingerprint: FP_A, serialHex: '01aa', notAfter: T0 + 3_600_000, reattestable: true, ...extra };
}

describe('cloud store: join tokens (single use, hashed, pruned)', () => {
  it('a second consume returns the record with usedAt set, so verifyJoinToken reports join-token/used', async () => {
    const { store, path } = await open();
    try {
      const { token, record } = generateJoinToken('edge-1', 600_000, T0);
      store.addJoinToken(record);
      const first = store.consume(hashJoinToken(token), T0 + 1000);
      expect(first).toEqual(record);
      expect(first?.usedAt).toBeUndefined();
      expect(verifyJoinToken(token, first, 'edge-1', T0 + 1000)).toEqual({ nodeName: 'edge-1', tokenHash: record.tokenHash });
      const second = store.consume(hashJoinToken(token), T0 + 2000);
      expect(second?.usedAt).toBe(T0 + 1000); // stays the FIRST use time
      let code = '';
      try {
        verifyJoinToken(token, second, 'edge-1', T0 + 2000);
      } catch (e) {
        code = (e as JoinTokenError).code;
      }
      expect(code).toBe('join-token/used');
      expect(store.consume('f'.repeat(64), T0)).toBeUndefined();
      expect(store.consume('not-a-hash', T0)).toBeUndefined();
      expect(codeOf(() => store.addJoinToken(record))).toBe('cloud-store/token-exists');
    } finally {
      store.close();
    }
    // Only the hash is on disk, never the token.
    const raw = new Database(path, { readonly: true });
    try {
      const rows = raw.prepare('SELECT * FROM join_tokens').all() as Record<string, unknown>[];
      expect(rows).toHaveLength(1);
      expect(JSON.stringify(rows)).not.toContain('ewjt_');
    } finally {
      raw.close();
    }
  });

  it('pruneExpiredTokens deletes expired tokens (used or not) and keeps live ones', async () => {
    const { store } = await open();
    try {
      const a = generateJoinToken('edge-1', 60_000, T0);
      const b = generateJoinToken('edge-2', 600_000, T0);
      const c = generateJoinToken('edge-3', 60_000, T0);
      for (const g of [a, b, c]) store.addJoinToken(g.record);
      store.consume(c.record.tokenHash, T0 + 1);
      expect(store.pruneExpiredTokens(T0 + 59_999)).toBe(0);
      expect(store.pruneExpiredTokens(T0 + 60_000)).toBe(2);
      expect(store.consume(a.record.tokenHash, T0 + 60_001)).toBeUndefined();
      expect(store.consume(c.record.tokenHash, T0 + 60_001)).toBeUndefined();
      expect(store.consume(b.record.tokenHash, T0 + 60_001)?.nodeName).toBe('edge-2');
    } finally {
      store.close();
    }
  });

  it('refuses malformed token records', async () => {
    const { store } = await open();
    try {
      const { record } = generateJoinToken('edge-1', 600_000, T0);
      expect(codeOf(() => store.addJoinToken({ ...record, tokenHash: record.tokenHash.toUpperCase() }))).toBe('cloud-store/invalid');
      expect(codeOf(() => store.addJoinToken({ ...record, nodeName: 'Edge_1' }))).toBe('node-name/invalid');
      expect(codeOf(() => store.addJoinToken({ ...record, expiresAt: record.createdAt }))).toBe('cloud-store/invalid');
      expect(codeOf(() => store.consume(record.tokenHash, -1))).toBe('cloud-store/invalid');
    } finally {
      store.close();
    }
  });
});

describe('cloud store: node registry', () => {
  it('attest, renew (pending -> promote), old serial refused after promotion', async () => {
    const { store, clock } = await open();
    const changes: NodeChange[] = [];
    store.onChange((c) => changes.push(c));
    try {
      const n = store.upsertAttestedNode(node());
      expect(n).toMatchObject({ name: 'edge-1', method: 'tpm', fingerprint: FP_A, serialHex: '01aa', banned: false, attestedAt: T0 });
      expect(n.spiffeId.toString()).toBe('spiffe://example.org/edgeward/node/edge-1');
      expect(store.isSerialCurrent('edge-1', '01aa')).toBe(true);
      clock.advance(1000);
      store.setPendingSerial('edge-1', '02bb', T0 + 7_200_000);
      // Reference §5 item 34: the old serial stays valid until the new one is first used.
      expect(store.isSerialCurrent('edge-1', '01aa')).toBe(true);
      expect(store.isSerialCurrent('edge-1', '02bb')).toBe(true);
      expect(store.promoteSerial('edge-1', '02bb')).toBe(true);
      expect(store.isSerialCurrent('edge-1', '01aa')).toBe(false);
      expect(store.isSerialCurrent('edge-1', '02bb')).toBe(true);
      expect(store.getNode('edge-1')).toMatchObject({ serialHex: '02bb', notAfter: T0 + 7_200_000, pendingSerialHex: undefined });
      expect(store.promoteSerial('edge-1', '02bb')).toBe(false);
      expect(codeOf(() => store.promoteSerial('edge-1', '01aa'))).toBe('cloud-store/unknown-serial');
      // acceptSerial: check + promote in one step
      store.setPendingSerial('edge-1', '03cc');
      expect(store.acceptSerial('edge-1', '02bb')).toBe(true);
      expect(store.acceptSerial('edge-1', '03cc')).toBe(true);
      expect(store.acceptSerial('edge-1', '02bb')).toBe(false);
      expect(store.getNode('edge-1')?.notAfter).toBe(T0 + 7_200_000); // no pending notAfter given: kept
      // re-attestation with the same credential replaces the serial
      store.upsertAttestedNode(node({ serialHex: '04dd' }));
      expect(store.isSerialCurrent('edge-1', '03cc')).toBe(false);
      expect(store.getNode('edge-1')?.attestedAt).toBe(T0);
      expect(changes.map((c) => c.kind)).toEqual(['attested', 'renewal-pending', 'promoted', 'renewal-pending', 'promoted', 'attested']);
      expect(codeOf(() => store.setPendingSerial('nobody', '05'))).toBe('cloud-store/unknown-node');
    } finally {
      store.close();
    }
  });

  it('serialStatus: why a serial is refused, promotion only of the pending serial, nothing written otherwise', async () => {
    const { store } = await open();
    const changes: NodeChange[] = [];
    store.onChange((c) => changes.push(c));
    try {
      expect(store.serialStatus('edge-1', '01aa')).toBe('unknown-node');
      expect(store.serialStatus("edge-1' OR 1=1 --", '01aa')).toBe('unknown-node');
      store.upsertAttestedNode(node());
      expect(store.serialStatus('edge-1', '01aa')).toBe('current');
      expect(store.serialStatus('edge-1', '02bb')).toBe('superseded');
      store.setPendingSerial('edge-1', '02bb', T0 + 7_200_000);
      expect(store.serialStatus('edge-1', '01aa')).toBe('current'); // the old one until the new one is used
      expect(changes.map((c) => c.kind)).toEqual(['attested', 'renewal-pending']);
      expect(store.serialStatus('edge-1', '02bb')).toBe('promoted');
      expect(store.getNode('edge-1')).toMatchObject({ serialHex: '02bb', notAfter: T0 + 7_200_000, pendingSerialHex: undefined });
      expect(store.serialStatus('edge-1', '02bb')).toBe('current');
      expect(store.serialStatus('edge-1', '01aa')).toBe('superseded');
      expect(changes.map((c) => c.kind)).toEqual(['attested', 'renewal-pending', 'promoted']);
      store.setPendingSerial('edge-1', '03cc');
      store.ban('edge-1');
      expect(store.serialStatus('edge-1', '02bb')).toBe('banned');
      expect(store.serialStatus('edge-1', '03cc')).toBe('banned');
      expect(changes.map((c) => c.kind)).toEqual(['attested', 'renewal-pending', 'promoted', 'renewal-pending', 'banned']);
    } finally {
      store.close();
    }
  });

  it('ban clears serials and refuses attest/renew until unban; evict deletes the record', async () => {
    const { store } = await open();
    const changes: NodeChange[] = [];
    const off = store.onChange((c) => changes.push(c));
    try {
      store.upsertAttestedNode(node());
      store.setPendingSerial('edge-1', '02bb');
      const banned = store.ban('edge-1');
      expect(banned).toMatchObject({ banned: true, serialHex: undefined, pendingSerialHex: undefined });
      expect(changes.at(-1)).toEqual({ kind: 'banned', name: 'edge-1' });
      expect(store.isSerialCurrent('edge-1', '01aa')).toBe(false);
      expect(store.isSerialCurrent('edge-1', '02bb')).toBe(false);
      expect(store.acceptSerial('edge-1', '02bb')).toBe(false);
      expect(codeOf(() => store.upsertAttestedNode(node({ serialHex: '05' })))).toBe('cloud-store/node-banned');
      expect(codeOf(() => store.setPendingSerial('edge-1', '05'))).toBe('cloud-store/node-banned');
      expect(codeOf(() => store.promoteSerial('edge-1', '02bb'))).toBe('cloud-store/node-banned');
      // evict does not lift a ban by re-attesting with ANOTHER credential either
      expect(codeOf(() => store.upsertAttestedNode(node({ fingerprint: FP_B })))).toBe('cloud-store/node-banned');
      expect(store.unban('edge-1').banned).toBe(false);
      expect(store.isSerialCurrent('edge-1', '01aa')).toBe(false); // unban restores no serial: attest again
      store.upsertAttestedNode(node({ serialHex: '06' }));
      expect(store.isSerialCurrent('edge-1', '06')).toBe(true);
      expect(store.evict('edge-1')).toBe(true);
      expect(store.getNode('edge-1')).toBeUndefined();
      expect(store.isSerialCurrent('edge-1', '06')).toBe(false);
      expect(store.evict('edge-1')).toBe(false);
      expect(codeOf(() => store.ban('edge-1'))).toBe('cloud-store/unknown-node');
      expect(changes.map((c) => c.kind)).toEqual(['attested', 'renewal-pending', 'banned', 'unbanned', 'attested', 'evicted']);
      off();
      store.upsertAttestedNode(node());
      expect(changes).toHaveLength(6);
    } finally {
      store.close();
    }
  });

  it('another credential claiming an attested name is refused unless the node was evicted first', async () => {
    const { store } = await open();
    try {
      store.upsertAttestedNode(node());
      expect(codeOf(() => store.upsertAttestedNode(node({ fingerprint: FP_B })))).toBe('cloud-store/fingerprint-mismatch');
      expect(codeOf(() => store.upsertAttestedNode(node({ method: 'x509pop' })))).toBe('cloud-store/fingerprint-mismatch');
      expect(store.getNode('edge-1')?.fingerprint).toBe(FP_A);
      expect(store.isSerialCurrent('edge-1', '01aa')).toBe(true);
      store.evict('edge-1');
      expect(store.upsertAttestedNode(node({ fingerprint: FP_B, serialHex: '07' })).fingerprint).toBe(FP_B);
      // join_token: a fresh token for the name replaces the previous token, but not another method's credential
      store.upsertAttestedNode(node({ name: 'edge-j', method: 'join_token', fingerprint: FP_A, reattestable: false }));
      expect(store.upsertAttestedNode(node({ name: 'edge-j', method: 'join_token', fingerprint: FP_B, serialHex: '08', reattestable: false })).fingerprint).toBe(FP_B);
      expect(codeOf(() => store.upsertAttestedNode(node({ method: 'join_token', fingerprint: FP_A, reattestable: false })))).toBe('cloud-store/fingerprint-mismatch');
    } finally {
      store.close();
    }
  });

  it('hostile inputs: bad names, oversized fingerprint, bad serial/method/time, with exact codes', async () => {
    const { store } = await open();
    try {
      for (const name of ['', 'Edge-1', '-edge', 'edge-', 'a'.repeat(64), '../x', 'edge/1', 'edge\u0000']) {
        expect(codeOf(() => store.upsertAttestedNode(node({ name }))), name).toBe('node-name/invalid');
      }
      expect(codeOf(() => store.upsertAttestedNode(node({ name: 42 as unknown as string })))).toBe('node-name/invalid');
      expect(codeOf(() => store.upsertAttestedNode(node({ fingerprint: 'a'.repeat(MAX_NODE_FINGERPRINT_LENGTH + 1) })))).toBe('cloud-store/invalid');
      expect(codeOf(() => store.upsertAttestedNode(node({ fingerprint: '' })))).toBe('cloud-store/invalid');
      expect(codeOf(() => store.upsertAttestedNode(node({ fingerprint: 'has space' })))).toBe('cloud-store/invalid');
      expect(codeOf(() => store.upsertAttestedNode(node({ serialHex: '1' })))).toBe('cloud-store/invalid');
      expect(codeOf(() => store.upsertAttestedNode(node({ serialHex: 'ZZ' })))).toBe('cloud-store/invalid');
      expect(codeOf(() => store.upsertAttestedNode(node({ method: 'k8s' as 'tpm' })))).toBe('cloud-store/invalid');
      expect(codeOf(() => store.upsertAttestedNode(node({ notAfter: Number.NaN })))).toBe('cloud-store/invalid');
      expect(codeOf(() => store.ban('../etc'))).toBe('node-name/invalid');
      expect(store.listNodes()).toEqual([]);
      // read paths never throw on hostile names
      expect(store.getNode('x'.repeat(10_000))).toBeUndefined();
      expect(store.isSerialCurrent("edge-1' OR 1=1 --", '01aa')).toBe(false);
      // the fingerprint bound itself is accepted
      expect(store.upsertAttestedNode(node({ fingerprint: 'a'.repeat(MAX_NODE_FINGERPRINT_LENGTH) })).name).toBe('edge-1');
    } finally {
      store.close();
    }
  });
});

describe('cloud store: persistence and file security', () => {
  const snap: CaSnapshot = {
    version: 1,
    trustDomain: 'example.org',
    root: { certDer: 'AAAA', keyId: 'root-1' },
    slots: [{ id: 's1', state: 'active', certDer: 'BBBB', keyId: 'ca-1', jwtKid: 'kid-1', jwtKeyId: 'jwt-1' }],
    sequence: 3,
  };

  it('nodes, tokens and the CA snapshot survive a reopen', async () => {
    const { store, path } = await open();
    const { token, record } = generateJoinToken('edge-9', 600_000, T0);
    expect(store.loadCaSnapshot()).toBeUndefined();
    store.addJoinToken(record);
    store.consume(record.tokenHash, T0 + 5);
    store.upsertAttestedNode(node());
    store.setPendingSerial('edge-1', '02bb');
    store.upsertAttestedNode(node({ name: 'edge-2', method: 'x509pop', fingerprint: FP_B, serialHex: '09' }));
    store.ban('edge-2');
    store.saveCaSnapshot(snap);
    store.saveCaSnapshot({ ...snap, sequence: 4 });
    store.close();
    expect(codeOf(() => store.listNodes())).toBe('cloud-store/closed');

    const again = createCloudStore(path, { files: hostStateFiles, trustDomain: td, clock: new ManualClock(T0) });
    try {
      expect(again.listNodes().map((n) => [n.name, n.serialHex, n.pendingSerialHex, n.banned])).toEqual([
        ['edge-1', '01aa', '02bb', false],
        ['edge-2', undefined, undefined, true],
      ]);
      expect(again.loadCaSnapshot()).toEqual({ ...snap, sequence: 4 });
      const used = again.consume(hashJoinToken(token), T0 + 10);
      expect(used?.usedAt).toBe(T0 + 5);
    } finally {
      again.close();
    }
    const raw = new Database(path, { readonly: true });
    try {
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(raw.prepare('SELECT version FROM schema_version').all()).toEqual([{ version: CLOUD_STORE_SCHEMA_VERSION }]);
      expect(raw.prepare('SELECT count(*) AS n FROM ca_state').get()).toEqual({ n: 1 });
    } finally {
      raw.close();
    }
  });

  it('CA snapshot: another trust domain is refused on save; a tampered one on load', async () => {
    const { store, path } = await open();
    expect(codeOf(() => store.saveCaSnapshot({ ...snap, trustDomain: 'other.org' }))).toBe('cloud-store/invalid');
    store.saveCaSnapshot(snap);
    store.close();
    const raw = new Database(path);
    raw.prepare('UPDATE ca_state SET snapshot = ?').run(JSON.stringify({ ...snap, trustDomain: 'evil.org' }));
    raw.close();
    const again = createCloudStore(path, { files: hostStateFiles, trustDomain: td, clock: new ManualClock(T0) });
    try {
      expect(codeOf(() => again.loadCaSnapshot())).toBe('cloud-store/corrupt');
    } finally {
      again.close();
    }
  });

  it('database file and its WAL/SHM files have mode 0600; a loose existing file is tightened', async () => {
    const { store, path, dir } = await open();
    try {
      store.upsertAttestedNode(node());
      expect(existsSync(`${path}-wal`)).toBe(true);
      for (const p of [path, `${path}-wal`, `${path}-shm`]) {
        if (existsSync(p)) expect((statSync(p).mode & 0o777).toString(8), p).toBe('600');
      }
    } finally {
      store.close();
    }
    const loose = join(dir, 'loose.db');
    writeFileSync(loose, '');
    chmodSync(loose, 0o644);
    createCloudStore(loose, { files: hostStateFiles, trustDomain: td, clock: new ManualClock(T0) }).close();
    expect((statSync(loose).mode & 0o777).toString(8)).toBe('600');
  });

  it('refuses symlinks (also a symlinked -wal), directories, another trust domain, a newer schema', async () => {
    const dir = await tempDir('edgeward-cloud-');
    const clock = new ManualClock(T0);
    const target = join(dir, 'real.db');
    writeFileSync(target, '');
    symlinkSync(target, join(dir, 'link.db'));
    expect(codeOf(() => createCloudStore(join(dir, 'link.db'), { files: hostStateFiles, trustDomain: td, clock }))).toBe('cloud-store/io');
    const victim = join(dir, 'victim');
    writeFileSync(victim, '');
    symlinkSync(victim, join(dir, 'side.db-wal'));
    expect(codeOf(() => createCloudStore(join(dir, 'side.db'), { files: hostStateFiles, trustDomain: td, clock }))).toBe('cloud-store/io');
    expect(statSync(victim).size).toBe(0);
    symlinkSync(join(dir, 'elsewhere'), join(dir, 'dangling.db-shm'));
    expect(codeOf(() => createCloudStore(join(dir, 'dangling.db'), { files: hostStateFiles, trustDomain: td, clock }))).toBe('cloud-store/io');
    expect(existsSync(join(dir, 'elsewhere'))).toBe(false);
    expect(codeOf(() => createCloudStore(dir, { files: hostStateFiles, trustDomain: td, clock }))).toBe('cloud-store/io');

    const path = join(dir, 'cloud.db');
    createCloudStore(path, { files: hostStateFiles, trustDomain: td, clock }).close();
    expect(codeOf(() => createCloudStore(path, { files: hostStateFiles, trustDomain: TrustDomain.parse('other.org'), clock }))).toBe('cloud-store/trust-domain');
    const raw = new Database(path);
    raw.prepare('UPDATE schema_version SET version = ?').run(CLOUD_STORE_SCHEMA_VERSION + 1);
    raw.close();
    expect(codeOf(() => createCloudStore(path, { files: hostStateFiles, trustDomain: td, clock }))).toBe('cloud-store/version');
  });

  it('a tampered node row (banned but with a serial) is refused as corrupt, not served', async () => {
    const { store, path } = await open();
    store.upsertAttestedNode(node());
    store.ban('edge-1');
    store.close();
    const raw = new Database(path);
    raw.prepare("UPDATE nodes SET serial = '01aa' WHERE name = 'edge-1'").run();
    raw.close();
    const again = createCloudStore(path, { files: hostStateFiles, trustDomain: td, clock: new ManualClock(T0) });
    try {
      expect(codeOf(() => again.getNode('edge-1'))).toBe('cloud-store/corrupt');
      expect(again.isSerialCurrent('edge-1', '01aa')).toBe(false); // banned flag still wins
    } finally {
      again.close();
    }
  });
});

describe('cloud store: registration entries and delegation (schema 2; reference §3 "Registration entries")', () => {
  const NODE1 = 'spiffe://example.org/edgeward/node/edge-1';
  const CLOUD = 'spiffe://example.org/edgeward/cloud';
  const doc = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    spiffeId: 'spiffe://example.org/web',
    parentId: NODE1,
    selectors: ['unix:uid:1000'],
    ...extra,
  });

  it('create/get/list/delete with a revision bumped by every write, events, and exact error codes', async () => {
    const { store, clock } = await open();
    const changes: unknown[] = [];
    store.onEntryChange((c) => changes.push(c));
    try {
      expect(store.entriesRevision).toBe(0);
      expect(store.listEntries()).toEqual([]);
      const a = store.createEntry(doc({ id: 'web', x509SvidTtlMs: 600_000, dnsNames: ['web.example.org'], hint: 'web' }));
      expect(a).toMatchObject({ id: 'web', revision: 1, createdAt: T0, x509SvidTtlMs: 600_000, dnsNames: ['web.example.org'], hint: 'web' });
      expect(a.spiffeId.toString()).toBe('spiffe://example.org/web');
      clock.advance(5);
      const b = store.createEntry(doc({ spiffeId: 'spiffe://example.org/db' }));
      expect(b.id).toMatch(/^[0-9a-f]{32}$/);
      expect(b).toMatchObject({ revision: 2, createdAt: T0 + 5 });
      expect(store.entriesRevision).toBe(2);
      expect(store.listEntries().map((e) => e.id)).toEqual(['web', b.id]);
      expect(store.getEntry('web')).toEqual(a);
      expect(store.getEntry('nope')).toBeUndefined();
      // idempotent with the same id and content; refused with other content or the same registration
      expect(store.createEntry(doc({ id: 'web', x509SvidTtlMs: 600_000, dnsNames: ['web.example.org'], hint: 'web' }))).toEqual(a);
      expect(store.entriesRevision).toBe(2);
      expect(codeOf(() => store.createEntry(doc({ id: 'web', hint: 'other' })))).toBe('entry/id-exists');
      expect(codeOf(() => store.createEntry(doc({ id: 'web2', spiffeId: 'spiffe://example.org/db' })))).toBe('entry/duplicate');
      expect(store.deleteEntry('web')).toBe(true);
      expect(store.deleteEntry('web')).toBe(false);
      expect(store.deleteEntry('x'.repeat(10_000))).toBe(false);
      expect(store.entriesRevision).toBe(3);
      expect(store.listEntries().map((e) => e.id)).toEqual([b.id]);
      expect(changes).toEqual([
        { revision: 1, cause: 'create', id: 'web' },
        { revision: 2, cause: 'create', id: b.id },
        { revision: 3, cause: 'delete', id: 'web' },
      ]);
    } finally {
      store.close();
    }
  });

  it('entries are validated (validateEntryInput, TTL maxima, trust domain) and /edgeward/ IDs are reserved', async () => {
    const dir = await tempDir('edgeward-cloud-');
    const store = createCloudStore(join(dir, 'cloud.db'), { files: hostStateFiles, trustDomain: td, clock: new ManualClock(T0), maxX509SvidTtlMs: 600_000 });
    const invalid = (raw: unknown): string => {
      try {
        store.createEntry(raw);
      } catch (e) {
        expect(e).toBeInstanceOf(EntryValidationError);
        return (e as EntryValidationError).code;
      }
      return 'accepted';
    };
    try {
      expect(invalid(doc({ x509SvidTtlMs: 600_001 }))).toBe('entry/invalid');
      expect(invalid(doc({ spiffeId: 'spiffe://other.org/web' }))).toBe('entry/invalid');
      expect(invalid(doc({ selectors: [] }))).toBe('entry/invalid');
      expect(invalid(doc({ admin: true }))).toBe('entry/invalid');
      expect(invalid(doc({ spiffeId: CLOUD }))).toBe('entry/invalid');
      expect(invalid(doc({ spiffeId: 'spiffe://example.org/edgeward/node/edge-2' }))).toBe('entry/invalid');
      expect(invalid('spiffe://example.org/web')).toBe('entry/invalid');
      expect(store.listEntries()).toEqual([]);
      expect(store.entriesRevision).toBe(0);
    } finally {
      store.close();
    }
  });

  it('node selectors: node:name and node:method always, attestation extras replaced at each attestation', async () => {
    const { store } = await open();
    try {
      expect(store.upsertAttestedNode(node({ method: 'x509pop', selectors: ['x509pop:subject:cn:edge-1'] })).selectors).toEqual([
        'node:method:x509pop',
        'node:name:edge-1',
        'x509pop:subject:cn:edge-1',
      ]);
      expect(store.upsertAttestedNode(node({ method: 'x509pop', serialHex: '02' })).selectors).toEqual(['node:method:x509pop', 'node:name:edge-1']);
      expect(codeOf(() => store.upsertAttestedNode(node({ name: 'edge-2', selectors: ['node:name:edge-1'] })))).toBe('cloud-store/invalid');
      expect(codeOf(() => store.upsertAttestedNode(node({ name: 'edge-2', selectors: ['no colon'] })))).toBe('cloud-store/invalid');
      expect(codeOf(() => store.upsertAttestedNode(node({ name: 'edge-2', selectors: Array.from({ length: 17 }, (_, i) => `t:${i}`) })))).toBe(
        'cloud-store/invalid',
      );
      expect(store.getNode('edge-2')).toBeUndefined();
    } finally {
      store.close();
    }
  });

  it('entriesDelegatedTo: parent = node ID, or parent = an alias (parent = cloud ID) whose selectors are all the node\'s', async () => {
    const { store } = await open();
    try {
      store.upsertAttestedNode(node({ method: 'x509pop', selectors: ['x509pop:subject:cn:edge-1'] }));
      store.upsertAttestedNode(node({ name: 'edge-2', method: 'join_token', fingerprint: FP_B, serialHex: '02' }));
      store.createEntry(doc({ id: 'direct1' }));
      store.createEntry(doc({ id: 'direct2', parentId: 'spiffe://example.org/edgeward/node/edge-2' }));
      // alias matching edge-1 only (by CN), alias matching every x509pop node, alias needing a selector nobody has
      store.createEntry({ id: 'alias-cn', spiffeId: 'spiffe://example.org/groups/cn1', parentId: CLOUD, selectors: ['x509pop:subject:cn:edge-1', 'node:method:x509pop'] });
      store.createEntry({ id: 'alias-all', spiffeId: 'spiffe://example.org/groups/all', parentId: CLOUD, selectors: ['node:method:join_token'] });
      store.createEntry({ id: 'alias-none', spiffeId: 'spiffe://example.org/groups/none', parentId: CLOUD, selectors: ['node:name:edge-1', 'tpm:ek-hash:00'] });
      // a "fake alias": same spiffeId as alias-cn but NOT parented by the cloud: it delegates nothing by itself
      store.createEntry({ id: 'fake', spiffeId: 'spiffe://example.org/groups/x', parentId: 'spiffe://example.org/somewhere', selectors: ['node:name:edge-2'] });
      store.createEntry(doc({ id: 'via-cn', parentId: 'spiffe://example.org/groups/cn1', spiffeId: 'spiffe://example.org/a' }));
      store.createEntry(doc({ id: 'via-all', parentId: 'spiffe://example.org/groups/all', spiffeId: 'spiffe://example.org/b' }));
      store.createEntry(doc({ id: 'via-none', parentId: 'spiffe://example.org/groups/none', spiffeId: 'spiffe://example.org/c' }));
      store.createEntry(doc({ id: 'via-fake', parentId: 'spiffe://example.org/groups/x', spiffeId: 'spiffe://example.org/d' }));
      expect(store.entriesDelegatedTo('edge-1').map((e) => e.id)).toEqual(['direct1', 'via-cn']);
      expect(store.entriesDelegatedTo('edge-2').map((e) => e.id)).toEqual(['direct2', 'via-all']);
      expect(store.entriesDelegatedTo('edge-3')).toEqual([]);
      expect(codeOf(() => store.entriesDelegatedTo('../edge-1'))).toBe('node-name/invalid');
      // a banned node has no selectors, so no alias applies
      store.ban('edge-1');
      expect(store.entriesDelegatedTo('edge-1').map((e) => e.id)).toEqual(['direct1']);
      // another connection's write is seen at once (revision-keyed cache)
      const other = createCloudStore(store.path, { files: hostStateFiles, trustDomain: td, clock: new ManualClock(T0) });
      try {
        other.deleteEntry('via-all');
        expect(store.entriesDelegatedTo('edge-2').map((e) => e.id)).toEqual(['direct2']);
      } finally {
        other.close();
      }
    } finally {
      store.close();
    }
  });

  it('migrates a schema-1 database: existing nodes get their node selectors, entries start at revision 0', async () => {
    const { store, path } = await open();
    store.close();
    const raw = new Database(path);
    raw.exec(`DROP TABLE entries; ALTER TABLE nodes DROP COLUMN selectors; DELETE FROM meta WHERE key = 'entries_revision';
      UPDATE schema_version SET version = 1;`);
    raw.prepare(`INSERT INTO nodes (name, method, fingerprint, serial, not_after, reattestable, banned, attested_at, updated_at)
      VALUES ('old-1', 'join_token', ?, '01', ?, 0, 0, ?, ?)`).run(FP_A, T0 + 1000, T0, T0);
    raw.close();
    const again = createCloudStore(path, { files: hostStateFiles, trustDomain: td, clock: new ManualClock(T0) });
    try {
      expect(again.getNode('old-1')?.selectors).toEqual(['node:method:join_token', 'node:name:old-1']);
      expect(again.entriesRevision).toBe(0);
      expect(again.createEntry(doc({ parentId: 'spiffe://example.org/edgeward/node/old-1' })).revision).toBe(1);
      expect(again.entriesDelegatedTo('old-1')).toHaveLength(1);
    } finally {
      again.close();
    }
    const check = new Database(path, { readonly: true });
    try {
      expect(check.prepare('SELECT version FROM schema_version').all()).toEqual([{ version: CLOUD_STORE_SCHEMA_VERSION }]);
      expect(CLOUD_STORE_SCHEMA_VERSION).toBe(3); // 3: method spire (SPIRE mode)
    } finally {
      check.close();
    }
  });

  it('a tampered entry row is refused as corrupt; entries survive a reopen', async () => {
    const { store, path } = await open();
    store.createEntry(doc({ id: 'web' }));
    store.close();
    const again = createCloudStore(path, { files: hostStateFiles, trustDomain: td, clock: new ManualClock(T0) });
    expect(again.getEntry('web')?.revision).toBe(1);
    again.close();
    const raw = new Database(path);
    raw.prepare("UPDATE entries SET spiffe_id = 'spiffe://example.org/admin' WHERE id = 'web'").run(); // dedupe key no longer matches
    raw.close();
    const third = createCloudStore(path, { files: hostStateFiles, trustDomain: td, clock: new ManualClock(T0) });
    try {
      expect(codeOf(() => third.listEntries())).toBe('cloud-store/corrupt');
    } finally {
      third.close();
    }
  });
});
