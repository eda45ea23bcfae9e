/**
 * A test PKI and the ports the EventBus needs (issue #6): a trust domain root, a node SVID as the broker's server
 * certificate (an IdentitySource that can be rotated), device SVIDs written as PEM files for mosquitto and
 * mqtt.js, and an in-memory DeviceDirectory (a port of ours: fakes are fine here; TLS, sockets and clients are
 * real).
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import {
  BundleSet,
  certToPem,
  generateP256,
  mintRootCa,
  mintX509Svid,
  signerFromPrivateKey,
  SpiffeId,
  TrustBundle,
  TrustDomain,
  x509AuthoritiesPem,
  type IdentitySource,
  type IssuedCert,
  type SvidWithKey,
} from '../../src/identity/index.js';
import type { DeviceDirectory, DeviceDirectoryChange, LocalDevice } from '../../src/edge/devices/directory.js';

export const TD = TrustDomain.parse('bus.example.org');

export interface Authority {
  readonly td: TrustDomain;
  readonly root: IssuedCert;
  readonly key: KeyObject;
  readonly bundle: TrustBundle;
}

/** A root CA valid from an hour ago (a leaf cannot start before its issuer: mint clamps it). */
export function authority(td = TD, now = Date.now() - 3_600_000): Authority {
  const { privateKey } = generateP256();
  const root = mintRootCa({ trustDomain: td, signer: signerFromPrivateKey(privateKey), now, ttlMs: 48 * 3_600_000 });
  return { td, root, key: privateKey, bundle: TrustBundle.create({ trustDomain: td, x509Authorities: [root.der] }) };
}

export interface Leaf {
  readonly id: string;
  readonly cert: IssuedCert;
  readonly key: KeyObject;
  readonly svid: SvidWithKey;
}

export function leaf(ca: Authority, id: string, opts: { now?: number; ttlMs?: number } = {}): Leaf {
  const k = generateP256();
  const cert = mintX509Svid({ spiffeId: SpiffeId.parse(id), spki: k.spki, issuer: { cert: ca.root.parsed, signer: signerFromPrivateKey(ca.key) }, now: opts.now ?? Date.now(), ttlMs: opts.ttlMs ?? 3_600_000 });
  return { id, cert, key: k.privateKey, svid: { spiffeId: SpiffeId.parse(id), chainDer: [cert.der], privateKey: k.privateKey, notAfter: cert.notAfter, serialHex: cert.serialHex } };
}

/** Write a client's cert/key (and the CA) as PEM files; returns their paths. */
export function pemFiles(dir: string, name: string, l: Leaf, ca: Authority): { cert: string; key: string; ca: string } {
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  const caFile = join(dir, `${name}-ca.pem`);
  writeFileSync(cert, certToPem(l.cert.der));
  writeFileSync(key, l.key.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  writeFileSync(caFile, x509AuthoritiesPem(ca.bundle));
  return { cert, key, ca: caFile };
}

/** An IdentitySource over a node SVID that tests can rotate. */
export function nodeIdentity(ca: Authority, node = 'bus-node'): IdentitySource & { rotate(extra?: TrustBundle): Leaf; current(): Leaf } {
  let l = leaf(ca, `spiffe://${ca.td.name}/edgeward/node/${node}`);
  let bundles = BundleSet.of([ca.bundle]);
  const listeners = new Set<() => void>();
  return {
    svid: () => l.svid,
    bundles: () => bundles,
    onChange(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    close() {},
    current: () => l,
    rotate(bundle) {
      l = leaf(ca, `spiffe://${ca.td.name}/edgeward/node/${node}`);
      if (bundle !== undefined) bundles = BundleSet.of([bundle]);
      for (const fn of listeners) fn();
      return l;
    },
  };
}

/** An in-memory DeviceDirectory. */
export function memoryDirectory(): DeviceDirectory & { put(fullName: string, extra?: Partial<LocalDevice>): void; remove(fullName: string): void } {
  const devices = new Map<string, LocalDevice>();
  const listeners = new Set<(c: DeviceDirectoryChange) => void>();
  const emit = (c: DeviceDirectoryChange): void => {
    for (const l of listeners) l(c);
  };
  return {
    get: (n) => devices.get(n),
    list: () => [...devices.values()],
    onChange(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    put(fullName, extra = {}) {
      const [namespace, name] = fullName.split('/') as [string, string];
      devices.set(fullName, {
        fullName,
        namespace,
        name,
        spiffeId: `spiffe://${TD.name}/edgeward/device/${fullName}`,
        version: (devices.get(fullName)?.version ?? 0) + 1,
        spec: { deviceModelRef: { name: 'm' }, nodeName: 'bus-node', properties: [] },
        model: undefined,
        revokedBefore: undefined,
        ...extra,
      });
      emit({ fullName, op: 'put' });
    },
    remove(fullName) {
      devices.delete(fullName);
      emit({ fullName, op: 'delete' });
    },
  };
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** A Debian mosquitto client, bounded in time (only this child is killed at the timeout). */
export function mosquitto(cmd: 'mosquitto_pub' | 'mosquitto_sub', args: readonly string[], timeoutMs = 10_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, [...args], { timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8' }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
    });
  });
}

/** An mqtt.js client over mTLS (the server is checked by its chain; no host name). */
export async function mqttClient(port: number, l: Leaf, ca: Authority, clientId: string, extra: IClientOptions = {}): Promise<MqttClient> {
  const options: IClientOptions & { checkServerIdentity: () => undefined } = {
    protocol: 'mqtts',
    host: '127.0.0.1',
    port,
    clientId,
    reconnectPeriod: 0,
    connectTimeout: 5_000,
    ca: x509AuthoritiesPem(ca.bundle),
    cert: certToPem(l.cert.der),
    key: l.key.export({ type: 'pkcs8', format: 'pem' }) as string,
    rejectUnauthorized: true,
    checkServerIdentity: () => undefined,
    ...extra,
  };
  // Resolve on CONNACK 0; reject on a refused CONNACK, an error or a close before it (mqtt.js's connectAsync
  // does not settle on a refusal when reconnecting is off).
  const c = connect(options);
  return new Promise((resolve, reject) => {
    const fail = (e: Error): void => {
      c.end(true);
      reject(e);
    };
    c.once('connect', () => resolve(c));
    c.once('error', fail);
    c.once('close', () => fail(new Error('closed before CONNACK')));
  });
}
