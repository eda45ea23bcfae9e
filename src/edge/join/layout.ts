/**
 * The joined edge's data dir (contract "Edge data dir layout after edge join"):
 *
 *   DIR/join.json        0600  {v:1, trustDomain, nodeName, cloud, method, bundleDigest, x509pop?, tpm?}
 *                              written LAST by `edge join`: a half-done join is not a join.
 *   DIR/keys/            0700  node keys (StateFiles key store: `node`, then `node-<n>` per renewal),
 *                              cache.key (32 random bytes, 0600) for the SVID cache
 *   DIR/node/            0700  state.json (0600: current key id + node SVID chain, one atomic write, so a
 *                              crash between files cannot pair a key with another key's certificate),
 *                              svid.pem (0644, the same chain for operators), bundle.json (0644)
 *   DIR/cache.db         0600  encrypted-at-rest cache (src/edge/joined/cache.ts)
 *   DIR/public/api.sock        Workload API;  DIR/admin/admin.sock  admin socket
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import {
  bundleToJson,
  certToPem,
  parseBundleJson,
  parseStrictJson,
  TrustDomain,
  type StateFiles,
  type TrustBundle,
} from '../../identity/index.js';
import { isNodeName } from '../../attestation/index.js';
import { JoinError } from '../cloud-client/errors.js';
import { parseBundleDigest, parseCloudAddress } from '../cloud-client/client.js';
import { parseTpmTcti } from '../tpm/tcti.js';

export type JoinMethod = 'join_token' | 'x509pop' | 'tpm';

export interface JoinRecord {
  v: 1;
  trustDomain: string;
  nodeName: string;
  cloud: string;
  method: JoinMethod;
  bundleDigest: string;
  x509pop?: { cert: string; key: string };
  tpm?: string;
}

export interface NodeState {
  keyId: string;
  chainDer: Buffer[];
  /** When the edge received this SVID (epoch ms): rotation is measured from here (see svid-cache.ts). */
  receivedAt: number;
}

export const JOIN_FILE = 'join.json';
const MAX_STATE_FILE = 256 * 1024;

export const layout = (dir: string) => ({
  joinFile: join(dir, JOIN_FILE),
  keysDir: join(dir, 'keys'),
  cacheKey: join(dir, 'keys', 'cache.key'),
  nodeDir: join(dir, 'node'),
  stateFile: join(dir, 'node', 'state.json'),
  svidPem: join(dir, 'node', 'svid.pem'),
  bundleFile: join(dir, 'node', 'bundle.json'),
  cacheDb: join(dir, 'cache.db'),
  /** The hub's sealed store (state.db) and its sealed data key (src/edge/hub). */
  hubDir: join(dir, 'hub'),
});

/** Read a small regular file without following a symlink. Undefined when it does not exist. */
export function readSmallFile(path: string, max = MAX_STATE_FILE, opts: { requirePrivate?: boolean } = {}): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new JoinError('join/not-joined', `cannot open ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'}; symlinks are refused)`, { cause: e });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > max) throw new JoinError('join/not-joined', `${path} is not a regular file of at most ${max} bytes`);
    // Checked on the descriptor that is read (no window between the check and the read).
    if (opts.requirePrivate === true && (st.mode & 0o077) !== 0) throw new JoinError('join/not-joined', `${path} is accessible by other users`);
    return readOpenFile(fd, st.size);
  } finally {
    closeSync(fd);
  }
}

/** Read `size` bytes (fewer if the file shrank) of an open file from its start. */
export function readOpenFile(fd: number, size: number): Buffer {
  const buf = Buffer.alloc(size);
  let off = 0;
  while (off < buf.length) {
    const n = readSync(fd, buf, off, buf.length - off, off);
    if (n === 0) break;
    off += n;
  }
  return buf.subarray(0, off);
}

export function hasJoin(dir: string): boolean {
  try {
    lstatSync(join(dir, JOIN_FILE));
    return true;
  } catch {
    return false;
  }
}

function obj(x: unknown): Record<string, unknown> | undefined {
  return typeof x === 'object' && x !== null && !Array.isArray(x) ? (x as Record<string, unknown>) : undefined;
}

/** Read and check DIR/join.json. */
export function readJoinRecord(dir: string): JoinRecord {
  const raw = readSmallFile(layout(dir).joinFile, 16 * 1024);
  if (raw === undefined) throw new JoinError('join/not-joined', `${dir} holds no join (run edgeward edge join first, or use --standalone)`);
  let v: unknown;
  try {
    v = parseStrictJson(raw.toString('utf8'), { maxDepth: 4 });
  } catch (e) {
    throw new JoinError('join/not-joined', `${layout(dir).joinFile} is not valid JSON`, { cause: e });
  }
  const o = obj(v);
  const bad = (what: string): never => {
    throw new JoinError('join/not-joined', `${layout(dir).joinFile}: ${what}`);
  };
  if (o === undefined || o['v'] !== 1) return bad('not a version 1 join record');
  const s = (k: string): string => (typeof o[k] === 'string' ? (o[k] as string) : bad(`${k} must be a string`));
  const trustDomain = s('trustDomain');
  try {
    TrustDomain.parse(trustDomain);
  } catch {
    bad('trustDomain is not a trust domain');
  }
  const nodeName = s('nodeName');
  if (!isNodeName(nodeName)) bad('nodeName is not a node name');
  const method = s('method');
  if (method !== 'join_token' && method !== 'x509pop' && method !== 'tpm') bad('unknown method');
  const valid = (what: string, check: () => unknown): void => {
    try {
      check();
    } catch {
      bad(what);
    }
  };
  const cloud = s('cloud');
  valid('cloud is not HOST:PORT', () => parseCloudAddress(cloud));
  const bundleDigest = s('bundleDigest');
  valid('bundleDigest is not sha256:HEX', () => parseBundleDigest(bundleDigest));
  const rec: JoinRecord = { v: 1, trustDomain, nodeName, cloud, method: method as JoinMethod, bundleDigest };
  if (method === 'x509pop') {
    const x = obj(o['x509pop']);
    if (x === undefined || typeof x['cert'] !== 'string' || typeof x['key'] !== 'string' || !isAbsolute(x['cert']) || !isAbsolute(x['key'])) {
      bad('x509pop needs absolute cert and key paths');
    }
    rec.x509pop = { cert: x!['cert'] as string, key: x!['key'] as string };
  }
  if (method === 'tpm') {
    const tcti = s('tpm');
    valid('tpm is not a TPM address (swtpm:host=...,port=... or device:/dev/...)', () => parseTpmTcti(tcti));
    rec.tpm = tcti;
  }
  return rec;
}

export function writeJoinRecord(dir: string, rec: JoinRecord, files: StateFiles): void {
  files.writeFileAtomic(layout(dir).joinFile, JSON.stringify(rec, null, 2) + '\n', 0o600);
}

/** Read node/state.json (key id + chain). */
export function readNodeState(dir: string): NodeState {
  const raw = readSmallFile(layout(dir).stateFile);
  if (raw === undefined) throw new JoinError('join/not-joined', 'the node SVID state is missing (join again with --force)');
  try {
    const o = obj(parseStrictJson(raw.toString('utf8'), { maxDepth: 4 }));
    if (o === undefined || o['v'] !== 1 || typeof o['keyId'] !== 'string' || !Array.isArray(o['chain']) || typeof o['receivedAt'] !== 'number') {
      throw new Error('bad shape');
    }
    const chainDer = (o['chain'] as unknown[]).map((c) => {
      if (typeof c !== 'string') throw new Error('bad chain');
      return Buffer.from(c, 'base64');
    });
    if (chainDer.length === 0) throw new Error('empty chain');
    return { keyId: o['keyId'], chainDer, receivedAt: o['receivedAt'] };
  } catch (e) {
    throw new JoinError('join/not-joined', `${layout(dir).stateFile} is corrupt (join again with --force)`, { cause: e });
  }
}

/** Persist the node SVID: state.json (authoritative, atomic), then svid.pem and bundle.json copies. */
export function writeNodeState(dir: string, st: NodeState, bundle: TrustBundle, files: StateFiles): void {
  const l = layout(dir);
  files.writeFileAtomic(l.stateFile, JSON.stringify({ v: 1, keyId: st.keyId, chain: st.chainDer.map((d) => d.toString('base64')), receivedAt: st.receivedAt }) + '\n', 0o600);
  files.writeFileAtomic(l.bundleFile, bundleToJson(bundle) + '\n', 0o644);
  files.writeFileAtomic(l.svidPem, st.chainDer.map((d) => certToPem(d)).join(''), 0o644);
}

export function readNodeBundle(dir: string, td: TrustDomain): TrustBundle {
  const raw = readSmallFile(layout(dir).bundleFile, 1024 * 1024);
  if (raw === undefined) throw new JoinError('join/not-joined', 'the trust bundle is missing (join again with --force)');
  try {
    return parseBundleJson(td, raw.toString('utf8').trim());
  } catch (e) {
    throw new JoinError('join/not-joined', `${layout(dir).bundleFile} is not a valid bundle`, { cause: e });
  }
}

/** The key id after `current`: node -> node-1 -> node-2 ... (skipping ids that exist). */
export function nextKeyId(current: string | undefined, exists: (id: string) => boolean): string {
  let n = current === undefined ? -1 : current === 'node' ? 0 : Number(/^node-([0-9]+)$/.exec(current)?.[1] ?? '0');
  for (;;) {
    const id = n < 0 ? 'node' : `node-${n + 1}`;
    if (!exists(id)) return id;
    n = n < 0 ? 0 : n + 1;
  }
}
