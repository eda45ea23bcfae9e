/**
 * Registration-entries policy files: the shipped example, the loader's strictness (bounded YAML), and
 * agreement between the hand-written loader and policies/schema/registration-entries.schema.json.
 *
 * The schema is checked by a tiny JSON-Schema (2020-12) evaluator for exactly the keywords the schema uses;
 * it refuses any other keyword, so the schema cannot silently grow rules this test does not evaluate.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { describe, expect, it } from 'vitest';
import { selectorKey } from '../../src/attestation/index.js';
import {
  createEntryStore,
  ENTRIES_POLICY_API_VERSION,
  ENTRIES_POLICY_KIND,
  loadEntriesPolicy,
  parseEntriesPolicy,
  POLICY_DOCUMENT_FIELDS,
  POLICY_ENTRY_FIELDS,
  POLICY_ENTRY_REQUIRED_FIELDS,
  PolicyError,
  MAX_POLICY_ENTRIES,
} from '../../src/edge/registration/index.js';
import { ManualClock, TrustDomain } from '../../src/identity/index.js';
import { REPO_ROOT, tempDir } from '../helpers/index.js';
import { hostStateFiles } from '../../src/cli/host/index.js';

const td = TrustDomain.parse('example.org');
const EXAMPLE = join(REPO_ROOT, 'policies', 'registration-entries.yaml');
const SCHEMA_PATH = join(REPO_ROOT, 'policies', 'schema', 'registration-entries.schema.json');
const schema = JSON.parse(readFileSync(SCHEMA_PATH, 'utf8')) as Record<string, unknown>;

// ---------------------------------------------------------------------------------------------------------
// Minimal JSON Schema 2020-12 evaluator (subset used by our schema).

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
const ANNOTATIONS = new Set(['$schema', '$id', 'title', 'description']);
const KNOWN = new Set([...ANNOTATIONS, '$defs', '$ref', 'type', 'const', 'required', 'properties', 'additionalProperties', 'items',
  'minItems', 'maxItems', 'uniqueItems', 'minLength', 'maxLength', 'pattern']);

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (Number.isInteger(v)) return 'integer';
  return typeof v;
}

/** Error paths where `value` breaks `s` (empty = valid). */
function evaluate(s: Record<string, unknown>, value: unknown, path = ''): string[] {
  const errs: string[] = [];
  for (const k of Object.keys(s)) if (!KNOWN.has(k)) throw new Error(`schema keyword "${k}" is not evaluated by this test`);
  if (typeof s['$ref'] === 'string') {
    const ref = s['$ref'];
    expect(ref.startsWith('#/$defs/')).toBe(true);
    const target = (schema['$defs'] as Record<string, Record<string, unknown>>)[ref.slice('#/$defs/'.length)];
    expect(target, ref).toBeDefined();
    errs.push(...evaluate(target as Record<string, unknown>, value, path));
  }
  if (s['type'] !== undefined) {
    const t = typeOf(value);
    const ok = s['type'] === t || (s['type'] === 'number' && t === 'integer');
    if (!ok) return [...errs, `${path}: type`];
  }
  if ('const' in s && JSON.stringify(s['const']) !== JSON.stringify(value)) errs.push(`${path}: const`);
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    for (const r of (s['required'] as string[] | undefined) ?? []) if (!(r in obj)) errs.push(`${path}.${r}: required`);
    const props = (s['properties'] as Record<string, Record<string, unknown>> | undefined) ?? {};
    for (const [k, v] of Object.entries(obj)) {
      if (props[k] !== undefined) errs.push(...evaluate(props[k], v, `${path}.${k}`));
      else if (s['additionalProperties'] === false) errs.push(`${path}.${k}: additionalProperties`);
    }
  }
  if (Array.isArray(value)) {
    if (typeof s['minItems'] === 'number' && value.length < s['minItems']) errs.push(`${path}: minItems`);
    if (typeof s['maxItems'] === 'number' && value.length > s['maxItems']) errs.push(`${path}: maxItems`);
    if (s['uniqueItems'] === true && new Set(value.map((x) => JSON.stringify(x))).size !== value.length) errs.push(`${path}: uniqueItems`);
    if (s['items'] !== undefined) value.forEach((x, i) => errs.push(...evaluate(s['items'] as Record<string, unknown>, x, `${path}[${i}]`)));
  }
  if (typeof value === 'string') {
    const len = [...value].length; // JSON Schema counts code points
    if (typeof s['minLength'] === 'number' && len < s['minLength']) errs.push(`${path}: minLength`);
    if (typeof s['maxLength'] === 'number' && len > s['maxLength']) errs.push(`${path}: maxLength`);
    if (typeof s['pattern'] === 'string' && !new RegExp(s['pattern'], 'u').test(value)) errs.push(`${path}: pattern`);
  }
  return errs;
}

function loaderAccepts(doc: unknown): boolean {
  try {
    parseEntriesPolicy(stringify(doc), td);
    return true;
  } catch (e) {
    expect(e).toBeInstanceOf(PolicyError);
    return false;
  }
}

const entry = (extra: Record<string, Json> = {}): Record<string, Json> => ({
  spiffeId: 'spiffe://example.org/workload/web',
  parentId: 'spiffe://example.org/edge/node-1',
  selectors: ['unix:uid:1000'],
  ...extra,
});
const doc = (entries: Json[], extra: Record<string, Json> = {}): Record<string, Json> => ({
  apiVersion: 'edgeward.io/v1',
  kind: 'RegistrationEntries',
  entries,
  ...extra,
});

// ---------------------------------------------------------------------------------------------------------

describe('the shipped policy and schema', () => {
  it('the example policy loads (and is valid against the schema)', () => {
    const p = loadEntriesPolicy(EXAMPLE, td);
    expect(p.entries).toEqual([]);
    // its commented-out examples are valid too once uncommented
    const text = readFileSync(EXAMPLE, 'utf8');
    const block = text.split('\n').filter((l) => l.startsWith('# ') || l === '#').map((l) => l.slice(2));
    const start = block.indexOf('entries:');
    expect(start).toBeGreaterThan(0);
    const uncommented = ['apiVersion: edgeward.io/v1', 'kind: RegistrationEntries', ...block.slice(start)].join('\n');
    const ex = parseEntriesPolicy(uncommented, td);
    expect(ex.entries.map((e) => e.spiffeId.toString())).toEqual(['spiffe://example.org/workload/web', 'spiffe://example.org/workload/metrics']);
    expect(ex.entries[0]?.selectors.map(selectorKey)).toEqual(['unix:path:/usr/local/bin/web', 'unix:uid:1000']);
    expect(ex.entries[0]).toMatchObject({ x509SvidTtlMs: 3_600_000, jwtSvidTtlMs: 300_000, dnsNames: ['web.node-1.example.org'], hint: 'web' });
    expect(ex.entries[1]?.id).toBe('metrics-agent');
    expect(ex.entries[0]?.id).toMatch(/^[0-9a-f]{32}$/);
  });

  it('schema metadata: draft 2020-12, required and const fields match the loader', () => {
    expect(schema['$schema']).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(schema['required']).toEqual([...POLICY_DOCUMENT_FIELDS]);
    expect(schema['additionalProperties']).toBe(false);
    const props = schema['properties'] as Record<string, Record<string, unknown>>;
    expect(Object.keys(props).sort()).toEqual([...POLICY_DOCUMENT_FIELDS].sort());
    expect(props['apiVersion']?.['const']).toBe(ENTRIES_POLICY_API_VERSION);
    expect(props['kind']?.['const']).toBe(ENTRIES_POLICY_KIND);
    expect(props['entries']?.['maxItems']).toBe(MAX_POLICY_ENTRIES);
    const e = (schema['$defs'] as Record<string, Record<string, unknown>>)['entry'] as Record<string, unknown>;
    expect(e['additionalProperties']).toBe(false);
    expect(e['required']).toEqual([...POLICY_ENTRY_REQUIRED_FIELDS]);
    expect(Object.keys(e['properties'] as object).sort()).toEqual([...POLICY_ENTRY_FIELDS].sort());
    // every pattern compiles as an ECMA-262 (u) regex
    const walk = (n: unknown): void => {
      if (typeof n !== 'object' || n === null) return;
      for (const [k, v] of Object.entries(n)) {
        if (k === 'pattern') expect(() => new RegExp(v as string, 'u')).not.toThrow();
        else walk(v);
      }
    };
    walk(schema);
  });

  it('schema and loader agree on valid and invalid documents', () => {
    const cases: Array<[string, unknown, boolean]> = [
      ['empty list', doc([]), true],
      ['minimal entry', doc([entry()]), true],
      ['full entry', doc([entry({ id: 'web', x509SvidTtl: '1h', jwtSvidTtl: '5m', dnsNames: ['web.example.org', '*.example.org'], hint: 'web', selectors: ['unix:uid:1000', 'unix:path:/a:b', 'docker:label:x=y'] })]), true],
      ['compound duration', doc([entry({ x509SvidTtl: '59m59s999ms' })]), true],
      ['two entries', doc([entry(), entry({ selectors: ['unix:uid:1001'] })]), true],
      ['deep spiffe path', doc([entry({ spiffeId: 'spiffe://example.org/a/b.c/d_e-f/...x' })]), true],
      ['missing apiVersion', { kind: 'RegistrationEntries', entries: [] }, false],
      ['missing kind', { apiVersion: 'edgeward.io/v1', entries: [] }, false],
      ['missing entries', { apiVersion: 'edgeward.io/v1', kind: 'RegistrationEntries' }, false],
      ['wrong apiVersion', doc([], { apiVersion: 'edgeward.io/v2' }), false],
      ['wrong kind', doc([], { kind: 'Entries' }), false],
      ['unknown top-level field', doc([], { metadata: {} }), false],
      ['entries not a list', doc([], { entries: {} }), false],
      ['document not a mapping', ['x'], false],
      ['entry not a mapping', doc(['x']), false],
      ['entry missing spiffeId', doc([{ parentId: 'spiffe://example.org/n', selectors: ['a:b'] }]), false],
      ['entry missing selectors', doc([{ spiffeId: 'spiffe://example.org/w', parentId: 'spiffe://example.org/n' }]), false],
      ['empty selectors', doc([entry({ selectors: [] })]), false],
      ['65 selectors', doc([entry({ selectors: Array.from({ length: 65 }, (_, i) => `t:${i}`) })]), false],
      ['selector without colon', doc([entry({ selectors: ['unix'] })]), false],
      ['selector with space', doc([entry({ selectors: ['unix:user:a b'] })]), false],
      ['selector object', doc([entry({ selectors: [{ type: 'unix', value: 'uid:1' }] })]), false],
      ['selector too long', doc([entry({ selectors: ['t:' + 'v'.repeat(1023)] })]), false],
      ['unknown entry field', doc([entry({ federatesWith: [] })]), false],
      ['ms TTL field is not a policy field', doc([entry({ x509SvidTtlMs: 60000 })]), false],
      ['numeric TTL', doc([entry({ x509SvidTtl: 3600 })]), false],
      ['bad duration', doc([entry({ jwtSvidTtl: '5 minutes' })]), false],
      ['units out of order', doc([entry({ jwtSvidTtl: '1s1m' })]), false],
      ['trust domain ID without path', doc([entry({ spiffeId: 'spiffe://example.org' })]), false],
      ['dot segment', doc([entry({ parentId: 'spiffe://example.org/a/../b' })]), false],
      ['uppercase trust domain', doc([entry({ spiffeId: 'spiffe://Example.org/w' })]), false],
      ['https scheme', doc([entry({ spiffeId: 'https://example.org/w' })]), false],
      ['bad DNS name', doc([entry({ dnsNames: ['Web.example.org'] })]), false],
      ['duplicate DNS name', doc([entry({ dnsNames: ['a.b', 'a.b'] })]), false],
      ['33 DNS names', doc([entry({ dnsNames: Array.from({ length: 33 }, (_, i) => `h${i}.example.org`) })]), false],
      ['empty hint', doc([entry({ hint: '' })]), false],
      ['hint with newline', doc([entry({ hint: 'a\nb' })]), false],
      ['hint too long (ASCII)', doc([entry({ hint: 'x'.repeat(1025) })]), false],
      ['bad id', doc([entry({ id: '-x' })]), false],
      ['null field', doc([entry({ hint: null })]), false],
    ];
    for (const [name, d, valid] of cases) {
      const schemaErrors = evaluate(schema, d);
      expect(schemaErrors.length === 0, `schema on "${name}": ${schemaErrors.join(', ')}`).toBe(valid);
      expect(loaderAccepts(d), `loader on "${name}"`).toBe(valid);
    }
  });

  it('the loader is stricter than the schema exactly where documented (trust domain, TTL range, bytes, uniqueness)', () => {
    const cases: Array<[string, unknown]> = [
      ['other trust domain', doc([entry({ spiffeId: 'spiffe://other.org/w' })])],
      ['TTL below 1s', doc([entry({ x509SvidTtl: '500ms' })])],
      ['TTL above configured max', doc([entry({ x509SvidTtl: '2h' })])],
      ['hint over 1024 UTF-8 bytes', doc([entry({ hint: 'é'.repeat(513) })])],
      ['duplicate spiffeId+parentId+selectors', doc([entry(), entry({ hint: 'x' })])],
      ['duplicate id', doc([entry({ id: 'a' }), entry({ id: 'a', selectors: ['unix:uid:2'] })])],
    ];
    for (const [name, d] of cases) {
      expect(evaluate(schema, d), `schema on "${name}"`).toEqual([]);
      expect(loaderAccepts(d), `loader on "${name}"`).toBe(false);
    }
  });
});

describe('loader strictness', () => {
  function policyCode(f: () => unknown): PolicyError {
    try {
      f();
    } catch (e) {
      expect(e).toBeInstanceOf(PolicyError);
      return e as PolicyError;
    }
    throw new Error('expected PolicyError');
  }
  const head = 'apiVersion: edgeward.io/v1\nkind: RegistrationEntries\n';

  it('reports every problem with its location', () => {
    const text = `${head}entries:
  - spiffeId: spiffe://other.org/w
    parentId: spiffe://example.org/n
    selectors: [unix, "unix:uid:1"]
    x509SvidTtl: 2h
    colour: blue
  - 42
  - spiffeId: spiffe://example.org/ok
    parentId: spiffe://example.org/n
    selectors: ["unix:uid:1"]
`;
    const e = policyCode(() => parseEntriesPolicy(text, td));
    expect(e.code).toBe('policy/invalid');
    expect(e.problems.map((p) => p.path).sort()).toEqual(
      ['entries[0].colour', 'entries[0].spiffeId', 'entries[0].selectors[0]', 'entries[0].x509SvidTtl', 'entries[1]'].sort(),
    );
  });

  it('YAML: exactly one document, unique keys, string keys, no tags, no aliases by default', () => {
    const one = `${head}entries: []\n`;
    expect(parseEntriesPolicy(one, td).entries).toEqual([]);
    expect(policyCode(() => parseEntriesPolicy('', td)).code).toBe('policy/syntax');
    expect(policyCode(() => parseEntriesPolicy('# nothing\n', td)).code).toBe('policy/syntax');
    expect(policyCode(() => parseEntriesPolicy(`${one}---\n${one}`, td)).code).toBe('policy/syntax');
    expect(policyCode(() => parseEntriesPolicy(`${one}kind: RegistrationEntries\n`, td)).code).toBe('policy/syntax'); // duplicate key
    expect(policyCode(() => parseEntriesPolicy(`${one}? [a]\n: 1\n`, td)).code).toBe('policy/syntax'); // non-string key
    expect(policyCode(() => parseEntriesPolicy(`${head}entries: !!binary aGk=\n`, td)).code).toBe('policy/syntax');
    expect(policyCode(() => parseEntriesPolicy(`${head}entries: [\n`, td)).code).toBe('policy/syntax');
    const aliased = `${head}entries:
  - &e
    spiffeId: spiffe://example.org/w
    parentId: spiffe://example.org/n
    selectors: &s ["unix:uid:1"]
  - spiffeId: spiffe://example.org/w2
    parentId: spiffe://example.org/n
    selectors: *s
`;
    expect(policyCode(() => parseEntriesPolicy(aliased, td)).code).toBe('policy/syntax');
    expect(parseEntriesPolicy(aliased, td, { maxAliasCount: 4 }).entries).toHaveLength(2);
    // a "billion laughs" expansion is refused even with a limit
    const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
    for (let i = 1; i < 8; i++) bomb.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill('*' + String.fromCharCode(96 + i)).join(',')}]`);
    expect(policyCode(() => parseEntriesPolicy(bomb.join('\n'), td, { maxAliasCount: 100 })).code).toBe('policy/syntax');
    // merge keys are plain keys in YAML 1.2 (and then unknown fields)
    expect(policyCode(() => parseEntriesPolicy(`${one}<<: {x: 1}\n`, td)).code).toBe('policy/invalid');
  });

  it('__proto__ keys cannot change object prototypes', () => {
    const e = policyCode(() => parseEntriesPolicy(`${head}entries:\n  - __proto__: {spiffeId: x}\n    spiffeId: spiffe://example.org/w\n    parentId: spiffe://example.org/n\n    selectors: ["a:b"]\n`, td));
    expect(e.code).toBe('policy/invalid');
    expect(({} as Record<string, unknown>)['spiffeId']).toBeUndefined();
  });

  it('files: size bound (1 MiB default), UTF-8 only, regular files only', async () => {
    const dir = await tempDir('edgeward-policy-');
    const ok = join(dir, 'ok.yaml');
    writeFileSync(ok, `${head}entries: []\n`);
    expect(loadEntriesPolicy(ok, td).entries).toEqual([]);
    const big = join(dir, 'big.yaml');
    writeFileSync(big, `${head}entries: []\n` + '#'.repeat(1024 * 1024));
    expect(policyCode(() => loadEntriesPolicy(big, td)).code).toBe('policy/too-large');
    expect(policyCode(() => loadEntriesPolicy(ok, td, { maxBytes: 10 })).code).toBe('policy/too-large');
    const latin1 = join(dir, 'latin1.yaml');
    writeFileSync(latin1, Buffer.concat([Buffer.from(`${head}entries: []\n# caf`), Buffer.from([0xe9]), Buffer.from('\n')]));
    expect(policyCode(() => loadEntriesPolicy(latin1, td)).code).toBe('policy/syntax');
    expect(policyCode(() => loadEntriesPolicy(join(dir, 'missing.yaml'), td)).code).toBe('policy/io');
    expect(policyCode(() => loadEntriesPolicy(dir, td)).code).toBe('policy/io');
  });

  it('a loaded policy feeds the store; reloading the same file is a no-op', async () => {
    const dir = await tempDir('edgeward-policy-');
    const file = join(dir, 'entries.yaml');
    writeFileSync(
      file,
      stringify(doc([entry({ id: 'web', x509SvidTtl: '10m' }), entry({ spiffeId: 'spiffe://example.org/workload/db', selectors: ['unix:user:postgres'] })])),
    );
    const store = createEntryStore(join(dir, 'entries.db'), { files: hostStateFiles, trustDomain: td, clock: new ManualClock(0) });
    try {
      expect(store.replaceFromPolicy(loadEntriesPolicy(file, td).entries)).toMatchObject({ added: 2 });
      expect(store.replaceFromPolicy(loadEntriesPolicy(file, td).entries)).toMatchObject({ added: 0, unchanged: 2 });
      expect(store.get('web')?.x509SvidTtlMs).toBe(600_000);
      expect(store.list().every((e) => e.source === 'policy')).toBe(true);
    } finally {
      store.close();
    }
  });
});
