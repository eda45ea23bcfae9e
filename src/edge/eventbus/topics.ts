/**
 * MQTT topic names and filters (MQTT 3.1.1 §4.7), for the EventBus ACLs. Pure.
 *
 * - 4.7.1.2 `+` matches exactly one level; 4.7.1.1 `#` matches the parent level and any number of child levels
 *   and must be the last character (alone in its level).
 * - 4.7.2: a filter starting with a wildcard does not match a topic starting with `$`.
 * - 4.7.3: topics and filters are at least one character; a topic name has no wildcard; no U+0000 (1.5.3).
 */

/** A topic name a client may publish to: non-empty, no wildcards, no NUL, bounded (MQTT 3.1.1 4.7.3, 1.5.3). */
export function isTopicName(t: string, maxLevels: number, maxBytes = 65_535): boolean {
  if (t.length === 0 || t.length > maxBytes || t.includes('+') || t.includes('#') || t.includes('\u0000')) return false;
  return countLevels(t) <= maxLevels;
}

/** A topic filter: non-empty, `+` alone in its level, `#` alone in the last level (MQTT 3.1.1 4.7.1). */
export function isTopicFilter(f: string, maxLevels: number, maxBytes = 65_535): boolean {
  if (f.length === 0 || f.length > maxBytes || f.includes('\u0000')) return false;
  const levels = f.split('/');
  if (levels.length > maxLevels) return false;
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i]!;
    if (l.includes('+') && l !== '+') return false;
    if (l.includes('#') && (l !== '#' || i !== levels.length - 1)) return false;
  }
  return true;
}

function countLevels(t: string): number {
  let n = 1;
  for (let i = 0; i < t.length; i++) if (t.charCodeAt(i) === 47) n++;
  return n;
}

/** Does filter `f` match topic name `t` (MQTT 3.1.1 4.7)? Both are assumed valid. */
export function filterMatches(f: string, t: string): boolean {
  if (t.startsWith('$') && (f.startsWith('+') || f.startsWith('#'))) return false; // 4.7.2
  const fl = f.split('/');
  const tl = t.split('/');
  for (let i = 0; i < fl.length; i++) {
    const x = fl[i]!;
    if (x === '#') return true; // 4.7.1.2: also matches the parent level
    if (i >= tl.length) return false;
    if (x !== '+' && x !== tl[i]) return false;
  }
  return fl.length === tl.length;
}

/**
 * Does the granted filter `grant` cover every topic the requested filter `f` can match? (Subscribe
 * authorisation: a client may subscribe to `f` only if all it could receive is granted.) Both valid filters.
 */
export function filterCovers(grant: string, f: string): boolean {
  const gl = grant.split('/');
  const fl = f.split('/');
  // 4.7.2: a grant that starts with a wildcard matches no `$` topic, so it covers no request whose first level is one.
  if ((gl[0] === '+' || gl[0] === '#') && fl[0]!.startsWith('$')) return false;
  for (let i = 0; i < gl.length; i++) {
    const g = gl[i]!;
    if (g === '#') return true;
    if (i >= fl.length) return false;
    const x = fl[i]!;
    if (x === '#') return false; // the request reaches deeper than a non-`#` grant level
    if (g === '+') continue; // covers any single level, a `+` request included
    if (x === '+' || x !== g) return false;
  }
  return gl.length === fl.length;
}
