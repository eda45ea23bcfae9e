/**
 * vitest globalSetup: a private XDG_CONFIG_HOME for the whole run. Joined and SPIRE-mode edges started
 * without `--secrets-key-file` keep their hub key-encryption key under `$XDG_CONFIG_HOME/edgeward/` (outside
 * their data dir, by design); tests must never write keys into the real home directory. The test workers
 * and every process they start inherit it; it is removed at the end of the run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'edgeward-test-xdg-'));
  const previous = process.env['XDG_CONFIG_HOME'];
  process.env['XDG_CONFIG_HOME'] = dir;
  return () => {
    if (previous === undefined) delete process.env['XDG_CONFIG_HOME'];
    else process.env['XDG_CONFIG_HOME'] = previous;
    rmSync(dir, { recursive: true, force: true });
  };
}
