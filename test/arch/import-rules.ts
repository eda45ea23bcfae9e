/**
 * The layering rules of architecture.md, checked over source text (no compiler needed).
 *
 *   identity <- attestation <- {cloud, edge};  protocol is imported by cloud and edge only;
 *   cloud and edge never import each other; one index.ts per folder, no deep imports across folders;
 *   identity and attestation are pure (no fs/net/timers/Date.now); named exports only.
 *
 * Comments are removed, and string/template/regex contents blanked, before any pattern is applied, so
 * that `Date.now()` in a comment or `'import x from "y"'` in a string does not count.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, posix, relative, sep } from 'node:path';

export interface Violation {
  file: string;
  line: number;
  rule: string;
  message: string;
}

export interface ImportRef {
  specifier: string;
  typeOnly: boolean;
  line: number;
}

/** Folders whose code must be pure (architecture.md "Pure core, I/O at the edges"). */
const PURE_FOLDERS = new Set(['identity', 'attestation']);
/** Modules that do I/O or keep time; forbidden (as values) in pure folders. */
const IO_MODULES = new Set(['fs', 'net', 'tls', 'http', 'https', 'http2', 'child_process', 'dgram', 'timers', 'worker_threads', 'cluster']);
/** The only non-relative modules src/identity may import as values. */
const IDENTITY_ALLOWED_PACKAGES = new Set(['node:crypto', 'node:buffer', 'crypto', 'buffer', 'jose']);
/** folder -> folders it must not import. */
const FORBIDDEN_FOLDER_IMPORTS: Readonly<Record<string, readonly string[]>> = {
  cloud: ['edge'],
  edge: ['cloud'],
  attestation: ['cloud', 'edge', 'cli', 'protocol'],
  protocol: ['cloud', 'edge'],
};

/**
 * Blank out comments (everything) and the contents of strings, templates and regex literals (keeping
 * the delimiters). Both results have the input's length and newlines, so offsets and lines match.
 */
export function lex(src: string): { code: string; bare: string } {
  const code = src.split('');
  const bare = src.split('');
  const blank = (arr: string[], from: number, to: number): void => {
    for (let k = from; k < to; k++) if (arr[k] !== '\n') arr[k] = ' ';
  };
  let i = 0;
  let lastSignificant = ''; // previous non-space char outside comments, to tell a regex from a division
  let lastWord = '';
  while (i < src.length) {
    const c = src[i] as string;
    const next = src[i + 1];
    if (c === '/' && next === '/') {
      let j = src.indexOf('\n', i);
      if (j === -1) j = src.length;
      blank(code, i, j);
      blank(bare, i, j);
      i = j;
      continue;
    }
    if (c === '/' && next === '*') {
      let j = src.indexOf('*/', i + 2);
      j = j === -1 ? src.length : j + 2;
      blank(code, i, j);
      blank(bare, i, j);
      i = j;
      continue;
    }
    if (c === "'" || c === '"' || c === '`') {
      let j = i + 1;
      while (j < src.length && src[j] !== c) {
        if (src[j] === '\\') j++;
        else if (c !== '`' && src[j] === '\n') break; // unterminated: stop at end of line
        j++;
      }
      blank(bare, i + 1, Math.min(j, src.length));
      i = j + 1;
      lastSignificant = c;
      lastWord = '';
      continue;
    }
    const regexAllowed = lastSignificant === '' || '(,=:[!&|?{};+-*%<>~^'.includes(lastSignificant) || ['return', 'typeof', 'case', 'do', 'else', 'in', 'of', 'void', 'yield', 'await'].includes(lastWord);
    if (c === '/' && regexAllowed) {
      let j = i + 1;
      let inClass = false;
      while (j < src.length && src[j] !== '\n') {
        const d = src[j];
        if (d === '\\') j++;
        else if (d === '[') inClass = true;
        else if (d === ']') inClass = false;
        else if (d === '/' && !inClass) break;
        j++;
      }
      blank(bare, i + 1, j);
      i = j + 1;
      lastSignificant = '/';
      lastWord = '';
      continue;
    }
    if (!/\s/.test(c)) {
      if (/[A-Za-z0-9_$]/.test(c)) {
        let j = i;
        while (j < src.length && /[A-Za-z0-9_$]/.test(src[j] as string)) j++;
        lastWord = src.slice(i, j);
        lastSignificant = src[j - 1] as string;
        i = j;
        continue;
      }
      lastSignificant = c;
      lastWord = '';
    }
    i++;
  }
  return { code: code.join(''), bare: bare.join('') };
}

function lineAt(text: string, offset: number): number {
  let n = 1;
  for (let k = 0; k < offset; k++) if (text.charCodeAt(k) === 10) n++;
  return n;
}

/** The quoted string starting at `quoteAt` in `code`. */
function stringAt(code: string, quoteAt: number): string {
  const q = code[quoteAt] as string;
  const end = code.indexOf(q, quoteAt + 1);
  return code.slice(quoteAt + 1, end === -1 ? undefined : end);
}

/** Every static import/export-from, side-effect import, dynamic import() and require() of a module. */
export function findImports(src: string): ImportRef[] {
  const { code, bare } = lex(src);
  const refs: ImportRef[] = [];
  const add = (quoteAt: number, typeOnly: boolean): void => {
    refs.push({ specifier: stringAt(code, quoteAt), typeOnly, line: lineAt(src, quoteAt) });
  };
  // import x from '…' | import type {…} from '…' | export {…} from '…' | export * from '…'
  for (const m of bare.matchAll(/\b(import|export)(\s+type\b)?((?:(?!\b(?:import|export)\b)[^;'"`])*?)\bfrom\s*(['"])/g)) {
    add((m.index ?? 0) + m[0].length - 1, m[2] !== undefined);
  }
  // import '…' (side effect)
  for (const m of bare.matchAll(/\bimport\s*(['"])/g)) add((m.index ?? 0) + m[0].length - 1, false);
  // import('…') and require('…')
  for (const m of bare.matchAll(/\b(?:import|require)\s*\(\s*(['"])/g)) add((m.index ?? 0) + m[0].length - 1, false);
  return refs;
}

/** Top-level folder of a path under src/ (`src/cloud/x.ts` -> `cloud`; `src/index.ts` -> ''). */
function folderOf(srcRelPath: string): string {
  const parts = srcRelPath.split('/');
  return parts.length > 2 ? (parts[1] as string) : '';
}

function builtinName(spec: string): string | undefined {
  const s = spec.startsWith('node:') ? spec.slice(5) : spec;
  const base = s.split('/')[0] as string;
  return IO_MODULES.has(base) ? base : undefined;
}

/**
 * Check one file. `file` is its repository-relative POSIX path (e.g. `src/identity/x509/svid.ts`);
 * files outside src/ are not checked.
 */
export function checkSource(file: string, src: string): Violation[] {
  if (!file.startsWith('src/') || !file.endsWith('.ts')) return [];
  const out: Violation[] = [];
  const v = (line: number, rule: string, message: string): void => {
    out.push({ file, line, rule, message });
  };
  const folder = folderOf(file);
  const pure = PURE_FOLDERS.has(folder);

  for (const ref of findImports(src)) {
    const spec = ref.specifier;
    if (spec.startsWith('.')) {
      const target = posix.normalize(posix.join(posix.dirname(file), spec));
      if (!target.startsWith('src/')) {
        v(ref.line, 'outside-src', `imports ${spec}, which is outside src/`);
        continue;
      }
      const targetFolder = folderOf(target);
      if (targetFolder === folder) continue;
      const forbidden = FORBIDDEN_FOLDER_IMPORTS[folder] ?? [];
      if (forbidden.includes(targetFolder)) {
        v(ref.line, 'layering', `src/${folder} must not import src/${targetFolder} (${spec})`);
      } else if (folder === 'identity') {
        v(ref.line, 'layering', `src/identity must not import anything outside src/identity (${spec})`);
      }
      if (targetFolder !== '' && target !== `src/${targetFolder}/index.js`) {
        v(ref.line, 'deep-import', `import src/${targetFolder} through its index.js, not ${spec}`);
      }
      continue;
    }
    // Bare specifiers: packages and builtins. Type-only imports are erased and have no run-time effect.
    if (ref.typeOnly) continue;
    const io = builtinName(spec);
    if (pure && io !== undefined) v(ref.line, 'purity', `src/${folder} is pure and must not import ${spec}`);
    else if (folder === 'identity' && !IDENTITY_ALLOWED_PACKAGES.has(spec)) {
      v(ref.line, 'layering', `src/identity may import only node:crypto, node:buffer and jose, not ${spec}`);
    }
  }

  const { bare } = lex(src);
  const scan = (re: RegExp, rule: string, message: (m: RegExpMatchArray) => string): void => {
    for (const m of bare.matchAll(re)) v(lineAt(src, m.index ?? 0), rule, message(m));
  };
  scan(/\bexport\s+default\b/g, 'no-default-export', () => 'export default is not allowed (named exports only)');
  scan(/\bexport\s*(?:type\s*)?\{[^}]*\bas\s+default\b/g, 'no-default-export', () => 'export { x as default } is not allowed');
  if (pure) {
    scan(/\bDate\s*\.\s*now\b/g, 'purity', () => `src/${folder} is pure: take time as a parameter, not Date.now()`);
    scan(/\bnew\s+Date\s*\(\s*\)/g, 'purity', () => `src/${folder} is pure: new Date() reads the wall clock`);
    scan(/\b(setTimeout|setInterval|setImmediate)\b/g, 'purity', (m) => `src/${folder} is pure: no ${m[1] as string}`);
  }
  return out;
}

/** All .ts files under `dir` (recursively), as repository-relative POSIX paths. */
export function listTsFiles(root: string, dir: string): string[] {
  const out: string[] = [];
  const walk = (abs: string): void => {
    for (const e of readdirSync(abs, { withFileTypes: true })) {
      const p = join(abs, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && e.name.endsWith('.ts')) out.push(relative(root, p).split(sep).join('/'));
    }
  };
  walk(join(root, dir));
  return out.sort();
}

/** Check every .ts file under `<root>/src`. */
export function checkTree(root: string): Violation[] {
  return listTsFiles(root, 'src').flatMap((f) => checkSource(f, readFileSync(join(root, f), 'utf8')));
}

export function formatViolations(vs: readonly Violation[]): string {
  return vs.map((x) => `${x.file}:${x.line}: [${x.rule}] ${x.message}`).join('\n');
}
