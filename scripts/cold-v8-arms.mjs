// Arms of V8 flags set at run time around a fresh process's cold start (`v8.setFlagsFromString(BEFORE)`
// just before `engine.apply` of the trace's initial phase, `AFTER` right after it), arms alternating,
// one fresh process per arm and run. Per run: wall, process CPU and main-thread CPU ms of the cold start, and
// `mainRunqWaitMs`: the time the main thread was runnable but waited for a core (`/proc/thread-self/schedstat`'s
// second field), which is wall minus main-thread CPU up to sleeps, and the process's peak RSS (`maxRssMB`). An arm is "BEFORE,AFTER" or "-" (no flags).
// An arm "@FLAG+FLAG" instead starts the child node with those flags (start-up-only settings such as
// `--v8-pool-size=1` or `--concurrent-recompilation-queue-length=1`); "@FLAG,BEFORE,AFTER" combines both.
// A diagnostic, not a product setting. Usage: node scripts/cold-v8-arms.mjs DIST TRACE RUNS ARM...
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { resolve } from 'node:path';
const main = () => Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e6;
const wait = () => Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[1]) / 1e6;
if (process.argv[2] === '--child') {
  const [, , , dist, trace, before, after] = process.argv;
  const v8 = await import('node:v8');
  const { parseTrace } = await import(resolve(dist, 'churn/trace.js'));
  const { Engine } = await import(resolve(dist, 'engine/engine.js'));
  const { initialEvents } = await import('./initial-events.mjs');
  const t = parseTrace(readFileSync(trace, 'utf8'), trace, { manifests: false });
  const initial = initialEvents(t);
  globalThis.gc();
  if (before !== '-') v8.setFlagsFromString(before);
  const t0 = process.hrtime.bigint(); const c0 = process.cpuUsage(); const m0 = main(); const w0 = wait();
  const engine = new Engine({}); const cs = engine.apply(initial);
  const m = main() - m0; const w = wait() - w0; const c = process.cpuUsage(c0); const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (after !== '-') v8.setFlagsFromString(after);
  console.log(JSON.stringify({ coldMs: Math.round(ms), coldCpuMs: Math.round((c.user + c.system) / 1000), coldMainCpuMs: Math.round(m), mainRunqWaitMs: Math.round(w), maxRssMB: Math.round(process.resourceUsage().maxRSS / 1024), deltas: cs.deltas.length }));
} else {
  const [dist, trace, runs, ...arms] = process.argv.slice(2);
  console.log(JSON.stringify({ header: { date: new Date().toISOString(), node: process.version, cpu: cpus()[0]?.model, cores: cpus().length, commit: execFileSync('git', ['-C', resolve(dist, '..'), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim(), trace, load: loadavg() } }));
  for (let i = 0; i < Number(runs); i++) for (const arm of arms) {
    const parts = arm.split(',');
    const start = parts[0].startsWith('@') ? parts.shift().slice(1).split('+') : [];
    const [before = '-', after = '-'] = parts;
    const out = execFileSync('node', ['--expose-gc', ...start, process.argv[1], '--child', dist, trace, before, after], { encoding: 'utf8' });
    console.log(JSON.stringify({ arm, run: i, load: loadavg()[0], ...JSON.parse(out) }));
  }
}
