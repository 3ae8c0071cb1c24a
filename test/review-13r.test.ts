import { describe, expect, it } from 'vitest';
import { parseManifest } from '../src/policy/manifest.js';

// Finding 560: Cilium builds a toNodes/fromNodes selector with source "" (any:), so its keys also
// match the node identity's reserved labels (reserved:remote-node on every remote node,
// reserved:kube-apiserver on apiserver nodes). Distill matches them against Node labels only.
const cnp = (expr: { key: string; operator: string }, field: 'egress' | 'ingressDeny') => ({
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNetworkPolicy',
  metadata: { name: 'n', namespace: 'app' },
  spec: {
    endpointSelector: { matchLabels: { app: 'client' } },
    [field]: [{ [field === 'egress' ? 'toNodes' : 'fromNodes']: [{ matchExpressions: [expr] }] }],
  },
});

describe('review 13r: toNodes/fromNodes keys that imitate reserved labels', () => {
  for (const key of ['remote-node', 'kube-apiserver', 'any:remote-node', 'node:kube-apiserver']) {
    it(`refuses ${key} (DoesNotExist allows what Cilium does not; Exists in a deny denies less)`, () => {
      const bare = key.replace(/^(any|node):/, '');
      if (key.startsWith('node:')) {
        // node:<key> is a Node label: Cilium matches it against node labels only, as distill does.
        expect(() => parseManifest(cnp({ key, operator: 'DoesNotExist' }, 'egress'), 't.yaml', { nodeSelectorLabels: true })).not.toThrow();
        return;
      }
      expect(() => parseManifest(cnp({ key, operator: 'DoesNotExist' }, 'egress'), 't.yaml', { nodeSelectorLabels: true })).toThrow(`the key ${bare}`);
      expect(() => parseManifest(cnp({ key, operator: 'Exists' }, 'ingressDeny'), 't.yaml', { nodeSelectorLabels: true })).toThrow(`the key ${bare}`);
    });
  }
});
