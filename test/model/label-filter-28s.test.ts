import { describe, expect, it } from 'vitest';
import { podIdentityLabels } from '../../src/model/identity.js';

/**
 * Finding 2530 (docs/attack-findings-28s.md): Cilium 1.19's default label filter also ignores `controller-uid…`,
 * `batch.kubernetes.io/controller-uid…` (cilium#31964) and `topology.kubernetes.io…` (cilium#43725 via #43780),
 * anchored at the key's start, so a namespace label with those keys stays. On the base the pod labels were kept.
 */
describe('Cilium 1.19 label filter ignores added since 1.15 (2530)', () => {
  it('2530. a Job pod\'s controller-uid labels and topology labels are left out; namespace labels of those keys stay', () => {
    const ns = { 'kubernetes.io/metadata.name': 'x', 'topology.kubernetes.io/zone': 'a', 'controller-uid': 'n' };
    const pod = { namespace: 'x', labels: { app: 'job', 'controller-uid': 'u', 'batch.kubernetes.io/controller-uid': 'u', 'topology.kubernetes.io/zone': 'a', 'controller-uidx': 'v', 'batch.kubernetes.io/job-name': 'j' }, serviceAccount: 'default' };
    const keys = podIdentityLabels(pod, ns).map((l) => l.key);
    for (const k of ['controller-uid', 'controller-uidx', 'batch.kubernetes.io/controller-uid', 'topology.kubernetes.io/zone']) expect(keys).not.toContain(k);
    for (const k of ['app', 'batch.kubernetes.io/job-name']) expect(keys).toContain(k);
    for (const k of Object.keys(ns)) expect(keys).toContain(`io.cilium.k8s.namespace.labels.${k}`);
  });
});
