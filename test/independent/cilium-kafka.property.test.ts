import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { Engine } from '../../src/engine/engine.js';
import { EngineDecider } from '../../src/harness/engine-decider.js';
import { l7PolicyArb } from './l7-policy-arb.js';
import { decideFlow } from '../../src/naive/evaluator.js';
import { parseScenario } from '../../src/scenario/format.js';
import { runScenario, scenarioEngineOptions } from '../../src/scenario/run.js';
import { kafkaRuleRefusal } from './cilium-kafka.js';
import { ciliumRefusal, decide, readCluster, readProbeRequest } from './cilium-np.js';

/**
 * Differential test: distill's Kafka and DNS L7 verdicts (oracle and engine, through the scenario path)
 * against the independent reader (cilium-np.ts + cilium-kafka.ts, DNS rules with dns-policy.ts's transcribed
 * matchpattern) on generated CiliumNetworkPolicies with `rules.kafka` on 9092 and `rules.dns` on 53, mixed with
 * plain rules on the same ports. A rule Cilium's `Sanitize` refuses must make distill refuse the scenario.
 * DISTILL_SEED reproduces a run, DISTILL_DIFF_RUNS sets the number of scenarios (default 300).
 */
const SEED = Number(process.env.DISTILL_SEED ?? 6000);
const RUNS = Number(process.env.DISTILL_DIFF_RUNS ?? 300);

const validKafka = fc.record({
  role: fc.constantFrom(undefined, undefined, 'produce', 'consume'),
  apiKey: fc.constantFrom(undefined, undefined, 'produce', 'Fetch', 'metadata', 'heartbeat', 'createtopics', 'apiversions'),
  apiVersion: fc.constantFrom(undefined, undefined, '0', '1', '3', '+3'),
  clientID: fc.constantFrom(undefined, undefined, 'app', 'other'),
  // '' is no topic (kafka.go Sanitize checks `len(kr.Topic) > 0`; finding 1661).
  topic: fc.constantFrom(undefined, 'orders', 'logs', 'a\\b', ''),
}).map((r) => (r.role !== undefined && r.apiKey !== undefined ? { ...r, apiKey: undefined } : r));
/** Each refused by kafka.go `Sanitize` or the CRD's role enum. */
const invalidKafka = fc.constantFrom({ role: 'produce', apiKey: 'fetch' }, { apiKey: 'nosuchkey' }, { role: 'Produce' }, { role: 'admin' },
  { apiVersion: '32768' }, { apiVersion: '-1' }, { apiVersion: 'v1' }, { topic: 'a b' }, { topic: 't'.repeat(256) }, { topic: 'a/b' });
const kafkaRuleArb = fc.oneof({ weight: 19, arbitrary: validKafka }, { weight: 1, arbitrary: invalidKafka })
  .map((r) => JSON.parse(JSON.stringify(r)) as Record<string, unknown>);

const dnsRuleArb = fc.oneof(
  fc.constantFrom('api.example.com', 'API.example.com.', 'db.example.com').map((matchName) => ({ matchName })),
  fc.constantFrom('*.example.com', '*', '**.example.com', 'ap*.example.com', '*.com').map((matchPattern) => ({ matchPattern })),
);

const portRuleArb = fc.oneof(
  fc.record({ ports: fc.constant([{ port: '9092', protocol: 'TCP' }]), kafka: fc.oneof({ weight: 1, arbitrary: fc.constant(undefined) }, { weight: 4, arbitrary: fc.array(kafkaRuleArb, { minLength: 1, maxLength: 3 }) }) })
    .map(({ ports, kafka }) => (kafka === undefined ? { ports } : { ports, rules: { kafka } })),
  fc.record({ ports: fc.constantFrom([{ port: '53', protocol: 'UDP' }], [{ port: '53', protocol: 'ANY' }], [{ port: '53' }]), dns: fc.oneof({ weight: 1, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constant([]) }, { weight: 4, arbitrary: fc.array(dnsRuleArb, { minLength: 1, maxLength: 2 }) }) })
    .map(({ ports, dns }) => (dns === undefined ? { ports } : { ports, rules: { dns } })),
);

/**
 * DNS rules are egress only (Cilium's `PortRule.Validate(ingress)` refuses them on ingress, ciliumRefusal): ingress
 * rules get Kafka port rules only, but for 1 in 30 that keeps its DNS port rules (refused when their list is non-empty).
 */
function ruleArb(dir: 'from' | 'to') {
  const peer = fc.oneof(
    fc.constant({}),
    fc.constantFrom({}, { matchLabels: { app: 'x' } }, { matchLabels: { app: 'y' } }).map((s) => ({ [`${dir}Endpoints`]: [s] })),
    fc.constant({ [`${dir}Entities`]: ['cluster'] }),
  );
  const ports = fc.tuple(fc.array(portRuleArb, { minLength: 1, maxLength: 2 }), fc.nat({ max: 29 }))
    .map(([prs, keepDns]) => (dir === 'from' && keepDns !== 0 ? prs.filter((p) => p.ports[0]?.port === '9092') : prs));
  return fc.tuple(peer, fc.oneof({ weight: 1, arbitrary: fc.constant(undefined) }, { weight: 5, arbitrary: ports }))
    .map(([p, toPorts]) => (toPorts === undefined || toPorts.length === 0 ? p : { ...p, toPorts }));
}

const policyArb = l7PolicyArb(ruleArb);

const kafkaRequestArb = fc.record({
  apiKey: fc.constantFrom('produce', 'fetch', 'metadata', 'heartbeat', 'createtopics', 'apiversions', 'joingroup', 0, 1),
  role: fc.constantFrom(undefined, undefined, undefined, 'produce', 'consume'),
  apiVersion: fc.constantFrom(undefined, 0, 1, 3),
  clientID: fc.constantFrom(undefined, 'app', 'other'),
  topic: fc.constantFrom(undefined, 'orders', 'logs', 'a\\b'),
}).map((r) => JSON.parse(JSON.stringify(r.role === undefined ? r : { ...r, apiKey: undefined })) as Record<string, unknown>);

const dnsRequestArb = fc.constantFrom('api.example.com', 'Api.Example.Com.', 'db.example.com', 'a.b.example.com', 'example.com', 'apix.example.com', 'other.org');

const scenarioArb = fc.record({
  pods: fc.array(fc.constantFrom('x', 'y'), { minLength: 2, maxLength: 3 }),
  policies: fc.array(policyArb, { minLength: 1, maxLength: 3 }),
  kafka: fc.array(kafkaRequestArb, { minLength: 2, maxLength: 5 }),
  dns: fc.array(dnsRequestArb, { minLength: 1, maxLength: 3 }),
});
type Generated = typeof scenarioArb extends fc.Arbitrary<infer T> ? T : never;

function scenarioYaml(g: Generated): string {
  return stringify({
    description: 'generated (test/independent/cilium-kafka.property.test.ts)',
    namespaces: [{ name: 'a' }],
    pods: g.pods.map((app, i) => ({ name: `a/p${i}`, ip: `10.0.0.${i + 1}`, labels: { app } })),
    policies: g.policies.map((spec, i) => ({ apiVersion: 'cilium.io/v2', kind: 'CiliumNetworkPolicy', metadata: { name: `p${i}`, namespace: 'a' }, spec })),
    steps: [{ probes: [...g.kafka.map((kafka) => ({ port: 9092, kafka })), ...g.dns.map((name) => ({ port: 53, protocol: 'UDP', dns: { name } }))] }],
  });
}

function refusal(g: Generated): string | undefined {
  for (const p of g.policies) {
    for (const r of [...((p.ingress as unknown[] | undefined) ?? []), ...((p.egress as unknown[] | undefined) ?? [])]) {
      for (const pr of ((r as { toPorts?: { rules?: { kafka?: Record<string, unknown>[] } }[] }).toPorts ?? [])) {
        for (const k of pr.rules?.kafka ?? []) {
          const why = kafkaRuleRefusal(k);
          if (why !== undefined) return why;
        }
      }
    }
  }
  return undefined;
}

const reach = { l7Denied: 0, l7Allowed: 0, refused: 0, dnsIngressRefused: 0 };

function disagreements(text: string): string[] {
  const scenario = parseScenario(text, 'generated.yaml');
  const naive = runScenario(scenario, decideFlow);
  const engine = runScenario(scenario, new EngineDecider(new Engine(scenarioEngineOptions(scenario))).decide);
  const cluster = readCluster(text);
  const probes = (parse(text) as { steps: { probes: { kafka?: unknown; dns?: { name: string } }[] }[] }).steps[0]?.probes ?? [];
  const engineResults = engine.steps.flatMap((s) => s.results);
  const out: string[] = [];
  naive.steps.flatMap((s) => s.results).forEach((r, i) => {
    const from = cluster.peers.get(r.from);
    const to = cluster.peers.get(r.to);
    if (from === undefined || to === undefined) throw new Error(`unknown peer in ${r.from}->${r.to}`);
    const flow = { port: r.port, protocol: r.protocol.toUpperCase() };
    const probe = probes[r.probe] ?? {};
    const mine = decide(cluster, from, to, flow, undefined, readProbeRequest(probe));
    if (decide(cluster, from, to, flow)) reach[mine ? 'l7Allowed' : 'l7Denied']++;
    if (engineResults[i]?.allowed !== r.allowed) out.push(`${r.from}->${r.to} probe ${r.probe}: engine ${String(engineResults[i]?.allowed)} oracle ${r.allowed}`);
    if (mine !== r.allowed) out.push(`${r.from}->${r.to} probe ${r.probe} ${JSON.stringify(probe)}: distill ${r.allowed} reader ${mine}`);
  });
  return out;
}

describe('CiliumNetworkPolicy L7 Kafka and DNS: distill against an independent reader of Cilium', () => {
  it(`agrees on every generated request and refusal (seed ${SEED}, ${RUNS} runs)`, () => {
    fc.assert(
      fc.property(scenarioArb, (g) => {
        const text = scenarioYaml(g);
        const why = refusal(g) ?? ciliumRefusal(text);
        if (why !== undefined) {
          reach.refused++;
          const dnsIngress = why === 'DNS rules are not allowed on ingress';
          if (dnsIngress) reach.dnsIngressRefused++;
          expect(() => runScenario(parseScenario(text, 'generated.yaml'), decideFlow), `Cilium refuses (${why}); distill must too\n${text}`).toThrow(dnsIngress ? /DNS rules are not allowed on ingress/ : /./);
          return;
        }
        const d = disagreements(text);
        if (d.length > 0) throw new Error(`${d.length} disagreements, first ${JSON.stringify(d.slice(0, 4))}\n${text}`);
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    );
    process.stderr.write(`cilium-kafka: ${reach.l7Denied} requests denied at L7, ${reach.l7Allowed} allowed on L4-allowed flows, ${reach.refused} scenarios refused (${reach.dnsIngressRefused} for DNS rules on ingress)\n`);
    expect(reach.l7Denied).toBeGreaterThan(0);
    expect(reach.l7Allowed).toBeGreaterThan(0);
    expect(reach.refused).toBeGreaterThan(0);
    if (RUNS >= 100) expect(reach.dnsIngressRefused).toBeGreaterThan(0);
  }, 120_000);
});
