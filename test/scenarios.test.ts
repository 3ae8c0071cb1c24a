import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EngineDecider } from '../src/harness/engine-decider.js';
import { Engine } from '../src/engine/engine.js';
import { decideFlow } from '../src/naive/evaluator.js';
import { parseScenario } from '../src/scenario/format.js';
import { runScenario, scenarioEngineOptions } from '../src/scenario/run.js';

function files(dir: string): string[] {
  return readdirSync(dir).sort().flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.yaml') ? [p] : [];
  });
}

/** The network-policy-api corpus (all 22 through the engine) runs in test/network-policy-api.test.ts; the fqdn corpus runs in test/fqdn.test.ts. */
const TIERED = 'fixtures/scenarios/network-policy-api';
const corpus = files('fixtures/scenarios').filter((f) => !f.startsWith(TIERED) && !f.includes('/fqdn/'));

describe('scenario corpus (naive evaluator and engine)', () => {
  it('has the upstream e2e suite and the Cilium examples', () => {
    expect(corpus.filter((f) => f.includes('k8s-e2e')).length).toBeGreaterThanOrEqual(40);
    expect(corpus.filter((f) => f.includes('cilium-docs')).length).toBeGreaterThanOrEqual(8);
  });
  for (const file of corpus) {
    it(file, () => {
      const scenario = parseScenario(readFileSync(file, 'utf8'), file);
      const checked = scenario.steps.reduce((n, s) => n + s.expect.length, 0);
      expect(checked).toBeGreaterThan(0);
      const naive = runScenario(scenario, decideFlow);
      const engine = runScenario(scenario, new EngineDecider(new Engine(scenarioEngineOptions(scenario))).decide);
      expect(naive.steps.flatMap((s) => s.mismatches)).toEqual([]);
      expect(engine.steps.flatMap((s) => s.mismatches)).toEqual([]);
      const verdicts = (r: typeof naive) => r.steps.flatMap((s) => s.results.map((x) => `${x.from}->${x.to} ${x.port}/${x.protocol} ${x.allowed} ${x.proxied}`));
      expect(verdicts(engine)).toEqual(verdicts(naive));
    });
  }
});

describe('probe requests', () => {
  const probe = (p: string) => parseScenario(`pods: [{name: a/b}]\nsteps: [{probes: [${p}]}]\n`, 's.yaml').steps[0]!.probes[0]!;
  it('reads HTTP, Kafka and DNS requests in their accepted forms', () => {
    expect(probe('{port: 80, http: {path: /x}}').request).toEqual({ http: { method: 'GET', path: '/x' } });
    expect(probe('{port: 80, http: {method: PUT, headers: ["X-A: 1", "X-B:two"]}}').request).toEqual({ http: { method: 'PUT', path: '/', headers: { 'X-A': '1', 'X-B': 'two' } } });
    expect(probe('{port: 80, http: {headers: {X-A: "1"}, host: h}}').request).toEqual({ http: { method: 'GET', path: '/', host: 'h', headers: { 'X-A': '1' } } });
    expect(probe('{port: 9092, kafka: {apiKey: Produce, topic: t}}').request).toEqual({ kafka: { apiKey: 'produce', topic: 't' } });
    expect(probe('{port: 9092, kafka: {apiKey: 3}}').request).toEqual({ kafka: { apiKey: 'metadata' } });
    expect(probe('{port: 9092, kafka: {role: consume, topic: t, apiVersion: "2", clientID: c}}').request).toEqual({ kafka: { apiKey: 'fetch', topic: 't', apiVersion: 2, clientID: 'c' } });
    expect(probe('{port: 53, protocol: UDP, dns: {name: a.io}}').request).toEqual({ dns: { name: 'a.io' } });
    expect(probe('{port: 53}').request).toBeUndefined();
  });
  it('reads protocols in any case and ports written as numeric strings', () => {
    const p = probe('{port: "8080", protocol: udp}');
    expect([p.port, p.protocol]).toEqual([8080, 'UDP']);
    expect(probe('{port: 8, protocol: icmpv6}').protocol).toBe('ICMPv6');
    const s = parseScenario('pods: [{name: a/b, ports: [{port: "53", protocol: udp}]}]\n', 's.yaml');
    const pod = s.setup.find((c) => c.op === 'addPod');
    expect(pod && pod.op === 'addPod' ? pod.pod.ports : []).toEqual([{ port: 53, protocol: 'UDP' }]);
    expect(() => probe('{port: "eighty"}')).toThrow('steps[0].probes[0].port');
    expect(() => probe('{port: 80, protocol: http}')).toThrow('steps[0].probes[0].protocol');
  });
  it('refuses bad requests naming the field', () => {
    expect(() => probe('{port: 80, http: {path: /x}, dns: {name: a}}')).toThrow('s.yaml steps[0].probes[0]: a probe carries one request, not http and dns');
    expect(() => probe('{port: 80, http: {verb: GET}}')).toThrow('steps[0].probes[0].http');
    expect(() => probe('{port: 80, http: {headers: ["nocolon"]}}')).toThrow('steps[0].probes[0].http.headers[0]: "nocolon" is not "Name: value"');
    expect(() => probe('{port: 80, kafka: {apiKey: 99}}')).toThrow('steps[0].probes[0].kafka.apiKey');
    expect(() => probe('{port: 80, kafka: {apiKey: produce, role: produce}}')).toThrow('give apiKey or role, not both');
    expect(() => probe('{port: 80, dns: {}}')).toThrow('steps[0].probes[0].dns.name');
  });
});
