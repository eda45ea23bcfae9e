import { describe, expect, it } from 'vitest';
import { rateLimitKey } from '../../../src/cloud/node-service/source-key.js';

describe('rateLimitKey: what a per-source attestation limit counts against', () => {
  it('keeps IPv4 addresses whole and maps IPv4-mapped IPv6 to them', () => {
    expect(rateLimitKey('192.0.2.7')).toBe('192.0.2.7');
    expect(rateLimitKey('::ffff:192.0.2.7')).toBe('192.0.2.7');
    expect(rateLimitKey('::ffff:c000:207')).toBe('192.0.2.7');
  });

  it('counts IPv6 clients per /64, whatever the spelling', () => {
    const a = rateLimitKey('2001:db8:1:2::1');
    expect(a).toBe('2001:db8:1:2::/64');
    expect(rateLimitKey('2001:0db8:0001:0002:ffff:ffff:ffff:fffe')).toBe(a);
    expect(rateLimitKey('2001:db8:1:2:0:0:0:9%eth0')).toBe(a);
    expect(rateLimitKey('2001:db8:1:3::1')).not.toBe(a);
    expect(rateLimitKey('::1')).toBe('0:0:0:0::/64');
  });

  it('passes anything else through unchanged (it is only a key)', () => {
    expect(rateLimitKey('unknown')).toBe('unknown');
  });
});
