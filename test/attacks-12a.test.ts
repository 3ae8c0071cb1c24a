import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.js';
import { EngineDecider } from '../src/harness/engine-decider.js';
import { decideFlow } from '../src/naive/evaluator.js';
import { parseScenario } from '../src/scenario/format.js';
import { runScenario, scenarioEngineOptions } from '../src/scenario/run.js';

/*
 * Attack round 12a (docs/attack-findings-12a.md): features meeting at one (endpoint, peer, port).
 * Each scenario's expectations hold for the oracle and the engine, and both give the same verdict
 * on every probe. c-apiserver-dns-answer.yaml is finding 460 (the oracle let a toFQDNs allow and a
 * domainNames Accept select an API server address, whose identity has no fqdn labels).
 */
const DIR = 'fixtures/scenarios/attacks-12';

describe('attack round 12a scenarios', () => {
  const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml')).sort();
  it('has the round 12 scenarios', () => {
    expect(files).toEqual(expect.arrayContaining(['a-dns-answer-is-node.yaml', 'b-world-split.yaml', 'c-apiserver-dns-answer.yaml']));
  });
  for (const f of files) {
    it(f, () => {
      const scenario = parseScenario(readFileSync(`${DIR}/${f}`, 'utf8'), f);
      const naive = runScenario(scenario, decideFlow);
      const engine = runScenario(scenario, new EngineDecider(new Engine(scenarioEngineOptions(scenario))).decide);
      expect(naive.steps.flatMap((s) => s.mismatches)).toEqual([]);
      expect(engine.steps.flatMap((s) => s.mismatches)).toEqual([]);
      const verdicts = (r: typeof naive): string[] => r.steps.flatMap((s) => s.results.map((x) => `${x.from}->${x.to} ${x.port}/${x.protocol} ${x.allowed}`));
      expect(verdicts(engine)).toEqual(verdicts(naive));
    });
  }
});
