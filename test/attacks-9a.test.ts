import { describe, expect, it } from 'vitest';
import { ciliumNodeOf, nodeOf, podEndpoint } from '../src/k8s/objects.js';

/*
 * Round 9a attacks (docs/attack-findings-9a.md): addresses, identities, pod lifecycle and
 * kvstore peers. Finding 100 (kube-apiserver entity in a deny) is the scenario
 * fixtures/scenarios/attacks-9/9a-kube-apiserver-entity-deny.yaml.
 */

type Obj = Record<string, unknown>;
const pod = (status: Obj): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'bad', namespace: 'ns', uid: 'uid-bad', resourceVersion: '2', labels: { app: 'bad' } },
  spec: { nodeName: 'node-b', containers: [{ name: 'c', image: 'i' }] },
  status: { phase: 'Running', ...status },
});

describe('101. an IPv4-mapped IPv6 address in a Pod or Node is the IPv4 address (as Kubernetes and Cilium read it)', () => {
  it('status.podIP "::ffff:10.244.1.9" puts the pod at 10.244.1.9 (IPv4), where its traffic comes from', () => {
    const e = podEndpoint(pod({ podIP: '::ffff:10.244.1.9', podIPs: [{ ip: '::ffff:10.244.1.9' }] }), 'node-a', 'pods');
    expect(e.pod?.ip).toMatchObject({ family: 'ipv4', text: '10.244.1.9' });
    expect(e.pod?.ips).toBeUndefined();
  });

  it('podIPs [10.244.1.9, ::ffff:10.244.1.10] are two IPv4 addresses: refused as Kubernetes refuses them', () => {
    expect(() => podEndpoint(pod({ podIP: '10.244.1.9', podIPs: [{ ip: '10.244.1.9' }, { ip: '::ffff:10.244.1.10' }] }), 'node-a', 'pods')).toThrow(/a second ipv4 address/);
  });

  it('a dual-stack pod keeps its real IPv6 address', () => {
    const e = podEndpoint(pod({ podIP: '10.244.1.9', podIPs: [{ ip: '10.244.1.9' }, { ip: 'fd00::9' }] }), 'node-a', 'pods');
    expect(e.pod?.ips?.map((a) => a.text)).toEqual(['10.244.1.9', 'fd00::9']);
  });

  it('a Node InternalIP "::ffff:192.0.2.11" is the node address 192.0.2.11 (remote-node, not world)', () => {
    const node: Obj = { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-b', resourceVersion: '3' }, status: { addresses: [{ type: 'InternalIP', address: '::ffff:192.0.2.11' }] } };
    expect(nodeOf(node, 'node-a', 'nodes').ips).toMatchObject([{ family: 'ipv4', text: '192.0.2.11' }]);
  });

  it('a CiliumNode address, health and ingress address in the mapped form are IPv4', () => {
    const cn: Obj = {
      apiVersion: 'cilium.io/v2',
      kind: 'CiliumNode',
      metadata: { name: 'node-b', resourceVersion: '4' },
      spec: { addresses: [{ type: 'CiliumInternalIP', ip: '::ffff:10.244.1.1' }], health: { ipv4: '::ffff:10.244.1.200' }, ingress: { ipv4: '::ffff:10.244.1.201' } },
    };
    const n = ciliumNodeOf(cn, 'node-a', 'ciliumnodes');
    expect(n.ips.map((a) => a.text)).toEqual(['10.244.1.1']);
    expect(n.health?.map((a) => a.text)).toEqual(['10.244.1.200']);
    expect(n.ingress?.map((a) => a.text)).toEqual(['10.244.1.201']);
  });
});
