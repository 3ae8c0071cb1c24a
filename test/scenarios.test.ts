import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EngineDecider } from '../src/engine/decide.js';
import { Engine } from '../src/engine/engine.js';
import { decideFlow } from '../src/naive/evaluator.js';
import { parseScenario } from '../src/scenario/format.js';
import { runScenario } from '../src/scenario/run.js';

function files(dir: string): string[] {
  return readdirSync(dir).sort().flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.yaml') ? [p] : [];
  });
}

const corpus = files('fixtures/scenarios');

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
      const engine = runScenario(scenario, new EngineDecider(new Engine()).decide);
      expect(naive.steps.flatMap((s) => s.mismatches)).toEqual([]);
      expect(engine.steps.flatMap((s) => s.mismatches)).toEqual([]);
      const verdicts = (r: typeof naive) => r.steps.flatMap((s) => s.results.map((x) => `${x.from}->${x.to} ${x.port}/${x.protocol} ${x.allowed} ${x.proxied}`));
      expect(verdicts(engine)).toEqual(verdicts(naive));
    });
  }
});
