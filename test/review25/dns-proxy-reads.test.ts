import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { EngineDecider } from '../../src/harness/engine-decider.js';
import { decideFlow } from '../../src/naive/evaluator.js';
import { parseScenario } from '../../src/scenario/format.js';
import { runScenario, scenarioEngineOptions } from '../../src/scenario/run.js';

/*
 * review25 (1965): what the DNS proxy reads beside the DNS rule. pkg/policy/rule_test.go
 * TestWildcardL4RulesEgress: an L4-only 53/UDP rule (no L3, wildcard selector) sits in the 53/UDP
 * filter with a nil policy, so the proxy lets every name through for every server; an L4-only UDP
 * rule on every port (port 0) is its own filter (0/UDP) and does not.
 */
function run(text: string): void {
  const s = parseScenario(text, 'review25-dns.yaml');
  const naive = runScenario(s, decideFlow);
  const engine = runScenario(s, new EngineDecider(new Engine(scenarioEngineOptions(s))).decide);
  expect({ oracle: naive.steps.flatMap((x) => x.mismatches), engine: engine.steps.flatMap((x) => x.mismatches) }).toEqual({ oracle: [], engine: [] });
}

const base = (wide: string): string => `
namespaces: [{name: x}, {name: kube-system}]
pods:
  - {name: x/a, labels: {app: a}}
  - {name: kube-system/kube-dns, labels: {k8s-app: kube-dns}, ip: 10.96.0.10, ports: [{port: 53, protocol: UDP}]}
externals:
  - {name: evil, ip: 192.0.2.72}
dnsProxy: {minTtl: 0}
policies:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: dns, namespace: x}
    spec:
      endpointSelector: {matchLabels: {app: a}}
      egress:
        - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s:k8s-app: kube-dns}}]
          toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchName: good.example.com}]}}]
        - toFQDNs: [{matchPattern: "*.example.com"}]
          toPorts: [{ports: [{port: "443", protocol: TCP}]}]
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: wide, namespace: x}
    spec:
      endpointSelector: {matchLabels: {app: a}}
      egress:
        - ${wide}
steps:
  - changes:
      - {dnsResponse: {pod: x/a, name: evil.example.com, ips: [192.0.2.72], ttl: 600, server: kube-system/kube-dns}}
    probes:
      - {from: x/a, to: kube-system/kube-dns, port: 53, protocol: UDP, dns: {name: evil.example.com}}
      - {from: x/a, to: evil, port: 443}
    expect:
`;

describe('review25: the DNS proxy beside L4-only plain allows', () => {
  it('an L4-only 53/UDP allow (wildcard L3) widens the DNS rule', () => {
    run(`${base('toPorts: [{ports: [{port: "53", protocol: UDP}]}]')}      - {probe: 0, deny: []}\n      - {probe: 1, deny: []}\n`);
  });
  it('toEntities all on 53/UDP widens the DNS rule', () => {
    run(`${base('{toEntities: [all], toPorts: [{ports: [{port: "53", protocol: UDP}]}]}')}      - {probe: 0, deny: []}\n      - {probe: 1, deny: []}\n`);
  });
  it('an L4-only allow of every UDP port (port 0) does not', () => {
    run(`${base('toPorts: [{ports: [{port: "0", protocol: UDP}]}]')}      - {probe: 0, allow: []}\n      - {probe: 1, allow: []}\n`);
  });
});
