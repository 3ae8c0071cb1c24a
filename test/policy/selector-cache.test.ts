import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseManifest } from '../../src/policy/manifest.js';
import { ManifestError } from '../../src/policy/errors.js';
import type { PolicyRule } from '../../src/model/rules.js';
import { MAX_CACHED_TEXT } from '../../src/policy/selector.js';

// The parser shares the selectors it builds (policy/selector.ts, policy/common.ts withRequirement):
// equal inputs give one Selector object, and the cache never turns a refusal into an acceptance.

function cnp(name: string, namespace: string, subject: unknown, peer: unknown): Record<string, unknown> {
  return {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: { namespace, name },
    spec: { endpointSelector: subject, ingress: [{ fromEndpoints: [peer], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] }] },
  };
}

const firstRule = (doc: unknown): PolicyRule => parseManifest(doc, 'test').rules[0] as PolicyRule;

describe('parse-time selector sharing', () => {
  it('equal selectors of two policies are one object, scoped once per namespace', () => {
    const a = firstRule(cnp('a', 'ns-1', { matchLabels: { app: 'x' } }, { matchLabels: { app: 'y' } }));
    const b = firstRule(cnp('b', 'ns-1', { matchLabels: { app: 'x' } }, { matchLabels: { app: 'y' } }));
    const c = firstRule(cnp('c', 'ns-2', { matchLabels: { app: 'x' } }, { matchLabels: { app: 'y' } }));
    expect(b.subject).toBe(a.subject);
    const peerOf = (r: PolicyRule) => (r.peers[0]?.kind === 'selector' ? r.peers[0].selector : null);
    expect(peerOf(b)).toBe(peerOf(a));
    expect(c.subject).not.toBe(a.subject);
    expect(c.subject.key).toContain('ns-2');
    expect(a.subject.key).toContain('ns-1');
  });

  it('a refused selector is refused after an accepted one with the same JSON text', () => {
    const ok = { matchLabels: { app: 'x' } };
    firstRule(cnp('a', 'ns-1', ok, ok));
    // An unknown field whose value JSON drops, a non-string label value that JSON writes as a string.
    const hidden = { matchLabels: { app: 'x' }, bogus: undefined };
    expect(() => firstRule(cnp('b', 'ns-1', hidden, ok))).toThrow(ManifestError);
    const disguised = { matchLabels: { app: { toJSON: () => 'x' } } };
    expect(JSON.stringify(disguised)).toBe(JSON.stringify(ok));
    expect(() => firstRule(cnp('d', 'ns-1', disguised, ok))).toThrow(ManifestError);
  });

  it('a field JSON does not write (non-enumerable) or a getter is read as the parser reads it, not from the cache', () => {
    const wildcard = firstRule(cnp('a', 'ns-1', {}, { matchLabels: { app: 'y' } }));
    const hidden = Object.defineProperty({}, 'matchLabels', { value: { app: 'x' }, enumerable: false });
    expect(JSON.stringify(hidden)).toBe('{}');
    expect(firstRule(cnp('b', 'ns-1', hidden, { matchLabels: { app: 'y' } })).subject.key).not.toBe(wildcard.subject.key);
    let reads = 0;
    const changing = Object.defineProperty({}, 'matchLabels', { get: () => ({ app: reads++ === 0 ? 'x' : 'z' }), enumerable: true });
    const once = firstRule(cnp('c', 'ns-1', changing, { matchLabels: { app: 'y' } }));
    expect(once.subject.key).toContain('app=x');
  });

  it('a long selector is parsed every time, never kept in the cache (an agent must not hold huge hostile texts)', () => {
    const long = { matchLabels: Object.fromEntries(Array.from({ length: 80 }, (_, i) => [`key-${i}`, 'v'.repeat(60)])) };
    expect(JSON.stringify(long).length).toBeGreaterThan(MAX_CACHED_TEXT);
    const a = firstRule(cnp('a', 'ns-1', long, { matchLabels: { app: 'y' } }));
    const b = firstRule(cnp('b', 'ns-1', long, { matchLabels: { app: 'y' } }));
    expect(b.subject).not.toBe(a.subject);
    expect(b.subject.key).toBe(a.subject.key);
  });

  it('parsing a selector twice gives the same result as parsing it once (property)', () => {
    const label = fc.stringMatching(/^[a-z]([a-z0-9.-]{0,6}[a-z0-9])?$/);
    const sel = fc.record({
      matchLabels: fc.dictionary(label, label, { maxKeys: 3 }),
      matchExpressions: fc.array(
        fc.oneof(
          fc.record({ key: label, operator: fc.constantFrom('In', 'NotIn'), values: fc.array(label, { minLength: 1, maxLength: 3 }) }),
          fc.record({ key: label, operator: fc.constantFrom('Exists', 'DoesNotExist') }),
        ),
        { maxLength: 2 },
      ),
    });
    fc.assert(
      fc.property(sel, sel, fc.constantFrom('ns-a', 'ns-b'), (s, p, ns) => {
        const once = firstRule(cnp('a', ns, s, p));
        const again = firstRule(cnp('b', ns, structuredClone(s), structuredClone(p)));
        expect(again.subject).toBe(once.subject);
        expect(again.peers).toEqual(once.peers);
        expect(again.subject.key).toBe(once.subject.key);
      }),
      { numRuns: 200 },
    );
  });
});
