/**
 * The `tpm` data-key provider: the edge hub store's data key (DEK) sealed into the node's TPM 2.0 through
 * tpm2-tools (5.x).
 *
 *   seal     tpm2_createprimary -C o (a storage primary derived from the owner seed: the same template
 *            gives the same key after every restart) and tpm2_create -C primary.ctx -i - (a keyedhash
 *            sealing object whose sensitive part is the DEK, read from stdin so it never touches a file);
 *            the object's public and private areas (`.pub`, `.priv`) are returned for storage. The private
 *            area is encrypted under the primary, so the blobs are useless without this TPM (a copied disk
 *            image, another machine, a cleared owner hierarchy).
 *   unseal   tpm2_createprimary again, tpm2_load of the blobs, tpm2_unseal (stdout).
 *
 * There is no resource manager in front of swtpm (toolchain.md), so every command is followed by
 * `tpm2_flushcontext -t`; objects stay usable across commands as saved contexts in a private 0700 working
 * directory that is removed afterwards. Sequences against one TPM are serialised within this process.
 *
 * The sealing object has no auth value and no PCR policy: whoever can talk to this TPM and read DATA/hub
 * can unseal it (the same user, or root). What it protects against is the database and its sealed key
 * leaving the machine (backups, disk images, a stolen disk).
 */
import { chmod, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_TPM_COMMAND_TIMEOUT_MS, parseTpmTcti, runTpm2, TpmDriverError, withTpmLock, type RunTpm2Options, type TpmTcti } from '../tpm/index.js';

/** tpm2_createprimary's key algorithm for the storage primary (recorded in dek.sealed). */
export const TPM_PRIMARY_ALGORITHM = 'ecc256';
/** Largest `.pub` / `.priv` blob accepted (a sealing object's areas are a few hundred bytes). */
export const MAX_TPM_BLOB_BYTES = 4096;


export interface TpmSealOptions {
  /** `swtpm:host=<IP>,port=<N>` or `device:/dev/tpmrm<N>` (the join record's TCTI). */
  tcti: string;
  /** Directory of the tpm2_* binaries (default: PATH). */
  toolsDir?: string;
  /** Per-command timeout (default 15 s). */
  timeoutMs?: number;
  /** Where the private working directory is made (default os.tmpdir()). */
  tmpRoot?: string;
}

export interface TpmSealedBlobs {
  /** TPM2B_PUBLIC of the sealing object (tpm2_create -u). */
  pub: Buffer;
  /** TPM2B_PRIVATE of the sealing object, encrypted by the TPM under the primary (tpm2_create -r). */
  priv: Buffer;
}

async function readBlob(path: string, what: string): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.size > MAX_TPM_BLOB_BYTES) throw new TpmDriverError('tpm-driver/output-too-large', `${what} is not a file of at most ${MAX_TPM_BLOB_BYTES} bytes`);
    const { buffer, bytesRead } = await fh.read(Buffer.alloc(st.size), 0, st.size, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** A private working directory for one command sequence; removed afterwards. */
async function inWorkDir<T>(o: TpmSealOptions, fn: (tcti: TpmTcti, step: (tool: string, args: readonly string[], input?: Buffer) => Promise<Buffer>, dir: string) => Promise<T>): Promise<T> {
  const tcti = parseTpmTcti(o.tcti);
  const timeoutMs = o.timeoutMs ?? DEFAULT_TPM_COMMAND_TIMEOUT_MS;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > 300_000) throw new TpmDriverError('tpm-driver/bad-option', 'timeoutMs must be 100..300000');
  return withTpmLock(tcti.tcti, async () => {
    let dir: string;
    try {
      dir = await mkdtemp(join(o.tmpRoot ?? tmpdir(), 'edgeward-seal-'));
      await chmod(dir, 0o700);
    } catch (e) {
      throw new TpmDriverError('tpm-driver/io', 'cannot make the TPM working directory', { cause: e });
    }
    const ro: RunTpm2Options = { cwd: dir, timeoutMs };
    if (o.toolsDir !== undefined) ro.toolsDir = o.toolsDir;
    /** Run a command, then flush transient objects (no resource manager). */
    const step = async (tool: string, args: readonly string[], input?: Buffer): Promise<Buffer> => {
      let failed = true;
      try {
        const out = input === undefined ? await runTpm2(tcti, tool, args, ro) : await runTpm2(tcti, tool, args, { ...ro, input });
        failed = false;
        return out;
      } finally {
        try {
          await runTpm2(tcti, 'tpm2_flushcontext', ['-t'], ro);
        } catch (e) {
          if (!failed) throw e; // report the command's own failure first
        }
      }
    };
    try {
      return await fn(tcti, step, dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}

const createPrimary = (step: (tool: string, args: readonly string[]) => Promise<Buffer>, dir: string): Promise<Buffer> =>
  step('tpm2_createprimary', ['-C', 'o', '-g', 'sha256', '-G', TPM_PRIMARY_ALGORITHM, '-c', join(dir, 'primary.ctx')]);

async function unsealIn(step: (tool: string, args: readonly string[]) => Promise<Buffer>, dir: string, blobs: TpmSealedBlobs, expectBytes: number): Promise<Buffer> {
  await writeFile(join(dir, 'dek.pub'), blobs.pub, { mode: 0o600 });
  await writeFile(join(dir, 'dek.priv'), blobs.priv, { mode: 0o600 });
  await step('tpm2_load', ['-C', join(dir, 'primary.ctx'), '-u', join(dir, 'dek.pub'), '-r', join(dir, 'dek.priv'), '-c', join(dir, 'dek.ctx')]);
  const out = await step('tpm2_unseal', ['-c', join(dir, 'dek.ctx')]);
  if (out.length !== expectBytes) {
    out.fill(0);
    throw new TpmDriverError('tpm-driver/tool-failed', `tpm2_unseal returned ${out.length} bytes, not ${expectBytes}`);
  }
  return out;
}

/**
 * Seal `secret` (1..128 bytes) into the TPM; the returned blobs are checked by unsealing them once.
 * Throws `TpmDriverError`.
 */
export async function tpmSeal(secret: Buffer, o: TpmSealOptions): Promise<TpmSealedBlobs> {
  if (!Buffer.isBuffer(secret) || secret.length < 1 || secret.length > 128) throw new TpmDriverError('tpm-driver/bad-option', 'the sealed secret must be 1..128 bytes');
  return inWorkDir(o, async (_tcti, step, dir) => {
    await createPrimary(step, dir);
    await step('tpm2_create', ['-C', join(dir, 'primary.ctx'), '-i', '-', '-u', join(dir, 'sealed.pub'), '-r', join(dir, 'sealed.priv')], secret);
    const blobs = { pub: await readBlob(join(dir, 'sealed.pub'), 'the sealed public area'), priv: await readBlob(join(dir, 'sealed.priv'), 'the sealed private area') };
    const back = await unsealIn(step, dir, blobs, secret.length);
    try {
      if (!back.equals(secret)) throw new TpmDriverError('tpm-driver/tool-failed', 'the TPM did not give back the sealed secret');
    } finally {
      back.fill(0);
    }
    return blobs;
  });
}

/** Unseal a secret sealed by `tpmSeal` on this TPM; it must be `expectBytes` long. Throws `TpmDriverError`. */
export async function tpmUnseal(blobs: TpmSealedBlobs, expectBytes: number, o: TpmSealOptions): Promise<Buffer> {
  for (const b of [blobs.pub, blobs.priv]) {
    if (!Buffer.isBuffer(b) || b.length === 0 || b.length > MAX_TPM_BLOB_BYTES) throw new TpmDriverError('tpm-driver/bad-option', 'a sealed blob is empty or too large');
  }
  return inWorkDir(o, async (_tcti, step, dir) => {
    await createPrimary(step, dir);
    return unsealIn(step, dir, blobs, expectBytes);
  });
}
