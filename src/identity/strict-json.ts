/**
 * A strict, bounded JSON (RFC 8259) parser for security-relevant documents: SPIFFE bundles, bundle
 * maps and JWT headers/claims.
 *
 * Why not `JSON.parse`: it silently keeps the last of duplicate object member names, and SPIFFE Trust
 * Domain and Bundle 5.1.1 / 6.3 require consumers of bundle maps to reject duplicate keys (RFC 7515 4
 * gives JWS parsers the same choice for header names). It also turns large integers into doubles, while
 * `spiffe_sequence` must keep at least 64 bits (Trust Domain and Bundle 4.1.1).
 *
 * Rules:
 * - RFC 8259 grammar only: no BOM, comments, trailing commas, single quotes, NaN or leading zeros;
 *   whitespace is space, tab, CR, LF; control characters inside strings must be escaped.
 * - Duplicate member names in any object are rejected (compared after unescaping, so `"a"` and
 *   `"\u0061"` are duplicates).
 * - Nesting depth is bounded (default 32); callers bound the text length before calling.
 * - Member names listed in `bigIntKeys` whose value is an integer literal (at most 64 digits) are
 *   returned as `bigint`.
 * - `__proto__` is stored as an ordinary own property and never changes an object's prototype.
 */
import { EdgewardError } from './errors.js';

export type JsonErrorCode = 'json/syntax' | 'json/duplicate-key' | 'json/too-deep';
export class JsonError extends EdgewardError<JsonErrorCode> {}

export interface StrictJsonOptions {
  /** Maximum nesting of objects and arrays (default 32). */
  maxDepth?: number;
  /** Member names whose integer values are returned as bigint (e.g. `spiffe_sequence`). */
  bigIntKeys?: ReadonlySet<string>;
}

const DEFAULT_MAX_DEPTH = 32;
const NO_KEYS: ReadonlySet<string> = new Set();
const hasOwn = Object.prototype.hasOwnProperty;

/** Parse `text` as strict JSON. Throws JsonError. */
export function parseStrictJson(text: string, options?: StrictJsonOptions): unknown {
  const p = new Parser(text, options?.maxDepth ?? DEFAULT_MAX_DEPTH, options?.bigIntKeys ?? NO_KEYS);
  p.ws();
  const v = p.value(0, false);
  p.ws();
  if (p.i !== text.length) p.fail('unexpected data after the JSON value');
  return v;
}

class Parser {
  i = 0;
  constructor(
    readonly s: string,
    readonly maxDepth: number,
    readonly bigIntKeys: ReadonlySet<string>,
  ) {}

  fail(message: string, code: JsonErrorCode = 'json/syntax'): never {
    throw new JsonError(code, `${message} (at offset ${this.i})`, { detail: { offset: this.i } });
  }

  ws(): void {
    const s = this.s;
    let i = this.i;
    for (;;) {
      const c = s.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
    this.i = i;
  }

  value(depth: number, wantBigInt: boolean): unknown {
    const c = this.s.charCodeAt(this.i);
    switch (c) {
      case 0x7b: // {
        return this.object(depth + 1);
      case 0x5b: // [
        return this.array(depth + 1);
      case 0x22: // "
        return this.string();
      case 0x74: // t
        return this.literal('true', true);
      case 0x66: // f
        return this.literal('false', false);
      case 0x6e: // n
        return this.literal('null', null);
      default:
        if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.number(wantBigInt);
        return this.fail(Number.isNaN(c) ? 'unexpected end of JSON' : 'unexpected character');
    }
  }

  literal<T>(word: string, v: T): T {
    if (!this.s.startsWith(word, this.i)) this.fail('invalid literal');
    this.i += word.length;
    return v;
  }

  object(depth: number): Record<string, unknown> {
    if (depth > this.maxDepth) this.fail('JSON nesting is too deep', 'json/too-deep');
    this.i++; // {
    const obj: Record<string, unknown> = {};
    this.ws();
    if (this.s.charCodeAt(this.i) === 0x7d) {
      this.i++;
      return obj;
    }
    for (;;) {
      if (this.s.charCodeAt(this.i) !== 0x22) this.fail('expected a member name');
      const keyAt = this.i;
      const key = this.string();
      if (hasOwn.call(obj, key)) {
        this.i = keyAt;
        this.fail('duplicate member name in a JSON object', 'json/duplicate-key');
      }
      this.ws();
      if (this.s.charCodeAt(this.i) !== 0x3a) this.fail('expected ":"');
      this.i++;
      this.ws();
      const v = this.value(depth, this.bigIntKeys.has(key));
      if (key === '__proto__') {
        Object.defineProperty(obj, key, { value: v, enumerable: true, writable: true, configurable: true });
      } else {
        obj[key] = v;
      }
      this.ws();
      const c = this.s.charCodeAt(this.i);
      if (c === 0x2c) {
        this.i++;
        this.ws();
        continue;
      }
      if (c === 0x7d) {
        this.i++;
        return obj;
      }
      this.fail('expected "," or "}"');
    }
  }

  array(depth: number): unknown[] {
    if (depth > this.maxDepth) this.fail('JSON nesting is too deep', 'json/too-deep');
    this.i++; // [
    const arr: unknown[] = [];
    this.ws();
    if (this.s.charCodeAt(this.i) === 0x5d) {
      this.i++;
      return arr;
    }
    for (;;) {
      arr.push(this.value(depth, false));
      this.ws();
      const c = this.s.charCodeAt(this.i);
      if (c === 0x2c) {
        this.i++;
        this.ws();
        continue;
      }
      if (c === 0x5d) {
        this.i++;
        return arr;
      }
      this.fail('expected "," or "]"');
    }
  }

  string(): string {
    const s = this.s;
    const start = this.i + 1;
    let i = start;
    // Fast path: no escapes.
    for (;;) {
      const c = s.charCodeAt(i);
      if (c === 0x22) {
        this.i = i + 1;
        return s.slice(start, i);
      }
      if (c === 0x5c) break;
      if (c < 0x20 || Number.isNaN(c)) {
        this.i = i;
        this.fail(Number.isNaN(c) ? 'unterminated string' : 'unescaped control character in string');
      }
      i++;
    }
    let out = s.slice(start, i);
    for (;;) {
      const c = s.charCodeAt(i);
      if (c === 0x22) {
        this.i = i + 1;
        return out;
      }
      if (c < 0x20 || Number.isNaN(c)) {
        this.i = i;
        this.fail(Number.isNaN(c) ? 'unterminated string' : 'unescaped control character in string');
      }
      if (c !== 0x5c) {
        out += s[i];
        i++;
        continue;
      }
      const e = s.charCodeAt(i + 1);
      i += 2;
      switch (e) {
        case 0x22:
          out += '"';
          break;
        case 0x5c:
          out += '\\';
          break;
        case 0x2f:
          out += '/';
          break;
        case 0x62:
          out += '\b';
          break;
        case 0x66:
          out += '\f';
          break;
        case 0x6e:
          out += '\n';
          break;
        case 0x72:
          out += '\r';
          break;
        case 0x74:
          out += '\t';
          break;
        case 0x75: {
          const hex = s.slice(i, i + 4);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) {
            this.i = i;
            this.fail('bad \\u escape');
          }
          out += String.fromCharCode(parseInt(hex, 16));
          i += 4;
          break;
        }
        default:
          this.i = i - 2;
          this.fail('bad escape in string');
      }
    }
  }

  number(wantBigInt: boolean): number | bigint {
    const s = this.s;
    const start = this.i;
    let i = start;
    if (s.charCodeAt(i) === 0x2d) i++;
    const first = s.charCodeAt(i);
    if (first === 0x30) {
      i++;
    } else if (first >= 0x31 && first <= 0x39) {
      while (isDigit(s.charCodeAt(i))) i++;
    } else {
      this.i = i;
      this.fail('bad number');
    }
    let integer = true;
    if (s.charCodeAt(i) === 0x2e) {
      integer = false;
      i++;
      if (!isDigit(s.charCodeAt(i))) {
        this.i = i;
        this.fail('bad number fraction');
      }
      while (isDigit(s.charCodeAt(i))) i++;
    }
    const ex = s.charCodeAt(i);
    if (ex === 0x65 || ex === 0x45) {
      integer = false;
      i++;
      const sign = s.charCodeAt(i);
      if (sign === 0x2b || sign === 0x2d) i++;
      if (!isDigit(s.charCodeAt(i))) {
        this.i = i;
        this.fail('bad number exponent');
      }
      while (isDigit(s.charCodeAt(i))) i++;
    }
    this.i = i;
    const raw = s.slice(start, i);
    // Integers of at most 64 digits become bigint when asked for (bounded work); longer ones stay
    // (imprecise) doubles, which callers that asked for a bigint reject as out of range.
    if (wantBigInt && integer && raw.length <= 64) return BigInt(raw);
    return Number(raw);
  }
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}
