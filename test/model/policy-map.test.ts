import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  datapathLookup,
  LookupResult,
  PolicyEntry,
  PolicyKey,
  policyKeyString,
  portRangeToPrefixes,
  precedence,
  PRECEDENCE_ALLOW,
  PRECEDENCE_DENY,
} from '../../src/model/policy-map.js';

describe('port ranges as masked ports', () => {
  it('examples', () => {
    expect(portRangeToPrefixes(16, 31)).toEqual([{ port: 16, prefixLen: 12 }]);
    expect(portRangeToPrefixes(80, 80)).toEqual([{ port: 80, prefixLen: 16 }]);
    expect(portRangeToPrefixes(0, 65535)).toEqual([{ port: 0, prefixLen: 0 }]);
    expect(portRangeToPrefixes(1, 65535)).toHaveLength(16);
  });
  it('covers exactly the range with disjoint aligned prefixes, at most 30', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 65535 }), (a, b) => {
        const [from, to] = a <= b ? [a, b] : [b, a];
        const ps = portRangeToPrefixes(from, to);
        expect(ps.length).toBeLessThanOrEqual(30);
        let next = from;
        for (const p of ps) {
          const size = 2 ** (16 - p.prefixLen);
          expect(p.port).toBe(next);
          expect(p.port % size).toBe(0);
          next += size;
        }
        expect(next - 1).toBe(to);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('datapath lookup', () => {
  const state = (entries: [PolicyKey, PolicyEntry][]) => new Map<string, LookupResult>(entries.map(([key, entry]) => [policyKeyString(key), { key, entry }]));
  const allow: PolicyEntry = { deny: false, proxyPort: 0, precedence: PRECEDENCE_ALLOW };
  const deny: PolicyEntry = { deny: true, proxyPort: 0, precedence: PRECEDENCE_DENY };
  const redirect: PolicyEntry = { deny: false, proxyPort: 10001, precedence: precedence('redirect', 101) };

  it('orders verdicts deny > redirect > allow and listener priorities lower-first', () => {
    expect(precedence('deny')).toBeGreaterThan(precedence('redirect', 101));
    expect(precedence('redirect', 101)).toBeGreaterThan(precedence('redirect', 106));
    expect(precedence('redirect')).toBeGreaterThan(precedence('allow'));
  });
  it('no entry: default deny (undefined)', () => {
    expect(datapathLookup(state([]), 256, 'ingress', 6, 80)).toBeUndefined();
  });
  it('an identity-0 deny beats an identity-specific allow; a longer prefix wins a precedence tie', () => {
    const s = state([
      [{ identity: 256, direction: 'ingress', protocol: 6, port: 80, portPrefixLen: 16 }, allow],
      [{ identity: 0, direction: 'ingress', protocol: 6, port: 0, portPrefixLen: 8 }, deny],
    ]);
    expect(datapathLookup(s, 256, 'ingress', 6, 80)?.entry).toEqual(deny);
    const t = state([
      [{ identity: 256, direction: 'ingress', protocol: 0, port: 0, portPrefixLen: 0 }, allow],
      [{ identity: 0, direction: 'ingress', protocol: 6, port: 80, portPrefixLen: 16 }, redirect],
    ]);
    expect(datapathLookup(t, 256, 'ingress', 6, 80)?.entry).toEqual(redirect);
    expect(datapathLookup(t, 256, 'ingress', 17, 80)?.entry).toEqual(allow);
    expect(datapathLookup(t, 257, 'ingress', 6, 81)).toBeUndefined();
  });
  it('a masked-port key covers its whole block and nothing else', () => {
    const s = state([[{ identity: 0, direction: 'egress', protocol: 17, port: 16, portPrefixLen: 12 }, allow]]);
    expect(datapathLookup(s, 300, 'egress', 17, 16)).toBeDefined();
    expect(datapathLookup(s, 300, 'egress', 17, 31)).toBeDefined();
    expect(datapathLookup(s, 300, 'egress', 17, 32)).toBeUndefined();
    expect(datapathLookup(s, 300, 'egress', 6, 20)).toBeUndefined();
    expect(datapathLookup(s, 300, 'ingress', 17, 20)).toBeUndefined();
  });
});
