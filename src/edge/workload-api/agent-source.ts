/**
 * The agent's WorkloadIdentitySource: attestation (kernel evidence -> selectors), registration entries
 * (selectors -> entries, subset rule), the X509-SVID cache and the JWT-SVID cache, and the trust bundle.
 * Signing is behind ports, so standalone mode (local CA) and joined mode (cloud CA) share this code.
 */
import {
  jwtBundleToJwks,
  SpiffeId,
  SpiffeIdError,
  validateJwtSvidSync,
  type Clock,
  type TrustBundle,
} from '../../identity/index.js';
import { attestWorkload, type Selector, type WorkloadAttestor } from '../../attestation/index.js';
import { JwtSvidCache } from '../svid/jwt-cache.js';
import { SvidCache, type X509SvidIssuer } from '../svid/svid-cache.js';
import type { Timers } from '../svid/timers.js';
import type { AttestedCaller, IdentityChange, JwtSvidView, WorkloadIdentitySource, X509SvidView } from './source.js';
import { WorkloadEndpointError } from './status.js';

export interface EntryView {
  id: string;
  spiffeId: SpiffeId;
  /** The entry's parent (the node, or a node alias), when the catalogue knows it. */
  parentId?: SpiffeId | undefined;
  selectors: readonly Selector[];
  x509SvidTtlMs?: number | undefined;
  jwtSvidTtlMs?: number | undefined;
  dnsNames: readonly string[];
  hint?: string | undefined;
}

/** The registration entries this agent serves (already filtered to those delegated to it). */
export interface EntryCatalog {
  all(): readonly EntryView[];
  /** Entries whose selectors are all among `selectors` (spiffe.md 3, subset rule). */
  match(selectors: readonly Selector[]): readonly EntryView[];
  onChange(listener: () => void): () => void;
}

export interface JwtMint {
  token: string;
  issuedAt: number;
  expiresAt: number;
}

/** Trust material and JWT signing: the local CA (standalone) or the cloud (joined). */
export interface TrustSource {
  bundle(): TrustBundle;
  /** Synchronous for the local CA; a promise when the cloud signs (joined mode, `jwt.request` by entry). */
  mintJwtSvid(req: { entryId: string; spiffeId: SpiffeId; audience: readonly string[]; ttlMs: number }): JwtMint | Promise<JwtMint>;
  readonly defaultJwtSvidTtlMs: number;
  onChange(listener: () => void): () => void;
}

export interface AgentSourceDeps {
  clock: Clock;
  timers: Timers;
  /** Workload attestors (unix, and the runner's later); all run for every caller (attestWorkload). */
  attestors: readonly WorkloadAttestor[];
  entries: EntryCatalog;
  issuer: X509SvidIssuer;
  trust: TrustSource;
  /** Called when an SVID could not be issued (logged by the caller as a security-relevant event). */
  onIssueFailed?: (entryId: string, error: unknown) => void;
}

export interface AgentSource extends WorkloadIdentitySource {
  /** Issue SVIDs for the current entries (call once at start; later changes are followed). */
  start(): Promise<void>;
  close(): void;
}

export function createAgentSource(deps: AgentSourceDeps): AgentSource {
  const listeners = new Set<(what: IdentityChange) => void>();
  const emit = (what: IdentityChange): void => {
    for (const l of listeners) l(what);
  };
  const svids = new SvidCache({
    issuer: deps.issuer,
    clock: deps.clock,
    timers: deps.timers,
    events: { changed: () => emit('svids'), issueFailed: (id, e) => deps.onIssueFailed?.(id, e) },
  });
  const jwts = new JwtSvidCache(deps.clock);
  let bundleCache: { bundle: TrustBundle; x509: Map<string, readonly Buffer[]>; jwt: Map<string, Buffer> } | undefined;
  const bundles = (): NonNullable<typeof bundleCache> => {
    const b = deps.trust.bundle();
    if (bundleCache?.bundle !== b) {
      const id = b.trustDomain.idString;
      bundleCache = {
        bundle: b,
        x509: new Map([[id, b.x509Authorities]]),
        jwt: new Map([[id, Buffer.from(jwtBundleToJwks(b))]]),
      };
    }
    return bundleCache;
  };
  const unsubs = [
    deps.entries.onChange(() => {
      emit('entries');
      void svids.reconcile(deps.entries.all());
    }),
    deps.trust.onChange(() => {
      jwts.clear();
      emit('bundles');
    }),
  ];

  const view = (e: EntryView): X509SvidView | undefined => {
    const s = svids.get(e.id);
    if (s === undefined) return undefined;
    return {
      spiffeId: s.spiffeId,
      chainDer: s.chainDer,
      keyPkcs8: s.keyPkcs8,
      bundleDer: bundles().bundle.x509Authorities,
      hint: s.hint,
      notAfter: s.notAfter,
      serialHex: s.serialHex,
    };
  };

  return {
    async start() {
      await svids.reconcile(deps.entries.all());
    },
    close() {
      for (const u of unsubs) u();
      svids.close();
      listeners.clear();
    },
    async attest(peer): Promise<AttestedCaller> {
      // Kernel evidence only; attestWorkload ends with the PID-reuse check (checkStillAlive).
      return { peer, selectors: await attestWorkload(deps.attestors, peer) };
    },
    x509Svids(caller: AttestedCaller): readonly X509SvidView[] {
      const out: X509SvidView[] = [];
      const hints = new Set<string>();
      for (const e of deps.entries.match(caller.selectors)) {
        const v = view(e);
        if (v === undefined) continue;
        // Workload API 5.2: hints MUST be unique within one response; a repeated hint is dropped.
        if (v.hint !== '' && hints.has(v.hint)) v.hint = '';
        if (v.hint !== '') hints.add(v.hint);
        out.push(v);
      }
      return out;
    },
    async jwtSvids(caller: AttestedCaller, audience: readonly string[], spiffeId?: string): Promise<readonly JwtSvidView[]> {
      let wanted: SpiffeId | undefined;
      if (spiffeId !== undefined && spiffeId !== '') {
        try {
          wanted = SpiffeId.parse(spiffeId);
        } catch (e) {
          if (e instanceof SpiffeIdError) throw new WorkloadEndpointError('workload-endpoint/bad-field', `spiffe_id: ${e.message}`, { cause: e });
          throw e;
        }
      }
      const entries = deps.entries.match(caller.selectors).filter((e) => wanted === undefined || e.spiffeId.equals(wanted));
      if (wanted !== undefined && entries.length === 0) {
        throw new WorkloadEndpointError('workload-endpoint/not-entitled', 'caller is not entitled to that SPIFFE ID');
      }
      return Promise.all(
        entries.map(async (e) => ({
          spiffeId: e.spiffeId.toString(),
          hint: e.hint ?? '',
          token: await jwts.getAsync(JwtSvidCache.key(e.id, audience), () =>
            deps.trust.mintJwtSvid({ entryId: e.id, spiffeId: e.spiffeId, audience, ttlMs: e.jwtSvidTtlMs ?? deps.trust.defaultJwtSvidTtlMs }),
          ),
        })),
      );
    },
    x509Bundles: () => bundles().x509,
    jwtBundles: () => bundles().jwt,
    validateJwtSvid(token: string, audience: string) {
      const r = validateJwtSvidSync(token, { audience, bundles: bundles().bundle, now: deps.clock.now() });
      return { spiffeId: r.spiffeId.toString(), claims: r.claims };
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
