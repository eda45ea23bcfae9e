/**
 * Selectors: the `type:value` facts attestation yields and registration entries require
 * (SPIRE `spire.api.types.Selector{type, value}`, reference §3 "Registration entries").
 *
 * Text form `unix:uid:1000`: the type is everything up to the FIRST ':' and the value is the rest (values
 * may contain ':', types cannot). Both parts are non-empty, printable ASCII (0x21..0x7e, so no whitespace
 * or control characters), and the whole text is at most 1024 characters. The text form is unique per
 * selector, so it doubles as the key for sets, maps and sorting (`selectorKey`).
 */
import { EdgewardError } from '../../identity/index.js';

export const SELECTOR_ERROR_CODES = [
  'selector/not-a-string',
  'selector/missing-type',
  'selector/missing-value',
  'selector/too-long',
  'selector/bad-char',
  'selector/malformed',
] as const;
export type SelectorErrorCode = (typeof SELECTOR_ERROR_CODES)[number];

export class SelectorError extends EdgewardError<SelectorErrorCode> {}

/** One attested fact, e.g. `{ type: 'unix', value: 'uid:1000' }`. */
export interface Selector {
  readonly type: string;
  readonly value: string;
}

/** Maximum length of `type:value` (characters; all ASCII, so also bytes). */
export const MAX_SELECTOR_LENGTH = 1024;

function isPrintable(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

function fail(code: SelectorErrorCode, message: string, input: string): never {
  throw new SelectorError(code, message, { detail: { input: input.slice(0, 128) } });
}

function check(type: string, value: string): void {
  const text = `${type}:${value}`;
  if (type.length === 0) fail('selector/missing-type', 'selector type is empty (expected "type:value")', text);
  if (value.length === 0) fail('selector/missing-value', 'selector value is empty (expected "type:value")', text);
  if (text.length > MAX_SELECTOR_LENGTH) fail('selector/too-long', `selector is longer than ${MAX_SELECTOR_LENGTH} characters`, text);
  if (type.includes(':')) fail('selector/bad-char', 'selector type must not contain ":"', text);
  if (!isPrintable(type) || !isPrintable(value)) {
    fail('selector/bad-char', 'selectors may contain only printable ASCII without whitespace', text);
  }
}

/** A validated, frozen selector. Throws `SelectorError`. */
export function makeSelector(type: string, value: string): Selector {
  if (typeof type !== 'string' || typeof value !== 'string') {
    throw new SelectorError('selector/not-a-string', 'selector type and value must be strings');
  }
  check(type, value);
  return Object.freeze({ type, value });
}

/** Parse `type:value` (`unix:uid:1000` -> `{type: 'unix', value: 'uid:1000'}`). Throws `SelectorError`. */
export function parseSelector(text: unknown): Selector {
  if (typeof text !== 'string') throw new SelectorError('selector/not-a-string', `selector must be a string (got ${typeof text})`);
  if (text.length > MAX_SELECTOR_LENGTH) fail('selector/too-long', `selector is longer than ${MAX_SELECTOR_LENGTH} characters`, text);
  const colon = text.indexOf(':');
  if (colon === -1) fail('selector/malformed', 'selector must have the form "type:value"', text);
  return makeSelector(text.slice(0, colon), text.slice(colon + 1));
}

/**
 * Accept either the text form or a `{type, value}` object with exactly those two string fields (e.g. from a
 * JSON API). Throws `SelectorError`.
 */
export function toSelector(input: unknown): Selector {
  if (typeof input === 'string') return parseSelector(input);
  if (typeof input === 'object' && input !== null && !Array.isArray(input)) {
    const keys = Object.keys(input);
    const o = input as Record<string, unknown>;
    if (keys.length === 2 && typeof o['type'] === 'string' && typeof o['value'] === 'string') {
      return makeSelector(o['type'], o['value']);
    }
    throw new SelectorError('selector/malformed', 'a selector object must have exactly the string fields "type" and "value"');
  }
  throw new SelectorError('selector/not-a-string', `selector must be a "type:value" string (got ${input === null ? 'null' : typeof input})`);
}

/** `type:value` (inverse of parseSelector). */
export function formatSelector(s: Selector): string {
  return `${s.type}:${s.value}`;
}

/** The unique key of a selector (its text form): equal keys <=> equal selectors. */
export function selectorKey(s: Selector): string {
  return `${s.type}:${s.value}`;
}

export function selectorEquals(a: Selector, b: Selector): boolean {
  return a.type === b.type && a.value === b.value;
}

/** Order by key, code-unit order (stable across platforms and locales). */
export function compareSelectors(a: Selector, b: Selector): number {
  const ka = selectorKey(a);
  const kb = selectorKey(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/** De-duplicated and sorted by key. Does not validate (use `toSelector` on untrusted input first). */
export function normalizeSelectors(list: Iterable<Selector>): Selector[] {
  const byKey = new Map<string, Selector>();
  for (const s of list) {
    const k = selectorKey(s);
    if (!byKey.has(k)) byKey.set(k, Object.isFrozen(s) ? s : Object.freeze({ type: s.type, value: s.value }));
  }
  return [...byKey.keys()].sort().map((k) => byKey.get(k) as Selector);
}
