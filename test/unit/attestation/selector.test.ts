/**
 * Selectors (reference §3: SPIRE selectors are `type:value`, e.g. `unix:uid:1000`; entries match by subset).
 */
import { describe, expect, it } from 'vitest';
import {
  compareSelectors,
  formatSelector,
  makeSelector,
  MAX_SELECTOR_LENGTH,
  normalizeSelectors,
  parseSelector,
  SelectorError,
  selectorEquals,
  selectorKey,
  toSelector,
  type Selector,
} from '../../../src/attestation/index.js';

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(SelectorError);
    return (e as SelectorError).code;
  }
  throw new Error('expected a SelectorError');
}

describe('parseSelector / formatSelector', () => {
  it('splits at the FIRST colon: the value may contain colons, the type cannot', () => {
    expect(parseSelector('unix:uid:1000')).toEqual({ type: 'unix', value: 'uid:1000' });
    expect(parseSelector('k8s:pod-label:app:web')).toEqual({ type: 'k8s', value: 'pod-label:app:web' });
    expect(parseSelector('unix:path:/usr/bin/a:b')).toEqual({ type: 'unix', value: 'path:/usr/bin/a:b' });
    expect(parseSelector('a:b')).toEqual({ type: 'a', value: 'b' });
    expect(parseSelector('x::')).toEqual({ type: 'x', value: ':' });
  });

  it('round-trips and produces frozen objects', () => {
    for (const t of ['unix:uid:0', 'unix:sha256:' + 'a'.repeat(64), 'docker:label:a=b', 'x:~!@#$%^&*()']) {
      const s = parseSelector(t);
      expect(formatSelector(s)).toBe(t);
      expect(selectorKey(s)).toBe(t);
      expect(Object.isFrozen(s)).toBe(true);
    }
  });

  it('refuses malformed selectors with typed codes', () => {
    expect(codeOf(() => parseSelector('unix'))).toBe('selector/malformed');
    expect(codeOf(() => parseSelector(':uid:1'))).toBe('selector/missing-type');
    expect(codeOf(() => parseSelector('unix:'))).toBe('selector/missing-value');
    expect(codeOf(() => parseSelector(''))).toBe('selector/malformed');
    expect(codeOf(() => parseSelector('unix:uid: 1'))).toBe('selector/bad-char'); // whitespace
    expect(codeOf(() => parseSelector('unix:uid:1\n'))).toBe('selector/bad-char');
    expect(codeOf(() => parseSelector('un ix:uid:1'))).toBe('selector/bad-char');
    expect(codeOf(() => parseSelector('unix:user:jos\u00e9'))).toBe('selector/bad-char'); // non-ASCII
    expect(codeOf(() => parseSelector('unix:user:a\u0000'))).toBe('selector/bad-char');
    expect(codeOf(() => parseSelector('unix:user:a\u007f'))).toBe('selector/bad-char');
    expect(codeOf(() => parseSelector(42))).toBe('selector/not-a-string');
    expect(codeOf(() => parseSelector(null))).toBe('selector/not-a-string');
  });

  it('bounds the length at 1024 characters (type:value)', () => {
    const ok = 'unix:' + 'v'.repeat(MAX_SELECTOR_LENGTH - 5);
    expect(ok.length).toBe(1024);
    expect(parseSelector(ok).value.length).toBe(1019);
    expect(codeOf(() => parseSelector(ok + 'v'))).toBe('selector/too-long');
    expect(codeOf(() => parseSelector('x'.repeat(100_000)))).toBe('selector/too-long');
    expect(codeOf(() => makeSelector('unix', 'v'.repeat(1020)))).toBe('selector/too-long');
  });

  it('makeSelector validates both parts; a type with a colon is refused', () => {
    expect(makeSelector('unix', 'uid:1')).toEqual({ type: 'unix', value: 'uid:1' });
    expect(codeOf(() => makeSelector('un:ix', 'uid:1'))).toBe('selector/bad-char');
    expect(codeOf(() => makeSelector('', 'x'))).toBe('selector/missing-type');
    expect(codeOf(() => makeSelector('x', ''))).toBe('selector/missing-value');
    expect(codeOf(() => makeSelector(1 as unknown as string, 'x'))).toBe('selector/not-a-string');
  });

  it('toSelector accepts the text form or a strict {type, value} object', () => {
    expect(toSelector('unix:uid:1')).toEqual({ type: 'unix', value: 'uid:1' });
    expect(toSelector({ type: 'unix', value: 'uid:1' })).toEqual({ type: 'unix', value: 'uid:1' });
    expect(codeOf(() => toSelector({ type: 'unix', value: 'uid:1', extra: 1 }))).toBe('selector/malformed');
    expect(codeOf(() => toSelector({ type: 'unix' }))).toBe('selector/malformed');
    expect(codeOf(() => toSelector({ type: 'unix', value: 1 }))).toBe('selector/malformed');
    expect(codeOf(() => toSelector(['unix', 'uid:1']))).toBe('selector/not-a-string');
    expect(codeOf(() => toSelector(undefined))).toBe('selector/not-a-string');
  });
});

describe('ordering and de-duplication', () => {
  it('normalizeSelectors de-duplicates and sorts by key (code-unit order)', () => {
    const list: Selector[] = ['unix:uid:1000', 'unix:gid:5', 'docker:id:x', 'unix:uid:1000', 'unix:Gid:5'].map(parseSelector);
    expect(normalizeSelectors(list).map(selectorKey)).toEqual(['docker:id:x', 'unix:Gid:5', 'unix:gid:5', 'unix:uid:1000']);
    expect(normalizeSelectors([])).toEqual([]);
  });

  it('compareSelectors agrees with key order; selectorEquals compares both parts', () => {
    const a = parseSelector('unix:uid:1');
    const b = parseSelector('unix:uid:2');
    expect(compareSelectors(a, b)).toBeLessThan(0);
    expect(compareSelectors(b, a)).toBeGreaterThan(0);
    expect(compareSelectors(a, parseSelector('unix:uid:1'))).toBe(0);
    expect(selectorEquals(a, { type: 'unix', value: 'uid:1' })).toBe(true);
    expect(selectorEquals(a, { type: 'unix:uid', value: '1' })).toBe(false);
  });
});
