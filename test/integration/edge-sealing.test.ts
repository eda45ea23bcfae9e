/**
 * The edge hub store's data key (src/edge/hub/sealing.ts): 32 random bytes never stored in plain form
 * beside the database, wrapped in DATA/hub/dek.sealed by a key-encryption key from a secrets key file
 * outside the data directory, or sealed into the node's TPM (a real swtpm + tpm2-tools here). Contract #5
 * "Edge store and sealing".
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostStateFiles } from '../../src/cli/host/index.js';
import { DEK_SEALED_FILE, DEK_TPM_PRIV_FILE, DEK_TPM_PUB_FILE, defaultSecretsKeyFile, openDataKey, sealedDataKeyProvider, type DataKeyProvider } from '../../src/edge/hub/sealing.js';
import { openEdgeHubStore } from '../../src/edge/hub/store.js';
import { EdgeStoreError } from '../../src/edge/hub/store-errors.js';
import { tempDir } from '../helpers/index.js';
import { HAVE_SWTPM, startSwtpm, type Swtpm } from '../helpers/swtpm.js';

interface Layout {
  root: string;
  dataDir: string;
  hubDir: string;
  keyFile: string;
}

async function layout(): Promise<Layout> {
  const root = await tempDir();
  const dataDir = join(root, 'data');
  mkdirSync(dataDir, { mode: 0o700 });
  return { root, dataDir, hubDir: join(dataDir, 'hub'), keyFile: join(root, 'config', 'edgeward', 'secrets-keys', 'node.key') };
}

const open = (l: Layout, provider: DataKeyProvider, extra: { tmpRoot?: string } = {}): Promise<Buffer> =>
  openDataKey({ hubDir: l.hubDir, dataDir: l.dataDir, provider, files: hostStateFiles, ...(extra.tmpRoot === undefined ? {} : { tpm: { tmpRoot: extra.tmpRoot } }) });

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof EdgeStoreError) return e.code;
    return `not an EdgeStoreError: ${String(e)}`;
  }
  return 'no error';
}

async function messageOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as Error).message;
  }
  return 'no error';
}

/** `haystack` contains `needle` raw, in hex or in base64. */
function leaks(haystack: Buffer, needle: Buffer): boolean {
  return haystack.includes(needle) || haystack.includes(Buffer.from(needle.toString('hex'))) || haystack.includes(Buffer.from(needle.toString('base64')));
}

function filesIn(dir: string): Buffer[] {
  return readdirSync(dir).map((n) => readFileSync(join(dir, n)));
}

const noop = (): void => {};
const logger = { info: noop, warn: noop };

describe('data key: file provider', () => {
  it('first run: makes the KEK (0600, parents 0700) and dek.sealed (0600); later runs unwrap the same DEK, which no file holds in clear', async () => {
    const l = await layout();
    const provider = { kind: 'file', path: l.keyFile } as const;
    const dek = await open(l, provider);
    expect(dek).toHaveLength(32);
    expect(statSync(l.keyFile).mode & 0o777).toBe(0o600);
    expect(statSync(join(l.root, 'config', 'edgeward', 'secrets-keys')).mode & 0o777).toBe(0o700);
    expect(statSync(l.hubDir).mode & 0o777).toBe(0o700);
    expect(statSync(join(l.hubDir, DEK_SEALED_FILE)).mode & 0o777).toBe(0o600);
    expect(readFileSync(l.keyFile)).toHaveLength(32);
    expect(sealedDataKeyProvider(l.hubDir)).toBe('file');
    const again = await open(l, provider);
    expect(again.equals(dek)).toBe(true);
    // Neither the DEK nor the KEK is in the data directory, in any encoding.
    const kek = readFileSync(l.keyFile);
    for (const b of filesIn(l.hubDir)) {
      expect(leaks(b, dek)).toBe(false);
      expect(leaks(b, kek)).toBe(false);
    }
    // The store opens with it, and only with it.
    const store = openEdgeHubStore({ dir: l.hubDir, files: hostStateFiles, dek, clock: { now: () => 1 }, logger });
    store.apply([{ op: 'put', resource: { kind: 'ConfigMap', name: 'a', version: 1, data: { data: { K: 'v' } } } }]);
    store.close();
    const reopened = openEdgeHubStore({ dir: l.hubDir, files: hostStateFiles, dek: await open(l, provider), clock: { now: () => 1 }, logger });
    expect(reopened.get('ConfigMap', 'a')?.data).toEqual({ data: { K: 'v' } });
    reopened.close();
  });

  it('uses an operator-provisioned KEK that already exists', async () => {
    const l = await layout();
    mkdirSync(join(l.root, 'keys'), { mode: 0o700 });
    const keyFile = join(l.root, 'keys', 'kek');
    const kek = randomBytes(32);
    writeFileSync(keyFile, kek, { mode: 0o400 });
    const dek = await open(l, { kind: 'file', path: keyFile });
    expect(readFileSync(keyFile).equals(kek)).toBe(true);
    expect((await open(l, { kind: 'file', path: keyFile })).equals(dek)).toBe(true);
  });

  it('refuses a KEK inside the data directory, also through a symlinked parent (edge-store/invalid)', async () => {
    const l = await layout();
    expect(await codeOf(open(l, { kind: 'file', path: join(l.dataDir, 'kek') }))).toBe('edge-store/invalid');
    expect(await codeOf(open(l, { kind: 'file', path: join(l.dataDir, 'sub', '..', 'hub', 'kek') }))).toBe('edge-store/invalid');
    mkdirSync(join(l.dataDir, 'inner'));
    symlinkSync(join(l.dataDir, 'inner'), join(l.root, 'looks-outside'));
    expect(await codeOf(open(l, { kind: 'file', path: join(l.root, 'looks-outside', 'kek') }))).toBe('edge-store/invalid');
    expect(existsSync(join(l.dataDir, 'inner', 'kek'))).toBe(false);
    // The data directory itself reached through a symlink.
    symlinkSync(l.dataDir, join(l.root, 'data-link'));
    expect(await codeOf(openDataKey({ hubDir: join(l.root, 'data-link', 'hub'), dataDir: join(l.root, 'data-link'), provider: { kind: 'file', path: join(l.dataDir, 'k') }, files: hostStateFiles }))).toBe(
      'edge-store/invalid',
    );
    // Nothing was created.
    expect(existsSync(l.hubDir)).toBe(false);
  });

  it('refuses a KEK that is a symlink, not a regular file, or accessible by others (edge-store/key-unavailable)', async () => {
    const l = await layout();
    mkdirSync(join(l.root, 'keys'), { mode: 0o700 });
    const real = join(l.root, 'keys', 'real.key');
    writeFileSync(real, randomBytes(32), { mode: 0o600 });
    const link = join(l.root, 'keys', 'link.key');
    symlinkSync(real, link);
    expect(await codeOf(open(l, { kind: 'file', path: link }))).toBe('edge-store/key-unavailable');
    const loose = join(l.root, 'keys', 'loose.key');
    writeFileSync(loose, randomBytes(32));
    chmodSync(loose, 0o644);
    expect(await messageOf(open(l, { kind: 'file', path: loose }))).toMatch(/accessible by other users.*0600/);
    expect(await codeOf(open(l, { kind: 'file', path: loose }))).toBe('edge-store/key-unavailable');
    expect(await codeOf(open(l, { kind: 'file', path: join(l.root, 'keys') }))).toBe('edge-store/key-unavailable');
    const short = join(l.root, 'keys', 'short.key');
    writeFileSync(short, randomBytes(16), { mode: 0o600 });
    expect(await codeOf(open(l, { kind: 'file', path: short }))).toBe('edge-store/key-unavailable');
    // No sealed key was made by any of these attempts.
    expect(existsSync(join(l.hubDir, DEK_SEALED_FILE))).toBe(false);
  });

  it('a wrong or missing KEK, or a tampered dek.sealed, is key-unavailable; a new DEK is never made over the sealed one', async () => {
    const l = await layout();
    const provider = { kind: 'file', path: l.keyFile } as const;
    const dek = await open(l, provider);
    const kek = readFileSync(l.keyFile);
    const sealedPath = join(l.hubDir, DEK_SEALED_FILE);
    const sealed = readFileSync(sealedPath);

    writeFileSync(l.keyFile, randomBytes(32));
    expect(await messageOf(open(l, provider))).toMatch(/is not the key the data key .* was sealed with/);
    writeFileSync(l.keyFile, kek);

    const { rmSync } = await import('node:fs');
    rmSync(l.keyFile);
    expect(await messageOf(open(l, provider))).toMatch(/is missing/);
    expect(await codeOf(open(l, provider))).toBe('edge-store/key-unavailable');
    expect(existsSync(l.keyFile)).toBe(false); // not recreated
    writeFileSync(l.keyFile, kek, { mode: 0o600 });

    // Tampered: a flipped bit of the wrapped key, a forged key id, not JSON, an unknown field.
    const rec = JSON.parse(sealed.toString('utf8')) as Record<string, string>;
    const wrapped = Buffer.from(rec['wrapped']!, 'base64');
    wrapped[0]! ^= 1;
    const variants = [
      JSON.stringify({ ...rec, wrapped: wrapped.toString('base64') }),
      JSON.stringify({ ...rec, kekId: '0123456789abcdef' }),
      '{not json',
      JSON.stringify({ ...rec, extra: 'x' }),
      JSON.stringify({ ...rec, v: 2 }),
    ];
    for (const v of variants) {
      writeFileSync(sealedPath, v, { mode: 0o600 });
      expect(await codeOf(open(l, provider)), v.slice(0, 60)).toBe('edge-store/key-unavailable');
    }
    writeFileSync(sealedPath, sealed, { mode: 0o600 });
    expect((await open(l, provider)).equals(dek)).toBe(true);

    // Sealed with the file provider, started with a TPM: refused before any TPM command.
    expect(await messageOf(open(l, { kind: 'tpm', tcti: 'swtpm:host=127.0.0.1,port=9' }))).toMatch(/sealed with a secrets key file/);
  });

  it('refuses to make a DEK when state.db exists without dek.sealed', async () => {
    const l = await layout();
    const dek = await open(l, { kind: 'file', path: l.keyFile });
    openEdgeHubStore({ dir: l.hubDir, files: hostStateFiles, dek, clock: { now: () => 1 }, logger }).close();
    const { rmSync } = await import('node:fs');
    rmSync(join(l.hubDir, DEK_SEALED_FILE));
    expect(await messageOf(open(l, { kind: 'file', path: l.keyFile }))).toMatch(/dek.sealed is missing but .*state.db exists/);
    expect(existsSync(join(l.hubDir, DEK_SEALED_FILE))).toBe(false);
  });

  it('defaultSecretsKeyFile: ${XDG_CONFIG_HOME:-$HOME/.config}/edgeward/secrets-keys/<16 hex of sha256(realpath DATA)>.key', async () => {
    const l = await layout();
    const { createHash } = await import('node:crypto');
    const { realpathSync } = await import('node:fs');
    const id = createHash('sha256').update(realpathSync(l.dataDir)).digest('hex').slice(0, 16);
    expect(defaultSecretsKeyFile(l.dataDir, { HOME: '/home/u' })).toBe(`/home/u/.config/edgeward/secrets-keys/${id}.key`);
    expect(defaultSecretsKeyFile(l.dataDir, { HOME: '/home/u', XDG_CONFIG_HOME: '/etc/xdg-u' })).toBe(`/etc/xdg-u/edgeward/secrets-keys/${id}.key`);
    expect(defaultSecretsKeyFile(l.dataDir, { HOME: '/home/u', XDG_CONFIG_HOME: 'relative' })).toBe(`/home/u/.config/edgeward/secrets-keys/${id}.key`);
    // The same data directory through a symlink maps to the same key file.
    symlinkSync(l.dataDir, join(l.root, 'alias'));
    expect(defaultSecretsKeyFile(join(l.root, 'alias'), { HOME: '/home/u' })).toBe(`/home/u/.config/edgeward/secrets-keys/${id}.key`);
  });
});

describe.skipIf(!HAVE_SWTPM)('data key: tpm provider against swtpm + tpm2-tools', () => {
  let tpm: Swtpm;
  let other: Swtpm;

  beforeAll(async () => {
    [tpm, other] = await Promise.all([startSwtpm(), startSwtpm()]);
  }, 60_000);

  afterAll(async () => {
    await Promise.all([tpm?.stop(), other?.stop()]);
  });

  it('seals the DEK into the TPM, unseals it after a reopen, and keeps no plain copy or work files', async () => {
    const l = await layout();
    const work = join(l.root, 'work');
    mkdirSync(work, { mode: 0o700 });
    const dek = await open(l, { kind: 'tpm', tcti: tpm.tcti }, { tmpRoot: work });
    expect(dek).toHaveLength(32);
    for (const f of [DEK_SEALED_FILE, DEK_TPM_PUB_FILE, DEK_TPM_PRIV_FILE]) expect(statSync(join(l.hubDir, f)).mode & 0o777, f).toBe(0o600);
    expect(sealedDataKeyProvider(l.hubDir)).toBe('tpm');
    for (const b of filesIn(l.hubDir)) expect(leaks(b, dek)).toBe(false);
    expect(readdirSync(work)).toEqual([]); // the private working directories are gone
    const again = await open(l, { kind: 'tpm', tcti: tpm.tcti }, { tmpRoot: work });
    expect(again.equals(dek)).toBe(true);
    expect(readdirSync(work)).toEqual([]);
    // Started with a secrets key file instead: refused, the sealed key is kept.
    expect(await messageOf(open(l, { kind: 'file', path: l.keyFile }))).toMatch(/sealed into a TPM/);
    expect(existsSync(l.keyFile)).toBe(false);
  });

  it('another TPM cannot unseal it (edge-store/key-unavailable), nor can tampered blobs', async () => {
    const l = await layout();
    const dek = await open(l, { kind: 'tpm', tcti: tpm.tcti });
    expect(await messageOf(open(l, { kind: 'tpm', tcti: other.tcti }))).toMatch(/cannot unseal the data key/);
    expect(await codeOf(open(l, { kind: 'tpm', tcti: other.tcti }))).toBe('edge-store/key-unavailable');
    // A blob replaced (here: by another sealing's blob) does not match dek.sealed.
    const m = await layout();
    await open(m, { kind: 'tpm', tcti: tpm.tcti });
    const privPath = join(l.hubDir, DEK_TPM_PRIV_FILE);
    const priv = readFileSync(privPath);
    writeFileSync(privPath, readFileSync(join(m.hubDir, DEK_TPM_PRIV_FILE)));
    expect(await messageOf(open(l, { kind: 'tpm', tcti: tpm.tcti }))).toMatch(/tampered/);
    writeFileSync(privPath, priv);
    expect((await open(l, { kind: 'tpm', tcti: tpm.tcti })).equals(dek)).toBe(true);
    // A TPM that is not there.
    await other.stop();
    expect(await codeOf(open(l, { kind: 'tpm', tcti: other.tcti }))).toBe('edge-store/key-unavailable');
  });
});
