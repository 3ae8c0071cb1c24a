import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.js';
import { EngineDecider } from '../src/harness/engine-decider.js';
import { decideFlow } from '../src/naive/evaluator.js';
import { parseScenario } from '../src/scenario/format.js';
import { runScenario, scenarioEngineOptions } from '../src/scenario/run.js';

const FILE = process.env.NODES_SCENARIO ?? 'fixtures/scenarios/nodes/node-identities.yaml';
const verdicts = (r: ReturnType<typeof runScenario>): string[] => r.steps.flatMap((s) => s.results.map((x) => `${x.from}->${x.to} ${x.port} ${x.allowed ? 'allow' : 'deny'}`));

describe('nodes (reserved host / remote-node, never world)', () => {
  const scenario = parseScenario(readFileSync(FILE, 'utf8'), FILE);

  it('the oracle: world and CIDR rules do not admit nodes; host, remote-node, cluster and all do', () => {
    const run = runScenario(scenario, decideFlow);
    expect(run.steps.flatMap((s) => s.mismatches)).toEqual([]);
    const v = verdicts(run);
    expect(v).toContain('node:n2->default/web 80 deny');
    expect(v).toContain('outside->default/web 80 allow');
    expect(v).toContain('node:n2->default/web 82 allow');
    expect(v).toContain('node:n1->default/web 83 allow');
    expect(v).toContain('default/client->node:n2 443 deny');
    // After n2 is deleted its old address is world again.
    expect(v).toContain('192.168.1.2->default/web 80 allow');
  });

  it('the engine agrees: node addresses are ipcache host entries with identity 1 (own node) or 6', () => {
    const engine = new Engine(scenarioEngineOptions(scenario));
    const run = runScenario(scenario, new EngineDecider(engine).decide);
    expect(run.steps.flatMap((s) => s.mismatches)).toEqual([]);
    expect(verdicts(run)).toEqual(verdicts(runScenario(scenario, decideFlow)));
    const ipcache = new Map(engine.ipcache().map((e) => [e.prefix, e.identity]));
    expect(ipcache.get('192.168.1.1/32')).toBe(1);
    expect(ipcache.get('192.168.1.3/32')).toBe(6);
    expect(ipcache.has('192.168.1.2/32')).toBe(false);
  });

  it('reads nodes, node changes and node probe ends, naming the field on errors', () => {
    const s = parseScenario('nodes: [{name: a, ips: [10.1.0.1], local: true}]\nsteps: [{changes: [{deleteNode: a}, {addNode: {name: b, ips: ["fd00::1"]}}], probes: [{from: {node: b}, to: {ip: 10.1.0.1}, port: 1}]}]\n', 's.yaml');
    expect(s.setup[0]).toMatchObject({ op: 'addNode', name: 'a', local: true });
    expect(s.steps[0]?.changes.map((c) => c.op)).toEqual(['deleteNode', 'addNode']);
    expect(s.steps[0]?.probes[0]?.from).toBe('node:b');
    expect(() => parseScenario('nodes: [{name: a, ips: []}]\n', 's.yaml')).toThrow('nodes[0].ips');
    expect(() => parseScenario('nodes: [{name: a, ips: [x]}]\n', 's.yaml')).toThrow('nodes[0].ips[0]');
    expect(() => parseScenario('nodes: [{name: A_, ips: [10.0.0.1]}]\n', 's.yaml')).toThrow('nodes[0].name');
    expect(() => parseScenario('steps: [{probes: [{from: {node: zz}, to: a/b, port: 1}]}]\npods: [{name: a/b}]\n', 's.yaml')).not.toThrow();
    const missing = parseScenario('pods: [{name: a/b}]\nsteps: [{probes: [{from: {node: zz}, to: a/b, port: 1}]}]\n', 's.yaml');
    expect(() => runScenario(missing, decideFlow)).toThrow('steps[0].probes[0].from: no node named "zz"');
  });
});
