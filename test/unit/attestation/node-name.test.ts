/**
 * Node names and node SPIFFE IDs (issue #4: `spiffe://TD/edgeward/node/NAME`, NAME a lower-case DNS label;
 * SPIFFE-ID 2.2 path segment rules).
 */
import { describe, expect, it } from 'vitest';
import { isNodeName, nodeNameFromSpiffeId, nodeSpiffeId, NodeNameError, parseNodeName } from '../../../src/attestation/index.js';
import { SpiffeId, TrustDomain } from '../../../src/identity/index.js';

const TD = TrustDomain.parse('example.org');

describe('node names', () => {
  it('accepts lower-case DNS labels of 1-63 characters', () => {
    for (const ok of ['a', '0', 'edge-1', 'a-b-c', 'x'.repeat(63), '1-2']) expect(parseNodeName(ok)).toBe(ok);
  });

  it('refuses anything else with node-name/invalid', () => {
    for (const bad of ['', '-a', 'a-', 'Edge', 'edge_1', 'edge.1', 'x'.repeat(64), 'é', 'a b', 'a/b', '..']) {
      expect(isNodeName(bad)).toBe(false);
      expect(() => parseNodeName(bad)).toThrow(NodeNameError);
    }
    expect(() => parseNodeName(7)).toThrow(expect.objectContaining({ code: 'node-name/invalid' }));
  });

  it('builds spiffe://TD/edgeward/node/NAME and parses it back exactly', () => {
    const id = nodeSpiffeId(TD, 'edge-1');
    expect(id.toString()).toBe('spiffe://example.org/edgeward/node/edge-1');
    expect(nodeNameFromSpiffeId(id, TD)).toBe('edge-1');
    expect(() => nodeSpiffeId(TD, 'Edge-1')).toThrow(expect.objectContaining({ code: 'node-name/invalid' }));
  });

  it('refuses IDs that are not node IDs of that trust domain (no prefix or substring matching)', () => {
    for (const s of [
      'spiffe://other.org/edgeward/node/edge-1',
      'spiffe://example.org/edgeward/node/edge-1/x',
      'spiffe://example.org/edgeward/node',
      'spiffe://example.org/edgeward/nodes/edge-1',
      'spiffe://example.org/x/edgeward/node/edge-1',
      'spiffe://example.org/edgeward/node/Edge-1',
    ]) {
      expect(() => nodeNameFromSpiffeId(SpiffeId.parse(s), TD)).toThrow(expect.objectContaining({ code: 'node-name/not-a-node-id' }));
    }
  });
});
