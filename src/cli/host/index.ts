/**
 * Host adapters the CLI composes into the cores (architecture.md: I/O lives in cloud/, edge/ and cli/;
 * cloud and edge never import each other, so what both need from the host is supplied from here):
 * `hostStateFiles` (the StateFiles port: keys, atomic writes, SQLite files) and `openAdminSocket` (the
 * OpenAdminSocket port of src/protocol: the private admin socket with its SO_PEERCRED uid check).
 */
import type { StateFiles } from '../../identity/index.js';
import { writeFileAtomic } from './atomic-file.js';
import { FileKeyStore } from './file-key-store.js';
import { openStateDatabase } from './state-database.js';
import { openAdminSocket } from './admin-socket.js';

export { writeFileAtomic } from './atomic-file.js';
export { openStateDatabase } from './state-database.js';
export { openAdminSocket, AdminSocketError, type AdminSocketErrorCode } from './admin-socket.js';
export { FileKeyStore, KeyStoreError, type KeyStoreErrorCode } from './file-key-store.js';

/** The StateFiles port over the local file system: 0600 key files, crash-safe writes, hardened SQLite files. */
export const hostStateFiles: StateFiles = {
  openKeyStore: (dir) => new FileKeyStore(dir),
  writeFileAtomic,
  openDatabase: openStateDatabase,
};

/** Everything the cores take from the host, as `runCloud` / `runEdge*` deps want it (plus a logger). */
export const hostPorts = { files: hostStateFiles, openAdminSocket } as const;
