import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { Engine } from '../../src/engine/engine.js';
import { EngineDecider } from '../../src/harness/engine-decider.js';
import { decideFlow } from '../../src/naive/evaluator.js';
import { parseScenario } from '../../src/scenario/format.js';
import { runScenario, scenarioEngineOptions, type ScenarioRun } from '../../src/scenario/run.js';
import { CILIUM, k8sAllows, UPSTREAM, type Endpoint, type KCluster, type KPod, type NamedPort, type Proto } from './k8s-np.js';

/**
 * Differential test: random clusters and NetworkPolicies, run through distill's public scenario
 * path (parseScenario + runScenario, oracle and engine) and through the independent reader in
 * ./k8s-np.ts (Cilium mode, which distill follows). Every verdict must agree.
 * DISTILL_SEED replays a run; DISTILL_DIFF_RUNS sets the number of clusters (default 120).
 */
const NS = ['x', 'y', 'z'];
const LABEL_KEYS = ['app', 'tier'];
const LABEL_VALUES = ['a', 'b'];
const NAMED: readonly NamedPort[] = [
  { name: 'web', port: 80, protocol: 'TCP' }, { name: 'web', port: 8080, protocol: 'TCP' },
  { name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns', port: 53, protocol: 'TCP' },
  { name: 'sig', port: 9000, protocol: 'SCTP' }, { name: 'alt', port: 81, protocol: 'TCP' },
];
const PROBES: readonly { protocol: Proto; port: number }[] = [
  { protocol: 'TCP', port: 80 }, { protocol: 'TCP', port: 81 }, { protocol: 'TCP', port: 8080 },
  { protocol: 'UDP', port: 53 }, { protocol: 'TCP', port: 53 }, { protocol: 'SCTP', port: 9000 },
  { protocol: 'UDP', port: 80 }, { protocol: 'ICMP', port: 8 },
];
const EXTERNAL_IPS = ['10.0.1.200', '10.0.2.9', '192.0.2.1', 'fd00:10:1::c8', '2001:db8::9', '2001:db8:1::9', '::ffff:10.0.1.200', '::ffff:192.0.2.1'];

const labelsArb = fc.dictionary(fc.constantFrom(...LABEL_KEYS), fc.constantFrom(...LABEL_VALUES), { maxKeys: 2 });
const exprArb = fc.oneof(
  fc.record({ key: fc.constantFrom(...LABEL_KEYS, 'team'), operator: fc.constantFrom('In', 'NotIn'), values: fc.uniqueArray(fc.constantFrom(...LABEL_VALUES), { minLength: 1, maxLength: 2 }) }),
  fc.record({ key: fc.constantFrom(...LABEL_KEYS, 'team'), operator: fc.constantFrom('Exists', 'DoesNotExist') }),
);
const selectorArb = fc.oneof(
  fc.constant({}),
  fc.record({ matchLabels: labelsArb }),
  fc.record({ matchExpressions: fc.array(exprArb, { minLength: 1, maxLength: 2 }) }),
  fc.record({ matchLabels: labelsArb, matchExpressions: fc.array(exprArb, { maxLength: 1 }) }),
);
const nsSelectorArb = fc.oneof(
  selectorArb,
  fc.constantFrom(...NS).map((n) => ({ matchLabels: { 'kubernetes.io/metadata.name': n } })),
  fc.record({ matchLabels: fc.dictionary(fc.constant('team'), fc.constantFrom(...LABEL_VALUES), { maxKeys: 1 }) }),
  fc.record({ matchExpressions: fc.tuple(fc.record({ key: fc.constant('kubernetes.io/metadata.name'), operator: fc.constantFrom('In', 'NotIn'), values: fc.uniqueArray(fc.constantFrom(...NS), { minLength: 1, maxLength: 2 }) })) }),
);
const cidrArb = fc.constantFrom(
  { cidr: '10.0.0.0/16' }, { cidr: '10.0.1.0/24' }, { cidr: '10.0.0.0/8', except: ['10.0.1.0/24'] },
  { cidr: '10.0.1.200/32' }, { cidr: '0.0.0.0/0', except: ['10.0.0.0/8'] }, { cidr: '0.0.0.0/0' },
  { cidr: '10.0.1.0/24', except: ['10.0.1.128/25'] }, { cidr: '192.0.2.0/24' },
  { cidr: 'fd00:10:1::/64' }, { cidr: '::/0', except: ['fd00:10::/32'] }, { cidr: '2001:db8::/32', except: ['2001:db8::/64'] },
  { cidr: '2001:db8::9/128' }, { cidr: '::ffff:0:0/96' }, { cidr: '::/0' }, { cidr: 'fd00:10:1::c8/128' },
);
const peerArb = fc.oneof(
  fc.record({ podSelector: selectorArb }),
  fc.record({ namespaceSelector: nsSelectorArb }),
  fc.record({ podSelector: selectorArb, namespaceSelector: nsSelectorArb }),
  cidrArb.map((b) => ({ ipBlock: b })),
);
const portArb = fc.oneof(
  fc.record({ protocol: fc.constantFrom('TCP', 'UDP', 'SCTP') }, { requiredKeys: [] }),
  fc.record({ protocol: fc.constantFrom('TCP', 'UDP', 'SCTP'), port: fc.constantFrom(53, 80, 81, 8080, 9000) }, { requiredKeys: ['port'] }),
  fc.record({ protocol: fc.constantFrom('TCP', 'UDP'), port: fc.constantFrom(53, 79, 80), endPort: fc.constantFrom(80, 81, 8080) }, { requiredKeys: ['port', 'endPort'] }),
  fc.record({ protocol: fc.constantFrom('TCP', 'UDP', 'SCTP'), port: fc.constantFrom('web', 'dns', 'sig', 'alt', 'nope') }, { requiredKeys: ['port'] }),
);
const ruleArb = (peers: 'from' | 'to') => fc.record({
  [peers]: fc.oneof(fc.constant(undefined), fc.constant([]), fc.array(peerArb, { minLength: 1, maxLength: 2 })),
  ports: fc.oneof(fc.constant(undefined), fc.constant([]), fc.array(portArb, { minLength: 1, maxLength: 2 })),
});
const rulesArb = (peers: 'from' | 'to') => fc.oneof(fc.constant(undefined), fc.constant([]), fc.array(ruleArb(peers), { minLength: 1, maxLength: 2 }));
const policyArb = fc.record({
  ns: fc.constantFrom(...NS),
  podSelector: selectorArb,
  policyTypes: fc.constantFrom(undefined, ['Ingress'], ['Egress'], ['Ingress', 'Egress']),
  ingress: rulesArb('from'),
  egress: rulesArb('to'),
});
const podArb = fc.record({
  ns: fc.constantFrom(...NS),
  labels: labelsArb,
  ports: fc.uniqueArray(fc.constantFrom(...NAMED), { maxLength: 3, selector: (p) => `${p.name}/${p.protocol}` }),
  family: fc.constantFrom('v4', 'v4', 'v6', 'dual'),
});
const clusterArb = fc.record({
  nsLabels: fc.tuple(...NS.map(() => fc.dictionary(fc.constant('team'), fc.constantFrom(...LABEL_VALUES), { maxKeys: 1 }))),
  pods: fc.array(podArb, { minLength: 2, maxLength: 5 }),
  externals: fc.subarray(EXTERNAL_IPS, { minLength: 1 }),
  policies: fc.array(policyArb, { minLength: 1, maxLength: 4 }),
  /** A second step: relabel a pod and a namespace, delete a policy (indices taken modulo the lists). */
  churn: fc.record({ pod: fc.nat(), podLabels: labelsArb, ns: fc.constantFrom(...NS), nsLabels: fc.dictionary(fc.constant('team'), fc.constantFrom(...LABEL_VALUES), { maxKeys: 1 }), deletePolicy: fc.option(fc.nat()) }),
});
type Gen = typeof clusterArb extends fc.Arbitrary<infer T> ? T : never;

/** Drops undefined fields, so the YAML says exactly what a user would write. */
const clean = (o: Record<string, unknown>): Record<string, unknown> =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));

function scenarioText(g: Gen): string {
  const pods = g.pods.map((p, i) => ({
    name: `${p.ns}/p${i}`, labels: p.labels,
    ...(p.family === 'v4' ? { ip: `10.0.1.${10 + i}` } : p.family === 'v6' ? { ip: `fd00:10:1::${10 + i}` } : { ips: [`10.0.1.${10 + i}`, `fd00:10:1::${10 + i}`] }),
    ports: p.ports.map((q) => ({ name: q.name, port: q.port, protocol: q.protocol })),
  }));
  const policies = g.policies.map((p, i) => ({
    apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: `np${i}`, namespace: p.ns },
    spec: clean({
      podSelector: p.podSelector, policyTypes: p.policyTypes,
      ingress: p.ingress?.map((r) => clean(r)), egress: p.egress?.map((r) => clean(r)),
    }),
  }));
  const probes = PROBES.flatMap((pr) => [
    { ...pr },
    ...g.externals.flatMap((_, i) => [{ ...pr, from: `e${i}` }, { ...pr, to: `e${i}` }]),
  ]);
  return stringify({
    description: 'generated by test/independent/k8s-np.property.test.ts',
    namespaces: NS.map((n, i) => ({ name: n, labels: g.nsLabels[i] })),
    pods, externals: g.externals.map((ip, i) => ({ name: `e${i}`, ip })), policies, steps: [{ probes }, { changes: churnChanges(g), probes }],
  });
}

function churnChanges(g: Gen): unknown[] {
  const pi = g.churn.pod % g.pods.length;
  const pod = g.pods[pi];
  const changes: unknown[] = [
    { setPodLabels: { pod: `${pod?.ns ?? ''}/p${pi}`, labels: g.churn.podLabels } },
    { setNamespaceLabels: { namespace: g.churn.ns, labels: g.churn.nsLabels } },
  ];
  if (g.churn.deletePolicy !== null) {
    const i = g.churn.deletePolicy % g.policies.length;
    changes.push({ delete: { kind: 'NetworkPolicy', namespace: g.policies[i]?.ns, name: `np${i}` } });
  }
  return changes;
}

/** The independent reader's view of the same YAML text. */
interface Churn { setPodLabels?: { pod: string; labels: Record<string, string> }; setNamespaceLabels?: { namespace: string; labels: Record<string, string> }; delete?: { namespace: string; name: string } }
function readCluster(text: string, step: number): { cluster: KCluster; endpoint: (name: string) => Endpoint } {
  const doc = parse(text) as { namespaces: { name: string; labels: Record<string, string> }[]; pods: { name: string; labels: Record<string, string>; ip?: string; ips?: string[]; ports: NamedPort[] }[]; externals: { name: string; ip: string }[]; policies: { metadata: { namespace: string; name: string } }[]; steps: { changes?: Churn[] }[] };
  let pods: KPod[] = doc.pods.map((p) => {
    const [namespace = '', name = ''] = p.name.split('/');
    return { namespace, name, ip: p.ip ?? p.ips?.[0] ?? '', ips: p.ips ?? [p.ip ?? ''], labels: p.labels, ports: p.ports };
  });
  const namespaces = new Map(doc.namespaces.map((n) => [n.name, n.labels]));
  let policies = doc.policies;
  for (const c of doc.steps.slice(0, step + 1).flatMap((s) => s.changes ?? [])) {
    const relabel = c.setPodLabels;
    if (relabel) pods = pods.map((p) => (`${p.namespace}/${p.name}` === relabel.pod ? { ...p, labels: relabel.labels } : p));
    if (c.setNamespaceLabels) namespaces.set(c.setNamespaceLabels.namespace, c.setNamespaceLabels.labels);
    const del = c.delete;
    if (del) policies = policies.filter((p) => p.metadata.namespace !== del.namespace || p.metadata.name !== del.name);
  }
  const cluster: KCluster = { namespaces, pods, externals: doc.externals, policies };
  const endpoint = (name: string): Endpoint => {
    const pod = pods.find((p) => `${p.namespace}/${p.name}` === name);
    if (pod) return { pod };
    const external = doc.externals.find((e) => e.name === name);
    if (!external) throw new Error(`unknown endpoint ${name}`);
    return { external };
  };
  return { cluster, endpoint };
}

/** K8SNP_MODE=upstream|ipblock|namedports|lastwins explores the readings distill deliberately does not follow. */
const MODE = ((m) => (m === 'upstream' ? UPSTREAM : m === 'ipblock' ? { ...CILIUM, ipBlockSkipsPods: false } : m === 'namedports' ? { ...CILIUM, egressNamedPortsPerIdentity: false } : m === 'lastwins' ? { ...CILIUM, lastNamedPortWins: false } : CILIUM))(process.env.K8SNP_MODE);

function disagreements(text: string, run: ScenarioRun): string[] {
  const out: string[] = [];
  const views = run.steps.map((s) => readCluster(text, s.step));
  for (const r of run.steps.flatMap((s) => s.results)) {
    const { cluster, endpoint } = views[r.step] ?? readCluster(text, r.step);
    const want = k8sAllows(cluster, { src: endpoint(r.from), dst: endpoint(r.to), protocol: r.protocol.toUpperCase() as Proto, port: r.port }, MODE);
    if (want !== r.allowed) out.push(`step ${r.step} ${r.from}->${r.to} ${r.protocol}/${r.port}: distill ${r.allowed ? 'allow' : 'deny'}, k8s-np ${want ? 'allow' : 'deny'}`);
  }
  return out;
}

const RUNS = Number(process.env.DISTILL_DIFF_RUNS ?? 120);

describe('independent NetworkPolicy reader vs distill', () => {
  it('agrees on every flow of random clusters', { timeout: Math.max(60_000, RUNS * 300) }, () => {
    const seed = process.env.DISTILL_SEED === undefined ? undefined : Number(process.env.DISTILL_SEED);
    fc.assert(
      fc.property(clusterArb, (g) => {
        const text = scenarioText(g);
        const scenario = parseScenario(text, 'generated.yaml');
        const naive = runScenario(scenario, decideFlow);
        const engine = runScenario(scenario, new EngineDecider(new Engine(scenarioEngineOptions(scenario))).decide);
        expect(disagreements(text, naive), `oracle\n${text}`).toEqual([]);
        expect(disagreements(text, engine), `engine\n${text}`).toEqual([]);
      }),
      { numRuns: RUNS, ...(seed === undefined ? {} : { seed }) },
    );
  });
});
