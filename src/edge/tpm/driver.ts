/**
 * The agent side of the `tpm` node attestor (issue #4 "attested node join"): drives a TPM 2.0 through
 * tpm2-tools (5.x) to produce the evidence the cloud's pure verifier (src/attestation, TpmVerifier) checks.
 *
 *   collect()  EK certificate (NV index 0x01c00002, or a file), EK public area (tpm2_createek -G rsa),
 *              a fresh restricted signing AK under the EK (tpm2_createak)
 *   respond()  TPM2_ActivateCredential of the verifier's credential (EK policy session:
 *              PolicySecret(TPM_RH_ENDORSEMENT)), then TPM2_Quote over the verifier's nonce
 *
 * Every tool runs through execFile (no shell), with a per-command timeout, bounded output, a minimal
 * environment, and the TCTI passed explicitly. There is no resource manager in front of swtpm, so every
 * command is followed by `tpm2_flushcontext -t` (toolchain.md); the EK and AK stay usable across commands
 * as saved contexts (ek.ctx, ak.ctx) that each tool reloads. All files live in a private 0700 directory
 * that `close()` removes. Commands against one TPM are serialised within this process.
 */
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TpmDriverError } from './errors.js';
import { parseTpmTcti, type TpmTcti } from './tcti.js';

/** TCG PC Client: NV index of the RSA 2048 EK certificate. */
export const EK_CERT_NV_INDEX_RSA = 0x01c00002;
export const DEFAULT_TPM_COMMAND_TIMEOUT_MS = 15_000;
export const DEFAULT_PCR_SELECTION = 'sha256:0,1,2,3,4,5,6,7';

const MAX_TOOL_OUTPUT = 64 * 1024;
const MAX_EK_CERT_BYTES = 16 * 1024;
const MAX_PUBLIC_BYTES = 1024;
const MAX_CHALLENGE_PART_BYTES = 1024;
const MAX_NONCE_BYTES = 64; // TPM2B_DATA
const MAX_QUOTE_BYTES = 1024;
const MAX_SECRET_BYTES = 64;
const MAX_STDERR_IN_ERROR = 400;
/** tpm2-tools' credential file (tpm2_makecredential -o / tpm2_activatecredential -i): magic, version. */
const CREDENTIAL_FILE_MAGIC = 0xbadcc0de;
const CREDENTIAL_FILE_VERSION = 1;

export interface TpmAgentOptions {
  /** The `--tpm` value: `swtpm:host=<IP>,port=<N>` or `device:/dev/tpmrm0`. */
  tcti: string;
  /** Read the EK certificate (DER or PEM) from this file instead of NV index 0x01c00002. */
  ekCertFile?: string;
  /** AK key type: ECC P-256 / ECDSA-SHA256 (default) or RSA-2048 / RSASSA-SHA256. */
  akAlgorithm?: 'ecc' | 'rsa';
  /** PCRs to quote, tpm2-tools syntax (default sha256:0,1,2,3,4,5,6,7). */
  pcrSelection?: string;
  /** Per-command timeout (default 15 s). */
  timeoutMs?: number;
  /** Directory of the tpm2_* binaries (default: PATH). */
  toolsDir?: string;
  /** Where the private working directory is made (default os.tmpdir()). */
  tmpRoot?: string;
}

/** What the agent sends first (the verifier's TpmAttestationRequest). */
export interface TpmAgentEvidence {
  ekCert: Buffer;
  /** TPM2B_PUBLIC of the EK. */
  ekPublic: Buffer;
  /** TPM2B_PUBLIC of the AK. */
  akPublic: Buffer;
  /** The AK Name as the TPM computed it (for logs; the verifier computes its own). */
  akName: Buffer;
}

/** The verifier's challenge (TpmChallenge). */
export interface TpmAgentChallenge {
  credentialBlob: Buffer;
  encryptedSecret: Buffer;
  nonce: Buffer;
}

/** The agent's answer (TpmChallengeResponse). */
export interface TpmAgentResponse {
  activatedSecret: Buffer;
  quote: Buffer;
  quoteSignature: Buffer;
}

export interface RunTpm2Options {
  cwd: string;
  timeoutMs?: number;
  toolsDir?: string;
  /** Written to the tool's stdin (e.g. `tpm2_create -i -`: sealed data never touches the disk). */
  input?: Buffer;
}

const TOOL_NAME = /^tpm2_[a-z]+$/;

function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin' };
  if (process.env['LD_LIBRARY_PATH'] !== undefined) env['LD_LIBRARY_PATH'] = process.env['LD_LIBRARY_PATH'];
  return env;
}

function stderrTail(b: Buffer | string | undefined): string {
  const s = (Buffer.isBuffer(b) ? b.toString('utf8') : (b ?? '')).replace(/[^\x20-\x7e\n]/g, '?').trim();
  return s.length > MAX_STDERR_IN_ERROR ? s.slice(-MAX_STDERR_IN_ERROR) : s;
}

/**
 * Run one tpm2-tools command against `tcti` (no shell; `--tcti` is passed explicitly; stdout is returned
 * but never logged: tpm2_activatecredential prints the recovered secret there).
 */
export function runTpm2(tcti: TpmTcti, tool: string, args: readonly string[], opts: RunTpm2Options): Promise<Buffer> {
  if (!TOOL_NAME.test(tool)) return Promise.reject(new TpmDriverError('tpm-driver/bad-option', `not a tpm2-tools command: ${tool.slice(0, 40)}`));
  const file = opts.toolsDir === undefined ? tool : join(opts.toolsDir, tool);
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      [`--tcti=${tcti.tcti}`, ...args],
      {
        cwd: opts.cwd,
        env: childEnv(),
        encoding: 'buffer',
        timeout: opts.timeoutMs ?? DEFAULT_TPM_COMMAND_TIMEOUT_MS,
        killSignal: 'SIGKILL',
        maxBuffer: MAX_TOOL_OUTPUT,
        windowsHide: true,
      },
      (error, stdout, stderr) => {
        if (error === null) {
          resolve(stdout);
          return;
        }
        const e = error as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null; code?: unknown };
        if (e.code === 'ENOENT') {
          reject(new TpmDriverError('tpm-driver/not-installed', `${tool} not found (install tpm2-tools)`, { cause: error, detail: { tool } }));
        } else if (e.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') {
          reject(new TpmDriverError('tpm-driver/output-too-large', `${tool} wrote more than ${MAX_TOOL_OUTPUT} bytes`, { detail: { tool } }));
        } else if (e.killed === true || e.signal === 'SIGKILL') {
          reject(new TpmDriverError('tpm-driver/timeout', `${tool} did not finish in time`, { detail: { tool } }));
        } else {
          const exit = typeof e.code === 'number' ? e.code : -1;
          reject(
            new TpmDriverError('tpm-driver/tool-failed', `${tool} failed (exit ${exit}): ${stderrTail(stderr)}`, {
              detail: { tool, exit },
            }),
          );
        }
      },
    );
    if (opts.input !== undefined) {
      // EPIPE when the tool exits before reading: its exit status is what is reported.
      child.stdin?.on('error', () => {});
      child.stdin?.end(opts.input);
    } else {
      child.stdin?.end();
    }
  });
}

// One command sequence at a time per TPM in this process: without a resource manager, another
// sequence's `tpm2_flushcontext -t` would flush objects we have loaded.
const tpmLocks = new Map<string, Promise<void>>();
export async function withTpmLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const prev = tpmLocks.get(key) ?? Promise.resolve();
  let release: () => void = () => {};
  const mine = new Promise<void>((r) => {
    release = r;
  });
  const tail = prev.then(() => mine);
  tpmLocks.set(key, tail);
  await prev;
  try {
    return await fn();
  } finally {
    release();
    if (tpmLocks.get(key) === tail) tpmLocks.delete(key);
  }
}

async function readBounded(path: string, max: number, what: string): Promise<Buffer> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw new TpmDriverError('tpm-driver/io', `cannot open ${what}`, { cause: e });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new TpmDriverError('tpm-driver/io', `${what} is not a regular file`);
    if (st.size > max) throw new TpmDriverError('tpm-driver/output-too-large', `${what} is larger than ${max} bytes`);
    const buf = Buffer.alloc(st.size);
    let off = 0;
    while (off < buf.length) {
      const { bytesRead } = await fh.read(buf, off, buf.length - off, off);
      if (bytesRead === 0) break;
      off += bytesRead;
    }
    return buf.subarray(0, off);
  } finally {
    await fh.close();
  }
}

/**
 * An EK certificate as stored in NV or a file: DER (NV areas are often padded after the certificate with
 * 0x00 or 0xff, which is cut off) or PEM (the first CERTIFICATE block).
 */
export function decodeEkCertificate(raw: Buffer): Buffer {
  const text = raw.subarray(0, 64).toString('latin1');
  if (text.includes('-----BEGIN')) {
    const m = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/.exec(raw.toString('latin1'));
    if (m === null) throw new TpmDriverError('tpm-driver/no-ek-cert', 'the EK certificate file has no PEM CERTIFICATE block');
    return Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
  }
  if (raw.length < 4 || raw[0] !== 0x30) throw new TpmDriverError('tpm-driver/no-ek-cert', 'the EK certificate is not DER');
  const l = raw[1]!;
  let total: number;
  if (l < 0x80) total = 2 + l;
  else if (l === 0x81) total = 3 + raw[2]!;
  else if (l === 0x82) total = 4 + raw.readUInt16BE(2);
  else if (l === 0x83 && raw.length >= 5) total = 5 + raw.readUIntBE(2, 3);
  else throw new TpmDriverError('tpm-driver/no-ek-cert', 'the EK certificate has an unsupported DER length');
  if (total > raw.length) throw new TpmDriverError('tpm-driver/no-ek-cert', 'the EK certificate is truncated');
  const rest = raw.subarray(total);
  if (!rest.every((b) => b === 0x00 || b === 0xff)) throw new TpmDriverError('tpm-driver/no-ek-cert', 'unexpected bytes after the EK certificate');
  return raw.subarray(0, total);
}

/** tpm2-tools' credential file: UINT32 magic 0xBADCC0DE, UINT32 version 1, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET. */
export function encodeCredentialFile(credentialBlob: Buffer, encryptedSecret: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(CREDENTIAL_FILE_MAGIC, 0);
  head.writeUInt32BE(CREDENTIAL_FILE_VERSION, 4);
  const s1 = Buffer.alloc(2);
  s1.writeUInt16BE(credentialBlob.length);
  const s2 = Buffer.alloc(2);
  s2.writeUInt16BE(encryptedSecret.length);
  return Buffer.concat([head, s1, credentialBlob, s2, encryptedSecret]);
}

const PCR_SELECTION = /^(sha1|sha256|sha384|sha512):(?:[0-9]|1[0-9]|2[0-3])(?:,(?:[0-9]|1[0-9]|2[0-3])){0,23}$/;

function checkBytes(v: unknown, min: number, max: number, what: string): Buffer {
  if (!Buffer.isBuffer(v) || v.length < min || v.length > max) {
    throw new TpmDriverError('tpm-driver/bad-challenge', `${what} must be ${min}..${max} bytes`);
  }
  return v;
}

/** One attestation's worth of TPM state: a private working directory with the EK and AK contexts. */
export class TpmAgentSession {
  readonly tcti: TpmTcti;
  readonly #dir: string;
  readonly #opts: TpmAgentOptions;
  readonly #timeoutMs: number;
  readonly #pcrSelection: string;
  #collected = false;
  #closed = false;

  private constructor(tcti: TpmTcti, dir: string, opts: TpmAgentOptions, timeoutMs: number, pcrSelection: string) {
    this.tcti = tcti;
    this.#dir = dir;
    this.#opts = opts;
    this.#timeoutMs = timeoutMs;
    this.#pcrSelection = pcrSelection;
  }

  /** Validate the options and make the private working directory (0700). */
  static async open(opts: TpmAgentOptions): Promise<TpmAgentSession> {
    const tcti = parseTpmTcti(opts.tcti);
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TPM_COMMAND_TIMEOUT_MS;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > 300_000) {
      throw new TpmDriverError('tpm-driver/bad-option', 'timeoutMs must be 100..300000');
    }
    const pcrSelection = opts.pcrSelection ?? DEFAULT_PCR_SELECTION;
    if (!PCR_SELECTION.test(pcrSelection)) throw new TpmDriverError('tpm-driver/bad-option', 'pcrSelection must look like sha256:0,1,2');
    if (opts.akAlgorithm !== undefined && opts.akAlgorithm !== 'ecc' && opts.akAlgorithm !== 'rsa') {
      throw new TpmDriverError('tpm-driver/bad-option', 'akAlgorithm must be ecc or rsa');
    }
    let dir: string;
    try {
      dir = await mkdtemp(join(opts.tmpRoot ?? tmpdir(), 'edgeward-tpm-'));
      await chmod(dir, 0o700);
    } catch (e) {
      throw new TpmDriverError('tpm-driver/io', 'cannot make the TPM working directory', { cause: e });
    }
    return new TpmAgentSession(tcti, dir, opts, timeoutMs, pcrSelection);
  }

  /** The private working directory (for diagnostics and tests). */
  get directory(): string {
    return this.#dir;
  }

  #path(name: string): string {
    return join(this.#dir, name);
  }

  #run(tool: string, args: readonly string[]): Promise<Buffer> {
    const o: RunTpm2Options = { cwd: this.#dir, timeoutMs: this.#timeoutMs };
    if (this.#opts.toolsDir !== undefined) o.toolsDir = this.#opts.toolsDir;
    return runTpm2(this.tcti, tool, args, o);
  }

  /** Run a command, then flush transient objects (no resource manager: toolchain.md). */
  async #step(tool: string, args: readonly string[]): Promise<void> {
    let failed = true;
    try {
      await this.#run(tool, args);
      failed = false;
    } finally {
      try {
        await this.#run('tpm2_flushcontext', ['-t']);
      } catch (e) {
        if (!failed) throw e; // report the command's own failure first
      }
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new TpmDriverError('tpm-driver/closed', 'the TPM session is closed');
  }

  /** Read the EK certificate, create the EK (RSA) and a fresh AK under it. */
  async collect(): Promise<TpmAgentEvidence> {
    this.#checkOpen();
    return withTpmLock(this.tcti.tcti, async () => {
      let ekCertRaw: Buffer;
      if (this.#opts.ekCertFile !== undefined) {
        ekCertRaw = await readBounded(this.#opts.ekCertFile, MAX_EK_CERT_BYTES, 'the EK certificate file');
      } else {
        try {
          await this.#step('tpm2_nvread', [`0x${EK_CERT_NV_INDEX_RSA.toString(16).padStart(8, '0')}`, '-o', this.#path('ek.crt')]);
        } catch (e) {
          if (e instanceof TpmDriverError && e.code === 'tpm-driver/tool-failed') {
            throw new TpmDriverError('tpm-driver/no-ek-cert', 'no RSA EK certificate in NV index 0x01c00002', { cause: e });
          }
          throw e;
        }
        ekCertRaw = await readBounded(this.#path('ek.crt'), MAX_EK_CERT_BYTES, 'the EK certificate');
      }
      const ekCert = decodeEkCertificate(ekCertRaw);
      await this.#step('tpm2_createek', ['-c', this.#path('ek.ctx'), '-G', 'rsa', '-u', this.#path('ek.pub')]);
      const ak = this.#opts.akAlgorithm === 'rsa' ? ['-G', 'rsa', '-g', 'sha256', '-s', 'rsassa'] : ['-G', 'ecc', '-g', 'sha256', '-s', 'ecdsa'];
      await this.#step('tpm2_createak', [
        '-C',
        this.#path('ek.ctx'),
        '-c',
        this.#path('ak.ctx'),
        ...ak,
        '-u',
        this.#path('ak.pub'),
        '-n',
        this.#path('ak.name'),
      ]);
      this.#collected = true;
      return {
        ekCert,
        ekPublic: await readBounded(this.#path('ek.pub'), MAX_PUBLIC_BYTES, 'the EK public area'),
        akPublic: await readBounded(this.#path('ak.pub'), MAX_PUBLIC_BYTES, 'the AK public area'),
        akName: await readBounded(this.#path('ak.name'), 2 + 64, 'the AK name'),
      };
    });
  }

  /** Activate the verifier's credential with the EK and quote the PCRs over its nonce with the AK. */
  async respond(challenge: TpmAgentChallenge): Promise<TpmAgentResponse> {
    this.#checkOpen();
    if (!this.#collected) throw new TpmDriverError('tpm-driver/closed', 'collect() must run before respond()');
    if (typeof challenge !== 'object' || challenge === null) throw new TpmDriverError('tpm-driver/bad-challenge', 'challenge must be an object');
    const blob = checkBytes(challenge.credentialBlob, 1, MAX_CHALLENGE_PART_BYTES, 'credentialBlob');
    const secret = checkBytes(challenge.encryptedSecret, 1, MAX_CHALLENGE_PART_BYTES, 'encryptedSecret');
    const nonce = checkBytes(challenge.nonce, 1, MAX_NONCE_BYTES, 'nonce');
    return withTpmLock(this.tcti.tcti, async () => {
      const cred = this.#path('cred.bin');
      const session = this.#path('session.ctx');
      const out = this.#path('secret.bin');
      await rm(cred, { force: true });
      await rm(out, { force: true });
      try {
        await writeFile(cred, encodeCredentialFile(blob, secret), { mode: 0o600, flag: 'wx' });
      } catch (e) {
        throw new TpmDriverError('tpm-driver/io', 'cannot write the credential file', { cause: e });
      }
      // The EK's authPolicy is PolicySecret(TPM_RH_ENDORSEMENT) (EK Credential Profile B.3.3).
      await this.#step('tpm2_startauthsession', ['--policy-session', '-S', session]);
      try {
        await this.#step('tpm2_policysecret', ['-S', session, '-c', 'e']);
        await this.#step('tpm2_activatecredential', ['-c', this.#path('ak.ctx'), '-C', this.#path('ek.ctx'), '-i', cred, '-o', out, '-P', `session:${session}`]);
      } finally {
        // A policy session used for an authorization is flushed by the TPM unless continueSession was
        // set; tpm2-tools sets it, so flush it ourselves (ignore "already gone").
        await this.#run('tpm2_flushcontext', [session]).catch(() => undefined);
        await rm(session, { force: true });
      }
      let activatedSecret: Buffer;
      try {
        activatedSecret = await readBounded(out, MAX_SECRET_BYTES, 'the activated secret');
      } finally {
        await rm(out, { force: true });
        await rm(cred, { force: true });
      }

      const msg = this.#path('quote.msg');
      const sig = this.#path('quote.sig');
      await rm(msg, { force: true });
      await rm(sig, { force: true });
      await this.#step('tpm2_quote', ['-c', this.#path('ak.ctx'), '-l', this.#pcrSelection, '-q', nonce.toString('hex'), '-m', msg, '-s', sig, '-g', 'sha256']);
      return {
        activatedSecret,
        quote: await readBounded(msg, MAX_QUOTE_BYTES, 'the quote'),
        quoteSignature: await readBounded(sig, MAX_QUOTE_BYTES, 'the quote signature'),
      };
    });
  }

  /** Flush transient objects and remove the working directory (idempotent). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      if (this.#collected) await withTpmLock(this.tcti.tcti, () => this.#run('tpm2_flushcontext', ['-t']).catch(() => undefined));
    } finally {
      await rm(this.#dir, { recursive: true, force: true });
    }
  }
}

/** Open a session, run `fn`, and always close the session. */
export async function withTpmAgentSession<T>(opts: TpmAgentOptions, fn: (s: TpmAgentSession) => Promise<T>): Promise<T> {
  const s = await TpmAgentSession.open(opts);
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

/** True when the tpm2-tools binaries can be run (used to report a clear error early). */
export async function tpm2ToolsAvailable(toolsDir?: string): Promise<boolean> {
  if (toolsDir !== undefined) {
    try {
      return (await stat(join(toolsDir, 'tpm2_quote'))).isFile();
    } catch {
      return false;
    }
  }
  return new Promise((resolve) => {
    execFile('tpm2_quote', ['--version'], { env: childEnv(), timeout: 5000, killSignal: 'SIGKILL', maxBuffer: MAX_TOOL_OUTPUT }, (error) => resolve(error === null));
  });
}
