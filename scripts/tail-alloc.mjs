// Where the churn's per-event allocation comes from (issue 18, perf29tail). Replays TRACE through
// DIST as `distill replay` does (cold start, built-in warm-up, one `engine.apply` per churn event, no
// backend) and, around each churn event whose tag is in TAGS (comma-separated; all when omitted),
// V8's sampling heap profiler (interval 64 bytes, started before and stopped after the event, outside
// nothing else). Per tag: events, bytes sampled per event, and the allocating functions (self, with
// the caller) ranked by bytes per event. One JSON line.
// TAGS = --heap: no profiler; per tag, the mean growth of V8's used heap size over each event (read
// before and after it), events with a GC inside left out. The sampled bytes read ~4× below
// this on namespace relabels (perf29tail, 2650), so this is the total to trust, the profile the ranking.
//   node scripts/tail-alloc.mjs DIST TRACE [TAGS | --heap] [TOP=25]
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { getHeapStatistics } from 'node:v8';
import { splitTrace } from './lib/initial.mjs';
import { inspectorPost } from './lib/inspector.mjs';

const [dist, tracePath, tagsArg, topArg] = process.argv.slice(2);
if (!dist || !tracePath) {
  process.stderr.write('usage: node scripts/tail-alloc.mjs DIST TRACE [TAGS] [TOP]\n');
  process.exit(2);
}
const heapOnly = tagsArg === '--heap';
const tags = tagsArg && !heapOnly ? new Set(tagsArg.split(',')) : undefined;
const top = Number(topArg ?? 25);
const base = pathToFileURL(resolve(dist)).href;
const { Engine } = await import(`${base}/engine/engine.js`);
const { parseTrace } = await import(`${base}/churn/trace.js`);
const { warmUpEngine } = await import(`${base}/churn/warm-up.js`);
const { initial, churn } = splitTrace(parseTrace(readFileSync(tracePath, 'utf8'), tracePath));
const engine = new Engine();
engine.apply(initial);
const w = warmUpEngine({});
if (w.error) throw new Error(`warm-up: ${w.error}`);

const post = inspectorPost();
const short = (url) => url.replace(/^.*\/dist\//, '');
const byTag = new Map();
/** Adds the profile's self sizes to `acc`, keyed by function and its caller. */
const addProfile = (node, parent, acc) => {
  const cf = node.callFrame;
  const name = `${cf.functionName || '(anon)'} ${short(cf.url)}:${cf.lineNumber + 1}`;
  if (node.selfSize > 0) {
    const key = `${name} <- ${parent}`;
    acc.set(key, (acc.get(key) ?? 0) + node.selfSize);
  }
  for (const c of node.children) addProfile(c, name, acc);
};
if (heapOnly) {
  const by = new Map();
  for (const item of churn) {
    const a0 = getHeapStatistics().used_heap_size;
    engine.apply([item.event]);
    const grown = getHeapStatistics().used_heap_size - a0;
    let t = by.get(item.tag);
    if (!t) by.set(item.tag, (t = { n: 0, gcs: 0, bytes: 0 }));
    t.n++;
    if (grown < 0) t.gcs++;
    else t.bytes += grown;
  }
  const out = {};
  for (const [tag, t] of by) out[tag] = { n: t.n, eventsWithGc: t.gcs, heapGrowthPerEvent: Math.round(t.bytes / Math.max(1, t.n - t.gcs)), totalKB: Math.round(t.bytes / 1024) };
  process.stdout.write(`${JSON.stringify({ dist, trace: tracePath, node: process.version, heap: out })}\n`);
  process.exit(0);
}
for (const item of churn) {
  const on = !tags || tags.has(item.tag);
  if (on) post('HeapProfiler.startSampling', { samplingInterval: 64, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  engine.apply([item.event]);
  if (!on) continue;
  const { profile } = post('HeapProfiler.stopSampling');
  let t = byTag.get(item.tag);
  if (!t) byTag.set(item.tag, (t = { n: 0, sites: new Map() }));
  t.n++;
  addProfile(profile.head, '', t.sites);
}
const out = {};
for (const [tag, t] of byTag) {
  const total = [...t.sites.values()].reduce((s, x) => s + x, 0);
  const ranked = [...t.sites].sort((a, b) => b[1] - a[1]).slice(0, top);
  out[tag] = { n: t.n, bytesPerEvent: Math.round(total / t.n), sites: ranked.map(([k, v]) => [k, Math.round(v / t.n)]) };
}
process.stdout.write(`${JSON.stringify({ dist, trace: tracePath, node: process.version, tags: out })}\n`);
