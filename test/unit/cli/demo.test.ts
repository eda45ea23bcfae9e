/** `edgeward demo`: a real agent and a real Workload API call in-process, cross-checked with openssl. */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXIT_OK, main } from '../../../src/cli/index.js';
import { openssl, tempDir } from '../../helpers/index.js';
import { fakeIo } from './fake-io.js';

function section(text: string, title: string): string {
  const start = text.indexOf(`# ${title}\n`);
  expect(start).toBeGreaterThanOrEqual(0);
  const body = text.slice(start + title.length + 3);
  const end = body.indexOf('\n# ');
  return end === -1 ? body : body.slice(0, end + 1);
}

describe('edgeward demo', () => {
  it('starts an agent, registers this process and fetches and validates its SVIDs over the Workload API', async () => {
    const io = fakeIo();
    expect(await main(['demo'], io)).toBe(EXIT_OK);
    const out = io.stdoutText();
    expect(io.stderrText()).toBe('');
    expect(out).toMatch(/^Workload API +SPIFFE_ENDPOINT_SOCKET=unix:\/\/\/.+\/public\/api\.sock$/m);
    expect(out).toMatch(new RegExp(`^workload +this process \\(pid ${process.pid}, uid ${process.getuid?.() ?? 0}\\)`, 'm'));
    expect(out).toMatch(/^X509-SVID +spiffe:\/\/demo\.edgeward\.test\/demo\/workload$/m);
    expect(out).toMatch(/^ {2}validation +valid for spiffe:\/\/demo\.edgeward\.test\/demo\/workload \(path of 2 certificates/m);
    // ValidateJWTSVID accepts the token for its audience and refuses it for another (JWT-SVID 3).
    expect(out).toMatch(/ValidateJWTSVID: valid for spiffe:\/\/demo\.edgeward\.test\/demo\/workload; for another audience: refused \(workload-api\/invalid-argument\)/);
    expect(out).toMatch(/^JWT-SVID +sub spiffe:\/\/demo\.edgeward\.test\/demo\/workload, aud spiffe:\/\/demo\.edgeward\.test\/demo\/api, /m);
    expect(out).not.toContain('-----BEGIN');
  });

  it('--show prints material that openssl accepts', async () => {
    const io = fakeIo();
    expect(await main(['demo', '--show'], io)).toBe(EXIT_OK);
    const out = io.stdoutText();
    const dir = await tempDir();
    await writeFile(join(dir, 'bundle.pem'), section(out, 'bundle (X.509 authorities, PEM)'));
    await writeFile(join(dir, 'chain.pem'), section(out, 'X509-SVID chain (leaf, signing CA)'));
    // An independent path validation: the leaf chains to the bundle's root (RFC 5280).
    const verify = await openssl(['verify', '-x509_strict', '-purpose', 'sslclient', '-CAfile', 'bundle.pem', '-untrusted', 'chain.pem', 'chain.pem'], undefined, { cwd: dir });
    expect(verify.stdout.trim()).toBe('chain.pem: OK');
    const jwt = section(out, 'JWT-SVID').trim();
    expect(jwt.split('.')).toHaveLength(3);
    const header = JSON.parse(Buffer.from(jwt.split('.')[0] as string, 'base64url').toString()) as Record<string, unknown>;
    expect(header).toMatchObject({ alg: 'ES256', typ: 'JWT' }); // JWT-SVID 2
  });

  it('takes no arguments', async () => {
    const io = fakeIo();
    expect(await main(['demo', 'extra'], io)).toBe(2);
  });
});
