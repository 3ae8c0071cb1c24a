import { describe, expect, it } from 'vitest';
import { parseScenario } from '../../src/scenario/format.js';
import { runScenario } from '../../src/scenario/run.js';
import { decideFlow } from '../../src/naive/evaluator.js';

function finalState(yaml: string) {
  return runScenario(parseScenario(yaml, 't.yaml'), decideFlow).finalState;
}

const base = `
pods:
  - {name: x/a, labels: {app: a}, ports: [{name: web, port: 8080}]}
  - {name: x/b, labels: {app: b}, ports: [{name: web, port: 9090}]}
externals:
  - {name: out, ip: 192.0.2.1}
`;

describe('naive evaluator', () => {
  it('egress named ports resolve against the destination pod, and only when the name is unambiguous in the cluster', () => {
    const s = finalState(`${base}
policies:
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: e, namespace: x}
    spec:
      podSelector: {matchLabels: {app: a}}
      egress: [{ports: [{port: web}]}]
`);
    // "web" is 8080 on x/a and 9090 on x/b: Cilium's cluster-wide map resolves it to nothing.
    expect(decideFlow(s, { from: 'x/a', to: 'x/b', port: 9090, protocol: 'TCP' }).allowed).toBe(false);
    expect(decideFlow(s, { from: 'x/a', to: 'x/b', port: 8080, protocol: 'TCP' }).allowed).toBe(false);
    expect(decideFlow(s, { from: 'x/a', to: 'out', port: 8080, protocol: 'TCP' }).allowed).toBe(false);
    const one = finalState(`${base.replace('port: 8080', 'port: 9090')}
policies:
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: e, namespace: x}
    spec:
      podSelector: {matchLabels: {app: a}}
      egress: [{ports: [{port: web}]}]
`);
    expect(decideFlow(one, { from: 'x/a', to: 'x/b', port: 9090, protocol: 'TCP' }).allowed).toBe(true);
    expect(decideFlow(one, { from: 'x/a', to: 'x/b', port: 8080, protocol: 'TCP' }).allowed).toBe(false);
  });
  it('deny beats allow and explains itself', () => {
    const s = finalState(`${base}
policies:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: d, namespace: x}
    spec:
      endpointSelector: {matchLabels: {app: a}}
      ingress: [{fromEntities: [all]}]
      ingressDeny: [{fromEndpoints: [{matchLabels: {app: b}}], toPorts: [{ports: [{port: "8080", protocol: TCP}]}]}]
`);
    const d = decideFlow(s, { from: 'x/b', to: 'x/a', port: 8080, protocol: 'TCP' });
    expect(d.allowed).toBe(false);
    expect(d.ingress?.deniedBy.map((o) => o.path)).toEqual(['spec.ingressDeny[0]']);
    expect(d.ingress?.allowedBy.map((o) => o.path)).toEqual(['spec.ingress[0]']);
    expect(decideFlow(s, { from: 'x/b', to: 'x/a', port: 8081, protocol: 'TCP' }).allowed).toBe(true);
    expect(decideFlow(s, { from: 'out', to: 'x/a', port: 8080, protocol: 'TCP' }).allowed).toBe(true);
  });
  it('externals enforce nothing; a pod with no policy allows everything', () => {
    const s = finalState(base);
    expect(decideFlow(s, { from: 'out', to: 'x/a', port: 1, protocol: 'UDP' })).toMatchObject({ allowed: true, proxied: false });
    expect(decideFlow(s, { from: 'x/a', to: 'out', port: 1, protocol: 'UDP' }).ingress).toBeUndefined();
  });
});
