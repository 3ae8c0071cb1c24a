import { Engine } from '../../src/engine/engine.js';
import { EngineDecider } from '../../src/harness/engine-decider.js';
import { decideFlow } from '../../src/naive/evaluator.js';
import { parseScenario } from '../../src/scenario/format.js';
import { runScenario, scenarioEngineOptions, type ScenarioRun } from '../../src/scenario/run.js';

/**
 * x/a's verdict on a DNS query for `name` to `server` on 53/UDP: undefined when no entry admits the flow, true for a
 * plain allow, else the proxy's (dns-filters-31a.test.ts, dns-filters-31d.test.ts).
 */
export function dnsVerdict(e: Engine, server: string, name: string): boolean | undefined {
  const id = e.identityOfPod(server)!;
  const port = e.lookup('x/a', id, 'egress', 17, 53)?.entry.proxyPort;
  if (port === undefined) return undefined;
  return port === 0 || (e.l7Verdict('x/a', port, id, { dns: { name } }, 53)?.allowed ?? false);
}

/** x/a's L7 rows by the server's pod name among `names` (identity numbers depend on the order pods came in). */
export function namedRows(e: Engine, names: readonly string[]): unknown[] {
  const byId = new Map(names.map((n) => [e.identityOfPod(`kube-system/${n}`), n]));
  return e.l7Table('x/a').map((r) => [byId.get(r.peer) ?? r.peer, r.policy]).sort((a, b) => String(a[0]).localeCompare(String(b[0])));
}

/**
 * A two-step scenario of x/a egress (dns-filters-31a and proxy-id-31e property tests): `pods` (kube-system servers) and
 * `policy(indent)`, then one server re-added as `moved` and `kept(indent)` applied; `probes` at both steps.
 */
export function twoStepScenario(pods: readonly string[], policy: (indent: string) => string, moved: string, kept: (indent: string) => string, probes: readonly string[]): string {
  return [
    'namespaces: [{name: x}, {name: kube-system}]',
    'pods:',
    '  - {name: x/a, labels: {app: a}}',
    ...pods.map((p) => `  - ${p}`),
    'policies:',
    `  - ${policy('    ')}`,
    'steps:',
    '  - probes:',
    ...probes,
    '  - changes:',
    `      - {addPod: ${moved}}`,
    `      - apply:\n          ${kept('          ')}`,
    '    probes:',
    ...probes,
  ].join('\n');
}

/** A scenario's text run through the oracle and through a fresh engine. */
export function runBoth(text: string, name: string): { naive: ScenarioRun; engine: ScenarioRun } {
  const s = parseScenario(text, name);
  return { naive: runScenario(s, decideFlow), engine: runScenario(s, new EngineDecider(new Engine(scenarioEngineOptions(s))).decide) };
}

/** x/a's egress policy `a` with `rules` (each a list of lines), the first line to follow a list dash, the rest indented by `indent`. */
export function egressPolicyA(ruleLines: readonly string[], indent: string): string {
  const lines = ['apiVersion: cilium.io/v2', 'kind: CiliumNetworkPolicy', 'metadata: {name: a, namespace: x}', 'spec:', '  endpointSelector: {matchLabels: {app: a}}', '  egress:', ...ruleLines.map((l) => `  ${l}`)];
  return lines.join(`\n${indent}`);
}
