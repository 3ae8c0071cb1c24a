import { afterAll, beforeAll, expect, it } from 'vitest';
import { Testbed } from '../../src/datapath/testbed.js';
import type { ClusterState } from '../../src/model/cluster.js';
import type { FlowProtocol } from '../../src/model/ports.js';
import { parseScenario } from '../../src/scenario/format.js';
import { scenarioStates } from '../../src/scenario/run.js';
import { kernel } from './gate.js';
import { cnp } from './yaml.js';

/**
 * Finding 1244 (docs/attack-findings-19s.md) on real packets: a DNS rule on 53/ANY redirects
 * 53/SCTP to the DNS proxy too (Cilium pkg/policy/l4.go `createL4Filter`), and only TCP and UDP
 * reach a proxy (pkg/datapath/iptables/iptables.go `addProxyRules`; bpf/lib/proxy.h `assign_socket`,
 * DROP_PROXY_UNKNOWN_PROTO): the datapath drops the SCTP packet the map marks for the proxy. 54/SCTP,
 * a plain allow, shows that SCTP itself gets through.
 */
const CLUSTER = `
namespaces: [{name: x, labels: {}}]
pods:
  - {name: x/client, labels: {app: client}}
  - {name: x/dns, labels: {app: dns}}
policies:
  - ${cnp('client-out', 'client', `egress:
              - toEndpoints: [{matchLabels: {app: dns}}]
                toPorts: [{ports: [{port: "53", protocol: ANY}], rules: {dns: [{matchPattern: "*"}]}}]
              - toEndpoints: [{matchLabels: {app: dns}}]
                toPorts: [{ports: [{port: "54", protocol: SCTP}]}]`)}
`;

let bed: Testbed | undefined;
let state: ClusterState | undefined;
afterAll(() => bed?.close());

kernel('finding 1244: a DNS redirect of SCTP on real packets', () => {
  beforeAll(() => {
    state = scenarioStates(parseScenario(CLUSTER, 'dns-any-sctp.yaml'))[0];
    bed = new Testbed({ listen: new Set(['UDP:53', 'TCP:53', 'SCTP:53', 'SCTP:54']) });
  }, 60_000);

  it('fixed: 53/SCTP marked for the DNS proxy is dropped; 53/UDP and 53/TCP are redirected; 54/SCTP passes', () => {
    const decide = (protocol: FlowProtocol, port: number): { allowed: boolean; proxied: boolean } => {
      const d = (bed as Testbed).decide(state as ClusterState, { from: 'x/client', to: 'x/dns', port, protocol });
      return { allowed: d.allowed, proxied: d.proxied };
    };
    expect([decide('UDP', 53), decide('TCP', 53), decide('SCTP', 54), decide('SCTP', 53)]).toEqual([
      { allowed: true, proxied: true },
      { allowed: true, proxied: true },
      { allowed: true, proxied: false },
      { allowed: false, proxied: false },
    ]);
  });
});
