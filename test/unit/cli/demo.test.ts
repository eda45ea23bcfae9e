/**
 * `edgeward demo` (what `npm start` runs) as a child process over the compiled dist/ (`npm test` builds
 * first): a real cloud, a real join and a real joined edge, this test's child acting as the workload.
 * Checked: the step-by-step output, the public material with openssl (--show), the --keep mode with a
 * printed operator command, and that every child PID the demo printed is gone and its work dir removed
 * afterwards, also when the demo is stopped by a signal half-way.
 */
import { writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXIT_USAGE, main } from '../../../src/cli/index.js';
import { openssl, runCli, startDaemon, tempDir } from '../../helpers/index.js';
import { fakeIo } from './fake-io.js';

const TD = 'demo.edgeward.test';
const WORKLOAD = `spiffe://${TD}/demo/workload`;
const NODE = `spiffe://${TD}/edgeward/node/demo-node`;

function section(text: string, title: string): string {
  const start = text.indexOf(`# ${title}\n`);
  expect(start).toBeGreaterThanOrEqual(0);
  const body = text.slice(start + title.length + 3);
  const end = body.indexOf('\n# ');
  return end === -1 ? body : body.slice(0, end + 1);
}

/** Every `pid N` the demo printed, and the PIDs of its final `stopped:` line. */
function printedPids(out: string): { all: number[]; stopped: number[] } {
  const all = [...out.matchAll(/\bpid (\d+)/g)].map((m) => Number(m[1]));
  const line = /^stopped: (.*); removed /m.exec(out)?.[1] ?? '';
  const stopped = [...line.matchAll(/ (\d+)/g)].map((m) => Number(m[1]));
  return { all, stopped };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0); // signal 0: existence check only
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function workDir(out: string): string {
  const dir = /^work dir +(\S+) /m.exec(out)?.[1];
  expect(dir).toMatch(/edgeward-demo-/);
  return dir!;
}

describe('edgeward demo', () => {
  it('brings up a cloud and a joined edge, fetches and validates the workload SVIDs, and leaves nothing behind', async () => {
    const r = await runCli(['demo'], { timeoutMs: 90_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = r.stdout;

    // The cloud, its pinned digest, the join and the node identity.
    expect(out).toMatch(/^1\. cloud +edgeward cloud start --data-dir \S+\/cloud --trust-domain demo\.edgeward\.test --listen 127\.0\.0\.1:0$/m);
    expect(out).toMatch(/^ +pid \d+; node API https:\/\/127\.0\.0\.1:\d+ \(TLS 1\.3\)/m);
    expect(out).toContain(`cloud SVID spiffe://${TD}/edgeward/cloud`);
    const digest = /^bundle digest +(sha256:[0-9a-f]{64})$/m.exec(out)?.[1];
    expect(digest).toBeDefined();
    const cloudAddr = /node API https:\/\/(\S+) /.exec(out)?.[1];
    // The join command as `token create` prints it (with --node), against this cloud and this digest.
    expect(out).toMatch(
      new RegExp(`^3\\. edge join +edgeward edge join --cloud ${cloudAddr} --token ewjt_[A-Za-z0-9_-]{43} --bundle-digest ${digest} --node demo-node --data-dir \\S+/edge$`, 'm'),
    );
    expect(out).toMatch(new RegExp(`^node +${NODE} \\(method join_token\\), node SVID valid until \\d{4}-`, 'm'));
    expect(out).toMatch(new RegExp(`^4\\. entry .* --spiffe-id ${WORKLOAD} --parent ${NODE} --selector unix:uid:${process.getuid?.() ?? 0} --selector unix:path:/\\S+$`, 'm'));
    expect(out).toMatch(new RegExp(`joined agent of ${NODE}, cloud reachable: yes, 1 delegated entry$`, 'm'));
    expect(out).toMatch(/^Workload API +SPIFFE_ENDPOINT_SOCKET=unix:\/\/\/.+\/edge\/public\/api\.sock$/m);

    // The workload: its X509-SVID chains to the cloud's CA in the bundle with the pinned digest.
    expect(out).toMatch(/^6\. workload +this process \(pid \d+, uid \d+\), identified by the kernel/m);
    expect(out).toMatch(new RegExp(`^X509-SVID +${WORKLOAD}$`, 'm'));
    expect(out).toMatch(new RegExp(`^ {2}validation +valid for ${WORKLOAD} \\(path of \\d certificates`, 'm')); // X509-SVID 5
    expect(out).toMatch(new RegExp(`^ {2}issuer chain ${WORKLOAD}\\n +<- signed by O=Edgeward, CN=Edgeward Signing CA ${TD}.*\\(signing CA, in the cloud bundle\\)\\n +<- signed by O=Edgeward, CN=Edgeward Root CA ${TD}.*\\(root CA, in the cloud bundle\\)$`, 'm'));
    expect(out).toContain(`the path ends at an authority of the cloud bundle ${digest} (the digest the node pinned)\n`);
    expect(out).toContain("the same signing CA signed the node SVID: one CA, the cloud's");
    // JWT-SVID: valid against the cloud bundle and for its audience only (JWT-SVID 3).
    expect(out).toMatch(new RegExp(`^JWT-SVID +sub ${WORKLOAD}, aud spiffe://${TD}/demo/api, expires .* \\(minted by the cloud\\)$`, 'm'));
    expect(out).toMatch(new RegExp(`^ {2}validation +against the cloud bundle: valid for ${WORKLOAD}$`, 'm'));
    expect(out).toMatch(new RegExp(`ValidateJWTSVID: valid for ${WORKLOAD}; for another audience: refused \\(workload-api/invalid-argument\\)$`, 'm'));
    expect(out).toMatch(/^cloud view +node demo-node: active, method join_token, serial [0-9a-f]+$/m);
    expect(out).not.toContain('-----BEGIN');

    // Resources over the hub (issue #5): the real `edgeward apply -f`, then each version acknowledged by the node.
    expect(out).toMatch(/^7\. resources +edgeward apply -f \S+\/resources\.yaml --data-dir \S+\/cloud$/m);
    expect(out).toMatch(/^ +configmap\/demo-config version (\d+): acknowledged by demo-node at version \1 after it was stored in the node's SQLite$/m);
    expect(out).toMatch(/^ +secret\/demo-secret version (\d+): acknowledged by demo-node at version \1 after it was stored in the node's SQLite$/m);
    expect(out).toMatch(/^ +hub session: connected \(mTLS WebSocket, both sides by SVID\)/m);
    expect(out).toMatch(/^on the node +edgeward get secret demo-secret --data-dir \S+\/edge: version \d+, data \{"data":\{"password":"<redacted \d+ bytes>"\}\}/m);
    // The secret's value is never printed.
    expect(out).not.toContain('demo-only-not-a-real-password');
    expect(out).not.toContain(Buffer.from('demo-only-not-a-real-password').toString('base64'));

    // Step 8 (issue #6): a device enrolled with a token, reported over MQTT with mTLS, got its desired value.
    expect(out).toMatch(/^device SVID    spiffe:\/\/demo\.edgeward\.test\/edgeward\/device\/default\/demo-sensor, /m);
    expect(out).toMatch(/^cloud view     .*: Online, reported temperature 21\.7, setpoint 21\.0, last seen /m);
    expect(out).toMatch(/setpoint 21\.0 -> 23\.5 applied on the cloud .*reported setpoint 23\.5$/m);
    expect(out).not.toMatch(/ewdt_/);

    // Cloud, join, edge, apply, and step 8's apply, device token, device enroll and apply: eight child PIDs,
    // all stopped, and the work dir is gone.
    const pids = printedPids(out);
    expect(pids.stopped).toHaveLength(8);
    for (const p of pids.stopped) expect(pids.all).toContain(p);
    for (const p of pids.stopped) expect(alive(p), `pid ${p}`).toBe(false);
    expect(existsSync(workDir(out))).toBe(false);
  }, 120_000);

  it('--show prints public material that openssl accepts (and no private key)', async () => {
    const r = await runCli(['demo', '--show'], { timeoutMs: 90_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = r.stdout;
    expect(out).not.toMatch(/PRIVATE KEY/);
    const dir = await tempDir();
    await writeFile(join(dir, 'bundle.pem'), section(out, 'bundle (X.509 authorities, PEM)'));
    await writeFile(join(dir, 'chain.pem'), section(out, 'X509-SVID chain (leaf, signing CA)'));
    await writeFile(join(dir, 'node.pem'), section(out, 'node X509-SVID chain (leaf, signing CA)'));
    // Independent path validation: both leaves chain to the cloud bundle (RFC 5280).
    for (const f of ['chain.pem', 'node.pem']) {
      const verify = await openssl(['verify', '-x509_strict', '-purpose', 'sslclient', '-CAfile', 'bundle.pem', '-untrusted', f, f], undefined, { cwd: dir });
      expect(verify.stdout.trim()).toBe(`${f}: OK`);
    }
    const text = await openssl(['x509', '-noout', '-ext', 'subjectAltName', '-in', 'node.pem'], undefined, { cwd: dir });
    expect(text.stdout).toContain(`URI:${NODE}`);
    const jwt = section(out, 'JWT-SVID').trim().split('\n')[0]!;
    expect(jwt.split('.')).toHaveLength(3);
    const header = JSON.parse(Buffer.from(jwt.split('.')[0] as string, 'base64url').toString()) as Record<string, unknown>;
    expect(header).toMatchObject({ alg: 'ES256', typ: 'JWT' }); // JWT-SVID 2
    const payload = JSON.parse(Buffer.from(jwt.split('.')[1] as string, 'base64url').toString()) as Record<string, unknown>;
    expect(payload['sub']).toBe(WORKLOAD);
  }, 120_000);

  it('--keep keeps the cloud and the edge up for the printed commands, and stops them on Ctrl-C', async () => {
    const d = startDaemon(['demo', '--keep']);
    try {
      await d.waitForLine(/^Running until Ctrl-C: cloud pid \d+, edge pid \d+\./, 90_000);
      const out = () => d.stdout.join('\n');
      const nodeList = /^ {2}edgeward (node list --data-dir \S+)$/m.exec(out())?.[1];
      expect(nodeList).toBeDefined();
      const list = await runCli(nodeList!.split(' ').concat('--json'));
      expect(list.stderr).toBe('');
      expect(list.code).toBe(0);
      expect(JSON.parse(list.stdout)).toMatchObject([{ name: 'demo-node', status: 'active', method: 'join_token' }]);
      // This test's CLI child runs as the same uid with the same node binary: it matches the entry.
      const fetch = /^ {2}edgeward (svid fetch --socket \S+)$/m.exec(out())?.[1];
      expect(fetch).toBeDefined();
      const svid = await runCli(fetch!.split(' ').concat('--json'));
      expect(svid.stderr).toBe('');
      expect(svid.code).toBe(0);
      expect((JSON.parse(svid.stdout) as { svids: Array<{ spiffe_id: string }> }).svids.map((s) => s.spiffe_id)).toEqual([WORKLOAD]);

      expect(await d.stop('SIGINT')).toBe(0);
      const text = out();
      expect(text).toMatch(/^SIGINT: stopping\.$/m);
      const pids = printedPids(text);
      expect(pids.stopped).toHaveLength(8);
      for (const p of pids.stopped) expect(alive(p), `pid ${p}`).toBe(false);
      expect(existsSync(workDir(text))).toBe(false);
    } finally {
      await d.stop();
    }
  }, 120_000);

  it('stopped by SIGTERM while the cloud runs, it stops the cloud (by its PID) and removes its work dir', async () => {
    const d = startDaemon(['demo', '--keep']);
    try {
      const line = await d.waitForLine(/^ +pid \d+; node API https:/, 90_000);
      const cloudPid = Number(/pid (\d+)/.exec(line)?.[1]);
      expect(alive(cloudPid)).toBe(true);
      await d.stop('SIGTERM');
      const text = d.stdout.join('\n');
      const pids = printedPids(text);
      expect(pids.stopped).toContain(cloudPid);
      for (const p of pids.stopped) expect(alive(p), `pid ${p}`).toBe(false);
      expect(existsSync(workDir(text))).toBe(false);
    } finally {
      await d.stop();
    }
  }, 120_000);

  it('takes no arguments', async () => {
    const io = fakeIo();
    expect(await main(['demo', 'extra'], io)).toBe(EXIT_USAGE);
  });
});
