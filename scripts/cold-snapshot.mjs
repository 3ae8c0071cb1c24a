// Does a V8 start-up snapshot shorten a fresh process's cold start (issue 18, perf28 2500)? Bundles
// DIST's trace reader, engine and warm-up into one CommonJS file (node_modules/.bin/rolldown, a
// transitive dev dependency), builds a Node start-up snapshot of it after the built-in warm-up ran
// (`node --expose-gc --snapshot-blob B --build-snapshot`: the bytecode V8 compiled is kept), then
// alternates fresh processes: `esm` (DIST's modules, as cold-ab runs them) and `snap` (deserialized
// from the blob), each timing `new Engine` + `apply` of TRACE's initial phase. Per run: wall, process
// CPU, main-thread CPU and run-queue wait ms (/proc/thread-self/schedstat), and `codeGrowKB`: bytecode
// and metadata V8 compiled inside the timed call (0 when the snapshot kept it). A diagnostic.
//   node scripts/cold-snapshot.mjs DIST TRACE [RUNS=9]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const [distArg, trace, runsArg] = process.argv.slice(2);
if (!distArg || !trace) {
  process.stderr.write('usage: node scripts/cold-snapshot.mjs DIST TRACE [RUNS]\n');
  process.exit(2);
}
const dist = resolve(distArg);
const dir = mkdtempSync(join(tmpdir(), 'cold-snapshot-'));
const measure = `
const fs = require('node:fs');
const v8 = require('node:v8');
const sched = () => fs.readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ').map(Number);
function measure(D, tracePath) {
  const t = D.parseTrace(fs.readFileSync(tracePath, 'utf8'), tracePath, { manifests: false });
  const first = t.items.findIndex((i) => i.kind === 'phase' && i.name !== 'initial');
  const initial = t.items.slice(0, first < 0 ? t.items.length : first).flatMap((i) => (i.kind === 'event' ? [i.event] : []));
  globalThis.gc();
  const h0 = v8.getHeapCodeStatistics().bytecode_and_metadata_size;
  const t0 = process.hrtime.bigint(); const c0 = process.cpuUsage(); const s0 = sched();
  const cs = new D.Engine({}).apply(initial);
  const s1 = sched(); const c = process.cpuUsage(c0); const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const grow = v8.getHeapCodeStatistics().bytecode_and_metadata_size - h0;
  return { coldMs: Math.round(ms), coldCpuMs: Math.round((c.user + c.system) / 1000), coldMainCpuMs: Math.round((s1[0] - s0[0]) / 1e6), mainRunqWaitMs: Math.round((s1[1] - s0[1]) / 1e6), codeGrowKB: Math.round(grow / 1024), deltas: cs.deltas.length };
}
`;
try {
  writeFileSync(join(dir, 'entry.mjs'), ['churn/trace.js', 'engine/engine.js', 'churn/warm-up.js'].map((m) => `export * from ${JSON.stringify(join(dist, m))};`).join('\n'));
  execFileSync(resolve('node_modules/.bin/rolldown'), [join(dir, 'entry.mjs'), '--format', 'cjs', '--platform', 'node', '-o', join(dir, 'bundle.cjs')], { stdio: 'ignore' });
  const bundle = readFileSync(join(dir, 'bundle.cjs'), 'utf8');
  writeFileSync(join(dir, 'snap.cjs'), `${measure}const D = (function () { const exports = {}; const module = { exports };\n${bundle}\n; return exports; })();
D.warmUpEngine({ policies: 'manifest' });
v8.startupSnapshot.setDeserializeMainFunction(() => console.log(JSON.stringify(measure(D, process.env.TRACE))));\n`);
  writeFileSync(join(dir, 'esm.cjs'), `${measure}Promise.all(['churn/trace.js', 'engine/engine.js'].map((m) => import(${JSON.stringify(dist)} + '/' + m))).then(([a, b]) => console.log(JSON.stringify(measure({ ...a, ...b }, process.env.TRACE))));\n`);
  const blob = join(dir, 'snap.blob');
  execFileSync('node', ['--expose-gc', '--snapshot-blob', blob, '--build-snapshot', join(dir, 'snap.cjs')], { stdio: 'ignore' });
  const arms = { esm: [join(dir, 'esm.cjs')], snap: ['--snapshot-blob', blob] };
  const commit = execFileSync('git', ['-C', resolve(dist, '..'), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  console.log(JSON.stringify({ header: { date: new Date().toISOString(), node: process.version, cpu: cpus()[0]?.model, cores: cpus().length, commit, dist, trace, load: loadavg() } }));
  for (let run = 0; run < Number(runsArg ?? 9); run++) {
    for (const [arm, args] of Object.entries(arms)) {
      const out = execFileSync('node', ['--expose-gc', ...args], { encoding: 'utf8', env: { ...process.env, TRACE: resolve(trace) } });
      console.log(JSON.stringify({ arm, run, load: loadavg()[0], ...JSON.parse(out) }));
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
