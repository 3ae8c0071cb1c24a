import { describe, expect, it } from 'vitest';
import { IdentityAllocator, LOCAL_IDENTITY_FLAG, podIdentityLabels, RESERVED_IDENTITIES } from '../../src/model/identity.js';
import { formatLabel, makeLabelSet } from '../../src/model/labels.js';

describe('identities', () => {
  it('numbers reserved identities as Cilium does', () => {
    const a = new IdentityAllocator();
    expect(RESERVED_IDENTITIES.host).toBe(1);
    expect(RESERVED_IDENTITIES.world).toBe(2);
    expect(RESERVED_IDENTITIES['world-ipv6']).toBe(10);
    expect(a.lookup(makeLabelSet([{ source: 'reserved', key: 'kube-apiserver', value: '' }]))).toBe(7);
  });
  it('shares one id per label set, refcounted, cluster ids from 256', () => {
    const a = new IdentityAllocator();
    const l1 = podIdentityLabels({ namespace: 'x', labels: { pod: 'a' }, serviceAccount: 'default' }, { 'kubernetes.io/metadata.name': 'x' });
    const l2 = podIdentityLabels({ namespace: 'x', labels: { pod: 'a' }, serviceAccount: 'default' }, { 'kubernetes.io/metadata.name': 'x' });
    const first = a.acquire(l1);
    const second = a.acquire(l2);
    expect(first).toEqual({ id: 256, isNew: true });
    expect(second).toEqual({ id: 256, isNew: false });
    expect(a.release(256)).toBe(false);
    expect(a.release(256)).toBe(true);
    expect(a.lookup(l1)).toBeUndefined();
    expect(a.acquire(l1).id).toBe(257);
  });
  it('allocates CIDR identities in the local scope (bit 24)', () => {
    const a = new IdentityAllocator();
    const { id } = a.acquire(makeLabelSet([{ source: 'cidr', key: '10.0.0.0/8', value: '' }]), 'local');
    expect(id).toBe(LOCAL_IDENTITY_FLAG + 1);
    expect(id & LOCAL_IDENTITY_FLAG).not.toBe(0);
  });
  it('derives pod identity labels from pod, namespace and service account', () => {
    const l = podIdentityLabels({ namespace: 'x', labels: { app: 'web' }, serviceAccount: 'sa1' }, { team: 'blue', 'kubernetes.io/metadata.name': 'x' });
    expect(l.map(formatLabel)).toEqual([
      'k8s:app=web',
      'k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=x',
      'k8s:io.cilium.k8s.namespace.labels.team=blue',
      'k8s:io.cilium.k8s.policy.cluster=default',
      'k8s:io.cilium.k8s.policy.serviceaccount=sa1',
      'k8s:io.kubernetes.pod.namespace=x',
    ]);
  });
});
