/**
 * The hub's resource model (issue #5): operator documents, the wire form of a resource's data, kinds on
 * the command line, and redaction. Hostile documents are refused with every problem reported together.
 */
import { describe, expect, it } from 'vitest';
import {
  MAX_RESOURCE_DATA_BYTES,
  MAX_RESOURCE_SPEC_DEPTH,
  parseResourceDocument,
  parseResourceKind,
  redactResourceData,
  RESOURCE_KINDS,
  RESOURCE_NAME_PATTERN,
  ResourceError,
  resourceView,
  validateResourceData,
  isStrictBase64,
} from '../../../src/protocol/index.js';

function problemsOf(f: () => unknown): readonly string[] {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ResourceError);
    expect((e as ResourceError).code).toBe('resource/invalid');
    return (e as ResourceError).problems;
  }
  throw new Error('expected a ResourceError');
}

const cm = (extra: Record<string, unknown> = {}, meta: Record<string, unknown> = {}): Record<string, unknown> => ({
  apiVersion: 'edgeward.io/v1',
  kind: 'ConfigMap',
  metadata: { name: 'app-config', nodes: ['edge-1'], ...meta },
  data: { LOG_LEVEL: 'info' },
  ...extra,
});

function nested(depth: number): Record<string, unknown> {
  let v: Record<string, unknown> = {};
  for (let i = 1; i < depth; i++) v = { a: v };
  return v;
}

describe('parseResourceDocument: valid documents and their wire form', () => {
  it('a ConfigMap becomes {data: {...}}; nodes are sorted', () => {
    const d = parseResourceDocument(cm({}, { nodes: ['edge-2', 'edge-1'] }));
    expect(d).toEqual({ kind: 'ConfigMap', name: 'app-config', nodes: ['edge-1', 'edge-2'], data: { data: { LOG_LEVEL: 'info' } } });
    validateResourceData(d.kind, d.data);
  });

  it('a ConfigMap without data is an empty map; "*" targets every node', () => {
    const { data: _omit, ...doc } = cm({}, { nodes: ['*'] });
    expect(parseResourceDocument(doc)).toMatchObject({ nodes: ['*'], data: { data: {} } });
  });

  it('a Secret: stringData becomes base64 data and wins over the same key in data (as in Kubernetes)', () => {
    const d = parseResourceDocument({
      apiVersion: 'edgeward.io/v1',
      kind: 'Secret',
      metadata: { name: 'db', nodes: ['edge-1'] },
      data: { user: Buffer.from('admin').toString('base64'), password: Buffer.from('old').toString('base64') },
      stringData: { password: 's3cr3t' },
    });
    expect(d.data).toEqual({ data: { user: 'YWRtaW4=', password: Buffer.from('s3cr3t').toString('base64') } });
    validateResourceData('Secret', d.data);
  });

  it('a Workload carries a JSON spec (copied, not shared)', () => {
    const spec = { image: 'nginx', replicas: 2, ports: [80, 443], env: { A: null, B: true } };
    const d = parseResourceDocument({ apiVersion: 'edgeward.io/v1', kind: 'Workload', metadata: { name: 'x.y-1', nodes: ['n1'] }, spec });
    expect(d.data).toEqual({ spec });
    spec.replicas = 3;
    expect((d.data['spec'] as { replicas: number }).replicas).toBe(2);
  });

  it('Device and DeviceModel are namespaced (NAMESPACE/NAME, default "default") and their specs are checked (issue #6)', () => {
    const m = parseResourceDocument({
      apiVersion: 'edgeward.io/v1',
      kind: 'DeviceModel',
      metadata: { name: 'thermo', nodes: ['*'] },
      spec: { properties: [{ name: 'temperature', type: 'FLOAT', accessMode: 'ReadOnly', minimum: -50, maximum: 150 }] },
    });
    expect(m.name).toBe('default/thermo');
    const spec = { deviceModelRef: { name: 'thermo' }, nodeName: 'edge-1', properties: [{ name: 'temperature', desired: { value: '21.5' } }] };
    const d = parseResourceDocument({ apiVersion: 'edgeward.io/v1', kind: 'Device', metadata: { name: 't-1', namespace: 'plant-a' }, spec });
    expect(d.name).toBe('plant-a/t-1');
    // A Device is sent to its node only: metadata.nodes defaults to [spec.nodeName] and may not say otherwise.
    expect(d.nodes).toEqual(['edge-1']);
    expect(d.data).toEqual({ spec });
    expect(problemsOf(() => parseResourceDocument({ apiVersion: 'edgeward.io/v1', kind: 'Device', metadata: { name: 't', nodes: ['edge-2'] }, spec })).join()).toMatch(/metadata\.nodes/);
    // The shape is KubeEdge's v1beta1 subset; anything else is refused, every problem together.
    const p = problemsOf(() =>
      parseResourceDocument({ apiVersion: 'edgeward.io/v1', kind: 'Device', metadata: { name: 't', namespace: 'Bad_NS' }, spec: { deviceModelRef: {}, properties: [{ name: 'a/b', desired: { value: 3 } }], x: 1 } }),
    );
    expect(p.join('\n')).toMatch(/metadata\.namespace/);
    expect(p.join('\n')).toMatch(/deviceModelRef\.name/);
    expect(p.join('\n')).toMatch(/nodeName/);
    expect(p.join('\n')).toMatch(/properties\[0\]\.name/);
    expect(p.join('\n')).toMatch(/desired\.value: must be a string/);
    expect(p.join('\n')).toMatch(/unknown field "x"/);
    // metadata.namespace is only for namespaced kinds
    expect(problemsOf(() => parseResourceDocument({ apiVersion: 'edgeward.io/v1', kind: 'Workload', metadata: { name: 'w', namespace: 'a', nodes: ['n'] }, spec: {} })).join()).toMatch(/unknown field "namespace"/);
  });

  it('a spec exactly MAX_RESOURCE_SPEC_DEPTH deep is accepted', () => {
    const d = parseResourceDocument({ apiVersion: 'edgeward.io/v1', kind: 'Workload', metadata: { name: 'w', nodes: ['n'] }, spec: nested(MAX_RESOURCE_SPEC_DEPTH) });
    validateResourceData('Workload', d.data);
  });

  it('a __proto__ key is plain data, never a prototype', () => {
    const spec = JSON.parse('{"__proto__": {"polluted": true}}') as Record<string, unknown>;
    const d = parseResourceDocument({ apiVersion: 'edgeward.io/v1', kind: 'Workload', metadata: { name: 'd', nodes: ['n'] }, spec });
    const s = d.data['spec'] as Record<string, unknown>;
    expect(Object.keys(s)).toEqual(['__proto__']);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });
});

describe('parseResourceDocument: hostile and wrong documents', () => {
  it('reports every problem together: apiVersion, kind, name, nodes, unknown fields', () => {
    const p = problemsOf(() =>
      parseResourceDocument({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'Bad_Name', nodes: [], labels: {} },
        extra: 1,
      }),
    );
    expect(p.some((x) => x.startsWith('apiVersion:'))).toBe(true);
    expect(p.some((x) => x.startsWith('kind:'))).toBe(true);
    expect(p.some((x) => x.startsWith('metadata.name:'))).toBe(true);
    expect(p.some((x) => x.startsWith('metadata.nodes:'))).toBe(true);
    expect(p.some((x) => x.includes('unknown field "labels"'))).toBe(true);
    expect(p.some((x) => x.includes('unknown field "extra"'))).toBe(true);
  });

  it('refuses a non-mapping, missing sections, and a kind spelled in another case (with a hint)', () => {
    expect(problemsOf(() => parseResourceDocument([1]))[0]).toMatch(/must be a mapping/);
    expect(problemsOf(() => parseResourceDocument(null))[0]).toMatch(/must be a mapping/);
    const p = problemsOf(() => parseResourceDocument({ apiVersion: 'edgeward.io/v1', kind: 'configmap' }));
    expect(p.join('\n')).toMatch(/did you mean ConfigMap/);
    expect(p.join('\n')).toMatch(/metadata: missing/);
    expect(problemsOf(() => parseResourceDocument({ kind: 'Workload', metadata: { name: 'w', nodes: ['n'] } })).join('\n')).toMatch(/apiVersion: missing[\s\S]*spec: missing/);
  });

  it('refuses fields of another kind (a ConfigMap has no spec, a Workload no data)', () => {
    expect(problemsOf(() => parseResourceDocument(cm({ spec: {} }))).join()).toMatch(/unknown field "spec"/);
    expect(problemsOf(() => parseResourceDocument(cm({ stringData: {} }))).join()).toMatch(/unknown field "stringData"/);
    expect(
      problemsOf(() => parseResourceDocument({ apiVersion: 'edgeward.io/v1', kind: 'Workload', metadata: { name: 'w', nodes: ['n'] }, spec: {}, data: {} })).join(),
    ).toMatch(/unknown field "data"/);
  });

  it('names: DNS-1123 subdomain of at most 253 characters', () => {
    for (const bad of ['', 'A', '-a', 'a-', '.a', 'a_b', 'a'.repeat(254), 'a b', 'ä', 7, null]) {
      expect(problemsOf(() => parseResourceDocument(cm({}, { name: bad }))).join(), String(bad)).toMatch(/metadata\.name/);
    }
    for (const good of ['a', '0', 'a.b-c', 'a'.repeat(253)]) {
      expect(RESOURCE_NAME_PATTERN.test(good)).toBe(true);
      expect(parseResourceDocument(cm({}, { name: good })).name).toBe(good);
    }
  });

  it('nodes: node names only, "*" alone, no duplicates, 1..1000', () => {
    expect(problemsOf(() => parseResourceDocument(cm({}, { nodes: ['*', 'edge-1'] }))).join()).toMatch(/must be the only item/);
    expect(problemsOf(() => parseResourceDocument(cm({}, { nodes: ['edge-1', 'edge-1'] }))).join()).toMatch(/listed twice/);
    expect(problemsOf(() => parseResourceDocument(cm({}, { nodes: ['Edge_1'] }))).join()).toMatch(/not a node name/);
    expect(problemsOf(() => parseResourceDocument(cm({}, { nodes: 'edge-1' }))).join()).toMatch(/must be a list/);
    expect(problemsOf(() => parseResourceDocument(cm({}, { nodes: undefined }))).join()).toMatch(/metadata\.nodes: missing/);
    const many = Array.from({ length: 1001 }, (_, i) => `n${i}`);
    expect(problemsOf(() => parseResourceDocument(cm({}, { nodes: many }))).join()).toMatch(/1-1000 items/);
    expect(parseResourceDocument(cm({}, { nodes: many.slice(0, 1000) })).nodes).toHaveLength(1000);
  });

  it('ConfigMap data: string values only, bounded keys', () => {
    const p = problemsOf(() => parseResourceDocument(cm({ data: { port: 8080, on: true, '..x': 'a', '.': 'b', 'a/b': 'c', ok: 'fine', nested: { a: 'b' } } })));
    expect(p.join('\n')).toMatch(/data\.port: must be a string/);
    expect(p.join('\n')).toMatch(/data\.on: must be a string/);
    expect(p.join('\n')).toMatch(/key "\.\.x"/);
    expect(p.join('\n')).toMatch(/key "\."/);
    expect(p.join('\n')).toMatch(/key "a\/b"/);
    expect(p.join('\n')).toMatch(/data\.nested: must be a string/);
    expect(problemsOf(() => parseResourceDocument(cm({ data: ['a'] }))).join()).toMatch(/must be a mapping/);
  });

  it('Secret data: canonical base64 only (no whitespace, no bad padding, no non-zero pad bits)', () => {
    const secret = (data: Record<string, unknown>): Record<string, unknown> => ({ apiVersion: 'edgeward.io/v1', kind: 'Secret', metadata: { name: 's', nodes: ['n'] }, data });
    for (const bad of ['aGk', 'aGk=\n', 'a GE=', 'aGk==', '!!!!', 'aGl=', 'aGk=aGk=']) {
      expect(isStrictBase64(bad), bad).toBe(false);
      expect(problemsOf(() => parseResourceDocument(secret({ k: bad }))).join(), bad).toMatch(/canonical base64/);
    }
    for (const good of ['', 'aGk=', 'aGVsbG8=', 'AAAA']) expect(parseResourceDocument(secret({ k: good })).data).toEqual({ data: { k: good } });
  });

  it('spec: deeper than 16 levels, non-JSON values (Infinity, NaN, functions, Dates, holes) refused', () => {
    const w = (spec: unknown): Record<string, unknown> => ({ apiVersion: 'edgeward.io/v1', kind: 'Workload', metadata: { name: 'w', nodes: ['n'] }, spec });
    expect(problemsOf(() => parseResourceDocument(w(nested(MAX_RESOURCE_SPEC_DEPTH + 1)))).join()).toMatch(/deeper than 16/);
    expect(problemsOf(() => parseResourceDocument(w({ a: Infinity }))).join()).toMatch(/finite/);
    expect(problemsOf(() => parseResourceDocument(w({ a: NaN }))).join()).toMatch(/finite/);
    expect(problemsOf(() => parseResourceDocument(w({ a: () => 1 }))).join()).toMatch(/not a JSON value/);
    expect(problemsOf(() => parseResourceDocument(w({ a: new Date(0) }))).join()).toMatch(/not a JSON value/);
    // eslint-disable-next-line no-sparse-arrays
    expect(problemsOf(() => parseResourceDocument(w({ a: [1, , 3] }))).join()).toMatch(/missing list item/);
    expect(problemsOf(() => parseResourceDocument(w({ a: 1n }))).join()).toMatch(/bigint is not a JSON value/);
    expect(problemsOf(() => parseResourceDocument(w([]))).join()).toMatch(/spec: must be a mapping/);
    // A cycle is cut by the depth bound, never followed forever.
    const cyc: Record<string, unknown> = {};
    cyc['self'] = cyc;
    expect(problemsOf(() => parseResourceDocument(w(cyc))).join()).toMatch(/deeper than 16/);
  });

  it('huge data: over MAX_RESOURCE_DATA_BYTES encoded is refused, also when the growth is from base64', () => {
    const big = 'x'.repeat(MAX_RESOURCE_DATA_BYTES);
    expect(problemsOf(() => parseResourceDocument(cm({ data: { k: big } }))).join()).toMatch(/larger than 262144 bytes/);
    // 200 KiB of plain text is fine as stringData, but 4/3 of it in base64 is not.
    const p = problemsOf(() => parseResourceDocument({ apiVersion: 'edgeward.io/v1', kind: 'Secret', metadata: { name: 's', nodes: ['n'] }, stringData: { k: 'y'.repeat(200 * 1024) } }));
    expect(p.join()).toMatch(/more than 262144/);
    // Escapes count: 50,000 control characters are 300,000 bytes of JSON.
    expect(problemsOf(() => parseResourceDocument(cm({ data: { k: '\u0001'.repeat(50_000) } }))).join()).toMatch(/larger than/);
  });

  it('a spec that shares subtrees (YAML aliases) stops at the size bound instead of walking them all', () => {
    let v: unknown = 'z'.repeat(100);
    for (let i = 0; i < 15; i++) v = { a: v, b: v, c: v, d: v };
    const t0 = process.hrtime.bigint();
    const p = problemsOf(() => parseResourceDocument({ apiVersion: 'edgeward.io/v1', kind: 'DeviceModel', metadata: { name: 'm', nodes: ['n'] }, spec: v }));
    expect(p.join()).toMatch(/larger than 262144/);
    // 4^15 leaves would take forever; the walk is bounded by the byte budget (a generous sanity bound, not a timing assert).
    expect(Number(process.hrtime.bigint() - t0) / 1e9).toBeLessThan(20);
  });

  it('the problem list is bounded, with the count of the rest', () => {
    const data: Record<string, unknown> = {};
    for (let i = 0; i < 100; i++) data[`k${i}`] = i;
    try {
      parseResourceDocument(cm({ data }));
      throw new Error('expected a failure');
    } catch (e) {
      expect(e).toBeInstanceOf(ResourceError);
      expect((e as ResourceError).message).toMatch(/and \d+ more$/);
      expect((e as ResourceError).message.length).toBeLessThan(4000);
    }
  });
});

describe('validateResourceData: the wire form checked by both sides', () => {
  it('accepts exactly {data} for ConfigMap/Secret and {spec} for the others', () => {
    validateResourceData('ConfigMap', { data: { a: 'b' } });
    validateResourceData('Secret', { data: { a: 'Yg==' } });
    validateResourceData('Workload', { spec: {} });
    validateResourceData('Device', { spec: { deviceModelRef: { name: 'm' }, nodeName: 'n' }, revokedBefore: 1 });
    expect(problemsOf(() => validateResourceData('Device', { spec: {} })).join()).toMatch(/deviceModelRef/);
    expect(problemsOf(() => validateResourceData('Device', { spec: { deviceModelRef: { name: 'm' }, nodeName: 'n' }, revokedBefore: -1 })).join()).toMatch(/revokedBefore/);
    expect(problemsOf(() => validateResourceData('DeviceModel', { spec: {}, revokedBefore: 1 })).join()).toMatch(/unknown field "revokedBefore"/);
    expect(problemsOf(() => validateResourceData('ConfigMap', { spec: {} })).join()).toMatch(/unknown field "spec"/);
    expect(problemsOf(() => validateResourceData('ConfigMap', {})).join()).toMatch(/data\.data: missing/);
    expect(problemsOf(() => validateResourceData('Secret', { data: { a: 'plain text' } })).join()).toMatch(/base64/);
    expect(problemsOf(() => validateResourceData('Workload', { spec: {}, extra: 1 })).join()).toMatch(/unknown field "extra"/);
    expect(problemsOf(() => validateResourceData('Workload', { spec: nested(17) })).join()).toMatch(/deeper/);
    expect(problemsOf(() => validateResourceData('Workload', [])).join()).toMatch(/must be a mapping/);
    expect(problemsOf(() => validateResourceData('Pod' as never, { spec: {} })).join()).toMatch(/unknown resource kind/);
  });

  it('the size bound is the exact JSON encoding of data', () => {
    const overhead = JSON.stringify({ data: { k: '' } }).length;
    validateResourceData('ConfigMap', { data: { k: 'a'.repeat(MAX_RESOURCE_DATA_BYTES - overhead) } });
    expect(problemsOf(() => validateResourceData('ConfigMap', { data: { k: 'a'.repeat(MAX_RESOURCE_DATA_BYTES - overhead + 1) } })).join()).toMatch(/larger than/);
    const specOverhead = JSON.stringify({ spec: { k: '' } }).length;
    validateResourceData('Workload', { spec: { k: 'é'.repeat((MAX_RESOURCE_DATA_BYTES - specOverhead) / 2) } });
    expect(problemsOf(() => validateResourceData('Workload', { spec: { k: 'é'.repeat((MAX_RESOURCE_DATA_BYTES - specOverhead) / 2 + 1) } })).join()).toMatch(/larger than/);
  });
});

describe('parseResourceKind: kinds on the command line', () => {
  it('is case-insensitive, takes plurals and short aliases', () => {
    const cases: Record<string, string> = {
      workload: 'Workload',
      Workloads: 'Workload',
      WL: 'Workload',
      configmap: 'ConfigMap',
      ConfigMaps: 'ConfigMap',
      cm: 'ConfigMap',
      secret: 'Secret',
      SECRETS: 'Secret',
      device: 'Device',
      devices: 'Device',
      dev: 'Device',
      devicemodel: 'DeviceModel',
      DeviceModels: 'DeviceModel',
      dm: 'DeviceModel',
    };
    for (const [text, kind] of Object.entries(cases)) expect(parseResourceKind(text), text).toBe(kind);
    for (const k of RESOURCE_KINDS) expect(parseResourceKind(k)).toBe(k);
  });

  it('refuses anything else with the list of kinds', () => {
    for (const bad of ['pod', '', '__proto__', 'constructor', 'toString', 'x'.repeat(1000), 5]) {
      const p = problemsOf(() => parseResourceKind(bad));
      expect(p[0]).toMatch(/unknown resource kind/);
      expect(p[0]).toMatch(/configmap \(cm\)/);
      expect(p[0]!.length).toBeLessThan(300);
    }
  });
});

describe('redaction: no view carries a secret', () => {
  it('Secret values become <redacted N bytes>; other kinds are unchanged', () => {
    const secret = parseResourceDocument({ apiVersion: 'edgeward.io/v1', kind: 'Secret', metadata: { name: 's', nodes: ['n'] }, stringData: { password: 's3cr3t!', empty: '' } });
    const r = redactResourceData('Secret', secret.data);
    expect(r).toEqual({ data: { password: '<redacted 7 bytes>', empty: '<redacted 0 bytes>' } });
    expect(JSON.stringify(r)).not.toContain(Buffer.from('s3cr3t!').toString('base64'));
    expect(redactResourceData('Secret', { data: { x: 'not base64!', y: 5 } })).toEqual({ data: { x: '<redacted>', y: '<redacted>' } });
    expect(redactResourceData('Secret', { garbage: true } as Record<string, unknown>)).toEqual({ data: {} });
    expect(redactResourceData('ConfigMap', { data: { a: 'b' } })).toEqual({ data: { a: 'b' } });
    const v = resourceView({ kind: 'Secret', name: 's', version: 3, nodes: ['n'], data: secret.data, updatedAt: 5, source: 'edge' });
    expect(v).toEqual({ kind: 'Secret', name: 's', version: 3, nodes: ['n'], source: 'edge', data: { data: { password: '<redacted 7 bytes>', empty: '<redacted 0 bytes>' } }, updatedAt: 5 });
  });
});
