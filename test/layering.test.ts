import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The data flow runs one way (docs/architecture.md): model ← policy, engine ← backend (delta types
 * only) ← node, harness, churn, scenario, cli. This test reads every import in src/ and fails on
 * one that points the wrong way.
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
};

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:from|import)\s*'(\.{1,2}\/[^']+)'/g)].map((m) => relative('src', resolve(file, '..', (m[1] as string).replace(/\.js$/, '.ts'))));
}

describe('layering', () => {
  for (const [layer, allowed] of Object.entries(ALLOWED)) {
    it(`src/${layer} imports only ${allowed.join(', ')}`, () => {
      const wrong: string[] = [];
      for (const f of files(join('src', layer))) {
        for (const target of importsOf(f)) {
          const ok = allowed.some((a) => (a.endsWith('.ts') ? target === a : target.startsWith(`${a}/`)));
          if (!ok) wrong.push(`${f} imports src/${target}`);
        }
      }
      expect(wrong).toEqual([]);
    });
  }
  it('the rule really reads imports', () => {
    expect(importsOf('src/engine/engine.ts')).toContain('model/rules.ts');
  });
});
