import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
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

describe('scenario corpus (naive evaluator)', () => {
  it('has the upstream e2e suite and the Cilium examples', () => {
    expect(corpus.filter((f) => f.includes('k8s-e2e')).length).toBeGreaterThanOrEqual(40);
    expect(corpus.filter((f) => f.includes('cilium-docs')).length).toBeGreaterThanOrEqual(8);
  });
  for (const file of corpus) {
    it(file, () => {
      const run = runScenario(parseScenario(readFileSync(file, 'utf8'), file), decideFlow);
      const checked = run.scenario.steps.reduce((n, s) => n + s.expect.length, 0);
      expect(checked).toBeGreaterThan(0);
      expect(run.steps.flatMap((s) => s.mismatches)).toEqual([]);
    });
  }
});
