import fc from 'fast-check';
import { expect } from 'vitest';
import { parseIp } from '../../src/model/cidr.js';
import type { Pod } from '../../src/model/cluster.js';
import { Engine } from '../../src/engine/engine.js';
import type { EngineEvent } from '../../src/engine/events.js';
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

/** Each probe's egress verdict (server, port, parser, allowed), of one step or all. */
const stepVerdicts = (r: ScenarioRun, step?: number): string[] =>
  r.steps.filter((s) => step === undefined || s.step === step).flatMap((s) => s.results.map((x) => `${x.to} ${x.port} ${x.decision.egress?.l7?.parser ?? ''} ${x.allowed}`));

/**
 * The three-step `steps` decided alike by the oracle and the engine fed step by step, whose step 2 decides as a fresh
 * engine given `last` (the proxy-ID property tests); the oracle's verdicts.
 */
export function expectStepwiseAsFresh(steps: string, last: string, name: string): string[] {
  const { naive, engine } = runBoth(steps, name);
  expect(stepVerdicts(engine).map((v, i) => `${i} ${v}`), steps).toEqual(stepVerdicts(naive).map((v, i) => `${i} ${v}`));
  const fresh = runBoth(last, `${name}-last`);
  expect(stepVerdicts(engine, 2), last).toEqual(stepVerdicts(fresh.engine));
  expect(stepVerdicts(fresh.naive)).toEqual(stepVerdicts(fresh.engine));
  return stepVerdicts(naive);
}

/** x/a's egress policy `a` with `rules` (each a list of lines), the first line to follow a list dash, the rest indented by `indent`. */
export function egressPolicyA(ruleLines: readonly string[], indent: string): string {
  const lines = ['apiVersion: cilium.io/v2', 'kind: CiliumNetworkPolicy', 'metadata: {name: a, namespace: x}', 'spec:', '  endpointSelector: {matchLabels: {app: a}}', '  egress:', ...ruleLines.map((l) => `  ${l}`)];
  return lines.join(`\n${indent}`);
}

/** A local pod's upsert, `name` as namespace/name (proxy-id-31e.test.ts, named-filters-32d.test.ts). */
export const localPod = (name: string, labels: Record<string, string>, ip: string, ports: Pod['ports']): EngineEvent => ({
  type: 'upsertPod',
  pod: { namespace: name.split('/')[0]!, name: name.split('/')[1]!, labels, ip: parseIp(ip), serviceAccount: 'default', ports },
  local: true,
});

/*
 * The proxy-ID property tests' scenarios (proxy-id-31e, named-filters-32d): three kube-system servers naming 53 or
 * 54/TCP n1 or n2, rules on the filter keys n1, n2 and "53", each key with one parser per scenario.
 */
export const PROXY_ID_REPLAY = process.env.DISTILL_SEED ? { seed: Number(process.env.DISTILL_SEED), ...(process.env.DISTILL_PATH ? { path: process.env.DISTILL_PATH } : {}) } : {};
export const PROXY_ID_KEYS = ['n1', 'n2', '53'] as const;
export const SERVERS = ['s0', 's1', 's2'] as const;
export type ProxyIdParser = 'http' | 'dns';
export const serverPortArb = fc.record({ name: fc.constantFrom('n1', 'n2'), port: fc.constantFrom(53, 53, 54) });
type ServerPort = { readonly name: string; readonly port: number };
type ProxyIdRule = { readonly peer: string | null; readonly port: (typeof PROXY_ID_KEYS)[number]; readonly l7: 0 | 1 | 2 };

/** Server `i` with its named TCP ports, as a scenario's pod line. */
export const serverLine = (i: number, ps: readonly ServerPort[]): string =>
  `{name: kube-system/${SERVERS[i]}, labels: {app: ${SERVERS[i]}}, ip: 10.96.0.${10 + i}, ports: [${ps.map((p) => `{name: ${p.name}, port: ${p.port}, protocol: TCP}`).join(', ')}]}`;

/** One egress rule of x/a: plain (`l7` 0) or its key's parser's rule (HTTP GET / POST, DNS good / other.example). */
export function proxyIdRuleLines(parsers: readonly ProxyIdParser[], r: ProxyIdRule): string[] {
  const peer = `{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system${r.peer ? `, k8s:app: ${r.peer}` : ''}}}`;
  const parser = parsers[PROXY_ID_KEYS.indexOf(r.port)];
  const l7 = r.l7 === 0 ? '' : parser === 'http' ? `, rules: {http: [{method: ${r.l7 === 1 ? 'GET' : 'POST'}}]}` : `, rules: {dns: [{matchName: ${r.l7 === 1 ? 'good' : 'other'}.example}]}`;
  return [`  - toEndpoints: [${peer}]`, `    toPorts: [{ports: [{port: "${r.port}", protocol: TCP}]${l7}}]`];
}
