/**
 * Registration entries (reference §3 "Registration entries": Entry fields; "A workload matches an entry
 * when entry selectors ⊆ workload selectors"; per-entry TTL overrides; hint ≤ 1024 bytes, reference §1).
 */
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_MAX_JWT_SVID_TTL_MS,
  DEFAULT_MAX_X509_SVID_TTL_MS,
  derivedEntryId,
  entryDedupeKey,
  EntryIndex,
  entryToDocument,
  EntryValidationError,
  matchEntries,
  parseSelector,
  sameEntryContent,
  selectorKey,
  validateEntryInput,
  type EntryInput,
  type RegistrationEntry,
  type Selector,
} from '../../../src/attestation/index.js';
import { SpiffeId, TrustDomain } from '../../../src/identity/index.js';

const td = TrustDomain.parse('example.org');
const opts = { trustDomain: td };
const base = {
  spiffeId: 'spiffe://example.org/workload/web',
  parentId: 'spiffe://example.org/edge/node-1',
  selectors: ['unix:uid:1000'],
};

function problemsOf(raw: unknown, o: Parameters<typeof validateEntryInput>[1] = opts): Array<[string, string]> {
  try {
    validateEntryInput(raw, o);
  } catch (e) {
    expect(e).toBeInstanceOf(EntryValidationError);
    expect((e as EntryValidationError).code).toBe('entry/invalid');
    return (e as EntryValidationError).problems.map((p) => [p.path, p.message]);
  }
  throw new Error('expected EntryValidationError');
}
const paths = (raw: unknown, o?: Parameters<typeof validateEntryInput>[1]): string[] => problemsOf(raw, o).map(([p]) => p);

describe('validateEntryInput: accepted input', () => {
  it('minimal entry: parsed IDs, selectors, no TTLs, empty DNS names', () => {
    const e = validateEntryInput(base, opts);
    expect(e.spiffeId).toBeInstanceOf(SpiffeId);
    expect(e.spiffeId.toString()).toBe(base.spiffeId);
    expect(e.parentId.toString()).toBe(base.parentId);
    expect(e.selectors).toEqual([{ type: 'unix', value: 'uid:1000' }]);
    expect(e.dnsNames).toEqual([]);
    expect(e.x509SvidTtlMs).toBeUndefined();
    expect(e.jwtSvidTtlMs).toBeUndefined();
    expect(e.hint).toBeUndefined();
    expect('id' in e).toBe(false);
    expect(Object.isFrozen(e)).toBe(true);
  });

  it('full entry: duration strings, selector objects, DNS names (order kept), hint, id', () => {
    const e = validateEntryInput(
      {
        ...base,
        id: 'web-1',
        selectors: ['unix:uid:1000', { type: 'unix', value: 'gid:100' }, 'unix:uid:1000', 'docker:label:a=b'],
        x509SvidTtl: '30m',
        jwtSvidTtl: '5m',
        dnsNames: ['web.example.org', '*.svc.example.org'],
        hint: 'web — frontend',
      },
      opts,
    );
    expect(e.id).toBe('web-1');
    expect(e.selectors.map(selectorKey)).toEqual(['docker:label:a=b', 'unix:gid:100', 'unix:uid:1000']); // deduped, sorted
    expect(e.x509SvidTtlMs).toBe(1_800_000);
    expect(e.jwtSvidTtlMs).toBe(300_000);
    expect(e.dnsNames).toEqual(['web.example.org', '*.svc.example.org']);
    expect(e.hint).toBe('web — frontend');
  });

  it('ms TTL fields, SpiffeId instances, and explicit undefined for optional fields', () => {
    const e = validateEntryInput(
      { ...base, spiffeId: SpiffeId.parse(base.spiffeId), x509SvidTtlMs: 1000, jwtSvidTtlMs: 60_000, hint: undefined, dnsNames: undefined },
      opts,
    );
    expect(e.x509SvidTtlMs).toBe(1000);
    expect(e.jwtSvidTtlMs).toBe(60_000);
    expect(e.hint).toBeUndefined();
  });

  it('TTL bounds are inclusive and come from the options', () => {
    expect(validateEntryInput({ ...base, x509SvidTtl: '1h', jwtSvidTtl: '5m' }, opts).x509SvidTtlMs).toBe(DEFAULT_MAX_X509_SVID_TTL_MS);
    expect(validateEntryInput({ ...base, jwtSvidTtl: '5m' }, opts).jwtSvidTtlMs).toBe(DEFAULT_MAX_JWT_SVID_TTL_MS);
    expect(validateEntryInput({ ...base, x509SvidTtl: '1s' }, opts).x509SvidTtlMs).toBe(1000);
    const wide = { trustDomain: td, maxX509SvidTtlMs: 4 * 3_600_000, maxJwtSvidTtlMs: 3_600_000 };
    expect(validateEntryInput({ ...base, x509SvidTtl: '4h', jwtSvidTtl: '1h' }, wide).x509SvidTtlMs).toBe(14_400_000);
    expect(paths({ ...base, x509SvidTtl: '4h1ms' }, wide)).toEqual(['x509SvidTtl']);
  });

  it('64 selectors and 32 DNS names are the limits', () => {
    const sel = Array.from({ length: 64 }, (_, i) => `t:${i}`);
    expect(validateEntryInput({ ...base, selectors: sel }, opts).selectors).toHaveLength(64);
    const dns = Array.from({ length: 32 }, (_, i) => `h${i}.example.org`);
    expect(validateEntryInput({ ...base, dnsNames: dns }, opts).dnsNames).toHaveLength(32);
    const hint = 'é'.repeat(512); // 1024 UTF-8 bytes
    expect(validateEntryInput({ ...base, hint }, opts).hint).toBe(hint);
  });
});

describe('validateEntryInput: refused input (every problem reported together)', () => {
  it('not an object', () => {
    for (const raw of [null, undefined, 'x', 1, [], [base], new Map(), new (class X {})()]) {
      expect(paths(raw)).toEqual(['']);
    }
  });

  it('reports all problems of one input at once', () => {
    const got = paths({
      spiffeId: 'spiffe://other.org/w',
      parentId: 'https://example.org/x',
      selectors: ['unix:uid:1', 'bad', 7],
      x509SvidTtl: '2h',
      jwtSvidTtl: 'soon',
      dnsNames: ['UPPER.example.org', 'ok.example.org', 'ok.example.org'],
      hint: '',
      id: '-bad',
      extra: true,
      __proto__x: 1,
    });
    expect(got.sort()).toEqual(
      [
        'spiffeId',
        'parentId',
        'selectors[1]',
        'selectors[2]',
        'x509SvidTtl',
        'jwtSvidTtl',
        'dnsNames[0]',
        'dnsNames[2]',
        'hint',
        'id',
        'extra',
        '__proto__x',
      ].sort(),
    );
  });

  it('missing required fields', () => {
    expect(paths({}).sort()).toEqual(['parentId', 'selectors', 'spiffeId']);
    expect(paths({ ...base, selectors: undefined })).toEqual(['selectors']);
  });

  it('SPIFFE IDs: SPIFFE-ID 2 syntax, configured trust domain, must have a path', () => {
    const cases: Array<[unknown, RegExp]> = [
      ['spiffe://example.org', /must have a path/],
      ['spiffe://other.org/web', /trust domain "example.org"/],
      ['spiffe://EXAMPLE.org/web', /spiffe-id\//],
      ['spiffe://example.org/a/../b', /dot-segment/],
      ['spiffe://example.org/a/', /trailing-slash/],
      ['spiffe://example.org/a%20b', /percent-encoded/],
      ['spiffe://example.org/a?x=1', /query-or-fragment/],
      ['spiffe://example.org:8080/a', /port-or-userinfo/],
      ['SPIFFE://example.org/a', /wrong-scheme/],
      ['', /empty/],
      [42, /not-a-string/],
      ['spiffe://example.org/' + 'a'.repeat(2100), /too-long/],
    ];
    for (const [v, re] of cases) {
      const spiffe = problemsOf({ ...base, spiffeId: v });
      expect(spiffe.map(([p]) => p)).toEqual(['spiffeId']);
      expect(spiffe[0]?.[1]).toMatch(re);
      expect(paths({ ...base, parentId: v })).toEqual(['parentId']);
    }
  });

  it('selectors: required, non-empty, at most 64, each valid', () => {
    expect(problemsOf({ ...base, selectors: [] })[0]?.[1]).toMatch(/at least one/);
    expect(paths({ ...base, selectors: 'unix:uid:1' })).toEqual(['selectors']);
    expect(paths({ ...base, selectors: Array.from({ length: 65 }, (_, i) => `t:${i}`) })).toEqual(['selectors']);
    expect(paths({ ...base, selectors: ['unix:uid:1', 'unix', ':x', 'x:', 'a b:c', null, { type: 'x' }] })).toEqual([
      'selectors[1]',
      'selectors[2]',
      'selectors[3]',
      'selectors[4]',
      'selectors[5]',
      'selectors[6]',
    ]);
  });

  it('TTLs: syntax, range 1s..max, number type, not both forms', () => {
    expect(paths({ ...base, x509SvidTtl: '999ms' })).toEqual(['x509SvidTtl']);
    expect(paths({ ...base, x509SvidTtl: '1h1s' })).toEqual(['x509SvidTtl']);
    expect(paths({ ...base, jwtSvidTtl: '6m' })).toEqual(['jwtSvidTtl']);
    expect(paths({ ...base, jwtSvidTtl: '0s' })).toEqual(['jwtSvidTtl']);
    expect(paths({ ...base, x509SvidTtl: 3600 })).toEqual(['x509SvidTtl']); // bare number: ambiguous unit
    expect(paths({ ...base, x509SvidTtl: '1 h' })).toEqual(['x509SvidTtl']);
    expect(paths({ ...base, x509SvidTtlMs: 999 })).toEqual(['x509SvidTtlMs']);
    expect(paths({ ...base, x509SvidTtlMs: 1.5e3 + 0.5 })).toEqual(['x509SvidTtlMs']);
    expect(paths({ ...base, x509SvidTtlMs: '1000' })).toEqual(['x509SvidTtlMs']);
    expect(paths({ ...base, jwtSvidTtlMs: 300_001 })).toEqual(['jwtSvidTtlMs']);
    expect(paths({ ...base, x509SvidTtl: '1m', x509SvidTtlMs: 60_000 })).toEqual(['x509SvidTtl']);
  });

  it('DNS names: syntax of the X509-SVID minter, at most 32, no duplicates', () => {
    for (const bad of ['Upper.example.org', 'a..b', '-a.example.org', 'a-.example.org', 'a.*.example.org', '*', 'a_b.example.org',
      'a'.repeat(64) + '.org', ('a'.repeat(63) + '.').repeat(4) + 'org', 'a b', '', 'é.example.org', 7]) {
      expect(paths({ ...base, dnsNames: [bad] }), String(bad)).toEqual(['dnsNames[0]']);
    }
    expect(paths({ ...base, dnsNames: 'a.example.org' })).toEqual(['dnsNames']);
    expect(paths({ ...base, dnsNames: Array.from({ length: 33 }, (_, i) => `h${i}.example.org`) })).toEqual(['dnsNames']);
    expect(paths({ ...base, dnsNames: ['a.example.org', 'b.example.org', 'a.example.org'] })).toEqual(['dnsNames[2]']);
    expect(validateEntryInput({ ...base, dnsNames: ['*.example.org', 'localhost', 'a-b.c1'] }, opts).dnsNames).toHaveLength(3);
  });

  it('hint: string, 1..1024 UTF-8 bytes, no control characters', () => {
    expect(paths({ ...base, hint: '' })).toEqual(['hint']);
    expect(paths({ ...base, hint: 'é'.repeat(512) + 'x' })).toEqual(['hint']); // 1025 bytes
    expect(paths({ ...base, hint: 'x'.repeat(1025) })).toEqual(['hint']);
    expect(paths({ ...base, hint: 'a\nb' })).toEqual(['hint']);
    expect(paths({ ...base, hint: 'a\u0085b' })).toEqual(['hint']); // C1 control
    expect(paths({ ...base, hint: 'a\ud800b' })).toEqual(['hint']); // lone surrogate
    expect(paths({ ...base, hint: 5 })).toEqual(['hint']);
    expect(paths({ ...base, hint: null })).toEqual(['hint']);
  });

  it('id: caller-given ids follow ENTRY_ID_PATTERN', () => {
    expect(validateEntryInput({ ...base, id: 'a' }, opts).id).toBe('a');
    expect(validateEntryInput({ ...base, id: 'A.b_c-9' }, opts).id).toBe('A.b_c-9');
    for (const bad of ['', '.a', '-a', 'a b', 'a/b', 'x'.repeat(129), 5, null]) expect(paths({ ...base, id: bad })).toEqual(['id']);
  });

  it('the error message and detail summarise the problems', () => {
    try {
      validateEntryInput({ spiffeId: 'x' }, opts);
    } catch (e) {
      const err = e as EntryValidationError;
      expect(err.detail).toEqual({ problems: 3 });
      expect(err.message).toMatch(/3 problems/);
      expect(Object.isFrozen(err.problems)).toBe(true);
    }
  });
});

describe('entry identity helpers', () => {
  it('round-trips through entryToDocument', () => {
    const e = validateEntryInput({ ...base, id: 'x', x509SvidTtl: '10m', dnsNames: ['a.b'], hint: 'h' }, opts);
    const doc = entryToDocument(e);
    expect(doc).toEqual({ id: 'x', ...base, x509SvidTtlMs: 600_000, dnsNames: ['a.b'], hint: 'h' });
    const again = validateEntryInput(JSON.parse(JSON.stringify(doc)), opts);
    expect(sameEntryContent(e, again)).toBe(true);
  });

  it('dedupe key: spiffeId + parentId + selector SET; derived id is stable and 32 hex digits', () => {
    const a = validateEntryInput({ ...base, selectors: ['a:1', 'b:2'] }, opts);
    const b = validateEntryInput({ ...base, selectors: ['b:2', 'a:1', 'a:1'], x509SvidTtl: '5m', hint: 'other' }, opts);
    const c = validateEntryInput({ ...base, selectors: ['a:1'] }, opts);
    const d = validateEntryInput({ ...base, parentId: 'spiffe://example.org/edge/node-2', selectors: ['a:1', 'b:2'] }, opts);
    expect(entryDedupeKey(a)).toBe(entryDedupeKey(b));
    expect(entryDedupeKey(a)).not.toBe(entryDedupeKey(c));
    expect(entryDedupeKey(a)).not.toBe(entryDedupeKey(d));
    expect(derivedEntryId(a)).toMatch(/^[0-9a-f]{32}$/);
    expect(derivedEntryId(a)).toBe(derivedEntryId(b));
    expect(sameEntryContent(a, b)).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------------------

function entry(id: string, selectors: string[], spiffe = `spiffe://example.org/w/${id}`): RegistrationEntry {
  const input: EntryInput = validateEntryInput({ ...base, id, spiffeId: spiffe, selectors }, opts);
  return { ...input, id, createdAt: 0, revision: 1 };
}
const sels = (...l: string[]): Selector[] => l.map(parseSelector);
const ids = (l: readonly RegistrationEntry[]): string[] => l.map((e) => e.id);

describe('matching: entry selectors ⊆ caller selectors (reference §3)', () => {
  const entries = [
    entry('uid', ['unix:uid:1000']),
    entry('uid-gid', ['unix:uid:1000', 'unix:gid:100']),
    entry('uid-path', ['unix:uid:1000', 'unix:path:/usr/bin/web']),
    entry('root', ['unix:uid:0']),
    entry('group', ['unix:supplementary_group:video']),
    entry('docker', ['docker:label:app=web', 'unix:uid:1000']),
  ];
  const index = new EntryIndex(entries);

  it('matches every entry whose selectors the caller all has, and no other', () => {
    const caller = sels('unix:uid:1000', 'unix:gid:100', 'unix:user:alice');
    expect(ids(matchEntries(entries, caller))).toEqual(['uid', 'uid-gid']);
    expect(ids(index.match(caller))).toEqual(['uid', 'uid-gid']);
  });

  it('an entry with a selector the caller lacks does not match (subset, not intersection)', () => {
    // the caller has unix:uid:1000 (shared with uid-path and docker) but neither the path nor the docker label
    const caller = sels('unix:uid:1000');
    expect(ids(index.match(caller))).toEqual(['uid']);
    expect(ids(matchEntries(entries, caller))).toEqual(['uid']);
    expect(ids(index.match(sels('unix:path:/usr/bin/web')))).toEqual([]);
  });

  it('more caller selectors never remove a match; result keeps entry order', () => {
    const caller = sels('unix:uid:1000', 'unix:gid:100', 'unix:path:/usr/bin/web', 'docker:label:app=web', 'unix:supplementary_group:video', 'x:y');
    expect(ids(index.match(caller))).toEqual(['uid', 'uid-gid', 'uid-path', 'group', 'docker']);
    expect(ids(matchEntries(index, caller))).toEqual(ids(matchEntries(entries, caller)));
  });

  it('no selectors -> no match; exact-string comparison (no prefix or case folding)', () => {
    expect(index.match([])).toEqual([]);
    expect(ids(index.match(sels('unix:uid:10000', 'unix:uid:100', 'UNIX:uid:1000', 'unix:Uid:1000')))).toEqual([]);
    expect(ids(index.match(sels('unix:uid:0')))).toEqual(['root']);
  });

  it('entries without selectors never match (deny by default), even though validation forbids them', () => {
    const odd = [{ id: 'empty', selectors: [] as Selector[] }, { id: 'one', selectors: sels('a:1') }];
    expect(new EntryIndex(odd).match(sels('a:1')).map((e) => e.id)).toEqual(['one']);
    expect(matchEntries(odd, sels('a:1')).map((e) => e.id)).toEqual(['one']);
  });

  it('index agrees with the linear scan on random data', () => {
    let seed = 12345;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const pool = Array.from({ length: 40 }, (_, i) => `t:${i}`);
    const many = Array.from({ length: 300 }, (_, i) => entry(`e${i}`, Array.from({ length: 1 + rnd(4) }, () => pool[rnd(40)] as string)));
    const idx = new EntryIndex(many);
    for (let k = 0; k < 200; k++) {
      const caller = sels(...Array.from({ length: rnd(12) }, () => pool[rnd(40)] as string));
      expect(ids(idx.match(caller))).toEqual(ids(matchEntries(many, caller)));
    }
  });

  it('speed: 200 callers x 1000 entries, sub-millisecond per call', () => {
    // 1000 entries over 200 workloads (uids), each entry with 1-3 selectors, typical of an edge node.
    const big: RegistrationEntry[] = [];
    for (let i = 0; i < 1000; i++) {
      const uid = 1000 + (i % 200);
      const s = [`unix:uid:${uid}`];
      if (i % 3 === 1) s.push(`unix:gid:${100 + (i % 7)}`);
      if (i % 3 === 2) s.push(`unix:path:/opt/app${i % 50}/bin`, `unix:supplementary_group:g${i % 11}`);
      big.push(entry(`e${i}`, s));
    }
    const t0 = performance.now();
    const idx = new EntryIndex(big);
    const buildMs = performance.now() - t0;
    const callers = Array.from({ length: 200 }, (_, c) =>
      sels(
        `unix:uid:${1000 + c}`,
        `unix:user:u${c}`,
        `unix:gid:${100 + (c % 7)}`,
        `unix:group:g${c % 7}`,
        `unix:supplementary_group:g${c % 11}`,
        `unix:path:/opt/app${c % 50}/bin`,
        `unix:sha256:${'a'.repeat(64)}`,
      ),
    );
    let matched = 0;
    const rounds = 5;
    const t1 = performance.now();
    for (let r = 0; r < rounds; r++) for (const c of callers) matched += idx.match(c).length;
    const perCallMs = (performance.now() - t1) / (rounds * callers.length);
    const t2 = performance.now();
    for (const c of callers) matchEntries(big, c);
    const linearPerCallMs = (performance.now() - t2) / callers.length;
    console.log(
      `[entry-match] build ${buildMs.toFixed(2)} ms; index ${(perCallMs * 1000).toFixed(1)} µs/call; ` +
        `linear ${(linearPerCallMs * 1000).toFixed(1)} µs/call; ${matched / rounds} matches per 200 calls`,
    );
    expect(matched).toBeGreaterThan(0);
    expect(perCallMs).toBeLessThan(1);
  });
});
