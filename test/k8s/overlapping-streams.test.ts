import { describe, expect, it } from 'vitest';
import { mirrorAgent } from './mirror-agent.js';

/**
 * Two streams of one kind (finding 1342): pods watched per namespace (`GET
 * /api/v1/namespaces/a/pods?watch=1`, one stream each, as a recorder limited by RBAC to some
 * namespaces runs them). A namespaced List (`PodList`) does not say its namespace; client-go gives
 * each such informer its own store, and its relist (`Replace`, tools/cache/delta_fifo.go /
 * thread_safe_store.go) deletes only what that store held.
 */
type Obj = Record<string, unknown>;
const ev = (type: string, object: Obj): string => JSON.stringify({ type, object });
const ns = (name: string, rv: number): Obj => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, resourceVersion: String(rv) } });
const pod = (namespace: string, name: string, rv: number, node: string, ip: string, labels: Obj): Obj => ({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace, resourceVersion: String(rv), labels }, spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip } });
const podList = (rv: number, items: Obj[]): string => JSON.stringify({ kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: String(rv) }, items });
const ccnp = (name: string, rv: number, spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumClusterwideNetworkPolicy', metadata: { name, resourceVersion: String(rv) }, spec: { endpointSelector: { matchLabels: { app: 'server' } }, ...spec } });
const expired = ev('ERROR', { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410 });
const initialEnd = (rv: number): string => ev('BOOKMARK', { apiVersion: 'v1', kind: 'Pod', metadata: { resourceVersion: String(rv), annotations: { 'k8s.io/initial-events-end': 'true' } } });

function cluster() {
  const a = mirrorAgent();
  a.step('ns', ev('ADDED', ns('x', 1)), ev('ADDED', ns('y', 2)));
  a.step('policies', ev('ADDED', ccnp('world-but-evil', 3, { ingress: [{ fromEntities: ['world'] }], ingressDeny: [{ fromEndpoints: [{ matchLabels: { app: 'evil' } }] }] })));
  a.step('pods-x', ev('ADDED', pod('x', 'server', 4, 'n1', '10.0.0.1', { app: 'server' })));
  a.step('pods-y', ev('ADDED', pod('y', 'evil', 5, 'n2', '10.0.0.9', { app: 'evil' })));
  expect(a.verdict('10.0.0.9')).toBe('deny');
  return a;
}

describe('two streams of one kind: a relist of one deletes only what that stream gave', () => {
  it('1342. a PodList on the namespace x stream does not delete the pods of the namespace y stream', () => {
    const a = cluster();
    a.step('pods-x', expired, podList(10, [pod('x', 'server', 4, 'n1', '10.0.0.1', { app: 'server' })]));
    expect(a.engine.identityOfPod('y/evil')).toBeDefined();
    expect(a.verdict('10.0.0.9')).toBe('deny');
  });
  it('1342. an initial-events-end bookmark on the namespace x stream does not delete the pods of the namespace y stream', () => {
    const a = cluster();
    a.step('pods-x', expired, ev('ADDED', pod('x', 'server', 4, 'n1', '10.0.0.1', { app: 'server' })), initialEnd(10));
    expect(a.engine.identityOfPod('y/evil')).toBeDefined();
    expect(a.verdict('10.0.0.9')).toBe('deny');
  });
  it('1342. a stream\'s own objects it no longer lists are deleted, whichever stream listed them before', () => {
    const a = cluster();
    a.step('pods-y', expired, podList(10, []));
    expect(a.engine.identityOfPod('y/evil')).toBeUndefined();
    expect(a.engine.identityOfPod('x/server')).toBeDefined();
  });
});
