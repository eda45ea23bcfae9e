/**
 * The key that per-source rate limits count against. One IPv4 address is one source; IPv6 clients are
 * counted per /64 (the smallest prefix a site is normally given), so an attacker holding a /64 cannot take
 * a fresh bucket for every attempt. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, as a dual-stack listener
 * reports IPv4 peers) count as their IPv4 address.
 */
import { isIP } from 'node:net';

/** The eight 16-bit groups of an IPv6 address (no zone), or undefined when it is not one. */
function ipv6Groups(addr: string): number[] | undefined {
  const halves = addr.split('::');
  if (halves.length > 2) return undefined;
  const parse = (part: string): number[] | undefined => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (g.includes('.')) {
        if (isIP(g) !== 4) return undefined;
        const [a, b, c, d] = g.split('.').map(Number) as [number, number, number, number];
        out.push((a << 8) | b, (c << 8) | d);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
        out.push(parseInt(g, 16));
      }
    }
    return out;
  };
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  if (head === undefined || tail === undefined) return undefined;
  if (halves.length === 1) return head.length === 8 ? head : undefined;
  const fill = 8 - head.length - tail.length;
  if (fill < 1) return undefined;
  return [...head, ...new Array<number>(fill).fill(0), ...tail];
}

export function rateLimitKey(source: string): string {
  const addr = source.split('%')[0]!;
  if (isIP(addr) !== 6) return addr;
  const g = ipv6Groups(addr);
  if (g === undefined) return addr;
  // ::ffff:a.b.c.d -> a.b.c.d
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) {
    return `${g[6]! >> 8}.${g[6]! & 0xff}.${g[7]! >> 8}.${g[7]! & 0xff}`;
  }
  return `${g.slice(0, 4).map((x) => x.toString(16)).join(':')}::/64`;
}
