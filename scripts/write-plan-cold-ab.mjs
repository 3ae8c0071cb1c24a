// Same-run A/B of the write plan of a trace's cold start in a fresh process, as `distill replay`'s
// cold-start timer includes it (cold-ab.mjs does not): the engine applies the initial phase, then
// `planWrites` plans the change set's map writes (every key new, maps empty) ROUNDS_IN_PROCESS
// times; per round the main thread's CPU ms (`/proc/thread-self/schedstat`: excludes V8's compile
// and GC helper threads and waiting for a core) and the process's. The first round is the fresh
// process's (unoptimised code); the plans' operation count must be equal for both builds.
// Usage: node scripts/write-plan-cold-ab.mjs OLD_DIST NEW_DIST TRACE [RUNS=3] > bench/results/NAME.jsonl
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runAb } from './ab-runner.mjs';
import { initialEvents } from './initial-events.mjs';

const ROUNDS_IN_PROCESS = 3;
const mainThreadCpuMs = () => Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e6;

async function child(dist, tracePath) {
  const { parseTrace } = await import(resolve(dist, 'churn/trace.js'));
  const { Engine } = await import(resolve(dist, 'engine/engine.js'));
  const { planWrites } = await import(resolve(dist, 'backend/write-plan.js'));
  const trace = parseTrace(readFileSync(tracePath, 'utf8'), tracePath, { manifests: false });
  const cs = new Engine({}).apply(initialEvents(trace));
  const byEndpoint = new Map();
  for (const d of cs.deltas) {
    const l = byEndpoint.get(d.endpoint);
    if (l) l.push(d);
    else byEndpoint.set(d.endpoint, [d]);
  }
  const writes = [...byEndpoint].map(([endpoint, deltas]) => ({ endpoint, size: 0, deltas }));
  const mainMs = [];
  const cpuMs = [];
  let ops = 0;
  for (let r = 0; r < ROUNDS_IN_PROCESS; r++) {
    const c0 = process.cpuUsage();
    const m0 = mainThreadCpuMs();
    const batches = planWrites(writes, 1 << 20, () => []);
    mainMs.push(+(mainThreadCpuMs() - m0).toFixed(2));
    const c = process.cpuUsage(c0);
    cpuMs.push(+((c.user + c.system) / 1000).toFixed(2));
    ops = batches.reduce((n, b) => n + b.ops.length, 0);
  }
  process.stdout.write(JSON.stringify({ deltas: cs.deltas.length, maps: writes.length, ops, mainMs, cpuMs }));
}

await runAb(fileURLToPath(import.meta.url), child);
