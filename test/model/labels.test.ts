import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Label, labelSetKey, makeLabelSet } from '../../src/model/labels.js';
import { podIdentityLabels } from '../../src/model/identity.js';

/** The definition: one label per source:key, the last one given, sorted by source, key. */
function reference(labels: readonly Label[]): Label[] {
  const byKey = new Map<string, Label>();
  for (const l of labels) byKey.set(`${l.source}:${l.key}`, l);
  return [...byKey.values()].sort((a, b) => (a.source !== b.source ? (a.source < b.source ? -1 : 1) : a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

const label = fc.record({ source: fc.constantFrom('k8s', 'any', 'reserved'), key: fc.constantFrom('app', 'tier', 'a', 'b/c', ''), value: fc.constantFrom('x', 'y', '') });

describe('label sets', () => {
  it('makeLabelSet keeps the last label of each key, sorted, and leaves its input alone', () => {
    fc.assert(
      fc.property(fc.array(label, { maxLength: 12 }), (labels) => {
        const input = [...labels];
        expect(makeLabelSet(labels)).toEqual(reference(labels));
        expect(labels).toEqual(input);
      }),
      { numRuns: 1000 },
    );
  });

  it('makeLabelSet: the same for sets longer than the in-place insertion sort handles (> 32 labels)', () => {
    const many = fc.record({ source: fc.constantFrom('k8s', 'any'), key: fc.integer({ min: 0, max: 60 }).map((i) => `k${i}`), value: fc.constantFrom('x', 'y') });
    fc.assert(
      fc.property(fc.array(many, { minLength: 20, maxLength: 80 }), (labels) => {
        expect(makeLabelSet(labels)).toEqual(reference(labels));
      }),
      { numRuns: 300 },
    );
  });

  it('podIdentityLabels: the pod labels outside the derived spaces, the namespace part and the service account, as one label set', () => {
    const key = fc.constantFrom('app', 'tier', 'io.cilium.k8s.policy.cluster', 'io.kubernetes.pod.namespace', 'io.cilium.k8s.x', 'b/c', 'z');
    fc.assert(
      fc.property(fc.dictionary(key, fc.constantFrom('x', 'y', '')), fc.dictionary(fc.constantFrom('team', 'env'), fc.constantFrom('a', 'b')), (labels, nsLabels) => {
        const pod = { namespace: 'n1', labels, serviceAccount: 'sa' };
        const own = Object.entries(labels)
          .filter(([k]) => !k.startsWith('io.cilium.k8s') && !k.startsWith('io.kubernetes.pod.namespace'))
          .map(([k, value]) => ({ source: 'k8s', key: k, value }));
        const nsPart = [
          { source: 'k8s', key: 'io.kubernetes.pod.namespace', value: 'n1' },
          ...Object.entries(nsLabels).map(([k, value]) => ({ source: 'k8s', key: `io.cilium.k8s.namespace.labels.${k}`, value })),
          { source: 'k8s', key: 'io.cilium.k8s.policy.cluster', value: 'default' },
          { source: 'k8s', key: 'io.cilium.k8s.policy.serviceaccount', value: 'sa' },
        ];
        expect(podIdentityLabels(pod, nsLabels)).toEqual(reference([...own, ...nsPart]));
      }),
      { numRuns: 300 },
    );
  });

  it('pods of one namespace get their namespace labels, and a relabelled namespace (a new labels object) its new ones', () => {
    const ns = { team: 'a' };
    const pod = { namespace: 'n1', labels: { app: 'web' }, serviceAccount: 'default' };
    const first = labelSetKey(podIdentityLabels(pod, ns));
    expect(first).toContain('k8s:io.cilium.k8s.namespace.labels.team=a');
    expect(labelSetKey(podIdentityLabels({ ...pod, labels: { app: 'db' } }, ns))).toContain('k8s:io.cilium.k8s.namespace.labels.team=a');
    // Same labels object, another namespace name (no stale cache hit).
    expect(labelSetKey(podIdentityLabels({ ...pod, namespace: 'n2' }, ns))).toContain('k8s:io.kubernetes.pod.namespace=n2');
    expect(labelSetKey(podIdentityLabels(pod, { team: 'b' }))).toContain('k8s:io.cilium.k8s.namespace.labels.team=b');
    expect(labelSetKey(podIdentityLabels(pod, ns))).toBe(first);
  });
});
