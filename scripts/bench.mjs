#!/usr/bin/env node
/**
 * Benchmarks: `npm run bench -- NAME [NAME...]` runs dist/bench/NAME.js; `npm run bench` lists the
 * benches in bench/ and runs them all, one after another. `prebench` builds first.
 *
 * Targets are stated "on one core", so each bench is pinned to CPU 0 with `taskset -c 0` when taskset
 * exists (util-linux); otherwise it runs unpinned and says so.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/**
 * Bench entry points: bench/*.ts, except modules that other bench files import (shared helpers such as
 * bench/harness.ts are libraries, not benches).
 */
function listBenches() {
  const dir = join(root, 'bench');
  if (!existsSync(dir)) return [];
  const names = readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts'))
    .map((e) => e.name.slice(0, -'.ts'.length));
  const imported = new Set();
  for (const name of names) {
    const text = readFileSync(join(dir, `${name}.ts`), 'utf8');
    for (const m of text.matchAll(/from\s*['"]\.\/([A-Za-z0-9._-]+)\.js['"]/g)) imported.add(m[1]);
  }
  return names.filter((n) => !imported.has(n)).sort();
}

function hasTaskset() {
  return spawnSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' }).status === 0;
}

function run(name, pinned) {
  const script = join(root, 'dist', 'bench', `${name}.js`);
  if (!existsSync(script)) {
    console.error(`bench: ${name}: dist/bench/${name}.js is missing (run \`npm run build\`)`);
    return 1;
  }
  const [cmd, args] = pinned ? ['taskset', ['-c', '0', process.execPath, script]] : [process.execPath, [script]];
  console.log(`bench: ${name}${pinned ? ' (pinned to CPU 0)' : ''}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.error) {
    console.error(`bench: ${name}: ${r.error.message}`);
    return 1;
  }
  return r.status ?? 1;
}

const available = listBenches();
const requested = process.argv.slice(2);
for (const name of requested) {
  if (!NAME.test(name) || !available.includes(name)) {
    console.error(`bench: unknown bench "${name}"; available: ${available.join(', ') || '(none)'}`);
    process.exit(2);
  }
}
const pinned = hasTaskset();
if (!pinned) console.error('bench: taskset not found; running unpinned');
if (requested.length === 0) console.log(`bench: available: ${available.join(', ') || '(none)'}`);

let failures = 0;
for (const name of requested.length > 0 ? requested : available) {
  if (run(name, pinned) !== 0) failures++;
}
process.exit(failures === 0 ? 0 : 1);
