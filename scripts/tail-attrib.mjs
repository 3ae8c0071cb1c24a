// Where a replay's slow events come from (issue 18). Replays TRACE through DIST exactly as
// `distill replay` does (cold start as one transaction, then each churn event timed around
// `engine.apply` + `applyChangeSet` to a MemoryBackend), and records for every churn event its
// wall time, its main thread's run-queue wait (/proc/thread-self/schedstat: time the event was
// ready but descheduled; wall minus wait is "on-CPU"), the bytes it allocated (engine and backend
// only, since perf14alloc: before, the ~2 KB of the schedstat reads were counted), the GCs that overlap
// it (PerformanceObserver 'gc' entries), and whether it is the first event of its tag. Prints one
// JSON line: per tag p50/p99 of wall time (the same percentile as replay.ts), on-CPU p50/p99, mean
// KB allocated (events without a GC), the churn's GCs and process CPU, then the events above
// THRESHOLD µs with their attribution; with --hash, a sha256 over the cold start's and every churn
// transaction's change set and work counters (old and new builds must agree).
//   node [--trace-gc] scripts/tail-attrib.mjs DIST TRACE [THRESHOLD=100] [--hash] [--mark] [--warm-up]
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { getHeapStatistics } from 'node:v8';
import { performance, PerformanceObserver, constants } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { splitTrace } from './lib/initial.mjs';
import { inspectorPost } from './lib/inspector.mjs';

const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const wantHash = process.argv.includes('--hash');
// --mark: a line per slow event on stdout as it ends, to read between `node --trace-gc` lines.
const mark = process.argv.includes('--mark');
const [dist, tracePath, thresholdArg] = args;
const threshold = Number(thresholdArg ?? 100);
const base = pathToFileURL(resolve(dist)).href;
const { Engine } = await import(`${base}/engine/engine.js`);
const { parseTrace } = await import(`${base}/churn/trace.js`);
const { applyChangeSet } = await import(`${base}/backend/backend.js`);
const { MemoryBackend } = await import(`${base}/backend/memory.js`);
const { reconcile } = await import(`${base}/node/restart.js`);

const gcs = [];
const obs = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcs.push({ start: e.startTime, end: e.startTime + e.duration, kind: e.detail?.kind ?? e.kind });
});
obs.observe({ entryTypes: ['gc'] });
const kindName = (k) =>
  ({ [constants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge', [constants.NODE_PERFORMANCE_GC_MAJOR]: 'mark-compact', [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental-mark', [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak-cb' })[k] ?? String(k);

// The main thread's own time on a CPU and waiting in the run queue, ns (/proc/thread-self/schedstat):
// a slow event with a long wait was descheduled (the machine is shared), not working.
const sched = () => readFileSync('/proc/thread-self/schedstat', 'latin1').split(' ', 2).map(Number);
const trace = parseTrace(readFileSync(tracePath, 'utf8'), tracePath);
const { initial, churn } = splitTrace(trace);
const backend = new MemoryBackend();
reconcile(new Engine(), backend);
const engine = new Engine();
const hash = createHash('sha256');
const coldCpu0 = process.cpuUsage();
const cold = engine.apply(initial);
const coldCpu = process.cpuUsage(coldCpu0);
applyChangeSet(backend, cold);
if (wantHash) hash.update(JSON.stringify(cold));
// --warm-up: DIST's built-in warm-up after the cold start, as `distill replay` runs it (perf32tail).
if (process.argv.includes('--warm-up')) {
  const w = (await import(`${base}/churn/warm-up.js`)).warmUpEngine();
  if (w.error) throw new Error(`warm-up: ${w.error}`);
}
const events = [];
// The bytes an event allocates are counted between two heap readings and exclude the harness: the
// schedstat reads sit outside them, and the first reading's own result object (the median of an
// empty pair) is subtracted.
const pair = () => {
  const a = getHeapStatistics().used_heap_size;
  return getHeapStatistics().used_heap_size - a;
};
const statsCost = Array.from({ length: 101 }, pair).sort((x, y) => x - y)[50];
const churnCpu0 = process.cpuUsage();
// --alloc=TAG: a sampling heap profile (collected objects included) around TAG's events only,
// summed per allocating stack; printed instead of the report.
const allocTag = process.argv.find((a) => a.startsWith('--alloc='))?.slice(8);
const post = allocTag ? inspectorPost() : null;
const allocBy = new Map();
const addProfile = (node, stack) => {
  const cf = node.callFrame;
  const here = [...stack, `${cf.functionName || '(anon)'}:${cf.url.split('/').pop()}:${cf.lineNumber + 1}`];
  if (node.selfSize > 0) {
    const k = here.slice(-5).reverse().join(' < ');
    allocBy.set(k, (allocBy.get(k) ?? 0) + node.selfSize);
  }
  for (const c of node.children) addProfile(c, here);
};
for (const item of churn) {
  if (item.tag === allocTag) post('HeapProfiler.startSampling', { samplingInterval: 256, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  const c0 = sched();
  const a0 = getHeapStatistics().used_heap_size;
  const h0 = process.hrtime.bigint();
  const t0 = performance.now();
  const cs = engine.apply([item.event]);
  applyChangeSet(backend, cs);
  const t1 = performance.now();
  const h1 = process.hrtime.bigint();
  const a1 = getHeapStatistics().used_heap_size;
  const c1 = sched();
  if (mark && (t1 - t0) * 1e3 > threshold) process.stdout.write(`EV ${item.line} ${item.tag} ${Math.round((t1 - t0) * 1e3)}us\n`);
  events.push({ tag: item.tag, line: item.line, t0, t1, us: (t1 - t0) * 1e3, h0: Number(h0 / 1000n), h1: Number(h1 / 1000n), waitUs: Math.round((c1[1] - c0[1]) / 1e3), allocB: a1 - a0 - statsCost, deltas: cs.deltas.length, work: cs.work });
  if (wantHash) hash.update(JSON.stringify(cs));
  if (item.tag === allocTag) addProfile(post('HeapProfiler.stopSampling').profile.head, []);
}
if (allocTag) {
  const n = churn.filter((i) => i.tag === allocTag).length;
  const rows = [...allocBy].sort((a, b) => b[1] - a[1]).slice(0, 40);
  const total = [...allocBy.values()].reduce((a, b) => a + b, 0);
  process.stdout.write(`${allocTag}: ${n} events, sampled ${Math.round(total / n)} B/event\n`);
  for (const [k, v] of rows) process.stdout.write(`${String(Math.round(v / n)).padStart(7)} B/event  ${k}\n`);
  process.exit(0);
}
const churnCpu = process.cpuUsage(churnCpu0);
// --windows=FILE: every churn event's [tag, start, end] (µs, the CPU profile's clock) for `node --cpu-prof`.
const windows = process.argv.find((a) => a.startsWith('--windows='));
if (windows) writeFileSync(windows.slice(10), JSON.stringify(events.map((e) => [e.tag, e.h0, e.h1])));
await new Promise((r) => setTimeout(r, 50)); // let the observer deliver
obs.disconnect();

const r1 = (x) => Math.round(x * 10) / 10;
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
const byTag = new Map();
const seen = new Set();
const slow = [];
for (const [i, e] of events.entries()) {
  const first = !seen.has(e.tag);
  seen.add(e.tag);
  if (!byTag.has(e.tag)) byTag.set(e.tag, { us: [], cpu: [], alloc: [] });
  const gcDuring = gcs.some((g) => g.end > e.t0 && g.start < e.t1);
  if (!gcDuring) byTag.get(e.tag).alloc.push(e.allocB);
  byTag.get(e.tag).us.push(e.us);
  byTag.get(e.tag).cpu.push(e.us - e.waitUs);
  if (e.us <= threshold) continue;
  const overlapping = gcs.filter((g) => g.end > e.t0 && g.start < e.t1);
  const gcUs = overlapping.reduce((s, g) => s + (Math.min(g.end, e.t1) - Math.max(g.start, e.t0)) * 1e3, 0);
  slow.push({ tag: e.tag, line: e.line, prev: events[i - 1]?.tag, us: Math.round(e.us), waitUs: e.waitUs, allocKB: r1(e.allocB / 1024), hrUs: [e.h0, e.h1], first, gc: overlapping.map((g) => `${kindName(g.kind)}:${Math.round((g.end - g.start) * 1e3)}`).join(','), gcUs: Math.round(gcUs), deltas: e.deltas, visited: e.work.mapEntriesVisited, selEvals: e.work.selectorEvaluations });
}
const stats = Object.fromEntries(
  [...byTag].map(([tag, { us, cpu, alloc }]) => {
    const s = [...us].sort((a, b) => a - b);
    const c = [...cpu].sort((a, b) => a - b);
    return [tag, { n: s.length, p50: r1(percentile(s, 50)), p99: r1(percentile(s, 99)), max: r1(s[s.length - 1]), onCpuP50: r1(percentile(c, 50)), onCpuP99: r1(percentile(c, 99)), allocKBMean: r1(alloc.reduce((x, y) => x + y, 0) / alloc.length / 1024) }];
  }),
);
const churnGcs = gcs.filter((g) => g.start >= events[0].t0);
const gcSummary = {};
for (const g of churnGcs) {
  const k = kindName(g.kind);
  gcSummary[k] ??= { n: 0, ms: 0 };
  gcSummary[k].n++;
  gcSummary[k].ms = r1(gcSummary[k].ms + g.end - g.start);
}
const cpuMs = (u) => Math.round((u.user + u.system) / 1000);
process.stdout.write(`${JSON.stringify({ stats, churnGcs: gcSummary, coldCpuMs: cpuMs(coldCpu), churnCpuMs: cpuMs(churnCpu), ...(wantHash ? { hash: hash.digest('hex') } : {}), slow })}\n`);
