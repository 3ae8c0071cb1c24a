// Where a fresh process's time goes before and in the cold start (issue 18, perf28 2504): main-thread
// CPU ms (/proc/thread-self/schedstat) and process CPU at node's start of user code, after DIST's modules
// are imported, after TRACE is read and parsed, and after `new Engine` + `apply` of its initial phase
// (what cold-ab times). One fresh process per run. Usage: node scripts/cold-timeline.mjs DIST TRACE [RUNS=7]
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const main = () => Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e6;
const proc = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
if (process.argv[2] === '--child') {
  const [, , , dist, trace] = process.argv;
  const at = [['start', main(), proc(), performance.now()]];
  const { parseTrace } = await import(resolve(dist, 'churn/trace.js'));
  const { Engine } = await import(resolve(dist, 'engine/engine.js'));
  const { initialEvents } = await import('./initial-events.mjs');
  at.push(['imported', main(), proc(), performance.now()]);
  const initial = initialEvents(parseTrace(readFileSync(trace, 'utf8'), trace, { manifests: false }));
  at.push(['parsed', main(), proc(), performance.now()]);
  const cs = new Engine({}).apply(initial);
  at.push(['applied', main(), proc(), performance.now()]);
  const out = { deltas: cs.deltas.length };
  for (let i = 1; i < at.length; i++) out[at[i][0]] = { mainCpuMs: Math.round(at[i][1] - at[i - 1][1]), cpuMs: Math.round(at[i][2] - at[i - 1][2]), wallMs: Math.round(at[i][3] - at[i - 1][3]) };
  out.beforeUserCode = { mainCpuMs: Math.round(at[0][1]), cpuMs: Math.round(at[0][2]), wallMs: Math.round(at[0][3]) };
  console.log(JSON.stringify(out));
} else {
  const [dist, trace, runs = '7'] = process.argv.slice(2);
  const commit = execFileSync('git', ['-C', resolve(dist, '..'), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  console.log(JSON.stringify({ header: { date: new Date().toISOString(), node: process.version, cpu: cpus()[0]?.model, cores: cpus().length, commit, trace, load: loadavg() } }));
  for (let run = 0; run < Number(runs); run++) {
    const out = execFileSync('node', [fileURLToPath(import.meta.url), '--child', dist, trace], { encoding: 'utf8' });
    console.log(JSON.stringify({ run, load: loadavg()[0], ...JSON.parse(out) }));
  }
}
