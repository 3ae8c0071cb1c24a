// Which functions a delta relabel runs and how often each ran before it (issue 18, tenth session):
// V8 precise coverage with call counts (inspector, no flags), replaying TRACE through DIST as
// tail-attrib.mjs does. For the NTH pod relabel that changes a map (default 1), one line per DIST
// function it runs: calls in the cold start, calls in the churn before it, calls in the relabel,
// fewest cold-start calls first. A function run a handful of times has no type feedback yet.
//   node scripts/tail-coverage.mjs DIST TRACE [NTH]
import { readFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { splitTrace } from './lib/initial.mjs';

const [dist, tracePath, nthArg] = process.argv.slice(2);
const nth = Number(nthArg ?? 1);
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
for (const item of churn) {
  const cs = engine.apply([item.event]);
  applyChangeSet(backend, cs);
  const m = take();
  if (item.tag === 'pod-relabel' && cs.deltas.length > 0 && ++seen === nth) {
    const rows = [...m].filter(([, c]) => c > 0).map(([k, c]) => [k, cold.get(k) ?? 0, before.get(k) ?? 0, c]);
    rows.sort((a, b) => a[1] - b[1] || a[2] - b[2]);
    process.stdout.write(`line ${item.line}: cold start / churn before / this event, calls\n`);
    for (const [k, c0, c1, c2] of rows) process.stdout.write(`${String(c0).padStart(8)} ${String(c1).padStart(8)} ${String(c2).padStart(4)}  ${k}\n`);
    break;
  }
  for (const [k, c] of m) before.set(k, (before.get(k) ?? 0) + c);
}
