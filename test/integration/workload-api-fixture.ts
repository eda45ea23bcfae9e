/**
 * Test fixtures for the Workload API server and client: a small in-test WorkloadIdentitySource (a fake of
 * our own port) backed by the real identity core (CaManager mints real SVIDs and JWT-SVIDs; validation is
 * the real JWT-SVID validator), and a grpc-js client built straight from workload.proto with
 * @grpc/proto-loader (method paths /SpiffeWorkloadAPI/..., as upstream stubs use).
 */
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import {
  CaManager,
  generateP256,
  jwtBundleToJwks,
  MemoryKeyStore,
  SpiffeId,
  TrustDomain,
  validateJwtSvidSync,
} from '../../src/identity/index.js';
import type { UnixPeer } from '../../src/edge/peercred/index.js';
import type {
  AttestedCaller,
  IdentityChange,
  JwtSvidView,
  WorkloadIdentitySource,
  X509SvidView,
} from '../../src/edge/workload-api/source.js';
import { REPO_ROOT } from '../helpers/index.js';

export const TD = TrustDomain.parse('example.org');
export const HOUR = 3_600_000;

export interface FakeEntry {
  id: string;
  spiffeId: string;
  hint: string;
  /** Only callers with this uid match (undefined = every caller). */
  uid?: number;
}

/** The identity source port, faked over a real CaManager. */
export class FakeSource implements WorkloadIdentitySource {
  readonly ca: CaManager;
  readonly #listeners = new Set<(what: IdentityChange) => void>();
  readonly #entries = new Map<string, FakeEntry>();
  readonly #svids = new Map<string, X509SvidView>();
  now = Date.now();
  attestCalls = 0;
  /** When set, attest() rejects with this error. */
  attestError: Error | undefined;
  /** Artificial attestation delay (ms). */
  attestDelayMs = 0;
  jwtCalls = 0;

  constructor() {
    this.ca = new CaManager({ trustDomain: TD }, new MemoryKeyStore());
    this.ca.tick(this.now);
  }

  get listenerCount(): number {
    return this.#listeners.size;
  }

  #mint(e: FakeEntry): X509SvidView {
    const kp = generateP256();
    const issued = this.ca.issueX509Svid({ spiffeId: SpiffeId.parse(e.spiffeId), spki: kp.spki, ttlMs: HOUR, now: this.now });
    return {
      spiffeId: e.spiffeId,
      chainDer: [issued.der, ...this.ca.intermediates(this.now)],
      keyPkcs8: kp.pkcs8(),
      bundleDer: this.ca.x509Authorities(),
      hint: e.hint,
      notAfter: issued.notAfter,
      serialHex: issued.serialHex,
    };
  }

  addEntry(e: FakeEntry, notify = true): void {
    this.#entries.set(e.id, e);
    this.#svids.set(e.id, this.#mint(e));
    if (notify) this.emit('entries');
  }

  removeEntry(id: string): void {
    this.#entries.delete(id);
    this.#svids.delete(id);
    this.emit('entries');
  }

  clearEntries(): void {
    this.#entries.clear();
    this.#svids.clear();
    this.emit('entries');
  }

  /** Re-issue every SVID (rotation). */
  rotate(): void {
    for (const e of this.#entries.values()) this.#svids.set(e.id, this.#mint(e));
    this.emit('svids');
  }

  svidOf(id: string): X509SvidView | undefined {
    return this.#svids.get(id);
  }

  /** Advance the CA so that a new signing CA is prepared (the bundle changes). */
  advanceCa(ms: number): void {
    this.now += ms;
    this.ca.tick(this.now);
    this.emit('bundles');
  }

  emit(what: IdentityChange): void {
    for (const l of [...this.#listeners]) l(what);
  }

  async attest(peer: UnixPeer): Promise<AttestedCaller> {
    this.attestCalls++;
    if (this.attestDelayMs > 0) await new Promise((r) => setTimeout(r, this.attestDelayMs));
    if (this.attestError !== undefined) throw this.attestError;
    return { peer, selectors: [] };
  }

  #matching(caller: AttestedCaller): FakeEntry[] {
    return [...this.#entries.values()].filter((e) => e.uid === undefined || e.uid === caller.peer.cred.uid);
  }

  x509Svids(caller: AttestedCaller): readonly X509SvidView[] {
    return this.#matching(caller).flatMap((e) => {
      const s = this.#svids.get(e.id);
      return s === undefined ? [] : [s];
    });
  }

  async jwtSvids(caller: AttestedCaller, audience: readonly string[], spiffeId?: string): Promise<readonly JwtSvidView[]> {
    this.jwtCalls++;
    return this.#matching(caller)
      .filter((e) => spiffeId === undefined || e.spiffeId === spiffeId)
      .map((e) => ({
        spiffeId: e.spiffeId,
        hint: e.hint,
        token: this.ca.mintJwtSvid({ spiffeId: SpiffeId.parse(e.spiffeId), audience, ttlMs: 5 * 60_000, now: Date.now() }),
      }));
  }

  x509Bundles(): ReadonlyMap<string, readonly Buffer[]> {
    return new Map([[TD.idString, this.ca.x509Authorities()]]);
  }

  jwtBundles(): ReadonlyMap<string, Buffer> {
    return new Map([[TD.idString, Buffer.from(jwtBundleToJwks(this.ca.bundle()))]]);
  }

  validateJwtSvid(token: string, audience: string): { spiffeId: string; claims: Record<string, unknown> } {
    const r = validateJwtSvidSync(token, { audience, bundles: this.ca.bundle(), now: Date.now() });
    return { spiffeId: r.spiffeId.toString(), claims: r.claims };
  }

  onChange(listener: (what: IdentityChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

/** A log sink with the pino-like interface, keeping every record. */
export class MemoryLogger {
  readonly records: Array<{ level: string; obj: Record<string, unknown>; msg: string | undefined }> = [];
  info(obj: Record<string, unknown>, msg?: string): void {
    this.records.push({ level: 'info', obj, msg });
  }
  warn(obj: Record<string, unknown>, msg?: string): void {
    this.records.push({ level: 'warn', obj, msg });
  }
  error(obj: Record<string, unknown>, msg?: string): void {
    this.records.push({ level: 'error', obj, msg });
  }
  events(name: string): Array<Record<string, unknown>> {
    return this.records.filter((r) => r.obj['event'] === name).map((r) => r.obj);
  }
}

// ---------------------------------------------------------------------------------------------------
// A raw grpc-js client from the .proto file (independent of src/protocol/workload-api/proto.ts).

export const PROTO_FILE = join(REPO_ROOT, 'src', 'protocol', 'workload-api', 'workload.proto');

export function loadRawService(): grpc.ServiceClientConstructor {
  const def = loadSync(PROTO_FILE, { keepCase: true, longs: String, enums: String, bytes: Buffer, defaults: true, oneofs: true });
  return grpc.loadPackageDefinition(def)['SpiffeWorkloadAPI'] as grpc.ServiceClientConstructor;
}

export type RawClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

export function rawClient(socketPath: string): RawClient {
  const Ctor = loadRawService();
  return new Ctor(`unix://${socketPath}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }) as unknown as RawClient;
}

export function headerMd(...values: string[]): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const v of values) md.add('workload.spiffe.io', v);
  return md;
}

export const GOOD = (): grpc.Metadata => headerMd('true');

export interface StreamResult<T> {
  messages: T[];
  status: grpc.StatusObject;
  firstAt: number | undefined;
}

/** Open a server stream and collect messages until it ends (or `stopAfter` messages, then cancel). */
export function collectStream<T>(client: RawClient, method: string, md: grpc.Metadata, opts: { stopAfter?: number; timeoutMs?: number } = {}): Promise<StreamResult<T>> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const call = client[method]!({}, md) as grpc.ClientReadableStream<T>;
    const messages: T[] = [];
    let firstAt: number | undefined;
    const timer = setTimeout(() => {
      call.cancel();
      reject(new Error(`${method}: timeout with ${messages.length} messages`));
    }, opts.timeoutMs ?? 10_000);
    call.on('data', (m: T) => {
      firstAt ??= Date.now() - started;
      messages.push(m);
      if (opts.stopAfter !== undefined && messages.length >= opts.stopAfter) call.cancel();
    });
    call.on('error', () => {});
    call.on('status', (status: grpc.StatusObject) => {
      clearTimeout(timer);
      resolve({ messages, status, firstAt });
    });
  });
}

/** An open stream whose messages can be awaited one at a time. */
export class OpenStream<T> {
  readonly call: grpc.ClientReadableStream<T>;
  readonly messages: T[] = [];
  status: grpc.StatusObject | undefined;
  #waiters: Array<() => void> = [];

  constructor(client: RawClient, method: string, md: grpc.Metadata = GOOD()) {
    this.call = client[method]!({}, md) as grpc.ClientReadableStream<T>;
    this.call.on('data', (m: T) => {
      this.messages.push(m);
      this.#wake();
    });
    this.call.on('error', () => {});
    this.call.on('status', (s: grpc.StatusObject) => {
      this.status = s;
      this.#wake();
    });
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  /** Wait until `cond` holds (checked after every event). */
  async until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!cond()) {
      const left = end - Date.now();
      if (left <= 0) throw new Error(`timeout: ${this.messages.length} messages, status ${JSON.stringify(this.status)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async nth(n: number, timeoutMs?: number): Promise<T> {
    await this.until(() => this.messages.length >= n || this.status !== undefined, timeoutMs);
    const m = this.messages[n - 1];
    if (m === undefined) throw new Error(`stream ended with ${JSON.stringify(this.status)} before message ${n}`);
    return m;
  }

  async ended(timeoutMs?: number): Promise<grpc.StatusObject> {
    await this.until(() => this.status !== undefined, timeoutMs);
    return this.status!;
  }

  cancel(): void {
    this.call.cancel();
  }
}

export function unary<T>(client: RawClient, method: string, req: unknown, md: grpc.Metadata): Promise<{ err: grpc.ServiceError | null; res: T | undefined }> {
  return new Promise((resolve) => {
    client[method]!(req, md, (err: grpc.ServiceError | null, res: T | undefined) => resolve({ err, res }));
  });
}

export async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}
