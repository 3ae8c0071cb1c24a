import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { Engine } from '../../src/engine/engine.js';
import { EngineDecider } from '../../src/harness/engine-decider.js';
import { l7PolicyArb } from './l7-policy-arb.js';
import { decideFlow } from '../../src/naive/evaluator.js';
import { parseScenario } from '../../src/scenario/format.js';
import { runScenario, scenarioEngineOptions } from '../../src/scenario/run.js';
import { readRequest } from './cilium-l7.js';
import { decide, readCluster } from './cilium-np.js';

/**
 * Differential test: distill's L7 HTTP verdicts (oracle and engine, through the scenario path) against the
 * independent reader (cilium-np.ts + cilium-l7.ts) on generated CiliumNetworkPolicies with `rules.http`:
 * the same port with and without L7 rules, several rules OR-ed, L7 on the client's egress and the server's
 * ingress. DISTILL_SEED reproduces a run, DISTILL_DIFF_RUNS sets the number of scenarios (default 400).
 */
const SEED = Number(process.env.DISTILL_SEED ?? 5000);
const RUNS = Number(process.env.DISTILL_DIFF_RUNS ?? 400);

const httpRuleArb = fc.record({
  method: fc.constantFrom(undefined, 'GET', 'POST', 'GET|HEAD', 'P.*', 'get'),
  path: fc.constantFrom(undefined, '/public', '/public/.*', '/api/v[0-9]+/.*', '/', '/admin', '/a b'),
  host: fc.constantFrom(undefined, 'shop.example', 'shop\\.example(:80)?', '.*\\.example'),
  headers: fc.constantFrom(undefined, ['X-Token'], ['X-Token: yes'], ['x-token: yes,yes'], ['X-Token: yes', 'X-Env']),
  headerMatches: fc.constantFrom(undefined, [{ name: 'X-Token', value: 'yes' }], [{ name: 'X-Token', value: 'yes', mismatch: 'LOG' }], [{ name: 'X-Env' }]),
}).map((r) => JSON.parse(JSON.stringify(r)) as Record<string, unknown>);

const portsArb = fc.constantFrom([{ port: '80', protocol: 'TCP' }], [{ port: '70', endPort: 90, protocol: 'TCP' }], [{ port: 'web', protocol: 'TCP' }], [{ port: '8080', protocol: 'TCP' }]);

const portRuleArb = fc.record({
  ports: portsArb,
  http: fc.oneof({ weight: 1, arbitrary: fc.constant(undefined) }, { weight: 4, arbitrary: fc.array(httpRuleArb, { minLength: 1, maxLength: 3 }) }),
}).map(({ ports, http }) => (http === undefined ? { ports } : { ports, rules: { http } }));

function ruleArb(dir: 'from' | 'to') {
  const peer = fc.oneof(
    fc.constant({}),
    fc.constantFrom({}, { matchLabels: { app: 'x' } }, { matchLabels: { app: 'y' } }).map((s) => ({ [`${dir}Endpoints`]: [s] })),
    fc.constant({ [`${dir}Entities`]: ['cluster'] }),
  );
  return fc.tuple(peer, fc.oneof({ weight: 1, arbitrary: fc.constant(undefined) }, { weight: 5, arbitrary: fc.array(portRuleArb, { minLength: 1, maxLength: 2 }) }))
    .map(([p, toPorts]) => (toPorts === undefined ? p : { ...p, toPorts }));
}

const policyArb = l7PolicyArb(ruleArb);

const requestArb = fc.record({
  method: fc.constantFrom(undefined, 'GET', 'POST', 'HEAD', 'PUT', 'get'),
  path: fc.constantFrom(undefined, '/public', '/public/a', '/public/../admin', '/%70ublic/x', '/public//a', '/api/v1/x', '/api/v1/../../public/x',
    '/public%2Fa', '/public%2fa', '/a/./public', '/public/.', '/public/%2e%2e/admin', '/admin/..', '/public\\a', '/public?x=/../a', '/a%20b', '/x/../../public'),
  host: fc.constantFrom(undefined, 'shop.example', 'shop.example:80', 'Shop.example', 'x.example', 'shop.example:8080'),
  headers: fc.constantFrom(undefined, { 'X-Token': 'yes' }, { 'x-token': 'no' }, ['X-Token: yes', 'X-Token: yes'], { 'X-Token': 'yes', 'X-Env': 'p' }, { Host: 'shop.example' }, { 'X-Env': '' }),
}).map((r) => JSON.parse(JSON.stringify(r)) as Record<string, unknown>);

const scenarioArb = fc.record({
  pods: fc.array(fc.record({ app: fc.constantFrom('x', 'y'), web: fc.constantFrom(undefined, 80, 8080) }), { minLength: 2, maxLength: 3 }),
  policies: fc.array(policyArb, { minLength: 1, maxLength: 3 }),
  requests: fc.array(requestArb, { minLength: 2, maxLength: 5 }),
});
type Generated = typeof scenarioArb extends fc.Arbitrary<infer T> ? T : never;

function scenarioYaml(g: Generated): string {
  return stringify({
    description: 'generated (test/independent/cilium-l7.property.test.ts)',
    namespaces: [{ name: 'a' }],
    pods: g.pods.map((p, i) => ({ name: `a/p${i}`, ip: `10.0.0.${i + 1}`, labels: { app: p.app }, ...(p.web === undefined ? {} : { ports: [{ name: 'web', port: p.web, protocol: 'TCP' }] }) })),
    policies: g.policies.map((spec, i) => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: `p${i}`, namespace: 'a' }, spec })),
    steps: [{ probes: g.requests.flatMap((http) => [{ port: 80, http }, { port: 8080, http }]) }],
  });
}

/** Requests the L7 rules decided (allowed at L4, denied at L7), and ones they let through: the test's reach. */
const reach = { l7Denied: 0, l7Allowed: 0 };

interface Disagreement { readonly pair: string; readonly probe: number; readonly distill: boolean; readonly independent: boolean }

/** Runs a scenario through distill's oracle and engine and the independent reader; lists disagreements. */
function l7Disagreements(text: string): Disagreement[] {
  const scenario = parseScenario(text, 'generated.yaml');
  const naive = runScenario(scenario, decideFlow);
  const engine = runScenario(scenario, new EngineDecider(new Engine(scenarioEngineOptions(scenario))).decide);
  const cluster = readCluster(text);
  const probes = (parse(text) as { steps: { probes: { http?: unknown }[] }[] }).steps[0]?.probes ?? [];
  const engineResults = engine.steps.flatMap((s) => s.results);
  const out: Disagreement[] = [];
  naive.steps.flatMap((s) => s.results).forEach((r, i) => {
    const from = cluster.peers.get(r.from);
    const to = cluster.peers.get(r.to);
    if (from === undefined || to === undefined) throw new Error(`unknown peer in ${r.from}->${r.to}`);
    const raw = probes[r.probe]?.http;
    const flow = { port: r.port, protocol: r.protocol.toUpperCase() };
    const req = raw === undefined ? undefined : readRequest(raw);
    const mine = decide(cluster, from, to, flow, undefined, req);
    // distill's documented stricter egress named-port reading (cilium-np.property.test.ts counts it the same way)
    if (req !== undefined && decide(cluster, from, to, flow)) reach[mine ? 'l7Allowed' : 'l7Denied']++;
    if (mine !== r.allowed && decide(cluster, from, to, flow, { strictEgressNamedPorts: true }, req) === r.allowed) return;
    if (engineResults[i]?.allowed !== r.allowed) out.push({ pair: `${r.from}->${r.to} (engine vs oracle)`, probe: r.probe, distill: engineResults[i]?.allowed ?? false, independent: r.allowed });
    if (mine !== r.allowed) out.push({ pair: `${r.from}->${r.to}`, probe: r.probe, distill: r.allowed, independent: mine });
  });
  return out;
}

describe('CiliumNetworkPolicy L7 HTTP: distill against an independent reader of Cilium and Envoy', () => {
  it(`agrees on every generated request (seed ${SEED}, ${RUNS} runs)`, () => {
    fc.assert(
      fc.property(scenarioArb, (g) => {
        const text = scenarioYaml(g);
        const d = l7Disagreements(text);
        if (d.length > 0) throw new Error(`${d.length} disagreements, first ${JSON.stringify(d.slice(0, 4))}\n${text}`);
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    );
    process.stderr.write(`cilium-l7: ${reach.l7Denied} requests denied at L7, ${reach.l7Allowed} allowed on L4-allowed flows\n`);
    expect(reach.l7Denied).toBeGreaterThan(0);
    expect(reach.l7Allowed).toBeGreaterThan(0);
  }, 120_000);
});
