// Where a fresh process's cold start (`engine.apply` of the trace's initial phase, cold-ab.mjs's timer) spends its
// CPU by V8 category, from Linux `perf` samples (native frames included, which a .cpuprofile folds into JS
// functions): the main thread against V8's helper threads (TurboFan jobs, GC helpers), then the main thread's
// samples by category (collections, inline caches, GC, bytecode compile, TurboFan, JIT code, ...). The child
// imports and parses first, then waits until `perf record -p` is attached, so only the apply is sampled (plus
// compile jobs queued during the parse that finish during it). Needs `perf` and root. Categories are by symbol
// name (regular expressions below), a reading aid, not exact. Usage: node scripts/cold-perf.mjs DIST TRACE [RUNS=1]
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { initialEvents } from './initial-events.mjs';

const CATEGORIES = [
  ['JIT code (baseline / optimised)', /^JS:[*^]/],
  ['TurboFan', /compiler::|turbofan|Pipeline|OptimizedCompilation|Deoptimiz|Maglev/i],
  ['GC and allocation', /Scaveng|MarkCompact|Sweep|Evacuat|Marking|Heap|Pretenur|FreeList|PagedSpace|NewSpace|Allocate/],
  ['bytecode compile (parse, generate)', /Pars|Scanner|Bytecode|Compiler::|Compile|Zone|Scope|SharedFunctionInfo/],
  ['inline caches', /Builtins_(Load|Store|KeyedLoad|KeyedStore|DefineNamed|DefineKeyed|LoadGlobal)IC|IC::|Feedback|Runtime_.*IC/],
  ['Map / Set / WeakMap builtins', /OrderedHash|Builtins_(Map|Set|WeakMap|WeakSet)|FindOrderedHash/],
  ['baseline builtins', /Baseline/],
  ['interpreter', /Handler$|InterpreterEntry|Interpreter/],
  ['other builtins', /^Builtins_/],
  ['kernel', /^\[k\]/],
];

function category(sym) {
  for (const [name, re] of CATEGORIES) if (re.test(sym)) return name;
  return 'other native';
}

async function child(dist, tracePath) {
  const { parseTrace } = await import(resolve(dist, 'churn/trace.js'));
  const { Engine } = await import(resolve(dist, 'engine/engine.js'));
  const initial = initialEvents(parseTrace(readFileSync(tracePath, 'utf8'), tracePath, { manifests: false }));
  globalThis.gc();
  process.stderr.write('ready\n');
  await new Promise((r) => setTimeout(r, 700)); // perf attaches meanwhile
  const t0 = process.hrtime.bigint();
  new Engine({}).apply(initial);
  process.stderr.write(`applyMs ${Number(process.hrtime.bigint() - t0) / 1e6}\n`);
}

function samplesBySymbol(data, tid) {
  const args = ['report', '-i', data, '--no-children', '--sort', 'sym', '-q', '-g', 'none', '--percentage', 'relative'];
  const out = execFileSync('perf', tid === undefined ? args : [...args, '--tid', String(tid)], { encoding: 'utf8', maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'ignore'] });
  const rows = [];
  for (const line of out.split('\n')) {
    const m = /^\s*([0-9.]+)%\s+\[(.)\]\s+(.*)$/.exec(line);
    if (m) rows.push({ pct: Number(m[1]), sym: m[2] === 'k' ? `[k] ${m[3]}` : m[3].trim() });
  }
  return rows;
}

function summarize(rows) {
  const by = new Map();
  for (const { pct, sym } of rows) by.set(category(sym), (by.get(category(sym)) ?? 0) + pct);
  const total = [...by.values()].reduce((a, b) => a + b, 0);
  return Object.fromEntries([...by].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, Math.round((1000 * v) / total) / 10]));
}

async function run(dist, tracePath) {
  const dir = mkdtempSync(join(tmpdir(), 'cold-perf-'));
  const data = join(dir, 'perf.data');
  const c = spawn('node', ['--expose-gc', '--perf-basic-prof-only-functions', process.argv[1], '--child', dist, tracePath], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  let perf;
  c.stderr.on('data', (d) => {
    err += d;
    if (perf === undefined && err.includes('ready\n')) perf = spawn('perf', ['record', '-q', '-F', '10000', '-p', String(c.pid), '-o', data], { stdio: 'ignore' });
  });
  await new Promise((r) => c.on('exit', r));
  if (perf === undefined) throw new Error(`child failed: ${err}`);
  if (perf.exitCode === null) await new Promise((r) => perf.on('exit', r));
  const all = samplesBySymbol(data);
  const threads = execFileSync('perf', ['report', '-i', data, '--no-children', '--sort', 'pid', '-q', '-g', 'none'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const mainShare = Number(new RegExp(`([0-9.]+)%\\s+${c.pid}:`).exec(threads)?.[1] ?? Number.NaN);
  const result = { applyMs: Number(/applyMs ([0-9.]+)/.exec(err)?.[1]), mainThreadShareOfSamples: mainShare, process: summarize(all), mainThread: summarize(samplesBySymbol(data, c.pid)) };
  rmSync(dir, { recursive: true, force: true });
  rmSync(`/tmp/perf-${c.pid}.map`, { force: true });
  return result;
}

if (process.argv[2] === '--child') await child(process.argv[3], process.argv[4]);
else {
  const [dist, tracePath, runs = '1'] = process.argv.slice(2);
  if (!dist || !tracePath) {
    process.stderr.write('usage: node scripts/cold-perf.mjs DIST TRACE [RUNS=1]\n');
    process.exit(2);
  }
  for (let i = 0; i < Number(runs); i++) process.stdout.write(`${JSON.stringify({ run: i, ...(await run(dist, tracePath)) })}\n`);
}
