import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ScenarioRun } from '../../src/scenario/run.js';
import { fcRuns } from '../fc-knobs.js';
import { egressPolicyA, PROXY_ID_KEYS as KEYS, PROXY_ID_REPLAY as REPLAY, type ProxyIdParser as Parser, proxyIdRuleLines, runBoth, serverLine as podLine, serverPortArb as portArb, SERVERS, twoStepScenario } from './dns-filter-probes.js';

/*
 * Attack finding 3280: filters of one endpoint sharing a proxy ID (egress, TCP, port) with different parsers; a named
 * filter of another parser takes the port. Three kube-system pods naming 53 or 54/TCP n1 or n2; each filter key (n1,
 * n2, "53") has one parser per scenario (HTTP or DNS: two parsers on one key are refused, `l7ParserConflict`); rules
 * put plain allows or L7 rules on them; a second step moves one pod's ports and drops a rule. The engine decides every
 * GET and DNS query as the oracle.
 */
const RUNS = fcRuns(process.env.DISTILL_LONG ? 1000 : 200);

const podPortsArb = fc.uniqueArray(portArb, { minLength: 1, maxLength: 2, selector: (p) => p.name });
const ruleArb = fc.record({
  peer: fc.constantFrom<string | null>(null, ...SERVERS),
  port: fc.constantFrom(...KEYS),
  /** Plain, or the rule of its key's parser: HTTP GET / POST, DNS good.example / other.example. */
  l7: fc.constantFrom<0 | 1 | 2>(0, 1, 1, 2),
});
const scenarioArb = fc.record({
  parsers: fc.tuple(fc.constantFrom<Parser>('http', 'dns'), fc.constantFrom<Parser>('http', 'dns'), fc.constantFrom<Parser>('http', 'dns')),
  ports: fc.tuple(podPortsArb, podPortsArb, podPortsArb),
  rules: fc.array(ruleArb, { minLength: 3, maxLength: 5 }),
  moved: fc.constantFrom(0, 1, 2),
  movedPorts: podPortsArb,
  dropped: fc.nat(),
});
type Gen = typeof scenarioArb extends fc.Arbitrary<infer T> ? T : never;

const ruleLines = (g: Gen, r: Gen['rules'][number]): string[] => proxyIdRuleLines(g.parsers, r);

function scenarioText(g: Gen): string {
  const requests = ['http: {method: GET, path: /}', 'dns: {name: good.example}'];
  const probes = SERVERS.flatMap((s) => [53, 54].flatMap((port) => requests.map((r) => `      - {from: x/a, to: kube-system/${s}, port: ${port}, protocol: TCP, ${r}}`)));
  const kept = g.rules.filter((_, i) => i !== g.dropped % g.rules.length);
  const policy = (rules: Gen['rules']) => (indent: string): string => egressPolicyA(rules.flatMap((r) => ruleLines(g, r)), indent);
  return twoStepScenario(g.ports.map((ps, i) => podLine(i, ps)), policy(g.rules), podLine(g.moved, g.movedPorts), policy(kept), probes);
}

const verdicts = (r: ScenarioRun): string[] => r.steps.flatMap((s) => s.results.map((x) => `step ${s.step} ${x.to} ${x.port} ${x.decision.egress?.l7?.parser ?? ''} ${x.allowed}`));

describe('3280. filters sharing a proxy ID: the engine decides every GET and DNS query as the oracle', () => {
  it('over random scenarios mixing named and numbered HTTP and DNS filters on 53/TCP', () => {
    let mixed = 0;
    fc.assert(
      fc.property(scenarioArb, (g) => {
        const text = scenarioText(g);
        const { naive, engine } = runBoth(text, 'proxy-id-31e');
        const v = verdicts(naive);
        if (v.some((x) => x.includes(' http ')) && v.some((x) => x.includes(' dns '))) mixed++;
        expect(verdicts(engine), text).toEqual(v);
      }),
      { numRuns: RUNS, ...REPLAY },
    );
    // Some runs in ten proxy both parsers: the property is about ports two parsers share.
    expect(mixed).toBeGreaterThan(RUNS / 10);
  }, 900_000);
});
