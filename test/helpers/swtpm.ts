/**
 * A real software TPM for tests: swtpm + a private swtpm-localca (its own "TPM manufacturer" root CA and
 * issuer in a temp dir), so nothing depends on /var/lib/swtpm-localca. The EK certificate is written to the
 * TPM's NV index 0x01c00002 and to `ekCertFile`. swtpm listens on a free 127.0.0.1 port pair; `stop()`
 * stops only the swtpm process this helper started (toolchain.md).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { certsFromPem } from '../../src/identity/index.js';
import { freePort } from './ports.js';
import { tempDir } from './temp.js';

/** The absolute path of a command on PATH. */
function onPath(cmd: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(':')) {
    if (dir !== '' && existsSync(join(dir, cmd))) return join(dir, cmd);
  }
  return undefined;
}

/** The command exists on PATH (swtpm_setup --version exits 1 on 0.7, so the exit code is not used). */
function installed(cmd: string, args: string[]): boolean {
  const r = spawnSync(cmd, args, { stdio: 'ignore', timeout: 10_000 });
  return r.error === undefined;
}
const SWTPM_LOCALCA = onPath('swtpm_localca');
/** swtpm, swtpm_setup, swtpm_localca and tpm2-tools are installed (CI installs them). */
export const HAVE_SWTPM =
  installed('swtpm', ['--version']) && installed('swtpm_setup', ['--version']) && installed('tpm2_quote', ['--version']) && SWTPM_LOCALCA !== undefined;

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen({ host: '127.0.0.1', port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect({ host: '127.0.0.1', port });
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/** Run a command, collecting the tail of its output (30 s limit). */
export function runCommand(cmd: string, args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => chunks.push(b));
    child.stderr.on('data', (b: Buffer) => chunks.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out: Buffer.concat(chunks).toString('utf8').slice(-4000) });
    });
  });
}

export interface Swtpm {
  /** `swtpm:host=127.0.0.1,port=N`, the form `--tpm` and TCTI parsing take. */
  tcti: string;
  port: number;
  /** The manufacturer root CA (DER) and the issuing CA that signed the EK certificate. */
  root: Buffer;
  issuer: Buffer;
  rootPemFile: string;
  issuerPemFile: string;
  ekCertFile: string;
  dir: string;
  pid: number;
  stop(): Promise<void>;
}

function pem(der: Buffer): string {
  return `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END CERTIFICATE-----\n`.replace('\n\n-----END', '\n-----END');
}

/** Manufacture a TPM (EK + certificate) with swtpm_setup and start swtpm on free ports. */
export async function startSwtpm(): Promise<Swtpm> {
  const dir = await tempDir('edgeward-swtpm-');
  const state = join(dir, 'state');
  const ca = join(dir, 'localca');
  const certs = join(dir, 'certs');
  await mkdir(state, { mode: 0o700 });
  await mkdir(ca, { mode: 0o700 });
  await mkdir(certs, { mode: 0o700 });
  // A private swtpm-localca (the "TPM manufacturer"): swtpm_localca makes its root CA and issuer here.
  await writeFile(
    join(dir, 'swtpm-localca.conf'),
    [`statedir = ${ca}`, `signingkey = ${ca}/signkey.pem`, `issuercert = ${ca}/issuercert.pem`, `certserial = ${ca}/certserial`, ''].join('\n'),
  );
  await writeFile(join(dir, 'swtpm-localca.options'), '--platform-manufacturer Edgeward\n--platform-version 2.1\n--platform-model test\n');
  await writeFile(
    join(dir, 'swtpm_setup.conf'),
    [
      `create_certs_tool = ${SWTPM_LOCALCA!}`,
      `create_certs_tool_config = ${join(dir, 'swtpm-localca.conf')}`,
      `create_certs_tool_options = ${join(dir, 'swtpm-localca.options')}`,
      'active_pcr_banks = sha256',
      '',
    ].join('\n'),
  );
  const setup = await runCommand('swtpm_setup', [
    '--tpm2',
    '--create-ek-cert',
    '--create-platform-cert',
    '--tpmstate',
    state,
    '--config',
    join(dir, 'swtpm_setup.conf'),
    '--write-ek-cert-files',
    certs,
    '--overwrite',
  ]);
  if (setup.code !== 0) throw new Error(`swtpm_setup failed: ${setup.out}`);

  let swtpm: ChildProcess | undefined;
  let port = 0;
  for (let attempt = 0; attempt < 5 && swtpm === undefined; attempt++) {
    const p = await freePort();
    if (p >= 65534 || !(await canListen(p + 1))) continue;
    const child = spawn(
      'swtpm',
      ['socket', '--tpm2', '--server', `type=tcp,port=${p},bindaddr=127.0.0.1`, '--ctrl', `type=tcp,port=${p + 1},bindaddr=127.0.0.1`, '--tpmstate', `dir=${state}`, '--flags', 'not-need-init,startup-clear'],
      { stdio: 'ignore' },
    );
    let exited = false;
    child.once('exit', () => {
      exited = true;
    });
    for (let i = 0; i < 100 && !exited; i++) {
      if (await accepts(p)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    if (!exited && (await accepts(p))) {
      swtpm = child;
      port = p;
    } else if (!exited && child.pid !== undefined) {
      process.kill(child.pid, 'SIGKILL');
    }
  }
  const child = swtpm;
  if (child?.pid === undefined) throw new Error('swtpm did not start');
  const pid = child.pid;
  const root = certsFromPem(await readFile(join(ca, 'swtpm-localca-rootca-cert.pem'), 'utf8'))[0]!;
  const issuer = certsFromPem(await readFile(join(ca, 'issuercert.pem'), 'utf8'))[0]!;
  const rootPemFile = join(dir, 'root.pem');
  const issuerPemFile = join(dir, 'issuer.pem');
  await writeFile(rootPemFile, pem(root));
  await writeFile(issuerPemFile, pem(issuer));
  return {
    tcti: `swtpm:host=127.0.0.1,port=${port}`,
    port,
    root,
    issuer,
    rootPemFile,
    issuerPemFile,
    ekCertFile: join(certs, 'ek-rsa2048.crt'),
    dir,
    pid,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise<void>((r) => child.once('exit', () => r()));
      process.kill(pid, 'SIGTERM'); // only the swtpm this helper started
      await Promise.race([gone, new Promise((r) => setTimeout(r, 3000))]);
      if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGKILL');
    },
  };
}
