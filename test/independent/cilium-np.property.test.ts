import { readdirSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { Engine } from '../../src/engine/engine.js';
import { EngineDecider } from '../../src/harness/engine-decider.js';
import { decideFlow } from '../../src/naive/evaluator.js';
import { parseScenario } from '../../src/scenario/format.js';
import { runScenario, scenarioEngineOptions } from '../../src/scenario/run.js';
import { ciliumRefusal, decide, readCluster, readProbeRequest } from './cilium-np.js';

/**
 * Differential test: distill (oracle and engine, through the public scenario path) against the independent
 * reader in cilium-np.ts, on generated CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy (L3/L4).
 * DISTILL_SEED reproduces a run, DISTILL_DIFF_RUNS sets the number of scenarios (default 150).
 */
const SEED = Number(process.env.DISTILL_SEED ?? 4200);
const RUNS = Number(process.env.DISTILL_DIFF_RUNS ?? 150);

const NAMESPACES = ['a', 'b'];
const LABEL_KEYS = ['app', 'k8s:app', 'any:app', 'tier'];
const VALUES: Record<string, string[]> = { app: ['x', 'y'], tier: ['fe', 'be'] };
const bare = (k: string): string => k.slice(k.indexOf(':') + 1);

const podArb = fc.record({
  ns: fc.constantFrom(...NAMESPACES),
  app: fc.option(fc.constantFrom('x', 'y'), { nil: undefined }),
  tier: fc.option(fc.constantFrom('fe', 'be'), { nil: undefined }),
  web: fc.constantFrom(undefined, 80, 80, 8080),
});

const selectorArb = fc.oneof(
  fc.constant({}),
  fc.constantFrom('reserved:host', 'reserved:world', 'reserved:world-ipv4', 'reserved:world-ipv6', 'reserved:remote-node').map((k) => ({ matchLabels: { [k]: '' } })),
  fc.record({ matchLabels: fc.dictionary(fc.constantFrom(...LABEL_KEYS, 'io.kubernetes.pod.namespace', 'k8s:io.kubernetes.pod.namespace', 'io.cilium.k8s.namespace.labels.team'), fc.constant(''), { minKeys: 1, maxKeys: 2 }) }).map(({ matchLabels }) => ({
    matchLabels: Object.fromEntries(Object.keys(matchLabels).map((k) => [k, bare(k) === 'io.kubernetes.pod.namespace' ? (k.length % 2 ? 'a' : 'b') : bare(k) === 'io.cilium.k8s.namespace.labels.team' ? 'red' : (VALUES[bare(k)] ?? ['x'])[k.length % 2] ?? 'x'])),
  })),
  fc.record({
    key: fc.constantFrom('io.kubernetes.pod.namespace', 'k8s:io.kubernetes.pod.namespace', 'io.cilium.k8s.namespace.labels.team', 'k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name'),
    operator: fc.constantFrom('In', 'NotIn', 'Exists', 'DoesNotExist'),
    v: fc.constantFrom('a', 'b', 'red'),
  }).map(({ key, operator, v }) => ({ matchExpressions: [operator === 'In' || operator === 'NotIn' ? { key, operator, values: [v] } : { key, operator }] })),
  fc.record({
    key: fc.constantFrom(...LABEL_KEYS),
    operator: fc.constantFrom('In', 'NotIn', 'Exists', 'DoesNotExist'),
    v: fc.constantFrom('x', 'y', 'fe', 'be'),
  }).map(({ key, operator, v }) => ({ matchExpressions: [operator === 'In' || operator === 'NotIn' ? { key, operator, values: [v] } : { key, operator }] })),
);

const portArb = fc.oneof(
  fc.record({ port: fc.constantFrom('80', '53', '0', '8080'), protocol: fc.constantFrom(undefined, 'TCP', 'UDP', 'SCTP', 'ANY') }),
  fc.record({ port: fc.constantFrom('0', '53', '79'), endPort: fc.constantFrom(80, 100, 50), protocol: fc.constantFrom(undefined, 'TCP', 'UDP', 'ANY') }),
  fc.constantFrom({ port: 'web', protocol: 'TCP' }, { port: 'web' }, { port: 'WEB', protocol: 'UDP' }),
).map((p) => Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined)));

const toPortsArb = fc.oneof(
  { weight: 3, arbitrary: fc.constant(undefined) },
  { weight: 3, arbitrary: fc.array(portArb, { minLength: 1, maxLength: 2 }).map((ports) => [{ ports }]) },
  { weight: 1, arbitrary: fc.constantFrom([], [{}], [{ ports: [] }]) },
);

function ruleArb(dir: 'from' | 'to') {
  const valid = fc.oneof(
    fc.constant({}),
    fc.array(selectorArb, { maxLength: 2 }).map((s) => ({ [`${dir}Endpoints`]: s })),
    fc.uniqueArray(fc.constantFrom('all', 'world', 'cluster', 'host', 'remote-node', 'none', 'health'), { maxLength: 2 }).map((e) => ({ [`${dir}Entities`]: e })),
    fc.uniqueArray(fc.constantFrom('8.8.8.0/24', '0.0.0.0/0', '192.0.2.0/24', '10.0.0.0/8', '192.168.1.0/24', '2001:db8::/32', '::/0', '::ffff:0:0/96', '2001:4860::8888/128'), { maxLength: 2 }).map((c) => ({ [`${dir}CIDR`]: c })),
    fc.constantFrom(['0.0.0.0/0', '192.0.2.0/24'], ['192.0.0.0/8', '192.0.2.0/24'], ['::/0', '2001:db8::/32'], ['2001:db8::/32', '2001:db8:1::/48']).map(([cidr, except]) => ({ [`${dir}CIDRSet`]: [{ cidr, except: [except] }] })),
  );
  // outside the CRD's Entity enum (ciliumRefusal): the scenario must be refused
  const refusedEntities = fc.constantFrom(['world-ipv4'], ['world-ipv6'], ['world', 'world-ipv6']).map((e) => ({ [`${dir}Entities`]: e }));
  const peer = fc.oneof({ weight: 120, arbitrary: valid }, { weight: 1, arbitrary: refusedEntities });
  return fc.tuple(peer, toPortsArb).map(([p, toPorts]) => (toPorts === undefined ? p : { ...p, toPorts }));
}

const rulesArb = (dir: 'from' | 'to') => fc.oneof(
  { weight: 3, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: fc.constant([]) },
  { weight: 4, arbitrary: fc.array(ruleArb(dir), { minLength: 1, maxLength: 2 }) },
);

const specArb = fc.record({
  endpointSelector: selectorArb,
  ingress: rulesArb('from'),
  egress: rulesArb('to'),
  ingressDeny: fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.array(ruleArb('from'), { minLength: 1, maxLength: 1 }) }),
  egressDeny: fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.array(ruleArb('to'), { minLength: 1, maxLength: 1 }) }),
  enableDefaultDeny: fc.option(fc.record({ ingress: fc.option(fc.boolean(), { nil: undefined }), egress: fc.option(fc.boolean(), { nil: undefined }) }), { nil: undefined }),
}).map((s) => JSON.parse(JSON.stringify(s)) as Record<string, unknown>);

const policyArb = fc.record({ clusterwide: fc.boolean(), ns: fc.constantFrom(...NAMESPACES), spec: specArb, specs: fc.boolean(), spec2: specArb });

const scenarioArb = fc.record({
  teams: fc.tuple(fc.boolean(), fc.boolean()),
  pods: fc.array(podArb, { minLength: 2, maxLength: 5 }),
  policies: fc.array(policyArb, { minLength: 1, maxLength: 3 }),
  always: fc.boolean(),
  /** The agent's stack mode (finding 2050): which one world label an outside address carries. */
  stack: fc.constantFrom('single', 'dual'),
  /** A second step: relabel a pod and a namespace, replace or delete a policy, delete node n2 (its address becomes world). */
  churn: fc.record({ pod: fc.nat(), app: fc.option(fc.constantFrom('x', 'y'), { nil: undefined }), tier: fc.option(fc.constantFrom('fe', 'be'), { nil: undefined }), team: fc.boolean(), policy: fc.nat(), replace: fc.option(specArb, { nil: undefined }), deleteNode: fc.boolean() }),
});

type Generated = typeof scenarioArb extends fc.Arbitrary<infer T> ? T : never;

/** Deny rules take `ports` only (no L7), and distill, as Cilium, refuses deny rules' L7 parts: nothing to strip. */
function scenarioYaml(g: Generated): string {
  const doc = {
    description: 'generated (test/independent/cilium-np.property.test.ts)',
    allowLocalhost: g.always ? 'always' : 'policy',
    stack: g.stack,
    namespaces: NAMESPACES.map((name, i) => ({ name, labels: g.teams[i] ? { team: 'red' } : {} })),
    pods: g.pods.map((p, i) => ({
      name: `${p.ns}/p${i}`,
      ...(i % 2 === 0 ? { ip: `10.0.0.${i + 1}` } : { ips: [`10.0.0.${i + 1}`, `fd00::${i + 1}`] }),
      labels: { ...(p.app === undefined ? {} : { app: p.app }), ...(p.tier === undefined ? {} : { tier: p.tier }) },
      ...(p.web === undefined ? {} : { ports: [{ name: 'web', port: p.web, protocol: 'TCP' }] }),
    })),
    externals: [{ name: 'e-dns', ip: '8.8.8.8' }, { name: 'e-doc', ip: '192.0.2.10' }, { name: 'e-other', ip: '192.1.1.1' }, ...EXTERNALS_V6],
    nodes: [{ name: 'n1', ips: ['192.168.1.1'], local: true }, { name: 'n2', ips: ['192.168.1.2'] }],
    policies: g.policies.map((p, i) => ({
      apiVersion: 'cilium.io/v2',
      kind: p.clusterwide ? 'CiliumClusterwideNetworkPolicy' : 'CiliumNetworkPolicy',
      metadata: p.clusterwide ? { name: `p${i}` } : { name: `p${i}`, namespace: p.ns },
      ...(p.specs ? { specs: [p.spec, p.spec2] } : { spec: p.spec }),
    })),
    steps: [{ probes: PROBES }, { changes: churnChanges(g), probes: g.churn.deleteNode ? [...PROBES.filter((p) => !JSON.stringify(p).includes('"n2"')), ...FLOWS.flatMap((f) => [{ ...f, from: 'e-n2' }, { ...f, to: 'e-n2' }])] : PROBES }],
  };
  return stringify(doc);
}

function churnChanges(g: Generated): unknown[] {
  const pi = g.churn.pod % g.pods.length;
  const qi = g.churn.policy % g.policies.length;
  const p = g.policies[qi];
  const labels = { ...(g.churn.app === undefined ? {} : { app: g.churn.app }), ...(g.churn.tier === undefined ? {} : { tier: g.churn.tier }) };
  const kind = p?.clusterwide ? 'CiliumClusterwideNetworkPolicy' : 'CiliumNetworkPolicy';
  const metadata = p?.clusterwide ? { name: `p${qi}` } : { name: `p${qi}`, namespace: p?.ns };
  return [
    { setPodLabels: { pod: `${g.pods[pi]?.ns ?? ''}/p${pi}`, labels } },
    { setNamespaceLabels: { namespace: 'a', labels: g.churn.team ? { team: 'red' } : {} } },
    g.churn.replace === undefined ? { delete: { kind, ...metadata } } : { apply: { apiVersion: 'cilium.io/v2', kind, metadata, spec: g.churn.replace } },
    ...(g.churn.deleteNode ? [{ deleteNode: 'n2' }, { addExternal: { name: 'e-n2', ip: '192.168.1.2' } }] : []),
  ];
}

const FLOWS = [{ port: 80, protocol: 'TCP' }, { port: 53, protocol: 'UDP' }, { port: 8080, protocol: 'TCP' }, { port: 80, protocol: 'SCTP' }, { port: 8, protocol: 'ICMP' }];
/** IPv6 world peers (fourteenth session): inside and outside the 2001:db8::/32 except, Google's v6 resolver, an IPv4-mapped address. */
const EXTERNALS_V6 = [{ name: 'e6-doc', ip: '2001:db8::10' }, { name: 'e6-doc1', ip: '2001:db8:1::10' }, { name: 'e6-dns', ip: '2001:4860::8888' }, { name: 'e6-mapped', ip: '::ffff:8.8.8.8' }];
const PROBES = FLOWS.flatMap((f) => [f, ...['e-dns', 'e-doc', 'e-other', ...EXTERNALS_V6.map((e) => e.name), { node: 'n1' }, { node: 'n2' }].flatMap((x) => [{ ...f, from: x }, { ...f, to: x }])]);

/** Flows where distill follows its documented stricter egress named-port reading (counted, not failed). */
let deviations = 0;

interface Disagreement { readonly pair: string; readonly flow: string; readonly distill: boolean; readonly independent: boolean }

/** Scenarios the reader and distill both refused. */
let refused = 0;

/** Runs a scenario text through distill's oracle and engine and the independent reader. */
function disagreements(text: string): Disagreement[] {
  const why = ciliumRefusal(text);
  if (why !== undefined) {
    let err: unknown;
    try { runScenario(parseScenario(text, 'generated.yaml'), decideFlow); } catch (e) { err = e; }
    if (err === undefined) return [{ pair: 'scenario', flow: why, distill: true, independent: false }];
    refused++;
    return [];
  }
  const scenario = parseScenario(text, 'generated.yaml');
  const naive = runScenario(scenario, decideFlow);
  const engine = runScenario(scenario, new EngineDecider(new Engine(scenarioEngineOptions(scenario))).decide);
  const clusters = naive.steps.map((_, si) => readCluster(text, si));
  const out: Disagreement[] = [];
  const engineResults = engine.steps.flatMap((s) => s.results);
  const rawSteps = (parse(text) as { steps?: { probes?: unknown[] }[] }).steps ?? [];
  naive.steps.flatMap((s, si) => s.results.map((r) => ({ r, probe: rawSteps[si]?.probes?.[r.probe], cluster: clusters[si] ?? readCluster(text, si) }))).forEach(({ r, probe, cluster }, i) => {
    const from = cluster.peers.get(r.from);
    const to = cluster.peers.get(r.to);
    if (from === undefined || to === undefined) throw new Error(`unknown peer in ${r.from}->${r.to}`);
    const flow = { port: r.port, protocol: r.protocol.toUpperCase() };
    const req = readProbeRequest(probe);
    const mine = decide(cluster, from, to, flow, undefined, req);
    const eng = engineResults[i]?.allowed;
    if (eng !== r.allowed) out.push({ pair: `step ${r.step} ${r.from}->${r.to} (engine vs oracle)`, flow: `${r.port}/${r.protocol}`, distill: eng ?? false, independent: r.allowed });
    if (mine !== r.allowed && decide(cluster, from, to, flow, { strictEgressNamedPorts: true }, req) === r.allowed) deviations++;
    else if (mine !== r.allowed) out.push({ pair: `step ${r.step} ${r.from}->${r.to}`, flow: `${r.port}/${r.protocol}`, distill: r.allowed, independent: mine });
  });
  return out;
}

describe('CiliumNetworkPolicy: distill against an independent reader of Cilium', () => {
  it(`agrees on every generated flow (seed ${SEED}, ${RUNS} runs)`, () => {
    fc.assert(
      fc.property(scenarioArb, (g) => {
        const text = scenarioYaml(g);
        const d = disagreements(text);
        if (d.length > 0) throw new Error(`${d.length} disagreements, first ${JSON.stringify(d.slice(0, 4))}\n${text}`);
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    );
    process.stderr.write(`cilium-np: ${deviations} flows differ only by distill's documented egress named-port reading, ${refused} scenarios refused\n`);
    if (RUNS >= 100) expect(refused).toBeGreaterThan(0);
    expect(RUNS).toBeGreaterThan(0);
  }, 120_000);

  // Attack finding 2761: distill still counts this plain allow (fixtures/conformance/pending/README.md); the reader does not.
  it('keeps a numbered plain allow out of a DNS filter written on the port name (pkg/policy/l4.go)', () => {
    const text = readFileSync('fixtures/conformance/cilium-dns22/numbered-plain-allow-not-in-named-dns-filter.yaml', 'utf8');
    const c = readCluster(text, 0);
    const [a, dns] = [c.peers.get('x/a'), c.peers.get('kube-system/kube-dns')];
    if (a === undefined || dns === undefined) throw new Error('peers');
    const flow = { port: 53, protocol: 'UDP' };
    expect([decide(c, a, dns, flow, undefined, { dns: 'good.example' }), decide(c, a, dns, flow, undefined, { dns: 'other.example' }), decide(c, a, dns, flow)]).toEqual([true, false, true]);
  });

  const DIR = 'fixtures/conformance/cilium-diff';
  for (const f of readdirSync(DIR).filter((n) => n.endsWith('.yaml'))) {
    it(`agrees on ${DIR}/${f}`, () => {
      expect(disagreements(readFileSync(`${DIR}/${f}`, 'utf8'))).toEqual([]);
    });
  }
});
