/** Bounded file reading for CLI inputs (architecture.md convention 9: every read has a size limit). */
import { open } from 'node:fs/promises';
import { printable } from './args.js';
import { CliError } from './errors.js';

export const MAX_INPUT_FILE_BYTES = 1024 * 1024;

/** Read a whole file, refusing anything larger than `maxBytes` (also for pipes and devices). */
export async function readBoundedFile(path: string, maxBytes = MAX_INPUT_FILE_BYTES): Promise<Buffer> {
  const shown = printable(path);
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new CliError('cli/file-not-found', `${shown}: no such file`, { cause: e });
    throw new CliError('cli/file-unreadable', `${shown}: cannot open (${code ?? 'error'})`, { cause: e });
  }
  try {
    const info = await handle.stat();
    if (info.isDirectory()) throw new CliError('cli/file-unreadable', `${shown}: is a directory`);
    if (info.size > maxBytes) {
      throw new CliError('cli/file-too-large', `${shown}: larger than ${maxBytes} bytes`);
    }
    // Read at most maxBytes + 1 whatever stat said: the file may grow, or be a pipe with size 0.
    const buf = Buffer.alloc(maxBytes + 1);
    let filled = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buf, filled, buf.length - filled, null);
      if (bytesRead === 0) break;
      filled += bytesRead;
      if (filled > maxBytes) throw new CliError('cli/file-too-large', `${shown}: larger than ${maxBytes} bytes`);
    }
    return buf.subarray(0, filled);
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw new CliError('cli/file-unreadable', `${shown}: read failed`, { cause: e });
  } finally {
    await handle.close();
  }
}

/**
 * Read standard input to its end, refusing more than `maxBytes`. Reads the stream (not /dev/stdin, which
 * cannot be opened when stdin is a socket, as with Node's child_process pipes).
 */
export function readBoundedStdin(maxBytes = MAX_INPUT_FILE_BYTES, input: NodeJS.ReadableStream = process.stdin): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const cleanup = (): void => {
      input.off('data', onData);
      input.off('end', onEnd);
      input.off('error', onError);
    };
    const onData = (chunk: Buffer | string): void => {
      const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      total += b.length;
      if (total > maxBytes) {
        cleanup();
        input.pause();
        reject(new CliError('cli/file-too-large', `standard input: larger than ${maxBytes} bytes`));
        return;
      }
      chunks.push(b);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(Buffer.concat(chunks));
    };
    const onError = (e: unknown): void => {
      cleanup();
      reject(new CliError('cli/file-unreadable', 'standard input: read failed', { cause: e }));
    };
    input.on('data', onData);
    input.once('end', onEnd);
    input.once('error', onError);
  });
}
