import { describe, expect, it } from 'vitest';
import { decideFlow } from '../src/naive/evaluator.js';
import { parseManifest } from '../src/policy/manifest.js';
import { parseScenario } from '../src/scenario/format.js';
import { runScenario } from '../src/scenario/run.js';
import { loadYaml } from '../src/policy/yaml.js';

const cnp = (spec: string, name = 'p'): unknown =>
  loadYaml(`apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: ${name}}\nspec:\n${spec.replace(/^/gm, '  ')}`, 't.yaml');
const read = (spec: string) => parseManifest(cnp(spec), 't.yaml');
const SUBJECT = 'tier: Admin\npriority: 1\nsubject: {namespaces: {}}\n';

describe('ClusterNetworkPolicy reader', () => {
  it('flattens tier, priority, subject and ordered rules', () => {
    const p = read(`${SUBJECT}ingress:\n- {name: a, action: Deny, from: [{pods: {namespaceSelector: {matchLabels: {x: y}}, podSelector: {}}}], protocols: [{tcp: {destinationPort: {range: {start: 80, end: 90}}}}, {destinationNamedPort: dns}]}\negress:\n- {action: Accept, to: [{networks: [10.0.0.0/8]}]}`);
    expect(p.rules).toEqual([]);
    expect(p.enforcements).toEqual([]);
    expect(p.tiered?.tier).toBe('Admin');
    expect(p.tiered?.rules.map((r) => [r.direction, r.index, r.action, r.name ?? '-', r.path])).toEqual([
      ['ingress', 0, 'Deny', 'a', 'spec.ingress[0]'],
      ['egress', 0, 'Accept', '-', 'spec.egress[0]'],
    ]);
    expect(p.tiered?.rules[0]?.protocols).toEqual([{ kind: 'range', protocol: 'TCP', from: 80, to: 90 }, { kind: 'named', name: 'dns' }]);
  });
  it.each([
    ['tier: Middle\npriority: 1\nsubject: {namespaces: {}}', 'spec.tier'],
    ['tier: Admin\npriority: 1001\nsubject: {namespaces: {}}', 'spec.priority'],
    ['tier: Admin\nsubject: {namespaces: {}}', 'spec.priority: is required'],
    ['tier: Admin\npriority: 1\nsubject: {namespaces: {}, pods: {podSelector: {}}}', 'spec.subject: exactly one of namespaces, pods must be set (got namespaces and pods)'],
    [`${SUBJECT}ingress: [{action: Deny, from: [{networks: [0.0.0.0/0]}]}]`, 'spec.ingress[0].from[0].networks: "networks" is an egress peer'],
    [`${SUBJECT}ingress: [{action: Deny, from: [{nodes: {}}]}]`, 'spec.ingress[0].from[0].nodes: "nodes" is an egress peer'],
    [`${SUBJECT}egress: [{action: Deny, to: [{nodes: {}}], protocols: [{destinationNamedPort: web}]}]`, 'spec.egress[0].protocols: destinationNamedPort cannot be used with a nodes peer'],
    [`${SUBJECT}egress: [{action: Deny, to: [{nodes: {matchLabels: {"k8s:os": linux}}}]}]`, 'spec.egress[0].to[0].nodes'],
    [`${SUBJECT}egress: [{action: Deny, to: [{domainNames: [a.io]}]}]`, 'spec.egress[0].action: is Deny: a domainNames peer in a Deny rule is not supported by distill'],
    [`${SUBJECT}egress: [{action: Deny, to: [{namespaces: {}, networks: [1.0.0.0/8]}]}]`, 'spec.egress[0].to[0]: exactly one peer field may be set'],
    [`${SUBJECT}egress: [{action: Allow, to: [{namespaces: {}}]}]`, 'spec.egress[0].action'],
    [`${SUBJECT}egress: [{action: Deny, to: []}]`, 'spec.egress[0].to: must have at least 1 item'],
    [`${SUBJECT}egress: [{action: Deny, to: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {range: {start: 90, end: 80}}}}]}]`, 'spec.egress[0].protocols[0].tcp.destinationPort.range: start (90) must be less than end (80)'],
    [`${SUBJECT}egress: [{action: Deny, to: [{namespaces: {}}], protocols: [{tcp: {}}]}]`, 'spec.egress[0].protocols[0].tcp.destinationPort: is required'],
    [`${SUBJECT}egress: [{action: Deny, to: [{networks: [1.0.0.0/8]}], protocols: [{destinationNamedPort: web}]}]`, 'spec.egress[0].protocols: destinationNamedPort with a networks peer is not supported by distill'],
    [`${SUBJECT}ingress: [${Array.from({ length: 26 }, () => '{action: Deny, from: [{namespaces: {}}]}').join(', ')}]`, 'spec.ingress: has 26 rules; the API allows at most 25'],
  ])('refuses %j naming the field', (spec, message) => {
    expect(() => read(spec)).toThrow(message);
  });
  it('refuses other apiVersions', () => {
    const doc = cnp(SUBJECT) as Record<string, unknown>;
    expect(() => parseManifest({ ...doc, apiVersion: 'policy.networking.k8s.io/v1alpha1' }, 't.yaml')).toThrow('apiVersion: "policy.networking.k8s.io/v1alpha1" is not the apiVersion of ClusterNetworkPolicy');
  });
  it('reads a peer with no known field as failing closed, with a warning', () => {
    const p = read(`${SUBJECT}egress: [{action: Deny, to: [{services: {}}]}]`);
    expect(p.tiered?.rules[0]?.peers).toEqual([{ kind: 'unknown', fields: ['services'] }]);
    expect(p.warnings?.[0]?.detail).toMatch(/fails closed/);
  });
});

const CLUSTER = `
namespaces: [{name: a, labels: {team: a}}, {name: b, labels: {team: b}}]
pods:
  - {name: a/x, labels: {app: x}, ip: 10.244.1.1, ports: [{name: web, port: 80, protocol: TCP}]}
  - {name: b/y, labels: {app: y}, ip: 10.244.2.1, ports: [{name: web, port: 8080, protocol: TCP}]}
externals: [{name: w, ip: 20.0.0.1}]
`;
const policy = (name: string, tier: string, priority: number, body: string): string =>
  `  - apiVersion: policy.networking.k8s.io/v1alpha2\n    kind: ClusterNetworkPolicy\n    metadata: {name: ${name}}\n    spec:\n      tier: ${tier}\n      priority: ${priority}\n      subject: {namespaces: {matchLabels: {team: a}}}\n${body.replace(/^/gm, '      ')}\n`;
const np = (ns: string, types: string) => `  - apiVersion: networking.k8s.io/v1\n    kind: NetworkPolicy\n    metadata: {name: np, namespace: ${ns}}\n    spec: {podSelector: {}, policyTypes: [${types}]}\n`;

/** a/x's verdicts: egress to b/y:80, egress to b/y:8080, egress to w, ingress from b/y:80. */
function verdicts(policies: string): string {
  const s = parseScenario(`${CLUSTER}policies:\n${policies}steps:\n  - probes:\n    - {from: a/x, to: b/y, port: 80}\n    - {from: a/x, to: b/y, port: 8080}\n    - {from: a/x, to: w, port: 443}\n    - {from: b/y, to: a/x, port: 80}\n`, 's.yaml');
  return runScenario(s, decideFlow).steps[0]!.results.map((r) => (r.allowed ? '.' : 'X')).join('');
}

describe('the oracle walks the tiers literally', () => {
  it('networks match pod addresses too; rules go in order, first match decides', () => {
    expect(verdicts(policy('p', 'Admin', 1, 'egress: [{action: Deny, to: [{networks: [0.0.0.0/0]}]}]'))).toBe('XXX.');
    expect(verdicts(policy('p', 'Admin', 1, 'egress:\n- {action: Accept, to: [{networks: [10.244.2.1/32]}], protocols: [{tcp: {destinationPort: {number: 80}}}]}\n- {action: Deny, to: [{networks: [0.0.0.0/0]}]}'))).toBe('.XX.');
  });
  it('named ports resolve against the destination pod', () => {
    expect(verdicts(policy('p', 'Admin', 1, 'egress:\n- {action: Accept, to: [{namespaces: {}}], protocols: [{destinationNamedPort: web}]}\n- {action: Deny, to: [{namespaces: {}}]}'))).toBe('X...');
  });
  it('an unknown peer fails closed: Accept matches nothing, Deny everything', () => {
    expect(verdicts(policy('p', 'Admin', 1, 'egress:\n- {action: Accept, to: [{services: {}}]}\n- {action: Deny, to: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 80}}}]}'))).toBe('X...');
    expect(verdicts(policy('p', 'Admin', 1, 'egress: [{action: Deny, to: [{services: {}}]}]'))).toBe('XXX.');
    expect(verdicts(policy('p', 'Baseline', 1, 'egress: [{action: Pass, to: [{services: {}}]}]'))).toBe('XXX.');
  });
  it('lower priority first; Admin Accept beats a NetworkPolicy default deny', () => {
    const deny = policy('d', 'Admin', 5, 'egress: [{action: Deny, to: [{namespaces: {}}]}]');
    expect(verdicts(deny + policy('acc', 'Admin', 4, 'egress: [{action: Accept, to: [{namespaces: {}}]}]'))).toBe('....');
    expect(verdicts(deny + policy('acc', 'Admin', 6, 'egress: [{action: Accept, to: [{namespaces: {}}]}]'))).toBe('XX..');
    expect(verdicts(policy('acc', 'Admin', 6, 'egress: [{action: Accept, to: [{namespaces: {}}]}]') + np('a', 'Egress'))).toBe('..X.');
  });
  it('same priority: Deny, then Pass, then Accept, whatever the names', () => {
    for (const [n1, n2] of [['a1', 'z9'], ['z9', 'a1']] as const) {
      expect(verdicts(policy(n1, 'Admin', 3, 'egress: [{action: Accept, to: [{namespaces: {}}]}]') + policy(n2, 'Admin', 3, 'egress: [{action: Deny, to: [{namespaces: {}}]}]'))).toBe('XX..');
      const passAndAccept = policy(n1, 'Admin', 3, 'egress: [{action: Accept, to: [{namespaces: {}}]}]') + policy(n2, 'Admin', 3, 'egress: [{action: Pass, to: [{namespaces: {}}]}]');
      expect(verdicts(passAndAccept + policy('b', 'Baseline', 1, 'egress: [{action: Deny, to: [{namespaces: {}}]}]'))).toBe('XX..');
    }
  });
  it('Pass goes to the NetworkPolicy tier, which is final per direction for the pods it selects; Baseline otherwise', () => {
    const pass = policy('pass', 'Admin', 1, 'egress: [{action: Pass, to: [{namespaces: {}}]}]\ningress: [{action: Pass, from: [{namespaces: {}}]}]');
    const base = policy('base', 'Baseline', 1, 'egress: [{action: Deny, to: [{namespaces: {}}]}]\ningress: [{action: Deny, from: [{namespaces: {}}]}]');
    expect(verdicts(pass + base)).toBe('XX.X');
    // An ingress-only NetworkPolicy selects a/x for ingress: it decides ingress (default deny), Baseline still decides egress.
    expect(verdicts(pass + base + np('a', 'Ingress'))).toBe('XX.X');
    expect(verdicts(base + np('a', 'Egress'))).toBe('XXXX');
    const allowAll = `  - apiVersion: networking.k8s.io/v1\n    kind: NetworkPolicy\n    metadata: {name: all, namespace: a}\n    spec: {podSelector: {}, policyTypes: [Egress, Ingress], egress: [{}], ingress: [{}]}\n`;
    expect(verdicts(pass + base + allowAll)).toBe('....');
    // A Cilium allow that does not isolate (enableDefaultDeny: false) still decides what it allows.
    const cnpAllow = `  - apiVersion: cilium.io/v2\n    kind: CiliumNetworkPolicy\n    metadata: {name: c, namespace: a}\n    spec:\n      endpointSelector: {}\n      enableDefaultDeny: {egress: false}\n      egress: [{toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]\n`;
    expect(verdicts(base + cnpAllow)).toBe('.X.X');
    // A Baseline Pass reaches default allow.
    expect(verdicts(policy('bp', 'Baseline', 0, 'egress: [{action: Pass, to: [{namespaces: {}}]}]') + base)).toBe('...X');
  });
  it('an egress Accept leaves the destination ingress to decide', () => {
    const s = parseScenario(`${CLUSTER}policies:\n${policy('acc', 'Admin', 1, 'egress: [{action: Accept, to: [{namespaces: {}}]}]')}${np('b', 'Ingress')}steps:\n  - probes: [{from: a/x, to: b/y, port: 80}]\n`, 's.yaml');
    const r = runScenario(s, decideFlow).steps[0]!.results[0]!;
    expect([r.allowed, r.decision.egress?.allowed, r.decision.egress?.tier?.rule, r.decision.ingress?.allowed]).toEqual([false, true, 'spec.egress[0]', false]);
  });
  it('names the tier, policy, priority and rule that decided', () => {
    const s = parseScenario(`${CLUSTER}policies:\n${policy('guard', 'Admin', 7, 'egress: [{name: no-b, action: Deny, to: [{namespaces: {matchLabels: {team: b}}}]}]')}steps:\n  - probes: [{from: a/x, to: b/y, port: 80}]\n`, 's.yaml');
    const r = runScenario(s, decideFlow).steps[0]!.results[0]!;
    expect(r.decision.egress?.tier).toEqual({ tier: 'Admin', policy: 'guard', priority: 7, rule: 'no-b', path: 'spec.egress[0]', action: 'Deny' });
    expect(r.decision.egress?.deniedBy).toEqual([{ policy: { kind: 'ClusterNetworkPolicy', name: 'guard' }, path: 'spec.egress[0]' }]);
  });
});

describe('scenarios with ClusterNetworkPolicies', () => {
  it('delete them by kind and name (cluster-scoped: no namespace)', () => {
    const deny = policy('guard', 'Admin', 7, 'egress: [{action: Deny, to: [{namespaces: {}}]}]');
    const s = parseScenario(`${CLUSTER}policies:\n${deny}steps:\n  - probes: [{from: a/x, to: b/y, port: 80}]\n  - changes: [{delete: {kind: ClusterNetworkPolicy, name: guard}}]\n    probes: [{from: a/x, to: b/y, port: 80}]\n`, 's.yaml');
    expect(runScenario(s, decideFlow).steps.map((st) => st.results[0]!.allowed)).toEqual([false, true]);
    expect(() => parseScenario(`${CLUSTER}steps:\n  - changes: [{delete: {kind: ClusterNetworkPolicy, namespace: a, name: guard}}]\n`, 's.yaml')).toThrow('steps[0].changes[0].delete.namespace: a ClusterNetworkPolicy is cluster-scoped');
  });
  it('warn about two policies of one tier with one priority', () => {
    const two = policy('one', 'Admin', 7, 'egress: []') + policy('two', 'Admin', 7, 'egress: []') + policy('three', 'Baseline', 7, 'egress: []');
    const s = parseScenario(`${CLUSTER}policies:\n${two}`, 's.yaml');
    expect(s.warnings).toEqual([expect.stringMatching(/^s\.yaml ClusterNetworkPolicy\/two: has the same Admin priority \(7\) as ClusterNetworkPolicy\/one/)]);
    expect(parseScenario(`${CLUSTER}policies:\n${policy('one', 'Admin', 7, 'egress: []') + policy('two', 'Admin', 8, 'egress: []')}`, 's.yaml').warnings).toEqual([]);
  });
});

describe('replay traces', () => {
  it('accept ClusterNetworkPolicies (Pass and networks peers included) and read a delete ref as cluster-scoped', async () => {
    const { checkTrace, parseTrace } = await import('../src/churn/trace.js');
    const head = '{"distillTrace":1,"profile":"t","seed":1}\n';
    const manifest = (tier: string, ingress: unknown[] = []) => ({ apiVersion: 'policy.networking.k8s.io/v1alpha2', kind: 'ClusterNetworkPolicy', metadata: { name: 'g' }, spec: { tier, priority: 1, subject: { namespaces: {} }, ingress } });
    expect(parseTrace(`${head}${JSON.stringify({ type: 'upsertPolicy', manifest: manifest('Admin') })}\n`, 't.jsonl').items).toHaveLength(1);
    expect(() => checkTrace(parseTrace(`${head}${JSON.stringify({ type: 'upsertPolicy', manifest: manifest('Baseline') })}\n`, 't.jsonl'))).not.toThrow();
    const pass = [{ name: 'skip', action: 'Pass', from: [{ namespaces: {} }] }];
    expect(() => checkTrace(parseTrace(`${head}${JSON.stringify({ type: 'upsertPolicy', manifest: manifest('Baseline', pass) })}\n`, 't.jsonl'))).not.toThrow();
    const networks = { ...manifest('Admin'), spec: { tier: 'Admin', priority: 1, subject: { namespaces: {} }, egress: [{ name: 'net', action: 'Deny', to: [{ networks: ['10.0.0.0/8'] }] }] } };
    expect(() => checkTrace(parseTrace(`${head}${JSON.stringify({ type: 'upsertPolicy', manifest: networks })}\n`, 't.jsonl'))).not.toThrow();
    expect(() => parseTrace(`${head}{"type":"deletePolicy","ref":{"kind":"ClusterNetworkPolicy","namespace":"a","name":"g"}}\n`, 't.jsonl')).toThrow('a clusterwide policy has no namespace');
  });
});
