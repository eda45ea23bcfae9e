/**
 * Temporary directories that are removed after the test that made them, or, when made outside a test
 * (beforeAll, describe body), after the test file.
 *
 * Vitest ignores afterAll hooks registered from inside beforeAll, and its fork workers end without an
 * 'exit' event, so the file-level hook is registered once when this module is imported (vitest imports
 * it afresh for every test file).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, onTestFinished } from 'vitest';

const fileScoped = new Set<string>();

try {
  afterAll(async () => {
    const dirs = [...fileScoped];
    fileScoped.clear();
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });
} catch {
  // imported outside a test file's collection phase: only per-test cleanup is available
}

/** mkdtemp under the OS temp dir (prefix `edgeward-`), removed automatically (see above). */
export async function tempDir(prefix = 'edgeward-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  try {
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
  } catch {
    fileScoped.add(dir); // not inside a test
  }
  return dir;
}
