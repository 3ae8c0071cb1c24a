import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { EngineDecider } from '../../src/harness/engine-decider.js';
import { decideFlow } from '../../src/naive/evaluator.js';
import { parseScenario } from '../../src/scenario/format.js';
import { runScenario, scenarioEngineOptions } from '../../src/scenario/run.js';

/*
 * review25: CIDR groups changing under learnt FQDN addresses, equal prefixes held by toCIDR, two groups
 * on one prefix, label-only changes. Expectations: pkg/ipcache/metadata.go mergeParentLabels (an fqdn /32
 * inherits the labels of its enclosing prefixes, Test_metadata_mergeParentLabels "match first cidr parent");
 * pkg/policy/k8s/cilium_cidr_group.go applyCIDRGroup (a group's prefixes carry its labels while it exists).
 */
function run(text: string): void {
  const s = parseScenario(text, 'review25.yaml');
  const naive = runScenario(s, decideFlow);
  const engine = runScenario(s, new EngineDecider(new Engine(scenarioEngineOptions(s))).decide);
  expect(naive.steps.flatMap((x) => x.mismatches), 'oracle').toEqual([]);
  expect(engine.steps.flatMap((x) => x.mismatches), 'engine').toEqual([]);
}

const HEAD = `
namespaces: [{name: x}, {name: kube-system}]
pods:
  - {name: x/client, labels: {app: client}}
  - {name: kube-system/kube-dns, labels: {k8s-app: kube-dns}, ip: 10.96.0.10, ports: [{port: 53, protocol: UDP}]}
externals:
  - {name: bad, ip: 203.0.113.7}
  - {name: bad6, ip: "2001:db8:bad::7"}
dnsProxy: {minTtl: 0}
`;

describe('review25: CIDR group changes reach every identity inside (engine and oracle)', () => {
  it('a group created after a toFQDNs answer denies the learnt address (IPv4 and IPv6), its deletion lifts it', () => {
    run(`${HEAD}
policies:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: p, namespace: x}
    spec:
      endpointSelector: {matchLabels: {app: client}}
      egress:
        - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s:k8s-app: kube-dns}}]
          toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchPattern: "*"}]}}]
        - toFQDNs: [{matchName: bad.example.com}]
          toPorts: [{ports: [{port: "443", protocol: TCP}]}]
      egressDeny:
        - toCIDRSet: [{cidrGroupRef: blocklist}]
steps:
  - changes:
      - {dnsResponse: {pod: x/client, name: bad.example.com, ips: [203.0.113.7, "2001:db8:bad::7"], ttl: 3600, server: kube-system/kube-dns}}
    probes:
      - {from: x/client, to: bad, port: 443}
      - {from: x/client, to: bad6, port: 443}
    expect:
      - {probe: 0, deny: []}
      - {probe: 1, deny: []}
  - changes:
      - {apply: {apiVersion: cilium.io/v2, kind: CiliumCIDRGroup, metadata: {name: blocklist}, spec: {externalCIDRs: ["203.0.113.0/24", "2001:db8:bad::/48"]}}}
    probes:
      - {from: x/client, to: bad, port: 443}
      - {from: x/client, to: bad6, port: 443}
    expect:
      - {probe: 0, allow: []}
      - {probe: 1, allow: []}
  - changes:
      - {delete: {kind: CiliumCIDRGroup, name: blocklist}}
    probes:
      - {from: x/client, to: bad, port: 443}
      - {from: x/client, to: bad6, port: 443}
    expect:
      - {probe: 0, deny: []}
      - {probe: 1, deny: []}
`);
  });

  it('a group on exactly a prefix a toCIDR rule already holds, then moved away; two groups on one prefix, one deleted', () => {
    run(`${HEAD}
policies:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: p, namespace: x}
    spec:
      endpointSelector: {matchLabels: {app: client}}
      egress:
        - toCIDR: ["203.0.113.0/24", "2001:db8:bad::/48"]
      egressDeny:
        - toCIDRSet: [{cidrGroupRef: g1}]
steps:
  - changes:
      - {apply: {apiVersion: cilium.io/v2, kind: CiliumCIDRGroup, metadata: {name: g1}, spec: {externalCIDRs: ["203.0.113.0/24", "2001:db8:bad::/48"]}}}
      - {apply: {apiVersion: cilium.io/v2, kind: CiliumCIDRGroup, metadata: {name: g2}, spec: {externalCIDRs: ["203.0.113.0/24"]}}}
    probes:
      - {from: x/client, to: bad, port: 443}
      - {from: x/client, to: bad6, port: 443}
    expect:
      - {probe: 0, allow: []}
      - {probe: 1, allow: []}
  - changes:
      - {apply: {apiVersion: cilium.io/v2, kind: CiliumCIDRGroup, metadata: {name: g1}, spec: {externalCIDRs: ["198.51.100.0/24"]}}}
    probes:
      - {from: x/client, to: bad, port: 443}
      - {from: x/client, to: bad6, port: 443}
    expect:
      - {probe: 0, deny: []}
      - {probe: 1, deny: []}
  - changes:
      - {apply: {apiVersion: cilium.io/v2, kind: CiliumCIDRGroup, metadata: {name: g1}, spec: {externalCIDRs: ["203.0.113.0/24"]}}}
      - {delete: {kind: CiliumCIDRGroup, name: g2}}
    probes:
      - {from: x/client, to: bad, port: 443}
    expect:
      - {probe: 0, allow: []}
`);
  });

  it('a label-only change of a group moves a cidrGroupSelector deny, a longer group inside overriding the key', () => {
    run(`${HEAD}
policies:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: p, namespace: x}
    spec:
      endpointSelector: {matchLabels: {app: client}}
      egress:
        - toEntities: [world]
      egressDeny:
        - toCIDRSet: [{cidrGroupSelector: {matchLabels: {env: prod}}}]
steps:
  - changes:
      - {apply: {apiVersion: cilium.io/v2, kind: CiliumCIDRGroup, metadata: {name: outer, labels: {env: prod}}, spec: {externalCIDRs: ["203.0.0.0/16"]}}}
    probes:
      - {from: x/client, to: bad, port: 443}
    expect:
      - {probe: 0, allow: []}
  - changes:
      - {apply: {apiVersion: cilium.io/v2, kind: CiliumCIDRGroup, metadata: {name: inner, labels: {env: dev}}, spec: {externalCIDRs: ["203.0.113.0/24"]}}}
    probes:
      - {from: x/client, to: bad, port: 443}
    expect:
      - {probe: 0, deny: []}
  - changes:
      - {apply: {apiVersion: cilium.io/v2, kind: CiliumCIDRGroup, metadata: {name: inner, labels: {env: prod}}, spec: {externalCIDRs: ["203.0.113.0/24"]}}}
    probes:
      - {from: x/client, to: bad, port: 443}
    expect:
      - {probe: 0, allow: []}
  - changes:
      - {delete: {kind: CiliumCIDRGroup, name: inner}}
      - {apply: {apiVersion: cilium.io/v2, kind: CiliumCIDRGroup, metadata: {name: outer, labels: {env: dev}}, spec: {externalCIDRs: ["203.0.0.0/16"]}}}
    probes:
      - {from: x/client, to: bad, port: 443}
    expect:
      - {probe: 0, deny: []}
`);
  });
});
