import { describe, expect, it } from 'vitest';
import type { WatchItem } from '../../src/k8s/watch.js';
import { settledAgent } from './settled-agent.js';

/**
 * Finding 2433 (not fixed, pinned with `it.fails`: it passes while the hole is open). The 2233 class at the engine:
 * a policy update the engine refuses (Cilium accepts the object; only an endpoint's policy cannot be computed) keeps
 * the old version in force for every endpoint. `p` first allows x/client → x/server; its update drops that allow and
 * adds a Kafka rule on x/api's port 80, where `http-api` has an HTTP rule: the engine refuses the update (Cilium
 * pkg/policy/l4.go `mergePortProto` "cannot merge conflicting L7 parsers", which fails x/api's regeneration only;
 * x/server's regeneration takes the update and denies client, `isolate` isolating server). The old allow stays in
 * x/server's map, and at every later change both inputs (the update, with or without that change) deny
 * client → server while the map allows it.
 */
let rv = 1;
const meta = (name: string, extra: Record<string, unknown> = {}) => ({ name, resourceVersion: String(rv++), ...extra });
const obj = (type: 'ADDED' | 'MODIFIED', object: Record<string, unknown>): WatchItem => ({ type, object }) as WatchItem;
const pod = (name: string, ip: string, node: string) =>
  obj('ADDED', { apiVersion: 'v1', kind: 'Pod', metadata: meta(name, { namespace: 'x', labels: { app: name } }), spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip } });
const cnp = (type: 'ADDED' | 'MODIFIED', name: string, specs: Record<string, unknown>[]) => obj(type, { apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: meta(name, { namespace: 'x' }), specs });
const sel = (app: string) => ({ matchLabels: { app } });
const l7 = (rules: Record<string, unknown>) => ({ fromEndpoints: [sel('client')], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], rules }] });

describe('2433: a policy update the engine refuses keeps the old version for every endpoint', () => {
  it('client → server stays allowed by the old version, which the update and a later change both deny', () => {
    const { agent, settle, decide: at } = settledAgent();
    const decide = (endpoint: string, peer: string): 'allow' | 'deny' => at(endpoint, peer, 'ingress');
    settle([
      obj('ADDED', { apiVersion: 'v1', kind: 'Namespace', metadata: meta('x') }),
      pod('server', '10.0.0.1', 'n1'),
      pod('api', '10.0.0.3', 'n1'),
      pod('client', '10.0.0.2', 'n2'),
      cnp('ADDED', 'isolate', [{ endpointSelector: sel('server'), ingress: [{ fromEndpoints: [sel('nobody')] }] }]),
      cnp('ADDED', 'http-api', [{ endpointSelector: sel('api'), ingress: [l7({ http: [{ method: 'GET' }] })] }]),
      cnp('ADDED', 'p', [{ endpointSelector: sel('server'), ingress: [{ fromEndpoints: [sel('client')] }] }]),
    ]);
    expect(decide('x/server', '10.0.0.2')).toBe('allow');
    settle([cnp('MODIFIED', 'p', [{ endpointSelector: sel('api'), ingress: [l7({ kafka: [{ topic: 't' }] })] }])]);
    expect(agent.mirror.refusedObjects()).toEqual(['CiliumNetworkPolicy/x/p']);
    settle([obj('ADDED', { apiVersion: 'v1', kind: 'Namespace', metadata: meta('unrelated') })]);
    expect(decide('x/server', '10.0.0.2')).toBe('deny');
  });
});
