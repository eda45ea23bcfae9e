#!/usr/bin/env node
// Launcher for the `edgeward` CLI: runs the compiled dispatcher in dist/ (build it with `npm run build`).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/src/cli/main.js', import.meta.url);
let main;
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write('edgeward: cli/not-built: dist/ is missing; run `npm run build` first\n');
} else {
  try {
    ({ main } = await import(entry.href));
  } catch (e) {
    const detail = process.env.EDGEWARD_DEBUG === '1' && e instanceof Error ? `\n${e.stack}` : '';
    process.stderr.write(`edgeward: cli/not-built: cannot load dist/src/cli/main.js (run \`npm run build\`): ${e instanceof Error ? e.message : String(e)}${detail}\n`);
  }
}
// main() never throws; it returns the exit code.
process.exitCode = main === undefined ? 1 : await main(process.argv.slice(2));
