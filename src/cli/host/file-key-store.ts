/**
 * A KeyStore (src/identity) that keeps P-256 private keys as PKCS#8 PEM files, mode 0600, in a 0700
 * directory: the equivalent of SPIRE's `disk` KeyManager. Keys never leave this process otherwise.
 */
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, unlinkSync } from 'node:fs';
import { createPrivateKey } from 'node:crypto';
import { join } from 'node:path';
import { derToPem, EdgewardError, generateP256, signerFromPrivateKey, type KeyStore, type Signer } from '../../identity/index.js';
import { writeFileAtomic } from './atomic-file.js';

export type KeyStoreErrorCode = 'keystore/bad-id' | 'keystore/exists' | 'keystore/unsafe-permissions' | 'keystore/corrupt';
export class KeyStoreError extends EdgewardError<KeyStoreErrorCode> {}

const ID = /^[a-z0-9][a-z0-9-]{0,127}$/;
const MAX_KEY_FILE = 16 * 1024;

export class FileKeyStore implements KeyStore {
  readonly #dir: string;
  readonly #cache = new Map<string, Signer>();

  constructor(dir: string) {
    this.#dir = dir;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = lstatSync(dir);
    if (!st.isDirectory()) throw new KeyStoreError('keystore/unsafe-permissions', `${dir} is not a directory`);
    if ((st.mode & 0o077) !== 0) chmodSync(dir, 0o700);
  }

  #path(id: string): string {
    if (!ID.test(id)) throw new KeyStoreError('keystore/bad-id', 'invalid key id');
    return join(this.#dir, `${id}.key`);
  }

  generate(id: string): Signer {
    const path = this.#path(id);
    if (existsSync(path)) throw new KeyStoreError('keystore/exists', `key ${id} already exists`);
    const k = generateP256();
    writeFileAtomic(path, derToPem(k.pkcs8(), 'PRIVATE KEY'), 0o600);
    const s = signerFromPrivateKey(k.privateKey, k.spki);
    this.#cache.set(id, s);
    return s;
  }

  get(id: string): Signer | undefined {
    const hit = this.#cache.get(id);
    if (hit !== undefined) return hit;
    const path = this.#path(id);
    if (!existsSync(path)) return undefined;
    const st = lstatSync(path);
    if (!st.isFile() || st.size > MAX_KEY_FILE) throw new KeyStoreError('keystore/corrupt', `key ${id} is not a regular file`);
    // A key readable by others has been exposed: refuse it rather than use it (deny by default).
    if ((st.mode & 0o077) !== 0) throw new KeyStoreError('keystore/unsafe-permissions', `key file ${path} is accessible by other users`);
    let s: Signer;
    try {
      s = signerFromPrivateKey(createPrivateKey({ key: readFileSync(path, 'utf8'), format: 'pem' }));
    } catch (e) {
      throw new KeyStoreError('keystore/corrupt', `key ${id} cannot be read`, { cause: e });
    }
    this.#cache.set(id, s);
    return s;
  }

  delete(id: string): void {
    this.#cache.delete(id);
    const path = this.#path(id);
    if (existsSync(path)) unlinkSync(path);
  }
}
