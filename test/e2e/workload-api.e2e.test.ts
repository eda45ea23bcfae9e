/**
 * End to end: one real edge agent (`node bin/edgeward.js edge start --standalone ...`), registration
 * entries created through the real CLI (`edgeward entry create/delete`), and real workload processes
 * running under different uids/gids (spawned with `uid`/`gid`; the kernel tells them apart, SO_PEERCRED).
 *
 * The workload client is independent of our client library: a small Node script that loads
 * workload.proto with @grpc/proto-loader and calls the method paths `/SpiffeWorkloadAPI/<Method>`
 * directly on a plain grpc-js Client, with the security header `workload.spiffe.io: true`. It prints one
 * JSON line per message or status; the test checks the SVIDs with `openssl verify` against the bundle the
 * workload received.
 *
 * Spec: spiffe.md 1 (Workload API) and the conformance checklist of spiffe.md 5: 1, 2, 3, 6, 12, 13, 14,
 * 15, 16, 21, 23, 26, 28. Only outcomes are asserted (within generous timeouts), never speed.
 *
 * Needs Linux and root (CI runs as root): children are spawned with other uids. uids 1000..1004 need not
 * exist in /etc/passwd. The rotation workload (20 s SVID TTL) is started in beforeAll so that the other
 * tests run while it waits for its rotation.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_PATH, openssl, REPO_ROOT, runCli, tempDir } from '../helpers/index.js';

const isLinux = process.platform === 'linux';
const isRoot = process.getuid?.() === 0;

const TD = 'example.org';
const PARENT = 'spiffe://example.org/edge/e2e';
const PROTO = join(REPO_ROOT, 'src', 'protocol', 'workload-api', 'workload.proto');
/** gRPC status codes (grpc/status.proto), spelled out so that the test does not lean on a library. */
const INVALID_ARGUMENT = 3;
const PERMISSION_DENIED = 7;
const CANCELLED = 1;

const ID = {
  u1000: 'spiffe://example.org/e2e/uid1000',
  u1000g1000: 'spiffe://example.org/e2e/uid1000-gid1000',
  u1001: 'spiffe://example.org/e2e/uid1001',
  rotating: 'spiffe://example.org/e2e/rotating',
  delOne: 'spiffe://example.org/e2e/deleted/one',
  delTwo: 'spiffe://example.org/e2e/deleted/two',
} as const;

// ---------------------------------------------------------------------------------------------------
// The workload: an independent client written to a temp dir and run as another uid.

const WORKLOAD_SCRIPT = String.raw`
import { createRequire } from 'node:module';
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';

const cfg = JSON.parse(process.argv[2]);
const require = createRequire(cfg.repo + '/package.json');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');

const out = (o) => process.stdout.write(JSON.stringify({ ...o, at: Date.now() }) + '\n');
const done = (code) => process.stdout.write('', () => process.exit(code));

// workload.proto has no package line: the service is SpiffeWorkloadAPI, paths /SpiffeWorkloadAPI/<M>.
const def = loader.loadSync(cfg.proto, { keepCase: true, longs: String, enums: String, bytes: Buffer, defaults: true, arrays: true, oneofs: true });
const svc = def['SpiffeWorkloadAPI'];
const method = (name) => {
  const m = svc[name];
  const path = '/SpiffeWorkloadAPI/' + name;
  if (m.path !== path) throw new Error('unexpected method path ' + m.path);
  return { path, ser: m.requestSerialize, de: m.responseDeserialize };
};
const endpoint = process.env.SPIFFE_ENDPOINT_SOCKET; // unix:///abs/path.sock
const client = new grpc.Client(endpoint, grpc.credentials.createInsecure());
const md = () => {
  const m = new grpc.Metadata();
  if (cfg.header !== false) m.set('workload.spiffe.io', 'true');
  return m;
};

function splitDer(buf) {
  const certs = [];
  let i = 0;
  while (i < buf.length) {
    if (buf[i] !== 0x30) throw new Error('not a DER SEQUENCE at ' + i);
    let len = buf[i + 1];
    let hdr = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = 0;
      for (let k = 0; k < n; k++) len = len * 256 + buf[i + 2 + k];
      hdr += n;
    }
    certs.push(buf.subarray(i, i + hdr + len));
    i += hdr + len;
  }
  return certs;
}

function describeSvid(s) {
  const certs = splitDer(s.x509_svid);
  const leaf = new X509Certificate(certs[0]);
  const key = createPrivateKey({ key: s.x509_svid_key, format: 'der', type: 'pkcs8' });
  return {
    spiffe_id: s.spiffe_id,
    hint: s.hint,
    serial: leaf.serialNumber,
    not_before: Date.parse(leaf.validFrom),
    not_after: Date.parse(leaf.validTo),
    san: leaf.subjectAltName,
    certs: certs.length,
    leaf_spki: leaf.publicKey.export({ type: 'spki', format: 'der' }).toString('hex'),
    key_spki: createPublicKey(key).export({ type: 'spki', format: 'der' }).toString('hex'),
    chain: s.x509_svid.toString('base64'),
    bundle: s.bundle.toString('base64'),
  };
}

function fromValue(v) {
  switch (v.kind) {
    case 'numberValue': return v.numberValue;
    case 'stringValue': return v.stringValue;
    case 'boolValue': return v.boolValue;
    case 'structValue': return fromStruct(v.structValue);
    case 'listValue': return v.listValue.values.map(fromValue);
    default: return null;
  }
}
function fromStruct(s) {
  const o = {};
  for (const [k, v] of Object.entries(s?.fields ?? {})) o[k] = fromValue(v);
  return o;
}

function unary(name, req) {
  const m = method(name);
  return new Promise((resolve) => {
    client.makeUnaryRequest(m.path, m.ser, m.de, req, md(), (err, res) => {
      resolve(err ? { code: err.code, details: err.details } : { code: 0, res });
    });
  });
}

if (cfg.mode === 'x509') {
  const m = method('FetchX509SVID');
  const call = client.makeServerStreamRequest(m.path, m.ser, m.de, {}, md());
  call.on('data', (msg) => {
    out({ type: 'x509', svids: msg.svids.map(describeSvid) });
    if (cfg.once) call.cancel();
  });
  call.on('error', () => {});
  call.on('status', (s) => {
    out({ type: 'status', code: s.code, details: s.details });
    client.close();
    done(0);
  });
  process.on('SIGTERM', () => call.cancel());
} else if (cfg.mode === 'jwt') {
  const fetched = await unary('FetchJWTSVID', { audience: ['e2e-audience'], spiffe_id: '' });
  if (fetched.code !== 0) {
    out({ type: 'jwt', fetch: fetched });
  } else {
    const svid = fetched.res.svids[0].svid;
    const ok = await unary('ValidateJWTSVID', { audience: 'e2e-audience', svid });
    const other = await unary('ValidateJWTSVID', { audience: 'another-audience', svid });
    const b = method('FetchJWTBundles');
    const bundles = await new Promise((resolve) => {
      const call = client.makeServerStreamRequest(b.path, b.ser, b.de, {}, md());
      call.on('data', (msg) => {
        resolve(Object.fromEntries(Object.entries(msg.bundles).map(([k, v]) => [k, JSON.parse(v.toString('utf8'))])));
        call.cancel();
      });
      call.on('error', (e) => resolve({ error: e.code }));
    });
    out({
      type: 'jwt',
      svids: fetched.res.svids.map((s) => ({ spiffe_id: s.spiffe_id, svid: s.svid })),
      valid: ok.code === 0 ? { code: 0, spiffe_id: ok.res.spiffe_id, claims: fromStruct(ok.res.claims) } : ok,
      otherAudience: other.code === 0 ? { code: 0, spiffe_id: other.res.spiffe_id } : other,
      bundles,
    });
  }
  client.close();
  done(0);
}
`;

interface SvidOut {
  spiffe_id: string;
  hint: string;
  serial: string;
  not_before: number;
  not_after: number;
  san: string;
  certs: number;
  leaf_spki: string;
  key_spki: string;
  chain: string;
  bundle: string;
}

type Line =
  | { type: 'x509'; svids: SvidOut[]; at: number }
  | { type: 'status'; code: number; details: string; at: number }
  | {
      type: 'jwt';
      at: number;
      fetch?: { code: number; details: string };
      svids?: Array<{ spiffe_id: string; svid: string }>;
      valid?: { code: number; details?: string; spiffe_id?: string; claims?: Record<string, unknown> };
      otherAudience?: { code: number; details?: string; spiffe_id?: string };
      bundles?: Record<string, JSONWebKeySet>;
    };

/** One workload process (one uid/gid); stopped by its own PID only. */
class Workload {
  readonly lines: Line[] = [];
  readonly exited: Promise<number | null>;
  readonly child: ChildProcess;
  #stderr = '';
  #closed = false;
  readonly #waiters = new Set<() => void>();

  constructor(script: string, cwd: string, endpoint: string, ids: { uid: number; gid: number }, cfg: Record<string, unknown>) {
    this.child = spawn(process.execPath, [script, JSON.stringify({ repo: REPO_ROOT, proto: PROTO, ...cfg })], {
      cwd,
      uid: ids.uid,
      gid: ids.gid,
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', SPIFFE_ENDPOINT_SOCKET: endpoint },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let buf = '';
    this.child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const text = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (text.trim() !== '') this.lines.push(JSON.parse(text) as Line);
      }
      for (const w of [...this.#waiters]) w();
    });
    this.child.stderr?.on('data', (d: Buffer) => {
      this.#stderr = (this.#stderr + d.toString('utf8')).slice(-4000);
    });
    this.exited = new Promise((resolve) => {
      this.child.once('close', (code) => {
        this.#closed = true;
        for (const w of [...this.#waiters]) w();
        resolve(code);
      });
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The first line matching `pred` (already printed or still to come). */
  waitFor<T extends Line>(pred: (l: Line) => l is T, what: string, timeoutMs?: number): Promise<T>;
  waitFor(pred: (l: Line) => boolean, what: string, timeoutMs?: number): Promise<Line>;
  waitFor(pred: (l: Line) => boolean, what: string, timeoutMs = 20_000): Promise<Line> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const hit = this.lines.find(pred);
        if (hit !== undefined) {
          finish();
          resolve(hit);
        } else if (this.#closed) {
          finish();
          reject(new Error(`workload ${this.child.pid} exited before ${what}; lines: ${JSON.stringify(this.lines).slice(0, 2000)}; stderr: ${this.#stderr}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out waiting for ${what}; lines: ${JSON.stringify(this.lines).slice(0, 2000)}; stderr: ${this.#stderr}`));
      }, timeoutMs);
      const finish = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      this.#waiters.add(check);
      check();
    });
  }

  /** All lines once the process has exited. */
  async result(timeoutMs = 20_000): Promise<Line[]> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.exited,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`workload ${this.child.pid} did not exit; stderr: ${this.#stderr}`)), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    return this.lines;
  }

  stop(): void {
    if (this.running && this.child.pid !== undefined) process.kill(this.child.pid, 'SIGKILL');
  }
}

const isX509 = (l: Line): l is Extract<Line, { type: 'x509' }> => l.type === 'x509';
const isStatus = (l: Line): l is Extract<Line, { type: 'status' }> => l.type === 'status';
const isJwt = (l: Line): l is Extract<Line, { type: 'jwt' }> => l.type === 'jwt';
const ids = (l: Extract<Line, { type: 'x509' }>): string[] => l.svids.map((s) => s.spiffe_id).sort();

// ---------------------------------------------------------------------------------------------------
// openssl: the SVID verifies against the bundle the workload received (checklist 14).

/** Concatenated DER certificates -> one DER buffer per certificate (tag 0x30, definite length). */
function splitDer(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let i = 0;
  while (i < buf.length) {
    expect(buf[i], 'concatenated DER, no PEM').toBe(0x30);
    let len = buf[i + 1] ?? 0;
    let hdr = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = 0;
      for (let k = 0; k < n; k++) len = len * 256 + (buf[i + 2 + k] ?? 0);
      hdr += n;
    }
    out.push(buf.subarray(i, i + hdr + len));
    i += hdr + len;
  }
  return out;
}

const pem = (der: Buffer): string => `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{1,64}/g, '$&\n')}-----END CERTIFICATE-----\n`;

async function opensslVerify(s: SvidOut, dir: string): Promise<string> {
  const chain = splitDer(Buffer.from(s.chain, 'base64'));
  const bundle = splitDer(Buffer.from(s.bundle, 'base64'));
  expect(chain.length).toBeGreaterThanOrEqual(1);
  expect(bundle.length).toBeGreaterThanOrEqual(1);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'leaf.pem'), pem(chain[0]!));
  writeFileSync(join(dir, 'chain.pem'), chain.slice(1).map(pem).join(''));
  writeFileSync(join(dir, 'bundle.pem'), bundle.map(pem).join(''));
  const args = ['verify', '-CAfile', join(dir, 'bundle.pem')];
  if (chain.length > 1) args.push('-untrusted', join(dir, 'chain.pem'));
  args.push(join(dir, 'leaf.pem'));
  const r = await openssl(args);
  return r.stdout.trim();
}

/** Checklist 13, 14, 16: spiffe_id = the leaf's only URI SAN; the key is the leaf's key. */
function expectWellFormed(s: SvidOut): void {
  expect(s.san).toBe(`URI:${s.spiffe_id}`);
  expect(s.key_spki).toBe(s.leaf_spki);
  expect(s.not_after).toBeGreaterThan(s.not_before);
}

// ---------------------------------------------------------------------------------------------------
// The agent and the CLI.

interface Agent {
  child: ChildProcess;
  pid: number;
  endpoint: string;
  stderr: () => string;
}

function startAgent(dataDir: string): Promise<Agent> {
  const child = spawn(process.execPath, [CLI_PATH, 'edge', 'start', '--standalone', '--trust-domain', TD, '--data-dir', dataDir], {
    cwd: REPO_ROOT,
    env: { ...process.env, EDGEWARD_DEBUG: undefined, EDGEWARD_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString('utf8')).slice(-20_000);
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGKILL');
      reject(new Error(`agent did not become ready: ${stderr}`));
    }, 20_000);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      const m = /^SPIFFE_ENDPOINT_SOCKET=(\S+)$/m.exec(out);
      if (m !== null && child.pid !== undefined) {
        clearTimeout(timer);
        resolve({ child, pid: child.pid, endpoint: m[1]!, stderr: () => stderr });
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`agent exited early (${String(code ?? signal)}): ${stderr}`));
    });
  });
}

/** SIGTERM the agent (by its PID only), SIGKILL after 5 s. */
async function stopAgent(a: Agent): Promise<void> {
  if (a.child.exitCode !== null || a.child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => a.child.once('exit', () => resolve()));
  process.kill(a.pid, 'SIGTERM');
  const timer = setTimeout(() => {
    if (a.child.exitCode === null && a.child.signalCode === null) process.kill(a.pid, 'SIGKILL');
  }, 5_000);
  await gone;
  clearTimeout(timer);
}

interface EntryJson {
  id: string;
  spiffeId: string;
  selectors: string[];
  x509SvidTtlMs?: number;
}

async function createEntry(dataDir: string, spiffeId: string, selectors: string[], extra: string[] = []): Promise<EntryJson> {
  const args = ['entry', 'create', '--data-dir', dataDir, '--spiffe-id', spiffeId, '--parent', PARENT, '--json', ...extra];
  for (const s of selectors) args.push('--selector', s);
  const r = await runCli(args);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as EntryJson;
}

async function deleteEntry(dataDir: string, id: string): Promise<void> {
  const r = await runCli(['entry', 'delete', '--data-dir', dataDir, id]);
  expect(r.code, r.stderr).toBe(0);
}

// ---------------------------------------------------------------------------------------------------

describe.runIf(isLinux && isRoot)('Workload API end to end: real agent, CLI entries, workloads under other uids', () => {
  let root: string;
  let dataDir: string;
  let script: string;
  let agent: Agent | undefined;
  const workloads: Workload[] = [];
  let rotating: Workload;
  let rotationEntry: EntryJson;

  const run = (ids: { uid: number; gid: number }, cfg: Record<string, unknown>): Workload => {
    const w = new Workload(script, root, agent!.endpoint, ids, cfg);
    workloads.push(w);
    return w;
  };

  beforeAll(async () => {
    root = await tempDir('edgeward-e2e-');
    chmodSync(root, 0o755); // the workloads (other uids) must reach the script, the cwd and the socket
    dataDir = join(root, 'agent');
    script = join(root, 'workload.mjs');
    writeFileSync(script, WORKLOAD_SCRIPT, { mode: 0o644 });
    agent = await startAgent(dataDir);
    expect(agent.endpoint).toBe(`unix://${join(dataDir, 'public', 'api.sock')}`);

    // The 20 s rotation runs while the other tests do (it dominates the file's run time).
    rotationEntry = await createEntry(dataDir, ID.rotating, ['unix:uid:1003'], ['--x509-ttl', '20s']);
    expect(rotationEntry.x509SvidTtlMs).toBe(20_000);
    rotating = run({ uid: 1003, gid: 1003 }, { mode: 'x509' });

    await Promise.all([
      createEntry(dataDir, ID.u1000, ['unix:uid:1000']),
      createEntry(dataDir, ID.u1000g1000, ['unix:uid:1000', 'unix:gid:1000']),
      createEntry(dataDir, ID.u1001, ['unix:uid:1001'], ['--jwt-ttl', '5m']),
    ]);
  });

  afterAll(async () => {
    for (const w of workloads) w.stop();
    if (agent !== undefined) await stopAgent(agent);
  });

  it('the CLI lists the entries it created', async () => {
    const r = await runCli(['entry', 'list', '--data-dir', dataDir, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const list = JSON.parse(r.stdout) as EntryJson[];
    expect(list.map((e) => e.spiffeId)).toEqual(expect.arrayContaining([ID.rotating, ID.u1000, ID.u1000g1000, ID.u1001]));
  });

  it('each uid gets exactly its own entries; an entry with unix:uid + unix:gid only when the gid matches (checklist 12)', async () => {
    const [a, b, c] = await Promise.all([
      run({ uid: 1000, gid: 1000 }, { mode: 'x509', once: true }).result(),
      run({ uid: 1000, gid: 1001 }, { mode: 'x509', once: true }).result(),
      run({ uid: 1001, gid: 1001 }, { mode: 'x509', once: true }).result(),
    ]);
    const first = (lines: Line[]): Extract<Line, { type: 'x509' }> => {
      const m = lines.find(isX509);
      expect(m, JSON.stringify(lines)).toBeDefined();
      return m!;
    };
    expect(ids(first(a))).toEqual([ID.u1000, ID.u1000g1000].sort());
    expect(ids(first(b))).toEqual([ID.u1000]);
    expect(ids(first(c))).toEqual([ID.u1001]);
    for (const lines of [a, b, c]) {
      for (const s of first(lines).svids) expectWellFormed(s);
      // the client cancelled after the first message: nothing else was wrong
      expect(lines.filter(isStatus).map((s) => s.code)).toEqual([CANCELLED]);
    }
    // The two uid-1000 workloads share the one SVID of the uid-only entry (one SVID per entry).
    const shared = (lines: Line[]): SvidOut => first(lines).svids.find((s) => s.spiffe_id === ID.u1000)!;
    expect(shared(a).serial).toBe(shared(b).serial);
  });

  it('the SVIDs a workload receives pass `openssl verify` against the bundle it received (checklist 14, 15)', async () => {
    const lines = await run({ uid: 1000, gid: 1000 }, { mode: 'x509', once: true }).result();
    const msg = lines.find(isX509);
    expect(msg).toBeDefined();
    expect(msg!.svids).toHaveLength(2);
    for (const [i, s] of msg!.svids.entries()) {
      expectWellFormed(s);
      expect(await opensslVerify(s, join(root, `verify-${i}`))).toMatch(/: OK$/);
      // the bundle holds CA certificates only (checklist 20)
      for (const der of splitDer(Buffer.from(s.bundle, 'base64'))) expect(new X509Certificate(der).ca).toBe(true);
    }
    // Against anything but the bundle it came with (here: the leaf itself as the only "CA") the leaf
    // fails: openssl really checks the chain.
    const leafAsCa = splitDer(Buffer.from(msg!.svids[0]!.chain, 'base64'))[0]!;
    writeFileSync(join(root, 'verify-0', 'bundle.pem'), pem(leafAsCa));
    const bad = await openssl(['verify', '-CAfile', join(root, 'verify-0', 'bundle.pem'), join(root, 'verify-0', 'leaf.pem')], undefined, { allowFailure: true });
    expect(bad.code).not.toBe(0);
  });

  it('an unregistered uid gets PermissionDenied "no identity issued" and no message (checklist 6)', async () => {
    const lines = await run({ uid: 1002, gid: 1002 }, { mode: 'x509' }).result();
    expect(lines.filter(isX509)).toEqual([]);
    expect(lines.filter(isStatus)).toMatchObject([{ code: PERMISSION_DENIED, details: 'no identity issued' }]);
  });

  it('a registered caller without the security header gets InvalidArgument and no message (checklist 3)', async () => {
    const lines = await run({ uid: 1000, gid: 1000 }, { mode: 'x509', header: false }).result();
    expect(lines.filter(isX509)).toEqual([]);
    expect(lines.filter(isStatus)).toMatchObject([{ code: INVALID_ARGUMENT, details: 'security header missing from request' }]);
  });

  it('a JWT-SVID validates through ValidateJWTSVID and is rejected for another audience (checklist 26, 28)', async () => {
    const lines = await run({ uid: 1001, gid: 1001 }, { mode: 'jwt' }).result();
    const r = lines.find(isJwt);
    expect(r, JSON.stringify(lines)).toBeDefined();
    expect(r!.fetch).toBeUndefined();
    expect(r!.svids?.map((s) => s.spiffe_id)).toEqual([ID.u1001]);
    expect(r!.valid).toMatchObject({ code: 0, spiffe_id: ID.u1001 });
    const claims = r!.valid!.claims!;
    expect(claims['sub']).toBe(ID.u1001);
    expect(claims['aud']).toEqual(['e2e-audience']); // always a list (SPIRE)
    expect(Number(claims['exp']) - Number(claims['iat'])).toBe(300); // entry --jwt-ttl 5m
    expect(r!.otherAudience).toMatchObject({ code: INVALID_ARGUMENT });
    // The token also verifies, independently, with the JWKS of FetchJWTBundles (checklist 25, 27).
    const jwks = r!.bundles?.[`spiffe://${TD}`];
    expect(jwks?.keys.length).toBeGreaterThanOrEqual(1);
    for (const k of jwks!.keys) expect(typeof k.kid).toBe('string');
    const { payload, protectedHeader } = await jwtVerify(r!.svids![0]!.svid, createLocalJWKSet(jwks!), { audience: 'e2e-audience' });
    expect(payload.sub).toBe(ID.u1001);
    expect(typeof protectedHeader.kid).toBe('string');
    await expect(jwtVerify(r!.svids![0]!.svid, createLocalJWKSet(jwks!), { audience: 'another-audience' })).rejects.toThrow();
  });

  it('deleting an entry redacts it from an open stream; deleting the last one ends the stream with PermissionDenied (checklist 23)', async () => {
    const [one, two] = await Promise.all([
      createEntry(dataDir, ID.delOne, ['unix:uid:1004']),
      createEntry(dataDir, ID.delTwo, ['unix:uid:1004']),
    ]);
    const w = run({ uid: 1004, gid: 1004 }, { mode: 'x509' });
    const firstMsg = await w.waitFor(isX509, 'the first message');
    expect(ids(firstMsg)).toEqual([ID.delOne, ID.delTwo]);

    await deleteEntry(dataDir, one.id);
    const redacted = await w.waitFor((l): l is Extract<Line, { type: 'x509' }> => isX509(l) && l.svids.length === 1, 'a message without the deleted entry');
    expect(ids(redacted)).toEqual([ID.delTwo]);
    expect(redacted.svids[0]!.serial).toBe(firstMsg.svids.find((s) => s.spiffe_id === ID.delTwo)!.serial);
    expect(w.running).toBe(true); // still connected

    await deleteEntry(dataDir, two.id);
    const status = await w.waitFor(isStatus, 'the end of the stream');
    expect(status).toMatchObject({ code: PERMISSION_DENIED });
    await w.result();
    // nothing was sent after the last identity went away
    expect(w.lines.filter(isX509)).toHaveLength(2);
  });

  it('with a 20 s TTL an open stream receives a new SVID (new key, new serial) before the old one expires (checklist 21)', async () => {
    const first = await rotating.waitFor(isX509, 'the first message');
    expect(ids(first)).toEqual([ID.rotating]);
    const old = first.svids[0]!;
    expectWellFormed(old);
    // entry --x509-ttl 20s: NotAfter at most 20 s after the SVID arrived (NotBefore is backdated 10 s,
    // as SPIRE does, so the certificate's own validity span is longer than the TTL).
    expect(old.not_after - first.at).toBeLessThanOrEqual(20_000 + 1000);
    const next = await rotating.waitFor(
      (l): l is Extract<Line, { type: 'x509' }> => isX509(l) && l.svids[0]?.serial !== old.serial,
      'a rotated SVID',
      40_000,
    );
    const fresh = next.svids[0]!;
    expect(fresh.spiffe_id).toBe(ID.rotating);
    expect(fresh.serial).not.toBe(old.serial);
    expect(fresh.leaf_spki).not.toBe(old.leaf_spki); // a new key
    expectWellFormed(fresh);
    expect(next.at).toBeLessThan(old.not_after); // pushed before the old one expired
    expect(fresh.not_after).toBeGreaterThan(old.not_after);
    expect(await opensslVerify(fresh, join(root, 'verify-rotated'))).toMatch(/: OK$/);
    expect(rotating.running).toBe(true);

    // And the stream of a caller that stays connected ends with PermissionDenied when its entry goes.
    await deleteEntry(dataDir, rotationEntry.id);
    expect(await rotating.waitFor(isStatus, 'the end of the stream')).toMatchObject({ code: PERMISSION_DENIED });
  }, 50_000);
});
