import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * "docs/architecture.md is the map: keep it true." Every repository path, markdown link and
 * TypeScript/script file name the user docs cite must exist in the tree. The dated records
 * (docs/benchmarks.md, docs/attack-findings-*.md) describe the code as it was and are left out.
 */
const TOPS = ['src', 'test', 'docs', 'fixtures', 'scripts', 'bench', 'bpf', 'examples', '.ci'];
/** Paths of other repositories the docs cite as sources (Cilium, Kubernetes) under names we also use. */
const UPSTREAM = [/^bpf\/lib\//, /^bpf\/bpf_(lxc|overlay)\.c$/, /^test\/(e2e|k8s|runtime)\//, /^examples\/(minikube|policies|kubernetes-[\w-]+)\//, /\.(go|h)$/];

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? [p + '/', ...walk(p)] : [p];
  });
}

interface Tree {
  readonly paths: ReadonlySet<string>;
  readonly bases: ReadonlySet<string>;
}

function tree(): Tree {
  const all = TOPS.filter((t) => existsSync(t)).flatMap((t) => [t + '/', ...walk(t)]);
  const paths = new Set(all.map((p) => p.replace(/\/$/, '')));
  return { paths, bases: new Set([...paths].map((p) => basename(p))) };
}

function expand(p: string): string[] {
  const m = /^(.*?)\{([^{}]*)\}(.*)$/.exec(p);
  if (!m) return [p];
  return (m[2] as string).split(',').flatMap((alt) => expand(`${m[1] as string}${alt}${m[3] as string}`));
}

function exists(t: Tree, path: string): boolean {
  const p = path.replace(/^\.\//, '').replace(/\/$/, '').replace(/[#:].*$/, '');
  if (!p.includes('*')) return t.paths.has(p);
  const re = new RegExp('^' + p.replace(/[.+?^$()[\]\\]/g, '\\$&').replace(/\*\*/g, '.+').replace(/\*/g, '[^/]*') + '$');
  return [...t.paths].some((q) => re.test(q));
}

/** Every cited path of one markdown text that the tree does not have, as `line: path`. */
function deadPaths(t: Tree, file: string, text: string): string[] {
  const dead: string[] = [];
  text.split('\n').forEach((line, i) => {
    const miss = (p: string): void => void dead.push(`${file}:${i + 1}: ${p}`);
    for (const m of line.replace(/`[^`]*`/g, '').matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1] as string;
      if (/^(https?:|#|mailto:)/.test(target)) continue;
      const p = normalize(join(dirname(file), target.replace(/#.*$/, '')));
      if (!exists(t, relative('.', p))) miss(target);
    }
    for (const m of line.matchAll(/(?<![\w/.-])((?:src|test|docs|fixtures|scripts|bench|bpf|examples|\.ci)\/(?:[\w./*@-]|\{[^}\s]*\})*[\w*}])/g)) {
      for (const p of expand(m[1] as string)) if (!UPSTREAM.some((u) => u.test(p)) && !exists(t, p)) miss(p);
    }
    for (const m of line.matchAll(/`([^`]*)`/g)) {
      for (const f of (m[1] as string).matchAll(/(?:^|[\s(])([\w.-]+\.(?:ts|mjs))(?=$|[\s),:])/g)) {
        if (!t.bases.has(f[1] as string)) miss(f[1] as string);
      }
    }
  });
  return dead;
}

const USER_DOCS = ['README.md', ...readdirSync('docs').filter((f) => f.endsWith('.md') && f !== 'benchmarks.md' && !f.startsWith('attack-findings-')).map((f) => `docs/${f}`)];

describe('paths cited in the docs', () => {
  const t = tree();
  it(`exist in the tree (${USER_DOCS.length} files)`, () => {
    expect(USER_DOCS.flatMap((f) => deadPaths(t, f, readFileSync(f, 'utf8')))).toEqual([]);
  });
  it('the rule really finds dead paths, and reads braces, globs, links and bare file names', () => {
    const text = [
      'see src/engine/engine.ts and src/model/mapstate.ts',
      'raw: `bench/results/cold-{ci,nothing}-2026-11-30.jsonl`',
      'scenarios under fixtures/conformance/refuse/*.yaml and fixtures/conformance/nowhere/*.yaml',
      '[arch](architecture.md) [gone](gone.md) `[a](b)` in `tiers.ts` and `no-such-file.ts`; Cilium `bpf/lib/conntrack.h`',
    ].join('\n');
    expect(deadPaths(t, 'docs/x.md', text)).toEqual([
      'docs/x.md:1: src/model/mapstate.ts',
      'docs/x.md:2: bench/results/cold-nothing-2026-11-30.jsonl',
      'docs/x.md:3: fixtures/conformance/nowhere/*.yaml',
      'docs/x.md:4: gone.md',
      'docs/x.md:4: no-such-file.ts',
    ]);
  });
});
