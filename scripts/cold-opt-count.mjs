// What V8's optimising compiler does during a fresh process's cold start (`engine.apply` of the trace's initial
// phase), per arm of node start-up flags: TurboFan compiles completed inside the timed call, the sum of their
// background (helper-thread) compile times and of their main-thread prepare/finalize times as `--trace-opt` reports
// them, eager deopts and code-dependency invalidations inside the call. Counts, not timings: they hold under load
// (the background sum grows with the load, since a job's wall time includes waiting for a core). An arm is "-"
// (no flags) or "FLAG+FLAG". Usage: node scripts/cold-opt-count.mjs DIST TRACE RUNS ARM...
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { resolve } from 'node:path';
if (process.argv[2] === '--child') {
  const [, , , dist, trace] = process.argv;
  const { parseTrace } = await import(resolve(dist, 'churn/trace.js'));
  const { Engine } = await import(resolve(dist, 'engine/engine.js'));
  const { initialEvents } = await import('./initial-events.mjs');
  const initial = initialEvents(parseTrace(readFileSync(trace, 'utf8'), trace, { manifests: false }));
  globalThis.gc();
  console.log('### cold-opt-count start');
  const cs = new Engine({}).apply(initial);
  console.log(`### cold-opt-count end ${cs.deltas.length}`);
} else {
  const [dist, trace, runs, ...arms] = process.argv.slice(2);
  console.log(JSON.stringify({ header: { date: new Date().toISOString(), node: process.version, cpu: cpus()[0]?.model, cores: cpus().length, commit: execFileSync('git', ['-C', resolve(dist, '..'), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim(), trace, load: loadavg() } }));
  for (let i = 0; i < Number(runs); i++) for (const arm of arms) {
    const flags = arm === '-' ? [] : arm.split('+');
    const out = execFileSync('node', ['--expose-gc', '--trace-opt', '--trace-deopt', ...flags, process.argv[1], '--child', dist, trace], { encoding: 'utf8', maxBuffer: 1 << 28 });
    const lines = out.split('\n');
    const from = lines.findIndex((l) => l.startsWith('### cold-opt-count start'));
    const to = lines.findIndex((l) => l.startsWith('### cold-opt-count end'));
    let compiles = 0, backgroundMs = 0, mainMs = 0, deopts = 0, invalidated = 0;
    const names = new Map();
    for (const l of lines.slice(from, to)) {
      const c = /completed compiling 0x[0-9a-f]+ <JSFunction (\S+) .*took ([0-9.]+), ([0-9.]+), ([0-9.]+) ms/.exec(l);
      if (c) { compiles++; mainMs += Number(c[2]) + Number(c[4]); backgroundMs += Number(c[3]); names.set(c[1], (names.get(c[1]) ?? 0) + 1); }
      if (l.startsWith('[bailout (kind: deopt-eager')) deopts++;
      if (l.includes('for deoptimization, reason: code dependencies')) invalidated++;
    }
    console.log(JSON.stringify({ arm, run: i, load: loadavg()[0], compiles, backgroundMs: Math.round(backgroundMs), mainMs: Math.round(mainMs * 10) / 10, deopts, invalidated, recompiled: [...names].filter(([, n]) => n > 1).map(([f]) => f).sort() }));
  }
}
