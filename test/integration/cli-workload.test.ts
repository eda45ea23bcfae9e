/**
 * The workload-side CLI (`svid fetch|watch`, `jwt fetch|validate`, `bundle show`) against a REAL edge
 * agent started as a child process (`edgeward edge start --standalone`), over its Unix socket, with the
 * caller identified by the kernel. Independent checks: openssl for the written X.509 material, the
 * identity core for bundles and tokens.
 *
 * Runs as root in CI; the tests that need other uids (an unregistered caller, a watch whose entry is
 * deleted) spawn the CLI with uid 65534 / 65533 and are skipped when that is not possible.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chown, lstat, mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  certsFromPem,
  certToPem,
  parseBundleJson,
  parseBundleMapJson,
  parseCertificate,
  SpiffeId,
  TrustDomain,
  validateJwtSvidSync,
  validateX509Svid,
} from '../../src/identity/index.js';
import { CLI_PATH, openssl, REPO_ROOT, runCli, tempDir, type RunResult } from '../helpers/index.js';

const TD = 'example.org';
const WORKLOAD_A = `spiffe://${TD}/w/a`;
const WORKLOAD_W = `spiffe://${TD}/w/watch`;
const AGENT_ID = `spiffe://${TD}/agent`;
/** An account with no registration entry (CI runs as root, so the CLI can be spawned as it). */
const NOBODY = 65534;
/** The uid of the watch workload (no passwd entry needed: selectors are unix:uid:N). */
const WATCH_UID = 65533;

const myUid = process.getuid?.() ?? -1;
const isRoot = myUid === 0;
const isLinux = process.platform === 'linux';

let agent: ChildProcess | undefined;
let agentStderr = '';
let dataDir = '';
let endpoint = '';
/** Can a process with another uid run the CLI from this checkout (the repo may sit under a 0700 home)? */
let otherUidsWork = false;

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/** The environment for CLI children: the agent's endpoint unless overridden. */
function env(extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return { SPIFFE_ENDPOINT_SOCKET: endpoint, ...extra };
}

function cli(args: readonly string[], extra: Record<string, string | undefined> = {}, input?: string): Promise<RunResult> {
  return runCli(args, { env: env(extra), ...(input === undefined ? {} : { input }) });
}

/** Spawn the CLI as another uid; returns the child (stdout/stderr piped). */
function spawnAs(uid: number, args: readonly string[], extra: Record<string, string | undefined> = {}): ChildProcess {
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, EDGEWARD_DEBUG: undefined, HOME: '/', ...env(extra) })) if (v !== undefined) childEnv[k] = v;
  return spawn(process.execPath, [CLI_PATH, ...args], { cwd: '/', env: childEnv, uid, gid: uid, stdio: ['ignore', 'pipe', 'pipe'] });
}

function runAs(uid: number, args: readonly string[], extra: Record<string, string | undefined> = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawnAs(uid, args, extra);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

async function createEntry(args: readonly string[]): Promise<string> {
  const r = await runCli(['entry', 'create', '--data-dir', dataDir, '--parent', AGENT_ID, '--json', ...args]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return (JSON.parse(r.stdout) as { id: string }).id;
}

/** A running `svid watch --json` with its parsed stdout lines. */
interface WatchProc {
  child: ChildProcess;
  updates: Array<{ update: number; svids: Array<{ spiffe_id: string; serial: string }>; written?: string[] }>;
  stderr: () => string;
  waitFor(n: number, ms: number): Promise<void>;
}

function startWatch(uid: number, args: readonly string[]): WatchProc {
  const child = spawnAs(uid, ['svid', 'watch', '--json', ...args]);
  const updates: WatchProc['updates'] = [];
  let err = '';
  child.stderr!.on('data', (b: Buffer) => (err += b.toString('utf8')));
  const waiters: Array<() => void> = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    updates.push(JSON.parse(line) as WatchProc['updates'][number]);
    for (const w of waiters.splice(0)) w();
  });
  return {
    child,
    updates,
    stderr: () => err,
    waitFor(n, ms) {
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`watch: ${updates.length} of ${n} updates after ${ms} ms; stderr: ${err}`)), ms);
        const check = (): void => {
          if (updates.length >= n) {
            clearTimeout(t);
            resolve();
          } else if (child.exitCode !== null) {
            clearTimeout(t);
            reject(new Error(`watch exited ${child.exitCode}: ${err}`));
          } else {
            waiters.push(check);
          }
        };
        check();
      });
    },
  };
}

beforeAll(async () => {
  // dist/ is normally fresh (`npm test` builds first); build anyway so that a direct vitest run works.
  const build = await new Promise<{ code: number | null; out: string }>((resolve) => {
    const c = spawn(process.execPath, [join(REPO_ROOT, 'scripts', 'build.mjs')], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (b: Buffer) => (out += b.toString()));
    c.stderr.on('data', (b: Buffer) => (out += b.toString()));
    c.once('close', (code) => resolve({ code, out }));
  });
  expect(build.code, build.out).toBe(0);

  dataDir = await tempDir('edgeward-cliwl-');
  const child = spawn(process.execPath, [CLI_PATH, 'edge', 'start', '--standalone', '--trust-domain', TD, '--data-dir', dataDir], {
    cwd: REPO_ROOT,
    env: { ...process.env, EDGEWARD_DEBUG: '', EDGEWARD_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  agent = child;
  child.stderr!.on('data', (b: Buffer) => {
    if (agentStderr.length < 64 * 1024) agentStderr += b.toString('utf8');
  });
  endpoint = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`agent did not start in 20 s; stderr: ${agentStderr}`)), 20_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const m = /^SPIFFE_ENDPOINT_SOCKET=(unix:\/\/\/\S+)$/.exec(line);
      if (m !== null) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`agent exited ${code}; stderr: ${agentStderr}`));
    });
  });
  await createEntry(['--spiffe-id', WORKLOAD_A, '--selector', `unix:uid:${myUid}`, '--hint', 'primary']);
  if (isRoot && isLinux) otherUidsWork = (await runAs(NOBODY, ['--version'])).code === 0;
}, 60_000);

afterAll(async () => {
  const child = agent;
  agent = undefined;
  if (child === undefined || child.pid === undefined) return;
  // Only the PID this file started.
  child.kill('SIGTERM');
  if (!(await waitExit(child, 8000))) {
    child.kill('SIGKILL');
    await waitExit(child, 2000);
  }
}, 15_000);

describe('svid fetch', () => {
  it('--write DIR writes svid.pem, svid.key (0600) and bundle.pem that openssl verifies; DIR is created 0700', async () => {
    const out = join(await tempDir('edgeward-cliwl-out-'), 'nested', 'svid');
    const r = await cli(['svid', 'fetch', '--write', out]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(WORKLOAD_A);
    expect(r.stdout).toContain('primary');

    expect((await lstat(out)).mode & 0o777).toBe(0o700);
    expect((await lstat(join(out, 'svid.key'))).mode & 0o777).toBe(0o600);
    expect((await lstat(join(out, 'svid.pem'))).mode & 0o777).toBe(0o644);
    expect((await lstat(join(out, 'bundle.pem'))).mode & 0o777).toBe(0o644);
    expect((await readdir(out)).sort()).toEqual(['bundle.pem', 'svid.key', 'svid.pem']); // no temp files left

    // Leaf first, then intermediates (Workload API 5.2 x509_svid); split for openssl.
    const chain = certsFromPem(await readFile(join(out, 'svid.pem'), 'utf8'));
    expect(chain.length).toBeGreaterThanOrEqual(1);
    expect(parseCertificate(chain[0]!).uris).toEqual([WORKLOAD_A]);
    const leafPem = join(out, '..', 'leaf.pem');
    const interPem = join(out, '..', 'intermediates.pem');
    await writeFile(leafPem, certToPem(chain[0]!));
    await writeFile(interPem, chain.slice(1).map((d) => certToPem(d)).join(''));
    const bundlePem = join(out, 'bundle.pem');
    const args = ['verify', '-CAfile', bundlePem, ...(chain.length > 1 ? ['-untrusted', interPem] : []), leafPem];
    expect((await openssl(args)).stdout).toContain(': OK');
    // The whole svid.pem as the target works too (openssl verifies its first certificate).
    expect((await openssl(['verify', '-CAfile', bundlePem, join(out, 'svid.pem')])).stdout).toContain(': OK');

    // The key is PKCS#8 PEM and belongs to the leaf.
    const keyPem = await readFile(join(out, 'svid.key'), 'utf8');
    expect(keyPem.startsWith('-----BEGIN PRIVATE KEY-----\n')).toBe(true);
    const fromKey = (await openssl(['pkey', '-in', join(out, 'svid.key'), '-pubout'])).stdout;
    const fromCert = (await openssl(['x509', '-in', leafPem, '-pubkey', '-noout'])).stdout;
    expect(fromKey).toBe(fromCert);

    // And the identity core agrees (X509-SVID 5).
    const bundle = certsFromPem(await readFile(bundlePem, 'utf8'));
    const v = validateX509Svid(chain, { x509AuthoritiesFor: (td) => (td.name === TD ? bundle : undefined) }, Date.now());
    expect(v.spiffeId.toString()).toBe(WORKLOAD_A);

    // A second write replaces the files atomically, keeping the modes.
    const r2 = await cli(['svid', 'fetch', '--write', out]);
    expect(r2.code).toBe(0);
    expect((await lstat(join(out, 'svid.key'))).mode & 0o777).toBe(0o600);
    expect((await readdir(out)).sort()).toEqual(['bundle.pem', 'svid.key', 'svid.pem']);
  });

  it('--json prints the summary and no key material', async () => {
    const out = await tempDir('edgeward-cliwl-json-');
    const r = await cli(['svid', 'fetch', '--json', '--write', out]);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as { svids: Array<Record<string, unknown>>; trust_domains: string[]; written: string[] };
    expect(j.svids[0]).toMatchObject({ spiffe_id: WORKLOAD_A, hint: 'primary' });
    expect(j.svids[0]!['serial']).toMatch(/^[0-9a-f]+$/);
    expect(typeof j.svids[0]!['not_after']).toBe('string');
    expect(j.trust_domains).toEqual([TD]);
    expect(j.written.map((p) => p.slice(out.length + 1)).sort()).toEqual(['bundle.pem', 'svid.key', 'svid.pem']);
    const keyPem = await readFile(join(out, 'svid.key'), 'utf8');
    const keyB64 = keyPem.split('\n').filter((l) => l !== '' && !l.startsWith('-----')).join('');
    const keyDerB64 = Buffer.from(keyB64, 'base64').toString('base64');
    for (const text of [r.stdout, r.stderr]) {
      expect(text).not.toContain('PRIVATE KEY');
      expect(text).not.toContain(keyB64.slice(0, 40));
      expect(text).not.toContain(keyDerB64.slice(16, 56));
      expect(text).not.toMatch(/"(key|private_?key|pkcs8|x509_svid_key)"/i);
    }
  });

  it('refuses a --write DIR that is a symlink or not a directory, and writes nothing through the link', async () => {
    const base = await tempDir('edgeward-cliwl-unsafe-');
    const target = join(base, 'target');
    await mkdir(target);
    await symlink(target, join(base, 'link'));
    for (const dir of [join(base, 'link'), `${join(base, 'link')}/`]) {
      const r = await cli(['svid', 'fetch', '--write', dir]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^edgeward: cli\/unsafe-output-dir: .*symbolic link/);
    }
    expect(await readdir(target)).toEqual([]);
    await writeFile(join(base, 'file'), 'x');
    const r = await cli(['svid', 'fetch', '--write', join(base, 'file')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^edgeward: cli\/unsafe-output-dir: .*not a directory/);
  });
});

describe('endpoint selection (Workload Endpoint 4: explicit first, then SPIFFE_ENDPOINT_SOCKET)', () => {
  it('uses SPIFFE_ENDPOINT_SOCKET, and --socket over it', async () => {
    const viaEnv = await cli(['svid', 'fetch', '--json']);
    expect(viaEnv.code).toBe(0);
    const viaFlag = await cli(['svid', 'fetch', '--json', '--socket', endpoint], { SPIFFE_ENDPOINT_SOCKET: 'http://x' });
    expect(viaFlag.stderr).toBe('');
    expect(viaFlag.code).toBe(0);
    expect(JSON.parse(viaFlag.stdout)).toEqual(JSON.parse(viaEnv.stdout));
  });

  it('rejects bad endpoint values: typed error from the env (exit 1), usage error from --socket (exit 2)', async () => {
    for (const bad of ['unix:relative', 'tcp://host:1', 'http://x', 'unix://host/abs.sock', 'tcp://127.0.0.1:8000/foo']) {
      const e = await cli(['svid', 'fetch'], { SPIFFE_ENDPOINT_SOCKET: bad });
      expect(e.code, bad).toBe(1);
      expect(e.stderr, bad).toMatch(/^edgeward: endpoint\/invalid: SPIFFE_ENDPOINT_SOCKET: /);
      const f = await cli(['jwt', 'fetch', '--audience', 'x', '--socket', bad], { SPIFFE_ENDPOINT_SOCKET: undefined });
      expect(f.code, bad).toBe(2);
      expect(f.stderr, bad).toMatch(/^edgeward: cli\/usage: --socket .*endpoint\/invalid/);
    }
    const none = await cli(['bundle', 'show'], { SPIFFE_ENDPOINT_SOCKET: undefined });
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/^edgeward: cli\/usage: no Workload API endpoint/);
  });

  it('reports an unreachable endpoint as a typed error', async () => {
    const r = await cli(['svid', 'fetch', '--socket', `unix://${join(dataDir, 'nope.sock')}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^edgeward: workload-api\/unavailable: /);
  });
});

describe('jwt fetch / jwt validate', () => {
  it('round-trips a token and rejects it for another audience (JWT-SVID 3.2, 4)', async () => {
    const f = await cli(['jwt', 'fetch', '--audience', 'svc-x', '--audience', 'svc-y']);
    expect(f.stderr).toBe('');
    expect(f.code).toBe(0);
    // Just the token and a newline: usable as TOKEN=$(edgeward jwt fetch --audience x).
    expect(f.stdout).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\n$/);
    const token = f.stdout.trim();

    for (const aud of ['svc-x', 'svc-y']) {
      const v = await cli(['jwt', 'validate', '--audience', aud, token]);
      expect(v.stderr).toBe('');
      expect(v.code).toBe(0);
      expect(v.stdout).toContain(`spiffe_id: ${WORKLOAD_A}`);
      expect(v.stdout).toMatch(/aud: \["svc-x","svc-y"\]/);
    }
    const vj = await cli(['jwt', 'validate', '--json', '--audience', 'svc-x', '-'], {}, `${token}\n`);
    expect(vj.code).toBe(0);
    const ok = JSON.parse(vj.stdout) as { valid: boolean; spiffe_id: string; claims: Record<string, unknown> };
    expect(ok).toMatchObject({ valid: true, spiffe_id: WORKLOAD_A });
    expect(ok.claims['sub']).toBe(WORKLOAD_A);

    const bad = await cli(['jwt', 'validate', '--audience', 'svc-z', token]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toMatch(/^edgeward: workload-api\/invalid-argument: .*jwt-svid\/wrong-audience/);
    const badJson = await cli(['jwt', 'validate', '--json', '--audience', 'svc-z', token]);
    expect(badJson.code, badJson.stderr).toBe(1);
    expect(badJson.stderr).toMatch(/wrong-audience/);
    expect(JSON.parse(badJson.stdout)).toMatchObject({ valid: false, code: 'workload-api/invalid-argument', reason: 'jwt-svid/wrong-audience' });

    const tampered = await cli(['jwt', 'validate', '--audience', 'svc-x', `${token.slice(0, -4)}AAAA`]);
    expect(tampered.code).toBe(1);
    expect(tampered.stderr).toMatch(/^edgeward: workload-api\/invalid-argument: /);
  });

  it('--json, --spiffe-id and usage errors', async () => {
    const j = await cli(['jwt', 'fetch', '--json', '--audience', 'svc-x', '--spiffe-id', WORKLOAD_A]);
    expect(j.code).toBe(0);
    const doc = JSON.parse(j.stdout) as { svids: Array<{ spiffe_id: string; audience: string[]; token: string; expires_at: string }> };
    expect(doc.svids).toHaveLength(1);
    expect(doc.svids[0]).toMatchObject({ spiffe_id: WORKLOAD_A, audience: ['svc-x'] });

    const notMine = await cli(['jwt', 'fetch', '--audience', 'svc-x', '--spiffe-id', `spiffe://${TD}/someone-else`]);
    expect(notMine.code).toBe(1);
    expect(notMine.stderr).toMatch(/^edgeward: workload-api\/permission-denied: /);
    expect((await cli(['jwt', 'fetch'])).code).toBe(2);
    expect((await cli(['jwt', 'fetch', '--audience', 'x', '--spiffe-id', 'not-an-id'])).code).toBe(2);
    expect((await cli(['jwt', 'validate', 'tok'])).code).toBe(2);
    expect((await cli(['jwt', 'validate', '--audience', 'x'])).code).toBe(2);
  });
});

describe('bundle show', () => {
  it('prints PEM per trust domain, and SPIFFE bundle JSON with the JWT authorities that validate our tokens', async () => {
    const pem = await cli(['bundle', 'show']);
    expect(pem.code).toBe(0);
    expect(pem.stdout.startsWith(`# spiffe://${TD}\n-----BEGIN CERTIFICATE-----\n`)).toBe(true);
    const certs = certsFromPem(pem.stdout);
    expect(certs.length).toBeGreaterThanOrEqual(1);
    for (const c of certs) expect(parseCertificate(c).isCA).toBe(true);

    // The same CAs as bundle.pem of `svid fetch --write`.
    const out = await tempDir('edgeward-cliwl-b-');
    expect((await cli(['svid', 'fetch', '--write', out])).code).toBe(0);
    const written = certsFromPem(await readFile(join(out, 'bundle.pem'), 'utf8'));
    expect(certs.map((c) => c.toString('base64'))).toEqual(written.map((c) => c.toString('base64')));

    const sp = await cli(['bundle', 'show', '--format', 'spiffe']);
    expect(sp.code).toBe(0);
    const lines = sp.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(`# spiffe://${TD}`);
    expect(lines).toHaveLength(2);
    const bundle = parseBundleJson(TrustDomain.parse(TD), lines[1]!); // TDB 4
    expect(bundle.x509Authorities.map((c) => c.toString('base64'))).toEqual(certs.map((c) => c.toString('base64')));
    expect(bundle.jwtAuthorities.size).toBeGreaterThanOrEqual(1);

    // A token from `jwt fetch` verifies against the printed JWT authorities (JWT-SVID 4).
    const token = (await cli(['jwt', 'fetch', '--audience', 'svc-b'])).stdout.trim();
    const v = validateJwtSvidSync(token, { audience: 'svc-b', bundles: bundle, now: Date.now() });
    expect(v.spiffeId.equals(SpiffeId.parse(WORKLOAD_A))).toBe(true);

    const map = await cli(['bundle', 'show', '--format', 'spiffe', '--json']);
    expect(map.code).toBe(0);
    const set = parseBundleMapJson(map.stdout); // TDB 5
    expect(set.get(TD)?.jwtAuthorities.size).toBe(bundle.jwtAuthorities.size);

    const pj = await cli(['bundle', 'show', '--json']);
    expect(certsFromPem((JSON.parse(pj.stdout) as { bundles: Record<string, string> }).bundles[TD]!)).toHaveLength(certs.length);

    const badFormat = await cli(['bundle', 'show', '--format', 'der']);
    expect(badFormat.code).toBe(2);
  });
});

describe('callers without an identity', () => {
  it('an unregistered uid gets exit 1 with workload-api/permission-denied', async (ctx) => {
    if (!otherUidsWork) ctx.skip();
    for (const args of [['svid', 'fetch'], ['jwt', 'fetch', '--audience', 'x'], ['bundle', 'show']]) {
      const r = await runAs(NOBODY, args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr, args.join(' ')).toMatch(/^edgeward: workload-api\/permission-denied: .*no identity issued/);
    }
  });
});

describe('svid watch', () => {
  let watchEntry = '';

  it('prints a first update and another after the short-lived SVID rotates; rewrites --write files; exits 0 on SIGTERM', async (ctx) => {
    if (!otherUidsWork) ctx.skip();
    watchEntry = await createEntry(['--spiffe-id', WORKLOAD_W, '--selector', `unix:uid:${WATCH_UID}`, '--x509-ttl', '4s']);
    const parent = await tempDir('edgeward-cliwl-watch-');
    await chown(parent, WATCH_UID, WATCH_UID);
    const out = join(parent, 'out'); // created by the watch, 0700, owned by the workload
    const w = startWatch(WATCH_UID, ['--write', out]);
    try {
      await w.waitFor(1, 20_000);
      const first = w.updates[0]!;
      expect(first.update).toBe(1);
      expect(first.svids[0]!.spiffe_id).toBe(WORKLOAD_W);
      expect(first.written).toHaveLength(3);
      // Rotation at about half the lifetime (spiffe.md 3): a new serial on the stream.
      const deadline = Date.now() + 20_000;
      while (!w.updates.some((u) => u.svids[0]!.serial !== first.svids[0]!.serial)) {
        await w.waitFor(w.updates.length + 1, Math.max(1, deadline - Date.now()));
      }
      const st = await lstat(join(out, 'svid.key'));
      expect(st.mode & 0o777).toBe(0o600);
      expect(st.uid).toBe(WATCH_UID);
      expect((await lstat(out)).mode & 0o777).toBe(0o700);
      const leaf = parseCertificate(certsFromPem(await readFile(join(out, 'svid.pem'), 'utf8'))[0]!);
      expect(leaf.uris).toEqual([WORKLOAD_W]);
      expect(JSON.stringify(w.updates)).not.toContain('PRIVATE KEY');
    } finally {
      w.child.kill('SIGTERM');
      expect(await waitExit(w.child, 10_000)).toBe(true);
    }
    expect(w.child.exitCode).toBe(0);
  }, 30_000);

  it('exits 1 with workload-api/permission-denied when its entry is deleted', async (ctx) => {
    if (!otherUidsWork || watchEntry === '') ctx.skip();
    const w = startWatch(WATCH_UID, []);
    try {
      await w.waitFor(1, 20_000);
      const del = await runCli(['entry', 'delete', '--data-dir', dataDir, watchEntry]);
      expect(del.code).toBe(0);
      // The agent ends the stream with PermissionDenied (spiffe.md 1, Stream semantics).
      expect(await waitExit(w.child, 20_000)).toBe(true);
    } finally {
      if (w.child.exitCode === null) w.child.kill('SIGKILL');
    }
    expect(w.child.exitCode).toBe(1);
    expect(w.stderr()).toMatch(/edgeward: workload-api\/permission-denied: /);
  }, 30_000);
});
