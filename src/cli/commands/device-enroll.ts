/**
 * The reference device client (issue #6), for device makers:
 *
 *   edgeward device enroll --edge HOST:PORT --token T --bundle-digest sha256:HEX --out DIR
 *   edgeward device enroll --edge HOST:PORT --device NS/NAME --factory-cert FILE --factory-key FILE --bundle-digest sha256:HEX --out DIR
 *   edgeward device renew  --edge HOST:PORT --dir DIR
 *
 * Enrol: fetch the node's bundle without trusting it, accept it only if its digest is the pinned one (no trust on
 * first use), and only if the server that sent it presents a node SVID of that bundle; from then on every
 * connection checks the server chain against the bundle (TLS) and as a node SVID (by SPIFFE ID, never a host
 * name). A P-256 key is made here and never sent: only a CSR goes out, with the one-time token, or over mTLS with
 * the manufacturer certificate. The answer is checked (an X509-SVID of the bundle for the device, for our key)
 * and written atomically: DIR/svid.pem (leaf and chain), DIR/svid.key (0600), DIR/bundle.pem (for
 * `mosquitto --cafile`), DIR/bundle.json, DIR/device.json. Renew: the same with the current SVID as the client
 * certificate and a new key; the stored bundle authenticates the node.
 */
import { request as httpsRequest } from 'node:https';
import type { PeerCertificate } from 'node:tls';
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { deviceNameFromSpiffeId, deviceSpiffeId, formatDeviceName, isDeviceName, nodeNameFromSpiffeId } from '../../attestation/index.js';
import {
  bundleDigest,
  bundleToJson,
  buildCsr,
  certsFromPem,
  certToPem,
  derToPem,
  EdgewardError,
  generateP256,
  parseBundleJson,
  parseCertificate,
  SpiffeId,
  validateX509Svid,
  x509AuthoritiesPem,
  type TrustBundle,
  type TrustDomain,
} from '../../identity/index.js';
import { peerChain } from '../../edge/index.js';
import { defineCommand } from '../command.js';
import { CliUsageError } from '../errors.js';
import { readBoundedFile } from '../files.js';
import { PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, writeFilesAtomic } from '../write-files.js';

const MAX_RESPONSE_BYTES = 64 * 1024;
const TIMEOUT_MS = 10_000;
const DIGEST = /^sha256:[0-9a-f]{64}$/;

export type DeviceClientErrorCode = 'device-enroll/bundle-mismatch' | 'device-enroll/untrusted-server' | 'device-enroll/refused' | 'device-enroll/bad-response' | 'device-enroll/unreachable';
export class DeviceClientError extends EdgewardError<DeviceClientErrorCode> {}

interface DeviceInfo {
  device: string;
  spiffeId: string;
  expiresAt: number;
  edge: string;
  bundleDigest: string;
}

interface Edge {
  host: string;
  port: number;
  text: string;
}

function parseEdge(text: string | undefined, command: string): Edge {
  const m = text === undefined ? null : /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]{1,253})):([0-9]{1,5})$/.exec(text);
  const port = Number(m?.[3]);
  const host = m?.[1] ?? m?.[2];
  if (m === null || host === undefined || port < 1 || port > 65535) throw new CliUsageError('--edge must be HOST:PORT (the node\'s enrolment endpoint, default port 8884)', { command });
  return { host, port, text: text! };
}

/** The server must be a node SVID of `bundle` (SPIFFE ID `spiffe://TD/edgeward/node/NAME`). */
function checkServer(chain: Buffer[], bundle: TrustBundle): Error | undefined {
  try {
    const v = validateX509Svid(chain, bundle, Date.now());
    nodeNameFromSpiffeId(v.spiffeId, bundle.trustDomain);
    return undefined;
  } catch (e) {
    return new DeviceClientError('device-enroll/untrusted-server', `the enrolment endpoint is not a node of the pinned trust domain (${e instanceof EdgewardError ? e.code : 'invalid'})`);
  }
}

interface Reply {
  status: number;
  body: Buffer;
  chain: Buffer[];
}

function call(edge: Edge, method: 'GET' | 'POST', path: string, o: { body?: unknown; bundle?: TrustBundle; cert?: string; key?: string }): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const payload = o.body === undefined ? undefined : Buffer.from(JSON.stringify(o.body), 'utf8');
    const bundle = o.bundle;
    const req = httpsRequest({
      host: edge.host,
      port: edge.port,
      method,
      path,
      timeout: TIMEOUT_MS,
      minVersion: 'TLSv1.2',
      agent: false,
      headers: { ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': payload.length }), connection: 'close' },
      // Before the bundle is pinned nothing is trusted (the GET only); afterwards the chain is checked by TLS
      // against the bundle and as a node SVID by SPIFFE ID (no host name: SVIDs carry none).
      rejectUnauthorized: bundle !== undefined,
      ...(bundle === undefined ? {} : { ca: x509AuthoritiesPem(bundle), checkServerIdentity: (_h: string, cert: PeerCertificate) => checkServer(peerChain(cert), bundle) }),
      ...(o.cert === undefined ? {} : { cert: o.cert, key: o.key }),
    });
    req.on('timeout', () => req.destroy(new DeviceClientError('device-enroll/unreachable', `${edge.text} did not answer within ${TIMEOUT_MS / 1000} s`)));
    req.on('error', (e) => reject(e instanceof DeviceClientError ? e : new DeviceClientError('device-enroll/unreachable', `cannot reach ${edge.text}: ${e.message}`, { cause: e })));
    req.on('response', (res) => {
      const socket = res.socket as import('node:tls').TLSSocket;
      const chain = peerChain(socket.getPeerCertificate(true));
      const parts: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_RESPONSE_BYTES) res.destroy(new DeviceClientError('device-enroll/bad-response', 'the answer is too large'));
        else parts.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts), chain }));
      res.on('error', reject);
    });
    req.end(payload);
  });
}

function json(r: Reply): Record<string, unknown> {
  try {
    const v = JSON.parse(r.body.toString('utf8')) as unknown;
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // below
  }
  throw new DeviceClientError('device-enroll/bad-response', `the endpoint answered HTTP ${r.status} without a JSON object`);
}

/** A non-200 answer: the endpoint's `{error: {code, message}}` (printable, bounded), or its HTTP status. */
function refusalOf(r: Reply): DeviceClientError {
  let code = `http-${r.status}`;
  let message = 'refused';
  try {
    const err = json(r)['error'] as { code?: unknown; message?: unknown } | undefined;
    if (typeof err?.code === 'string' && /^[a-z0-9][a-z0-9/_.-]{0,63}$/.test(err.code)) code = err.code;
    if (typeof err?.message === 'string') message = err.message.replace(/[^\x20-\x7e]/g, '?').slice(0, 300);
  } catch {
    // not JSON: the status says it
  }
  return new DeviceClientError('device-enroll/refused', `${code}: ${message}`);
}

/** Fetch the node's bundle and pin it by digest; the server must be a node SVID of that bundle. */
async function pinnedBundle(edge: Edge, digest: string): Promise<TrustBundle> {
  const r = await call(edge, 'GET', '/v1/device/bundle', {});
  if (r.status !== 200) throw refusalOf(r);
  let bundle: TrustBundle;
  try {
    const id = SpiffeId.parse(parseCertificate(r.chain[0] ?? Buffer.alloc(0)).uris[0] ?? '');
    bundle = parseBundleJson(id.trustDomain, r.body.toString('utf8'));
  } catch (e) {
    throw new DeviceClientError('device-enroll/bundle-mismatch', 'the endpoint did not present a bundle with the pinned digest', { cause: e });
  }
  if (bundleDigest(bundle) !== digest) throw new DeviceClientError('device-enroll/bundle-mismatch', 'the bundle does not match --bundle-digest (wrong node, or a man in the middle)');
  const bad = checkServer(r.chain, bundle);
  if (bad !== undefined) throw bad;
  return bundle;
}

/** POST and check the SVID the node returns: an X509-SVID of `bundle`, for a device (`expect` if given), with our key. */
async function obtain(edge: Edge, path: string, body: Record<string, unknown>, bundle: TrustBundle, key: { spki: Buffer }, expect: string | undefined, client?: { cert: string; key: string }): Promise<{ device: string; chain: Buffer[]; expiresAt: number; bundle: TrustBundle }> {
  const r = await call(edge, 'POST', path, { body, bundle, ...(client === undefined ? {} : client) });
  if (r.status !== 200) throw refusalOf(r);
  const o = json(r);
  const td: TrustDomain = bundle.trustDomain;
  let fresh = bundle;
  // the bundle as the node holds it now (this connection was authenticated with the pinned one)
  if (typeof o['bundle'] === 'string') fresh = parseBundleJson(td, o['bundle']);
  else if (typeof o['bundle'] === 'object' && o['bundle'] !== null) fresh = parseBundleJson(td, JSON.stringify(o['bundle']));
  const chain = typeof o['svidPem'] === 'string' ? certsFromPem(o['svidPem']) : [];
  const v = validateX509Svid(chain, fresh, Date.now());
  const device = formatDeviceName(deviceNameFromSpiffeId(v.spiffeId, td));
  // the answer's own names must agree with the SVID (a node that says one thing and signs another is broken)
  if ((o['device'] !== undefined && o['device'] !== device) || (o['spiffeId'] !== undefined && o['spiffeId'] !== v.spiffeId.toString())) {
    throw new DeviceClientError('device-enroll/bad-response', 'the answer names another device than its SVID');
  }
  if (expect !== undefined && device !== expect) throw new DeviceClientError('device-enroll/bad-response', `the node returned an SVID for ${device}, not ${expect}`);
  if (!v.leaf.spki.equals(key.spki)) throw new DeviceClientError('device-enroll/bad-response', 'the returned SVID is not for the key made here');
  return { device, chain, expiresAt: v.leaf.notAfter, bundle: fresh };
}

/**
 * Write DIR. device.json's bundleDigest is the digest of the bundle written to bundle.json: the pinned one at
 * enrolment, or the node's newer one (after a CA rotation) as it came over a connection the older one authenticated.
 */
async function save(dir: string, r: { device: string; chain: Buffer[]; expiresAt: number; bundle: TrustBundle }, key: KeyObject, edge: Edge): Promise<DeviceInfo> {
  const info: DeviceInfo = { device: r.device, spiffeId: deviceSpiffeId(r.bundle.trustDomain, r.device).toString(), expiresAt: r.expiresAt, edge: edge.text, bundleDigest: bundleDigest(r.bundle) };
  await writeFilesAtomic(dir, [
    { name: 'svid.key', data: key.export({ type: 'pkcs8', format: 'pem' }), mode: PRIVATE_FILE_MODE },
    { name: 'svid.pem', data: r.chain.map(certToPem).join(''), mode: PUBLIC_FILE_MODE },
    { name: 'bundle.pem', data: x509AuthoritiesPem(r.bundle), mode: PUBLIC_FILE_MODE },
    { name: 'bundle.json', data: bundleToJson(r.bundle), mode: PUBLIC_FILE_MODE },
    { name: 'device.json', data: JSON.stringify(info, null, 2) + '\n', mode: PUBLIC_FILE_MODE },
  ]);
  return info;
}

function csrPem(k: { spki: Buffer; privateKey: KeyObject }): string {
  return derToPem(buildCsr(k), 'CERTIFICATE REQUEST');
}

/** One line per result: `enrolled spiffe://... expires ISO-TIME DIR`, or device.json's content with --json. */
const print = (info: DeviceInfo, verb: string, dir: string, asJson: boolean): string =>
  asJson ? JSON.stringify(info) + '\n' : `${verb} ${info.spiffeId} expires ${new Date(info.expiresAt).toISOString()} ${dir}\n`;

/** DIR/device.json as `device enroll` wrote it, or undefined. */
function deviceInfoOf(text: string): DeviceInfo | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as Record<string, unknown>;
  const ok =
    isDeviceName(o['device']) &&
    typeof o['spiffeId'] === 'string' &&
    typeof o['expiresAt'] === 'number' &&
    typeof o['edge'] === 'string' &&
    typeof o['bundleDigest'] === 'string' &&
    DIGEST.test(o['bundleDigest']);
  if (!ok) return undefined;
  try {
    if (!deviceSpiffeId(SpiffeId.parse(o['spiffeId'] as string).trustDomain, o['device'] as string).equals(SpiffeId.parse(o['spiffeId'] as string))) return undefined;
  } catch {
    return undefined;
  }
  return { device: o['device'] as string, spiffeId: o['spiffeId'] as string, expiresAt: o['expiresAt'] as number, edge: o['edge'] as string, bundleDigest: o['bundleDigest'] as string };
}

export const deviceEnrollCommand = defineCommand({
  name: 'device enroll',
  summary: 'enrol a device at its edge node (reference client): a one-time token or a manufacturer certificate, key made here',
  operands: '',
  args: {
    flags: {
      edge: { type: 'string', value: 'HOST:PORT', description: 'the node\'s enrolment endpoint (edge start --enroll-listen, default port 8884)' },
      token: { type: 'string', value: 'TOKEN', description: 'one-time bootstrap token (edgeward device token)' },
      device: { type: 'string', value: 'NS/NAME', description: 'with --factory-cert: the device to enrol' },
      'factory-cert': { type: 'string', value: 'FILE', description: 'manufacturer certificate chain (PEM, leaf first), issued by a CA of the device model' },
      'factory-key': { type: 'string', value: 'FILE', description: 'the manufacturer certificate\'s private key (PEM)' },
      'bundle-digest': { type: 'string', value: 'sha256:HEX', description: 'digest of the trust bundle to pin (printed by edgeward device token)' },
      out: { type: 'string', value: 'DIR', description: 'where to write svid.pem, svid.key (0600), bundle.pem, bundle.json, device.json' },
      json: { type: 'boolean', description: 'print device.json' },
    },
    positionals: { min: 0, max: 0 },
  },
  async run({ flags }, io) {
    const command = 'device enroll';
    const edge = parseEdge(flags.edge, command);
    const digest = flags['bundle-digest'];
    if (digest === undefined || !DIGEST.test(digest)) throw new CliUsageError('--bundle-digest sha256:HEX is required (no trust on first use)', { command });
    if (flags.out === undefined) throw new CliUsageError('--out DIR is required', { command });
    const factory = flags['factory-cert'] !== undefined || flags['factory-key'] !== undefined || flags.device !== undefined;
    if ((flags.token === undefined) === !factory) throw new CliUsageError('give either --token, or --device with --factory-cert and --factory-key', { command });
    let client: { cert: string; key: string } | undefined;
    if (factory) {
      if (flags.device === undefined || !isDeviceName(flags.device)) throw new CliUsageError('--device NAMESPACE/NAME is required with --factory-cert', { command });
      if (flags['factory-cert'] === undefined || flags['factory-key'] === undefined) throw new CliUsageError('--factory-cert and --factory-key go together', { command });
      const key = (await readBoundedFile(flags['factory-key'], 64 * 1024)).toString('utf8');
      createPrivateKey(key); // a readable key, or fail here
      client = { cert: (await readBoundedFile(flags['factory-cert'], 64 * 1024)).toString('utf8'), key };
    }
    const bundle = await pinnedBundle(edge, digest);
    const k = generateP256();
    const body: Record<string, unknown> = flags.token !== undefined ? { token: flags.token, csr: csrPem(k) } : { device: flags.device, csr: csrPem(k) };
    const r = await obtain(edge, '/v1/device/enroll', body, bundle, k, flags.device, client);
    const info = await save(flags.out, r, k.privateKey, edge);
    io.stdout(print(info, 'enrolled', flags.out, flags.json === true));
    return 0;
  },
});

export const deviceRenewCommand = defineCommand({
  name: 'device renew',
  summary: 'renew a device SVID over mTLS with the current one (reference client); a new key is made here',
  operands: '',
  args: {
    flags: {
      edge: { type: 'string', value: 'HOST:PORT', description: 'the node\'s enrolment endpoint (default: the one in DIR/device.json)' },
      dir: { type: 'string', value: 'DIR', description: 'the directory written by device enroll' },
      json: { type: 'boolean', description: 'print device.json' },
    },
    positionals: { min: 0, max: 0 },
  },
  async run({ flags }, io) {
    const command = 'device renew';
    if (flags.dir === undefined) throw new CliUsageError('--dir DIR is required (written by device enroll)', { command });
    const dir = flags.dir;
    const read = async (name: string): Promise<string> => (await readBoundedFile(join(dir, name), 64 * 1024)).toString('utf8');
    let text: string;
    try {
      text = await read('device.json');
    } catch (e) {
      throw new CliUsageError(`${dir}/device.json is missing: enrol first (device enroll --out ${dir})`, { command, cause: e });
    }
    const info = deviceInfoOf(text);
    if (info === undefined) throw new CliUsageError(`${dir}/device.json is not what device enroll writes`, { command });
    const edge = parseEdge(flags.edge ?? info.edge, command);
    const td = SpiffeId.parse(info.spiffeId).trustDomain;
    let bundle: TrustBundle;
    try {
      bundle = parseBundleJson(td, await read('bundle.json'));
    } catch (e) {
      throw new DeviceClientError('device-enroll/bundle-mismatch', `${dir}/bundle.json is missing or not a bundle of ${td.name}: enrol again`, { cause: e });
    }
    // the trust anchor of this renewal must be the bundle enrolment recorded (not a planted or edited one)
    if (bundleDigest(bundle) !== info.bundleDigest) throw new DeviceClientError('device-enroll/bundle-mismatch', `${dir}/bundle.json does not match the bundleDigest in device.json`);
    const k = generateP256();
    const r = await obtain(edge, '/v1/device/renew', { csr: csrPem(k) }, bundle, k, info.device, { cert: await read('svid.pem'), key: await read('svid.key') });
    const out = await save(dir, r, k.privateKey, edge);
    io.stdout(print(out, 'renewed', dir, flags.json === true));
    return 0;
  },
});
