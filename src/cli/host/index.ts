/**
 * Host adapters the CLI composes into the cores (architecture.md: I/O lives in cloud/, edge/ and cli/;
 * cloud and edge never import each other, so what both need from the host is supplied from here).
 */
import type { StateFiles } from '../../identity/index.js';
import { writeFileAtomic } from './atomic-file.js';
import { FileKeyStore } from './file-key-store.js';

export { writeFileAtomic } from './atomic-file.js';
export { FileKeyStore, KeyStoreError, type KeyStoreErrorCode } from './file-key-store.js';

/** The StateFiles port over the local file system: 0600 key files, crash-safe writes. */
export const hostStateFiles: StateFiles = {
  openKeyStore: (dir) => new FileKeyStore(dir),
  writeFileAtomic,
};
