/** The X509SvidIssuer of standalone mode: the agent's own CA signs, in-process. */
import type { KeyPair, SpiffeId } from '../../identity/index.js';
import type { Clock } from '../../identity/index.js';
import type { IssuedSvid, X509SvidIssuer } from '../svid/svid-cache.js';
import type { LocalCa } from './local-ca.js';

export function localCaIssuer(ca: LocalCa, clock: Clock, defaultX509SvidTtlMs: number): X509SvidIssuer {
  return {
    defaultX509SvidTtlMs,
    async issueX509Svid(req: { spiffeId: SpiffeId; key: KeyPair; ttlMs: number; dnsNames: readonly string[] }): Promise<IssuedSvid> {
      const now = clock.now();
      const svid = ca.manager.issueX509Svid({ spiffeId: req.spiffeId, spki: req.key.spki, ttlMs: req.ttlMs, dnsNames: req.dnsNames, now });
      return { chainDer: [svid.der, ...ca.manager.intermediates(now)], serialHex: svid.serialHex, notBefore: svid.notBefore, notAfter: svid.notAfter };
    },
  };
}
