import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ScenarioRun } from '../../src/scenario/run.js';
import { fcRuns } from '../fc-knobs.js';
import { egressPolicyA, runBoth, twoStepScenario } from './dns-filter-probes.js';

/*
 * Attack findings 2761, 2980, 2981, 3160: which plain allows widen a DNS redirect is a property of the L4Filters of the
 * port (a numbered one, one per port name), a named clause is its name's filter only where the name is the peer's
 * port, and the proxy holds one filter's rules (a named one before the numbered one; several named: their meet). Three kube-system pods with port names among dns, dns2, dns3 (on 53 or 54, UDP or TCP); rules mixing named and
 * numbered ports, DNS rules and plain allows, UDP and ANY, one or two ports per toPorts entry; a second step moves
 * one pod's ports and drops a rule. The engine decides every DNS query as the oracle.
 */
const RUNS = fcRuns(process.env.DISTILL_LONG ? 1000 : 250);
const REPLAY = process.env.DISTILL_SEED ? { seed: Number(process.env.DISTILL_SEED), ...(process.env.DISTILL_PATH ? { path: process.env.DISTILL_PATH } : {}) } : {};

const NAMES = ['dns', 'dns2', 'dns3'] as const;
const SERVERS = ['s0', 's1', 's2'] as const;

const portArb = fc.record({ name: fc.constantFrom(...NAMES), port: fc.constantFrom(53, 53, 53, 54), protocol: fc.constantFrom('UDP', 'UDP', 'UDP', 'TCP') });
/**
 * A pod's ports: distinct names, as Kubernetes validates a pod; two names may share a (port, protocol) (Kubernetes only
 * warns of a duplicate port), so that one peer can be in two named filters of one port (finding 3160).
 */
const podPortsArb = fc.uniqueArray(portArb, { maxLength: 2, selector: (p) => p.name });
const ruleArb = fc.record({
  peer: fc.constantFrom<string | null>(null, ...SERVERS),
  ports: fc.uniqueArray(fc.record({ port: fc.constantFrom<string>(...NAMES, '53'), protocol: fc.constantFrom('UDP', 'UDP', 'ANY') }), { minLength: 1, maxLength: 3, selector: (p) => `${p.port}/${p.protocol}` }),
  /** No DNS rule (a plain allow), or the names its DNS rule allows: several filters of one port may hold different ones. */
  dns: fc.constantFrom<readonly string[] | null>(null, ['good.example'], ['good.example'], ['good.example', 'other.example'], ['other.example']),
});
const scenarioArb = fc.record({
  ports: fc.tuple(podPortsArb, podPortsArb, podPortsArb),
  rules: fc.array(ruleArb, { minLength: 2, maxLength: 4 }),
  moved: fc.constantFrom(0, 1, 2),
  movedPorts: podPortsArb,
  dropped: fc.nat(),
});
type Gen = typeof scenarioArb extends fc.Arbitrary<infer T> ? T : never;

const flow = (ps: readonly { name: string; port: number; protocol: string }[]): string => `[${ps.map((p) => `{name: ${p.name}, port: ${p.port}, protocol: ${p.protocol}}`).join(', ')}]`;
const podLine = (i: number, ps: Gen['movedPorts']): string => `{name: kube-system/${SERVERS[i]}, labels: {app: ${SERVERS[i]}}, ip: 10.96.0.${10 + i}, ports: ${flow(ps)}}`;

function ruleLines(r: Gen['rules'][number]): string[] {
  const peer = `{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system${r.peer ? `, k8s:app: ${r.peer}` : ''}}}`;
  const ports = r.ports.map((p) => `{port: "${p.port}", protocol: ${p.protocol}}`).join(', ');
  const dns = r.dns ? `, rules: {dns: [${r.dns.map((n) => `{matchName: ${n}}`).join(', ')}]}` : '';
  return [`  - toEndpoints: [${peer}]`, `    toPorts: [{ports: [${ports}]${dns}}]`];
}

function scenarioText(g: Gen): string {
  const probes = SERVERS.flatMap((s) => [53, 54].flatMap((port) => ['good.example', 'other.example'].map((name) => `      - {from: x/a, to: kube-system/${s}, port: ${port}, protocol: UDP, dns: {name: ${name}}}`)));
  const kept = g.rules.length > 1 ? g.rules.filter((_, i) => i !== g.dropped % g.rules.length) : g.rules;
  const policy = (rules: Gen['rules']) => (indent: string): string => egressPolicyA(rules.flatMap(ruleLines), indent);
  return twoStepScenario(g.ports.map((ps, i) => podLine(i, ps)), policy(g.rules), podLine(g.moved, g.movedPorts), policy(kept), probes);
}

const verdicts = (r: ScenarioRun): string[] => r.steps.flatMap((s) => s.results.map((x) => `step ${s.step} ${x.to} ${x.port} ${x.decision.egress?.l7 ? 'proxied' : ''} ${x.allowed}`));

describe('DNS filters: the engine decides every DNS query as the oracle (findings 2761, 2980, 2981, 3160)', () => {
  it('over random three-server scenarios with several port names', () => {
    let proxied = 0;
    fc.assert(
      fc.property(scenarioArb, (g) => {
        const text = scenarioText(g);
        const { naive, engine } = runBoth(text, 'dns-filters-31a');
        const v = verdicts(naive);
        proxied += v.filter((x) => x.includes('proxied')).length;
        expect(verdicts(engine), text).toEqual(v);
      }),
      { numRuns: RUNS, ...REPLAY },
    );
    // Most runs redirect some query: the property is about the proxy's rules, not about L4 verdicts.
    expect(proxied).toBeGreaterThan(RUNS);
  }, 900_000);
});
