/**
 * The hub protocol codec (src/protocol/hub): strict decoding on both sides, bounded frames, round trips.
 * Issue #5 "Channel": unknown versions and malformed frames get a clear protocol error, never a crash.
 */
import { describe, expect, it } from 'vitest';
import {
  decodeCloudToEdgeHub,
  decodeEdgeToCloudHub,
  encodeHubMessage,
  hubCloseByCode,
  hubErrorFrom,
  HubProtocolError,
  HUB_CLOSE_CODES,
  MAX_HUB_ACK_ITEMS,
  MAX_HUB_EDGE_FRAME_BYTES,
  MAX_HUB_CLOUD_FRAME_BYTES,
  type CloudToEdgeHubMessage,
  type EdgeToCloudHubMessage,
} from '../../../src/protocol/index.js';
import { EdgewardError } from '../../../src/identity/index.js';

const STORE = '0b7d2a55-1c1e-4f51-9a55-6f7a1f0f8c2e';

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(HubProtocolError);
    return (e as HubProtocolError).code;
  }
  throw new Error('expected a HubProtocolError');
}

describe('hub codec: round trips', () => {
  const edge: EdgeToCloudHubMessage[] = [
    { v: 1, kind: 'hello', storeId: STORE, agent: 'edgeward/0.1.0', outboxSeq: 0 },
    { v: 1, kind: 'hello', storeId: STORE, agent: 'edgeward/0.1.0', outboxSeq: 42 },
    { v: 1, kind: 'ack', items: [{ kind: 'ConfigMap', name: 'app', version: 3 }], inventory: true },
    { v: 1, kind: 'ack', items: [{ kind: 'ConfigMap', name: 'app', version: 3 }, { kind: 'Secret', name: 'db', version: 9, deleted: true }] },
    { v: 1, kind: 'status', entries: [{ seq: 1, kind: 'ConfigMap', name: 'app', phase: 'Stored', observedVersion: 3, at: 1 }, { seq: 2, kind: 'Node', name: 'edge-1', phase: 'Started', message: 'boot', at: 2 }] },
    // issue #6: a Device (NAMESPACE/NAME) with its reported twins as the detail
    { v: 1, kind: 'status', entries: [{ seq: 3, kind: 'Device', name: 'plant-a/t-1', phase: 'Online', observedVersion: 2, at: 3, detail: { twins: { t: { value: '1', at: 3 } }, lastSeen: 3 } }] },
  ];
  const cloud: CloudToEdgeHubMessage[] = [
    { v: 1, kind: 'welcome', node: 'edge-1', sessionId: 'abcdefghijklmnop', heartbeatMs: 10_000, resync: false },
    { v: 1, kind: 'put', resource: { kind: 'ConfigMap', name: 'app', version: 4, data: { data: { LOG: 'info' } } } },
    { v: 1, kind: 'put', resource: { kind: 'Workload', name: 'w.1', version: 5, data: { spec: { image: 'x', args: ['a', 1, true, null] } } } },
    { v: 1, kind: 'delete', resource: { kind: 'Secret', name: 'db' }, version: 7 },
    { v: 1, kind: 'synced', version: 0 },
    { v: 1, kind: 'synced', version: 12 },
    { v: 1, kind: 'status.ack', seq: 2 },
    { v: 1, kind: 'nudge', topic: 'entries' },
    { v: 1, kind: 'error', code: 'hub/protocol', message: 'bad frame' },
  ];
  it.each(edge.map((m) => [m.kind, m] as const))('edge -> cloud %s', (_k, m) => {
    const text = encodeHubMessage(m);
    expect(decodeEdgeToCloudHub(text)).toEqual(m);
    expect(decodeEdgeToCloudHub(Buffer.from(text))).toEqual(m);
  });
  it.each(cloud.map((m) => [m.kind, m] as const))('cloud -> edge %s', (_k, m) => {
    expect(decodeCloudToEdgeHub(encodeHubMessage(m))).toEqual(m);
  });
});

describe('hub codec: hostile frames', () => {
  it('refuses a kind the receiving side must not get', () => {
    expect(code(() => decodeEdgeToCloudHub(encodeHubMessage({ v: 1, kind: 'synced', version: 1 })))).toBe('hub/unexpected-kind');
    expect(code(() => decodeCloudToEdgeHub(encodeHubMessage({ v: 1, kind: 'hello', storeId: STORE, agent: 'a', outboxSeq: 0 })))).toBe('hub/unexpected-kind');
  });
  it('refuses unknown versions and kinds', () => {
    expect(code(() => decodeEdgeToCloudHub('{"v":2,"kind":"hello","storeId":"x","agent":"a"}'))).toBe('hub/unsupported-version');
    expect(code(() => decodeEdgeToCloudHub('{"kind":"hello"}'))).toBe('hub/unsupported-version');
    expect(code(() => decodeEdgeToCloudHub('{"v":1,"kind":"takeover"}'))).toBe('hub/unknown-kind');
    expect(code(() => decodeEdgeToCloudHub('{"v":1}'))).toBe('hub/unknown-kind');
  });
  it('refuses malformed JSON, non-objects, duplicate keys, a BOM and invalid UTF-8', () => {
    for (const t of ['', '{', '[]', '"hello"', 'null', '{"v":1,"v":1,"kind":"ack","items":[]}', '\ufeff{"v":1}']) {
      expect(code(() => decodeEdgeToCloudHub(t))).toBe('hub/malformed');
    }
    expect(code(() => decodeEdgeToCloudHub(Buffer.from([0x7b, 0xff, 0x7d])))).toBe('hub/malformed');
  });
  it('refuses frames over the side limit before parsing them', () => {
    const big = `{"v":1,"kind":"hello","storeId":"${'x'.repeat(MAX_HUB_EDGE_FRAME_BYTES)}","agent":"a"}`;
    expect(code(() => decodeEdgeToCloudHub(big))).toBe('hub/too-large');
    expect(code(() => decodeEdgeToCloudHub(Buffer.alloc(MAX_HUB_EDGE_FRAME_BYTES + 1, 0x20)))).toBe('hub/too-large');
    expect(code(() => decodeCloudToEdgeHub(' '.repeat(MAX_HUB_CLOUD_FRAME_BYTES + 1)))).toBe('hub/too-large');
  });
  it('refuses unknown and missing members', () => {
    expect(code(() => decodeEdgeToCloudHub(`{"v":1,"kind":"hello","storeId":"${STORE}","agent":"a","outboxSeq":0,"node":"edge-2"}`))).toBe('hub/unknown-field');
    expect(code(() => decodeEdgeToCloudHub(`{"v":1,"kind":"hello","storeId":"${STORE}"}`))).toBe('hub/missing-field');
    expect(code(() => decodeCloudToEdgeHub('{"v":1,"kind":"put","resource":{"kind":"ConfigMap","name":"a","version":1,"data":{},"node":"x"}}'))).toBe('hub/unknown-field');
  });
  it('refuses bad member values', () => {
    const bad = [
      `{"v":1,"kind":"hello","storeId":"not-a-uuid","agent":"a","outboxSeq":0}`,
      `{"v":1,"kind":"hello","storeId":"${STORE}","agent":"with space","outboxSeq":0}`,
      `{"v":1,"kind":"hello","storeId":"${STORE}","agent":"a","outboxSeq":-1}`,
      `{"v":1,"kind":"hello","storeId":"${STORE}","agent":"a","outboxSeq":1.5}`,
      '{"v":1,"kind":"ack","items":[{"kind":"ConfigMap","name":"a","version":1}],"inventory":false}',
      '{"v":1,"kind":"ack","items":[{"kind":"ConfigMap","name":"a","version":1,"deleted":true}],"inventory":true}',
      '{"v":1,"kind":"ack","items":[]}',
      '{"v":1,"kind":"ack","items":[{"kind":"Pod","name":"a","version":1}]}',
      '{"v":1,"kind":"ack","items":[{"kind":"ConfigMap","name":"A_B","version":1}]}',
      '{"v":1,"kind":"ack","items":[{"kind":"ConfigMap","name":"a","version":0}]}',
      '{"v":1,"kind":"ack","items":[{"kind":"ConfigMap","name":"a","version":1.5}]}',
      '{"v":1,"kind":"ack","items":[{"kind":"ConfigMap","name":"a","version":9007199254740993}]}',
      '{"v":1,"kind":"ack","items":[{"kind":"ConfigMap","name":"a","version":1,"deleted":false}]}',
      '{"v":1,"kind":"status","entries":[{"seq":2,"kind":"ConfigMap","name":"a","phase":"Stored","at":1},{"seq":2,"kind":"ConfigMap","name":"a","phase":"Stored","at":1}]}',
      '{"v":1,"kind":"status","entries":[{"seq":1,"kind":"ConfigMap","name":"a","phase":"stored","at":1}]}',
      '{"v":1,"kind":"status","entries":[{"seq":1,"kind":"Node","name":"-bad-","phase":"Up","at":1}]}',
      '{"v":1,"kind":"status","entries":[{"seq":1,"kind":"ConfigMap","name":"a","phase":"Up","at":-1}]}',
      '{"v":1,"kind":"status","entries":[{"seq":1,"kind":"Device","name":"a","phase":"Up","at":1}]}',
      '{"v":1,"kind":"status","entries":[{"seq":1,"kind":"ConfigMap","name":"ns/a","phase":"Up","at":1}]}',
      '{"v":1,"kind":"status","entries":[{"seq":1,"kind":"Device","name":"ns/a","phase":"Up","at":1,"detail":[]}]}',
      '{"v":1,"kind":"status","entries":[{"seq":1,"kind":"Device","name":"ns/a","phase":"Up","at":1,"detail":{"x":"' + 'y'.repeat(9000) + '"}}]}',
    ];
    for (const t of bad) expect([t, code(() => decodeEdgeToCloudHub(t))]).toEqual([t, 'hub/bad-field']);
    const items = Array.from({ length: MAX_HUB_ACK_ITEMS + 1 }, () => ({ kind: 'ConfigMap', name: 'a', version: 1 }));
    expect(code(() => decodeEdgeToCloudHub(JSON.stringify({ v: 1, kind: 'ack', items })))).toBe('hub/bad-field');
  });
  it('checks put data with the resource rules', () => {
    expect(code(() => decodeCloudToEdgeHub('{"v":1,"kind":"put","resource":{"kind":"ConfigMap","name":"a","version":1,"data":{"data":{"k":1}}}}'))).toBe('hub/bad-field');
    expect(code(() => decodeCloudToEdgeHub('{"v":1,"kind":"put","resource":{"kind":"Secret","name":"a","version":1,"data":{"data":{"k":"not base64!"}}}}'))).toBe('hub/bad-field');
    expect(code(() => decodeCloudToEdgeHub('{"v":1,"kind":"put","resource":{"kind":"ConfigMap","name":"a","version":1,"data":[]}}'))).toBe('hub/bad-field');
  });
  it('refuses to encode what the peer would refuse', () => {
    expect(code(() => encodeHubMessage({ v: 1, kind: 'ack', items: [] }))).toBe('hub/bad-field');
  });
});

describe('hub close codes and errors', () => {
  it('has one entry per code, all application codes in 4000-4999 (RFC 6455 7.4.2)', () => {
    const codes = Object.values(HUB_CLOSE_CODES).map((c) => c.code);
    expect(new Set(codes).size).toBe(codes.length);
    for (const c of codes) expect(c === 1000 || c === 1001 || c === 1009 || (c >= 4000 && c <= 4999)).toBe(true);
    expect(hubCloseByCode(4403)?.name).toBe('hub/banned');
    expect(hubCloseByCode(1006)).toBeUndefined();
  });
  it('sends an EdgewardError code and never a cause', () => {
    const e = new HubProtocolError('hub/malformed', 'bad', { cause: new Error('secret detail') });
    expect(hubErrorFrom(e)).toEqual({ v: 1, kind: 'error', code: 'hub/malformed', message: 'bad' });
    expect(hubErrorFrom(new Error('boom'))).toEqual({ v: 1, kind: 'error', code: 'hub/internal', message: 'internal error' });
    class Weird extends EdgewardError<string> {}
    expect(hubErrorFrom(new Weird('NOT A CODE', 'x')).code).toBe('hub/internal');
  });
});
