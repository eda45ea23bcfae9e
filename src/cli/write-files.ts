/**
 * Crash-safe output files for the CLI (`svid fetch --write DIR`, `svid watch --write DIR`).
 *
 * - The output directory is created 0700 when missing; an existing one must be a real directory: a
 *   symlink or any other file type is refused (`cli/unsafe-output-dir`), so that secrets are not
 *   redirected elsewhere by a planted link.
 * - Each file is written to a fresh temporary file in the same directory, opened O_CREAT|O_EXCL|O_NOFOLLOW
 *   with its final mode (0600 for keys: the key is never readable by others, not even for an instant,
 *   and no chmod follows), fsynced, then renamed over the target; the directory is fsynced last.
 *   A reader sees the old or the new file, never a partial one. `rename` replaces a symlink at the
 *   target path itself and never writes through it.
 * - The files of one call are renamed in the order given; they are individually atomic, not as a set.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, mkdir, open, rename, unlink } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { printable } from './args.js';
import { CliError } from './errors.js';

/** Mode of private keys. */
export const PRIVATE_FILE_MODE = 0o600;
/** Mode of certificates and bundles. */
export const PUBLIC_FILE_MODE = 0o644;
/** Mode of an output directory the CLI creates. */
export const OUTPUT_DIR_MODE = 0o700;

export interface OutputFile {
  /** A plain file name inside the output directory (no `/`, not `.` or `..`). */
  readonly name: string;
  readonly data: string | Buffer;
  /** Permission bits the file is created with (e.g. PRIVATE_FILE_MODE). */
  readonly mode: number;
}

const errnoOf = (e: unknown): string => (e as NodeJS.ErrnoException | undefined)?.code ?? 'error';

async function lstatOrUndefined(path: string): Promise<Awaited<ReturnType<typeof lstat>> | undefined> {
  try {
    return await lstat(path);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return undefined;
    throw new CliError('cli/unsafe-output-dir', `${printable(path)}: cannot stat (${errnoOf(e)})`, { cause: e });
  }
}

/**
 * Make sure `dir` is a usable output directory and return its absolute path: created (mode 0700, with
 * missing parents) if absent; refused if it is a symlink or not a directory. With `create: false` a
 * missing directory is accepted as it is (a check before doing the work that produces the files).
 */
export async function prepareOutputDir(dir: string, options: { create?: boolean } = {}): Promise<string> {
  // resolve() drops a trailing "/", which would otherwise make lstat follow a symlink.
  const abs = resolve(dir);
  const shown = printable(abs);
  let st = await lstatOrUndefined(abs);
  if (st === undefined && options.create === false) return abs;
  if (st === undefined) {
    try {
      await mkdir(abs, { recursive: true, mode: OUTPUT_DIR_MODE });
    } catch (e) {
      throw new CliError('cli/unsafe-output-dir', `${shown}: cannot create directory (${errnoOf(e)})`, { cause: e });
    }
    st = await lstatOrUndefined(abs);
    if (st === undefined) throw new CliError('cli/unsafe-output-dir', `${shown}: directory vanished after creation`);
  }
  if (st.isSymbolicLink()) throw new CliError('cli/unsafe-output-dir', `${shown}: is a symbolic link; refusing to write through it`);
  if (!st.isDirectory()) throw new CliError('cli/unsafe-output-dir', `${shown}: is not a directory`);
  return abs;
}

function checkName(name: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0') || basename(name) !== name) {
    throw new CliError('cli/internal', `bad output file name ${printable(name)}`);
  }
}

async function writeOne(dir: string, file: OutputFile): Promise<string> {
  const target = join(dir, file.name);
  const tmp = join(dir, `.${file.name}.${randomBytes(8).toString('hex')}.tmp`);
  const failed = (what: string, e: unknown): CliError =>
    new CliError('cli/write-failed', `${printable(target)}: ${what} (${errnoOf(e)})`, { cause: e });
  let handle;
  try {
    // The final mode from the start (umask can only clear bits); O_EXCL|O_NOFOLLOW: never an existing file or link.
    handle = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, file.mode);
  } catch (e) {
    throw failed('cannot create a temporary file', e);
  }
  try {
    await handle.writeFile(file.data);
    await handle.sync();
  } catch (e) {
    await handle.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw failed('write failed', e);
  }
  await handle.close();
  try {
    await rename(tmp, target);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw failed('cannot replace the file', e);
  }
  return target;
}

/**
 * Write `files` into `dir` (see the module comment), checking `dir` again first. Returns the written
 * paths in order. Throws CliError 'cli/unsafe-output-dir' or 'cli/write-failed'.
 */
export async function writeFilesAtomic(dir: string, files: readonly OutputFile[]): Promise<string[]> {
  for (const f of files) checkName(f.name);
  const abs = await prepareOutputDir(dir);
  const written: string[] = [];
  for (const f of files) written.push(await writeOne(abs, f));
  // Make the renames durable.
  try {
    const d = await open(abs, constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch (e) {
    throw new CliError('cli/write-failed', `${printable(abs)}: cannot sync the directory (${errnoOf(e)})`, { cause: e });
  }
  return written;
}
