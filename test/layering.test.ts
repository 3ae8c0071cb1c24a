import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The data flow runs one way (docs/architecture.md, "Layering"): model ← policy, naive, engine ←
 * backend (delta types only) ← node, harness, churn, scenario, explain ← agent, datapath ← cluster ←
 * cli. This test reads every import in src/ and fails on one that points the wrong way: only the CLI
 * may import the CLI, and the oracle (naive) is imported only by explain and the CLI, which compare
 * the engine with it. The CLI parses and prints: its per-command files that explain (plan, trace)
 * leave the computing (engine, oracle, harness) to src/explain, and take a scenario's engine from
 * src/scenario/engine.ts; reach, verify and maps dump take theirs, backed by a map backend, from
 * src/datapath/backend-engine.ts.
 */
function files(dir: string): string[] {
  return readdirSync(dir).flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Where each file of a layer may import from (folders under src/, or single files). */
const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  model: ['model'],
  policy: ['policy', 'model'],
  naive: ['naive', 'model'],
  engine: ['engine', 'model'],
  backend: ['backend', 'model', 'engine/events.ts'],
  kvstore: ['kvstore'],
  k8s: ['k8s', 'policy', 'model', 'engine/events.ts'],
  node: ['node', 'backend', 'engine', 'model'],
  // The oracle's DNS learning steps the model's DNS cache (src/naive/dns-learning.ts): nothing else of the oracle.
  harness: ['harness', 'engine', 'model', 'naive/dns-learning.ts'],
  // The runner takes its flow decider as a parameter; scenario/engine.ts builds the engine one (NARROWER below).
  scenario: ['scenario', 'harness', 'engine', 'policy', 'model', 'naive/dns-learning.ts'],
  churn: ['churn', 'harness', 'backend', 'engine', 'policy', 'model'],
  explain: ['explain', 'scenario', 'harness', 'naive', 'engine', 'model', 'backend/record-json.ts'],
  agent: ['agent', 'node', 'k8s', 'kvstore', 'backend', 'engine', 'policy', 'model', 'churn/warm-up.ts'],
  datapath: ['datapath', 'node', 'harness', 'backend', 'engine', 'model'],
  cluster: ['cluster', 'agent', 'churn', 'k8s', 'kvstore', 'backend', 'model'],
  cli: ['cli', 'cluster', 'datapath', 'agent', 'explain', 'churn', 'scenario', 'harness', 'node', 'k8s', 'kvstore', 'backend', 'naive', 'engine', 'policy', 'model'],
};

/**
 * Files held to less than their folder: what they may not import. The CLI files that only parse and
 * print; the scenario format and runner, which know no engine (the runner is given its decider).
 */
const NARROWER: Readonly<Record<string, readonly string[]>> = {
  'cli/plan.ts': ['engine', 'naive', 'harness'],
  'cli/trace.ts': ['engine', 'naive', 'harness'],
  'cli/validate.ts': ['engine', 'naive', 'harness'],
  'cli/gen.ts': ['engine', 'naive', 'harness'],
  // The scenario commands take their backend-backed engine from src/datapath/backend-engine.ts.
  'cli/reach.ts': ['engine', 'harness'],
  'cli/verify.ts': ['engine', 'harness'],
  'cli/maps-dump.ts': ['engine', 'naive', 'harness'],
  'scenario/format.ts': ['engine', 'harness'],
  'scenario/run.ts': ['engine', 'harness'],
  'scenario/probes.ts': ['engine', 'harness'],
  'scenario/compare.ts': ['engine', 'harness'],
};

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:from|import)\s*'(\.{1,2}\/[^']+)'/g)].map((m) => relative('src', resolve(file, '..', (m[1] as string).replace(/\.js$/, '.ts'))));
}

function violations(layer: string, allowed: readonly string[]): string[] {
  const wrong: string[] = [];
  for (const f of files(join('src', layer))) {
    for (const target of importsOf(f)) {
      const ok = allowed.some((a) => (a.endsWith('.ts') ? target === a : target.startsWith(`${a}/`)));
      if (!ok) wrong.push(`${f} imports src/${target}`);
    }
  }
  return wrong;
}

describe('layering', () => {
  for (const [layer, allowed] of Object.entries(ALLOWED)) {
    it(`src/${layer} imports only ${allowed.join(', ')}`, () => {
      expect(violations(layer, allowed)).toEqual([]);
    });
  }
  for (const [file, forbidden] of Object.entries(NARROWER)) {
    it(`src/${file} imports none of ${forbidden.join(', ')}`, () => {
      expect(importsOf(join('src', file)).filter((t) => forbidden.some((x) => t.startsWith(`${x}/`)))).toEqual([]);
    });
  }
  it('every folder of src/ has a rule', () => {
    const folders = readdirSync('src').filter((e) => statSync(join('src', e)).isDirectory());
    expect(folders.filter((f) => !(f in ALLOWED))).toEqual([]);
  });
  it('the rule really reads imports', () => {
    expect(importsOf('src/engine/engine.ts')).toContain('model/rules.ts');
    expect(violations('cli', ['model'])).not.toEqual([]);
  });
});
