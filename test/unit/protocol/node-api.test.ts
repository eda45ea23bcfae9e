/**
 * The cloud <-> edge node API codec (issue #4): round trips of every kind, and hostile inputs, each refused
 * with one exact code. Bounds follow architecture.md 9 ("every read from a peer has a size limit"; the
 * KubeEdge 2022 audit found eight DoS bugs from unbounded input, kubeedge.md §7): 64 KiB per message, 8 KiB
 * per CSR (the CSR limit of the identity core), strict base64 (RFC 4648 4), strict JSON without duplicate
 * member names (RFC 8259 4 leaves duplicates undefined; we refuse them).
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  CLOUD_TO_EDGE_KINDS,
  decodeCloudToEdge,
  decodeEdgeToCloud,
  decodeNodeApiMessage,
  EDGE_TO_CLOUD_KINDS,
  encodeNodeApiMessage,
  matchNodeApiMessage,
  MAX_NODE_API_ENTRIES,
  MAX_NODE_API_MESSAGE_BYTES,
  MAX_NODE_API_RESULT_BYTES,
  NODE_API_ENTRY_ID_PATTERN,
  NODE_API_KINDS,
  NODE_API_METHODS,
  NODE_API_NODE_NAME_PATTERN,
  NodeApiError,
  nodeApiErrorFrom,
  type NodeApiErrorCode,
  type NodeApiHandlers,
  type NodeApiMessage,
  type NodeEntry,
} from '../../../src/protocol/index.js';
import { ENTRY_ID_PATTERN, JoinTokenError, NODE_ATTESTATION_METHODS, NODE_NAME_PATTERN } from '../../../src/attestation/index.js';

const CSR = Buffer.concat([Buffer.from([0x30, 0x82]), randomBytes(300)]);
const CERT = Buffer.concat([Buffer.from([0x30, 0x82]), randomBytes(500)]);
const SESSION = 'Qk3vX9_-a8s7d6f5g4h3j2';
const BUNDLE = '{"keys":[]}';

const samples: NodeApiMessage[] = [
  { v: 1, kind: 'attest.begin', method: 'x509pop', nodeName: 'edge-1', payload: { certificates: [CERT.toString('base64')], nested: { a: [1, null, true] } }, csr: CSR },
  { v: 1, kind: 'attest.begin', method: 'join_token', nodeName: 'edge-1', payload: { token: 'ewjt_x' }, csr: CSR },
  { v: 1, kind: 'attest.challenge', sessionId: SESSION, challenge: randomBytes(32) },
  { v: 1, kind: 'attest.response', sessionId: SESSION, response: randomBytes(104) },
  { v: 1, kind: 'attest.result', svidChainDer: [CERT, CERT], bundle: BUNDLE, reattestable: true },
  { v: 1, kind: 'renew.request', csr: CSR },
  { v: 1, kind: 'renew.result', svidChainDer: [CERT], bundle: BUNDLE },
  { v: 1, kind: 'svids.request', csrs: [{ entryId: 'e1', csr: CSR }, { entryId: 'web.prod_2', csr: CSR }] },
  { v: 1, kind: 'svids.result', svids: [{ entryId: 'e1', svidChainDer: [CERT] }] },
  { v: 1, kind: 'svids.result', svids: [] },
  { v: 1, kind: 'error', code: 'join-token/expired', message: 'join token has expired' },
];
const ENTRY: NodeEntry = {
  id: 'web',
  spiffeId: 'spiffe://example.org/ns/prod/sa/web',
  parentId: 'spiffe://example.org/edgeward/node/edge-1',
  selectors: ['unix:uid:1000', 'unix:user:web'],
  x509SvidTtlMs: 600_000,
  jwtSvidTtlMs: 60_000,
  dnsNames: ['web.example.org', '*.web.example.org'],
  hint: 'web ✓',
  revision: 7,
};
const JWT = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln';
/** The kinds added for the joined edge (entries and JWT-SVIDs), appended so the indexes above stay put. */
const newSamples: NodeApiMessage[] = [
  { v: 1, kind: 'entries.request' },
  { v: 1, kind: 'entries.result', entries: [ENTRY, { id: 'db', spiffeId: 'spiffe://example.org/db', parentId: 'spiffe://example.org/alias', selectors: ['k8s:ns:x'], revision: 0 }] },
  { v: 1, kind: 'entries.result', entries: [] },
  { v: 1, kind: 'jwt.request', entryId: 'web', audience: ['https://api.example.org', 'spiffe://example.org/db'] },
  { v: 1, kind: 'jwt.request', entryId: 'web', audience: ['a'], ttlMs: 60_000 },
  { v: 1, kind: 'jwt.result', token: JWT, expiresAt: 1_900_000_000_000 },
];
samples.push(...newSamples);
/** Devices (issue #6). */
samples.push(
  { v: 1, kind: 'device.enroll', csr: CSR, token: 'ewdt_abcdefghijklmnopqrstuvwxyz012345' },
  { v: 1, kind: 'device.enroll', device: 'plant-a/t-1', csr: CSR, factoryChainDer: [CERT, CERT] },
  { v: 1, kind: 'device.renew', device: 'default/t-2', csr: CSR, svidChainDer: [CERT] },
  { v: 1, kind: 'device.svid', device: 'default/t-2', svidChainDer: [CERT], expiresAt: 1_900_000_000_000 },
);

/** A valid wire object for each kind, to be mutated by the hostile cases. */
const wire = (kind: string): Record<string, unknown> => JSON.parse(encodeNodeApiMessage(samples.find((s) => s.kind === kind)!)) as Record<string, unknown>;
const text = (o: unknown): string => JSON.stringify(o);

function expectCode(input: string | Uint8Array, code: NodeApiErrorCode, decode = decodeNodeApiMessage): void {
  let err: unknown;
  try {
    decode(input);
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${code}`).toBeInstanceOf(NodeApiError);
  expect((err as NodeApiError).code).toBe(code);
}

describe('node API round trips', () => {
  it('every kind encodes to one JSON object and decodes to an equal message', () => {
    expect(new Set(samples.map((s) => s.kind))).toEqual(new Set(NODE_API_KINDS));
    for (const m of samples) {
      const t = encodeNodeApiMessage(m);
      expect(JSON.parse(t)).toMatchObject({ v: 1, kind: m.kind });
      expect(decodeNodeApiMessage(t)).toEqual(m);
      expect(decodeNodeApiMessage(Buffer.from(t))).toEqual(m); // bytes in, same result
    }
  });

  it('bytes are standard padded base64 on the wire', () => {
    const o = wire('attest.challenge');
    expect(o['challenge']).toMatch(/^[A-Za-z0-9+/]+=*$/);
    expect(Buffer.from(o['challenge'] as string, 'base64')).toEqual((samples[2] as { challenge: Buffer }).challenge);
  });

  it('direction: the cloud accepts only edge messages and the edge only cloud messages', () => {
    for (const m of samples) {
      const t = encodeNodeApiMessage(m);
      if ((EDGE_TO_CLOUD_KINDS as readonly string[]).includes(m.kind)) expect(decodeEdgeToCloud(t).kind).toBe(m.kind);
      else expectCode(t, 'node-api/unexpected-kind', decodeEdgeToCloud);
      if ((CLOUD_TO_EDGE_KINDS as readonly string[]).includes(m.kind)) expect(decodeCloudToEdge(t).kind).toBe(m.kind);
      else expectCode(t, 'node-api/unexpected-kind', decodeCloudToEdge);
    }
  });

  it('the protocol\'s name, entry-id and method lists are the attestation layer\'s', () => {
    expect([...NODE_API_METHODS]).toEqual([...NODE_ATTESTATION_METHODS]);
    expect(NODE_API_NODE_NAME_PATTERN.source).toBe(NODE_NAME_PATTERN.source);
    expect(NODE_API_ENTRY_ID_PATTERN.source).toBe(ENTRY_ID_PATTERN.source);
  });

  it('matchNodeApiMessage dispatches on kind with a complete handler table', () => {
    const handlers: NodeApiHandlers<string> = {
      'attest.begin': (m) => m.nodeName,
      'attest.challenge': (m) => m.sessionId,
      'attest.response': (m) => m.sessionId,
      'attest.result': (m) => String(m.reattestable),
      'renew.request': (m) => String(m.csr.length),
      'renew.result': (m) => m.bundle,
      'svids.request': (m) => m.csrs.map((c) => c.entryId).join(','),
      'svids.result': (m) => String(m.svids.length),
      'entries.request': (m) => m.kind,
      'entries.result': (m) => String(m.entries.length),
      'jwt.request': (m) => `${m.entryId}:${m.ttlMs ?? '-'}`,
      'jwt.result': (m) => String(m.expiresAt),
      'device.enroll': (m) => m.device ?? '-',
      'device.renew': (m) => m.device,
      'device.svid': (m) => m.device,
      error: (m) => m.code,
    };
    expect(samples.map((m) => matchNodeApiMessage(m, handlers))).toEqual([
      'edge-1', 'edge-1', SESSION, SESSION, 'true', String(CSR.length), BUNDLE, 'e1,web.prod_2', '1', '0', 'join-token/expired',
      'entries.request', '2', '0', 'web:-', 'web:60000', '1900000000000',
      '-', 'plant-a/t-1', 'default/t-2', 'default/t-2',
    ]);
    // @ts-expect-error a table without the 'error' handler does not compile (exhaustive by construction)
    const partial: NodeApiHandlers<string> = { ...handlers, error: undefined };
    expect(() => matchNodeApiMessage(samples[10]!, partial)).toThrow(NodeApiError);
  });

  it('error messages carry a typed error\'s code and message, never its cause', () => {
    const e = new JoinTokenError('join-token/used', 'join token was already used', { cause: new Error('db row 17 secret=abc') });
    const m = nodeApiErrorFrom(e);
    expect(m).toEqual({ v: 1, kind: 'error', code: 'join-token/used', message: 'join token was already used' });
    expect(encodeNodeApiMessage(m)).not.toContain('secret');
    expect(nodeApiErrorFrom(new Error('ENOENT /var/lib/edgeward/x'))).toEqual({ v: 1, kind: 'error', code: 'internal', message: 'internal error' });
  });
});

describe('node API decoder refuses hostile input', () => {
  const begin = (): Record<string, unknown> => wire('attest.begin');

  it('node-api/too-large: more than 64 KiB, as text or bytes, checked before parsing', () => {
    const big = text({ ...begin(), payload: { pad: 'x'.repeat(MAX_NODE_API_MESSAGE_BYTES) } });
    expectCode(big, 'node-api/too-large');
    expectCode(Buffer.from(big), 'node-api/too-large');
    // 64 KiB of multi-byte characters: the UTF-16 length is under the limit, the UTF-8 length is not.
    expectCode(text({ ...begin(), payload: { pad: 'é'.repeat(33_000) } }), 'node-api/too-large');
    expectCode('['.repeat(MAX_NODE_API_MESSAGE_BYTES + 1), 'node-api/too-large');
  });

  it('node-api/malformed: invalid UTF-8, not JSON, not an object, duplicate members, nesting too deep', () => {
    expectCode(Buffer.from([0x7b, 0xff, 0x7d]), 'node-api/malformed');
    expectCode(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(encodeNodeApiMessage(samples[5]!))]), 'node-api/malformed'); // BOM
    expectCode('{"v":1,', 'node-api/malformed');
    expectCode("{'v':1}", 'node-api/malformed');
    expectCode('[1]', 'node-api/malformed');
    expectCode('null', 'node-api/malformed');
    expectCode('{"v":1,"kind":"renew.request","csr":"AA==","csr":"AAAA"}', 'node-api/malformed');
    expectCode(text({ ...begin(), payload: JSON.parse('{"a":'.repeat(40) + '1' + '}'.repeat(40)) as unknown }), 'node-api/malformed');
  });

  it('node-api/unsupported-version: v missing, 2, "1", 1.0 written as 1.5', () => {
    const { v: _v, ...noV } = begin();
    expectCode(text(noV), 'node-api/unsupported-version');
    expectCode(text({ ...begin(), v: 2 }), 'node-api/unsupported-version');
    expectCode(text({ ...begin(), v: '1' }), 'node-api/unsupported-version');
    expectCode(text({ ...begin(), v: 1.5 }), 'node-api/unsupported-version');
  });

  it('node-api/unknown-kind: missing, unknown, wrong case, not a string', () => {
    const { kind: _k, ...noKind } = begin();
    expectCode(text(noKind), 'node-api/unknown-kind');
    expectCode(text({ ...begin(), kind: 'attest.evict' }), 'node-api/unknown-kind');
    expectCode(text({ ...begin(), kind: 'Attest.Begin' }), 'node-api/unknown-kind');
    expectCode(text({ ...begin(), kind: ['attest.begin'] }), 'node-api/unknown-kind');
  });

  it('node-api/unknown-field: an extra member, including __proto__ (which must not pollute prototypes)', () => {
    expectCode(text({ ...begin(), admin: true }), 'node-api/unknown-field');
    expectCode('{"v":1,"kind":"renew.request","csr":"AAAA","__proto__":{"polluted":1}}', 'node-api/unknown-field');
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    const sv = wire('svids.request');
    (sv['csrs'] as Array<Record<string, unknown>>)[0]!['spiffeId'] = 'spiffe://example.org/admin';
    expectCode(text(sv), 'node-api/unknown-field');
  });

  it('node-api/missing-field: a required member is absent', () => {
    const { csr: _c, ...noCsr } = begin();
    expectCode(text(noCsr), 'node-api/missing-field');
    expectCode(text({ v: 1, kind: 'attest.result', svidChainDer: [CERT.toString('base64')], bundle: BUNDLE }), 'node-api/missing-field');
    expectCode(text({ v: 1, kind: 'svids.request', csrs: [{ entryId: 'e1' }] }), 'node-api/missing-field');
  });

  it('node-api/unknown-method: an attestation method that does not exist', () => {
    expectCode(text({ ...begin(), method: 'aws_iid' }), 'node-api/unknown-method');
    expectCode(text({ ...begin(), method: 'JOIN_TOKEN' }), 'node-api/unknown-method');
  });

  it('node-api/bad-field: invalid node name, payload not an object, bad session id, wrong types', () => {
    for (const nodeName of ['Edge-1', 'edge_1', '-edge', '', 'x'.repeat(64), 'edge-1\n', 7]) expectCode(text({ ...begin(), nodeName }), 'node-api/bad-field');
    for (const payload of [null, [], 'x', 1]) expectCode(text({ ...begin(), payload }), 'node-api/bad-field');
    expectCode(text({ ...wire('attest.challenge'), sessionId: 'short' }), 'node-api/bad-field');
    expectCode(text({ ...wire('attest.response'), sessionId: 'a/b'.repeat(8) }), 'node-api/bad-field');
    expectCode(text({ ...wire('attest.result'), reattestable: 'true' }), 'node-api/bad-field');
    expectCode(text({ ...wire('attest.result'), bundle: '' }), 'node-api/bad-field');
    expectCode(text({ ...wire('attest.result'), svidChainDer: [] }), 'node-api/bad-field');
    expectCode(text({ ...begin(), csr: '' }), 'node-api/bad-field');
    expectCode(text({ ...begin(), csr: 12 }), 'node-api/bad-field');
  });

  it('node-api/bad-field: duplicate or invalid entry ids, non-object items', () => {
    const csr = CSR.toString('base64');
    expectCode(text({ v: 1, kind: 'svids.request', csrs: [{ entryId: 'e1', csr }, { entryId: 'e1', csr }] }), 'node-api/bad-field');
    expectCode(text({ v: 1, kind: 'svids.request', csrs: [{ entryId: '../e1', csr }] }), 'node-api/bad-field');
    expectCode(text({ v: 1, kind: 'svids.request', csrs: [] }), 'node-api/bad-field');
    expectCode(text({ v: 1, kind: 'svids.request', csrs: ['e1'] }), 'node-api/bad-field');
  });

  it('node-api/bad-field: error codes must be stable code strings', () => {
    for (const code of ['Join-Token/Expired', 'a b', '', '/x', 'x/', 'x'.repeat(65)]) {
      expectCode(text({ v: 1, kind: 'error', code, message: 'm' }), 'node-api/bad-field');
    }
  });

  it('node-api/bad-base64: not base64, url alphabet, whitespace, missing padding, non-zero trailing bits', () => {
    for (const csr of ['!!!!', CSR.toString('base64url').replace(/=+$/, '') + '-_', 'AAAA AAAA', 'AAAA\nAAAA', 'AAA', 'AA', 'QR==', 'QUI=QUI=']) {
      expectCode(text({ ...begin(), csr }), 'node-api/bad-base64');
    }
    expectCode(text({ ...wire('attest.response'), response: 'AA=' }), 'node-api/bad-base64');
  });

  it('node-api/field-too-large: a CSR over 8 KiB, too many certificates or CSRs, a long error message', () => {
    expectCode(text({ ...begin(), csr: randomBytes(8 * 1024 + 1).toString('base64') }), 'node-api/field-too-large');
    expect(decodeNodeApiMessage(text({ ...begin(), csr: randomBytes(8 * 1024).toString('base64') })).kind).toBe('attest.begin');
    expectCode(text({ ...wire('attest.result'), svidChainDer: Array(9).fill('AAAA') }), 'node-api/field-too-large');
    expectCode(text({ v: 1, kind: 'svids.request', csrs: Array.from({ length: 65 }, (_, i) => ({ entryId: `e${i}`, csr: 'AAAA' })) }), 'node-api/field-too-large');
    expectCode(text({ v: 1, kind: 'error', code: 'x', message: 'm'.repeat(1025) }), 'node-api/field-too-large');
    expectCode(text({ ...wire('attest.challenge'), challenge: randomBytes(16 * 1024 + 1).toString('base64') }), 'node-api/field-too-large');
  });

  it('the encoder refuses what the decoder would refuse', () => {
    expect(() => encodeNodeApiMessage({ ...(samples[1] as Extract<NodeApiMessage, { kind: 'attest.begin' }>), nodeName: 'Bad' })).toThrow(
      expect.objectContaining({ code: 'node-api/bad-field' }),
    );
    const huge: NodeApiMessage = { v: 1, kind: 'svids.request', csrs: Array.from({ length: 10 }, (_, i) => ({ entryId: `e${i}`, csr: randomBytes(8000) })) };
    expect(() => encodeNodeApiMessage(huge)).toThrow(expect.objectContaining({ code: 'node-api/too-large' }));
  });
});

describe('entries and JWT-SVID messages (issue #4: the joined edge)', () => {
  const entriesWire = (entry: Record<string, unknown>): string => text({ v: 1, kind: 'entries.result', entries: [entry] });
  const entry = (): Record<string, unknown> => (JSON.parse(encodeNodeApiMessage(newSamples[1]!)) as { entries: Record<string, unknown>[] }).entries[0]!;
  const jwtReq = (): Record<string, unknown> => wire('jwt.request');

  it('optional entry members are omitted when unset, an empty dnsNames list too', () => {
    const o = JSON.parse(encodeNodeApiMessage({ v: 1, kind: 'entries.result', entries: [{ ...ENTRY, x509SvidTtlMs: undefined, jwtSvidTtlMs: undefined, hint: undefined, dnsNames: [] }] })) as {
      entries: Record<string, unknown>[];
    };
    expect(Object.keys(o.entries[0]!)).toEqual(['id', 'spiffeId', 'parentId', 'selectors', 'revision']);
    expect(JSON.parse(encodeNodeApiMessage(newSamples[3]!))).not.toHaveProperty('ttlMs');
  });

  it('entries.request carries nothing: any member is unknown', () => {
    expectCode(text({ v: 1, kind: 'entries.request', since: 3 }), 'node-api/unknown-field');
  });

  it('cloud results may be up to 4 MiB, edge messages stay at 64 KiB (architecture.md 9)', () => {
    const many: NodeEntry[] = Array.from({ length: 400 }, (_, i) => ({ ...ENTRY, id: `e${i}`, hint: 'h'.repeat(400) }));
    const big = encodeNodeApiMessage({ v: 1, kind: 'entries.result', entries: many });
    expect(big.length).toBeGreaterThan(MAX_NODE_API_MESSAGE_BYTES);
    expect(decodeCloudToEdge(big).kind).toBe('entries.result');
    expect(decodeCloudToEdge(Buffer.from(big)).kind).toBe('entries.result');
    expectCode(big, 'node-api/too-large'); // the default bound is 64 KiB
    expectCode(big, 'node-api/too-large', decodeEdgeToCloud);
    // An edge message stays refused above 64 KiB even under the 4 MiB bound.
    const bigReq = text({ v: 1, kind: 'svids.request', csrs: Array.from({ length: 10 }, (_, i) => ({ entryId: `e${i}`, csr: randomBytes(8000).toString('base64') })) });
    expectCode(bigReq, 'node-api/too-large', decodeCloudToEdge);
    const bigAttest = text({ ...wire('attest.begin'), payload: { pad: 'x'.repeat(MAX_NODE_API_MESSAGE_BYTES) } });
    expectCode(bigAttest, 'node-api/too-large', (t) => decodeNodeApiMessage(t, { maxBytes: MAX_NODE_API_RESULT_BYTES }));
    expectCode(Buffer.from(bigAttest), 'node-api/too-large', (t) => decodeNodeApiMessage(t, { maxBytes: MAX_NODE_API_RESULT_BYTES }));
    // Over 4 MiB: refused before parsing.
    expectCode('['.repeat(MAX_NODE_API_RESULT_BYTES + 1), 'node-api/too-large', decodeCloudToEdge);
    expectCode(text({ v: 1, kind: 'svids.result', svids: [], pad: 'é'.repeat(MAX_NODE_API_RESULT_BYTES / 2 + 1) }), 'node-api/too-large', decodeCloudToEdge);
  });

  it('entries.result: exact members, valid ids, SPIFFE IDs, selectors, TTLs, DNS names, hint, revision', () => {
    expect(decodeCloudToEdge(entriesWire(entry()))).toEqual({ v: 1, kind: 'entries.result', entries: [ENTRY] });
    expectCode(entriesWire({ ...entry(), admin: true }), 'node-api/unknown-field');
    expectCode(entriesWire({ ...entry(), federatesWith: [] }), 'node-api/unknown-field');
    const { revision: _r, ...noRevision } = entry();
    expectCode(entriesWire(noRevision), 'node-api/missing-field');
    const { selectors: _s, ...noSelectors } = entry();
    expectCode(entriesWire(noSelectors), 'node-api/missing-field');
    const bad: Array<[string, unknown]> = [
      ['id', '../x'],
      ['id', ''],
      ['spiffeId', 'spiffe://Example.org/x'], // not canonical (SPIFFE-ID 2.1: lower-case trust domain)
      ['spiffeId', 'https://example.org/x'],
      ['spiffeId', 'spiffe://example.org/a/../b'],
      ['parentId', 7],
      ['selectors', []],
      ['selectors', ['nocolon']],
      ['selectors', [':value']],
      ['selectors', ['type:']],
      ['selectors', ['unix:uid 1']],
      ['selectors', ['unix:uid:1', 'unix:uid:1']],
      ['selectors', [1]],
      ['x509SvidTtlMs', 999],
      ['x509SvidTtlMs', 1.5],
      ['jwtSvidTtlMs', '60s'],
      ['dnsNames', []],
      ['dnsNames', ['UPPER.example.org']],
      ['dnsNames', ['a.example.org', 'a.example.org']],
      ['hint', ''],
      ['hint', 'bell\u0007'],
      ['hint', '\ud800x'],
      ['revision', -1],
      ['revision', 2 ** 53],
    ];
    for (const [k, val] of bad) expectCode(entriesWire({ ...entry(), [k]: val }), 'node-api/bad-field', decodeCloudToEdge);
    expectCode(entriesWire({ ...entry(), selectors: Array.from({ length: 65 }, (_, i) => `t:${i}`) }), 'node-api/field-too-large', decodeCloudToEdge);
    expectCode(entriesWire({ ...entry(), selectors: [`t:${'x'.repeat(1023)}`] }), 'node-api/field-too-large', decodeCloudToEdge);
    expectCode(entriesWire({ ...entry(), hint: 'é'.repeat(600) }), 'node-api/field-too-large', decodeCloudToEdge);
    expectCode(entriesWire({ ...entry(), dnsNames: Array.from({ length: 33 }, (_, i) => `h${i}.example.org`) }), 'node-api/field-too-large', decodeCloudToEdge);
    expectCode(text({ v: 1, kind: 'entries.result', entries: [entry(), entry()] }), 'node-api/bad-field', decodeCloudToEdge); // duplicate id
    expectCode(text({ v: 1, kind: 'entries.result', entries: ['web'] }), 'node-api/bad-field', decodeCloudToEdge);
    expectCode(text({ v: 1, kind: 'entries.result' }), 'node-api/missing-field', decodeCloudToEdge);
    const tooMany = text({ v: 1, kind: 'entries.result', entries: Array.from({ length: MAX_NODE_API_ENTRIES + 1 }, () => 0) });
    expectCode(tooMany, 'node-api/field-too-large', decodeCloudToEdge);
  });

  it('jwt.request: 1..16 unique audiences of 1..256 characters, optional integer ttlMs, valid entry id', () => {
    expect(decodeEdgeToCloud(text({ ...jwtReq(), ttlMs: 1000 }))).toMatchObject({ ttlMs: 1000 });
    expectCode(text({ ...jwtReq(), audience: [] }), 'node-api/bad-field');
    expectCode(text({ ...jwtReq(), audience: 'aud' }), 'node-api/bad-field');
    expectCode(text({ ...jwtReq(), audience: [''] }), 'node-api/bad-field');
    expectCode(text({ ...jwtReq(), audience: ['a', 'a'] }), 'node-api/bad-field');
    expectCode(text({ ...jwtReq(), audience: ['a\nb'] }), 'node-api/bad-field');
    expectCode(text({ ...jwtReq(), audience: [5] }), 'node-api/bad-field');
    expectCode(text({ ...jwtReq(), audience: Array.from({ length: 17 }, (_, i) => `a${i}`) }), 'node-api/field-too-large');
    expectCode(text({ ...jwtReq(), audience: ['a'.repeat(257)] }), 'node-api/field-too-large');
    expect(decodeEdgeToCloud(text({ ...jwtReq(), audience: ['a'.repeat(256)] })).kind).toBe('jwt.request');
    for (const ttlMs of [0, 999, 1.5, '1m', null, 7 * 24 * 3_600_000 + 1]) expectCode(text({ ...jwtReq(), ttlMs }), 'node-api/bad-field');
    expectCode(text({ ...jwtReq(), entryId: '../x' }), 'node-api/bad-field');
    const { entryId: _e, ...noEntry } = jwtReq();
    expectCode(text(noEntry), 'node-api/missing-field');
    expectCode(text({ ...jwtReq(), spiffeId: 'spiffe://example.org/admin' }), 'node-api/unknown-field');
  });

  it('jwt.result: a JWS compact token within 16 KiB and an integer expiry', () => {
    const r = wire('jwt.result');
    for (const token of ['', 'a.b', 'a.b.c.d', 'a b.c.d', 7]) expectCode(text({ ...r, token }), 'node-api/bad-field', decodeCloudToEdge);
    expectCode(text({ ...r, token: `${'a'.repeat(16 * 1024)}.b.c` }), 'node-api/field-too-large', decodeCloudToEdge);
    expectCode(text({ ...r, expiresAt: 1.5 }), 'node-api/bad-field', decodeCloudToEdge);
    expectCode(text({ ...r, expiresAt: '1' }), 'node-api/bad-field', decodeCloudToEdge);
    expectCode(text({ ...r, exp: 1 }), 'node-api/unknown-field', decodeCloudToEdge);
  });
});

describe('device messages (issue #6)', () => {
  it('device.enroll carries exactly one proof; a factory chain needs the device name', () => {
    const base = { v: 1, kind: 'device.enroll', csr: CSR.toString('base64') };
    expectCode(text({ ...base }), 'node-api/bad-field');
    expectCode(text({ ...base, token: 'ewdt_abcdefghijklmnopqrstuvwxyz012345', factoryChainDer: [CERT.toString('base64')] }), 'node-api/bad-field');
    expectCode(text({ ...base, factoryChainDer: [CERT.toString('base64')] }), 'node-api/missing-field');
    expectCode(text({ ...base, token: 'short' }), 'node-api/bad-field');
    expectCode(text({ ...base, token: 'ewdt_abcdefghijklmnopqrstuvwxyz012345', device: 'no-namespace' }), 'node-api/bad-field');
    expectCode(text({ ...base, token: 'ewdt_abcdefghijklmnopqrstuvwxyz012345', extra: 1 }), 'node-api/unknown-field');
  });

  it('device names are NAMESPACE/NAME in renew and results', () => {
    const w = wire('device.renew');
    expectCode(text({ ...w, device: '../x' }), 'node-api/bad-field');
    expectCode(text({ ...w, svidChainDer: [] }), 'node-api/bad-field');
    const r = wire('device.svid');
    expectCode(text({ ...r, expiresAt: -1 }), 'node-api/bad-field');
  });
});
