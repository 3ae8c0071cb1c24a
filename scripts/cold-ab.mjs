// Same-run A/B of a trace's cold start (the initial phase applied as one transaction, as
// `distill replay` does) for two builds: fresh process per run, builds alternating. Prints a
// header line (commits, Node, CPU model, date, load) and one JSON line per run: wall and CPU ms of
// the cold start (CPU time is the steadier number on a shared machine: it excludes waiting for a
// core; `coldMainCpuMs` is the main thread's share, the rest being V8's compiler and GC helper
// threads, Linux only), the heap at its end (garbage included, as `replay` reports it) and after a forced GC
// (live, parsed trace included), the process's peak RSS, and the engine's work counters (which
// must be equal for both builds).
// Usage: node scripts/cold-ab.mjs OLD_DIST NEW_DIST TRACE [RUNS=3] > bench/results/NAME.jsonl
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runAb } from './ab-runner.mjs';
import { initialEvents } from './initial-events.mjs';

/** The calling thread's on-CPU time, ms (`/proc/thread-self/schedstat`); NaN where there is none. */
function mainThreadCpuMs() {
  try {
    return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e6;
  } catch {
    return Number.NaN;
  }
}

async function child(dist, tracePath) {
  const { getHeapStatistics } = await import('node:v8');
  const { parseTrace } = await import(resolve(dist, 'churn/trace.js'));
  const { Engine } = await import(resolve(dist, 'engine/engine.js'));
  const trace = parseTrace(readFileSync(tracePath, 'utf8'), tracePath, { manifests: false }); // as `distill replay` reads it (builds before the option ignore it)
  const initial = initialEvents(trace);
  globalThis.gc();
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  const m0 = mainThreadCpuMs();
  const engine = new Engine({});
  const cs = engine.apply(initial);
  const main = mainThreadCpuMs() - m0;
  const cpu = process.cpuUsage(c0);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const atEnd = getHeapStatistics().used_heap_size;
  globalThis.gc();
  const live = getHeapStatistics().used_heap_size;
  const mb = (b) => Math.round(b / 2 ** 20);
  process.stdout.write(JSON.stringify({ coldMs: Math.round(ms), coldCpuMs: Math.round((cpu.user + cpu.system) / 1000), coldMainCpuMs: Number.isNaN(main) ? null : Math.round(main), heapAfterColdMB: mb(live), heapAtEndOfColdMB: mb(atEnd), maxRssMB: Math.round(process.resourceUsage().maxRSS / 1024), deltas: cs.deltas.length, work: engine.stats() }));
}

await runAb(fileURLToPath(import.meta.url), child, { nodeArgs: ['--expose-gc'] });
