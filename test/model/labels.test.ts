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
