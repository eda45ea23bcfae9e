import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { freePort, openssl, runCli, tempDir } from '../../helpers/index.js';

describe('test helpers', () => {
  let made = '';
  it('tempDir makes a directory under the OS temp dir', async () => {
    made = await tempDir();
    expect(existsSync(made)).toBe(true);
  });
  it('tempDir removed it after the test that made it', () => {
    expect(made).not.toBe('');
    expect(existsSync(made)).toBe(false);
  });

  it('freePort returns a port that can be bound on 127.0.0.1', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', resolve);
    });
    await new Promise((resolve) => server.close(resolve));
  });

  it('openssl returns output, throws on failure unless allowed', async () => {
    expect((await openssl(['version'])).stdout).toMatch(/^OpenSSL 3\./);
    const b64 = await openssl(['base64', '-d'], 'aGVsbG8=\n');
    expect(b64.stdoutBytes.toString()).toBe('hello');
    const bad = ['x509', '-noout', '-in', '/nonexistent/edgeward.pem'];
    await expect(openssl(bad)).rejects.toThrow(/openssl x509 -noout -in \/nonexistent\/edgeward\.pem failed/);
    const allowed = await openssl(bad, undefined, { allowFailure: true });
    expect(allowed.code).not.toBe(0);
    expect(allowed.stderr).not.toBe('');
  });

  it('runCli reports exit code, stdout and stderr', async () => {
    const r = await runCli(['--bogus']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('cli/usage');
  });
});
