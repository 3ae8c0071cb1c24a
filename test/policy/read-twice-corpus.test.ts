import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseManifest } from '../../src/policy/manifest.js';
import { forgetParsedSelectors } from '../../src/policy/selector.js';
import { loadYamlDocuments } from '../../src/policy/yaml.js';

/**
 * The parser caches successful selector parses (src/policy/selector.ts) and defers what distill does not read
 * (Reader.unsupported): reading each policy of the conformance corpus forwards, again, and backwards from an empty
 * cache must give the same result, rules or error, every time (attack findings 1768, 1830, 1831).
 */
const POLICY_KINDS = ['NetworkPolicy', 'CiliumNetworkPolicy', 'CiliumClusterwideNetworkPolicy', 'ClusterNetworkPolicy'];

function files(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).sort().flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? files(p) : /\.ya?ml$/.test(p) ? [p] : [];
  });
}

/** Every object in a document whose kind is a policy kind (scenarios hold them at any depth). */
function policies(v: unknown, out: unknown[]): void {
  if (Array.isArray(v)) for (const x of v) policies(x, out);
  else if (typeof v === 'object' && v !== null) {
    if (POLICY_KINDS.includes((v as Record<string, unknown>).kind as string)) out.push(v);
    else for (const x of Object.values(v)) policies(x, out);
  }
}

function outcome(doc: unknown, options: { nodeSelectorLabels?: boolean }): string {
  try {
    const p = parseManifest(doc, 'corpus', options);
    return JSON.stringify({ rules: p.rules, enforcements: p.enforcements, tiered: p.tiered, warnings: p.warnings }, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x));
  } catch (e) {
    return `error: ${String(e)}`;
  }
}

describe('every corpus policy reads the same forwards, twice and backwards', () => {
  // About 10 s of CPU (the corpus's YAML, then six reads of 2,900 policies): a generous timeout for a loaded machine.
  it('for each agent option set', { timeout: 600_000 }, () => {
    const docs: unknown[] = [];
    for (const f of files('fixtures/conformance')) {
      try {
        for (const { value } of loadYamlDocuments(readFileSync(f, 'utf8'), f)) policies(value, docs);
      } catch {
        // a refusal of the YAML itself holds no policy to read
      }
    }
    expect(docs.length).toBeGreaterThan(1000);
    for (const options of [{}, { nodeSelectorLabels: true }]) {
      forgetParsedSelectors();
      const first = docs.map((d) => outcome(d, options));
      const again = docs.map((d) => outcome(d, options));
      forgetParsedSelectors();
      const backwards = [...docs].reverse().map((d) => outcome(d, options)).reverse();
      for (let i = 0; i < docs.length; i++) {
        expect(again[i], JSON.stringify(docs[i])).toBe(first[i]);
        expect(backwards[i], JSON.stringify(docs[i])).toBe(first[i]);
      }
    }
  });
});
