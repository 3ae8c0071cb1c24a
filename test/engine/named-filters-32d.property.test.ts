import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fcRuns } from '../fc-knobs.js';
import { egressPolicyA, expectStepwiseAsFresh, PROXY_ID_KEYS as KEYS, PROXY_ID_REPLAY as REPLAY, type ProxyIdParser as Parser, proxyIdRuleLines, serverLine as podLine, serverPortArb as portArb, SERVERS } from './dns-filter-probes.js';

/*
 * Attack finding 3381 (3281/3161): a named L7 filter takes its port's proxy ID in Cilium 1.19 whoever its selectors
 * select, its name resolved node-wide (pkg/policy/resolve.go forEachRedirectFilter; pkg/endpoint/bpf.go
 * Endpoint.proxyID → namedPortMultiMap.GetNamedPort, none when no pod or two ports give the name). Three kube-system
 * servers naming 53 or 54/TCP n1 or n2 (or nothing); rules on n1, n2 and "53" (one parser per key: HTTP or DNS), to
 * one server, to every kube-system pod or to pods no one has (`nobody`); a second step moves one server's ports (a
 * name can become ambiguous or unknown node-wide) and drops a rule; a third adds the dropped rule back and removes a
 * server. The engine, fed the steps one after another, decides every GET and query as the oracle, and its last step
 * as a fresh engine given the last state at once.
 */
const RUNS = fcRuns(process.env.DISTILL_LONG ? 1000 : 150);

const podPortsArb = fc.uniqueArray(portArb, { minLength: 0, maxLength: 2, selector: (p) => p.name });
const ruleArb = fc.record({
  peer: fc.constantFrom<string | null>(null, 'nobody', 'nobody', ...SERVERS),
  port: fc.constantFrom(...KEYS),
  /** Plain, or the rule of its key's parser: HTTP GET / POST, DNS good.example / other.example. */
  l7: fc.constantFrom<0 | 1 | 2>(0, 1, 1, 2),
});
const scenarioArb = fc.record({
  parsers: fc.tuple(fc.constantFrom<Parser>('http', 'dns', 'dns'), fc.constantFrom<Parser>('http', 'dns', 'dns'), fc.constantFrom<Parser>('http', 'dns', 'dns')),
  ports: fc.tuple(podPortsArb, podPortsArb, podPortsArb),
  rules: fc.array(ruleArb, { minLength: 2, maxLength: 5 }),
  moved: fc.constantFrom(0, 1, 2),
  movedPorts: podPortsArb,
  dropped: fc.nat(),
  removed: fc.constantFrom(0, 1, 2),
});
type Gen = typeof scenarioArb extends fc.Arbitrary<infer T> ? T : never;

const ruleLines = (g: Gen, r: Gen['rules'][number]): string[] => proxyIdRuleLines(g.parsers, r);

const REQUESTS = ['http: {method: GET, path: /}', 'dns: {name: good.example}', 'dns: {name: other.example}'];
/** Every request to every server but `gone` on 53 and 54/TCP. */
const probes = (gone?: number): string[] =>
  SERVERS.filter((_, i) => i !== gone).flatMap((s) => [53, 54].flatMap((port) => REQUESTS.map((r) => `      - {from: x/a, to: kube-system/${s}, port: ${port}, protocol: TCP, ${r}}`)));

const policy = (g: Gen, rules: Gen['rules']) => (indent: string): string => egressPolicyA(rules.flatMap((r) => ruleLines(g, r)), indent);
const apply = (g: Gen, rules: Gen['rules']): string => `      - apply:\n          ${policy(g, rules)('          ')}`;

/** The three steps, and the last state as one step (what a fresh engine is given). */
function scenarioTexts(g: Gen): { steps: string; last: string } {
  const kept = g.rules.filter((_, i) => i !== g.dropped % g.rules.length);
  const ports = g.ports.map((ps, i) => (i === g.moved ? g.movedPorts : ps));
  const head = ['namespaces: [{name: x}, {name: kube-system}]', 'pods:', '  - {name: x/a, labels: {app: a}}'];
  const steps = [
    ...head,
    ...g.ports.map((ps, i) => `  - ${podLine(i, ps)}`),
    'policies:',
    `  - ${policy(g, g.rules)('    ')}`,
    'steps:',
    '  - probes:',
    ...probes(),
    '  - changes:',
    `      - {addPod: ${podLine(g.moved, g.movedPorts)}}`,
    apply(g, kept),
    '    probes:',
    ...probes(),
    '  - changes:',
    `      - {deletePod: kube-system/${SERVERS[g.removed]}}`,
    apply(g, g.rules),
    '    probes:',
    ...probes(g.removed),
  ].join('\n');
  const last = [...head, ...ports.flatMap((ps, i) => (i === g.removed ? [] : [`  - ${podLine(i, ps)}`])), 'policies:', `  - ${policy(g, g.rules)('    ')}`, 'steps:', '  - probes:', ...probes(g.removed)].join('\n');
  return { steps, last };
}

describe('3381. named L7 filters resolved node-wide: engine = oracle, incremental = fresh', () => {
  it('over random named and numbered HTTP and DNS filters on 53/TCP, some selecting nobody', () => {
    let nobodyCloses = 0;
    fc.assert(
      fc.property(scenarioArb, (g) => {
        const { steps, last } = scenarioTexts(g);
        const oracle = expectStepwiseAsFresh(steps, last, 'named-filters-32d');
        if (g.rules.some((r) => r.peer === 'nobody' && r.l7 !== 0 && r.port !== '53') && oracle.some((v) => v.endsWith(' false') && !v.includes('  '))) nobodyCloses++;
      }),
      { numRuns: RUNS, ...REPLAY },
    );
    expect(nobodyCloses).toBeGreaterThan(RUNS / 10);
  }, 900_000);
});
