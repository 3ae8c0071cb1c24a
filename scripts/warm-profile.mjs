// CPU profile of the warm cold start: the trace's initial phase applied by a new Engine RUNS times in one
// process; the first WARM runs unprofiled (V8 warm-up), the rest under the inspector's sampling profiler
// (100 µs; the parses all happen first, outside the profile), written to OUT.cpuprofile for scripts/profile-summary.mjs. Prints each profiled run's main-thread ms.
// Usage: node --expose-gc scripts/warm-profile.mjs DIST TRACE OUT [RUNS=30] [WARM=10]
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Session } from 'node:inspector/promises';
import { initialEvents } from './initial-events.mjs';

const [dist, tracePath, out, runsArg, warmArg] = process.argv.slice(2);
if (!dist || !tracePath || !out || typeof globalThis.gc !== 'function') {
  process.stderr.write('usage: node --expose-gc scripts/warm-profile.mjs DIST TRACE OUT [RUNS=30] [WARM=10]\n');
  process.exit(2);
}
const { parseTrace } = await import(resolve(dist, 'churn/trace.js'));
const { Engine } = await import(resolve(dist, 'engine/engine.js'));
const text = readFileSync(tracePath, 'utf8');
const mainMs = () => Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e6;
const session = new Session();
session.connect();
await session.post('Profiler.enable');
await session.post('Profiler.setSamplingInterval', { interval: 100 });
const runs = Number(runsArg ?? 30), warm = Number(warmArg ?? 10);
const ms = [];
const phases = Array.from({ length: runs }, () => initialEvents(parseTrace(text, tracePath, { manifests: false })));
for (let i = 0; i < runs; i++) {
  const initial = phases[i];
  phases[i] = undefined;
  globalThis.gc();
  if (i === warm) await session.post('Profiler.start');
  const m0 = mainMs();
  new Engine({}).apply(initial);
  if (i >= warm) ms.push(Math.round(mainMs() - m0));
}
const { profile } = await session.post('Profiler.stop');
writeFileSync(out, JSON.stringify(profile));
ms.sort((a, b) => a - b);
process.stdout.write(`${JSON.stringify({ profiledRuns: ms.length, medianMainMs: ms[ms.length >> 1], minMainMs: ms[0], maxMainMs: ms[ms.length - 1] })}\n`);
