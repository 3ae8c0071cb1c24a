import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EngineDecider } from '../../src/harness/engine-decider.js';
import { Engine } from '../../src/engine/engine.js';
import { decideFlow } from '../../src/naive/evaluator.js';
import { parseScenario } from '../../src/scenario/format.js';
import { runScenario, ScenarioRun } from '../../src/scenario/run.js';

/** Scenarios pinning how distill reads policies as Cilium and Kubernetes do (issues 12 and 21). */
const dir = 'test/fidelity';
const files = readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort();

function run(file: string): { naive: ScenarioRun; engine: ScenarioRun } {
  const scenario = parseScenario(readFileSync(join(dir, file), 'utf8'), file);
  return { naive: runScenario(scenario, decideFlow), engine: runScenario(scenario, new EngineDecider(new Engine()).decide) };
}

const verdicts = (r: ScenarioRun) => r.steps.flatMap((s) => s.results.map((x) => `${x.from}->${x.to} ${x.port}/${x.protocol} ${x.allowed} ${x.proxied}`));

describe('fidelity scenarios (naive evaluator and engine agree with Cilium)', () => {
  for (const file of files) {
    it(file, () => {
      const { naive, engine } = run(file);
      expect(naive.steps.flatMap((s) => s.mismatches)).toEqual([]);
      expect(engine.steps.flatMap((s) => s.mismatches)).toEqual([]);
      expect(verdicts(engine)).toEqual(verdicts(naive));
    });
  }
  it('empty L7 lists are not redirected; http: [{}] is', () => {
    const { naive } = run('empty-l7.yaml');
    const proxied = naive.steps[0]!.results.map((x) => x.proxied);
    expect(proxied).toEqual([false, false, false, true]);
  });
});
