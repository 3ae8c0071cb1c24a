import { describe, expect, it } from 'vitest';
import { podIdentityLabels } from '../../src/model/identity.js';

/**
 * Finding 2461 (docs/attack-findings-28d.md): Cilium's default label filter (pkg/labelsfilter/filter.go) runs over
 * the namespace's labels too; its unanchored ignore `.*beta\.kubernetes\.io` drops a namespace label whose key
 * contains `beta.kubernetes.io`. On the base the label was part of the identity.
 */
describe('namespace labels through the identity label filter (2461)', () => {
  it('2461. a namespace label containing beta.kubernetes.io is dropped; kubernetes.io/ and other keys are kept', () => {
    const labels = podIdentityLabels({ namespace: 'y', labels: { app: 'a' }, serviceAccount: 'default' }, { 'kubernetes.io/metadata.name': 'y', 'failure-domain.beta.kubernetes.io/zone': 'a', 'topology.kubernetes.io/zone': 'a', 'x.beta-kubernetes.io': 'b', team: 'blue' });
    const keys = labels.map((l) => l.key);
    expect(keys).not.toContain('io.cilium.k8s.namespace.labels.failure-domain.beta.kubernetes.io/zone');
    for (const k of ['kubernetes.io/metadata.name', 'topology.kubernetes.io/zone', 'x.beta-kubernetes.io', 'team']) expect(keys).toContain(`io.cilium.k8s.namespace.labels.${k}`);
  });
});
