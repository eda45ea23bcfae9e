/**
 * `edgeward demo [--show] [--keep]`: what `npm start` runs. Everything it shows happens for real on this
 * machine, with embedded defaults, in a temporary directory:
 *
 * 1. a cloud core starts as a child process (`edgeward cloud start --listen 127.0.0.1:0`) and prints its
 *    address and bundle digest;
 * 2. a one-time join token is created for one node name through the cloud's private admin socket;
 * 3. the printed join command runs as a child process (`edgeward edge join ...`): the cloud bundle is
 *    pinned by digest, the node key is made on the node, the node receives its node SVID;
 * 4. a registration entry for this process (unix:uid + unix:path) is created on the cloud, delegated to
 *    the node (parent = the node's SPIFFE ID);
 * 5. the joined edge agent starts as a child process (`edgeward edge start --data-dir ...`);
 * 6. this process then acts as a workload: it calls the edge's Workload API, is identified by the kernel
 *    (SO_PEERCRED, no credentials sent), receives its X509-SVID (signed by the cloud's CA) and a JWT-SVID
 *    (minted by the cloud), and validates both against the cloud's bundle, whose digest is the pinned one;
 * 7. a sample ConfigMap and Secret are applied to the cloud with the real `edgeward apply -f`; the cloud's
 *    hub pushes them over the node's mTLS WebSocket, the edge stores them (sealed) in its SQLite and
 *    acknowledges them; the demo shows each version acknowledged by the node, and the node's own copy;
 * 8. a device (issue #6): a DeviceModel and a Device are applied, a one-time bootstrap token is made, the
 *    device enrols at the node with the reference client `edgeward device enroll`, then this process acts as
 *    the device over MQTT with mTLS: it reports a reading, receives the desired value on its twin delta topic,
 *    and the reported values reach the cloud (demo-device.ts);
 * 9. the child processes are stopped (only the PIDs started here, SIGTERM then SIGKILL after a grace
 *    period) and the temporary directory is removed: at the end, on Ctrl-C or SIGTERM, and on any failure.
 *
 * With `--keep` everything stays up until Ctrl-C, and the demo prints commands an operator can try.
 * The children are the same program: `process.execPath` running this package's `bin/edgeward.js`.
 */
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  certsFromPem,
  certToPem,
  EdgewardError,
  parseBundleJson,
  TrustDomain,
  validateJwtSvidSync,
  validateX509Svid,
  x509AuthoritiesPem,
  type ParsedCertificate,
  type TrustBundle,
} from '../../identity/index.js';
import { adminCall, WorkloadApiClient } from '../../protocol/index.js';
import { defineCommand } from '../command.js';
import { joinCommand } from './token.js';
import { DemoError, READY_TIMEOUT_MS, startChild, type Child } from './demo-child.js';
import { runDeviceDemo } from './demo-device.js';

export { DemoError, type DemoErrorCode } from './demo-child.js';

const DEMO_TRUST_DOMAIN = 'demo.edgeward.test';
const NODE_NAME = 'demo-node';
const CLOUD_ID = `spiffe://${DEMO_TRUST_DOMAIN}/edgeward/cloud`;
const NODE_ID = `spiffe://${DEMO_TRUST_DOMAIN}/edgeward/node/${NODE_NAME}`;
const WORKLOAD_ID = `spiffe://${DEMO_TRUST_DOMAIN}/demo/workload`;
const JWT_AUDIENCE = `spiffe://${DEMO_TRUST_DOMAIN}/demo/api`;

const iso = (ms: number): string => new Date(ms).toISOString();

/** This package's `bin/edgeward.js` (found upwards from this file: works from src/ and dist/src/). */
function binPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        const name = (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: unknown }).name;
        if (name === 'edgeward' && existsSync(join(dir, 'bin', 'edgeward.js'))) return join(dir, 'bin', 'edgeward.js');
      } catch {
        // not our package.json; keep looking
      }
    }
    dir = dirname(dir);
  }
  throw new DemoError('demo/not-built', 'cannot find bin/edgeward.js of the edgeward package');
}

/** The path the kernel reports for this process's executable (what the `unix:path` selector matches). */
function ownExecutable(): string {
  try {
    return readlinkSync('/proc/self/exe');
  } catch {
    return process.execPath;
  }
}

/** `O=x, CN=y` from node:crypto's multi-line form. */
function subjectText(der: Buffer): string {
  try {
    const s = new X509Certificate(der).subject.split('\n').filter((p) => p !== '').join(', ');
    return s === '' ? '(empty subject)' : s;
  } catch {
    return '(unparsable subject)';
  }
}

/**
 * The issuers above a validated path's leaf, described for people: the path's CA certificates, then the
 * bundle authorities that issued the trust anchor, up to a self-issued root (at most 4 steps).
 */
function issuerChain(path: readonly ParsedCertificate[], bundle: TrustBundle): string[] {
  const describe = (x: X509Certificate, inBundle: boolean): string => {
    const self = x.checkIssued(x);
    return `${subjectText(x.raw)} (${self ? 'root CA' : 'signing CA'}${inBundle ? ', in the cloud bundle' : ''})`;
  };
  const authorities = bundle.x509Authorities.map((d) => new X509Certificate(d));
  const isAuthority = (x: X509Certificate): boolean => authorities.some((a) => a.raw.equals(x.raw));
  const lines = path.slice(1).map((c) => {
    const x = new X509Certificate(c.raw);
    return describe(x, isAuthority(x));
  });
  let top = new X509Certificate(path[path.length - 1]!.raw);
  for (let i = 0; i < 4 && !top.checkIssued(top); i++) {
    const parent = authorities.find((a) => !a.raw.equals(top.raw) && top.checkIssued(a) && top.verify(a.publicKey));
    if (parent === undefined) break;
    lines.push(describe(parent, true));
    top = parent;
  }
  return lines;
}

// ------------------------------------------------------------------------------------ the command

interface TokenOut {
  token: string;
  node: string;
  expiresAt: number;
  bundleDigest: string;
  cloud: string;
}

interface CloudStatus {
  spiffeId: string;
  svid: { serial: string; notAfter: number };
  bundleDigest: string;
}

interface EdgeStatus {
  node: { spiffeId: string; serial: string; notAfter: number; nextRenewalAt: number | null };
  cloud: { reachable: boolean | null };
  entries: number;
}

/** What step 7 applies (written to the work dir and applied with the real `edgeward apply -f`). */
const DEMO_RESOURCES = [
  { kind: 'ConfigMap', name: 'demo-config' },
  { kind: 'Secret', name: 'demo-secret' },
] as const;
const DEMO_RESOURCES_YAML = `apiVersion: edgeward.io/v1
kind: ConfigMap
metadata:
  name: demo-config
  nodes: [${NODE_NAME}]
data:
  LOG_LEVEL: info
  SAMPLE_RATE_HZ: "10"
---
apiVersion: edgeward.io/v1
kind: Secret
metadata:
  name: demo-secret
  nodes: [${NODE_NAME}]
stringData:
  password: demo-only-not-a-real-password
`;

interface ResourceViewOut {
  kind: string;
  name: string;
  version: number;
  data: Record<string, unknown>;
  acks?: Array<{ node: string; version: number; current: boolean }>;
}

/** Poll the cloud until `node` acknowledged the current version of every resource (bounded). */
async function waitForAcks(
  cloudAdmin: string,
  node: string,
  wanted: ReadonlyArray<{ kind: string; name: string }>,
  timeoutMs: number,
): Promise<Array<{ kind: string; name: string; version: number; ackedVersion: number }>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const out: Array<{ kind: string; name: string; version: number; ackedVersion: number }> = [];
    for (const w of wanted) {
      const r = (await adminCall(cloudAdmin, 'resource.get', { kind: w.kind, name: w.name })) as { items: ResourceViewOut[] };
      const v = r.items[0];
      const ack = v?.acks?.find((a) => a.node === node && a.current);
      if (v !== undefined && ack !== undefined) out.push({ kind: v.kind, name: v.name, version: v.version, ackedVersion: ack.version });
    }
    if (out.length === wanted.length) return out;
    if (Date.now() > end) throw new DemoError('demo/step-failed', `${node} did not acknowledge the applied resources within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface NodeView {
  name: string;
  status: string;
  method: string;
  serial: string | null;
}

export const demoCommand = defineCommand({
  name: 'demo',
  summary: 'bring up a cloud and one joined edge node, fetch and validate a workload\'s SVIDs, and sync a config map and a secret to the node',
  operands: '',
  description: [
    'Starts `edgeward cloud start`, joins one node with a join token (`edgeward edge join`), starts the',
    'joined edge (`edgeward edge start`), registers this process on the cloud, then fetches its X509-SVID',
    'and a JWT-SVID over the edge\'s Workload API and validates them against the cloud\'s bundle; then applies',
    'a ConfigMap and a Secret (`edgeward apply -f`) and shows them acknowledged by the node over the hub.',
    'Child processes and the temporary directory are removed at the end, on Ctrl-C and on any failure.',
  ].join('\n'),
  args: {
    flags: {
      show: { type: 'boolean', description: 'also print the bundle (PEM), the SVID chains and the JWT-SVID (never a private key)' },
      keep: { type: 'boolean', description: 'keep the cloud and the edge running until Ctrl-C, and print commands to try' },
    },
    positionals: { min: 0, max: 0 },
  },
  async run({ flags }, io) {
    const bin = binPath();
    const out = (lines: readonly string[]): void => io.stdout(lines.map((l) => `${l}\n`).join(''));

    // Ctrl-C / SIGTERM: stop what was started, then report. Handlers are removed when the demo ends.
    let onStop: (signal: string) => void = () => {};
    const stopRequested = new Promise<string>((resolve) => (onStop = resolve));
    const signalHandlers = (['SIGINT', 'SIGTERM'] as const).map((s) => [s, () => onStop(s)] as const);
    for (const [s, h] of signalHandlers) process.on(s, h);
    const step = <T>(p: Promise<T>): Promise<T> =>
      Promise.race([
        p,
        stopRequested.then((s): never => {
          throw new DemoError('demo/interrupted', `interrupted by ${s}; everything the demo started was stopped`);
        }),
      ]);

    const children: Child[] = [];
    // Last resort if this process exits without running `finally` (never leave a child behind).
    const onExit = (): void => {
      for (const c of children) {
        if (!c.exited()) {
          try {
            process.kill(c.pid, 'SIGTERM');
          } catch {
            // gone
          }
        }
      }
    };
    process.on('exit', onExit);

    const dir = mkdtempSync(join(tmpdir(), 'edgeward-demo-'));
    const cloudDir = join(dir, 'cloud');
    const edgeDir = join(dir, 'edge');
    const cloudAdmin = join(cloudDir, 'admin', 'admin.sock');
    const uid = process.getuid?.() ?? 0;
    const exe = ownExecutable();
    const env: NodeJS.ProcessEnv = { ...io.env, EDGEWARD_LOG_LEVEL: io.env['EDGEWARD_LOG_LEVEL'] ?? 'info' };
    // The demo's children take everything from their flags: no external SPIFFE provider, no other data dir.
    for (const k of ['SPIFFE_ENDPOINT_SOCKET', 'EDGEWARD_DATA_DIR', 'EDGEWARD_TRUST_DOMAIN', 'EDGEWARD_DEBUG']) delete env[k];
    const cli = `edgeward`;
    let client: WorkloadApiClient | undefined;

    try {
      out([
        'Edgeward demo: a cloud, one joined edge node and a workload, all real processes on this machine.',
        `work dir       ${dir} (removed at the end)`,
        '',
      ]);

      // 1. the cloud
      const cloudArgs = ['cloud', 'start', '--data-dir', cloudDir, '--trust-domain', DEMO_TRUST_DOMAIN, '--listen', '127.0.0.1:0'];
      const cloud = startChild('edgeward cloud start', bin, cloudArgs, env);
      children.push(cloud);
      const cloudAddr = (await step(cloud.waitForLine(/^EDGEWARD_CLOUD=\S+$/, READY_TIMEOUT_MS))).slice('EDGEWARD_CLOUD='.length);
      const digest = (await step(cloud.waitForLine(/^EDGEWARD_BUNDLE_DIGEST=sha256:[0-9a-f]{64}$/, READY_TIMEOUT_MS))).slice('EDGEWARD_BUNDLE_DIGEST='.length);
      const status = (await step(adminCall(cloudAdmin, 'cloud.status'))) as CloudStatus;
      if (status.spiffeId !== CLOUD_ID) throw new DemoError('demo/step-failed', `the cloud's SVID is ${status.spiffeId}, not ${CLOUD_ID}`);
      out([
        `1. cloud       ${cli} ${cloudArgs.join(' ')}`,
        `               pid ${cloud.pid}; node API https://${cloudAddr} (TLS 1.3), admin socket ${cloudAdmin}`,
        `               cloud SVID ${status.spiffeId}, serial ${status.svid.serial}, valid until ${iso(status.svid.notAfter)}`,
        `bundle digest  ${digest}`,
      ]);

      // 2. a join token
      const t = (await step(adminCall(cloudAdmin, 'token.create', { node: NODE_NAME }))) as TokenOut;
      out([
        `2. join token  ${cli} token create --node ${NODE_NAME} --data-dir ${cloudDir}`,
        `               bound to node ${t.node}, single use, stored by the cloud as a hash only, expires ${iso(t.expiresAt)}`,
      ]);

      // 3. the join, exactly as `token create` prints it (with the demo's data dir)
      const printed = joinCommand(t, edgeDir);
      const words = printed.split(' ');
      if (words[0] !== 'edgeward') throw new DemoError('demo/step-failed', 'the join command does not start with edgeward');
      const joiner = startChild('edgeward edge join', bin, words.slice(1), env);
      children.push(joiner);
      const joined = await step(joiner.exit);
      if (joined.code !== 0) throw new DemoError('demo/step-failed', `edgeward edge join exited with ${joined.code ?? joined.signal}: ${joiner.failure()}`);
      const nodeId = /^joined: (\S+)$/m.exec(joiner.stdout.join('\n'))?.[1];
      const nodeExpiry = /^node SVID expires: (\S+)$/m.exec(joiner.stdout.join('\n'))?.[1];
      if (nodeId !== NODE_ID || nodeExpiry === undefined) {
        throw new DemoError('demo/step-failed', `edgeward edge join printed an unexpected result: ${joiner.stdout.join(' | ').slice(0, 300)}`);
      }
      const nodeChain = certsFromPem(readFileSync(join(edgeDir, 'node', 'svid.pem'), 'utf8'));
      out([
        `3. edge join   ${printed}`,
        `               pid ${joiner.pid} (exited 0, the token is now spent); cloud bundle pinned by digest (no trust on first use); node key made on the node, only a CSR sent`,
        `node           ${nodeId} (method join_token), node SVID valid until ${nodeExpiry}, renewed at about half-life`,
      ]);

      // 4. a registration entry on the cloud, delegated to the node
      const selectors = [`unix:uid:${uid}`, `unix:path:${exe}`];
      const entry = (await step(
        adminCall(cloudAdmin, 'entry.create', { spiffeId: WORKLOAD_ID, parentId: NODE_ID, selectors, x509SvidTtl: '1h', hint: 'demo' }),
      )) as { id: string };
      out([
        `4. entry       ${cli} entry create --data-dir ${cloudDir} --spiffe-id ${WORKLOAD_ID} --parent ${NODE_ID} ${selectors.map((s) => `--selector ${s}`).join(' ')}`,
        `               entry ${entry.id} on the cloud, delegated to ${NODE_NAME} (its parent is the node's SPIFFE ID)`,
      ]);

      // 5. the joined edge
      const edgeArgs = [
        'edge', 'start', '--data-dir', edgeDir, '--secrets-key-file', join(dir, 'keyring', 'secrets.key'),
        '--mqtt-listen', '127.0.0.1:0', '--enroll-listen', '127.0.0.1:0',
      ];
      const edge = startChild('edgeward edge start', bin, edgeArgs, env);
      children.push(edge);
      const endpoint = (await step(edge.waitForLine(/^SPIFFE_ENDPOINT_SOCKET=unix:\/\/\/\S+$/, READY_TIMEOUT_MS))).slice('SPIFFE_ENDPOINT_SOCKET='.length);
      const mqttAddress = (await step(edge.waitForLine(/^EDGEWARD_MQTT=\S+:\d+$/, READY_TIMEOUT_MS))).slice('EDGEWARD_MQTT='.length);
      const enrollAddress = (await step(edge.waitForLine(/^EDGEWARD_ENROLL=\S+:\d+$/, READY_TIMEOUT_MS))).slice('EDGEWARD_ENROLL='.length);
      const edgeAdmin = join(edgeDir, 'admin', 'admin.sock');
      const edgeStatus = (await step(adminCall(edgeAdmin, 'agent.status'))) as EdgeStatus;
      out([
        `5. edge start  ${cli} ${edgeArgs.join(' ')}`,
        `               pid ${edge.pid}; joined agent of ${edgeStatus.node.spiffeId}, cloud reachable: ${edgeStatus.cloud.reachable === true ? 'yes' : 'no'}, ${edgeStatus.entries} delegated entr${edgeStatus.entries === 1 ? 'y' : 'ies'}`,
        `               node SVID serial ${edgeStatus.node.serial}, valid until ${iso(edgeStatus.node.notAfter)}${edgeStatus.node.nextRenewalAt === null ? '' : `, next renewal ${iso(edgeStatus.node.nextRenewalAt)}`}`,
        `Workload API   SPIFFE_ENDPOINT_SOCKET=${endpoint}`,
        `EventBus       mqtts://${mqttAddress} (MQTT over TLS, device SVIDs only); device enrolment https://${enrollAddress}`,
        '',
      ]);

      // 6. this process as the workload
      const bundleView = (await step(adminCall(cloudAdmin, 'bundle.show'))) as { digest: string; bundle: unknown };
      const td = TrustDomain.parse(DEMO_TRUST_DOMAIN);
      const cloudBundle: TrustBundle = parseBundleJson(td, JSON.stringify(bundleView.bundle));
      if (bundleView.digest !== digest) {
        throw new DemoError('demo/step-failed', `the cloud's bundle digest changed during the demo (${bundleView.digest}); run it again`);
      }
      client = new WorkloadApiClient(endpoint);
      const ctx = await step(client.fetchX509Svid());
      const svid = ctx.defaultSvid;
      const now = io.now();
      // Against the bundle the Workload API delivered, and independently against the cloud's own bundle.
      const validated = validateX509Svid(svid.chainDer, ctx.bundles, now);
      const byCloud = validateX509Svid(svid.chainDer, cloudBundle, now);
      const anchor = byCloud.path[byCloud.path.length - 1] as ParsedCertificate;
      const sameCa = svid.chainDer[1] !== undefined && nodeChain[1] !== undefined && svid.chainDer[1].equals(nodeChain[1]);
      const jwt = (await step(client.fetchJwtSvid([JWT_AUDIENCE])))[0];
      if (jwt === undefined) throw new DemoError('demo/step-failed', 'the edge returned no JWT-SVID');
      const local = validateJwtSvidSync(jwt.token, { audience: JWT_AUDIENCE, bundles: cloudBundle, now: io.now() });
      const checked = await step(client.validateJwtSvid(jwt.token, JWT_AUDIENCE));
      let otherAudience = 'accepted (unexpected)';
      try {
        await step(client.validateJwtSvid(jwt.token, `spiffe://${DEMO_TRUST_DOMAIN}/other`));
      } catch (e) {
        if (e instanceof DemoError) throw e;
        otherAudience = `refused (${e instanceof EdgewardError ? e.code : 'error'})`;
      }
      const nodes = (await step(adminCall(cloudAdmin, 'node.list'))) as NodeView[];
      const me = nodes.find((n) => n.name === NODE_NAME);

      const chainLines = issuerChain(byCloud.path, cloudBundle).map((c, i) => `               ${' '.repeat(2 * i)}<- signed by ${c}`);
      const bundle = ctx.bundles.get(svid.spiffeId.trustDomain);
      out([
        `6. workload    this process (pid ${process.pid}, uid ${uid}), identified by the kernel (SO_PEERCRED), no credentials sent`,
        `X509-SVID      ${svid.spiffeId.toString()}`,
        `               serial ${svid.leaf.serialHex}, valid until ${iso(svid.leaf.notAfter)}; key made by the edge, only a CSR went to the cloud`,
        `  validation   valid for ${validated.spiffeId.toString()} (path of ${validated.path.length} certificates up to the bundle)`,
        `  issuer chain ${svid.spiffeId.toString()}`,
        ...chainLines,
        `               the path ends at an authority of the cloud bundle ${digest} (the digest the node pinned)${anchor.isCA ? '' : ' (unexpected: not a CA)'}`,
        `               ${sameCa ? 'the same signing CA signed the node SVID: one CA, the cloud\'s' : 'the node SVID has another signing CA (a CA rotation happened during the demo)'}`,
        `bundle         ${bundle?.x509Authorities.length ?? 0} X.509 authorit${bundle?.x509Authorities.length === 1 ? 'y' : 'ies'} from the Workload API; the cloud also serves it at GET https://${cloudAddr}/v1/bundle`,
        `JWT-SVID       sub ${jwt.spiffeId.toString()}, aud ${jwt.audience.join(', ')}, expires ${iso(jwt.expiresAt)} (minted by the cloud)`,
        `  validation   against the cloud bundle: valid for ${local.spiffeId.toString()}`,
        `               ValidateJWTSVID: valid for ${checked.spiffeId.toString()}; for another audience: ${otherAudience}`,
        `cloud view     node ${NODE_NAME}: ${me === undefined ? 'missing (unexpected)' : `${me.status}, method ${me.method}, serial ${me.serial ?? '-'}`}`,
      ]);
      if (flags.show) {
        out([
          '',
          '# bundle (X.509 authorities, PEM)',
          x509AuthoritiesPem(cloudBundle).trimEnd(),
          '# X509-SVID chain (leaf, signing CA)',
          svid.chainDer.map(certToPem).join('').trimEnd(),
          '# node X509-SVID chain (leaf, signing CA)',
          nodeChain.map(certToPem).join('').trimEnd(),
          '# JWT-SVID',
          jwt.token,
        ]);
      }
      client.close();
      client = undefined;

      // 7. resources through the hub: the real `edgeward apply -f` against the cloud, then the node's acks
      const yamlPath = join(dir, 'resources.yaml');
      writeFileSync(yamlPath, DEMO_RESOURCES_YAML, { mode: 0o600 });
      const applyArgs = ['apply', '-f', yamlPath, '--data-dir', cloudDir];
      const applier = startChild('edgeward apply', bin, applyArgs, env);
      children.push(applier);
      const applied = await step(applier.exit);
      if (applied.code !== 0) throw new DemoError('demo/step-failed', `edgeward apply exited with ${applied.code ?? applied.signal}: ${applier.failure()}`);
      const acked = await step(waitForAcks(cloudAdmin, NODE_NAME, DEMO_RESOURCES, READY_TIMEOUT_MS));
      const onNode = (await step(adminCall(edgeAdmin, 'resource.get', { kind: 'Secret', name: 'demo-secret' }))) as { items: ResourceViewOut[] };
      const hub = ((await step(adminCall(edgeAdmin, 'agent.status'))) as { hub?: { connected?: boolean; sessionId?: string | null } }).hub;
      out([
        '',
        `7. resources   ${cli} ${applyArgs.join(' ')}`,
        `               pid ${applier.pid} (exited 0):`,
        ...applier.stdout.map((l) => `               ${l}`),
        ...acked.map((v) => `               ${v.kind.toLowerCase()}/${v.name} version ${v.version}: acknowledged by ${NODE_NAME} at version ${v.ackedVersion} after it was stored in the node's SQLite`),
        `               hub session: ${hub?.connected === true ? `connected (mTLS WebSocket, both sides by SVID), session ${hub.sessionId ?? '-'}` : 'not connected (unexpected)'}`,
        `on the node    ${cli} get secret demo-secret --data-dir ${edgeDir}: ${onNode.items.length === 1 ? `version ${onNode.items[0]!.version}, data ${JSON.stringify(onNode.items[0]!.data)} (values never printed; sealed at rest with a key kept outside the data dir)` : 'missing (unexpected)'}`,
      ]);

      // 8. a device: enrolled with a one-time token, then MQTT over mTLS with its SVID, and its twin
      await runDeviceDemo({
        bin,
        env,
        dir,
        cloudDir,
        cloudAdmin,
        edgeAdmin,
        edgeDir,
        trustDomain: DEMO_TRUST_DOMAIN,
        nodeName: NODE_NAME,
        mqttAddress,
        enrollAddress,
        bundleDigest: digest,
        children,
        step,
        out,
      });

      if (flags.keep) {
        const bin_ = relative(process.cwd(), bin) || bin;
        out([
          '',
          `Running until Ctrl-C: cloud pid ${cloud.pid}, edge pid ${edge.pid}. Try, in another terminal (edgeward = node ${bin_}, or npx edgeward):`,
          `  edgeward node list --data-dir ${cloudDir}`,
          `  edgeward node show ${NODE_NAME} --data-dir ${cloudDir}`,
          `  edgeward entry list --data-dir ${cloudDir}`,
          `  edgeward svid fetch --socket ${endpoint}`,
          `  edgeward jwt fetch --audience ${JWT_AUDIENCE} --socket ${endpoint}`,
          `  edgeward token create --node another-node --data-dir ${cloudDir}`,
          `  edgeward node ban ${NODE_NAME} --data-dir ${cloudDir}     (the edge's connections close at once; it keeps serving cached SVIDs until they expire)`,
          `  edgeward node unban ${NODE_NAME} --data-dir ${cloudDir}`,
          `  edgeward get configmap --data-dir ${cloudDir}            (versions and which nodes acknowledged them)`,
          `  edgeward get configmap --data-dir ${edgeDir}             (the node's own copy)`,
          `  edgeward apply -f ${yamlPath} --data-dir ${cloudDir}`,
          `  edgeward edge report-status --data-dir ${edgeDir} --kind ConfigMap --name demo-config --phase Ready`,
          `  edgeward get device demo-sensor --data-dir ${cloudDir}          (desired, reported and last seen)`,
          `  mosquitto_sub -h ${mqttAddress.slice(0, mqttAddress.lastIndexOf(':'))} -p ${mqttAddress.slice(mqttAddress.lastIndexOf(':') + 1)} --cafile ${join(dir, 'device', 'bundle.pem')} --cert ${join(dir, 'device', 'svid.pem')} --key ${join(dir, 'device', 'svid.key')} -i default/demo-sensor --insecure -t '$hw/events/device/default/demo-sensor/twin/update/delta' -v`,
          `  edgeward device revoke default/demo-sensor --data-dir ${cloudDir}   (its MQTT connections close at once)`,
          `The svid/jwt commands match the entry when run as uid ${uid} with the node binary ${exe}.`,
        ]);
        const s = await stopRequested;
        out(['', `${s}: stopping.`]);
      }
      return 0;
    } finally {
      client?.close();
      // Edge first (it is the cloud's client), then the cloud; each only by the PID recorded here.
      for (const c of [...children].reverse()) await c.stop();
      rmSync(dir, { recursive: true, force: true });
      process.off('exit', onExit);
      for (const [s, h] of signalHandlers) process.off(s, h);
      const pids = children.map((c) => `${c.what.replace(/^edgeward /, '')} ${c.pid}`).join(', ');
      io.stdout(`\nstopped: ${pids === '' ? 'nothing was started' : pids}; removed ${dir}\n`);
    }
  },
});
