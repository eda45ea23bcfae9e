/**
 * The cloud core's one typed configuration object (architecture.md convention 7): built from CLI flags, an
 * optional YAML file (`--config FILE`) and the environment in one place, every problem reported together
 * as one `cloud-config/invalid`, frozen afterwards. Precedence: flag > environment > file > default.
 *
 * The YAML file is strict: one document, YAML 1.2 core schema, no duplicate or unknown keys, no aliases.
 * Relative paths in the file are relative to the file's directory; relative flags to the working dir.
 *
 * ```yaml
 * trustDomain: example.org
 * dataDir: /var/lib/edgeward/cloud
 * listen: 0.0.0.0:8443
 * caTtl: 7d                 # signing CA lifetime; at least 6x every SVID TTL below
 * nodeSvidTtl: 1h
 * maxWorkloadSvidTtl: 1h
 * maxJwtSvidTtl: 5m
 * logLevel: info
 * attestors:
 *   join_token: {}          # always on
 *   x509pop: { caBundle: x509pop-ca.pem }
 *   tpm:
 *     ekCaBundle: tpm-manufacturers.pem
 *     enrolled:             # node name -> EK hash (`edgeward edge tpm-ek-hash --tpm ...` on the node)
 *       edge-1: sha256:3f0c...   # 64 lower-case hex digits
 *     # allowAnyEk: true    # UNSAFE: any TPM of these manufacturers may join under any unused name
 * rateLimit: { attestBurst: 5, attestPerSecond: 1, maxSources: 10000 }
 * server: { maxConnections: 25000, headersTimeout: 10s, requestTimeout: 30s, keepAliveTimeout: 60s }
 * hub: { maxSessions: 20000 }
 * devices: { svidTtl: 24h, tokenTtl: 1h }   # issue #6: device X509-SVID lifetime (at most caTtl/6);
 *                                          # default lifetime of `edgeward device token` (1m..24h)
 * ```
 *
 * `server.maxConnections` counts every TLS connection of the node API listener, hub WebSockets included
 * (default 25,000: 20,000 hub sessions and room for attestations and renewals). `hub.maxSessions` is how
 * many hub sessions (one per edge node) are held at once; one more is refused with 503 `hub/overloaded`
 * before the upgrade (default 20,000, and never more than `server.maxConnections`). Each connection is a
 * file descriptor: raise the process's open-file limit (`ulimit -n`) accordingly.
 *
 * The tpm attestor denies by default: a TPM joins only as the node name its EK hash is enrolled for
 * (`attestors.tpm.enrolled`); with `--tpm-ek-ca-bundle` alone, or no `enrolled` entries, every TPM is
 * refused with `tpm/ek-not-enrolled` (the refusal, on the node and in the cloud log, names the EK hash to
 * enrol). `allowAnyEk: true` turns that off and is unsafe: any TPM whose EK chains to a configured
 * manufacturer CA (any second-hand or stolen one) may then claim any node name not attested yet.
 * `enrolled` and `allowAnyEk: true` exclude each other; one EK may be enrolled for one name only.
 */
import { closeSync, fstatSync, openSync, readSync, constants } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { DEFAULT_DEVICE_SVID_TTL_MS, DEFAULT_DEVICE_TOKEN_TTL_MS, MAX_DEVICE_TOKEN_TTL_MS, MIN_DEVICE_TOKEN_TTL_MS } from './devices/index.js';
import { certsFromPem, collectProblems, EdgewardError, isLogLevel, parseDuration, STRICT_YAML_OPTIONS, TrustDomain, type LogLevel } from '../identity/index.js';
import { createX509PopTrust, isEkHash, isNodeName, parseManufacturerCa } from '../attestation/index.js';

export type CloudConfigErrorCode = 'cloud-config/invalid';
export class CloudConfigError extends EdgewardError<CloudConfigErrorCode> {
  /** Every problem found, one line each (also joined into the message). */
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super('cloud-config/invalid', problems.join('; '), { detail: { problems: problems.length } });
    this.problems = Object.freeze([...problems]);
  }
}

export type CloudLogLevel = LogLevel;

export interface CloudListenAddress {
  readonly host: string;
  /** 0 = any free port (the bound port is printed at start). */
  readonly port: number;
}

export interface CloudAttestorsConfig {
  /** join_token is always on. */
  readonly joinToken: { readonly enabled: true };
  readonly x509pop: { readonly caBundlePath: string; readonly caCertsDer: readonly Buffer[] } | undefined;
  readonly tpm:
    | {
        readonly ekCaBundlePath: string;
        readonly manufacturerCasDer: readonly Buffer[];
        /** Node name -> enrolled EK hash `sha256:HEX` (deny by default: names not listed are refused). */
        readonly enrolled: ReadonlyMap<string, string>;
        /** UNSAFE opt-out of enrolment: any EK chaining to a manufacturer CA, under any node name. */
        readonly allowAnyEk: boolean;
      }
    | undefined;
}

export interface CloudConfig {
  readonly trustDomain: TrustDomain;
  readonly dataDir: string;
  /** DIR/cloud.db (0600). */
  readonly dbPath: string;
  /** DIR/keys (0700; CA and JWT keys 0600). */
  readonly keysDir: string;
  /** DIR/admin/admin.sock (0600 in a 0700 dir). */
  readonly adminSocketPath: string;
  readonly listen: CloudListenAddress;
  readonly caTtlMs: number;
  readonly nodeSvidTtlMs: number;
  readonly maxWorkloadSvidTtlMs: number;
  readonly maxJwtSvidTtlMs: number;
  readonly attestors: CloudAttestorsConfig;
  /** Attestation attempts per source address (token bucket, src/attestation RateLimiter). */
  readonly rateLimit: { readonly attestBurst: number; readonly attestPerSecond: number; readonly maxSources: number };
  /** Node API listener limits (slowloris and connection floods). */
  readonly server: {
    readonly maxConnections: number;
    readonly headersTimeoutMs: number;
    readonly requestTimeoutMs: number;
    readonly keepAliveTimeoutMs: number;
  };
  /** The hub (issue #5): one WebSocket session per edge node. */
  readonly hub: { readonly maxSessions: number };
  /**
   * Devices (issue #6): lifetime of device X509-SVIDs (default 24 h, or caTtl/6 when that is shorter; an
   * explicit value must be at most caTtl/6). The CA's X509-SVID maximum is raised to it. `tokenTtlMs`: the
   * lifetime of a device bootstrap token made without `--ttl` (default 1 h, 1 min .. 24 h).
   */
  readonly devices: { readonly svidTtlMs: number; readonly tokenTtlMs: number };
  readonly logLevel: CloudLogLevel;
  /** `unix:///PATH` of an external SPIFFE Workload API: SPIRE mode (docs/spire.md); also from SPIFFE_ENDPOINT_SOCKET. */
  readonly spiffeSocket: string | undefined;
  readonly configFile: string | undefined;
}

export interface CloudConfigInput {
  dataDir?: string | undefined;
  trustDomain?: string | undefined;
  listen?: string | undefined;
  configFile?: string | undefined;
  spiffeSocket?: string | undefined;
  caTtl?: string | undefined;
  nodeSvidTtl?: string | undefined;
  /** `--device-svid-ttl` (issue #6). */
  deviceSvidTtl?: string | undefined;
  /** `--device-token-ttl` (issue #6): default lifetime of device bootstrap tokens. */
  deviceTokenTtl?: string | undefined;
  x509popCaBundle?: string | undefined;
  tpmEkCaBundle?: string | undefined;
  env: Readonly<Record<string, string | undefined>>;
  /** Working directory for relative flag paths (default process.cwd()). */
  cwd?: string;
}

export const DEFAULT_CLOUD_TRUST_DOMAIN = 'edgeward.local';
export const DEFAULT_CLOUD_LISTEN = '127.0.0.1:8443';
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/**
 * Default signing CA lifetime. Longer than SPIRE's 24 h on purpose: the bundle digest printed for
 * `edge join` changes whenever a signing CA is prepared or retired (about every caTtl/2), so a short CA
 * lifetime breaks printed join commands more often. 7 d is far above the 6x rule for 1 h SVIDs.
 */
export const DEFAULT_CLOUD_CA_TTL_MS = 7 * DAY;
const MAX_CONFIG_FILE_BYTES = 256 * 1024;
const MAX_CA_BUNDLE_BYTES = 1024 * 1024;
const MAX_UNIX_PATH = 107;

const FILE_KEYS = [
  'trustDomain',
  'dataDir',
  'listen',
  'caTtl',
  'nodeSvidTtl',
  'maxWorkloadSvidTtl',
  'maxJwtSvidTtl',
  'logLevel',
  'spiffeSocket',
  'attestors',
  'rateLimit',
  'server',
  'hub',
  'devices',
] as const;
const DEVICES_KEYS = ['svidTtl', 'tokenTtl'] as const;
const HUB_KEYS = ['maxSessions'] as const;
/** Default `server.maxConnections`: the default hub sessions and room for the node API's requests. */
const DEFAULT_MAX_CONNECTIONS = 25_000;
const DEFAULT_HUB_MAX_SESSIONS = 20_000;
const ATTESTOR_KEYS = ['join_token', 'x509pop', 'tpm'] as const;
const RATE_KEYS = ['attestBurst', 'attestPerSecond', 'maxSources'] as const;
const SERVER_KEYS = ['maxConnections', 'headersTimeout', 'requestTimeout', 'keepAliveTimeout'] as const;

type Obj = Record<string, unknown>;
const isObject = (x: unknown): x is Obj => typeof x === 'object' && x !== null && !Array.isArray(x);

/** Read a regular file, refusing more than `max` bytes. Throws a plain message (collected as a problem). */
function readBounded(path: string, max: number): Buffer {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY);
  } catch (e) {
    throw new Error(`cannot open ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error(`${path} is not a regular file`);
    const buf = Buffer.alloc(max + 1);
    let n = 0;
    for (;;) {
      const r = readSync(fd, buf, n, buf.length - n, null);
      if (r === 0) break;
      n += r;
      if (n > max) throw new Error(`${path} is larger than ${max} bytes`);
    }
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

function parseYamlObject(text: string): Obj {
  const docs = parseAllDocuments(text, STRICT_YAML_OPTIONS);
  if (!Array.isArray(docs) || docs.length !== 1) throw new Error('must contain exactly one YAML document');
  const doc = docs[0]!;
  const issue = [...doc.errors, ...doc.warnings][0];
  if (issue !== undefined) throw new Error(`not valid YAML: ${issue.code}: ${issue.message.split('\n')[0] ?? ''}`);
  let v: unknown;
  try {
    v = doc.toJS({ maxAliasCount: 0 });
  } catch {
    throw new Error('YAML aliases are not allowed');
  }
  if (v === null || v === undefined) return {};
  if (!isObject(v)) throw new Error('must be a YAML mapping');
  return v;
}

/** `HOST:PORT`, `[IPv6]:PORT`. Port 0..65535 (0 = any free port). */
export function parseListenAddress(s: string): CloudListenAddress {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):([0-9]{1,5})$/.exec(s);
  if (m === null) throw new Error('must be HOST:PORT (IPv6 as [ADDR]:PORT)');
  const port = Number(m[3]);
  if (!Number.isInteger(port) || port > 65535) throw new Error('port must be 0..65535');
  const host = (m[1] ?? m[2]) as string;
  if (host.length > 253) throw new Error('host is too long');
  return Object.freeze({ host, port });
}

/** Format a listen address as HOST:PORT (IPv6 in brackets). */
export function formatListenAddress(a: { host: string; port: number }): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

function parseSpiffeSocket(s: string): string {
  if (!/^unix:\/\/\/./.test(s) && !/^unix:\/./.test(s)) throw new Error('must be unix:///ABSOLUTE/PATH');
  if (s.length > 4 + 3 + MAX_UNIX_PATH) throw new Error(`socket path is longer than ${MAX_UNIX_PATH} bytes`);
  return s;
}

/**
 * `attestors.tpm.enrolled` (node name -> `sha256:HEX`) and `allowAnyEk`; problems are appended. Upper-case
 * hex is accepted and stored in lower case (the form `edgeward edge tpm-ek-hash` prints).
 */
function parseTpmEnrolment(o: Obj, problems: string[]): { enrolled: ReadonlyMap<string, string>; allowAnyEk: boolean } {
  const where = 'config file attestors.tpm';
  const enrolled = new Map<string, string>();
  const byHash = new Map<string, string>();
  const any = o['allowAnyEk'];
  if (any !== undefined && any !== null && typeof any !== 'boolean') problems.push(`${where}: allowAnyEk must be true or false`);
  const allowAnyEk = any === true;
  const list = o['enrolled'];
  if (list !== undefined && list !== null) {
    if (!isObject(list)) {
      problems.push(`${where}: enrolled must be a mapping of node name to sha256:HEX`);
    } else {
      for (const [name, value] of Object.entries(list)) {
        const shown = JSON.stringify(name.slice(0, 63));
        if (!isNodeName(name)) {
          problems.push(`${where}.enrolled: ${shown} is not a valid node name`);
          continue;
        }
        const hash = typeof value === 'string' ? value.replace(/^sha256:([0-9A-Fa-f]{64})$/, (_m, h: string) => `sha256:${h.toLowerCase()}`) : undefined;
        if (!isEkHash(hash)) {
          problems.push(`${where}.enrolled.${name} must be sha256: followed by 64 hex digits (edgeward edge tpm-ek-hash prints it)`);
          continue;
        }
        const other = byHash.get(hash);
        if (other !== undefined) {
          problems.push(`${where}.enrolled: the same EK is enrolled for ${other} and ${name} (one TPM is one node)`);
          continue;
        }
        byHash.set(hash, name);
        enrolled.set(name, hash);
      }
    }
  }
  if (allowAnyEk && enrolled.size > 0) problems.push(`${where}: allowAnyEk: true and enrolled exclude each other (allowAnyEk accepts any EK under any name)`);
  return { enrolled, allowAnyEk };
}

export function parseCloudConfig(input: CloudConfigInput): CloudConfig {
  const { problems, take } = collectProblems();
  const cwd = input.cwd ?? process.cwd();
  const env = input.env;
  const envStr = (k: string): string | undefined => {
    const v = env[k];
    return v === undefined || v === '' ? undefined : v;
  };

  // ---- the file
  let file: Obj = {};
  let fileDir = cwd;
  const configFile = input.configFile === undefined ? undefined : resolve(cwd, input.configFile);
  if (configFile !== undefined) {
    fileDir = dirname(configFile);
    const parsed = take(() => {
      const bytes = readBounded(configFile, MAX_CONFIG_FILE_BYTES);
      let text: string;
      try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
      } catch {
        throw new Error('is not UTF-8');
      }
      return parseYamlObject(text);
    }, `--config ${configFile}`);
    if (parsed !== undefined) file = parsed;
  }
  const unknownKeys = (o: Obj, allowed: readonly string[], where: string): void => {
    for (const k of Object.keys(o)) if (!allowed.includes(k)) problems.push(`${where}: unknown key ${JSON.stringify(k.slice(0, 40))}`);
  };
  unknownKeys(file, FILE_KEYS, 'config file');
  const fileString = (key: string, o: Obj = file, where = 'config file'): string | undefined => {
    const v = o[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string' || v === '') {
      problems.push(`${where}: ${key} must be a non-empty string`);
      return undefined;
    }
    return v;
  };
  const fileObject = (key: string, o: Obj = file, where = 'config file'): Obj | undefined => {
    const v = o[key];
    if (v === undefined || v === null) return undefined;
    if (!isObject(v)) {
      problems.push(`${where}: ${key} must be a mapping`);
      return undefined;
    }
    return v;
  };
  /** A path from the file (relative to the file's directory) or from a flag (relative to cwd). */
  const pathFrom = (flag: string | undefined, fromFile: string | undefined): string | undefined =>
    flag !== undefined ? resolve(cwd, flag) : fromFile !== undefined ? (isAbsolute(fromFile) ? fromFile : resolve(fileDir, fromFile)) : undefined;

  // ---- scalar fields
  const tdText = input.trustDomain ?? envStr('EDGEWARD_TRUST_DOMAIN') ?? fileString('trustDomain') ?? DEFAULT_CLOUD_TRUST_DOMAIN;
  const trustDomain = take(() => TrustDomain.parse(tdText), '--trust-domain');

  const dataDirFlag = input.dataDir ?? envStr('EDGEWARD_DATA_DIR');
  const dataDir = pathFrom(dataDirFlag, fileString('dataDir'));
  if (dataDir === undefined) problems.push('--data-dir (or EDGEWARD_DATA_DIR, or dataDir in the config file) is required');
  const adminSocketPath = dataDir === undefined ? undefined : join(dataDir, 'admin', 'admin.sock');
  if (adminSocketPath !== undefined && Buffer.byteLength(adminSocketPath) > MAX_UNIX_PATH) {
    problems.push('--data-dir is too long for a Unix socket path (DIR/admin/admin.sock must fit in 107 bytes)');
  }

  const listenText = input.listen ?? fileString('listen') ?? DEFAULT_CLOUD_LISTEN;
  const listen = take(() => parseListenAddress(listenText), '--listen');

  const durationOf = (flag: string | undefined, key: string, what: string, dflt: number, min: number, max: number): number => {
    const text = flag ?? fileString(key);
    if (text === undefined) return dflt;
    return take(() => parseDuration(text, { min, max }), flag !== undefined ? what : `config file ${key}`) ?? dflt;
  };
  const caTtlMs = durationOf(input.caTtl, 'caTtl', '--ca-ttl', DEFAULT_CLOUD_CA_TTL_MS, 60_000, 365 * DAY);
  const nodeSvidTtlMs = durationOf(input.nodeSvidTtl, 'nodeSvidTtl', '--node-svid-ttl', HOUR, 60_000, 7 * DAY);
  const maxWorkloadSvidTtlMs = durationOf(undefined, 'maxWorkloadSvidTtl', '', HOUR, 1000, 7 * DAY);
  const maxJwtSvidTtlMs = durationOf(undefined, 'maxJwtSvidTtl', '', 5 * 60_000, 1000, DAY);
  const longest = Math.max(nodeSvidTtlMs, maxWorkloadSvidTtlMs, maxJwtSvidTtlMs);
  if (caTtlMs < 6 * longest) {
    problems.push('caTtl must be at least 6x the longest SVID TTL (nodeSvidTtl, maxWorkloadSvidTtl, maxJwtSvidTtl), reference spiffe.md 3');
  }

  const levelText = envStr('EDGEWARD_LOG_LEVEL') ?? fileString('logLevel') ?? 'info';
  if (!isLogLevel(levelText)) problems.push('EDGEWARD_LOG_LEVEL (or logLevel) must be debug, info, warn or error');

  const spiffeText = input.spiffeSocket ?? envStr('SPIFFE_ENDPOINT_SOCKET') ?? fileString('spiffeSocket');
  const spiffeSocket = spiffeText === undefined ? undefined : take(() => parseSpiffeSocket(spiffeText), '--spiffe-socket');

  // ---- attestors
  const att = fileObject('attestors') ?? {};
  unknownKeys(att, ATTESTOR_KEYS, 'config file attestors');
  const jt = att['join_token'];
  if (jt !== undefined && jt !== null && !(isObject(jt) && Object.keys(jt).length === 0)) {
    problems.push('config file attestors.join_token takes no settings (it is always on): use {}');
  }
  const readPemCerts = (path: string, what: string): Buffer[] | undefined =>
    take(() => {
      const text = readBounded(path, MAX_CA_BUNDLE_BYTES).toString('utf8');
      const certs = certsFromPem(text);
      if (certs.length === 0) throw new Error(`${path} holds no PEM certificates`);
      return certs;
    }, what);

  let x509pop: CloudAttestorsConfig['x509pop'];
  const x509Obj = fileObject('x509pop', att, 'config file attestors');
  if (x509Obj !== undefined) unknownKeys(x509Obj, ['caBundle'], 'config file attestors.x509pop');
  const x509Path = pathFrom(input.x509popCaBundle, x509Obj === undefined ? undefined : fileString('caBundle', x509Obj, 'config file attestors.x509pop'));
  if (x509Obj !== undefined && x509Path === undefined) problems.push('config file attestors.x509pop: caBundle is required');
  if (x509Path !== undefined) {
    const certs = readPemCerts(x509Path, 'x509pop caBundle');
    if (certs !== undefined && take(() => createX509PopTrust(certs), `x509pop caBundle ${x509Path}`) !== undefined) {
      x509pop = Object.freeze({ caBundlePath: x509Path, caCertsDer: Object.freeze(certs) });
    }
  }

  let tpm: CloudAttestorsConfig['tpm'];
  const tpmObj = fileObject('tpm', att, 'config file attestors');
  if (tpmObj !== undefined) unknownKeys(tpmObj, ['ekCaBundle', 'enrolled', 'allowAnyEk'], 'config file attestors.tpm');
  const tpmPath = pathFrom(input.tpmEkCaBundle, tpmObj === undefined ? undefined : fileString('ekCaBundle', tpmObj, 'config file attestors.tpm'));
  if (tpmObj !== undefined && tpmPath === undefined) problems.push('config file attestors.tpm: ekCaBundle is required');
  const enrolment = parseTpmEnrolment(tpmObj ?? {}, problems);
  if (tpmPath !== undefined) {
    const certs = readPemCerts(tpmPath, 'tpm ekCaBundle');
    const valid = certs !== undefined && take(() => certs.every((c) => parseManufacturerCa(c) !== undefined), `tpm ekCaBundle ${tpmPath}`) === true;
    if (valid) tpm = Object.freeze({ ekCaBundlePath: tpmPath, manufacturerCasDer: Object.freeze(certs), ...enrolment });
  }

  // ---- numbers
  const number = (o: Obj, key: string, where: string, dflt: number, min: number, max: number, integer: boolean): number => {
    const v = o[key];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
      problems.push(`${where}.${key} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}`);
      return dflt;
    }
    return v;
  };
  const rate = fileObject('rateLimit') ?? {};
  unknownKeys(rate, RATE_KEYS, 'config file rateLimit');
  const rateLimit = Object.freeze({
    attestBurst: number(rate, 'attestBurst', 'rateLimit', 5, 1, 1_000_000, false),
    attestPerSecond: number(rate, 'attestPerSecond', 'rateLimit', 1, 0.001, 1_000_000, false),
    maxSources: number(rate, 'maxSources', 'rateLimit', 10_000, 1, 10_000_000, true),
  });
  const srv = fileObject('server') ?? {};
  unknownKeys(srv, SERVER_KEYS, 'config file server');
  const srvDuration = (key: string, dflt: number, min: number, max: number): number => {
    const text = fileString(key, srv, 'config file server');
    return text === undefined ? dflt : (take(() => parseDuration(text, { min, max }), `config file server.${key}`) ?? dflt);
  };
  const server = Object.freeze({
    maxConnections: number(srv, 'maxConnections', 'server', DEFAULT_MAX_CONNECTIONS, 1, 1_000_000, true),
    headersTimeoutMs: srvDuration('headersTimeout', 10_000, 1000, 10 * 60_000),
    requestTimeoutMs: srvDuration('requestTimeout', 30_000, 1000, 10 * 60_000),
    keepAliveTimeoutMs: srvDuration('keepAliveTimeout', 60_000, 1000, HOUR),
  });
  if (server.headersTimeoutMs > server.requestTimeoutMs) problems.push('config file server.headersTimeout must not exceed server.requestTimeout');
  const hubObj = fileObject('hub') ?? {};
  unknownKeys(hubObj, HUB_KEYS, 'config file hub');
  const hub = Object.freeze({
    maxSessions: number(hubObj, 'maxSessions', 'hub', Math.min(DEFAULT_HUB_MAX_SESSIONS, server.maxConnections), 1, 1_000_000, true),
  });
  if (hub.maxSessions > server.maxConnections) problems.push('config file hub.maxSessions must not exceed server.maxConnections (every hub session is a connection)');

  const devObj = fileObject('devices') ?? {};
  unknownKeys(devObj, DEVICES_KEYS, 'config file devices');
  const deviceTtlText = input.deviceSvidTtl ?? fileString('svidTtl', devObj, 'config file devices');
  let deviceSvidTtlMs = Math.min(DEFAULT_DEVICE_SVID_TTL_MS, Math.floor(caTtlMs / 6));
  if (deviceTtlText !== undefined) {
    const what = input.deviceSvidTtl !== undefined ? '--device-svid-ttl' : 'config file devices.svidTtl';
    const t = take(() => parseDuration(deviceTtlText, { min: 60_000, max: 7 * DAY }), what);
    if (t !== undefined) {
      if (caTtlMs < 6 * t) problems.push(`${what}: caTtl must be at least 6x the device SVID TTL, reference spiffe.md 3`);
      deviceSvidTtlMs = t;
    }
  }
  const tokenTtlText = input.deviceTokenTtl ?? fileString('tokenTtl', devObj, 'config file devices');
  const tokenTtlMs =
    tokenTtlText === undefined
      ? DEFAULT_DEVICE_TOKEN_TTL_MS
      : (take(
          () => parseDuration(tokenTtlText, { min: MIN_DEVICE_TOKEN_TTL_MS, max: MAX_DEVICE_TOKEN_TTL_MS }),
          input.deviceTokenTtl !== undefined ? '--device-token-ttl' : 'config file devices.tokenTtl',
        ) ?? DEFAULT_DEVICE_TOKEN_TTL_MS);
  const devices = Object.freeze({ svidTtlMs: deviceSvidTtlMs, tokenTtlMs });

  if (problems.length > 0 || trustDomain === undefined || dataDir === undefined || adminSocketPath === undefined || listen === undefined) {
    throw new CloudConfigError(problems.length > 0 ? problems : ['invalid configuration']);
  }
  return Object.freeze({
    trustDomain,
    dataDir,
    dbPath: join(dataDir, 'cloud.db'),
    keysDir: join(dataDir, 'keys'),
    adminSocketPath,
    listen,
    caTtlMs,
    nodeSvidTtlMs,
    maxWorkloadSvidTtlMs,
    maxJwtSvidTtlMs,
    attestors: Object.freeze({ joinToken: Object.freeze({ enabled: true as const }), x509pop, tpm }),
    rateLimit,
    server,
    hub,
    devices,
    logLevel: levelText as CloudLogLevel,
    spiffeSocket,
    configFile,
  });
}
