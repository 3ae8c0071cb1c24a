import { describe, expect, it } from 'vitest';
import type { ScenarioRun } from '../../src/scenario/run.js';
import { egressPolicyA, runBoth } from './dns-filter-probes.js';

/*
 * Attack findings 3760-3762: pkg/endpoint/bpf.go Endpoint.proxyID identifies a range by its first port ("For port
 * ranges the proxy is identified by the first port in the range"), so "53"/TCP DNS and 53-60/TCP HTTP share (x/a,
 * egress, TCP, 53): addNewRedirects gives the ID one of them in Go map order (pkg/policy/l4.go L4PolicyMap.ForEach)
 * and every key of both takes its redirect (makeMapStateEntry → LookupRedirectPort). A filter counts whoever its
 * selectors select (pkg/policy/resolve.go forEachRedirectFilter), so a DNS rule to nobody closes the range too: no
 * raw key changes then, only the endpoint's filters.
 */
const HEAD = [
  'namespaces: [{name: x}, {name: kube-system}]',
  'pods:',
  '  - {name: x/a, labels: {app: a}}',
  '  - {name: kube-system/alt, labels: {k8s-app: alt}, ip: 10.96.0.11, ports: [{port: 53, protocol: TCP}, {port: 54, protocol: TCP}]}',
];
const rule = (peer: string, port: string, rules: string): string[] => [
  `  - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s:k8s-app: ${peer}}}]`,
  `    toPorts: [{ports: [${port}], rules: ${rules}}]`,
];
const HTTP_RANGE = rule('alt', '{port: "53", endPort: 60, protocol: TCP}', '{http: [{method: GET}]}');
const DNS_TO_NOBODY = rule('nobody', '{port: "53", protocol: TCP}', '{dns: [{matchName: good.example}]}');
const KAFKA_RANGE_TO_NOBODY = rule('nobody', '{port: "53", endPort: 55, protocol: TCP}', '{kafka: [{role: produce, topic: t}]}');
const GETS = [53, 54, 60].map((p) => `      - {from: x/a, to: kube-system/alt, port: ${p}, protocol: TCP, http: {method: GET, path: /}}`);

const apply = (rules: string[][]): string[] => ['  - changes:', `      - apply:\n          ${egressPolicyA(rules.flat(), '          ')}`, '    probes:', ...GETS];
/** x/a's policy as `steps[0]`, then each later entry applied in turn, the GETs probed at every step. */
function scenario(steps: string[][][]): string {
  const [first, ...rest] = steps as [string[][], ...string[][][]];
  return [...HEAD, 'policies:', `  - ${egressPolicyA(first.flat(), '    ')}`, 'steps:', '  - probes:', ...GETS, ...rest.flatMap(apply)].join('\n');
}
const allowed = (r: ScenarioRun): boolean[][] => r.steps.map((s) => s.results.map((x) => x.allowed));

describe('3760. a range shares its first port\'s proxy ID with the filters there', () => {
  it('a DNS rule to nobody on "53" closes the HTTP range from 53, stepwise as fresh, engine = oracle', () => {
    const states = [[HTTP_RANGE], [HTTP_RANGE, DNS_TO_NOBODY], [HTTP_RANGE], [HTTP_RANGE, KAFKA_RANGE_TO_NOBODY], [HTTP_RANGE, DNS_TO_NOBODY]];
    const want = [true, false, true, false, false].map((v) => [v, v, v]);
    const { naive, engine } = runBoth(scenario(states), 'proxy-id-ranges-33d');
    expect(allowed(naive)).toEqual(want);
    expect(allowed(engine)).toEqual(want);
    states.forEach((s, i) => expect(allowed(runBoth(scenario([s]), 'proxy-id-ranges-33d-fresh').engine)).toEqual([want[i]]));
  });
});
