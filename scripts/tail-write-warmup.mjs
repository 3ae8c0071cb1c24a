// Is a delta relabel's backend write work or warm-up? (issue 18, eleventh session.) Replays TRACE
// through DIST into a MemoryBackend; for each pod relabel that changes a map, times its
// MemoryBackend.apply calls, then the same upserts applied again 9 times in a row, µs wall:
// "first/second/third,...". Run once in a fresh process; prints one line.
//   node scripts/tail-write-warmup.mjs DIST TRACE
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
const dist = pathToFileURL(resolve(process.argv[2])).href;
const tracePath = process.argv[3];
const { splitTrace } = await import('./lib/initial.mjs');
const { Engine } = await import(`${dist}/engine/engine.js`);
const { parseTrace } = await import(`${dist}/churn/trace.js`);
const { applyChangeSet } = await import(`${dist}/backend/backend.js`);
const { MemoryBackend } = await import(`${dist}/backend/memory.js`);
const trace = parseTrace(readFileSync(tracePath, 'utf8'), tracePath);
const { initial, churn } = splitTrace(trace);
const backend = new MemoryBackend();
const engine = new Engine();
applyChangeSet(backend, engine.apply(initial));
const out = [];
for (const item of churn) {
  const cs = engine.apply([item.event]);
  if (item.tag === 'pod-relabel' && cs.deltas.length > 0) {
    const by = new Map();
    for (const d of cs.deltas) { if (!by.has(d.endpoint)) by.set(d.endpoint, []); by.get(d.endpoint).push(d); }
    const t0 = process.hrtime.bigint();
    for (const [ep, ds] of by) backend.apply(ep, ds);
    const t1 = process.hrtime.bigint();
    for (const [ep, ds] of by) backend.apply(ep, ds.filter((d) => d.op === 'upsert'));
    const t2 = process.hrtime.bigint();
    const r = []; for (let k = 0; k < 8; k++) { const a = process.hrtime.bigint(); for (const [ep, ds] of by) backend.apply(ep, ds.filter((d) => d.op === "upsert")); r.push(Number(process.hrtime.bigint() - a) / 1000); }
    out.push(`${Number(t1 - t0) / 1000}/${Number(t2 - t1) / 1000}/${r.join(",")}`);
  } else {
    applyChangeSet(backend, cs);
  }
}
console.log(out.join(' '));
