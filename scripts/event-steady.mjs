// One churn event's cost on first application vs warm (issue 18): replays TRACE's initial phase
// and its churn up to trace line LINE, applies that event (a pod upsert) and times it, then flips
// the pod between its previous version and this one RUNS times and prints the warm median. A big
// gap with `node --no-opt` (or `--no-opt --no-sparkplug`) showing the same gap means the first
// application is slow because of the memory it touches first, not because of the JIT tier.
//   node [V8 FLAGS] scripts/event-steady.mjs DIST TRACE LINE [RUNS=200]
import { engineBeforeLine } from './lib/initial.mjs';

const [dist, tracePath, lineArg, runsArg] = process.argv.slice(2);
if (!dist || !tracePath || !lineArg) {
  process.stderr.write('usage: node scripts/event-steady.mjs DIST TRACE LINE [RUNS]\n');
  process.exit(2);
}
const line = Number(lineArg);
const { engine, trace: t, churn, idx } = await engineBeforeLine(dist, tracePath, line);
const ev = churn[idx]?.event;
if (ev?.type !== 'upsertPod') throw new Error(`${tracePath}:${line}: not a churn pod upsert`);
const prev = t.items
  .flatMap((i) => (i.kind === 'event' && i.line < line ? [i.event] : []))
  .filter((x) => x.type === 'upsertPod' && x.pod.namespace === ev.pod.namespace && x.pod.name === ev.pod.name)
  .pop();
if (!prev) throw new Error(`${tracePath}:${line}: the pod has no earlier version to flip back to`);
const time = (x) => {
  const t0 = process.hrtime.bigint();
  const cs = engine.apply([x]);
  return { us: Number(process.hrtime.bigint() - t0) / 1e3, deltas: cs.deltas.length };
};
const first = time(ev);
const warm = [];
for (let i = 0; i < Number(runsArg ?? 200); i++) {
  time(prev);
  warm.push(time(ev).us);
}
warm.sort((a, b) => a - b);
const r1 = (x) => Math.round(x * 10) / 10;
process.stdout.write(`${JSON.stringify({ line, tag: churn[idx].tag, firstUs: r1(first.us), deltas: first.deltas, warmMedianUs: r1(warm[warm.length >> 1] ?? 0), warmMinUs: r1(warm[0] ?? 0) })}\n`);
