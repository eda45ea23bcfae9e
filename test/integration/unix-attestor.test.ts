/**
 * The edge `unix` workload attestor against real processes on a real Unix socket.
 *
 * Reference §3 "Workload attestation (unix)": SO_PEERCRED at accept, /proc/<pid> opened immediately, the
 * process checked again after attestation (PID-reuse defence); selectors unix:uid, unix:user, unix:gid,
 * unix:group, unix:supplementary_gid, unix:supplementary_group, unix:path, unix:sha256 (bounded by
 * workload_size_limit). Conformance §5: callers with different uids are told apart; a caller that is gone
 * is not served. Children run as root and as uid 65534 (uid switching is skipped, not faked, unprivileged).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, createReadStream, realpathSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  attestWorkload,
  EntryIndex,
  selectorKey,
  validateEntryInput,
  WorkloadAttestationError,
  type ProcessLiveness,
  type Selector,
  type WorkloadAttestor,
  type WorkloadCaller,
} from '../../src/attestation/index.js';
import { createUnixAttestor } from '../../src/edge/attestor/index.js';
import { AccountDb, peerCredAddon, readProcStat, readProcStatus, UnixPeerRegistry, type UnixPeer } from '../../src/edge/peercred/index.js';
import { TrustDomain } from '../../src/identity/index.js';
import { tempDir } from '../helpers/index.js';

const isLinux = process.platform === 'linux';
const isRoot = process.getuid?.() === 0;
const NOBODY = 65534;
const OTHER = 65533;

/**
 * Child: optionally drops privileges BEFORE connecting (env), connects, prints what it is, then obeys
 * commands from the server: {op:'setuid'|'setgroups'} (AFTER connecting) and {op:'bye'}.
 */
const CLIENT = `
import net from 'node:net';
const [sock] = process.argv.slice(2);
if (process.env.AT_GROUPS) process.setgroups(JSON.parse(process.env.AT_GROUPS));
if (process.env.AT_GID) process.setgid(Number(process.env.AT_GID));
if (process.env.AT_UID) process.setuid(Number(process.env.AT_UID));
const s = net.connect(sock);
let buf = '';
s.setEncoding('utf8');
const me = () => ({ pid: process.pid, uid: process.geteuid(), gid: process.getegid(), groups: process.getgroups() });
s.on('connect', () => process.stdout.write(JSON.stringify(me()) + '\\n'));
s.on('data', (d) => {
  buf += d;
  let i;
  while ((i = buf.indexOf('\\n')) >= 0) {
    const msg = JSON.parse(buf.slice(0, i));
    buf = buf.slice(i + 1);
    if (msg.op === 'setuid') { process.setgid(msg.gid); process.setuid(msg.uid); }
    if (msg.op === 'setgroups') process.setgroups(msg.groups);
    if (msg.op === 'bye') { s.end(); continue; }
    s.write(JSON.stringify({ done: msg.op, me: me() }) + '\\n');
  }
});
s.on('close', () => process.exit(0));
s.on('error', (e) => { console.error(String(e)); process.exit(2); });
`;

interface Self {
  pid: number;
  uid: number;
  gid: number;
  groups: number[];
}

interface Conn {
  peer: UnixPeer;
  socket: net.Socket;
  lines: string[];
  waiters: Array<(line: string) => void>;
}

let dir = '';
let script = '';
let sockPath = '';
let server: net.Server;
const registry = new UnixPeerRegistry();
const conns = new Map<number, Conn>();
const children: ChildProcess[] = [];

function startChild(env: Record<string, string> = {}, ids: { uid?: number; gid?: number } = {}): {
  proc: ChildProcess;
  self: Promise<Self>;
  exited: Promise<number | null>;
} {
  const proc = spawn(process.execPath, [script, sockPath], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env },
    ...(ids.uid === undefined ? {} : { uid: ids.uid }),
    ...(ids.gid === undefined ? {} : { gid: ids.gid }),
  });
  children.push(proc);
  let out = '';
  let err = '';
  const exited = new Promise<number | null>((res) => proc.on('exit', (code) => res(code)));
  const self = new Promise<Self>((res, rej) => {
    proc.stdout?.setEncoding('utf8');
    proc.stdout?.on('data', (d: string) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) res(JSON.parse(out.slice(0, nl)) as Self);
    });
    proc.stderr?.on('data', (d: Buffer) => {
      err += d.toString();
    });
    proc.on('exit', (code) => rej(new Error(`child exited (${String(code)}): ${err}`)));
  });
  self.catch(() => {});
  return { proc, self, exited };
}

async function connOf(pid: number): Promise<Conn> {
  const end = Date.now() + 5000;
  for (;;) {
    const c = conns.get(pid);
    if (c !== undefined) return c;
    if (Date.now() > end) throw new Error(`no connection from pid ${pid}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Send a command to the child and wait for its acknowledgement line. */
function command(c: Conn, msg: Record<string, unknown>): Promise<{ done: string; me: Self }> {
  return new Promise((res) => {
    c.waiters.push((line) => res(JSON.parse(line) as { done: string; me: Self }));
    c.socket.write(JSON.stringify(msg) + '\n');
  });
}

async function bye(c: Conn, exited: Promise<number | null>): Promise<void> {
  c.socket.write(JSON.stringify({ op: 'bye' }) + '\n');
  expect(await exited).toBe(0);
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function failure(p: Promise<unknown>): Promise<WorkloadAttestationError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(WorkloadAttestationError);
    return e as WorkloadAttestationError;
  }
  throw new Error('expected WorkloadAttestationError');
}

const keys = (l: readonly Selector[]): string[] => l.map(selectorKey);
const accounts = AccountDb.load();
const NODE_PATH = realpathSync(process.execPath);
let NODE_SHA = '';

beforeAll(async () => {
  if (!isLinux) return;
  expect(peerCredAddon().platform).toBe('linux'); // fails loudly if the addon is not built
  dir = await tempDir('edgeward-unix-attestor-');
  chmodSync(dir, 0o755);
  script = join(dir, 'client.mjs');
  writeFileSync(script, CLIENT, { mode: 0o644 });
  sockPath = join(dir, 'workload.sock');
  NODE_SHA = await sha256File(NODE_PATH);
  server = net.createServer((socket) => {
    let peer: UnixPeer;
    try {
      peer = registry.register(socket); // synchronously, before anything is read
    } catch {
      socket.destroy();
      return;
    }
    const c: Conn = { peer, socket, lines: [], waiters: [] };
    conns.set(peer.cred.pid, c);
    let buf = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const w = c.waiters.shift();
        if (w !== undefined) w(line);
        else c.lines.push(line);
      }
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((res) => server.listen(sockPath, res));
  chmodSync(sockPath, 0o666);
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  if (server !== undefined) await new Promise<void>((res) => server.close(() => res()));
});

const full = (): WorkloadAttestor => createUnixAttestor({ accounts, discoverWorkloadPath: true, workloadSizeLimit: 512 * 1024 * 1024 });

describe.runIf(isLinux)('unix workload attestor (real processes)', () => {
  it('root child: uid/user/gid/group/supplementary groups/path/sha256 from kernel evidence', async () => {
    const child = startChild();
    const self = await child.self;
    const c = await connOf(self.pid);
    expect(c.peer.cred).toEqual({ pid: self.pid, uid: self.uid, gid: self.gid });
    const got = keys(await full().attest(c.peer));
    // process.getgroups() always adds the effective gid (Node docs), so take the kernel's list instead
    const groups = readProcStatus(self.pid).groups;
    if (c.peer.groups !== undefined) expect(c.peer.groups).toEqual(groups);
    const expected = [
      `unix:uid:${self.uid}`,
      ...(accounts.userName(self.uid) === undefined ? [] : [`unix:user:${accounts.userName(self.uid)}`]),
      `unix:gid:${self.gid}`,
      ...(accounts.groupName(self.gid) === undefined ? [] : [`unix:group:${accounts.groupName(self.gid)}`]),
      ...groups.map((g) => `unix:supplementary_gid:${g}`),
      ...[...new Set(groups.map((g) => accounts.groupName(g)).filter((n) => n !== undefined))].sort().map((n) => `unix:supplementary_group:${n}`),
      `unix:path:${NODE_PATH}`,
      `unix:sha256:${NODE_SHA}`,
    ];
    expect(got).toEqual(expected);
    if (isRoot) expect(got).toEqual(expect.arrayContaining(['unix:uid:0', 'unix:user:root', 'unix:gid:0', 'unix:group:root']));
    await bye(c, child.exited);
  });

  it.runIf(isRoot)('child spawned as uid/gid 65534: told apart from root; entries match by subset', async () => {
    const root = startChild();
    const nobody = startChild({}, { uid: NOBODY, gid: NOBODY });
    const [rs, ns] = await Promise.all([root.self, nobody.self]);
    const [rc, nc] = await Promise.all([connOf(rs.pid), connOf(ns.pid)]);
    const attestor = createUnixAttestor({ accounts, discoverWorkloadPath: false, workloadSizeLimit: -1 });
    const [rsel, nsel] = await Promise.all([attestWorkload([attestor], rc.peer), attestWorkload([attestor], nc.peer)]);
    expect(keys(nsel)).toEqual(
      [
        `unix:gid:${NOBODY}`,
        ...(accounts.groupName(NOBODY) === undefined ? [] : [`unix:group:${accounts.groupName(NOBODY)}`]),
        `unix:uid:${NOBODY}`,
        ...(accounts.userName(NOBODY) === undefined ? [] : [`unix:user:${accounts.userName(NOBODY)}`]),
      ].sort(), // attestWorkload sorts by key; no supplementary groups (libuv setgroups(0) before setuid)
    );
    expect(keys(rsel)).toContain('unix:uid:0');
    expect(keys(rsel).some((k) => k.startsWith('unix:path:'))).toBe(false); // discoverWorkloadPath off

    const td = TrustDomain.parse('example.org');
    const mk = (id: string, selectors: string[]) => {
      const e = validateEntryInput({ id, spiffeId: `spiffe://example.org/w/${id}`, parentId: 'spiffe://example.org/edge/n1', selectors }, { trustDomain: td });
      return { ...e, id, createdAt: 0, revision: 1 };
    };
    const index = new EntryIndex([
      mk('nobody', [`unix:uid:${NOBODY}`]),
      mk('nobody-root-group', [`unix:uid:${NOBODY}`, 'unix:gid:0']), // nobody lacks gid 0: no match
      mk('root', ['unix:uid:0', 'unix:gid:0']),
      mk('nobody-path', [`unix:uid:${NOBODY}`, `unix:path:${NODE_PATH}`]), // path not attested: no match
    ]);
    expect(index.match(nsel).map((e) => e.id)).toEqual(['nobody']);
    expect(index.match(rsel).map((e) => e.id)).toEqual(['root']);
    await Promise.all([bye(rc, root.exited), bye(nc, nobody.exited)]);
  });

  it.runIf(isRoot)('supplementary groups (SO_PEERGROUPS) and their names', async () => {
    const child = startChild({ AT_GROUPS: '[4343,4242]', AT_GID: String(OTHER), AT_UID: String(OTHER) });
    const self = await child.self;
    const c = await connOf(self.pid);
    expect(c.peer.groups === undefined || c.peer.groups.join() === '4242,4343').toBe(true);
    const db = AccountDb.fromText(`svc:x:${OTHER}:${OTHER}::/:/bin/false\n`, `svc:x:${OTHER}:\nvideo:x:4242:\n`);
    const got = keys(await createUnixAttestor({ accounts: db, discoverWorkloadPath: false, workloadSizeLimit: -1 }).attest(c.peer));
    expect(got).toEqual([
      `unix:uid:${OTHER}`,
      'unix:user:svc',
      `unix:gid:${OTHER}`,
      'unix:group:svc',
      'unix:supplementary_gid:4242',
      'unix:supplementary_gid:4343',
      'unix:supplementary_group:video', // 4343 has no name: no selector
    ]);
    await bye(c, child.exited);
  });

  it.runIf(isRoot)('a caller that changes uid/gid after connecting gets no identity (credentials-changed)', async () => {
    const child = startChild();
    const self = await child.self;
    const c = await connOf(self.pid);
    const attestor = full();
    expect(keys(await attestor.attest(c.peer))).toContain('unix:uid:0');
    const ack = await command(c, { op: 'setuid', uid: NOBODY, gid: NOBODY });
    expect(ack.me).toMatchObject({ uid: NOBODY, gid: NOBODY });
    expect(c.peer.cred.uid).toBe(0); // SO_PEERCRED still says root ...
    const err = await failure(attestor.attest(c.peer)); // ... but the process is no longer root
    expect(err.code).toBe('workload-attestation/credentials-changed');
    expect(err.detail).toMatchObject({ pid: self.pid, attestor: 'unix' });
    // the combinator's own liveness check (with connect-time ids) also refuses it
    const viaCombinator = await failure(attestWorkload([{ name: 'none', attest: async () => [] }], c.peer));
    expect(viaCombinator.code).toBe('workload-attestation/process-gone');
    await bye(c, child.exited);
  });

  it.runIf(isRoot)('a caller that changes its supplementary groups after connecting gets no identity', async () => {
    const child = startChild({ AT_GROUPS: '[4242]' });
    const self = await child.self;
    const c = await connOf(self.pid);
    const attestor = createUnixAttestor({ accounts, discoverWorkloadPath: false, workloadSizeLimit: -1 });
    expect(keys(await attestor.attest(c.peer))).toContain('unix:supplementary_gid:4242');
    await command(c, { op: 'setgroups', groups: [0, 4242] }); // gains group 0 after connect
    expect((await failure(attestor.attest(c.peer))).code).toBe('workload-attestation/credentials-changed');
    await bye(c, child.exited);
  });

  it('a caller that exited before attestation is process-gone', async () => {
    const child = startChild();
    const self = await child.self;
    const c = await connOf(self.pid);
    const peer = c.peer;
    await bye(c, child.exited);
    const err = await failure(full().attest(peer));
    expect(err.code).toBe('workload-attestation/process-gone');
    expect((await failure(attestWorkload([full()], peer))).code).toBe('workload-attestation/process-gone');
  });

  it('PID-reuse defence: a caller that dies DURING evidence collection is caught by the final check', async () => {
    const child = startChild();
    const self = await child.self;
    const c = await connOf(self.pid);
    const real = c.peer.watch as ProcessLiveness;
    let calls = 0;
    // Kill the caller right after the first liveness check and wait (synchronously, so Node cannot reap it)
    // until it is a zombie: every later /proc read still succeeds, only the final check can notice.
    const killingWatch: ProcessLiveness = {
      isAlive(expected) {
        calls++;
        const ok = real.isAlive(expected);
        if (calls === 1) {
          process.kill(self.pid, 'SIGKILL');
          const end = Date.now() + 5000;
          while (readProcStat(self.pid).state !== 'Z') if (Date.now() > end) throw new Error('child did not die');
        }
        return ok;
      },
    };
    const caller: WorkloadCaller = { cred: c.peer.cred, groups: c.peer.groups, watch: killingWatch };
    const attestor = createUnixAttestor({ accounts, discoverWorkloadPath: false, workloadSizeLimit: -1 });
    const err = await failure(attestor.attest(caller));
    expect(err.code).toBe('workload-attestation/process-gone');
    expect(calls).toBe(2); // evidence was read in between; the second (final) check failed
    await child.exited;
  });

  it('discoverWorkloadPath variants: hash size limit, path only', async () => {
    const child = startChild();
    const self = await child.self;
    const c = await connOf(self.pid);
    const small = createUnixAttestor({ accounts, discoverWorkloadPath: true, workloadSizeLimit: 1024 });
    const err = await failure(small.attest(c.peer)); // SPIRE: a binary over workload_size_limit fails attestation
    expect(err.code).toBe('workload-attestation/failed');
    expect((err.cause as { code?: string }).code).toBe('peercred/too-large');
    const pathOnly = keys(await createUnixAttestor({ accounts, discoverWorkloadPath: true, workloadSizeLimit: -1 }).attest(c.peer));
    expect(pathOnly).toContain(`unix:path:${NODE_PATH}`);
    expect(pathOnly.some((k) => k.startsWith('unix:sha256:'))).toBe(false);
    const unlimited = keys(await createUnixAttestor({ accounts, discoverWorkloadPath: true, workloadSizeLimit: Infinity }).attest(c.peer));
    expect(unlimited).toContain(`unix:sha256:${NODE_SHA}`);
    await bye(c, child.exited);
  });

  it('fails closed without a process watch; refuses an ambiguous size limit of 0', async () => {
    const child = startChild();
    const self = await child.self;
    const c = await connOf(self.pid);
    const err = await failure(full().attest({ cred: c.peer.cred, groups: c.peer.groups, watch: undefined }));
    expect(err.code).toBe('workload-attestation/failed');
    expect(() => createUnixAttestor({ accounts, discoverWorkloadPath: true, workloadSizeLimit: 0 })).toThrow(RangeError);
    expect(() => createUnixAttestor({ accounts, discoverWorkloadPath: true, workloadSizeLimit: 1.5 })).toThrow(RangeError);
    // a forged caller (pid of a live process, uid it does not have) is refused
    const forged = await failure(full().attest({ ...c.peer, cred: { ...c.peer.cred, uid: 12345 } }));
    expect(['workload-attestation/credentials-changed', 'workload-attestation/process-gone']).toContain(forged.code);
    await bye(c, child.exited);
  });

  it('honours an aborted request', async () => {
    const child = startChild();
    const self = await child.self;
    const c = await connOf(self.pid);
    const ac = new AbortController();
    ac.abort();
    expect((await failure(full().attest(c.peer, ac.signal))).code).toBe('workload-attestation/aborted');
    await bye(c, child.exited);
  });
});
