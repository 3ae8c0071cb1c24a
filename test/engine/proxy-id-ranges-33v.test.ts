import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { EngineDecider } from '../../src/harness/engine-decider.js';
import { parseScenario } from '../../src/scenario/format.js';
import { runScenario, scenarioEngineOptions } from '../../src/scenario/run.js';

/*
 * Review 33v of finding 3760: HTTP 54-55 and a Kafka "54" (to nobody: a filter counts whoever it selects) share the
 * proxy ID (x/a, egress, TCP, 54) (pkg/endpoint/bpf.go Endpoint.proxyID: a range's proxy is its first port), so
 * every key of the HTTP filter takes the Kafka proxy in one Go map order (pkg/policy/l4.go L4PolicyMap.ForEach,
 * makeMapStateEntry → LookupRedirectPort): the HTTP redirect 54/15 is closed. A plain 53-54 to the same peer keys
 * 54/16 inside it; the verdict reads narrower rules live (narrowerContributions), but the table the proxy is given
 * holds a narrower-range row too (computeNarrowerRow): it must not re-open the closed redirect at port 54.
 */
const policy = (kafka: boolean): string =>
  [
    'apiVersion: cilium.io/v2',
    'kind: CiliumNetworkPolicy',
    'metadata: {name: a, namespace: x}',
    'spec:',
    '  endpointSelector: {matchLabels: {app: a}}',
    '  egress:',
    '    - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: y}}]',
    '      toPorts: [{ports: [{port: "54", endPort: 55, protocol: TCP}], rules: {http: [{method: GET}]}}]',
    ...(kafka ? ['    - toEndpoints: [{matchLabels: {app: nobody}}]', '      toPorts: [{ports: [{port: "54", protocol: TCP}], rules: {kafka: [{role: produce, topic: t}]}}]'] : []),
    '    - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: y}}]',
    '      toPorts: [{ports: [{port: "53", endPort: 54, protocol: TCP}]}]',
  ].join('\n        ');

const probes = ['      - {from: x/a, to: y/web, port: 54, protocol: TCP, http: {method: GET, path: /}}', '      - {from: x/a, to: y/web, port: 55, protocol: TCP, http: {method: GET, path: /}}'];
const scenario = (kafkaFirst: boolean): string =>
  [
    'namespaces: [{name: x}, {name: y}]',
    'pods:',
    '  - {name: x/a, labels: {app: a}}',
    '  - {name: y/web, labels: {app: web}, ip: 10.96.0.11}',
    'policies:',
    `  - ${policy(kafkaFirst).replace(/\n {8}/g, '\n    ')}`,
    'steps:',
    '  - probes:',
    ...probes,
    '  - changes:',
    `      - apply:\n          ${policy(!kafkaFirst).replace(/\n {8}/g, '\n          ')}`,
    '    probes:',
    ...probes,
  ].join('\n');

/** Each step's verdicts, and x/a's exported L7 rows (parser, prefix, narrower range, policy) after each step. */
function run(text: string): { verdicts: boolean[][]; rows: string[][] } {
  const s = parseScenario(text, 'proxy-id-ranges-33v');
  const e = new Engine(scenarioEngineOptions(s));
  const decide = new EngineDecider(e).decide;
  const verdicts: boolean[][] = [];
  const rows: string[][] = [];
  for (let i = 0; i < s.steps.length; i++) {
    const r = runScenario({ ...s, steps: s.steps.slice(i, i + 1), ...(i > 0 ? { policies: [], pods: [], namespaces: [] } : {}) }, decide);
    verdicts.push(r.steps.flatMap((st) => st.results.map((x) => x.allowed)));
    rows.push(e.l7Table('x/a').map((row) => `${row.redirect.parser} ${row.redirect.port}/${row.redirect.portPrefixLen} ${JSON.stringify(row.portRange ?? null)} ${JSON.stringify(row.policy)}`).sort());
  }
  return { verdicts, rows };
}

describe('33v. a narrower plain key inside a redirect closed by a shared proxy ID', () => {
  it('gets no row in the exported table while the ID is shared, its allow-all row once it is not', () => {
    const closedRows: string[] = [];
    const openRows = ['http 54/15 null {"allowAll":false,"rules":{"parser":"http","http":[{"method":"GET"}]}}', 'http 54/15 {"port":54,"endPort":54} {"allowAll":true}'];
    const closedThenOpen = run(scenario(true));
    expect(closedThenOpen.verdicts).toEqual([[false, false], [true, true]]);
    expect(closedThenOpen.rows).toEqual([closedRows, openRows]);
    const openThenClosed = run(scenario(false));
    expect(openThenClosed.verdicts).toEqual([[true, true], [false, false]]);
    expect(openThenClosed.rows).toEqual([openRows, closedRows]);
  });
});
