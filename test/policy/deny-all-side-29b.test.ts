import { describe, expect, it } from 'vitest';
import { parseManifest } from '../../src/policy/manifest.js';
import { denyAllSideOf } from '../../src/policy/stand-in.js';

/** Finding 2542: the deny-all side of a policy whose deny side the engine refuses too (src/policy/stand-in.ts `denyAllSideOf`). */
const sel = (app: string) => ({ matchLabels: { app } });
const ports = [{ ports: [{ port: '80', protocol: 'TCP' }, { port: '81', protocol: 'TCP' }] }];

describe('2542: denyAllSideOf', () => {
  it('a Cilium policy: one rule denying every peer on every port per subject and direction it denies in, its isolation, no allow', () => {
    const p = parseManifest(
      {
        apiVersion: 'cilium.io/v2',
        kind: 'CiliumNetworkPolicy',
        metadata: { name: 'p', namespace: 'x' },
        specs: [
          { endpointSelector: sel('server'), ingress: [{ fromEndpoints: [sel('client')] }], ingressDeny: [{ fromEndpoints: [sel('bad')], toPorts: ports }, { fromCIDR: ['192.0.2.0/24'] }], egress: [{ toEndpoints: [sel('db')] }] },
          { endpointSelector: sel('api'), egressDeny: [{ toEntities: ['world'] }] },
        ],
      },
      'p.yaml',
    );
    const d = denyAllSideOf(p);
    expect(d.rules.map((r) => [r.subject.key.split(' ')[0], r.direction, r.verdict, r.peers.map((q) => (q.kind === 'selector' ? q.entity : q.kind)), r.ports.map((x) => x.l4.kind)])).toEqual([
      ['any:app=server', 'ingress', 'deny', ['all'], ['all']],
      ['any:app=api', 'egress', 'deny', ['all'], ['all']],
    ]);
    expect(d.enforcements).toEqual(p.enforcements);
  });
  it('a ClusterNetworkPolicy: one Deny of every peer in each direction with a Deny or Pass rule, no Accept', () => {
    const p = parseManifest(
      {
        apiVersion: 'policy.networking.k8s.io/v1beta1',
        kind: 'ClusterNetworkPolicy',
        metadata: { name: 'c' },
        spec: {
          tier: 'Admin',
          priority: 5,
          subject: { namespaces: {} },
          ingress: [
            { name: 'a', action: 'Accept', from: [{ namespaces: {} }] },
            { name: 'p', action: 'Pass', from: [{ namespaces: sel('x') }] },
          ],
          egress: [{ name: 'e', action: 'Accept', to: [{ networks: ['192.0.2.0/24'] }] }],
        },
      },
      'c.yaml',
    );
    const d = denyAllSideOf(p);
    expect(d.tiered?.priority).toBe(5);
    expect(d.tiered?.subject).toEqual(p.tiered?.subject);
    expect(d.tiered?.rules.map((r) => [r.direction, r.action, r.peers.map((q) => q.kind), r.protocols.length])).toEqual([['ingress', 'Deny', ['unknown'], 0]]);
  });
});
