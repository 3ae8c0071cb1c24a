import { describe, expect, it } from 'vitest';
import { Engine, ManifestError, parseManifestFileWithGroups, podEndpoint, type CidrGroup, type EngineEvent } from '../../src/index.js';

// Finding 2306: the package had no reader for a manifest file's CiliumCIDRGroup documents (parseManifestFile refuses
// them), so an embedder could feed groups to the engine only through ClusterMirror.
const FILE = `
apiVersion: cilium.io/v2
kind: CiliumCIDRGroup
metadata: {name: partners}
spec: {externalCIDRs: [203.0.113.0/24]}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: no-partners, namespace: shop}
spec:
  endpointSelector: {}
  egressDeny: [{toCIDRSet: [{cidrGroupRef: partners}]}]
---
apiVersion: v1
kind: List
items:
- apiVersion: cilium.io/v2alpha1
  kind: CiliumCIDRGroup
  metadata: {name: vendors, labels: {tier: ext}}
  spec: {externalCIDRs: [198.51.100.0/24]}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: deny-in, namespace: shop}
  spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: cilium.io/v2
kind: CiliumCIDRGroupList
items:
- metadata: {name: more}
  spec: {externalCIDRs: [192.0.2.0/24]}
`;

describe('parseManifestFileWithGroups (finding 2306)', () => {
  it('reads the policies and groups of one file, Lists included, in file order', () => {
    const { policies, cidrGroups } = parseManifestFileWithGroups(FILE, 'mixed.yaml');
    expect(policies.map((p) => `${p.ref.kind}/${p.ref.name}`)).toEqual(['CiliumNetworkPolicy/no-partners', 'NetworkPolicy/deny-in']);
    expect(cidrGroups.map((g: CidrGroup) => [g.name, g.cidrs.map((c) => c.text)])).toEqual([
      ['partners', ['203.0.113.0/24']],
      ['vendors', ['198.51.100.0/24']],
      ['more', ['192.0.2.0/24']],
    ]);
    expect(cidrGroups[1]!.labels.get('tier')).toBe('ext');
  });

  it('feeds the engine: the group deny holds the group prefix', () => {
    const { policies, cidrGroups } = parseManifestFileWithGroups(FILE, 'mixed.yaml');
    const ep = podEndpoint({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'a', namespace: 'shop' }, spec: { nodeName: 'n', containers: [{ name: 'c' }] }, status: { podIP: '10.0.0.2' } }, 'n', 'pods.json');
    if (ep.pod === null) throw new Error(ep.reason);
    const events: EngineEvent[] = [
      { type: 'upsertNamespace', name: 'shop', labels: {} },
      { type: 'upsertPod', pod: ep.pod, local: ep.local },
      ...cidrGroups.map((group): EngineEvent => ({ type: 'upsertCidrGroup', group })),
      ...policies.map((policy): EngineEvent => ({ type: 'upsertPolicy', policy })),
    ];
    const changes = new Engine().apply(events);
    const prefix = changes.ipcache.find((d) => d.op === 'upsert' && d.prefix === '203.0.113.0/24');
    expect(prefix).toBeDefined();
    const denies = changes.deltas.filter((d) => d.op === 'upsert' && d.key.direction === 'egress' && d.key.identity === prefix!.identity && d.entry.deny);
    expect(denies.length).toBeGreaterThan(0);
  });

  it('refuses a document that is neither a policy nor a group, naming it', () => {
    expect(() => parseManifestFileWithGroups('apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n', 'pod.yaml')).toThrow(ManifestError);
    expect(() => parseManifestFileWithGroups(`${FILE}---\napiVersion: cilium.io/v2\nkind: CiliumCIDRGroup\nmetadata: {name: bad}\nspec: {}\n`, 'bad.yaml')).toThrow(/bad\.yaml#5/);
  });
});
