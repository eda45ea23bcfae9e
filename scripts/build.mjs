#!/usr/bin/env node
/**
 * Build: `tsc -p tsconfig.build.json` (src/, slsa/, bench/ -> dist/), then copy the runtime assets tsc does
 * not emit (toolchain.md: tsc does not copy `.proto` files), then delete outputs whose source is gone.
 *
 * Idempotent and safe to run while another process reads dist/: nothing is deleted up front, files are
 * overwritten in place, and only outputs without a source are pruned afterwards. Assets are copied only
 * when their bytes differ.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, extname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, 'dist');
/** Source trees compiled by tsconfig.build.json (keep in sync with its `include`). */
const SOURCE_DIRS = ['src', 'slsa', 'bench'];
/** Non-TypeScript files under SOURCE_DIRS that code loads at run time. */
const ASSET_EXTENSIONS = new Set(['.proto', '.json', '.yaml', '.yml']);
/** What tsc emits for one `x.ts`. */
const TS_OUTPUTS = ['.js', '.js.map', '.d.ts', '.d.ts.map'];

function walk(dir) {
  if (!existsSync(dir)) return [];
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...walk(p));
    else if (entry.isFile()) out.push(p);
  }
  return out;
}

function runTsc() {
  const tscBin = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tscBin, '-p', join(root, 'tsconfig.build.json')], {
    cwd: root,
    stdio: 'inherit',
  });
  if (r.error) throw r.error;
  return r.status ?? 1;
}

function sameBytes(a, b) {
  if (!existsSync(b)) return false;
  if (statSync(a).size !== statSync(b).size) return false;
  return readFileSync(a).equals(readFileSync(b));
}

function copyAssets() {
  const expected = new Set();
  let copied = 0;
  for (const dir of SOURCE_DIRS) {
    for (const file of walk(join(root, dir))) {
      if (!ASSET_EXTENSIONS.has(extname(file))) continue;
      const target = join(outDir, relative(root, file));
      expected.add(target);
      if (sameBytes(file, target)) continue;
      mkdirSync(dirname(target), { recursive: true });
      copyFileSync(file, target);
      copied++;
    }
  }
  return { expected, copied };
}

/** Remove dist files whose .ts source or asset no longer exists (a renamed module must not linger). */
function pruneStale(assets) {
  let removed = 0;
  for (const dir of SOURCE_DIRS) {
    for (const file of walk(join(outDir, dir))) {
      if (assets.has(file)) continue;
      const rel = relative(outDir, file);
      const suffix = TS_OUTPUTS.find((s) => rel.endsWith(s));
      if (suffix !== undefined && existsSync(join(root, rel.slice(0, -suffix.length) + '.ts'))) continue;
      rmSync(file);
      removed++;
    }
    removeEmptyDirs(join(outDir, dir));
  }
  return removed;
}

function removeEmptyDirs(dir) {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) removeEmptyDirs(join(dir, entry.name));
  }
  if (readdirSync(dir).length === 0) rmSync(dir, { recursive: true });
}

const started = performance.now();
const status = runTsc();
if (status !== 0) {
  console.error(`build: tsc failed with exit code ${status}`);
  process.exit(status);
}
const main = join(outDir, 'src', 'cli', 'main.js');
if (existsSync(join(root, 'src', 'cli', 'main.ts')) && !existsSync(main)) {
  // TypeScript 7's native compiler must emit JavaScript; if it ever stops doing so, fail loudly here.
  console.error('build: tsc exited 0 but emitted no JavaScript (dist/src/cli/main.js is missing)');
  process.exit(1);
}
const { expected, copied } = copyAssets();
const removed = pruneStale(expected);
const ms = Math.round(performance.now() - started);
console.log(`build: dist/ up to date (${copied} assets copied, ${removed} stale files removed, ${ms} ms)`);
