/**
 * Reading one bounded JSON message (text or UTF-8 bytes), shared by the node API and hub codecs: the size
 * limit is checked before anything is parsed, bytes must be strict UTF-8 (a BOM is kept so that the JSON
 * parser refuses it, RFC 8259 8.1), and the JSON is parsed strictly (duplicate member names refused,
 * nesting bounded). Each codec maps the two failures onto its own typed error.
 */
import { EdgewardError, parseStrictJson } from '../identity/index.js';

// ignoreBOM: keep a BOM in the text so that the JSON parser refuses it, as it does for string input.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** True if the UTF-8 length of `s` is over `max`; measured only when the cheap bounds (UTF-16 length <= UTF-8 <= 3x) do not decide. */
export function utf8LengthExceeds(s: string, max: number): boolean {
  if (s.length > max) return true;
  if (s.length * 3 <= max) return false;
  return Buffer.byteLength(s, 'utf8') > max;
}

export type JsonTextFailure = 'too-large' | 'not-utf8' | 'not-json' | 'not-text';

/**
 * Parse `input` as one JSON value of at most `maxBytes` UTF-8 bytes and `maxDepth` nesting. On failure
 * calls `fail` (which throws the caller's typed error); a non-EdgewardError from the parser is rethrown.
 */
export function parseBoundedJson(input: string | Uint8Array, maxBytes: number, maxDepth: number, fail: (why: JsonTextFailure, cause?: unknown) => never): unknown {
  let text: string;
  if (typeof input === 'string') {
    if (utf8LengthExceeds(input, maxBytes)) fail('too-large');
    text = input;
  } else {
    if (!(input instanceof Uint8Array)) fail('not-text');
    if (input.byteLength > maxBytes) fail('too-large');
    try {
      text = utf8.decode(input);
    } catch (e) {
      fail('not-utf8', e);
    }
  }
  try {
    return parseStrictJson(text, { maxDepth });
  } catch (e) {
    if (e instanceof EdgewardError) fail('not-json', e);
    throw e;
  }
}
