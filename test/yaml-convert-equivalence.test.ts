import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import type { Document } from 'yaml';
import { describe, expect, it, vi } from 'vitest';
import { loadYaml, loadYamlDocuments } from '../src/policy/yaml.js';
import { ManifestError } from '../src/policy/errors.js';
import { readManifestFile } from '../src/policy/manifest.js';
import { parseScenario } from '../src/scenario/format.js';
import type { AliasTargets } from '../src/policy/go-yaml-aliases.js';

/*
 * distill's conversion of a parsed document (src/policy/yaml-convert.ts, finding 3102) against the yaml
 * package's `doc.toJS({ maxAliasCount: 1000 })` it replaces: the same loaders run with either, and must give
 * the same values (with the same sharing: an alias is its anchor's value, a merge a fresh copy) or the same error.
 */
const seen = vi.hoisted(() => ({ pairs: [] as [unknown, unknown][], freeze: false }));
vi.mock('../src/policy/yaml-convert.js', async (importOriginal) => {
  const orig = await importOriginal<typeof import('../src/policy/yaml-convert.js')>();
  const attempt = (convert: () => unknown): { value: unknown } | { error: string } => {
    try {
      return { value: convert() };
    } catch (e) {
      return { error: (e as Error).message };
    }
  };
  return {
    ...orig,
    // Each document is converted both ways; the loader goes on with distill's.
    convertDocument: (doc: Document.Parsed, targets: AliasTargets): unknown => {
      const ours = attempt(() => orig.convertDocument(doc, targets));
      seen.pairs.push([ours, attempt(() => doc.toJS({ maxAliasCount: 1000 }))]);
      if ('error' in ours) throw new Error(ours.error);
      return seen.freeze ? deepFreeze(ours.value) : ours.value;
    },
  };
});

/** Freezes every object of a value (shared ones once): the readers get what an alias shares with its anchor. */
function deepFreeze(v: unknown): unknown {
  if (typeof v !== 'object' || v === null || Object.isFrozen(v)) return v;
  Object.freeze(v);
  for (const c of Array.isArray(v) ? v : Object.values(v)) deepFreeze(c);
  return v;
}

type Outcome = { value: unknown; shape: unknown[] } | { error: string };

/** The value's objects in walk order, each an index of its first appearance: equal shapes share alike. */
function shape(v: unknown): unknown[] {
  const first = new Map<object, number>();
  const out: unknown[] = [];
  const walk = (x: unknown): void => {
    if (typeof x !== 'object' || x === null) return void out.push(typeof x === 'symbol' ? 'symbol' : x);
    const at = first.get(x);
    if (at !== undefined) return void out.push(`ref ${at}`);
    first.set(x, first.size);
    out.push(Array.isArray(x) ? `array ${x.length}` : `object ${Object.keys(x).join(',')} ${String(Object.getPrototypeOf(x) === Object.prototype)}`);
    for (const c of Array.isArray(x) ? x : Object.values(x)) walk(c);
  };
  walk(v);
  return out;
}

function withShape(o: unknown): Outcome {
  const r = o as { value: unknown } | { error: string };
  return 'error' in r ? r : { value: r.value, shape: shape(r.value) };
}

/** Every document both loaders (manifest and scenario YAML) convert gets the same outcome either way; returns how many. */
function expectSame(text: string, name: string): number {
  seen.pairs = [];
  for (const read of [() => loadYamlDocuments(text, name), () => loadYaml(text, name)]) {
    try {
      read();
    } catch {
      // refused before or at conversion: the conversion's part is compared below
    }
  }
  for (const [ours, theirs] of seen.pairs) expect(withShape(ours), name).toStrictEqual(withShape(theirs));
  return seen.pairs.length;
}

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : /\.(ya?ml|json)$/.test(f) ? [p] : [];
  });
}

describe('3102. distill\'s YAML conversion reads every document as the yaml package\'s toJS did', () => {
  it('every YAML and JSON file under fixtures/ (values, sharing and errors)', () => {
    const all = files('fixtures');
    expect(all.length).toBeGreaterThan(2000);
    let converted = 0;
    for (const f of all) converted += expectSame(readFileSync(f, 'utf8'), f);
    expect(converted).toBeGreaterThan(2000);
  }, 600_000);

  it('the held and refused alias cases of 3100 and 3101', () => {
    // 1,001 uses of one scalar: within go-yaml's share, past the yaml package's budget (kept)
    const budget = `a: &s x\nb: [${Array(1001).fill('*s').join(', ')}]\nlit: [${Array(100).fill('1').join(',')}]\n`;
    const cases = [
      'a: &s x\nb: [*s, *s]\n',
      'base: &b {app: a, tier: fe}\nsel: {<<: *b, tier: be}\nother: *b\n',
      'a: &a {x: 1}\nb: &b {y: 2, <<: *a}\nc: {<<: [*b, *a], z: 3}\n',
      'a: &a [1]\nb: {<<: *a}\n',
      'c: {<<: [{a: 1}, {a: 2, b: 3}], d: 4}\n',
      'b: {<<: [1]}\n',
      'b: {<<: 1}\n',
      'b: {<<: ~}\n',
      'a: *nope\n',
      'a: {<<: *nope}\n',
      budget,
      `a: &l [${Array(10).fill('x').join(',')}]\nb: [${Array(120).fill('*l').join(',')}]\nlit: [${Array(100).fill('1').join(',')}]\n`,
      'a: &a {__proto__: {x: 1}, constructor: 2}\nb: {<<: *a}\nc: *a\n',
      'k: &k 1\n*k : 2\n',
      '&r [*r]\n',
      'a: &x {b: *x}\n',
      '',
      '# only a comment\n',
      '---\na: &a 1\n---\nb: *a\n',
    ];
    for (const [i, text] of cases.entries()) expectSame(text, `case${i}.yaml`);
    // the budget is reached by the conversion (manifest and scenario), not refused before it
    expect(expectSame(budget, 'budget.yaml')).toBe(2);
    expect(seen.pairs[0]?.[1]).toEqual({ error: 'Excessive alias count indicates a resource exhaustion attack' });
  });

  it('generated documents with anchors, aliases and merge keys (fast-check)', () => {
    let converted = 0;
    fc.assert(
      fc.property(fc.array(fc.nat(1000), { minLength: 1, maxLength: 400 }), (tape) => {
        converted += expectSame(generate(tape), 'gen.yaml');
      }),
      { numRuns: 400 },
    );
    expect(converted).toBeGreaterThan(400);
  });
});

describe('3102. what an alias shares with its anchor is never changed by the readers', () => {
  it('every fixture read as a scenario and as manifests from frozen values: no reader writes to them', () => {
    seen.freeze = true;
    try {
      for (const f of files('fixtures/conformance')) {
        const text = readFileSync(f, 'utf8');
        // Frozen values throw a TypeError on a write (ESM is strict); the readers rethrow all but their own errors.
        for (const read of [() => parseScenario(text, f), () => readManifestFile(text, f, [])]) {
          try {
            read();
          } catch (e) {
            if (!(e instanceof ManifestError)) throw e;
          }
        }
      }
    } finally {
      seen.freeze = false;
    }
  }, 600_000);
});

/** A random flow-style document drawn from `tape`: maps, lists, scalars, anchors, aliases of earlier anchors, `<<`. */
function generate(tape: number[]): string {
  let at = 0;
  const pick = (n: number): number => (tape[at++ % tape.length] ?? 0) % n;
  const anchors: string[] = [];
  const maps: string[] = []; // anchors of mappings (merge sources)
  const scalars = ['1', 'x', '~', 'yes', '"q"', '010', '-2', "''", '0x1F', 'a b'];
  const keys = ['a', 'b', 'c', '1', 'true', '__proto__', 'toString', '"<<"', 'd'];
  const node = (depth: number): string => {
    const kind = pick(depth > 3 ? 3 : 6);
    if (kind === 0 && anchors.length > 0) return `*${anchors[pick(anchors.length)] ?? ''}`;
    if (kind <= 2) return anchored(scalars[pick(scalars.length)] ?? '1', false);
    if (kind === 3) return anchored(`[${Array.from({ length: pick(4) }, () => node(depth + 1)).join(', ')}]`, false);
    return anchored(mapping(depth), true);
  };
  const anchored = (text: string, isMap: boolean): string => {
    if (pick(3) !== 0) return text;
    const name = `n${anchors.length}`;
    anchors.push(name);
    if (isMap) maps.push(name);
    return `&${name} ${text}`;
  };
  const merge = (): string => {
    const source = (): string => (maps.length > 0 && pick(4) !== 0 ? `*${maps[pick(maps.length)] ?? ''}` : pick(8) === 0 ? '1' : `{e: ${pick(3)}, a: ${pick(3)}}`);
    return pick(2) === 0 ? `<<: ${source()}` : `<<: [${Array.from({ length: 1 + pick(3) }, source).join(', ')}]`;
  };
  const mapping = (depth: number): string => {
    const own = [...new Set(Array.from({ length: pick(4) }, () => keys[pick(keys.length)] ?? 'a'))].map((k) => `${k}: ${node(depth + 1)}`);
    if (pick(2) === 0) own.splice(pick(own.length + 1), 0, merge());
    return `{${own.join(', ')}}`;
  };
  return `${mapping(0)}\n`;
}
