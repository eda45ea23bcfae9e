/**
 * The `detail` of a hub status entry (issue #6): a small JSON object that carries what a phase and a message
 * cannot, e.g. a device's reported twin values `{twins: {PROP: {value, at}}, lastSeen, state?}`. The codec, the
 * edge outbox and the cloud store all check it with `statusDetailProblem`: a plain JSON object, JSON-encoded at
 * most MAX_HUB_STATUS_DETAIL_BYTES, nested at most MAX_HUB_STATUS_DETAIL_DEPTH deep, finite numbers only.
 */
export const MAX_HUB_STATUS_DETAIL_BYTES = 8 * 1024;
export const MAX_HUB_STATUS_DETAIL_DEPTH = 8;

function plain(x: unknown): x is Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return false;
  const proto = Object.getPrototypeOf(x) as unknown;
  return proto === Object.prototype || proto === null;
}

/** Why `x` is not a valid status detail (undefined: it is one). */
export function statusDetailProblem(x: unknown): string | undefined {
  if (!plain(x)) return 'detail must be a JSON object';
  let budget = MAX_HUB_STATUS_DETAIL_BYTES;
  const walk = (v: unknown, depth: number): string | undefined => {
    if (--budget < 0) return `detail is larger than ${MAX_HUB_STATUS_DETAIL_BYTES} bytes`;
    if (v === null || typeof v === 'boolean') return undefined;
    if (typeof v === 'string') {
      budget -= Buffer.byteLength(v, 'utf8');
      return budget < 0 ? `detail is larger than ${MAX_HUB_STATUS_DETAIL_BYTES} bytes` : undefined;
    }
    if (typeof v === 'number') return Number.isFinite(v) ? undefined : 'detail numbers must be finite';
    if (depth >= MAX_HUB_STATUS_DETAIL_DEPTH) return `detail is nested deeper than ${MAX_HUB_STATUS_DETAIL_DEPTH} levels`;
    if (Array.isArray(v)) {
      for (const item of v) {
        const p = walk(item, depth + 1);
        if (p !== undefined) return p;
      }
      return undefined;
    }
    if (!plain(v)) return 'detail must hold JSON values only';
    for (const [k, item] of Object.entries(v)) {
      budget -= Buffer.byteLength(k, 'utf8');
      const p = walk(item, depth + 1);
      if (p !== undefined) return p;
    }
    return undefined;
  };
  const p = walk(x, 0);
  if (p !== undefined) return p;
  return Buffer.byteLength(JSON.stringify(x), 'utf8') > MAX_HUB_STATUS_DETAIL_BYTES ? `detail is larger than ${MAX_HUB_STATUS_DETAIL_BYTES} bytes` : undefined;
}
