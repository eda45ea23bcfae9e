/**
 * The X509SvidIssuer of joined mode: the cloud signs. The SVID cache (src/edge/svid) makes a key per
 * entry; this issuer sends only a CSR for it (`svids.request`, batched up to 64 per call), checks what
 * comes back (an X509-SVID of the trust bundle, for exactly the entry's SPIFFE ID, certifying that key),
 * and keeps it with its key in the encrypted cache.
 *
 * After a restart the first request for an entry is answered from the cache when the cached SVID was
 * issued for the same SPIFFE ID, TTL and DNS names and is not yet due for rotation; when it is due, the
 * cloud is asked first and the cached SVID is used only if the cloud cannot answer and it has not expired
 * (never an expired SVID).
 */
import {
  buildCsr,
  parseCertificate,
  rotationTime,
  validateX509Svid,
  type Clock,
  type KeyPair,
  type SpiffeId,
  type TrustBundle,
} from '../../identity/index.js';
import { MAX_NODE_API_SVIDS, type IssuedSvid as WireSvid, type SvidCsr } from '../../protocol/index.js';
import type { IssuedSvid, X509SvidIssuer } from '../svid/svid-cache.js';
import { CloudRefusedError } from '../cloud-client/errors.js';
import { EdgeCacheError, type CachedSvidRecord, type EdgeCache } from './cache.js';
import { EdgewardError } from '../../identity/index.js';

export type JoinedIssuerErrorCode = 'joined-issuer/bad-svid' | 'joined-issuer/missing';
export class JoinedIssuerError extends EdgewardError<JoinedIssuerErrorCode> {}

export interface JoinedIssuerDeps {
  clock: Clock;
  cache: EdgeCache;
  defaultX509SvidTtlMs: number;
  /** The current trust bundle (to check issued SVIDs). */
  bundle(): TrustBundle;
  /** Send one svids.request; resolves with the svids.result items. */
  request(csrs: SvidCsr[]): Promise<WireSvid[]>;
  /** Log hooks. */
  onRestored?(entryId: string, notAfter: number, reason: 'fresh' | 'cloud-unavailable'): void;
  onCacheRefused?(entryId: string, error: EdgeCacheError): void;
}

interface Pending {
  csr: SvidCsr;
  resolve(chain: Buffer[]): void;
  reject(e: unknown): void;
}

type Req = { entryId: string; spiffeId: SpiffeId; key: KeyPair; ttlMs: number; dnsNames: readonly string[] };

function sameShape(rec: CachedSvidRecord, req: Req): boolean {
  const a = [...rec.dnsNames].sort();
  const b = [...req.dnsNames].sort();
  return rec.spiffeId === req.spiffeId.toString() && rec.ttlMs === req.ttlMs && a.length === b.length && a.every((x, i) => x === b[i]);
}

export function createJoinedIssuer(deps: JoinedIssuerDeps): X509SvidIssuer & { forget(entryId: string): void } {
  const restoreTried = new Set<string>();
  let queue: Pending[] = [];
  let flushScheduled = false;

  const send = async (batch: Pending[]): Promise<void> => {
    try {
      const got = await deps.request(batch.map((p) => p.csr));
      const byId = new Map(got.map((s) => [s.entryId, s.svidChainDer]));
      for (const p of batch) {
        const chain = byId.get(p.csr.entryId);
        if (chain === undefined) p.reject(new JoinedIssuerError('joined-issuer/missing', `the cloud returned no SVID for entry ${p.csr.entryId}`));
        else p.resolve(chain);
      }
    } catch (e) {
      // One undelegated entry refuses the whole request (node/entry-not-delegated): ask for the others alone.
      if (batch.length > 1 && e instanceof CloudRefusedError && e.code === 'node/entry-not-delegated') {
        await Promise.all(batch.map((p) => send([p])));
        return;
      }
      for (const p of batch) p.reject(e);
    }
  };

  const flush = (): void => {
    flushScheduled = false;
    const all = queue;
    queue = [];
    for (let i = 0; i < all.length; i += MAX_NODE_API_SVIDS) void send(all.slice(i, i + MAX_NODE_API_SVIDS));
  };

  const ask = (csr: SvidCsr): Promise<Buffer[]> =>
    new Promise((resolve, reject) => {
      queue.push({ csr, resolve, reject });
      if (!flushScheduled) {
        flushScheduled = true;
        // The SVID cache asks for every due entry in one synchronous loop: one request for all of them.
        queueMicrotask(flush);
      }
    });

  const restored = (rec: CachedSvidRecord): IssuedSvid => {
    const leaf = parseCertificate(rec.chainDer[0]!);
    return {
      chainDer: rec.chainDer,
      serialHex: leaf.serialHex,
      notBefore: leaf.notBefore,
      notAfter: leaf.notAfter,
      restored: { keyPkcs8: rec.keyPkcs8, issuedAt: rec.issuedAt },
    };
  };

  return {
    defaultX509SvidTtlMs: deps.defaultX509SvidTtlMs,
    forget(entryId) {
      restoreTried.delete(entryId);
    },
    async issueX509Svid(req: Req): Promise<IssuedSvid> {
      let fallback: CachedSvidRecord | undefined;
      if (!restoreTried.has(req.entryId)) {
        restoreTried.add(req.entryId);
        try {
          const rec = deps.cache.getSvid(req.entryId);
          if (rec !== undefined && sameShape(rec, req)) {
            const leaf = parseCertificate(rec.chainDer[0]!);
            const now = deps.clock.now();
            // Re-check against the current bundle: a cached SVID is served only while it still validates.
            validateX509Svid(rec.chainDer, deps.bundle(), now);
            const basis = { notBefore: Math.max(leaf.notBefore, rec.issuedAt), notAfter: leaf.notAfter, serialHex: leaf.serialHex };
            if (now < rotationTime(basis)) {
              deps.onRestored?.(req.entryId, leaf.notAfter, 'fresh');
              return restored(rec);
            }
            fallback = rec;
          }
        } catch (e) {
          if (e instanceof EdgeCacheError) {
            deps.onCacheRefused?.(req.entryId, e);
            deps.cache.deleteSvid(req.entryId);
          }
          // Expired or no longer valid: not served; ask the cloud.
        }
      }
      let chain: Buffer[];
      try {
        chain = await ask({ entryId: req.entryId, csr: buildCsr(req.key) });
      } catch (e) {
        if (fallback !== undefined && deps.clock.now() < parseCertificate(fallback.chainDer[0]!).notAfter) {
          deps.onRestored?.(req.entryId, parseCertificate(fallback.chainDer[0]!).notAfter, 'cloud-unavailable');
          return restored(fallback);
        }
        throw e;
      }
      const now = deps.clock.now();
      let leafNotBefore: number;
      let leafNotAfter: number;
      let serialHex: string;
      try {
        const v = validateX509Svid(chain, deps.bundle(), now);
        if (!v.spiffeId.equals(req.spiffeId)) throw new Error(`it names ${v.spiffeId.toString().slice(0, 200)}`);
        if (!v.leaf.spki.equals(req.key.spki)) throw new Error('it certifies another key');
        leafNotBefore = v.leaf.notBefore;
        leafNotAfter = v.leaf.notAfter;
        serialHex = v.leaf.serialHex;
      } catch (e) {
        throw new JoinedIssuerError('joined-issuer/bad-svid', `the cloud's SVID for entry ${req.entryId} is not acceptable: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
      deps.cache.putSvid({
        entryId: req.entryId,
        spiffeId: req.spiffeId.toString(),
        chainDer: chain,
        keyPkcs8: req.key.pkcs8(),
        issuedAt: Math.min(now, leafNotAfter),
        ttlMs: req.ttlMs,
        dnsNames: [...req.dnsNames],
      });
      return { chainDer: chain, serialHex, notBefore: leafNotBefore, notAfter: leafNotAfter };
    },
  };
}
