/** Bounded, synchronous reads for /proc and /etc files (their st_size is often 0, so read to EOF). */
import { closeSync, openSync, readSync } from 'node:fs';
import { errnoCode, errnoDetail, PeerCredError } from './errors.js';

const CHUNK = 16 * 1024;

/** Map a node:fs error to a PeerCredError (ENOENT/ESRCH under /proc = the process is gone). */
export function fsError(e: unknown, path: string, procFile: boolean): PeerCredError {
  if (e instanceof PeerCredError) return e;
  const code = errnoCode(e);
  if (procFile && (code === 'ENOENT' || code === 'ESRCH')) {
    return new PeerCredError('peercred/proc-gone', `process is gone (${path})`, { cause: e, detail: errnoDetail(e) });
  }
  return new PeerCredError('peercred/io', `cannot read ${path}${code === undefined ? '' : ` (${code})`}`, {
    cause: e,
    detail: errnoDetail(e),
  });
}

/** Read from an open fd, starting at `position` (pread), until EOF; throw `peercred/too-large` past maxBytes. */
export function readFdBounded(fd: number, maxBytes: number, label: string, position = 0): Buffer {
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const buf = Buffer.allocUnsafe(Math.min(CHUNK, maxBytes - total + 1));
    const n = readSync(fd, buf, 0, buf.length, position + total);
    if (n === 0) break;
    total += n;
    if (total > maxBytes) {
      throw new PeerCredError('peercred/too-large', `${label} exceeds ${maxBytes} bytes`, { detail: { maxBytes } });
    }
    chunks.push(n === buf.length ? buf : buf.subarray(0, n));
  }
  return Buffer.concat(chunks, total);
}

/** Read a whole file, at most `maxBytes` (else `peercred/too-large`). */
export function readFileBounded(path: string, maxBytes: number, procFile: boolean): Buffer {
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new RangeError('maxBytes must be a non-negative integer');
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw fsError(e, path, procFile);
  }
  try {
    return readFdBounded(fd, maxBytes, path);
  } catch (e) {
    throw fsError(e, path, procFile);
  } finally {
    closeSync(fd);
  }
}
