// Per delta relabel (a pod-relabel whose change set has map deltas; issue 18, fourteenth session,
// perf14delta): how much code the engine and the memory backend run for it. Replays TRACE through
// DIST one event per transaction; for each delta relabel prints the DIST functions run, their
// calls (V8 precise coverage), the bytes allocated (used heap, events without a GC) and the Maps
// and Sets constructed (globalThis.Map/Set replaced by counting subclasses before DIST loads, so
// the timings of this run mean nothing). A median pod-add is printed for scale.
//   node scripts/delta-counts.mjs DIST TRACE
import { readFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { getHeapStatistics } from 'node:v8';
import { splitTrace } from './lib/initial.mjs';

let maps = 0;
let sets = 0;
const OrigMap = Map;
const OrigSet = Set;
globalThis.Map = class extends OrigMap {
  constructor(it) {
    super(it);
    maps++;
  }
};
globalThis.Set = class extends OrigSet {
  constructor(it) {
    super(it);
    sets++;
  }
};

const [dist, tracePath] = process.argv.slice(2);
const base = pathToFileURL(resolve(dist)).href;
const { Engine } = await import(`${base}/engine/engine.js`);
const { parseTrace } = await import(`${base}/churn/trace.js`);
const { applyChangeSet } = await import(`${base}/backend/backend.js`);
const { MemoryBackend } = await import(`${base}/backend/memory.js`);
const { reconcile } = await import(`${base}/node/restart.js`);

const session = new Session();
session.connect();
const post = (method, params) => {
  let out;
  session.post(method, params, (err, r) => {
    if (err) throw err;
    out = r;
  });
  return out;
};
post('Profiler.enable');
post('Profiler.startPreciseCoverage', { callCount: true, detailed: false });
const take = () => {
  let fns = 0;
  let calls = 0;
  for (const script of post('Profiler.takePreciseCoverage').result) {
    if (!script.url.startsWith(base)) continue;
    for (const fn of script.functions) {
      const c = fn.ranges[0].count;
      if (!fn.functionName || c === 0) continue;
      fns++;
      calls += c;
    }
  }
  return { fns, calls };
};

const trace = parseTrace(readFileSync(tracePath, 'utf8'), tracePath);
const { initial, churn } = splitTrace(trace);
const backend = new MemoryBackend();
reconcile(new Engine(), backend);
const engine = new Engine();
applyChangeSet(backend, engine.apply(initial));
take();
const adds = [];
for (const item of churn) {
  const m0 = maps;
  const s0 = sets;
  const a0 = getHeapStatistics().used_heap_size;
  const cs = engine.apply([item.event]);
  applyChangeSet(backend, cs);
  const a1 = getHeapStatistics().used_heap_size;
  const row = { line: item.line, tag: item.tag, deltas: cs.deltas.length, ...take(), allocB: a1 >= a0 ? a1 - a0 : null, maps: maps - m0, sets: sets - s0 };
  if (item.tag === 'pod-relabel' && cs.deltas.length > 0) process.stdout.write(`${JSON.stringify(row)}\n`);
  if (item.tag === 'pod-add') adds.push(row);
}
adds.sort((a, b) => a.calls - b.calls);
process.stdout.write(`${JSON.stringify({ medianPodAdd: adds[adds.length >> 1] })}\n`);
