// A fresh process's main-thread CPU ms (`/proc/thread-self/schedstat`, so waiting for a core and V8's
// helper threads are excluded; the process's CPU beside it) by phase, as `distill replay TRACE
// --limit 0` spends them: importing the modules it needs (trace reader, engine, backend), parsing the
// trace, the cold start (`engine.apply` of the initial phase: cold-ab.mjs's timer), and writing the
// change set to a MemoryBackend (`applyChangeSet`: the write plan; `replay`'s cold-start timer covers
// apply + this). Builds alternating, one fresh process per build and run.
// Usage: node scripts/fresh-split.mjs OLD_DIST NEW_DIST TRACE [RUNS=3] > bench/results/NAME.jsonl
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runAb } from './ab-runner.mjs';
import { initialEvents } from './initial-events.mjs';

const mainMs = () => Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e6;
const procMs = () => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
};

async function child(dist, tracePath) {
  const out = {};
  let m = mainMs();
  let p = procMs();
  const phase = (name) => {
    const m1 = mainMs();
    const p1 = procMs();
    out[name] = { main: Math.round(m1 - m), proc: Math.round(p1 - p) };
    m = m1;
    p = p1;
  };
  const { parseTrace } = await import(resolve(dist, 'churn/trace.js'));
  const { Engine } = await import(resolve(dist, 'engine/engine.js'));
  const { MemoryBackend } = await import(resolve(dist, 'backend/memory.js'));
  const { applyChangeSet } = await import(resolve(dist, 'backend/backend.js'));
  phase('import');
  const trace = parseTrace(readFileSync(tracePath, 'utf8'), tracePath, { manifests: false });
  const initial = initialEvents(trace);
  phase('parse');
  const engine = new Engine({});
  const cs = engine.apply(initial);
  phase('apply');
  const stats = applyChangeSet(new MemoryBackend(), cs);
  phase('writePlan');
  process.stdout.write(JSON.stringify({ ...out, deltas: cs.deltas.length, upserts: stats.upserts }));
}

await runAb(fileURLToPath(import.meta.url), child);
