/**
 * The joined agent's entry catalogue: the entries the cloud delegated to this node (`entries.result`),
 * as the Workload API source sees them. The cloud already filtered them; this side still refuses an entry
 * of another trust domain or with malformed selectors (deny by default), and matches by the subset rule.
 */
import { SpiffeId, type TrustDomain } from '../../identity/index.js';
import { EntryIndex, parseSelector } from '../../attestation/index.js';
import type { NodeEntry } from '../../protocol/index.js';
import type { EntryCatalog, EntryView } from '../workload-api/agent-source.js';

export interface CloudEntryCatalog extends EntryCatalog {
  /** Replace the entries; listeners are told only when something changed. Returns the ids refused. */
  replace(entries: readonly NodeEntry[]): { changed: boolean; refused: string[] };
  readonly size: number;
}

function toView(e: NodeEntry, td: TrustDomain): EntryView {
  const spiffeId = SpiffeId.parse(e.spiffeId);
  if (!spiffeId.trustDomain.equals(td)) throw new Error('entry of another trust domain');
  const selectors = e.selectors.map(parseSelector);
  if (selectors.length === 0) throw new Error('entry without selectors');
  return {
    id: e.id,
    spiffeId,
    parentId: SpiffeId.parse(e.parentId),
    selectors,
    x509SvidTtlMs: e.x509SvidTtlMs,
    jwtSvidTtlMs: e.jwtSvidTtlMs,
    dnsNames: e.dnsNames ?? [],
    hint: e.hint,
  };
}

function fingerprint(list: readonly NodeEntry[]): string {
  return JSON.stringify(
    [...list]
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map((e) => [e.id, e.spiffeId, [...e.selectors].sort(), e.x509SvidTtlMs ?? null, e.jwtSvidTtlMs ?? null, [...(e.dnsNames ?? [])].sort(), e.hint ?? null]),
  );
}

export function createCloudEntryCatalog(td: TrustDomain): CloudEntryCatalog {
  let views: EntryView[] = [];
  let index = new EntryIndex<EntryView>([]);
  let current = fingerprint([]);
  const listeners = new Set<() => void>();
  return {
    get size() {
      return views.length;
    },
    all: () => views,
    match: (selectors) => index.match(selectors),
    onChange(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    replace(entries) {
      const refused: string[] = [];
      const ok: NodeEntry[] = [];
      const next: EntryView[] = [];
      for (const e of entries) {
        try {
          next.push(toView(e, td));
          ok.push(e);
        } catch {
          refused.push(e.id);
        }
      }
      const fp = fingerprint(ok);
      if (fp === current) return { changed: false, refused };
      current = fp;
      views = next;
      index = new EntryIndex(next);
      for (const l of listeners) l();
      return { changed: true, refused };
    },
  };
}
