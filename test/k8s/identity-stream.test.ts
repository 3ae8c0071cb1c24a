import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';

/**
 * Finding 800 (docs/attack-findings-17w.md): with identities from CiliumIdentity objects
 * (`--identities external`), a remote pod whose labels have no identity (its CiliumIdentity
 * deleted while the pod runs, or the pod read before its identity) was put in the ipcache as
 * `reserved:init`. The `cluster` entity selects init (pkg/policy/api/entity.go `InitEntities`:
 * host, remote-node, init, health, unmanaged and the cluster's pods), and a deny on the pod's
 * labels no longer matched it: web's `ingressDeny` of app=evil stopped denying evil. Cilium's
 * ipcache holds such a pod under the number its node allocated (its CiliumEndpoint's), which this
 * node's selector cache does not know: only L3-wildcard entries decide (bpf: the identity-0 lookup).
 */
const logger = pino({ level: 'silent' });
let rv = 1;
const meta = (name: string, extra: Record<string, unknown> = {}) => ({ name, resourceVersion: String(rv++), ...extra });
const namespace: WatchItem = { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: meta('shop') } };
const pod = (name: string, node: string, ip: string): WatchItem => ({
  type: 'ADDED',
  object: { apiVersion: 'v1', kind: 'Pod', metadata: meta(name, { namespace: 'shop', labels: { app: name } }), spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip } },
});
/** The identity labels Cilium gives a pod `app=<app>` of namespace shop (service account default). */
const identity = (type: 'ADDED' | 'DELETED', id: number, app: string): WatchItem => ({
  type,
  object: {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumIdentity',
    metadata: meta(String(id)),
    'security-labels': {
      'k8s:app': app,
      'k8s:io.kubernetes.pod.namespace': 'shop',
      'k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name': 'shop',
      'k8s:io.cilium.k8s.policy.cluster': 'default',
      'k8s:io.cilium.k8s.policy.serviceaccount': 'default',
    },
  },
});
/** web admits the cluster but not app=evil. */
const policy: WatchItem = {
  type: 'ADDED',
  object: {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: meta('web', { namespace: 'shop' }),
    spec: { endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ fromEntities: ['cluster'] }], ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'evil' } }] }] },
  },
};

function agent() {
  const backend = new MemoryBackend();
  const a = new Agent({ node: 'n1', watch: [], backend, logger, registry: new Registry(), identities: 'external' });
  const feed = (...items: WatchItem[]): void => {
    for (const item of items) a.mirror.observe(item, 'test');
    a.flush();
    expect(a.summary.refusals).toBe(0);
  };
  /** web's TCP/80 verdict for a packet from `ip`, as the datapath takes it: the ipcache's identity, then the map. */
  const from = (ip: string): 'allow' | 'deny' => {
    const hit = backendLookup(backend, 'shop/web', a.engine.identityOfIp(parseIp(ip)), 'ingress', 6, 80);
    return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
  };
  return { feed, from };
}

describe('800. a remote pod without a CiliumIdentity is not reserved:init', () => {
  it('its identity deleted while it runs: a deny on its labels is not replaced by the cluster allow', () => {
    const { feed, from } = agent();
    feed(namespace, identity('ADDED', 300, 'web'), identity('ADDED', 302, 'evil'), identity('ADDED', 303, 'db'), pod('web', 'n1', '10.0.0.2'), pod('evil', 'n2', '10.0.1.3'), pod('db', 'n2', '10.0.1.4'), policy);
    expect(from('10.0.1.3')).toBe('deny');
    expect(from('10.0.1.4')).toBe('allow');
    feed(identity('DELETED', 302, 'evil'));
    expect(from('10.0.1.3')).toBe('deny');
    // Its identity back (the allocator re-creates it): denied by its labels again; db untouched.
    feed(identity('ADDED', 302, 'evil'));
    expect(from('10.0.1.3')).toBe('deny');
    expect(from('10.0.1.4')).toBe('allow');
  });

  it('the pod read before its identity (the Pod stream ahead of the CiliumIdentity stream): not allowed meanwhile', () => {
    const { feed, from } = agent();
    feed(namespace, identity('ADDED', 300, 'web'), pod('web', 'n1', '10.0.0.2'), policy);
    // Before evil existed its address was world, which web does not admit either.
    expect(from('10.0.1.3')).toBe('deny');
    feed(pod('evil', 'n2', '10.0.1.3'));
    expect(from('10.0.1.3')).toBe('deny');
    feed(identity('ADDED', 302, 'evil'));
    expect(from('10.0.1.3')).toBe('deny');
  });

  // Finding 2002: as 0 an L3-wildcard allow admitted it (as Cilium admits a number it does not know), past
  // a deny on its labels too; distill cannot tell its CiliumEndpoint's number, so it is denied until its id exists.
  it('an L3-wildcard allow does not admit it until its identity exists (fail closed, stricter than Cilium)', () => {
    const { feed, from } = agent();
    const all: WatchItem = { type: 'ADDED', object: { ...(policy.object as object), metadata: meta('web', { namespace: 'shop' }), spec: { endpointSelector: { matchLabels: { app: 'web' } }, ingress: [{ fromEntities: ['all'] }] } } };
    feed(namespace, identity('ADDED', 300, 'web'), pod('web', 'n1', '10.0.0.2'), all, pod('evil', 'n2', '10.0.1.3'));
    expect(from('10.0.1.3')).toBe('deny');
    feed(identity('ADDED', 302, 'evil'));
    expect(from('10.0.1.3')).toBe('allow');
  });
});

/**
 * Finding 802: the local side of 800. A local pod whose CiliumIdentity is deleted while it runs
 * was `reserved:init` in the ipcache, so web's `cluster` allow admitted it past the deny on its
 * labels. Cilium keeps a running endpoint's number (pkg/allocator `syncLocalKeys` re-creates the
 * key); from the state alone the engine cannot, so the pod is 0 in the ipcache, as a remote one.
 */
describe('802. a local pod without a CiliumIdentity is not reserved:init in the ipcache', () => {
  it('its identity deleted while it runs: still denied by web, and denied once its identity is back', () => {
    const { feed, from } = agent();
    feed(namespace, identity('ADDED', 300, 'web'), identity('ADDED', 302, 'evil'), pod('web', 'n1', '10.0.0.2'), pod('evil', 'n1', '10.0.0.3'), policy);
    expect(from('10.0.0.3')).toBe('deny');
    feed(identity('DELETED', 302, 'evil'));
    expect(from('10.0.0.3')).toBe('deny');
    feed(identity('ADDED', 302, 'evil'));
    expect(from('10.0.0.3')).toBe('deny');
  });

  it('a new local pod read before its identity: not admitted by the cluster allow meanwhile', () => {
    const { feed, from } = agent();
    feed(namespace, identity('ADDED', 300, 'web'), pod('web', 'n1', '10.0.0.2'), policy, pod('evil', 'n1', '10.0.0.3'));
    expect(from('10.0.0.3')).toBe('deny');
  });
});
