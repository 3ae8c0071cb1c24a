import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * docs/architecture.md is the map of the code: every code name it cites in backticks (a class, function, field, a
 * `Class.member`) must still be in the tree, a member in the file that declares its class. Plain lowercase words are
 * left out (option values, kinds, CLI flags); so are the names of other projects the doc cites as sources (UPSTREAM).
 */
const DOC = 'docs/architecture.md';
/** Not read as code: its own examples of dead names would count as alive. */
const SELF = 'test/docs-identifiers.test.ts';
/** Cilium, libbpf and npm packages' names the doc cites, not distill's. */
const UPSTREAM = new Set(['AllocateID', 'Release', 'RunGC', 'FormatForKVStoreInto', 'allowScripts', 'streamArray', 'enableMapSet', 'produceWithPatches', 'scrubIPsInConntrackTable', 'bpf_map__reuse_fd', 'bpf_object_open_opts', 'JSON']);

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? walk(p) : /\.(ts|mjs|c|sh|json)$/.test(p) ? [p] : [];
  });
}

interface Code {
  readonly words: ReadonlySet<string>;
  /** Per file, its text: where a class is declared and its members looked up. */
  readonly files: ReadonlyMap<string, string>;
}

function code(): Code {
  const files = new Map(['src', 'test', 'bench', 'scripts', 'bpf'].flatMap(walk).filter((f) => f !== SELF).concat('package.json').map((f) => [f, readFileSync(f, 'utf8')] as const));
  const words = new Set<string>();
  for (const text of files.values()) for (const m of text.matchAll(/[A-Za-z_$][\w$]*/g)) words.add(m[0]);
  return { words, files };
}

/** The cited names of `text` that the code does not have, as `line: name`. */
function deadNames(c: Code, text: string): string[] {
  const dead: string[] = [];
  text.split('\n').forEach((line, i) => {
    for (const m of line.matchAll(/`([A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)?)(?:\([^`]*\))?`/g)) {
      const name = m[1] as string;
      const [head, member] = name.split('.') as [string, string | undefined];
      if (member !== undefined && /^(ts|js|mjs|md|json|jsonl|c|h|go|yaml|sh)$/.test(member)) continue;
      if (member === undefined && !/[A-Z_]/.test(name)) continue;
      if (UPSTREAM.has(head)) continue;
      if (!c.words.has(head)) dead.push(`${i + 1}: ${name}`);
      else if (member !== undefined && /^[A-Z]/.test(head)) {
        const decl = new RegExp(`\\b(?:class|interface|type)\\s+${head}\\b`);
        const homes = [...c.files].filter(([, t]) => decl.test(t));
        if (homes.length > 0 && !homes.some(([, t]) => new RegExp(`\\b${member}\\b`).test(t))) dead.push(`${i + 1}: ${name}`);
      }
    }
  });
  return dead;
}

describe(`code names cited in ${DOC}`, () => {
  const c = code();
  it('exist in the code', () => {
    expect(deadNames(c, readFileSync(DOC, 'utf8'))).toEqual([]);
  });
  it('the rule really finds dead names and misplaced members', () => {
    const text = ['`Engine.apply` and `Engine.applyAll`, `NoSuchStage` and `settle()`', '`MapState.pendingEntry`, `kernelIpcacheContent`, `RunGC`, `engine.ts`'].join('\n');
    expect(deadNames(c, text)).toEqual(['1: Engine.applyAll', '1: NoSuchStage']);
  });
});
