/**
 * The data key (DEK) of the edge hub store (contract "Edge store and sealing"): 32 random bytes that seal
 * every resource row of DATA/hub/state.db, never stored in plain form beside the database.
 * DATA/hub/dek.sealed (0600, small JSON) holds it wrapped by a key-encryption key from a provider:
 *
 * - `file`: a 32-byte KEK in a file OUTSIDE the data directory (`--secrets-key-file`, default
 *   `defaultSecretsKeyFile`). Refused when it resolves inside the data directory, is a symlink or not a
 *   regular file, belongs to another user, or is readable or writable by group/other. Created (0600,
 *   missing parents 0700) only on the first run: when no sealed DEK exists yet. The DEK is wrapped with
 *   AES-256-GCM, AAD `edgeward/hub/dek/v1|file|<kekId>` (the purpose, the format version and the KEK's
 *   id: a KEK made for another purpose, or another KEK, does not open it).
 *       dek.sealed = {"v":1,"provider":"file","kekId":<16 hex>,"iv":<b64>,"tag":<b64>,"wrapped":<b64>}
 * - `tpm`: the DEK sealed into the node's TPM (sealing-tpm.ts); the sealing object's public and private
 *   areas are DATA/hub/dek.tpm.pub and dek.tpm.priv, their SHA-256 digests recorded in dek.sealed.
 *       dek.sealed = {"v":1,"provider":"tpm","primary":"ecc256","pub":<sha256 hex>,"priv":<sha256 hex>}
 *
 * Once a sealed DEK exists it is the only key: a missing, refused or different KEK, another TPM, a
 * tampered or malformed dek.sealed, or a provider other than the one that sealed it all fail with
 * `edge-store/key-unavailable` and a message saying what to restore. A new DEK is never made silently over
 * an existing one (nor when state.db exists without dek.sealed: that store could never be opened again).
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, fsyncSync, linkSync, lstatSync, mkdirSync, openSync, realpathSync, unlinkSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { parseStrictJson, type StateFiles } from '../../identity/index.js';
import { parseTpmTcti, TpmDriverError } from '../tpm/index.js';
import { DATA_KEY_BYTES, ensurePrivateDir, STATE_DB_FILE } from './store.js';
import { EdgeStoreError } from './store-errors.js';
import { readOpenFile } from '../join/layout.js';
import { tpmSeal, tpmUnseal, TPM_PRIMARY_ALGORITHM, MAX_TPM_BLOB_BYTES, type TpmSealOptions } from './sealing-tpm.js';

export const DEK_SEALED_FILE = 'dek.sealed';
export const DEK_TPM_PUB_FILE = 'dek.tpm.pub';
export const DEK_TPM_PRIV_FILE = 'dek.tpm.priv';
export const KEK_BYTES = 32;
/** Environment variable of the `file` provider's KEK path (`--secrets-key-file`). */
export const SECRETS_KEY_FILE_ENV = 'EDGEWARD_SECRETS_KEY_FILE';

const MAX_SEALED_FILE_BYTES = 4096;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const HEX64 = /^[0-9a-f]{64}$/;
const HEX16 = /^[0-9a-f]{16}$/;
const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

export type DataKeyProvider = { kind: 'file'; path: string } | { kind: 'tpm'; tcti: string };

export interface OpenDataKeyOptions {
  /** DATA/hub (created 0700). */
  hubDir: string;
  /** DATA: the `file` provider's KEK must lie outside it. */
  dataDir: string;
  provider: DataKeyProvider;
  files: StateFiles;
  /** Random bytes (default crypto.randomBytes). */
  random?: (n: number) => Buffer;
  /** tpm2-tools options of the `tpm` provider (tools directory, per-command timeout, temp root). */
  tpm?: Omit<TpmSealOptions, 'tcti'>;
}

function unavailable(message: string, cause?: unknown): never {
  throw new EdgeStoreError('edge-store/key-unavailable', message, cause === undefined ? undefined : { cause });
}

function invalid(message: string): never {
  throw new EdgeStoreError('edge-store/invalid', message);
}

function errno(e: unknown): string {
  const c = typeof e === 'object' && e !== null ? (e as { code?: unknown }).code : undefined;
  return typeof c === 'string' ? c : 'error';
}

/**
 * The default KEK path of the `file` provider:
 * `${XDG_CONFIG_HOME:-$HOME/.config}/edgeward/secrets-keys/<first 16 hex of sha256(realpath DATA)>.key`.
 * (An XDG_CONFIG_HOME that is not absolute is ignored, as the XDG base directory spec says.)
 */
export function defaultSecretsKeyFile(dataDir: string, env: Readonly<Record<string, string | undefined>>): string {
  const real = realpathOfMaybeMissing(resolve(dataDir));
  const xdg = env['XDG_CONFIG_HOME'];
  let config: string;
  if (xdg !== undefined && xdg !== '' && isAbsolute(xdg)) config = xdg;
  else {
    const home = env['HOME'] !== undefined && env['HOME'] !== '' ? env['HOME'] : homedir();
    if (!isAbsolute(home)) invalid('cannot find a default secrets key file: HOME is not an absolute path (use --secrets-key-file)');
    config = join(home, '.config');
  }
  const id = createHash('sha256').update(real, 'utf8').digest('hex').slice(0, 16);
  return join(config, 'edgeward', 'secrets-keys', `${id}.key`);
}

/**
 * The real path of `path`, also before it exists: the nearest existing ancestor's real path plus the rest,
 * so that the name is the same before and after the data dir is created (below a symlinked parent too).
 */
function realpathOfMaybeMissing(path: string): string {
  const rest: string[] = [];
  let cur = path;
  for (;;) {
    try {
      return join(realpathSync(cur), ...rest.reverse());
    } catch {
      const parent = dirname(cur);
      if (parent === cur) return path;
      rest.push(basename(cur));
      cur = parent;
    }
  }
}

/** `child` is `parent` or below it. */
function isInside(child: string, parent: string): boolean {
  const rel = relative(parent, child);
  return rel === '' || (!isAbsolute(rel) && rel !== '..' && !rel.startsWith(`..${sep}`));
}

/**
 * Read a small private file: no symlink (O_NOFOLLOW), a regular file, ours, no group/other bits (checked on
 * the descriptor that is read). Undefined when it does not exist.
 */
function readPrivateFile(path: string, max: number, what: string): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    if (errno(e) === 'ENOENT') return undefined;
    if (errno(e) === 'ELOOP') unavailable(`${what} ${path} is a symlink (refused)`);
    unavailable(`cannot open ${what} ${path} (${errno(e)})`, e);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) unavailable(`${what} ${path} is not a regular file`);
    const uid = typeof process.getuid === 'function' ? process.getuid() : undefined;
    if (uid !== undefined && st.uid !== uid) unavailable(`${what} ${path} belongs to another user`);
    if ((st.mode & 0o077) !== 0) unavailable(`${what} ${path} is accessible by other users (mode ${(st.mode & 0o777).toString(8)}; it must be 0600)`);
    if (st.size > max) unavailable(`${what} ${path} is larger than ${max} bytes`);
    return readOpenFile(fd, st.size);
  } finally {
    closeSync(fd);
  }
}

/** Create `path` with `data` (0600) only if it does not exist: written to a temporary file, then hard-linked (never replaces a file). */
function createExclusive(path: string, data: Buffer): void {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    let off = 0;
    while (off < data.length) off += writeSync(fd, data, off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
  } finally {
    unlinkSync(tmp);
  }
  const dfd = openSync(dirname(path), 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch (e) {
    if (errno(e) === 'ENOENT') return false;
    throw new EdgeStoreError('edge-store/io', `cannot inspect ${path} (${errno(e)})`, { cause: e });
  }
}

function realOrResolved(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return resolve(p);
  }
}

/** The KEK path, checked to lie outside the data directory (lexically and after symlinks in its parents). */
function checkKekLocation(path: string, dataDir: string): string {
  if (typeof path !== 'string' || path === '' || path.includes('\0')) invalid('the secrets key file path is empty');
  const abs = resolve(path);
  const dataAbs = resolve(dataDir);
  const dataReal = realOrResolved(dataDir);
  const parentReal = realOrResolved(dirname(abs));
  for (const candidate of [abs, join(parentReal, basename(abs))]) {
    for (const d of [dataAbs, dataReal]) {
      if (isInside(candidate, d)) invalid(`the secrets key file ${path} is inside the data directory ${dataDir}: keep it apart (a copy of the data directory must not carry its key)`);
    }
  }
  return abs;
}

function kekId(kek: Buffer): string {
  return createHash('sha256').update('edgeward/hub/kek-id/v1|').update(kek).digest('hex').slice(0, 16);
}

function wrapAad(id: string): Buffer {
  return Buffer.from(`edgeward/hub/dek/v1|file|${id}`, 'utf8');
}

type SealedRecord =
  | { v: 1; provider: 'file'; kekId: string; iv: string; tag: string; wrapped: string }
  | { v: 1; provider: 'tpm'; primary: string; pub: string; priv: string };

function parseSealed(raw: Buffer, path: string): SealedRecord {
  let v: unknown;
  try {
    v = parseStrictJson(raw.toString('utf8'), { maxDepth: 2 });
  } catch (e) {
    unavailable(`${path} is not valid JSON (restore it from a backup)`, e);
  }
  const o = typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : unavailable(`${path} is not a JSON object`);
  const only = (keys: string[]): void => {
    for (const k of Object.keys(o)) if (!keys.includes(k)) unavailable(`${path} has an unknown field`);
    for (const k of keys) if (typeof o[k] !== 'string' && k !== 'v') unavailable(`${path} is missing ${k}`);
  };
  if (o['v'] !== 1) unavailable(`${path} has an unsupported format version`);
  if (o['provider'] === 'file') {
    only(['v', 'provider', 'kekId', 'iv', 'tag', 'wrapped']);
    for (const k of ['iv', 'tag', 'wrapped']) if (!B64.test(o[k] as string)) unavailable(`${path}: ${k} is not base64`);
    if (!HEX16.test(o['kekId'] as string)) unavailable(`${path}: kekId is malformed`);
    return o as SealedRecord;
  }
  if (o['provider'] === 'tpm') {
    only(['v', 'provider', 'primary', 'pub', 'priv']);
    if (o['primary'] !== TPM_PRIMARY_ALGORITHM) unavailable(`${path}: unsupported TPM primary ${String(o['primary']).slice(0, 20)}`);
    if (!HEX64.test(o['pub'] as string) || !HEX64.test(o['priv'] as string)) unavailable(`${path}: blob digests are malformed`);
    return o as SealedRecord;
  }
  return unavailable(`${path} names an unknown provider`);
}

function sha256hex(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Which provider sealed the data key in `hubDir` (undefined: none yet). Throws `key-unavailable` for a malformed file. */
export function sealedDataKeyProvider(hubDir: string): 'file' | 'tpm' | undefined {
  const path = join(hubDir, DEK_SEALED_FILE);
  const raw = readPrivateFile(path, MAX_SEALED_FILE_BYTES, 'the sealed data key');
  return raw === undefined ? undefined : parseSealed(raw, path).provider;
}

function tpmOptions(opts: OpenDataKeyOptions, tcti: string): TpmSealOptions {
  return { ...(opts.tpm ?? {}), tcti };
}

function describeTpmError(e: unknown): string {
  return e instanceof TpmDriverError ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : 'error';
}

/**
 * The store's data key: unwrapped from `hubDir/dek.sealed`, or (first run) made, sealed, written and
 * returned. The caller zeroes it when done (openEdgeHubStore keeps its own copy).
 */
export async function openDataKey(opts: OpenDataKeyOptions): Promise<Buffer> {
  const random = opts.random ?? randomBytes;
  const provider = opts.provider;
  if (typeof provider !== 'object' || provider === null || (provider.kind !== 'file' && provider.kind !== 'tpm')) invalid('the data key provider must be file or tpm');
  // Validate the provider's configuration before touching anything.
  const kekPath = provider.kind === 'file' ? checkKekLocation(provider.path, opts.dataDir) : undefined;
  if (provider.kind === 'tpm') {
    try {
      parseTpmTcti(provider.tcti);
    } catch (e) {
      invalid(e instanceof Error ? e.message : 'invalid TPM TCTI');
    }
  }
  ensurePrivateDir(opts.hubDir);
  const sealedPath = join(opts.hubDir, DEK_SEALED_FILE);
  const raw = readPrivateFile(sealedPath, MAX_SEALED_FILE_BYTES, 'the sealed data key');

  if (raw !== undefined) {
    const rec = parseSealed(raw, sealedPath);
    if (rec.provider !== provider.kind) {
      unavailable(
        rec.provider === 'file'
          ? `the data key in ${sealedPath} was sealed with a secrets key file, not the TPM: start with the secrets key file it was sealed with`
          : `the data key in ${sealedPath} was sealed into a TPM: start with that TPM (the join record's TCTI)`,
      );
    }
    if (rec.provider === 'file') return unwrapWithFile(rec, kekPath as string, sealedPath);
    return unsealWithTpm(rec, opts, (provider as { tcti: string }).tcti, sealedPath);
  }

  // First run. A store without its sealed key could never be opened again: refuse instead of replacing the key.
  if (exists(join(opts.hubDir, STATE_DB_FILE))) {
    unavailable(`${sealedPath} is missing but ${join(opts.hubDir, STATE_DB_FILE)} exists: restore the sealed data key, or remove the hub store to start over`);
  }
  const dek = random(DATA_KEY_BYTES);
  if (!Buffer.isBuffer(dek) || dek.length !== DATA_KEY_BYTES) invalid('the random source returned the wrong number of bytes');
  try {
    if (provider.kind === 'file') {
      const kek = loadOrCreateKek(kekPath as string, random);
      try {
        const id = kekId(kek);
        const iv = random(IV_BYTES);
        const c = createCipheriv('aes-256-gcm', kek, iv);
        c.setAAD(wrapAad(id));
        const wrapped = Buffer.concat([c.update(dek), c.final()]);
        const rec: SealedRecord = { v: 1, provider: 'file', kekId: id, iv: iv.toString('base64'), tag: c.getAuthTag().toString('base64'), wrapped: wrapped.toString('base64') };
        writeSealed(sealedPath, rec);
      } finally {
        kek.fill(0);
      }
    } else {
      let blobs;
      try {
        blobs = await tpmSeal(dek, tpmOptions(opts, provider.tcti));
      } catch (e) {
        unavailable(`cannot seal the data key into the TPM (${describeTpmError(e)})`, e);
      }
      try {
        opts.files.writeFileAtomic(join(opts.hubDir, DEK_TPM_PUB_FILE), blobs.pub, 0o600);
        opts.files.writeFileAtomic(join(opts.hubDir, DEK_TPM_PRIV_FILE), blobs.priv, 0o600);
      } catch (e) {
        throw new EdgeStoreError('edge-store/io', `cannot write the sealed data key blobs in ${opts.hubDir} (${errno(e)})`, { cause: e });
      }
      writeSealed(sealedPath, { v: 1, provider: 'tpm', primary: TPM_PRIMARY_ALGORITHM, pub: sha256hex(blobs.pub), priv: sha256hex(blobs.priv) });
    }
  } catch (e) {
    dek.fill(0);
    throw e;
  }
  return dek;
}

/** Write dek.sealed, the first run's commit point: created complete, and never over an existing one. */
function writeSealed(path: string, rec: SealedRecord): void {
  try {
    createExclusive(path, Buffer.from(`${JSON.stringify(rec)}\n`, 'utf8'));
  } catch (e) {
    if (errno(e) === 'EEXIST') unavailable(`${path} was created by another process meanwhile (run one agent per data directory); start again`);
    throw new EdgeStoreError('edge-store/io', `cannot write ${path} (${errno(e)})`, { cause: e });
  }
}

/** The KEK at `path`, or (first run only) a new one created there. */
function loadOrCreateKek(path: string, random: (n: number) => Buffer): Buffer {
  const existing = readPrivateFile(path, 1024, 'the secrets key file');
  if (existing !== undefined) return checkKek(existing, path);
  const kek = random(KEK_BYTES);
  if (!Buffer.isBuffer(kek) || kek.length !== KEK_BYTES) invalid('the random source returned the wrong number of bytes');
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    createExclusive(path, kek);
  } catch (e) {
    kek.fill(0);
    if (errno(e) === 'EEXIST') return loadOrCreateKek(path, random); // made meanwhile: use that one
    throw new EdgeStoreError('edge-store/io', `cannot create the secrets key file ${path} (${errno(e)})`, { cause: e });
  }
  return kek;
}

function checkKek(kek: Buffer, path: string): Buffer {
  if (kek.length !== KEK_BYTES) {
    kek.fill(0);
    unavailable(`the secrets key file ${path} is not ${KEK_BYTES} bytes`);
  }
  return kek;
}

function unwrapWithFile(rec: Extract<SealedRecord, { provider: 'file' }>, kekPath: string, sealedPath: string): Buffer {
  const raw = readPrivateFile(kekPath, 1024, 'the secrets key file');
  if (raw === undefined) {
    unavailable(`the secrets key file ${kekPath} is missing: the data key in ${sealedPath} was sealed with it (restore it, or pass the right --secrets-key-file)`);
  }
  const kek = checkKek(raw, kekPath);
  try {
    const id = kekId(kek);
    if (id !== rec.kekId) unavailable(`the secrets key file ${kekPath} is not the key the data key in ${sealedPath} was sealed with (key id ${id}, sealed with ${rec.kekId})`);
    const iv = Buffer.from(rec.iv, 'base64');
    const tag = Buffer.from(rec.tag, 'base64');
    const wrapped = Buffer.from(rec.wrapped, 'base64');
    if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES || wrapped.length !== DATA_KEY_BYTES) unavailable(`${sealedPath} is malformed`);
    let dek: Buffer;
    try {
      const d = createDecipheriv('aes-256-gcm', kek, iv, { authTagLength: TAG_BYTES });
      d.setAAD(wrapAad(rec.kekId));
      d.setAuthTag(tag);
      dek = Buffer.concat([d.update(wrapped), d.final()]);
    } catch (e) {
      unavailable(`${sealedPath} does not authenticate with the secrets key file ${kekPath} (tampered)`, e);
    }
    return dek;
  } finally {
    kek.fill(0);
  }
}

async function unsealWithTpm(rec: Extract<SealedRecord, { provider: 'tpm' }>, opts: OpenDataKeyOptions, tcti: string, sealedPath: string): Promise<Buffer> {
  const read = (name: string, digest: string): Buffer => {
    const path = join(opts.hubDir, name);
    const b = readPrivateFile(path, MAX_TPM_BLOB_BYTES, 'the sealed data key blob');
    if (b === undefined) unavailable(`${path} is missing: the data key in ${sealedPath} cannot be unsealed without it`);
    if (sha256hex(b) !== digest) unavailable(`${path} is not the blob recorded in ${sealedPath} (tampered)`);
    return b;
  };
  const blobs = { pub: read(DEK_TPM_PUB_FILE, rec.pub), priv: read(DEK_TPM_PRIV_FILE, rec.priv) };
  try {
    return await tpmUnseal(blobs, DATA_KEY_BYTES, tpmOptions(opts, tcti));
  } catch (e) {
    unavailable(`the TPM at ${tcti} cannot unseal the data key in ${sealedPath} (another TPM, or its owner hierarchy was cleared?): ${describeTpmError(e)}`, e);
  }
}
