/**
 * Architecture guard (architecture.md "Shape"): fails when a forbidden import appears in src/.
 * The second half checks the checker itself on bad samples, so that a regex that silently matches
 * nothing cannot make the guard pass.
 */
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/index.js';
import { checkSource, checkTree, findImports, formatViolations, lex, listTsFiles } from './import-rules.js';

describe('src/ layering', () => {
  it('scans the real tree', () => {
    expect(listTsFiles(REPO_ROOT, 'src')).toContain('src/identity/index.ts');
  });

  it('has no forbidden imports, impure code in pure folders, or default exports', () => {
    const violations = checkTree(REPO_ROOT);
    expect(formatViolations(violations)).toBe('');
  });
});

const rules = (file: string, src: string): string[] => checkSource(file, src).map((v) => v.rule);

describe('the import checker', () => {
  it('finds every import form with its line and type-only flag', () => {
    const src = [
      "import { a } from './a.js';",
      "import type { B } from '../b/index.js';",
      'import {',
      '  c,',
      "} from 'node:fs';",
      "export { d } from './d.js';",
      "export type { E } from './e.js';",
      "export * from './f.js';",
      "import 'side-effect';",
      "const g = await import('./g.js');",
      "const h = require('node:net');",
    ].join('\n');
    expect(findImports(src).map((r) => [r.specifier, r.typeOnly, r.line])).toEqual([
      ['./a.js', false, 1],
      ['../b/index.js', true, 2],
      ['node:fs', false, 5], // the line of the specifier
      ['./d.js', false, 6],
      ['./e.js', true, 7],
      ['./f.js', false, 8],
      ['side-effect', false, 9],
      ['./g.js', false, 10],
      ['node:net', false, 11],
    ]);
  });

  it('ignores comments, strings and regex literals', () => {
    const src = [
      '// Date.now() and import x from "node:fs" in a comment',
      '/* setTimeout(f, 1); export default 1 */',
      "const s = 'Date.now() import y from \"node:net\"';",
      'const url = "spiffe://td/path"; const n = 1; // tail Date.now()',
      "const re = /['\"]Date.now()/;",
      'const t = `setInterval ${"x"}`;',
    ].join('\n');
    expect(findImports(src)).toEqual([]);
    expect(checkSource('src/identity/x.ts', src)).toEqual([]);
    const { code, bare } = lex(src);
    expect(code.length).toBe(src.length);
    expect(bare.split('\n').length).toBe(src.split('\n').length);
  });

  it('flags cloud <-> edge imports', () => {
    expect(rules('src/cloud/server.ts', "import { x } from '../edge/index.js';")).toContain('layering');
    expect(rules('src/edge/agent.ts', "import type { X } from '../cloud/index.js';")).toContain('layering');
  });

  it('flags src/identity importing outside itself, except node:crypto, node:buffer, jose and type-only packages', () => {
    expect(rules('src/identity/x509/svid.ts', "import { p } from '../../protocol/index.js';")).toContain('layering');
    expect(rules('src/identity/a.ts', "import { parse } from 'yaml';")).toContain('layering');
    expect(rules('src/identity/a.ts', "import pino from 'pino';")).toContain('layering');
    expect(
      rules(
        'src/identity/a.ts',
        [
          "import { createHash } from 'node:crypto';",
          "import { Buffer } from 'node:buffer';",
          "import { SignJWT } from 'jose';",
          "import type { Logger } from 'pino';",
          "import { x } from './x509/certificate.js';",
          "import { y } from '../identity/spiffe-id.js';",
        ].join('\n'),
      ),
    ).toEqual([]);
  });

  it('flags src/attestation importing cloud, edge, cli or protocol', () => {
    for (const f of ['cloud', 'edge', 'cli', 'protocol']) {
      expect(rules('src/attestation/tpm.ts', `import { x } from '../${f}/index.js';`)).toContain('layering');
    }
    expect(rules('src/attestation/tpm.ts', "import { x } from '../identity/index.js';")).toEqual([]);
  });

  it('flags src/protocol importing cloud or edge', () => {
    expect(rules('src/protocol/codec.ts', "import { x } from '../cloud/index.js';")).toContain('layering');
    expect(rules('src/protocol/codec.ts', "export { y } from '../edge/index.js';")).toContain('layering');
    expect(rules('src/protocol/codec.ts', "import { x } from '../identity/index.js';")).toEqual([]);
  });

  it('flags deep imports across folders and imports from outside src/', () => {
    expect(rules('src/cloud/a.ts', "import { x } from '../identity/x509/svid.js';")).toEqual(['deep-import']);
    expect(rules('src/cli/a.ts', "import { x } from '../identity/errors.js';")).toEqual(['deep-import']);
    expect(rules('src/cloud/a.ts', "import { x } from '../identity/index.js';")).toEqual([]);
    expect(rules('src/cloud/deep/a.ts', "import { x } from '../b.js';")).toEqual([]);
    expect(rules('src/cloud/a.ts', "import { x } from '../../test/helpers/index.js';")).toEqual(['outside-src']);
  });

  it('flags I/O modules, wall-clock time and timers in pure folders only', () => {
    for (const m of ['fs', 'node:fs', 'node:fs/promises', 'net', 'node:tls', 'http', 'node:https', 'child_process', 'node:dgram', 'node:timers/promises']) {
      expect(rules('src/identity/a.ts', `import { x } from '${m}';`)).toContain('purity');
      expect(rules('src/attestation/a.ts', `import { x } from '${m}';`)).toContain('purity');
      expect(rules('src/cloud/a.ts', `import { x } from '${m}';`)).toEqual([]);
    }
    for (const stmt of ['const t = Date.now();', 'const d = new Date();', 'setTimeout(f, 10);', 'const i = setInterval(f, 10);']) {
      expect(rules('src/attestation/a.ts', stmt)).toEqual(['purity']);
      expect(rules('src/identity/a.ts', stmt)).toEqual(['purity']);
      expect(rules('src/edge/a.ts', stmt)).toEqual([]);
    }
    expect(rules('src/identity/a.ts', 'const d = new Date(ms).toISOString();')).toEqual([]);
    expect(rules('src/identity/a.ts', "import type { Stats } from 'node:fs';")).toEqual([]);
  });

  it('flags default exports anywhere in src/', () => {
    expect(rules('src/cloud/a.ts', 'export default function f() {}')).toEqual(['no-default-export']);
    expect(rules('src/protocol/a.ts', 'const x = 1;\nexport { x as default };')).toEqual(['no-default-export']);
    expect(rules('test/x.test.ts', 'export default 1;')).toEqual([]);
  });

  it('reports file and line', () => {
    const v = checkSource('src/identity/a.ts', "const a = 1;\n\nconst t = Date.now();\n");
    expect(v).toEqual([{ file: 'src/identity/a.ts', line: 3, rule: 'purity', message: expect.stringContaining('Date.now()') }]);
  });
});
