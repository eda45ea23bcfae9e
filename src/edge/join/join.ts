/**
 * `edgeward edge join`: pin the cloud's bundle by digest (no trust on first use), make the node key in
 * the node's own key store (it never leaves the node: only a CSR does), attest, check the node SVID, and
 * write the data dir with join.json last.
 */
import { lstatSync, mkdirSync, chmodSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseCertificate, type Clock, type SpiffeId, type StateFiles } from '../../identity/index.js';
import { isNodeName, nodeSpiffeId } from '../../attestation/index.js';
import { CloudClient, parseBundleDigest, parseCloudAddress } from '../cloud-client/client.js';
import { JoinError } from '../cloud-client/errors.js';
import { attestNode, loadX509PopEvidence, type NodeEvidence } from './attest.js';
import { hasJoin, layout, nextKeyId, readNodeState, writeJoinRecord, writeNodeState, type JoinMethod, type JoinRecord } from './layout.js';

export interface JoinInput {
  cloud: string;
  bundleDigest: string;
  dataDir: string;
  token?: string | undefined;
  /** `--node`; else the x509pop certificate's CN; else the host name. */
  nodeName?: string | undefined;
  x509popCert?: string | undefined;
  x509popKey?: string | undefined;
  tpm?: string | undefined;
  force?: boolean;
}

export interface JoinDeps {
  files: StateFiles;
  clock: Clock;
  /** os.hostname() in production. */
  hostname: () => string;
  timeoutMs?: number;
}

export interface JoinResult {
  spiffeId: SpiffeId;
  nodeName: string;
  method: JoinMethod;
  notAfter: number;
  dataDir: string;
}

/**
 * The node name a join claims (contract): `--node` if given; else the x509pop certificate's CN; else the
 * host name in lower case, which must be a valid node name (else `join/node-name-required`).
 */
export function defaultNodeName(o: { explicit?: string | undefined; x509popCn?: string | undefined; hostname: string }): string {
  if (o.explicit !== undefined) {
    if (!isNodeName(o.explicit)) throw new JoinError('join/bad-input', '--node must be 1-63 characters of [a-z0-9-], not starting or ending with "-"');
    return o.explicit;
  }
  if (o.x509popCn !== undefined) {
    // The cloud takes the node name from the same CN (x509pop); refuse early, before any network call.
    if (!isNodeName(o.x509popCn)) {
      throw new JoinError('join/node-name-required', `the x509pop certificate's CN ${JSON.stringify(o.x509popCn.slice(0, 80))} is not a valid node name; give one with --node NAME`);
    }
    return o.x509popCn;
  }
  const h = o.hostname.toLowerCase();
  if (!isNodeName(h)) {
    throw new JoinError('join/node-name-required', `the host name ${JSON.stringify(o.hostname.slice(0, 80))} is not a valid node name; give one with --node NAME`);
  }
  return h;
}

function ensureDir(path: string, mode: number): void {
  mkdirSync(path, { recursive: true, mode });
  const st = lstatSync(path);
  if (!st.isDirectory()) throw new JoinError('join/bad-input', `${path} is not a directory (symlinks are refused)`);
  chmodSync(path, mode);
}

export async function joinCloud(input: JoinInput, deps: JoinDeps): Promise<JoinResult> {
  const dataDir = resolve(input.dataDir);
  const address = parseCloudAddress(input.cloud);
  const pinned = parseBundleDigest(input.bundleDigest);
  const methods = [input.token !== undefined, input.x509popCert !== undefined || input.x509popKey !== undefined, input.tpm !== undefined].filter(Boolean).length;
  if (methods !== 1) throw new JoinError('join/bad-input', 'give exactly one of --token, --x509pop-cert/--x509pop-key, --tpm');
  if ((input.x509popCert === undefined) !== (input.x509popKey === undefined)) throw new JoinError('join/bad-input', '--x509pop-cert and --x509pop-key go together');

  let evidence: NodeEvidence;
  let x509popCn: string | undefined;
  let record: Pick<JoinRecord, 'method' | 'x509pop' | 'tpm'>;
  if (input.token !== undefined) {
    evidence = { method: 'join_token', token: input.token };
    record = { method: 'join_token' };
  } else if (input.tpm !== undefined) {
    evidence = { method: 'tpm', tcti: input.tpm };
    record = { method: 'tpm', tpm: input.tpm };
  } else {
    const cert = resolve(input.x509popCert!);
    const key = resolve(input.x509popKey!);
    const x = loadX509PopEvidence(cert, key);
    x509popCn = x.nodeName;
    evidence = { method: 'x509pop', chainDer: x.chainDer, privateKey: x.privateKey };
    record = { method: 'x509pop', x509pop: { cert, key } };
  }
  const nodeName = defaultNodeName({ explicit: input.nodeName, x509popCn, hostname: deps.hostname() });

  if (hasJoin(dataDir) && input.force !== true) {
    throw new JoinError('join/already-joined', `${dataDir} already holds a join; use --force to replace it (evict the old node on the cloud first)`);
  }
  const client = new CloudClient({ address, clock: deps.clock, ...(deps.timeoutMs === undefined ? {} : { timeoutMs: deps.timeoutMs }) });
  try {
    // 1. Pin: nothing else is sent before the bundle matched the digest.
    const bundle = await client.fetchBundle(pinned);
    const td = bundle.trustDomain;
    nodeSpiffeId(td, nodeName);

    // 2. The data dir: traversable (workloads reach public/api.sock), secrets below it 0700/0600.
    ensureDir(dataDir, 0o755);
    const l = layout(dataDir);
    let oldKeyId: string | undefined;
    if (hasJoin(dataDir)) {
      try {
        oldKeyId = readNodeState(dataDir).keyId;
      } catch {
        oldKeyId = undefined;
      }
      rmSync(l.joinFile, { force: true }); // from here on the dir holds no join until the new one is complete
    }
    ensureDir(l.nodeDir, 0o700);
    const keys = deps.files.openKeyStore(l.keysDir);
    const keyId = nextKeyId(undefined, (id) => keys.get(id) !== undefined);
    const signer = keys.generate(keyId);
    let attested;
    try {
      attested = await attestNode(client, evidence, nodeName, signer, td, deps.clock);
    } catch (e) {
      keys.delete(keyId);
      throw e;
    }
    const leaf = parseCertificate(attested.chainDer[0]!);
    writeNodeState(dataDir, { keyId, chainDer: attested.chainDer, receivedAt: Math.min(deps.clock.now(), leaf.notAfter) }, attested.bundle, deps.files);
    if (oldKeyId !== undefined && oldKeyId !== keyId) keys.delete(oldKeyId);
    // A previous identity's cache (entries, workload keys) does not belong to this join.
    for (const suffix of ['', '-wal', '-shm']) rmSync(l.cacheDb + suffix, { force: true });
    // Nor does the hub's store: its resources were another node's (or another cloud's), with versions the
    // cloud of this join never wrote; the new node starts with an empty store and receives what it is assigned.
    rmSync(l.hubDir, { recursive: true, force: true });
    writeJoinRecord(dataDir, { v: 1, trustDomain: td.name, nodeName, cloud: address.text, ...record, bundleDigest: pinned }, deps.files);
    return { spiffeId: nodeSpiffeId(td, nodeName), nodeName, method: record.method, notAfter: leaf.notAfter, dataDir };
  } finally {
    client.close();
  }
}
