// Which functions of an event ran few times before it in the process (issue 18, perf32tail, 3460).
// V8's precise coverage (call counts) from before DIST's modules load; replays TRACE as `distill
// replay` does (cold start, built-in warm-up, one `engine.apply` + `applyChangeSet` to a MemoryBackend
// per churn event) and, for each trace line in LINES, lists the functions the event runs that ran fewer
// than MAX times before it (with their count by the end of the warm-up and in the event): code in its
// first executions (interpreted, maybe without feedback) inside a churn event.
//   node scripts/path-first-runs.mjs DIST TRACE LINES [MAX=40]
import { Session } from 'node:inspector/promises';
import { replayParts } from './lib/replay-parts.mjs';
const [dist, tracePath, lineArg, maxArg = '40'] = process.argv.slice(2);
const targets = new Set(lineArg.split(',').map(Number));
const session = new Session(); session.connect();
await session.post('Profiler.enable');
await session.post('Profiler.startPreciseCoverage', { callCount: true, detailed: false });
const { engine, backend, initial, churn, applyChangeSet, warmUpEngine } = await replayParts(dist, tracePath);
const total = new Map();
const key = (s, f) => `${f.functionName || '(anon)'} ${s.url.replace(/^.*\/dist\//, '')}@${f.ranges[0].startOffset}`;
const take = async () => {
  const { result } = await session.post('Profiler.takePreciseCoverage');
  const now = new Map();
  for (const s of result) { if (!s.url.includes('/dist/')) continue; for (const f of s.functions) if (f.ranges[0].count > 0) now.set(key(s, f), f.ranges[0].count); }
  return now;
};
const addAll = (now) => { for (const [k, n] of now) total.set(k, (total.get(k) ?? 0) + n); };
// precise coverage with callCount resets counts at each take
await take();
addAll(await take());
applyChangeSet(backend, engine.apply(initial));
addAll(await take());
warmUpEngine({});
addAll(await take());
const afterWarmAll = new Map(total);
for (const item of churn) {
  if (!targets.has(item.line)) { applyChangeSet(backend, engine.apply([item.event])); continue; }
  addAll(await take());
  applyChangeSet(backend, engine.apply([item.event]));
  const ev = await take();
  const few = [...ev].map(([k, n]) => [k, total.get(k) ?? 0, afterWarmAll.get(k) ?? 0, n]).filter(([, before]) => before < Number(maxArg)).sort((a, b) => a[1] - b[1]);
  console.log(`== ${item.line}: ${ev.size} functions, ${few.length} run < ${maxArg} times before (name, before, by end of warm-up, in event)`);
  for (const r of few) console.log('  ', r.join('  '));
  addAll(ev);
}
