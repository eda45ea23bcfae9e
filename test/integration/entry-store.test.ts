/**
 * The SQLite registration-entry store on a real file (reference §3 "Registration entries": uniqueness of
 * spiffeId+parentId+selectors, revision_number, created_at; matching by selector subset).
 */
import { chmodSync, existsSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { EntryValidationError, parseSelector } from '../../src/attestation/index.js';
import {
  createEntryStore,
  ENTRY_STORE_SCHEMA_VERSION,
  EntryStoreError,
  type EntryChange,
  type EntryStore,
  type EntryStoreOptions,
} from '../../src/edge/registration/index.js';
import { ManualClock, TrustDomain } from '../../src/identity/index.js';
import { tempDir } from '../helpers/index.js';
import { hostStateFiles } from '../../src/cli/host/index.js';

const td = TrustDomain.parse('example.org');
const T0 = Date.UTC(2026, 0, 1);

function entryDoc(n: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    spiffeId: `spiffe://example.org/workload/w${n}`,
    parentId: 'spiffe://example.org/edge/node-1',
    selectors: [`unix:uid:${1000 + n}`],
    ...extra,
  };
}

async function open(opts: Partial<EntryStoreOptions> = {}, file = 'entries.db'): Promise<{ store: EntryStore; path: string; clock: ManualClock; dir: string }> {
  const dir = await tempDir('edgeward-entries-');
  const path = join(dir, file);
  const clock = new ManualClock(T0);
  const store = createEntryStore(path, { files: hostStateFiles, trustDomain: td, clock, ...opts });
  return { store, path, clock, dir };
}

function storeCode(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(EntryStoreError);
    return (e as EntryStoreError).code;
  }
  throw new Error('expected EntryStoreError');
}

describe('entry store: CRUD', () => {
  it('creates, gets, lists (oldest first), deletes; random 128-bit ids; revision counter', async () => {
    const { store, clock } = await open();
    try {
      expect(store.revision).toBe(0);
      expect(store.list()).toEqual([]);
      const a = store.create(entryDoc(1, { x509SvidTtl: '30m', dnsNames: ['w1.example.org'], hint: 'w1' }));
      clock.advance(1000);
      const b = store.create(entryDoc(2, { jwtSvidTtlMs: 60_000 }));
      expect(a.id).toMatch(/^[0-9a-f]{32}$/);
      expect(b.id).not.toBe(a.id);
      expect(a).toMatchObject({ createdAt: T0, revision: 1, source: 'api', x509SvidTtlMs: 1_800_000, dnsNames: ['w1.example.org'], hint: 'w1' });
      expect(b).toMatchObject({ createdAt: T0 + 1000, revision: 2, jwtSvidTtlMs: 60_000 });
      expect(a.spiffeId.toString()).toBe('spiffe://example.org/workload/w1');
      expect(store.revision).toBe(2);
      expect(store.list().map((e) => e.id)).toEqual([a.id, b.id]);
      expect(store.get(a.id)).toEqual(a);
      expect(store.get('nope')).toBeUndefined();
      expect(Object.isFrozen(store.list())).toBe(true);
      expect(store.delete(a.id)).toBe(true);
      expect(store.delete(a.id)).toBe(false);
      expect(store.revision).toBe(3);
      expect(store.list().map((e) => e.id)).toEqual([b.id]);
    } finally {
      store.close();
    }
  });

  it('validates input (all problems at once) and writes nothing on failure', async () => {
    const { store } = await open();
    try {
      expect(() => store.create({ spiffeId: 'spiffe://other.org/x', selectors: [] })).toThrow(EntryValidationError);
      expect(() => store.create(entryDoc(1, { x509SvidTtl: '2h' }))).toThrow(EntryValidationError); // above the 1 h default max
      expect(store.revision).toBe(0);
      expect(store.list()).toEqual([]);
    } finally {
      store.close();
    }
  });

  it('honours configured TTL maxima', async () => {
    const { store } = await open({ maxX509SvidTtlMs: 4 * 3_600_000, maxJwtSvidTtlMs: 3_600_000 });
    try {
      expect(store.create(entryDoc(1, { x509SvidTtl: '4h', jwtSvidTtl: '1h' })).x509SvidTtlMs).toBe(14_400_000);
      expect(() => store.create(entryDoc(2, { x509SvidTtl: '5h' }))).toThrow(EntryValidationError);
    } finally {
      store.close();
    }
  });

  it('rejects duplicates (same spiffeId + parentId + selector set) with entry/duplicate', async () => {
    const { store } = await open();
    try {
      const first = store.create(entryDoc(1, { selectors: ['unix:uid:1', 'unix:gid:2'] }));
      // same set, other order, duplicates, other TTL/hint: still the same registration
      const err = (() => {
        try {
          store.create(entryDoc(1, { selectors: ['unix:gid:2', 'unix:uid:1', 'unix:uid:1'], hint: 'x', x509SvidTtl: '5m' }));
        } catch (e) {
          return e as EntryStoreError;
        }
        throw new Error('no error');
      })();
      expect(err).toBeInstanceOf(EntryStoreError);
      expect(err.code).toBe('entry/duplicate');
      expect(err.detail).toEqual({ existing: first.id });
      // a different selector set, parent or spiffeId is a different entry
      store.create(entryDoc(1, { selectors: ['unix:uid:1'] }));
      store.create(entryDoc(1, { selectors: ['unix:uid:1', 'unix:gid:2'], parentId: 'spiffe://example.org/edge/node-2' }));
      store.create(entryDoc(9, { selectors: ['unix:uid:1', 'unix:gid:2'] }));
      expect(store.list()).toHaveLength(4);
    } finally {
      store.close();
    }
  });

  it('caller-given ids: idempotent for identical content, entry/id-exists otherwise', async () => {
    const { store } = await open();
    try {
      const a = store.create(entryDoc(1, { id: 'web' }));
      expect(a.id).toBe('web');
      const again = store.create(entryDoc(1, { id: 'web' }));
      expect(again).toEqual(a);
      expect(store.revision).toBe(1); // no write
      expect(storeCode(() => store.create(entryDoc(2, { id: 'web' })))).toBe('entry/id-exists');
    } finally {
      store.close();
    }
  });

  it('index() matches by selector subset and is rebuilt after a change', async () => {
    const { store } = await open();
    try {
      const a = store.create(entryDoc(1, { selectors: ['unix:uid:1000'] }));
      const b = store.create(entryDoc(2, { selectors: ['unix:uid:1000', 'unix:path:/usr/bin/web'] }));
      const caller = ['unix:uid:1000', 'unix:gid:100'].map(parseSelector);
      const i1 = store.index();
      expect(store.index()).toBe(i1); // cached
      expect(i1.match(caller).map((e) => e.id)).toEqual([a.id]); // b needs a path the caller lacks
      store.delete(a.id);
      expect(store.index()).not.toBe(i1);
      expect(store.index().match(caller)).toEqual([]);
      expect(store.index().match([...caller, parseSelector('unix:path:/usr/bin/web')]).map((e) => e.id)).toEqual([b.id]);
    } finally {
      store.close();
    }
  });
});

describe('entry store: file, persistence, schema', () => {
  it('persists across reopen (entries, ids, createdAt, revisions) and uses WAL', async () => {
    const { store, path, clock } = await open();
    const a = store.create(entryDoc(1, { dnsNames: ['a.example.org'], hint: 'h', x509SvidTtl: '10m' }));
    clock.advance(5000);
    const b = store.create(entryDoc(2));
    store.close();
    expect(() => store.list()).toThrow(expect.objectContaining({ code: 'entry/store-closed' }));
    store.close(); // idempotent

    const again = createEntryStore(path, { files: hostStateFiles, trustDomain: td, clock });
    try {
      expect(again.revision).toBe(2);
      expect(again.list()).toEqual([a, b]);
      const c = again.create(entryDoc(3));
      expect(c.revision).toBe(3);
    } finally {
      again.close();
    }
    const raw = new Database(path, { readonly: true });
    try {
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(raw.prepare('SELECT version FROM schema_version').all()).toEqual([{ version: ENTRY_STORE_SCHEMA_VERSION }]);
    } finally {
      raw.close();
    }
  });

  it('database file (and its WAL/SHM files) have mode 0600; a loose existing file is tightened', async () => {
    const { store, path, dir } = await open();
    try {
      store.create(entryDoc(1));
      for (const p of [path, `${path}-wal`, `${path}-shm`]) {
        if (existsSync(p)) expect((statSync(p).mode & 0o777).toString(8), p).toBe('600');
      }
      expect(existsSync(`${path}-wal`)).toBe(true);
    } finally {
      store.close();
    }
    const loose = join(dir, 'loose.db');
    writeFileSync(loose, '');
    chmodSync(loose, 0o644);
    const s2 = createEntryStore(loose, { files: hostStateFiles, trustDomain: td, clock: new ManualClock(T0) });
    s2.close();
    expect((statSync(loose).mode & 0o777).toString(8)).toBe('600');
  });

  it('refuses a symlink, a directory, a missing parent directory, and a non-database file', async () => {
    const dir = await tempDir('edgeward-entries-');
    const clock = new ManualClock(T0);
    const target = join(dir, 'real.db');
    writeFileSync(target, '');
    symlinkSync(target, join(dir, 'link.db'));
    expect(storeCode(() => createEntryStore(join(dir, 'link.db'), { files: hostStateFiles, trustDomain: td, clock }))).toBe('entry/store-io');
    expect(storeCode(() => createEntryStore(dir, { files: hostStateFiles, trustDomain: td, clock }))).toBe('entry/store-io');
    expect(storeCode(() => createEntryStore(join(dir, 'no', 'such.db'), { files: hostStateFiles, trustDomain: td, clock }))).toBe('entry/store-io');
    const junk = join(dir, 'junk.db');
    writeFileSync(junk, 'this is not a database, just some text that is long enough'.repeat(20));
    expect(storeCode(() => createEntryStore(junk, { files: hostStateFiles, trustDomain: td, clock }))).toBe('entry/store-io');
  });

  it('refuses a database of another trust domain or a newer schema version', async () => {
    const { store, path } = await open();
    store.close();
    const clock = new ManualClock(T0);
    expect(storeCode(() => createEntryStore(path, { files: hostStateFiles, trustDomain: TrustDomain.parse('other.org'), clock }))).toBe('entry/store-trust-domain');
    const raw = new Database(path);
    raw.prepare('UPDATE schema_version SET version = ?').run(ENTRY_STORE_SCHEMA_VERSION + 1);
    raw.close();
    expect(storeCode(() => createEntryStore(path, { files: hostStateFiles, trustDomain: td, clock }))).toBe('entry/store-version');
  });

  it('a tampered row makes the store refuse to open (entry/store-corrupt), not serve it', async () => {
    const { store, path } = await open();
    const a = store.create(entryDoc(1));
    store.close();
    const raw = new Database(path);
    // widen the entry to every uid-0 caller without updating its dedupe key
    raw.prepare('UPDATE entries SET selectors = ? WHERE id = ?').run(JSON.stringify(['unix:uid:0']), a.id);
    raw.close();
    expect(storeCode(() => createEntryStore(path, { files: hostStateFiles, trustDomain: td, clock: new ManualClock(T0) }))).toBe('entry/store-corrupt');
    const raw2 = new Database(path);
    raw2.prepare('UPDATE entries SET selectors = ? WHERE id = ?').run('not json', a.id);
    raw2.close();
    expect(storeCode(() => createEntryStore(path, { files: hostStateFiles, trustDomain: td, clock: new ManualClock(T0) }))).toBe('entry/store-corrupt');
  });
});

describe('entry store: policy replacement and change events', () => {
  it('replaceFromPolicy is a diff: idempotent, keeps createdAt/seq of updated entries, leaves api entries alone', async () => {
    const { store, clock } = await open();
    const changes: EntryChange[] = [];
    const off = store.onChange((c) => changes.push(c));
    try {
      const api = store.create(entryDoc(100));
      const policy = [entryDoc(1, { id: 'one' }), entryDoc(2), entryDoc(3, { hint: 'three' })];
      const r1 = store.replaceFromPolicy(policy);
      expect(r1).toEqual({ added: 3, updated: 0, removed: 0, unchanged: 0, revision: 2 });
      const derived = store.list().find((e) => e.spiffeId.toString().endsWith('/w2'));
      expect(derived?.id).toMatch(/^[0-9a-f]{32}$/);
      expect(derived?.source).toBe('policy');

      // same policy again: nothing written, no revision, no event
      expect(store.replaceFromPolicy(policy)).toEqual({ added: 0, updated: 0, removed: 0, unchanged: 3, revision: 2 });
      expect(changes.map((c) => c.cause)).toEqual(['create', 'policy']);

      // change one, drop one, add one
      clock.advance(60_000);
      const before = store.get('one');
      const r3 = store.replaceFromPolicy([entryDoc(1, { id: 'one', x509SvidTtl: '10m' }), entryDoc(3, { hint: 'three' }), entryDoc(4)]);
      expect(r3).toEqual({ added: 1, updated: 1, removed: 1, unchanged: 1, revision: 3 });
      const one = store.get('one');
      expect(one?.x509SvidTtlMs).toBe(600_000);
      expect(one?.createdAt).toBe(before?.createdAt);
      expect(one?.revision).toBe(3);
      expect(store.list().map((e) => e.spiffeId.toString().split('/').pop())).toEqual(['w100', 'w1', 'w3', 'w4']);
      expect(store.get(api.id)).toEqual(api);
      expect(changes).toEqual([
        { revision: 1, cause: 'create' },
        { revision: 2, cause: 'policy' },
        { revision: 3, cause: 'policy' },
      ]);

      // empty policy removes policy entries only
      expect(store.replaceFromPolicy([])).toMatchObject({ removed: 3 });
      expect(store.list().map((e) => e.id)).toEqual([api.id]);
      off();
      store.delete(api.id);
      expect(changes).toHaveLength(4);
    } finally {
      store.close();
    }
  });

  it('swapping selector sets between two policy entries in one replace does not collide', async () => {
    const { store } = await open();
    try {
      const sameId = (id: string, sel: string): Record<string, unknown> => ({ ...entryDoc(1), id, selectors: [sel] });
      store.replaceFromPolicy([sameId('a', 'unix:uid:1'), sameId('b', 'unix:uid:2')]);
      expect(store.replaceFromPolicy([sameId('a', 'unix:uid:2'), sameId('b', 'unix:uid:1')])).toMatchObject({ updated: 2 });
      expect(store.get('a')?.selectors.map((s) => s.value)).toEqual(['uid:2']);
    } finally {
      store.close();
    }
  });

  it('replaceFromPolicy is all-or-nothing', async () => {
    const { store } = await open();
    try {
      store.replaceFromPolicy([entryDoc(1, { id: 'keep' })]);
      const api = store.create(entryDoc(50));
      const rev = store.revision;
      // invalid entries: every problem, with entries[i] paths
      try {
        store.replaceFromPolicy([entryDoc(2), { ...entryDoc(3), spiffeId: 'spiffe://other.org/x' }, { ...entryDoc(4), selectors: ['bad'] }]);
        expect.unreachable();
      } catch (e) {
        expect(e).toBeInstanceOf(EntryValidationError);
        expect((e as EntryValidationError).problems.map((p) => p.path)).toEqual(['entries[1].spiffeId', 'entries[2].selectors[0]']);
      }
      // duplicates inside the policy, against an api entry, and id clashes
      expect(storeCode(() => store.replaceFromPolicy([entryDoc(2), entryDoc(2, { hint: 'x' })]))).toBe('entry/duplicate');
      expect(storeCode(() => store.replaceFromPolicy([entryDoc(2, { id: 'x' }), entryDoc(3, { id: 'x' })]))).toBe('entry/id-exists');
      expect(storeCode(() => store.replaceFromPolicy([entryDoc(2), entryDoc(50)]))).toBe('entry/duplicate');
      expect(storeCode(() => store.replaceFromPolicy([entryDoc(2, { id: api.id })]))).toBe('entry/id-exists');
      expect(store.revision).toBe(rev);
      expect(store.list().map((e) => e.id)).toEqual(['keep', api.id]);
      // an api create may not collide with a policy entry either
      expect(storeCode(() => store.create(entryDoc(1)))).toBe('entry/duplicate');
      expect(storeCode(() => store.create(entryDoc(7, { id: 'keep' })))).toBe('entry/id-exists');
    } finally {
      store.close();
    }
  });

  it('listener errors do not break writes; they go to onListenerError', async () => {
    const errors: unknown[] = [];
    const { store } = await open({ onListenerError: (e) => errors.push(e) });
    try {
      const seen: number[] = [];
      store.onChange(() => {
        throw new Error('listener bug');
      });
      store.onChange((c) => seen.push(c.revision));
      store.create(entryDoc(1));
      expect(seen).toEqual([1]);
      expect(errors).toHaveLength(1);
      expect(store.list()).toHaveLength(1);
    } finally {
      store.close();
    }
  });

  it('refresh() picks up changes committed by another connection (e.g. the CLI) and emits "external"', async () => {
    const { store, path, clock } = await open();
    const other = createEntryStore(path, { files: hostStateFiles, trustDomain: td, clock });
    try {
      const changes: EntryChange[] = [];
      store.onChange((c) => changes.push(c));
      expect(store.refresh()).toBe(false);
      const x = other.create(entryDoc(1));
      expect(store.list()).toEqual([]); // served from memory until refreshed
      expect(store.refresh()).toBe(true);
      expect(store.list()).toEqual([x]);
      expect(changes).toEqual([{ revision: 1, cause: 'external' }]);
      expect(store.refresh()).toBe(false);
      // a write first syncs, so revisions stay consistent across writers
      other.create(entryDoc(2));
      const y = store.create(entryDoc(3));
      expect(y.revision).toBe(3);
      expect(changes.map((c) => c.cause)).toEqual(['external', 'external', 'create']);
      expect(storeCode(() => store.create(entryDoc(2)))).toBe('entry/duplicate');
      other.refresh();
      expect(other.list().map((e) => e.id)).toEqual(store.list().map((e) => e.id));
    } finally {
      other.close();
      store.close();
    }
  });

  it('1000 entries: bulk policy load and reopen stay fast', async () => {
    const { store, path, clock } = await open();
    const docs = Array.from({ length: 1000 }, (_, i) => entryDoc(i, { selectors: [`unix:uid:${1000 + (i % 200)}`, `unix:path:/opt/a${i}`] }));
    const t0 = performance.now();
    store.replaceFromPolicy(docs);
    const loadMs = performance.now() - t0;
    store.close();
    const t1 = performance.now();
    const again = createEntryStore(path, { files: hostStateFiles, trustDomain: td, clock });
    const reopenMs = performance.now() - t1;
    try {
      expect(again.list()).toHaveLength(1000);
      const t2 = performance.now();
      again.create(entryDoc(5000));
      const createMs = performance.now() - t2;
      console.log(`[entry-store] policy load 1000: ${loadMs.toFixed(1)} ms; reopen: ${reopenMs.toFixed(1)} ms; create with 1000 present: ${createMs.toFixed(1)} ms`);
      expect(loadMs).toBeLessThan(5000);
      expect(reopenMs).toBeLessThan(5000);
    } finally {
      again.close();
    }
  });
});
