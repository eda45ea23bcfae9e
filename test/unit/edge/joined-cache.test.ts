/**
 * The joined agent's encrypted-at-rest cache (issue #4: "an encrypted-at-rest cache (SQLite)"): every row
 * is AES-256-GCM sealed with the row's table and id as AAD; a tampered row or a wrong key is refused, and
 * no key material or SVID bytes appear in the database files in the clear.
 */
import { readFile, readdir, stat, symlink, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { EdgeCache, EdgeCacheError, loadOrCreateCacheKey, type CachedSvidRecord } from '../../../src/edge/index.js';
import { generateP256 } from '../../../src/identity/index.js';
import { hostStateFiles } from '../../../src/cli/host/index.js';
import { tempDir } from '../../helpers/index.js';

const entry = (id: string) => ({ id, spiffeId: `spiffe://example.org/w/${id}`, parentId: 'spiffe://example.org/edgeward/node/n1', selectors: ['unix:uid:1000'], revision: 1 });

function svid(entryId: string): CachedSvidRecord {
  return {
    entryId,
    spiffeId: `spiffe://example.org/w/${entryId}`,
    chainDer: [randomBytes(300), randomBytes(200)],
    keyPkcs8: generateP256().pkcs8(),
    issuedAt: 1000,
    ttlMs: 3_600_000,
    dnsNames: ['a.example.org'],
  };
}

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return e instanceof EdgeCacheError ? e.code : `not an EdgeCacheError: ${String(e)}`;
  }
  return 'no error';
}

async function setup() {
  const dir = await tempDir('edgeward-cache-');
  const key = loadOrCreateCacheKey(join(dir, 'cache.key'), hostStateFiles);
  return { dir, key, path: join(dir, 'cache.db') };
}

describe('EdgeCache', () => {
  it('round-trips entries and SVIDs; the db file is 0600 and the key file 0600 with 32 bytes', async () => {
    const { dir, key, path } = await setup();
    expect(key.length).toBe(32);
    expect((await stat(join(dir, 'cache.key'))).mode & 0o777).toBe(0o600);
    const c = EdgeCache.open(path, key, hostStateFiles);
    c.replaceEntries([entry('a'), entry('b')]);
    const s = svid('a');
    c.putSvid(s);
    c.close();
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    // The key file is reused, not replaced.
    expect(loadOrCreateCacheKey(join(dir, 'cache.key'), hostStateFiles).equals(key)).toBe(true);
    const c2 = EdgeCache.open(path, loadOrCreateCacheKey(join(dir, 'cache.key'), hostStateFiles), hostStateFiles);
    expect(c2.loadEntries()).toEqual({ entries: [entry('a'), entry('b')], refused: [] });
    const back = c2.getSvid('a')!;
    expect(back.keyPkcs8.equals(s.keyPkcs8)).toBe(true);
    expect(back.chainDer.map((b) => b.toString('hex'))).toEqual(s.chainDer.map((b) => b.toString('hex')));
    expect(back.dnsNames).toEqual(['a.example.org']);
    expect(c2.pruneSvids(new Set(['b']))).toBe(1);
    expect(c2.getSvid('a')).toBeUndefined();
    c2.close();
  });

  it('never writes key material or SVID bytes in the clear (raw bytes of cache.db, -wal and -shm)', async () => {
    const { dir, key, path } = await setup();
    const c = EdgeCache.open(path, key, hostStateFiles);
    const s = svid('secret');
    c.putSvid(s);
    c.replaceEntries([entry('secret')]);
    const raw = Buffer.concat(await Promise.all((await readdir(dir)).filter((f) => f.startsWith('cache.db')).map((f) => readFile(join(dir, f)))));
    c.close();
    expect(raw.includes(Buffer.from('secret'))).toBe(true); // the row ids are there: the files were read with the rows in them
    // The private scalar (last 32 bytes of the P-256 PKCS#8 body sit inside it), the whole PKCS#8, their base64, the chain.
    const pk = s.keyPkcs8;
    for (const needle of [pk, pk.subarray(7, 39), Buffer.from(pk.toString('base64').slice(8, 48)), s.chainDer[0]!.subarray(0, 32), Buffer.from(s.chainDer[0]!.toString('base64').slice(0, 40))]) {
      expect(raw.includes(needle)).toBe(false);
    }
    expect(raw.includes(Buffer.from('spiffe://example.org/w/secret'))).toBe(false);
    expect(raw.includes(Buffer.from('unix:uid:1000'))).toBe(false);
    expect(raw.includes(key)).toBe(false);
  });

  it('refuses a row whose ciphertext was altered by one byte (edge-cache/tampered) and keeps the others', async () => {
    const { key, path } = await setup();
    const c = EdgeCache.open(path, key, hostStateFiles);
    c.putSvid(svid('a'));
    c.putSvid(svid('b'));
    c.replaceEntries([entry('a'), entry('b')]);
    c.close();
    const db = new Database(path);
    for (const table of ['svids', 'entries']) {
      const row = db.prepare(`SELECT blob FROM ${table} WHERE id = 'a'`).get() as { blob: Buffer };
      const blob = Buffer.from(row.blob);
      blob[blob.length - 1]! ^= 0x01;
      db.prepare(`UPDATE ${table} SET blob = ? WHERE id = 'a'`).run(blob);
    }
    db.close();
    const c2 = EdgeCache.open(path, key, hostStateFiles);
    expect(codeOf(() => c2.getSvid('a'))).toBe('edge-cache/tampered');
    expect(c2.getSvid('b')?.entryId).toBe('b');
    const l = c2.loadSvids();
    expect(l.refused).toEqual(['a']);
    expect(l.svids.map((s) => s.entryId)).toEqual(['b']);
    expect(c2.loadEntries()).toEqual({ entries: [entry('b')], refused: ['a'] });
    c2.close();
  });

  it('refuses a row moved to another id (the AAD binds table and id)', async () => {
    const { key, path } = await setup();
    const c = EdgeCache.open(path, key, hostStateFiles);
    c.putSvid(svid('a'));
    c.close();
    const db = new Database(path);
    db.prepare("UPDATE svids SET id = 'b' WHERE id = 'a'").run();
    // And an entries row copied into the svids table under its own id.
    db.close();
    const c2 = EdgeCache.open(path, key, hostStateFiles);
    expect(codeOf(() => c2.getSvid('b'))).toBe('edge-cache/tampered');
    c2.close();
  });

  it('refuses to open with another key (edge-cache/wrong-key), and refuses bad key files', async () => {
    const { dir, key, path } = await setup();
    EdgeCache.open(path, key, hostStateFiles).close();
    expect(codeOf(() => EdgeCache.open(path, randomBytes(32), hostStateFiles))).toBe('edge-cache/wrong-key');
    expect(codeOf(() => EdgeCache.open(path, randomBytes(16), hostStateFiles))).toBe('edge-cache/bad-key');
    await writeFile(join(dir, 'short.key'), randomBytes(31), { mode: 0o600 });
    expect(codeOf(() => loadOrCreateCacheKey(join(dir, 'short.key'), hostStateFiles))).toBe('edge-cache/bad-key');
    await writeFile(join(dir, 'open.key'), randomBytes(32), { mode: 0o644 });
    expect(codeOf(() => loadOrCreateCacheKey(join(dir, 'open.key'), hostStateFiles))).toBe('edge-cache/bad-key');
    await symlink(join(dir, 'cache.key'), join(dir, 'link.key'));
    expect(codeOf(() => loadOrCreateCacheKey(join(dir, 'link.key'), hostStateFiles))).toBe('edge-cache/bad-key');
  });

  it('refuses a symlinked database file', async () => {
    const { dir, key } = await setup();
    await writeFile(join(dir, 'elsewhere.db'), '');
    await symlink(join(dir, 'elsewhere.db'), join(dir, 'link.db'));
    expect(codeOf(() => EdgeCache.open(join(dir, 'link.db'), key, hostStateFiles))).toBe('edge-cache/io');
  });
});
