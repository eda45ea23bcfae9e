/**
 * Joined edge, pure-ish parts: node-name defaulting (contract "Names"), the CSR builder, and the node SVID
 * renewal schedule driven by a ManualClock and fake timers (the Timers and NodeApiPort ports; spiffe.md 3
 * "Agent rotation": renew at about half-life with +-10 % jitter, new key each time, backoff when the
 * cloud is down, join_token nodes stop at expiry and log edge.node_svid_expired).
 */
import { describe, expect, it } from 'vitest';
import {
  backoffDelay,
  defaultNodeName,
  JoinError,
  NodeSvidManager,
  RENEW_BACKOFF_CAP_MS,
  CloudClientError,
  type NodeApiPort,
  type JoinRecord,
  type Timers,
} from '../../../src/edge/index.js';
import {
  buildCsr,
  bundleToJson,
  CaManager,
  generateP256,
  ManualClock,
  MemoryKeyStore,
  parseCertificate,
  TrustDomain,
  verifyCsr,
} from '../../../src/identity/index.js';
import { nodeSpiffeId } from '../../../src/attestation/index.js';
import { decodeEdgeToCloud, encodeNodeApiMessage, type CloudToEdgeMessage, type EdgeToCloudMessage } from '../../../src/protocol/index.js';
import { hostStateFiles } from '../../../src/cli/host/index.js';
import { tempDir } from '../../helpers/index.js';
import { readNodeState, writeNodeState } from '../../../src/edge/index.js';
import { FakeTimers } from '../../helpers/fake-timers.js';

function joinCode(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return e instanceof JoinError ? e.code : `not a JoinError: ${String(e)}`;
  }
  return 'no error';
}

describe('defaultNodeName (contract: --node, else x509pop CN, else the host name)', () => {
  it('takes --node first, then the certificate CN, then the lower-cased host name', () => {
    expect(defaultNodeName({ explicit: 'edge-7', x509popCn: 'cn-name', hostname: 'Host' })).toBe('edge-7');
    expect(defaultNodeName({ x509popCn: 'cn-name', hostname: 'Host' })).toBe('cn-name');
    expect(defaultNodeName({ hostname: 'Edge-Box-01' })).toBe('edge-box-01');
  });
  it('asks for --node when the host name is not a node name', () => {
    expect(joinCode(() => defaultNodeName({ hostname: 'box.example.org' }))).toBe('join/node-name-required');
    expect(joinCode(() => defaultNodeName({ hostname: '-x' }))).toBe('join/node-name-required');
    expect(joinCode(() => defaultNodeName({ explicit: 'Bad_Name', hostname: 'ok' }))).toBe('join/bad-input');
  });
});

describe('buildCsr', () => {
  it('makes a PKCS#10 request that verifyCsr accepts and that carries exactly our key', () => {
    const k = generateP256();
    const v = verifyCsr(buildCsr(k));
    expect(v.spki.equals(k.spki)).toBe(true);
    // A flipped signature byte fails proof of possession.
    const bad = buildCsr(k);
    bad[bad.length - 3]! ^= 0x01;
    expect(() => verifyCsr(bad)).toThrow();
  });
});

describe('backoffDelay (full jitter, capped)', () => {
  it('stays within [0, min(cap, base*2^n)) and reaches the cap', () => {
    expect(backoffDelay(0, () => 0.999)).toBeLessThan(1000);
    expect(backoffDelay(3, () => 0.5)).toBe(4000);
    expect(backoffDelay(40, () => 0.999999)).toBeLessThan(RENEW_BACKOFF_CAP_MS);
    expect(backoffDelay(40, () => 0.999999)).toBeGreaterThan(RENEW_BACKOFF_CAP_MS - 1000);
    expect(backoffDelay(5, () => 0)).toBe(0);
  });
});

const TD = TrustDomain.parse('example.org');
const HOUR = 3_600_000;

async function rig(method: JoinRecord['method'] = 'join_token', opts: { setCredentialsThrows?: boolean } = {}) {
  const clock = new ManualClock(Date.UTC(2030, 0, 1));
  const timers = new FakeTimers(clock);
  const ca = new CaManager({ trustDomain: TD, caTtlMs: 24 * HOUR, maxX509SvidTtlMs: HOUR }, new MemoryKeyStore());
  ca.tick(clock.now());
  const dir = await tempDir('edgeward-node-svid-');
  const keys = hostStateFiles.openKeyStore(`${dir}/keys`);
  const id = nodeSpiffeId(TD, 'n1');
  const issue = (spki: Buffer) => [ca.issueX509Svid({ spiffeId: id, spki, ttlMs: HOUR, now: clock.now() }).der, ...ca.intermediates(clock.now())];
  const first = keys.generate('node');
  const chain = issue(first.spki);
  const { mkdirSync } = await import('node:fs');
  mkdirSync(`${dir}/node`, { recursive: true });
  writeNodeState(dir, { keyId: 'node', chainDer: chain, receivedAt: clock.now() }, ca.bundle(), hostStateFiles);
  const calls: EdgeToCloudMessage[] = [];
  let down = false;
  const api: NodeApiPort = {
    attest: () => Promise.reject(new Error('no attestation in this test')),
    async node(m) {
      const wire = decodeEdgeToCloud(encodeNodeApiMessage(m)); // what the cloud would receive
      calls.push(wire);
      if (down) throw new CloudClientError('cloud-client/unreachable', 'down');
      if (wire.kind !== 'renew.request') throw new Error('unexpected');
      const spki = verifyCsr(wire.csr).spki;
      return { v: 1, kind: 'renew.result', svidChainDer: issue(spki), bundle: bundleToJson(ca.bundle()) } as CloudToEdgeMessage;
    },
    setCredentials: () => {
      if (opts.setCredentialsThrows === true && calls.length > 0) throw new Error('fails after the new SVID was stored');
    },
    setBundle: () => {},
  };
  const logs: Array<Record<string, unknown>> = [];
  const logger = { debug: () => {}, info: (o: Record<string, unknown>) => logs.push(o), warn: (o: Record<string, unknown>) => logs.push(o), error: (o: Record<string, unknown>) => logs.push(o) };
  const record: JoinRecord = { v: 1, trustDomain: TD.name, nodeName: 'n1', cloud: '127.0.0.1:1', method, bundleDigest: 'sha256:' + '0'.repeat(64) };
  const mgr = new NodeSvidManager(
    { dataDir: dir, record, trustDomain: TD, files: hostStateFiles, keys, api, clock, timers, logger, random: () => 0.5 },
    readNodeState(dir),
    ca.bundle(),
  );
  return { clock, timers, mgr, calls, logs, keys, dir, setDown: (d: boolean) => (down = d) };
}

describe('NodeSvidManager renewal schedule', () => {
  it('renews at the jittered half-life with a new key, stores it, deletes the old key, and schedules the next', async () => {
    const { clock, timers, mgr, calls, keys, dir } = await rig();
    const start = clock.now();
    const firstSerial = mgr.serialHex;
    mgr.start();
    const due = mgr.dueAt();
    expect(timers.nextAt()).toBe(due);
    // About half of the 1 h lifetime, within +-10 % jitter (spiffe.md 3).
    expect(due - start).toBeGreaterThanOrEqual(0.45 * HOUR - 1000);
    expect(due - start).toBeLessThanOrEqual(0.55 * HOUR + 1000);
    expect(calls).toHaveLength(0);
    await timers.fireNext();
    expect(calls.map((c) => c.kind)).toEqual(['renew.request']);
    expect(mgr.serialHex).not.toBe(firstSerial);
    const st = readNodeState(dir);
    expect(st.keyId).toBe('node-1');
    expect(parseCertificate(st.chainDer[0]!).serialHex).toBe(mgr.serialHex);
    expect(keys.get('node')).toBeUndefined(); // the old key is gone once the new SVID is stored
    expect(keys.get('node-1')?.spki.equals(parseCertificate(st.chainDer[0]!).spki)).toBe(true);
    expect(timers.nextAt()).toBe(mgr.dueAt());
    expect(mgr.dueAt()).toBeGreaterThan(clock.now());
    mgr.close();
  });

  it('never deletes the key that state.json names, even when a step after storing the renewed SVID fails', async () => {
    const { timers, mgr, keys, dir, logs } = await rig('join_token', { setCredentialsThrows: true });
    mgr.start();
    await timers.fireNext();
    expect(logs.some((l) => l['event'] === 'edge.node_renew_failed')).toBe(true);
    const st = readNodeState(dir);
    expect(st.keyId).toBe('node-1'); // the renewed SVID was committed...
    expect(keys.get(st.keyId)?.spki.equals(parseCertificate(st.chainDer[0]!).spki)).toBe(true); // ...with its key
    mgr.close();
  });

  it('backs off (capped, jittered) while the cloud is down, never past the expiry, then renews', async () => {
    const { clock, timers, mgr, calls, setDown, logs } = await rig();
    mgr.start();
    setDown(true);
    const delays: number[] = [];
    for (let i = 0; i < 8; i++) {
      const before = clock.now();
      await timers.fireNext();
      delays.push(timers.nextAt()! - clock.now());
      expect(clock.now()).toBeGreaterThanOrEqual(before);
    }
    expect(calls.length).toBe(8);
    // random() = 0.5: half of 1 s, 2 s, 4 s, ... capped at half of 60 s.
    expect(delays.slice(0, 6)).toEqual([500, 1000, 2000, 4000, 8000, 16000]);
    expect(Math.max(...delays)).toBeLessThanOrEqual(RENEW_BACKOFF_CAP_MS / 2);
    expect(logs.filter((l) => l['event'] === 'edge.node_renew_failed')).toHaveLength(8);
    setDown(false);
    const serial = mgr.serialHex;
    await timers.fireNext();
    expect(mgr.serialHex).not.toBe(serial);
    expect(timers.nextAt()).toBe(mgr.dueAt());
    mgr.close();
  });

  it('a join_token node whose SVID expired logs edge.node_svid_expired once and stops trying', async () => {
    const { clock, timers, mgr, calls, setDown, logs } = await rig('join_token');
    mgr.start();
    setDown(true);
    while (timers.pending.size > 0 && clock.now() < mgr.notAfter + 1) await timers.fireNext();
    expect(mgr.expired()).toBe(true);
    const attempts = calls.length;
    expect(attempts).toBeGreaterThan(0);
    expect(timers.pending.size).toBe(0);
    expect(logs.filter((l) => l['event'] === 'edge.node_svid_expired')).toHaveLength(1);
    await mgr.renewNow();
    expect(calls.length).toBe(attempts); // nothing is sent with an expired SVID
    mgr.close();
  });
});
