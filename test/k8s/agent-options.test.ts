import { describe, expect, it } from 'vitest';
import { parseManifest } from '../../src/policy/manifest.js';
import { parseScenario } from '../../src/scenario/format.js';
import { agentVerdicts } from './agent-verdicts.js';

/**
 * Cilium's agent options that change how a Cilium policy reads (attack findings 714, 715,
 * docs/attack-findings-15f.md): enable-l7-proxy and enable-icmp-rules off make Cilium refuse a
 * policy using them (IngressRule.Validate / EgressRule.Validate / *DenyRule.Validate), and
 * enable-non-default-deny-policies off makes every rule isolate its direction (Rule.Sanitize,
 * evaluateDefaultDenyForRule). Before, distill read every policy at the defaults whatever the
 * cluster ran with: more open than Cilium with the last one off.
 */
type Obj = Record<string, unknown>;
const server = { matchLabels: { app: 'server' } };
const cnp = (spec: Obj): Obj => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: 'p', namespace: 'x', resourceVersion: '10' }, spec });
const fromClient = (extra: Obj = {}): Obj => ({ fromEndpoints: [{ matchLabels: { app: 'client' } }], ...extra });
const http80 = { toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], rules: { http: [{ method: 'GET' }] } }] };
const SKIPPED = ['object skipped: it cannot be read'];

describe('enable-l7-proxy=false', () => {
  it('a Cilium policy with L7 rules is refused as Cilium refuses it; without L7 rules it reads', () => {
    expect(() => parseManifest(cnp({ endpointSelector: server, ingress: [fromClient(http80)] }), 't', { l7Proxy: false })).toThrow(/L7 policy is not supported since L7 proxy is not enabled/);
    // Go's L7Rules.IsEmpty is Len() == 0 (pkg/policy/api/l4.go), and countL7Rules skips empty rules: an empty
    // list is no L7 rule, so Cilium reads this as a plain allow of port 80 (finding 1766; `rules: {}` the CRD refuses, 1660).
    expect(() => parseManifest(cnp({ endpointSelector: server, egress: [{ toEntities: ['world'], toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }], rules: { http: [] } }] }] }), 't', { l7Proxy: false })).not.toThrow();
    expect(() => parseManifest(cnp({ endpointSelector: server, ingress: [fromClient({ toPorts: [{ ports: [{ port: '80', protocol: 'TCP' }] }] })] }), 't', { l7Proxy: false })).not.toThrow();
    expect(() => parseManifest(cnp({ endpointSelector: server, ingress: [fromClient(http80)] }), 't')).not.toThrow();
  });
  it('the agent skips it (as Cilium does) rather than enforcing allows the cluster never enforces', () => {
    expect(agentVerdicts(cnp({ endpointSelector: server, ingress: [fromClient(http80)] }), [], { l7Proxy: false }).warn).toEqual(SKIPPED);
  });
});

describe('enable-icmp-rules=false', () => {
  it('a Cilium policy with icmps (allow or deny) is refused', () => {
    const icmp = { icmps: [{ fields: [{ type: 8 }] }] };
    expect(() => parseManifest(cnp({ endpointSelector: server, ingress: [fromClient(icmp)] }), 't', { icmpRules: false })).toThrow(/ICMP rules can only be applied when the "enable-icmp-rules" flag is set/);
    expect(() => parseManifest(cnp({ endpointSelector: server, egressDeny: [{ toEntities: ['world'], ...icmp }] }), 't', { icmpRules: false })).toThrow(/enable-icmp-rules/);
    expect(() => parseManifest(cnp({ endpointSelector: server, ingress: [fromClient(icmp)] }), 't')).not.toThrow();
  });
});

describe('enable-non-default-deny-policies=false', () => {
  const defaultAllow = cnp({ endpointSelector: server, enableDefaultDeny: { ingress: false, egress: false }, ingress: [fromClient()] });
  it('enableDefaultDeny false is ignored: the rule isolates its direction (only the client in); a direction without rules stays open', () => {
    const off = agentVerdicts(defaultAllow, [], { nonDefaultDenyPolicies: false });
    expect([off.verdict('client', 'ingress'), off.verdict('other', 'ingress'), off.verdict('other', 'egress')]).toEqual(['allow', 'deny', 'allow']);
    const on = agentVerdicts(defaultAllow);
    expect([on.verdict('client', 'ingress'), on.verdict('other', 'ingress'), on.verdict('other', 'egress')]).toEqual(['allow', 'allow', 'allow']);
  });
  it('scenarios take the options by name (l7Proxy, icmpRules, nonDefaultDenyPolicies), and only booleans', () => {
    const text = (v: string): string => `nonDefaultDenyPolicies: ${v}\nnamespaces: [{name: x}]\npods: [{name: x/a, labels: {app: server}}]\npolicies:\n  - apiVersion: cilium.io/v2\n    kind: CiliumNetworkPolicy\n    metadata: {name: p, namespace: x}\n    spec: {endpointSelector: {}, enableDefaultDeny: {ingress: false}, ingress: [{fromEndpoints: [{}]}]}\nsteps: []\n`;
    const enforcementsOf = (v: string): number => {
      const change = parseScenario(text(v), 's.yaml').setup.find((c) => c.op === 'apply');
      return change?.op === 'apply' ? change.policy.enforcements.length : -1;
    };
    expect([enforcementsOf('false'), enforcementsOf('true')]).toEqual([1, 0]);
    expect(() => parseScenario(text('"no"'), 's.yaml')).toThrow(/nonDefaultDenyPolicies/);
  });
});
