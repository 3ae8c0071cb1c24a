import { describe, expect, it } from 'vitest';
import { podIdentityLabels } from '../../src/model/identity.js';
import { readManifestFile } from '../../src/policy/manifest.js';
import { parseScenario } from '../../src/scenario/format.js';

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

describe('namespace labels the filter drops are reported (2461)', () => {
  it('2461. by scenarios and by validate (v1 Namespace manifests)', () => {
    const s = parseScenario('namespaces: [{name: x, labels: {team: a, failure-domain.beta.kubernetes.io/zone: z}}]\n', 's.yaml');
    expect(s.warnings).toEqual([expect.stringMatching(/^s\.yaml namespaces\[0\]\.labels\["failure-domain\.beta\.kubernetes\.io\/zone"\]: dropped from the identities of the namespace's pods/)]);
    const { objects } = readManifestFile('apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {team: a, beta.kubernetes.io/os: linux}}\n', 'n.yaml');
    expect(objects[0]!.warnings).toEqual([{ source: 'n.yaml#1', path: 'metadata.labels["beta.kubernetes.io/os"]', detail: expect.stringMatching(/Cilium's default label filter/) }]);
  });
});
