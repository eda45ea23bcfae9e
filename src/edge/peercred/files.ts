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
// One scratch buffer for all reads (they are synchronous, so never shared by two at once): /proc files
// are small, and a fresh 16 KiB allocation per read (including the final one that only sees EOF) showed
// up as a large share of attestation time under load. The result is copied out.
const scratch = Buffer.allocUnsafe(CHUNK);

export function readFdBounded(fd: number, maxBytes: number, label: string, position = 0): Buffer {
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const want = Math.min(CHUNK, maxBytes - total + 1);
    const n = readSync(fd, scratch, 0, want, position + total);
    if (n === 0) break;
    total += n;
    if (total > maxBytes) {
      throw new PeerCredError('peercred/too-large', `${label} exceeds ${maxBytes} bytes`, { detail: { maxBytes } });
    }
    chunks.push(Buffer.from(scratch.subarray(0, n)));
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
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
