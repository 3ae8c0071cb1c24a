import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The data flow runs one way (docs/architecture.md, "Layering"): model ← policy, naive, engine ←
 * backend (delta types only) ← node, harness, churn, scenario, explain ← agent, datapath ← cluster ←
 * cli. This test reads every import in src/ (static, re-export, dynamic `import()`) and fails on one that points the
 * wrong way, or on a package a layer has no reason to load (PACKAGES): only the CLI
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

/** The engine's stage files and their shared context (docs/architecture.md, "Stage contracts"). */
const ENGINE_STAGE_FILES = ['context', 'pod-table', 'node-table', 'identities', 'named-ports', 'cilium-endpoints', 'selector-cache', 'policy-resolver', 'shared-maps', 'map-state', 'l7-tables', 'network-splits', 'fqdn-stage', 'cidr-groups', 'commit', 'explain', 'engine'].map((f) => `engine/${f}.ts`);

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
  // `maps clean` asks the backend to remove its pins (`removeDistillMaps`): the ipcache's pin layout is the backend's.
  'cli/views.ts': ['backend/ipcache.ts', 'backend/bpf-syscall.ts', 'naive', 'harness'],
  'scenario/format.ts': ['engine', 'harness'],
  'scenario/run.ts': ['engine', 'harness'],
  'scenario/probes.ts': ['engine', 'harness'],
  'scenario/compare.ts': ['engine', 'harness'],
  // Stage contracts: validation runs before the transaction and touches no stage; the node table never touches a
  // policy map; the selector cache is an index of identities and selectors that knows no other stage.
  'engine/validate.ts': ENGINE_STAGE_FILES,
  'engine/node-table.ts': ['engine/shared-maps.ts', 'engine/map-state.ts', 'engine/policy-resolver.ts', 'engine/commit.ts'],
  'engine/selector-cache.ts': ENGINE_STAGE_FILES,
  // The held forms choose what an object is held at; the batch queue that sends them (engine-batches.ts, the mirror)
  // and the engine events they become (held-events.ts) are their callers' (src/k8s/held-forms.ts, its contract).
  'k8s/held-forms.ts': ['k8s/engine-batches.ts', 'k8s/mirror.ts', 'k8s/held-events.ts', 'engine'],
};

/** Every module specifier of a file: static imports and re-exports (`from '…'`, `import '…'`) and dynamic `import('…')`. */
function specifiersOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const statements = text.matchAll(/^\s*(?:import\s*|(?:import|export)\b[^;'`]*?\bfrom\s*)'([^']+)'/gm);
  const dynamic = text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g);
  return [...statements, ...dynamic].map((m) => m[1] as string);
}

function importsOf(file: string): string[] {
  return specifiersOf(file)
    .filter((s) => /^\.{1,2}\//.test(s))
    .map((s) => relative('src', resolve(file, '..', s.replace(/\.js$/, '.ts'))));
}

/**
 * The packages (npm and `node:` builtins) each layer may import (docs/architecture.md, "Layering"): the model,
 * the oracle and the engine hold no I/O (the engine never logs: pino is the agent's), the memory-only layers none
 * at all; a new one is a decision to record there. The CLI may import anything.
 */
const PACKAGES: Readonly<Record<string, readonly string[]>> = {
  model: ['ipaddr.js', 're2js'],
  policy: ['yaml'],
  naive: [],
  engine: ['mnemonist'],
  backend: ['koffi', 'node:fs', 'node:os', 'node:path'],
  kvstore: ['etcd3', 'cockatiel'],
  k8s: [],
  node: [],
  harness: [],
  scenario: [],
  churn: ['node:v8'],
  explain: [],
  agent: ['etcd3', 'pino', 'prom-client', 'node:fs', 'node:http', 'node:net', 'node:stream'],
  datapath: ['node:child_process', 'node:crypto', 'node:fs', 'node:path', 'node:url'],
  cluster: ['node:child_process', 'node:fs', 'node:net', 'node:os', 'node:path', 'pino', 'prom-client'],
};

function packageViolations(layer: string, allowed: readonly string[]): string[] {
  return files(join('src', layer)).flatMap((f) =>
    specifiersOf(f)
      .filter((s) => !/^\.{1,2}\//.test(s) && !allowed.includes(s))
      .map((s) => `${f} imports ${s}`),
  );
}

/** The engine's stage classes (docs/architecture.md, "Stage contracts"): one wiring place, `Engine.resetStages()`. */
const STAGES = ['SelectorCache', 'IdentityTable', 'SharedMaps', 'PolicyResolver', 'CiliumEndpoints', 'PodTable', 'NodeTable', 'NetworkSplits', 'FqdnStage', 'IpcacheView', 'Commit', 'CidrGroupTable', 'EngineQueries'];

/**
 * Plain data and pure functions (docs/architecture.md: `src/model/`; the DNS stage never reads the wall clock; the
 * engine never logs; the oracle is deterministic): no clock, randomness, timers, process or console.
 */
const PURE = ['model', 'naive', 'engine'];
const IMPURE = /\b(?:Date\.now|new Date\b|performance\.now|Math\.random|process\.|console\.|setTimeout|setInterval|setImmediate|queueMicrotask)/;

function impureLines(layer: string): string[] {
  return files(join('src', layer)).flatMap((f) =>
    readFileSync(f, 'utf8')
      .split('\n')
      .flatMap((line, i) => (IMPURE.test(line.replace(/\/\/.*$/, '').replace(/^\s*\*.*$/, '')) ? [`${f}:${i + 1}: ${line.trim()}`] : [])),
  );
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
      const hit = (t: string): boolean => forbidden.some((x) => (x.endsWith('.ts') ? t === x : t.startsWith(`${x}/`)));
      expect(importsOf(join('src', file)).filter(hit)).toEqual([]);
    });
  }
  for (const [layer, allowed] of Object.entries(PACKAGES)) {
    it(`src/${layer} imports no package but ${allowed.join(', ') || 'none'}`, () => {
      expect(packageViolations(layer, allowed)).toEqual([]);
    });
  }
  for (const layer of PURE) {
    it(`src/${layer} reads no clock, randomness, timer, process or console`, () => {
      expect(impureLines(layer)).toEqual([]);
    });
  }
  it('the engine stages are constructed only in Engine.resetStages (docs/architecture.md, "Stage contracts")', () => {
    const built = new RegExp(`\\bnew (?:${STAGES.join('|')})\\(`);
    const outside = files('src').flatMap((f) =>
      readFileSync(f, 'utf8')
        .split('\n')
        .flatMap((line, i) => (built.test(line) ? [`${f}:${i + 1}`] : [])),
    );
    const engine = readFileSync('src/engine/engine.ts', 'utf8');
    const body = /\n  private resetStages\(\): void \{\n([\s\S]*?)\n  \}\n/.exec(engine)?.[1] ?? '';
    const inside = body.split('\n').filter((l) => built.test(l)).length;
    expect(outside).toHaveLength(inside);
    expect(STAGES.filter((c) => !new RegExp(`\\bnew ${c}\\(`).test(body))).toEqual([]);
  });
  it('every folder of src/ has a rule', () => {
    const folders = readdirSync('src').filter((e) => statSync(join('src', e)).isDirectory());
    expect(folders.filter((f) => !(f in ALLOWED))).toEqual([]);
    expect(folders.filter((f) => f !== 'cli' && !(f in PACKAGES))).toEqual([]);
  });
  it('the rule really reads imports', () => {
    expect(importsOf('src/engine/engine.ts')).toContain('model/rules.ts');
    expect(violations('cli', ['model'])).not.toEqual([]);
    // Dynamic imports count (the CLI loads the agent, cluster and kvstore layers lazily).
    expect(importsOf('src/cli/cluster.ts')).toContain('cluster/etcd.ts');
    expect(packageViolations('agent', [])).toContain('src/agent/agent.ts imports pino');
    expect(packageViolations('cli', [])).toContain('src/cli/agent.ts imports prom-client');
    expect(impureLines('agent')).not.toEqual([]);
  });
});
