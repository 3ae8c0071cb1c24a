import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';

/**
 * Finding 2002 (docs/attack-findings-26a.md; open, pinned): with external identities, a namespace relabel changes its
 * pods' identity labels; until the cluster allocates an id for the new label set (a new CiliumIdentity) the pods have
 * none here, so their addresses carry identity 0 (finding 800's history-free reading), which every wildcard allow
 * admits past a deny that selects them under both the old and the new labels. Cilium's ipcache takes a remote pod's
 * number from its CiliumEndpoint (`status.identity.id`), which keeps the old number until the pod's node allocates the
 * new one, so the deny keeps applying. distill does not read CiliumEndpoint objects.
 */
const logger = pino({ level: 'silent' });
let rv = 1;
const meta = (name: string, extra: Record<string, unknown> = {}) => ({ name, resourceVersion: String(rv++), ...extra });
const ns = (type: 'ADDED' | 'MODIFIED', name: string, labels: Record<string, string> = {}): WatchItem => ({ type, object: { apiVersion: 'v1', kind: 'Namespace', metadata: meta(name, { labels }) } });
const pod = (name: string, namespace: string, node: string, ip: string): WatchItem => ({
  type: 'ADDED',
  object: { apiVersion: 'v1', kind: 'Pod', metadata: meta(name, { namespace, labels: { app: name } }), spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip } },
});
const labels = (app: string, namespace: string): Record<string, string> => ({
  'k8s:app': app,
  'k8s:io.kubernetes.pod.namespace': namespace,
  'k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name': namespace,
  'k8s:io.cilium.k8s.policy.cluster': 'default',
  'k8s:io.cilium.k8s.policy.serviceaccount': 'default',
});
const identity = (id: number, l: Record<string, string>): WatchItem => ({ type: 'ADDED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumIdentity', metadata: meta(String(id)), 'security-labels': l } });
/** web admits everything but data's app=db (a deny the namespace's new label does not change). */
const policy: WatchItem = {
  type: 'ADDED',
  object: {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: meta('web', { namespace: 'shop' }),
    spec: {
      endpointSelector: { matchLabels: { app: 'web' } },
      ingress: [{ fromEntities: ['all'] }],
      ingressDeny: [{ fromEndpoints: [{ matchLabels: { 'k8s:io.kubernetes.pod.namespace': 'data', app: 'db' } }] }],
    },
  },
};

describe('2002: a namespace relabel with external identities', () => {
  it('the relabelled pods are not admitted past a deny both label sets meet while their new id is not allocated', () => {
    const backend = new MemoryBackend();
    const a = new Agent({ node: 'n1', watch: [], backend, logger, registry: new Registry(), identities: 'external' });
    const feed = (...items: WatchItem[]): void => {
      for (const item of items) a.mirror.observe(item, 'test');
      a.flush();
    };
    const fromDb = (): 'allow' | 'deny' => {
      const hit = backendLookup(backend, 'shop/web', a.engine.identityOfIp(parseIp('10.0.1.4')), 'ingress', 6, 80);
      return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
    };
    feed(ns('ADDED', 'shop'), ns('ADDED', 'data'), identity(300, labels('web', 'shop')), identity(303, labels('db', 'data')), pod('web', 'shop', 'n1', '10.0.0.2'), pod('db', 'data', 'n2', '10.0.1.4'), policy);
    expect(fromDb()).toBe('deny');
    feed(ns('MODIFIED', 'data', { team: 'x' }));
    expect(fromDb()).toBe('deny');
  });
});
