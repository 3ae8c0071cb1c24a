/**
 * L7 regex matching time against input length: distill's matcher (RE2 semantics, re2js) next to
 * the anchored JavaScript RegExp it replaced, on a normal pattern and on a hostile one
 * (`(a+)+` against `aaa…a!`, exponential for a backtracking engine). Each point is the median and
 * range of RUNS samples; a sample repeats the match until MIN_SAMPLE_MS have passed.
 *
 *   npm run bench:regex      (writes bench/results/regex.json; BENCH_RUNS, BENCH_SAMPLE_MS)
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { httpRuleMatches } from '../src/model/l7.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const MIN_SAMPLE_MS = Number(process.env.BENCH_SAMPLE_MS ?? 20);
const LENGTHS = [16, 64, 256, 1024, 4096, 16384, 65536];
/** The backtracking engine doubles per character on the hostile pattern: it gets short inputs only. */
const JS_HOSTILE_LENGTHS = [16, 18, 20, 22, 24, 26, 28, 30];
/** Stop growing the hostile input for JS once one match takes this long. */
const JS_HOSTILE_BUDGET_MS = 1000;

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..');

interface Case {
  readonly name: string;
  readonly pattern: string;
  /** An input of exactly n characters. */
  readonly input: (n: number) => string;
  /** What the match must return (checked once per point, so a fast wrong answer cannot pass). */
  readonly expected: boolean;
}

const CASES: readonly Case[] = [
  {
    name: 'normal',
    pattern: '/api/v[0-9]+/users/[a-z0-9-]+(/.*)?',
    input: (n) => `/api/v1/users/${'a'.repeat(n - 14)}`,
    expected: true,
  },
  { name: 'hostile', pattern: '(a+)+', input: (n) => `${'a'.repeat(n - 1)}!`, expected: false },
];

type Engine = 'distill-re2js' | 'js-regexp';

function matcher(engine: Engine, pattern: string): (s: string) => boolean {
  if (engine === 'js-regexp') {
    const re = new RegExp(`^(?:${pattern})$`);
    return (s) => re.test(s);
  }
  const rule = { path: pattern };
  return (s) => httpRuleMatches(rule, { method: 'GET', path: s });
}

/** Milliseconds per match, averaged over enough repetitions to last MIN_SAMPLE_MS. */
function sample(match: (s: string) => boolean, input: string): number {
  let reps = 1;
  for (;;) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < reps; i++) match(input);
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    if (ms >= MIN_SAMPLE_MS || ms >= JS_HOSTILE_BUDGET_MS) return ms / reps;
    reps = ms <= 0.01 ? reps * 100 : Math.ceil((reps * MIN_SAMPLE_MS * 1.2) / ms);
  }
}

interface Point {
  readonly engine: Engine;
  readonly case: string;
  readonly pattern: string;
  readonly length: number;
  readonly medianUs: number;
  readonly minUs: number;
  readonly maxUs: number;
  readonly samplesUs: readonly number[];
}

function measure(engine: Engine, c: Case, n: number): Point {
  const match = matcher(engine, c.pattern);
  const input = c.input(n);
  if (input.length !== n) throw new Error(`${c.name}: input of ${input.length} characters, wanted ${n}`);
  if (match(input) !== c.expected) throw new Error(`${engine} ${c.name} n=${n}: wrong answer`);
  const samples = Array.from({ length: RUNS }, () => Math.round(sample(match, input) * 1e6) / 1e3);
  const sorted = [...samples].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)] as number;
  return { engine, case: c.name, pattern: c.pattern, length: n, medianUs: median, minUs: sorted[0] as number, maxUs: sorted[sorted.length - 1] as number, samplesUs: samples };
}

function lengthsFor(engine: Engine, c: Case): readonly number[] {
  return engine === 'js-regexp' && c.name === 'hostile' ? JS_HOSTILE_LENGTHS : LENGTHS;
}

function run(): Point[] {
  const points: Point[] = [];
  for (const c of CASES) {
    for (const engine of ['distill-re2js', 'js-regexp'] as const) {
      for (const n of lengthsFor(engine, c)) {
        const p = measure(engine, c, n);
        points.push(p);
        console.log(`${c.name.padEnd(8)} ${engine.padEnd(14)} n=${String(n).padStart(6)}  median ${fmt(p.medianUs)}  range ${fmt(p.minUs)} .. ${fmt(p.maxUs)}`);
        if (p.medianUs / 1000 > JS_HOSTILE_BUDGET_MS) break;
      }
    }
  }
  return points;
}

function fmt(us: number): string {
  return (us >= 1000 ? `${(us / 1000).toFixed(1)} ms` : `${us.toFixed(3)} µs`).padStart(12);
}

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { cwd: repo, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

const points = run();
const report = {
  date: new Date().toISOString(),
  commit: gitCommit(),
  node: process.version,
  cpu: cpus()[0]?.model ?? 'unknown',
  cpus: cpus().length,
  runs: RUNS,
  minSampleMs: MIN_SAMPLE_MS,
  note: 'js-regexp is the anchored ^(?:pattern)$ RegExp distill used before; hostile JS lengths stop where one match exceeds the budget',
  points,
};
mkdirSync(join(repo, 'bench', 'results'), { recursive: true });
writeFileSync(join(repo, 'bench', 'results', 'regex.json'), JSON.stringify(report, null, 2) + '\n');
console.log(`wrote bench/results/regex.json (${points.length} points)`);
