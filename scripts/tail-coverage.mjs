// Which functions a delta relabel runs and how often each ran before it (issue 18, tenth session):
// V8 precise coverage with call counts (inspector, no flags), replaying TRACE through DIST as
// tail-attrib.mjs does. For the NTH pod relabel that changes a map (default 1), one line per DIST
// function it runs: calls in the cold start, calls in the churn before it, calls in the relabel,
// fewest cold-start calls first. A function run a handful of times has no type feedback yet.
// With --counts (fourteenth session, perf14delta), instead one JSON line per delta relabel and
// one for the median pod-add: DIST functions run, their calls, bytes allocated (used heap, null
// across a GC) and Maps and Sets constructed (globalThis.Map/Set replaced by counting subclasses
// before DIST loads, so the timings of such a run mean nothing).
//   node scripts/tail-coverage.mjs DIST TRACE [NTH | --counts]
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { getHeapStatistics } from 'node:v8';
import { splitTrace } from './lib/initial.mjs';
import { inspectorPost } from './lib/inspector.mjs';

const [dist, tracePath, nthArg] = process.argv.slice(2);
const counts = nthArg === '--counts';
const nth = counts ? 0 : Number(nthArg ?? 1);
const made = { maps: 0, sets: 0 };
if (counts) {
  globalThis.Map = class extends Map {
    constructor(it) {
      super(it);
      made.maps++;
    }
  };
  globalThis.Set = class extends Set {
    constructor(it) {
      super(it);
      made.sets++;
    }
  };
}
const base = pathToFileURL(resolve(dist)).href;
const { Engine } = await import(`${base}/engine/engine.js`);
const { parseTrace } = await import(`${base}/churn/trace.js`);
const { applyChangeSet } = await import(`${base}/backend/backend.js`);
const { MemoryBackend } = await import(`${base}/backend/memory.js`);
const { reconcile } = await import(`${base}/node/restart.js`);

const post = inspectorPost();
post('Profiler.enable');
post('Profiler.startPreciseCoverage', { callCount: true, detailed: false });
// Calls since the last take, per `file:function` under DIST (takePreciseCoverage resets the counts).
const take = () => {
  const m = new Map();
  for (const script of post('Profiler.takePreciseCoverage').result) {
    if (!script.url.startsWith(base)) continue;
    const file = script.url.slice(base.length + 1);
    for (const fn of script.functions) {
      if (!fn.functionName) continue;
      const k = `${file}:${fn.functionName}`;
      m.set(k, (m.get(k) ?? 0) + fn.ranges[0].count);
    }
  }
  return m;
};

const trace = parseTrace(readFileSync(tracePath, 'utf8'), tracePath);
const { initial, churn } = splitTrace(trace);
const backend = new MemoryBackend();
reconcile(new Engine(), backend);
const engine = new Engine();
take();
applyChangeSet(backend, engine.apply(initial));
const cold = take();
const before = new Map();
let seen = 0;
const adds = [];
for (const item of churn) {
  const m0 = made.maps;
  const s0 = made.sets;
  const a0 = getHeapStatistics().used_heap_size;
  const cs = engine.apply([item.event]);
  applyChangeSet(backend, cs);
  const a1 = getHeapStatistics().used_heap_size;
  const m1 = made.maps;
  const s1 = made.sets;
  const m = take();
  if (counts) {
    const fns = [...m.values()].filter((c) => c > 0);
    const row = { line: item.line, tag: item.tag, deltas: cs.deltas.length, fns: fns.length, calls: fns.reduce((x, y) => x + y, 0), allocB: a1 >= a0 ? a1 - a0 : null, maps: m1 - m0, sets: s1 - s0 };
    if (item.tag === 'pod-relabel' && cs.deltas.length > 0) process.stdout.write(`${JSON.stringify(row)}\n`);
    if (item.tag === 'pod-add') adds.push(row);
    continue;
  }
  if (item.tag === 'pod-relabel' && cs.deltas.length > 0 && ++seen === nth) {
    const rows = [...m].filter(([, c]) => c > 0).map(([k, c]) => [k, cold.get(k) ?? 0, before.get(k) ?? 0, c]);
    rows.sort((a, b) => a[1] - b[1] || a[2] - b[2]);
    process.stdout.write(`line ${item.line}: cold start / churn before / this event, calls\n`);
    for (const [k, c0, c1, c2] of rows) process.stdout.write(`${String(c0).padStart(8)} ${String(c1).padStart(8)} ${String(c2).padStart(4)}  ${k}\n`);
    break;
  }
  for (const [k, c] of m) before.set(k, (before.get(k) ?? 0) + c);
}
if (counts) {
  adds.sort((x, y) => x.calls - y.calls);
  process.stdout.write(`${JSON.stringify({ medianPodAdd: adds[adds.length >> 1] })}\n`);
}
