import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { backendLookup } from '../../src/backend/lookup.js';
import { MemoryBackend } from '../../src/backend/memory.js';
import type { WatchItem } from '../../src/k8s/watch.js';
import { parseIp } from '../../src/model/cidr.js';
import { UNALLOCATED_POD_IDENTITY } from '../../src/model/identity.js';

/**
 * Finding 2420 (review 27o) through the agent (`--identities external`): db (10.0.1.3, app=db, on n2) was read and
 * met a CCNP `egressDeny` to app=db beside a wildcard allow; its CiliumEndpoint lags and names 302 (a readable identity
 * of shop/default with `app: other`, an older reading of db). distill reads a pod's own identity when its labels have
 * one (301 here), so the endpoint is not read and web → db is denied. An update of db distill cannot read (two IPv4
 * addresses, src/k8s/held.ts `keptOnUnreadable`; its labels still app=db) holds db fail-closed at its last readable
 * address: before the fix the fail-closed pod read its endpoint and took 302, which the wildcard admits; both the old
 * and the new input deny web → db (db's labels are app=db in both). The objects follow test/k8s/cilium-endpoint-27c.
 */
const logger = pino({ level: 'silent' });
let rv = 1;
const meta = (name: string, extra: Record<string, unknown> = {}) => ({ name, resourceVersion: String(rv++), ...extra });
const pod = (type: 'ADDED' | 'MODIFIED', name: string, node: string, ips: string[]): WatchItem => ({
  type,
  object: { apiVersion: 'v1', kind: 'Pod', metadata: meta(name, { namespace: 'shop', labels: { app: name } }), spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) } },
});
const labels = (app: string): Record<string, string> => ({
  'k8s:app': app,
  'k8s:io.kubernetes.pod.namespace': 'shop',
  'k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name': 'shop',
  'k8s:io.cilium.k8s.policy.cluster': 'default',
  'k8s:io.cilium.k8s.policy.serviceaccount': 'default',
});
const identity = (id: number, app: string): WatchItem => ({ type: 'ADDED', object: { apiVersion: 'cilium.io/v2', kind: 'CiliumIdentity', metadata: meta(String(id)), 'security-labels': labels(app) } });
const cep = (name: string, id: number, ip: string): WatchItem => ({
  type: 'ADDED',
  object: {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumEndpoint',
    metadata: meta(name, { namespace: 'shop', uid: `uid-cep-${name}`, generation: 1, ownerReferences: [{ apiVersion: 'v1', kind: 'Pod', name, uid: `uid-pod-${name}`, blockOwnerDeletion: true }] }),
    status: { id: 1844, identity: { id, labels: ['k8s:app=other', 'k8s:io.kubernetes.pod.namespace=shop'] }, networking: { addressing: [{ ipv4: ip }], node: '192.0.2.20' }, encryption: {}, 'named-ports': [], state: 'ready' },
  },
});
const allowAll: WatchItem = {
  type: 'ADDED',
  object: { apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: meta('allow-all'), spec: { endpointSelector: {}, ingress: [{ fromEntities: ['all'] }], egress: [{ toEntities: ['all'] }] } },
};
const denyToDb: WatchItem = {
  type: 'ADDED',
  object: { apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: meta('deny-to-db'), spec: { endpointSelector: {}, egressDeny: [{ toEndpoints: [{ matchLabels: { app: 'db' } }] }] } },
};
const node2: WatchItem = { type: 'ADDED', object: { apiVersion: 'v1', kind: 'Node', metadata: meta('n2'), spec: {}, status: { addresses: [{ type: 'InternalIP', address: '192.0.2.20' }] } } };

describe('2420 through the agent: a fail-closed pod does not take its lagging CiliumEndpoint\'s number', () => {
  it('web → db stays denied while db\'s update cannot be read', () => {
    const backend = new MemoryBackend();
    const a = new Agent({ node: 'n1', watch: [], backend, logger, registry: new Registry(), identities: 'external' });
    const settle = (...items: WatchItem[]): void => {
      for (const item of items) a.mirror.observe(item, 'test');
      a.flush();
      for (let i = 0; i < 50 && !a.mirror.idle; i++) a.flush();
    };
    const decide = (ip: string): string => {
      const hit = backendLookup(backend, 'shop/web', a.engine.identityOfIp(parseIp(ip)), 'egress', 6, 80);
      return hit === undefined || hit.entry.deny ? 'deny' : 'allow';
    };
    settle({ type: 'ADDED', object: { apiVersion: 'v1', kind: 'Namespace', metadata: meta('shop') } }, node2, identity(300, 'web'), identity(301, 'db'), identity(302, 'other'), pod('ADDED', 'web', 'n1', ['10.0.0.2']), pod('ADDED', 'db', 'n2', ['10.0.1.3']), cep('db', 302, '10.0.1.3'), allowAll, denyToDb);
    expect(a.engine.identityOfIp(parseIp('10.0.1.3'))).toBe(301);
    expect(decide('10.0.1.3')).toBe('deny');
    settle(pod('MODIFIED', 'db', 'n2', ['10.0.1.3', '10.0.1.4']));
    expect(a.engine.identityOfIp(parseIp('10.0.1.3'))).toBe(UNALLOCATED_POD_IDENTITY);
    expect(decide('10.0.1.3')).toBe('deny');
    // The probe can allow: an outside address under the wildcard.
    expect(decide('192.0.2.9')).toBe('allow');
  });
});
