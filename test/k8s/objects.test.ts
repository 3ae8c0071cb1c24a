import { describe, expect, it } from 'vitest';
import { identityOf, namespaceOf, objectKind, podEndpoint } from '../../src/k8s/objects.js';
import { ManifestError } from '../../src/policy/errors.js';

/** A v1 Pod in the API server's wire format (kubernetes.io API reference, Pod v1 core). */
function pod(over: { spec?: Record<string, unknown>; status?: Record<string, unknown>; metadata?: Record<string, unknown> } = {}): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'web-7d4b9c', namespace: 'shop', uid: 'a1', resourceVersion: '4711', generateName: 'web-', labels: { app: 'web' }, ownerReferences: [{ kind: 'ReplicaSet', name: 'web' }], ...over.metadata },
    spec: {
      nodeName: 'node-a',
      serviceAccountName: 'web-sa',
      containers: [
        { name: 'app', image: 'app:1', ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }, { containerPort: 9090 }] },
        { name: 'dns', image: 'dns:1', ports: [{ name: 'dns', containerPort: 53, protocol: 'UDP' }] },
      ],
      ...over.spec,
    },
    status: { phase: 'Running', podIP: '10.0.0.7', podIPs: [{ ip: '10.0.0.7' }, { ip: 'fd00::7' }], ...over.status },
  };
}

describe('v1 Pod', () => {
  it('is a local endpoint on its node, with its labels, service account and every container port', () => {
    const ep = podEndpoint(pod(), 'node-a', 'pods#1');
    expect(ep.pod).not.toBeNull();
    if (ep.pod === null) return;
    expect(ep.local).toBe(true);
    expect(ep.pod).toMatchObject({ namespace: 'shop', name: 'web-7d4b9c', labels: { app: 'web' }, serviceAccount: 'web-sa' });
    expect(ep.pod.ip.text).toBe('10.0.0.7');
    expect(ep.pod.ports).toEqual([
      { name: 'http', port: 8080, protocol: 'TCP' },
      { port: 9090, protocol: 'TCP' },
      { name: 'dns', port: 53, protocol: 'UDP' },
    ]);
  });
  it('is a remote peer on another node, or unscheduled', () => {
    expect(podEndpoint(pod(), 'node-b', 's')).toMatchObject({ local: false });
    expect(podEndpoint(pod({ spec: { nodeName: undefined } }), 'node-a', 's')).toMatchObject({ local: false });
  });
  it('keeps both addresses of a dual-stack pod, the first of podIPs as its primary', () => {
    const ep = podEndpoint(pod(), 'node-a', 's');
    expect(ep.pod?.ip.text).toBe('10.0.0.7');
    expect(ep.pod?.ips?.map((a) => a.text)).toEqual(['10.0.0.7', 'fd00::7']);
    const v6first = podEndpoint(pod({ status: { podIPs: [{ ip: 'fd00::7' }, { ip: '10.0.0.7' }] } }), 'node-a', 's').pod;
    expect(v6first?.ips?.map((a) => a.text)).toEqual(['fd00::7', '10.0.0.7']);
    expect(podEndpoint(pod({ status: { podIPs: [{ ip: '10.0.0.7' }] } }), 'node-a', 's').pod).not.toHaveProperty('ips');
    expect(() => podEndpoint(pod({ status: { podIPs: [{ ip: '10.0.0.7' }, { ip: '10.0.0.8' }] } }), 'node-a', 'p#4')).toThrow(/p#4 status\.podIPs\[1\]\.ip: a second ipv4 address/);
  });
  it('takes podIPs first, podIP without it, and waits without either', () => {
    expect(podEndpoint(pod({ status: { podIPs: [{ ip: 'fd00::9' }], podIP: '10.0.0.9' } }), 'node-a', 's').pod?.ip.text).toBe('fd00::9');
    expect(podEndpoint(pod({ status: { podIPs: undefined, podIP: '10.0.0.9' } }), 'node-a', 's').pod?.ip.text).toBe('10.0.0.9');
    expect(podEndpoint(pod({ status: { phase: 'Pending', podIPs: undefined, podIP: undefined } }), 'node-a', 's')).toEqual({ pod: null, reason: 'no-ip' });
  });
  it('is not an endpoint with host networking, when finished, or being deleted', () => {
    expect(podEndpoint(pod({ spec: { hostNetwork: true } }), 'node-a', 's')).toEqual({ pod: null, reason: 'host-network' });
    expect(podEndpoint(pod({ status: { phase: 'Succeeded' } }), 'node-a', 's')).toEqual({ pod: null, reason: 'terminated' });
    expect(podEndpoint(pod({ status: { phase: 'Failed' } }), 'node-a', 's')).toEqual({ pod: null, reason: 'terminated' });
  });
  it('stays an endpoint while it is being deleted, until its deletionTimestamp', () => {
    const deleting = pod({ metadata: { deletionTimestamp: '2026-11-29T10:00:30Z', deletionGracePeriodSeconds: 30 } });
    const deadline = Date.parse('2026-11-29T10:00:30Z');
    const before = podEndpoint(deleting, 'node-a', 's', deadline - 1);
    expect(before).toMatchObject({ local: true, deleteAt: deadline });
    expect(before.pod?.name).toBe('web-7d4b9c');
    expect(podEndpoint(deleting, 'node-a', 's', deadline)).toEqual({ pod: null, reason: 'terminating' });
    expect(podEndpoint(deleting, 'node-a', 's', deadline + 60_000)).toEqual({ pod: null, reason: 'terminating' });
    expect(podEndpoint(pod({ metadata: { deletionTimestamp: '2026-11-29T11:00:30+01:00' } }), 'node-a', 's', deadline - 1)).toMatchObject({ deleteAt: deadline });
    expect(podEndpoint(pod(), 'node-a', 's', deadline)).not.toHaveProperty('deleteAt');
    expect(() => podEndpoint(pod({ metadata: { deletionTimestamp: 'soon' } }), 'node-a', 'p#2')).toThrow(/p#2 metadata\.deletionTimestamp: "soon" is not an RFC 3339 time/);
  });
  it('defaults the service account as the API server does', () => {
    expect(podEndpoint(pod({ spec: { serviceAccountName: undefined } }), 'node-a', 's').pod?.serviceAccount).toBe('default');
    expect(podEndpoint(pod({ spec: { serviceAccountName: undefined, serviceAccount: 'legacy' } }), 'node-a', 's').pod?.serviceAccount).toBe('legacy');
  });
  it('names the object and the field of what it cannot read', () => {
    expect(() => podEndpoint(pod({ status: { podIPs: [{ ip: '10.0.0.300' }] } }), 'node-a', 'pods.json#3')).toThrow(/pods\.json#3 status\.podIPs\[0\]\.ip/);
    expect(() => podEndpoint(pod({ metadata: { labels: { 'bad key!': 'x' } } }), 'node-a', 'p#1')).toThrow(ManifestError);
    expect(() => podEndpoint(pod({ spec: { containers: [{ name: 'a', ports: [{ name: 'x_y', containerPort: 80 }] }] } }), 'node-a', 'p#1')).toThrow(/spec\.containers\[0\]\.ports\[0\]\.name/);
  });
});

describe('v1 Namespace, CiliumIdentity, kinds', () => {
  it('reads a namespace name and labels', () => {
    const ns = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', resourceVersion: '1', labels: { 'kubernetes.io/metadata.name': 'shop', team: 'a' } }, spec: { finalizers: ['kubernetes'] }, status: { phase: 'Active' } };
    expect(namespaceOf(ns, 's')).toEqual({ name: 'shop', labels: { 'kubernetes.io/metadata.name': 'shop', team: 'a' } });
  });
  it('reads a CiliumIdentity: the name is the number, security-labels the labels', () => {
    const id = { apiVersion: 'cilium.io/v2', kind: 'CiliumIdentity', metadata: { name: '23456', resourceVersion: '9', labels: { 'io.kubernetes.pod.namespace': 'shop' } }, 'security-labels': { 'k8s:app': 'web', 'k8s:io.kubernetes.pod.namespace': 'shop' } };
    expect(identityOf(id, 's')).toEqual({ id: 23456, labels: { 'k8s:app': 'web', 'k8s:io.kubernetes.pod.namespace': 'shop' } });
    expect(() => identityOf({ ...id, metadata: { name: 'web' } }, 'ids#2')).toThrow(/ids#2 metadata\.name: "web" is not an identity number/);
  });
  it('knows its kinds by kind and apiVersion', () => {
    expect(objectKind({ apiVersion: 'v1', kind: 'Pod' })).toBe('Pod');
    expect(objectKind({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy' })).toBe('NetworkPolicy');
    expect(objectKind({ apiVersion: 'cilium.io/v2', kind: 'CiliumIdentity' })).toBe('CiliumIdentity');
    expect(objectKind({ apiVersion: 'v1', kind: 'Service' })).toBeUndefined();
    expect(objectKind({ apiVersion: 'extensions/v1beta1', kind: 'NetworkPolicy' })).toBeUndefined();
    expect(objectKind({ apiVersion: 'v1', kind: 'constructor' })).toBeUndefined();
    expect(objectKind(null)).toBeUndefined();
  });
});
