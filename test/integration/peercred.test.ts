/**
 * Proof that Unix-socket peer identity comes from the kernel and survives the trip into grpc-js handlers.
 *
 * SPIRE "Workload attestation (unix)" (reference §3): SO_PEERCRED on the accepted UDS connection, /proc/<pid>
 * starttime recorded immediately and re-checked after attestation (PID-reuse defence); selectors uid, user,
 * gid, group, supplementary_gid, path, sha256. Conformance §5 item 12: two callers with different uids must
 * be told apart; a caller that exits before attestation finishes must not be served.
 *
 * Real processes: children are spawned as root and as other uids/gids (CI runs as root; the uid-switching
 * cases are skipped, not faked, when run unprivileged).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { release, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AccountDb,
  attachUnixPeerServer,
  loadPeerCredAddon,
  parseGroup,
  parsePasswd,
  parsePidfdInfo,
  parseProcStat,
  parseProcStatus,
  peerCredAddon,
  peerCredOf,
  PeerCredError,
  ProcWatch,
  procStillSame,
  readExePath,
  readProcStart,
  readProcStat,
  readProcStatus,
  sha256OfExe,
  UnixPeerRegistry,
  type UnixPeer,
} from '../../src/edge/peercred/index.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const isLinux = process.platform === 'linux';
const isRoot = process.getuid?.() === 0;
const NOBODY = 65534;

function kernelAtLeast(major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release());
  if (m === null) return false;
  const [a, b] = [Number(m[1]), Number(m[2])];
  return a > major || (a === major && b >= minor);
}
const OTHER = 65533;

// ---------------------------------------------------------------------------------------------------------
// Child-process scripts (plain ESM so they run under any uid without a TS loader).

/** Raw-socket client: optionally changes identity, connects, sends a lying payload, prints what the server saw. */
const RAW_CLIENT = `
import net from 'node:net';
const [sock, mode] = process.argv.slice(2);
if (process.env.PC_GROUPS) process.setgroups(JSON.parse(process.env.PC_GROUPS));
if (process.env.PC_GID) process.setgid(Number(process.env.PC_GID));
if (process.env.PC_UID) process.setuid(Number(process.env.PC_UID));
if (process.env.PC_TITLE) process.title = process.env.PC_TITLE;
const claim = JSON.parse(process.env.PC_CLAIM ?? '{}');
const s = net.connect(sock);
let buf = '';
s.setEncoding('utf8');
s.on('connect', () => s.write(JSON.stringify(claim) + '\\n'));
s.on('data', (d) => {
  buf += d;
  let i;
  while ((i = buf.indexOf('\\n')) >= 0) {
    const msg = JSON.parse(buf.slice(0, i));
    buf = buf.slice(i + 1);
    if (msg.type === 'cred') {
      const self = { pid: process.pid, uid: process.getuid(), gid: process.getgid(), groups: process.getgroups() };
      process.stdout.write(JSON.stringify({ self, server: msg }) + '\\n');
      if (mode !== 'wait') s.end();
    } else if (msg.type === 'bye') {
      s.end();
    }
  }
});
s.on('close', () => process.exit(0));
s.on('error', (e) => { console.error(String(e)); process.exit(2); });
`;

/** gRPC client: N concurrent unary calls spread over M separate connections (channels). */
const GRPC_CLIENT = `
import { createRequire } from 'node:module';
const [root, sock, nCalls, nChannels] = process.argv.slice(2);
const grpc = createRequire(root + '/package.json')('@grpc/grpc-js');
const id = (b) => b;
const svc = { whoAmI: { path: '/edgeward.test.PeerProbe/WhoAmI', requestStream: false, responseStream: false,
  requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id } };
const Client = grpc.makeGenericClientConstructor(svc, 'PeerProbe');
const clients = Array.from({ length: Number(nChannels) }, () =>
  new Client('unix://' + sock, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }));
const calls = [];
for (let i = 0; i < Number(nCalls); i++) {
  const c = clients[i % clients.length];
  calls.push(new Promise((res, rej) => c.whoAmI(Buffer.from(String(i)), (err, r) => err ? rej(err) : res(JSON.parse(r.toString())))));
}
const self = { pid: process.pid, uid: process.getuid(), gid: process.getgid() };
try {
  const results = await Promise.all(calls);
  process.stdout.write(JSON.stringify({ self, results }) + '\\n');
} catch (e) {
  process.stdout.write(JSON.stringify({ self, error: String(e) }) + '\\n');
}
for (const c of clients) c.close();
`;

interface Child {
  proc: ChildProcess;
  firstLine: Promise<unknown>;
  exited: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

function startChild(script: string, args: string[], opts: { uid?: number; gid?: number; env?: Record<string, string> } = {}): Child {
  const proc = spawn(process.execPath, [script, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...opts.env },
    ...(opts.uid === undefined ? {} : { uid: opts.uid }),
    ...(opts.gid === undefined ? {} : { gid: opts.gid }),
  });
  let stdout = '';
  let stderr = '';
  let resolveLine: (v: unknown) => void = () => {};
  let rejectLine: (e: Error) => void = () => {};
  const firstLine = new Promise<unknown>((res, rej) => {
    resolveLine = res;
    rejectLine = rej;
  });
  proc.stdout?.setEncoding('utf8');
  proc.stderr?.setEncoding('utf8');
  proc.stdout?.on('data', (d: string) => {
    stdout += d;
    const nl = stdout.indexOf('\n');
    if (nl >= 0) resolveLine(JSON.parse(stdout.slice(0, nl)));
  });
  proc.stderr?.on('data', (d: string) => {
    stderr += d;
  });
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((res) => {
    proc.on('exit', (code) => {
      rejectLine(new Error(`child exited (${String(code)}) before printing: ${stderr}`));
      res({ code, stdout, stderr });
    });
  });
  firstLine.catch(() => {});
  return { proc, firstLine, exited };
}

function listen(server: net.Server, path: string): Promise<void> {
  return new Promise((res, rej) => {
    server.once('error', rej);
    server.listen(path, () => {
      server.off('error', rej);
      chmodSync(path, 0o666); // other uids must be able to connect
      res();
    });
  });
}

function close(server: net.Server): Promise<void> {
  return new Promise((res) => server.close(() => res()));
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timeout');
    await new Promise((r) => setTimeout(r, 10));
  }
}

let dir = '';
let rawScript = '';
let grpcScript = '';

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'edgeward-peercred-'));
  chmodSync(dir, 0o755); // searchable by the unprivileged children (socket itself is 0666)
  rawScript = join(dir, 'raw-client.mjs');
  grpcScript = join(dir, 'grpc-client.mjs');
  writeFileSync(rawScript, RAW_CLIENT, { mode: 0o644 });
  writeFileSync(grpcScript, GRPC_CLIENT, { mode: 0o644 });
});

afterAll(() => {
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------------------

describe('peercred parsers (pure)', () => {
  it('parses /proc/<pid>/stat around a comm containing spaces and parentheses (lastIndexOf(")"))', () => {
    const tail = Array.from({ length: 49 }, (_, i) => String(i + 4)).join(' ');
    const fields = tail.split(' ');
    fields[18] = '987654321012'; // field 22 (starttime) = rest[19]; rest[0] is the state, so tail[18]
    const text = `4242 (a) b) (c d) S ${fields.join(' ')}\n`;
    const st = parseProcStat(text, 4242);
    expect(st).toMatchObject({ pid: 4242, comm: 'a) b) (c d', state: 'S', ppid: 4, starttime: 987654321012n });
    expect(() => parseProcStat(text, 4243)).toThrow(PeerCredError);
    expect(() => parseProcStat('4242 (x S 1 2 3')).toThrow(/malformed/);
    expect(() => parseProcStat('4242 (x) S 1 2 3\n')).toThrow(/too few fields/);
    expect(() => parseProcStat(`4242 (x) S ${fields.join(' ').replace('987654321012', '-1')}`)).toThrow(PeerCredError);
  });

  it('parses /proc/<pid>/status Uid/Gid/Groups strictly', () => {
    const text = 'Name:\tmy proc\nUmask:\t0022\nUid:\t1000\t1001\t1002\t1003\nGid:\t20\t21\t22\t23\nGroups:\t44 4 44 \n';
    const st = parseProcStatus(text);
    expect(st.name).toBe('my proc');
    expect(st.uid).toEqual({ real: 1000, effective: 1001, saved: 1002, fs: 1003 });
    expect(st.gid.effective).toBe(21);
    expect(st.groups).toEqual([4, 44]);
    expect(parseProcStatus('Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n').groups).toEqual([]);
    expect(() => parseProcStatus('Uid:\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\n')).toThrow(PeerCredError);
    expect(() => parseProcStatus('Uid:\t0\t0\t0\t0\nUid:\t1\t1\t1\t1\nGid:\t0\t0\t0\t0\nGroups:\n')).toThrow(/duplicate/);
    expect(() => parseProcStatus('Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n')).toThrow(/missing/);
    expect(() => parseProcStatus('Uid:\t-1\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\n')).toThrow(PeerCredError);
  });

  it('parses passwd/group defensively (first entry wins, junk skipped)', () => {
    const passwd = ['root:x:0:0:root:/root:/bin/bash', '# comment', '+nis::::::', 'bad line', 'dup:x:0:0::/:/bin/sh',
      'evil name:x:5:5::/:/bin/sh', 'big:x:99999999999:1::/:/bin/sh', 'alice:x:1000:1000:A,,,:/home/a:/bin/sh'].join('\n');
    const group = ['root:x:0:', 'staff:x:50:alice,bob', 'x:x:notnum:', 'staff2:x:50:'].join('\n');
    expect(parsePasswd(passwd).map((e) => e.name)).toEqual(['root', 'dup', 'alice']);
    expect(parseGroup(group)).toEqual([
      { name: 'root', gid: 0, members: [] },
      { name: 'staff', gid: 50, members: ['alice', 'bob'] },
      { name: 'staff2', gid: 50, members: [] },
    ]);
    const db = AccountDb.fromText(passwd, group);
    expect(db.userName(0)).toBe('root');
    expect(db.userName(1000)).toBe('alice');
    expect(db.userName(5)).toBeUndefined();
    expect(db.groupName(50)).toBe('staff');
  });

  it('parses pidfd fdinfo', () => {
    expect(parsePidfdInfo('pos:\t0\nflags:\t02000002\nPid:\t123\nNSpid:\t123\n')).toBe(123);
    expect(parsePidfdInfo('Pid:\t-1\n')).toBe(-1);
    expect(parsePidfdInfo('pos:\t0\n')).toBeUndefined();
  });

  it('a missing addon is a typed peercred/unavailable error', () => {
    try {
      loadPeerCredAddon(join(dir, 'nope.node'));
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(PeerCredError);
      expect((e as PeerCredError).code).toBe('peercred/unavailable');
    }
  });
});

describe.runIf(isLinux)('SO_PEERCRED on real processes', () => {
  const sock = (): string => join(dir, 'raw.sock');
  const registry = new UnixPeerRegistry();
  const seen = new Map<number, { peer: UnixPeer; socket: net.Socket; claim: unknown }>();
  const rejected: unknown[] = [];
  let server: net.Server;

  beforeAll(async () => {
    // Fails loudly (not skipped) if the addon was not built: run `node-gyp rebuild --directory native/peercred`.
    expect(peerCredAddon().platform).toBe('linux');
    server = net.createServer((socket) => {
      let peer: UnixPeer;
      try {
        peer = registry.register(socket); // synchronously, before reading anything from the peer
      } catch (e) {
        rejected.push(e);
        socket.destroy();
        return;
      }
      let buf = '';
      socket.setEncoding('utf8');
      socket.on('data', (d: string) => {
        buf += d;
        const nl = buf.indexOf('\n');
        if (nl < 0 || seen.has(peer.cred.pid)) return;
        const claim: unknown = JSON.parse(buf.slice(0, nl)); // what the child *says*; never trusted
        seen.set(peer.cred.pid, { peer, socket, claim });
        socket.write(JSON.stringify({ type: 'cred', ...peer.cred, groups: peer.groups, token: peer.token }) + '\n');
      });
      socket.on('error', () => {});
    });
    await listen(server, sock());
  });

  afterAll(async () => {
    await close(server);
  });

  it('exposes the fd of an accepted Unix socket via socket._handle.fd (libuv Pipe) and reads our own creds', async () => {
    const got = new Promise<{ fd: unknown; handle: string; cred: ReturnType<typeof peerCredOf> }>((res) => {
      const s = net.createServer((c) => {
        const handle = (c as unknown as { _handle: { fd: unknown; constructor: { name: string } } })._handle;
        res({ fd: handle.fd, handle: handle.constructor.name, cred: peerCredOf(c) });
        c.destroy();
        s.close();
      });
      const p = join(dir, 'self.sock');
      s.listen(p, () => net.connect(p).on('error', () => {}));
    });
    const { fd, handle, cred } = await got;
    expect(typeof fd).toBe('number');
    expect(fd as number).toBeGreaterThan(2);
    expect(handle).toBe('Pipe');
    expect(cred).toEqual({ pid: process.pid, uid: process.getuid?.(), gid: process.getgid?.() });
  });

  it('rejects non-Unix and destroyed sockets with typed errors', async () => {
    const err = await new Promise<unknown>((res) => {
      const s = net.createServer((c) => {
        try {
          peerCredOf(c);
          res(undefined);
        } catch (e) {
          res(e);
        }
        c.destroy();
        s.close();
      });
      s.listen(0, '127.0.0.1', () => net.connect((s.address() as net.AddressInfo).port, '127.0.0.1').on('error', () => {}));
    });
    expect(err).toBeInstanceOf(PeerCredError);
    expect((err as PeerCredError).code).toBe('peercred/bad-socket');
    const dead = new net.Socket();
    expect(() => peerCredOf(dead)).toThrow(expect.objectContaining({ code: 'peercred/bad-socket' }));
    expect(() => peerCredAddon().getPeerCred(0x7fff_fff0)).toThrow(expect.objectContaining({ code: 'EBADF', errno: 9 }));
  });

  it('identifies a same-uid child (root in CI) by its kernel pid/uid/gid', async () => {
    const c = startChild(rawScript, [sock()]);
    const out = (await c.firstLine) as { self: { pid: number; uid: number; gid: number }; server: Record<string, unknown> };
    expect((await c.exited).code).toBe(0);
    expect(out.self.pid).toBe(c.proc.pid);
    expect(out.server).toMatchObject({ pid: c.proc.pid, uid: process.getuid?.(), gid: process.getgid?.() });
  });

  it.runIf(isRoot)('identifies a child spawned as another uid/gid (65534)', async () => {
    const c = startChild(rawScript, [sock()], { uid: NOBODY, gid: NOBODY });
    const out = (await c.firstLine) as { self: { pid: number }; server: Record<string, unknown> };
    expect((await c.exited).code).toBe(0);
    expect(out.server).toMatchObject({ pid: c.proc.pid, uid: NOBODY, gid: NOBODY });
    expect(out.server['groups']).toEqual([]); // libuv setgroups(0) before setuid
  });

  it.runIf(isRoot)('a child lying about itself is still identified by the kernel values', async () => {
    const claim = { pid: 1, uid: 0, gid: 0, spiffeId: 'spiffe://example.org/admin' };
    const c = startChild(rawScript, [sock()], { uid: NOBODY, gid: NOBODY, env: { PC_CLAIM: JSON.stringify(claim) } });
    await c.firstLine;
    await c.exited;
    const rec = seen.get(c.proc.pid as number);
    expect(rec).toBeDefined();
    expect(rec?.claim).toEqual(claim); // the lie arrived ...
    expect(rec?.peer.cred).toEqual({ pid: c.proc.pid, uid: NOBODY, gid: NOBODY }); // ... and was ignored
  });

  it.runIf(isRoot)('SO_PEERGROUPS reports supplementary groups of a child that dropped privileges itself', async () => {
    const c = startChild(rawScript, [sock(), 'wait'], {
      env: { PC_GROUPS: '[4343,4242]', PC_GID: String(OTHER), PC_UID: String(OTHER), PC_TITLE: 'pc) (x y' },
    });
    const out = (await c.firstLine) as { self: { groups: number[] }; server: Record<string, unknown> };
    const pid = c.proc.pid as number;
    expect(out.server).toMatchObject({ pid, uid: OTHER, gid: OTHER });
    if (peerCredAddon().hasPeerGroups) expect(out.server['groups']).toEqual([4242, 4343]);
    // /proc helpers agree with the kernel socket view (unix attestor selectors: uid, gid, supplementary_gid)
    const status = readProcStatus(pid);
    expect(status.uid.effective).toBe(OTHER);
    expect(status.gid.effective).toBe(OTHER);
    expect(status.groups).toEqual([4242, 4343]);
    // comm with spaces and parentheses (process.title -> PR_SET_NAME) still parses
    const st = readProcStat(pid);
    expect(st.comm).toBe('pc) (x y');
    expect(st.starttime).toBe(readProcStart(pid));
    // path + sha256 selectors: the binary the child runs is this node
    expect(readExePath(pid)).toBe(realpathSync(process.execPath));
    const want = createHash('sha256').update(readFileSync(process.execPath)).digest('hex');
    expect(await sha256OfExe(pid, { sizeLimit: Infinity })).toBe(want);
    await expect(sha256OfExe(pid, { sizeLimit: 1024 })).rejects.toMatchObject({ code: 'peercred/too-large' });
    seen.get(pid)?.socket.write(JSON.stringify({ type: 'bye' }) + '\n');
    expect((await c.exited).code).toBe(0);
  });

  it('PID-reuse defence: starttime/liveness checks detect a process that exited', async () => {
    const c = startChild(rawScript, [sock(), 'wait']);
    await c.firstLine;
    const pid = c.proc.pid as number;
    const rec = seen.get(pid);
    expect(rec).toBeDefined();
    const { peer, socket } = rec as { peer: UnixPeer; socket: net.Socket };
    const watch = peer.watch as ProcWatch;
    expect(watch).toBeDefined();
    const { uid, gid } = peer.cred;
    const start = readProcStart(pid);
    expect(watch.starttime).toBe(start);
    // SO_PEERPIDFD (Linux >= 6.5) anchors the watch to the process that called connect()
    expect(watch.anchoredByPidfd).toBe(peerCredAddon().hasPeerPidfd && kernelAtLeast(6, 5));
    // alive and unchanged
    expect(procStillSame(pid, start, uid, gid)).toBe(true);
    expect(watch.isAlive({ uid, gid })).toBe(true);
    // a different process at the same pid (other starttime / other uid) is not the caller
    expect(procStillSame(pid, start + 1n, uid, gid)).toBe(false);
    expect(procStillSame(pid, start, uid + 1, gid)).toBe(false);
    expect(watch.isAlive({ uid: uid + 1, gid })).toBe(false);
    // the caller exits (and is reaped by Node before 'exit' fires)
    socket.write(JSON.stringify({ type: 'bye' }) + '\n');
    await c.exited;
    expect(procStillSame(pid, start, uid, gid)).toBe(false);
    expect(() => readProcStart(pid)).toThrow(expect.objectContaining({ code: 'peercred/proc-gone' }));
    // the watch may already be closed by the socket 'close'; either way it must say "not alive"
    expect(watch.isAlive()).toBe(false);
  });

  it('ProcWatch holds the original process: a pinned fd fails after exit even if the pid were reused', async () => {
    const c = startChild(rawScript, [sock(), 'wait']);
    await c.firstLine;
    const pid = c.proc.pid as number;
    const w = ProcWatch.open(pid); // independent of the registry's watch, so not closed by the socket
    try {
      expect(w.isAlive()).toBe(true);
      seen.get(pid)?.socket.write(JSON.stringify({ type: 'bye' }) + '\n');
      await c.exited;
      expect(w.isAlive()).toBe(false);
      expect(() => w.check()).toThrow(expect.objectContaining({ code: 'peercred/proc-gone' }));
    } finally {
      w.close();
    }
  });

  it('ProcWatch detects a changed starttime at the same pid (simulated reuse via a fake procfs)', () => {
    const fake = join(dir, 'fakeproc');
    mkdirSync(join(fake, '777'), { recursive: true });
    const tail = (start: string): string =>
      Array.from({ length: 49 }, (_, i) => (i === 18 ? start : String(i + 4))).join(' ');
    writeFileSync(join(fake, '777', 'stat'), `777 (victim) S ${tail('5000')}\n`);
    writeFileSync(join(fake, '777', 'status'), 'Name:\tvictim\nUid:\t10\t10\t10\t10\nGid:\t20\t20\t20\t20\nGroups:\t\n');
    const w = ProcWatch.open(777, { procRoot: fake });
    try {
      expect(w.starttime).toBe(5000n);
      expect(w.isAlive({ uid: 10, gid: 20 })).toBe(true);
      expect(procStillSame(777, 5000n, 10, 20, { procRoot: fake })).toBe(true);
      writeFileSync(join(fake, '777', 'stat'), `777 (impostor) S ${tail('6000')}\n`); // same inode, new content
      expect(w.isAlive({ uid: 10, gid: 20 })).toBe(false);
      expect(procStillSame(777, 5000n, 10, 20, { procRoot: fake })).toBe(false);
      writeFileSync(join(fake, '777', 'stat'), `777 (victim) Z ${tail('5000')}\n`);
      expect(w.isAlive()).toBe(false); // zombie = exited
    } finally {
      w.close();
    }
  });

  it('a caller that exits before its connection is processed is refused (fail closed)', async () => {
    const path = join(dir, 'early-exit.sock');
    const registry2 = new UnixPeerRegistry();
    const ns = net.createServer();
    const injected: unknown[] = [];
    const refused: PeerCredError[] = [];
    attachUnixPeerServer(ns, { injectConnection: (s) => injected.push(s) }, registry2, {
      onRejected: (e) => refused.push(e),
    });
    await listen(ns, path);
    // spawnSync blocks our event loop: the child's connect() completes in the listen backlog, the child
    // exits and is reaped, and only then do we accept the connection.
    const r = spawnSync(process.execPath, ['-e', `require('net').connect(${JSON.stringify(path)}).on('connect', () => process.exit(0))`]);
    expect(r.status).toBe(0);
    await waitFor(() => refused.length > 0);
    expect(['peercred/proc-gone', 'peercred/no-peer']).toContain(refused[0]?.code);
    expect(injected).toEqual([]);
    expect(registry2.size).toBe(0);
    await close(ns);
  });

  it('account names come from /etc/passwd and /etc/group', () => {
    const db = AccountDb.load();
    expect(db.userName(0)).toBe('root');
    expect(db.groupName(0)).toBe('root');
    expect(AccountDb.load({ passwdPath: join(dir, 'missing') }).userName(0)).toBeUndefined();
    expect(() => AccountDb.load({ maxBytes: 4 })).toThrow(expect.objectContaining({ code: 'peercred/too-large' }));
  });

  it('refused connections: none so far', () => {
    expect(rejected).toEqual([]);
  });
});

describe.runIf(isLinux)('grpc-js connection injection keeps per-connection identity', () => {
  const id = (b: Buffer): Buffer => b;
  const probe: grpc.ServiceDefinition = {
    whoAmI: {
      path: '/edgeward.test.PeerProbe/WhoAmI',
      requestStream: false,
      responseStream: false,
      requestSerialize: id,
      requestDeserialize: id,
      responseSerialize: id,
      responseDeserialize: id,
    },
  };

  it('without tagging, getPeer() of an injected Unix socket is "unknown" (why a mapping is needed)', async () => {
    const server = new grpc.Server();
    const peers: string[] = [];
    server.addService(probe, {
      whoAmI: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        peers.push(call.getPeer());
        cb(null, Buffer.from('{}'));
      },
    });
    const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    const path = join(dir, 'plain.sock');
    const ns = net.createServer((s) => injector.injectConnection(s));
    await listen(ns, path);
    const Client = grpc.makeGenericClientConstructor(probe, 'PeerProbe');
    const client = new Client(`unix://${path}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    await new Promise<void>((res, rej) =>
      (client as unknown as { whoAmI(b: Buffer, cb: (e: Error | null) => void): void }).whoAmI(Buffer.from('x'), (e) =>
        e ? rej(e) : res(),
      ),
    );
    client.close();
    injector.destroy();
    server.forceShutdown();
    await close(ns);
    expect(peers).toEqual(['unknown']);
  });

  it.runIf(isRoot)('concurrent clients with different uids are told apart in handlers', async () => {
    const registry = new UnixPeerRegistry();
    const server = new grpc.Server();
    let handled = 0;
    server.addService(probe, {
      whoAmI: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        let peer: UnixPeer;
        try {
          peer = registry.peerOf(call); // resolved synchronously at call start
        } catch (e) {
          cb({ code: grpc.status.UNAVAILABLE, details: String(e) });
          return;
        }
        handled++;
        // Random delay so calls from different connections interleave.
        setTimeout(() => {
          const alive = peer.watch?.isAlive({ uid: peer.cred.uid, gid: peer.cred.gid }) ?? false;
          cb(null, Buffer.from(JSON.stringify({ ...peer.cred, token: peer.token, getPeer: call.getPeer(), alive })));
        }, Math.floor(Math.random() * 20));
      },
    });
    const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    const path = join(dir, 'grpc.sock');
    const ns = net.createServer();
    const accepted: UnixPeer[] = [];
    const rejected: PeerCredError[] = [];
    const detach = attachUnixPeerServer(ns, injector, registry, {
      onAccepted: (p) => accepted.push(p),
      onRejected: (e) => rejected.push(e),
    });
    await listen(ns, path);

    const CALLS = 30;
    const CHANNELS = 3;
    const specs = [
      { uid: undefined, gid: undefined },
      { uid: NOBODY, gid: NOBODY },
      { uid: OTHER, gid: OTHER },
    ];
    const children = specs.map((s) =>
      startChild(grpcScript, [ROOT, path, String(CALLS), String(CHANNELS)], {
        ...(s.uid === undefined ? {} : { uid: s.uid, gid: s.gid }),
      }),
    );
    const outs = (await Promise.all(children.map((c) => c.firstLine))) as Array<{
      self: { pid: number; uid: number; gid: number };
      results?: Array<{ pid: number; uid: number; gid: number; token: string; getPeer: string; alive: boolean }>;
      error?: string;
    }>;
    await Promise.all(children.map((c) => c.exited));

    const tokensByChild: Set<string>[] = [];
    for (const [i, out] of outs.entries()) {
      expect(out.error).toBeUndefined();
      const results = out.results ?? [];
      expect(results).toHaveLength(CALLS);
      expect(out.self.pid).toBe(children[i]?.proc.pid);
      for (const r of results) {
        expect(r).toMatchObject({ pid: out.self.pid, uid: out.self.uid, gid: out.self.gid, alive: true });
        expect(r.getPeer).toBe(r.token);
      }
      tokensByChild.push(new Set(results.map((r) => r.token)));
    }
    expect(outs.map((o) => o.self.uid)).toEqual([0, NOBODY, OTHER]);
    // each child used CHANNELS separate connections, and no token is shared between children
    for (const t of tokensByChild) expect(t.size).toBe(CHANNELS);
    const all = tokensByChild.flatMap((t) => [...t]);
    expect(new Set(all).size).toBe(all.length);
    expect(handled).toBe(CALLS * specs.length);
    expect(accepted.length).toBe(CHANNELS * specs.length);
    expect(rejected).toEqual([]);

    // connections closed -> entries removed; an unknown call fails closed
    await waitFor(() => registry.size === 0);
    expect(accepted.every((p) => p.watch?.closed === true)).toBe(true); // no fd kept per closed connection
    expect(() => registry.peerOf({ getPeer: () => all[0] as string })).toThrow(
      expect.objectContaining({ code: 'peercred/unknown-call' }),
    );
    expect(() => registry.peerOf({ getPeer: () => 'unknown' })).toThrow(expect.objectContaining({ code: 'peercred/unknown-call' }));

    detach();
    injector.destroy();
    server.forceShutdown();
    await close(ns);
  });
});
