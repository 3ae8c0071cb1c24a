// The same cold start repeated in one process (a new Engine applying the trace's initial phase
// each time, the trace parsed anew before each run so no cache keyed by its objects carries over):
// per run wall ms, process CPU ms (all threads) and main-thread CPU ms (Linux). The first run is
// the fresh-process cold start; how fast the later ones get is what V8's warm-up (lazy
// compilation, feedback, baseline and optimising tiers) costs the first. Run it under node flags
// (`--no-opt`, `--no-lazy`, ...) to split that cost by tier.
// Usage: node --expose-gc [V8 FLAGS] scripts/cold-repeat.mjs DIST TRACE [RUNS=8]
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { initialEvents } from './initial-events.mjs';

const [dist, tracePath, runsArg] = process.argv.slice(2);
if (!dist || !tracePath || typeof globalThis.gc !== 'function') {
  process.stderr.write('usage: node --expose-gc [V8 FLAGS] scripts/cold-repeat.mjs DIST TRACE [RUNS=8]\n');
  process.exit(2);
}
const { parseTrace } = await import(resolve(dist, 'churn/trace.js'));
const { Engine } = await import(resolve(dist, 'engine/engine.js'));
const text = readFileSync(tracePath, 'utf8');
const initialPhase = () => {
  const trace = parseTrace(text, tracePath, { manifests: false });
  return initialEvents(trace);
};
const mainMs = () => {
  try {
    return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e6;
  } catch {
    return Number.NaN;
  }
};
const runs = [];
for (let i = 0; i < Number(runsArg ?? 8); i++) {
  const initial = initialPhase();
  globalThis.gc();
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  const m0 = mainMs();
  new Engine({}).apply(initial);
  const main = mainMs() - m0;
  const cpu = process.cpuUsage(c0);
  runs.push({ wallMs: Math.round(Number(process.hrtime.bigint() - t0) / 1e6), cpuMs: Math.round((cpu.user + cpu.system) / 1000), mainCpuMs: Number.isNaN(main) ? null : Math.round(main) });
}
process.stdout.write(`${JSON.stringify({ dist, trace: tracePath, flags: process.execArgv.filter((a) => a !== '--expose-gc'), runs })}\n`);
