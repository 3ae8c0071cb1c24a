import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EngineDecider } from '../src/harness/engine-decider.js';
import { Engine } from '../src/engine/engine.js';
import { decideFlow } from '../src/naive/evaluator.js';
import { parseManifestFile } from '../src/policy/manifest.js';
import { parseScenario } from '../src/scenario/format.js';
import { runScenario } from '../src/scenario/run.js';

/**
 * The attack corpus (fixtures/scenarios/attacks-2/, run by test/scenarios.test.ts through the
 * oracle and the engine; its fqdn/ part, which the Kubernetes-adapter test cannot feed, here):
 * every scenario cites the Cilium or Kubernetes source of its verdict. Here also: that citation
 * rule, and the refusals that go with the scenarios.
 */
const DIR = 'fixtures/scenarios/attacks-2';
const FQDN = `${DIR}/fqdn`;
const SOURCE = /\.go\b|pkg\/|kubernetes\.io|Cilium 1\.\d+/;

const cnpPort = (port: string): string => `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingressDeny:
    - fromEndpoints: [{matchLabels: {app: client}}]
      toPorts: [{ports: [{port: "${port}", protocol: TCP}]}]
`;

describe('attacks-2 corpus', () => {
  it('has scenarios, each citing its source', () => {
    const files = [...readdirSync(DIR).map((f) => join(DIR, f)), ...readdirSync(FQDN).map((f) => join(FQDN, f))].filter((f) => f.endsWith('.yaml'));
    expect(files.length).toBeGreaterThanOrEqual(5);
    for (const f of files) expect(readFileSync(f, 'utf8'), f).toMatch(SOURCE);
  });
  for (const f of readdirSync(FQDN).filter((x) => x.endsWith('.yaml'))) {
    it(`${FQDN}/${f}: oracle and engine meet every expectation and agree`, () => {
      const scenario = parseScenario(readFileSync(join(FQDN, f), 'utf8'), f);
      const naive = runScenario(scenario, decideFlow);
      const engine = runScenario(scenario, new EngineDecider(new Engine()).decide);
      expect(naive.steps.flatMap((s) => s.mismatches)).toEqual([]);
      expect(engine.steps.flatMap((s) => s.mismatches)).toEqual([]);
      expect(scenario.steps.reduce((n, s) => n + s.expect.length, 0)).toBeGreaterThan(0);
    });
  }
  it('reads CNP port strings as Go base 0 (leading 0 = octal) and refuses what Go refuses', () => {
    const port = (p: string) => {
      const [policy] = parseManifestFile(cnpPort(p), 'p.yaml');
      return JSON.stringify(policy).match(/"from":(\d+),"to":(\d+)/)?.slice(1).map(Number);
    };
    expect(port('010')).toEqual([8, 8]);
    expect(port('0')).toEqual([0, 0]);
    expect(port('00')).toEqual([0, 0]);
    expect(port('80')).toEqual([80, 80]);
    expect(port('0177777')).toEqual([65535, 65535]);
    expect(() => port('08')).toThrow(/ports\[0\]\.port: "08" is not a port number: Cilium reads a leading 0 as octal/);
    expect(() => port('0200000')).toThrow(/ports\[0\]\.port: 0200000 is above 65535/);
  });
});
