/**
 * WorkloadApiX509Source (src/protocol/workload-api/x509-source.ts) over a fake FetchX509SVID watcher, a
 * ManualClock and fake timers. The X.509 contexts are real: SVIDs minted by the identity core, parsed by
 * the client's strict response parser. The real client against a real agent is in
 * test/integration/x509-source.test.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  BundleSet,
  generateP256,
  ManualClock,
  mintRootCa,
  mintX509Svid,
  signerFromPrivateKey,
  SpiffeId,
  TrustDomain,
  validateX509Svid,
  type CertIssuer,
  type IdentitySource,
} from '../../../src/identity/index.js';
import {
  EndpointError,
  parseX509SvidResponse,
  WorkloadApiClientError,
  WorkloadApiX509Source,
  X509SourceError,
  type ClientTimers,
  type Watch,
  type WatchErrorInfo,
  type X509Context,
  type X509ContextWatcher,
  type X509SourceLogger,
  type X509SVIDMessage,
} from '../../../src/protocol/index.js';

const T0 = Date.UTC(2030, 0, 1);
const HOUR = 3_600_000;
const TD = TrustDomain.parse('example.org');
const CLOUD = SpiffeId.parse('spiffe://example.org/edgeward/cloud');
const NODE = SpiffeId.parse('spiffe://example.org/edgeward/node/n1');

// ---- fixtures --------------------------------------------------------------------------------------

interface Ca {
  issuer: CertIssuer;
  der: Buffer;
}

function makeCa(td: TrustDomain, now = T0): Ca {
  const signer = signerFromPrivateKey(generateP256().privateKey);
  const root = mintRootCa({ trustDomain: td, signer, now, ttlMs: 48 * HOUR });
  return { issuer: { cert: root.parsed, signer }, der: root.der };
}

interface SvidSpec {
  id: SpiffeId;
  /** Signs the SVID (default: the bundle CA). */
  signer?: Ca;
  hint?: string;
  ttlMs?: number;
  now?: number;
}

function svidMessage(bundle: Ca, spec: SvidSpec): { msg: X509SVIDMessage; serialHex: string; notAfter: number } {
  const key = generateP256();
  const leaf = mintX509Svid({ spiffeId: spec.id, spki: key.spki, issuer: (spec.signer ?? bundle).issuer, now: spec.now ?? T0, ttlMs: spec.ttlMs ?? HOUR });
  return {
    msg: { spiffe_id: spec.id.toString(), x509_svid: leaf.der, x509_svid_key: key.pkcs8(), bundle: bundle.der, hint: spec.hint ?? '' },
    serialHex: leaf.serialHex,
    notAfter: leaf.notAfter,
  };
}

function context(bundle: Ca, specs: SvidSpec[], federated: Record<string, Buffer> = {}): { ctx: X509Context; serials: string[]; notAfter: number[] } {
  const made = specs.map((s) => svidMessage(bundle, s));
  const ctx = parseX509SvidResponse({ svids: made.map((m) => m.msg), crl: [], federated_bundles: federated });
  return { ctx, serials: made.map((m) => m.serialHex), notAfter: made.map((m) => m.notAfter) };
}

/** Timers driven by the ManualClock. */
class FakeTimers implements ClientTimers {
  readonly pending: Array<{ at: number; ms: number; fn: () => void; cleared: boolean }> = [];
  constructor(readonly clock: ManualClock) {}
  setTimeout(fn: () => void, ms: number): unknown {
    const t = { at: this.clock.now() + ms, ms, fn, cleared: false };
    this.pending.push(t);
    return t;
  }
  clearTimeout(handle: unknown): void {
    (handle as { cleared: boolean }).cleared = true;
  }
  active(): Array<{ at: number; ms: number }> {
    return this.pending.filter((t) => !t.cleared);
  }
  /** Advance the clock and run every timer that fell due, in order. */
  advance(ms: number): void {
    const end = this.clock.now() + ms;
    for (;;) {
      const due = this.pending.filter((t) => !t.cleared && t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (due === undefined) break;
      due.cleared = true;
      if (due.at > this.clock.now()) this.clock.set(due.at);
      due.fn();
    }
    this.clock.set(end);
  }
}

interface FakeStream {
  closed: boolean;
  onUpdate: (ctx: X509Context) => void;
  onError: (e: WorkloadApiClientError, info: WatchErrorInfo) => void;
}

/** The FetchX509SVID watcher port: each watch is a fake stream the test drives. */
class FakeWatcher implements X509ContextWatcher {
  readonly streams: FakeStream[] = [];
  closed = false;
  watchX509Svid(onUpdate: FakeStream['onUpdate'], onError: FakeStream['onError']): Watch {
    if (this.closed) throw new WorkloadApiClientError('workload-api/closed', 'closed');
    const s: FakeStream = { closed: false, onUpdate, onError };
    this.streams.push(s);
    return { close: () => void (s.closed = true) };
  }
  close(): void {
    this.closed = true;
  }
  get current(): FakeStream {
    const s = this.streams.at(-1);
    if (s === undefined || s.closed) throw new Error('no open stream');
    return s;
  }
  openStreams(): number {
    return this.streams.filter((s) => !s.closed).length;
  }
  send(ctx: X509Context): void {
    this.current.onUpdate(ctx);
  }
  /** A broken stream, as the client reports it (retrying unless terminal). */
  break(code: WorkloadApiClientError['code'] = 'workload-api/unavailable', retrying = true): void {
    this.current.onError(new WorkloadApiClientError(code, `stream failed: ${code}`), retrying ? { retrying, delayMs: 1000 } : { retrying });
  }
}

class MemLogger implements X509SourceLogger {
  readonly lines: Array<{ level: string; obj: Record<string, unknown>; msg: string }> = [];
  info(obj: Record<string, unknown>, msg: string): void {
    this.lines.push({ level: 'info', obj, msg });
  }
  warn(obj: Record<string, unknown>, msg: string): void {
    this.lines.push({ level: 'warn', obj, msg });
  }
  error(obj: Record<string, unknown>, msg: string): void {
    this.lines.push({ level: 'error', obj, msg });
  }
  events(): unknown[] {
    return this.lines.map((l) => l.obj['event']);
  }
}

interface Rig {
  clock: ManualClock;
  timers: FakeTimers;
  watcher: FakeWatcher;
  logger: MemLogger;
}

function rig(): Rig {
  const clock = new ManualClock(T0);
  return { clock, timers: new FakeTimers(clock), watcher: new FakeWatcher(), logger: new MemLogger() };
}

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

async function expectCode(p: Promise<unknown> | (() => unknown), code: string): Promise<X509SourceError> {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(X509SourceError);
  expect((err as X509SourceError).code).toBe(code);
  return err as X509SourceError;
}

/** create() with the rig; the first context is sent once the source has opened its stream. */
async function ready(r: Rig, first: X509Context, extra: Partial<Parameters<typeof WorkloadApiX509Source.create>[0]> = {}): Promise<WorkloadApiX509Source> {
  const p = WorkloadApiX509Source.create({ watcher: r.watcher, clock: r.clock, timers: r.timers, logger: r.logger, random: () => 0.5, ...extra });
  r.watcher.send(first);
  return p;
}

// ---- tests -----------------------------------------------------------------------------------------

describe('WorkloadApiX509Source.create', () => {
  it('resolves with the first context: SVID, key, chain, expiry and the bundle of the trust domain', async () => {
    const r = rig();
    const ca = makeCa(TD);
    const { ctx, serials, notAfter } = context(ca, [{ id: CLOUD }]);
    const src: IdentitySource = await ready(r, ctx, { expectedId: CLOUD });
    const s = src.svid();
    expect(s.spiffeId.toString()).toBe(CLOUD.toString());
    expect(s.serialHex).toBe(serials[0]);
    expect(s.notAfter).toBe(notAfter[0]);
    expect(s.chainDer[0]!.equals(ctx.defaultSvid.chainDer[0]!)).toBe(true);
    expect(s.privateKey.type).toBe('private');
    expect(src.bundles().get(TD)?.x509Authorities.map((d) => d.toString('hex'))).toEqual([ca.der.toString('hex')]);
    expect(r.logger.events()).toContain('x509_source.ready');
    await src.close();
  });

  it('rejects with x509-source/timeout when no context arrives, naming the last stream error, and closes the client', async () => {
    const r = rig();
    const p = WorkloadApiX509Source.create({ watcher: r.watcher, clock: r.clock, timers: r.timers, timeoutMs: 5000, random: () => 0 });
    r.watcher.break('workload-api/permission-denied');
    await flush();
    const err = expectCode(p, 'x509-source/timeout');
    r.timers.advance(5000);
    expect((await err).message).toContain('workload-api/permission-denied');
    expect(r.watcher.closed).toBe(true);
    expect(r.timers.active()).toEqual([]);
  });

  it('rejects with x509-source/unavailable when the server refuses for good (Workload Endpoint App. A)', async () => {
    const r = rig();
    const p = WorkloadApiX509Source.create({ watcher: r.watcher, clock: r.clock, timers: r.timers });
    r.watcher.break('workload-api/unimplemented', false);
    await expectCode(p, 'x509-source/unavailable');
    expect(r.watcher.closed).toBe(true);
    expect(r.timers.active()).toEqual([]);
  });

  it('rejects a first context with another SPIFFE ID (exact ID and predicate forms) with x509-source/unexpected-id', async () => {
    for (const expectedId of [CLOUD, (id: SpiffeId) => id.path === '/edgeward/cloud']) {
      const r = rig();
      const { ctx } = context(makeCa(TD), [{ id: NODE }]);
      const err = await expectCode(ready(r, ctx, { expectedId }), 'x509-source/unexpected-id');
      expect(err.message).toContain(NODE.toString());
      expect(r.watcher.closed).toBe(true);
      expect(r.logger.lines.find((l) => l.obj['event'] === 'security.x509_source_refused')?.obj).toMatchObject({ code: 'x509-source/unexpected-id' });
    }
  });

  it('picks the SVID whose ID is expectedId among several, or the one with the requested hint', async () => {
    const ca = makeCa(TD);
    const { ctx } = context(ca, [{ id: NODE, hint: 'node' }, { id: CLOUD, hint: 'cloud' }]);
    const byId = await ready(rig(), ctx, { expectedId: CLOUD });
    expect(byId.svid().spiffeId.toString()).toBe(CLOUD.toString());
    const byHint = await ready(rig(), ctx, { pickSvid: 'node' });
    expect(byHint.svid().spiffeId.toString()).toBe(NODE.toString());
    // Without a picker or an expected ID: the default SVID, the first (Workload API 5.2).
    const dflt = await ready(rig(), ctx);
    expect(dflt.svid().spiffeId.toString()).toBe(NODE.toString());
    await expectCode(ready(rig(), ctx, { pickSvid: 'nope' }), 'x509-source/no-matching-svid');
    await expectCode(ready(rig(), ctx, { pickSvid: () => undefined }), 'x509-source/no-matching-svid');
    // A hint that names another ID than the expected one is still refused.
    await expectCode(ready(rig(), ctx, { pickSvid: 'node', expectedId: CLOUD }), 'x509-source/unexpected-id');
  });

  it('rejects an SVID that does not chain to the bundle received with it (X509-SVID 5) with x509-source/invalid-svid', async () => {
    const r = rig();
    const { ctx } = context(makeCa(TD), [{ id: CLOUD, signer: makeCa(TD) }]);
    const err = await expectCode(ready(r, ctx, { expectedId: CLOUD }), 'x509-source/invalid-svid');
    expect(err.detail?.['reason']).toBe('x509-svid/untrusted');
  });

  it('rejects an SVID that is already expired at our clock', async () => {
    const r = rig();
    const { ctx } = context(makeCa(TD), [{ id: CLOUD, ttlMs: 60_000 }]);
    r.clock.advance(61_000);
    const err = await expectCode(ready(r, ctx), 'x509-source/invalid-svid');
    expect(err.detail?.['reason']).toBe('x509-svid/expired');
  });

  it('refuses bad options and a missing endpoint with typed errors', async () => {
    await expectCode(WorkloadApiX509Source.create({ watcher: new FakeWatcher(), timeoutMs: 0 }), 'x509-source/bad-options');
    await expectCode(WorkloadApiX509Source.create({ watcher: new FakeWatcher(), pickSvid: '' }), 'x509-source/bad-options');
    await expectCode(WorkloadApiX509Source.create({ watcher: new FakeWatcher(), expectedId: SpiffeId.parse('spiffe://example.org') }), 'x509-source/bad-options');
    await expectCode(WorkloadApiX509Source.create({ watcher: new FakeWatcher(), backoff: { maxMs: -1 } }), 'x509-source/bad-options');
    const missing = await WorkloadApiX509Source.create({ env: {} }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(EndpointError);
    expect((missing as EndpointError).code).toBe('endpoint/missing');
    const invalid = await WorkloadApiX509Source.create({ endpoint: 'unix://host/sock' }).catch((e: unknown) => e);
    expect((invalid as EndpointError).code).toBe('endpoint/invalid');
  });
});

describe('updates after start', () => {
  it('onChange fires on rotation (new serial), not on an identical context; unsubscribe works', async () => {
    const r = rig();
    const ca = makeCa(TD);
    const first = context(ca, [{ id: CLOUD }]);
    const src = await ready(r, first.ctx, { expectedId: CLOUD });
    let changes = 0;
    const off = src.onChange(() => changes++);
    r.watcher.send(first.ctx); // the same state again (e.g. another entry of the caller rotated)
    expect(changes).toBe(0);
    const second = context(ca, [{ id: CLOUD }]);
    r.watcher.send(second.ctx);
    expect(changes).toBe(1);
    expect(src.svid().serialHex).toBe(second.serials[0]);
    expect(src.svid().serialHex).not.toBe(first.serials[0]);
    expect(src.status()).toMatchObject({ connected: true, updates: 3, refused: 0 });
    off();
    r.watcher.send(context(ca, [{ id: CLOUD }]).ctx);
    expect(changes).toBe(1);
  });

  it('onChange fires when only the bundles change (a federated trust domain appears)', async () => {
    const r = rig();
    const ca = makeCa(TD);
    const { ctx, serials } = context(ca, [{ id: CLOUD }]);
    const src = await ready(r, ctx);
    let changes = 0;
    src.onChange(() => changes++);
    const other = makeCa(TrustDomain.parse('other.org'));
    const withFed = parseX509SvidResponse({
      svids: [{ spiffe_id: CLOUD.toString(), x509_svid: Buffer.concat(ctx.defaultSvid.chainDer), x509_svid_key: ctx.defaultSvid.keyPkcs8, bundle: ca.der, hint: '' }],
      crl: [],
      federated_bundles: { 'spiffe://other.org': other.der },
    });
    r.watcher.send(withFed);
    expect(changes).toBe(1);
    expect(src.svid().serialHex).toBe(serials[0]);
    expect(src.bundles().trustDomains().map((t) => t.name)).toEqual(['example.org', 'other.org']);
  });

  it('refuses a later context with another ID: typed refusal, security event, the previous SVID stays, no onChange', async () => {
    const r = rig();
    const ca = makeCa(TD);
    const first = context(ca, [{ id: CLOUD }]);
    const src = await ready(r, first.ctx, { expectedId: CLOUD });
    let changes = 0;
    src.onChange(() => changes++);
    r.watcher.send(context(ca, [{ id: NODE }]).ctx);
    expect(changes).toBe(0);
    expect(src.svid().serialHex).toBe(first.serials[0]);
    expect(src.status()).toMatchObject({ refused: 1, lastError: { code: 'x509-source/unexpected-id' } });
    const ev = r.logger.lines.filter((l) => l.obj['event'] === 'security.x509_source_refused');
    expect(ev).toHaveLength(1);
    expect(ev[0]!.obj).toMatchObject({ code: 'x509-source/unexpected-id', spiffe_id: NODE.toString(), expected: CLOUD.toString(), kept_previous: true });
    // An untrusted one is refused too.
    r.watcher.send(context(ca, [{ id: CLOUD, signer: makeCa(TD) }]).ctx);
    expect(src.svid().serialHex).toBe(first.serials[0]);
    expect(src.status().lastError?.code).toBe('x509-source/invalid-svid');
    // No key material in any log line.
    const pem = src.svid().privateKey.export({ type: 'pkcs8', format: 'der' }).toString('base64');
    expect(JSON.stringify(r.logger.lines)).not.toContain(pem.slice(20, 60));
  });

  it('a malformed message does not break the stream or the current SVID', async () => {
    const r = rig();
    const first = context(makeCa(TD), [{ id: CLOUD }]);
    const src = await ready(r, first.ctx);
    r.watcher.current.onError(new WorkloadApiClientError('workload-api/bad-response', 'bad'), { retrying: true, delayMs: 0 });
    await flush();
    expect(r.watcher.openStreams()).toBe(1);
    expect(r.timers.active()).toEqual([]);
    expect(src.svid().serialHex).toBe(first.serials[0]);
    expect(src.status().connected).toBe(true);
    expect(r.logger.events()).toContain('security.x509_source_bad_response');
  });
});

describe('reconnection', () => {
  it('reconnects with capped exponential backoff and full jitter, serving the last SVID meanwhile; resets after a good context', async () => {
    const r = rig();
    const ca = makeCa(TD);
    const first = context(ca, [{ id: CLOUD }]);
    let u = 0.999;
    const src = await ready(r, first.ctx, { backoff: { initialMs: 1000, maxMs: 5000 }, random: () => u });
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      r.watcher.break();
      await flush(); // the source closes the broken watch in a microtask (the client's own retry is cancelled)
      expect(r.watcher.openStreams()).toBe(0);
      const [t] = r.timers.active();
      delays.push(t!.ms);
      expect(src.status().connected).toBe(false);
      expect(src.svid().serialHex).toBe(first.serials[0]); // keeps serving the last SVID
      r.timers.advance(t!.ms);
      expect(r.watcher.openStreams()).toBe(1); // reconnected
    }
    // random() * min(max, initial * 2^(n-1)), floored: 1 s, 2 s, 4 s, then capped at 5 s.
    expect(delays).toEqual([999, 1998, 3996, 4995, 4995]);
    // Full jitter: the delay can be anywhere down to 0.
    u = 0;
    r.watcher.break();
    await flush();
    expect(r.timers.active()[0]!.ms).toBe(0);
    r.timers.advance(0);
    // A good context resets the backoff.
    u = 0.999;
    const second = context(ca, [{ id: CLOUD }]);
    r.watcher.send(second.ctx);
    expect(src.status().connected).toBe(true);
    r.watcher.break();
    await flush();
    expect(r.timers.active()[0]!.ms).toBe(999);
    expect(r.logger.events()).toContain('x509_source.stream_error');
  });

  it('svid() throws x509-source/expired once the last SVID expires while disconnected; a new context heals it', async () => {
    const r = rig();
    const ca = makeCa(TD);
    const first = context(ca, [{ id: CLOUD, ttlMs: 60_000 }]);
    const src = await ready(r, first.ctx, { backoff: { initialMs: 1000, maxMs: 1000 } });
    r.watcher.break();
    await flush();
    r.clock.set(first.notAfter[0]!);
    expect(src.svid().serialHex).toBe(first.serials[0]); // valid through NotAfter inclusive
    r.clock.advance(1);
    const err = await expectCode(() => src.svid(), 'x509-source/expired');
    expect(err.detail?.['last_error']).toBe('workload-api/unavailable');
    expect(src.bundles().has(TD)).toBe(true); // the bundles stay available
    r.timers.advance(1000);
    // Minted "now" so it validates at our clock.
    const renewed = context(ca, [{ id: CLOUD, now: r.clock.now() }]);
    r.watcher.send(renewed.ctx);
    expect(src.svid().serialHex).toBe(renewed.serials[0]);
  });

  it('stops for good on a terminal error but keeps serving the last SVID', async () => {
    const r = rig();
    const first = context(makeCa(TD), [{ id: CLOUD }]);
    const src = await ready(r, first.ctx);
    r.watcher.break('workload-api/invalid-argument', false);
    await flush();
    expect(r.timers.active()).toEqual([]);
    expect(r.watcher.openStreams()).toBe(0);
    expect(src.svid().serialHex).toBe(first.serials[0]);
    expect(r.logger.events()).toContain('x509_source.stopped');
  });

  it('a throwing listener does not stop the others', async () => {
    const r = rig();
    const ca = makeCa(TD);
    const src = await ready(r, context(ca, [{ id: CLOUD }]).ctx);
    let called = 0;
    src.onChange(() => {
      throw new Error('boom');
    });
    src.onChange(() => called++);
    r.watcher.send(context(ca, [{ id: CLOUD }]).ctx);
    expect(called).toBe(1);
    expect(r.logger.events()).toContain('x509_source.listener_failed');
  });
});

describe('close', () => {
  it('closes the stream and the client, clears timers, and svid()/bundles() throw x509-source/closed', async () => {
    const r = rig();
    const ca = makeCa(TD);
    const src = await ready(r, context(ca, [{ id: CLOUD }]).ctx);
    r.watcher.break();
    await flush();
    expect(r.timers.active()).toHaveLength(1);
    let changes = 0;
    src.onChange(() => changes++);
    await src.close();
    await src.close(); // idempotent
    expect(r.watcher.closed).toBe(true);
    expect(r.timers.active()).toEqual([]);
    await expectCode(() => src.svid(), 'x509-source/closed');
    await expectCode(() => src.bundles(), 'x509-source/closed');
    expect(changes).toBe(0);
    expect(src.closed).toBe(true);
  });

  it('the bundles validate a peer SVID of the same CA and refuse one of another CA (X509-SVID 5)', async () => {
    const r = rig();
    const ca = makeCa(TD);
    const src = await ready(r, context(ca, [{ id: CLOUD }]).ctx);
    const b: BundleSet = src.bundles();
    const peer = context(ca, [{ id: NODE }]).ctx.defaultSvid;
    expect(validateX509Svid(peer.chainDer, b, r.clock.now()).spiffeId.toString()).toBe(NODE.toString());
    const stranger = context(makeCa(TD), [{ id: NODE }]).ctx.defaultSvid;
    expect(() => validateX509Svid(stranger.chainDer, b, r.clock.now())).toThrow(expect.objectContaining({ code: 'x509-svid/untrusted' }));
  });
});

describe('with the real WorkloadApiClient', () => {
  it('takes over the client\'s retry: after a failed stream only the source\'s own backoff timer is armed', async () => {
    const r = rig();
    const dir = await mkdtemp(join(tmpdir(), 'edgeward-x509src-'));
    try {
      const p = WorkloadApiX509Source.create({ endpoint: `unix://${join(dir, 'absent.sock')}`, clock: r.clock, timers: r.timers, logger: r.logger, random: () => 0.5, timeoutMs: 60_000 });
      const outcome = p.catch((e: unknown) => e);
      // The stream fails for real (no socket); wait for the source's reconnect timer.
      const deadline = Date.now() + 10_000;
      while (!r.logger.events().includes('x509_source.stream_error') && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
      await flush();
      expect(r.logger.lines.find((l) => l.obj['event'] === 'x509_source.stream_error')?.obj).toMatchObject({ code: 'workload-api/unavailable', attempt: 1 });
      // The create() timeout and our retry (0.5 * 500 ms); the client's linear retry was cancelled.
      expect(r.timers.active().map((t) => t.ms).sort((a, b) => a - b)).toEqual([250, 60_000]);
      r.timers.advance(60_000);
      const err = (await outcome) as X509SourceError;
      expect(err.code).toBe('x509-source/timeout');
      expect(err.message).toContain('workload-api/unavailable');
      expect(r.timers.active()).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
