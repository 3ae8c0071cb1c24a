// What kind of pod relabels a trace's churn holds (issue 18, fourteenth session): replays TRACE
// through DIST one event per transaction and classifies each pod-relabel by local or remote pod,
// whether its new identity existed before the event (reused) or was allocated, whether its old
// identity survived the event, and the deltas, selector evaluations and map entries it cost. With
// ATTRIB (a `tail-attrib.mjs DIST TRACE 0` JSON line: every event listed), each class also gets the
// on-CPU µs of that run (this script's own timing is not used: it lists identities around relabels).
//   node scripts/relabel-classes.mjs DIST TRACE [ATTRIB]
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { splitTrace } from './lib/initial.mjs';

const [dist, tracePath, attribPath] = process.argv.slice(2);
const base = pathToFileURL(resolve(dist)).href;
const { Engine } = await import(`${base}/engine/engine.js`);
const { parseTrace } = await import(`${base}/churn/trace.js`);
const trace = parseTrace(readFileSync(tracePath, 'utf8'), tracePath);
const { initial, churn } = splitTrace(trace);
const onCpu = new Map();
if (attribPath) for (const s of JSON.parse(readFileSync(attribPath, 'utf8')).slow) onCpu.set(s.line, s.us - s.waitUs);
const engine = new Engine();
engine.apply(initial);
const classes = new Map();
for (const item of churn) {
  const e = item.event;
  if (item.tag !== 'pod-relabel') {
    engine.apply([e]);
    continue;
  }
  const key = `${e.pod.namespace}/${e.pod.name}`;
  const before = new Set(engine.identities());
  const old = engine.identityOfPod(key);
  const cs = engine.apply([e]);
  const now = engine.identityOfPod(key);
  const kept = engine.identityLabels(old) !== undefined;
  const c = `${e.local ? 'local' : 'remote'} pod, new identity ${before.has(now) ? 'reused' : 'allocated'}, old ${kept ? 'kept' : 'freed'}, deltas ${cs.deltas.length}, selector evaluations ${cs.work.selectorEvaluations}, map entries visited ${cs.work.mapEntriesVisited}`;
  if (!classes.has(c)) classes.set(c, []);
  classes.get(c).push(item.line);
}
const r1 = (x) => Math.round(x * 10) / 10;
for (const [c, lines] of [...classes].sort((a, b) => b[1].length - a[1].length)) {
  const us = lines.map((l) => onCpu.get(l)).filter((x) => x !== undefined).sort((a, b) => a - b);
  const t = us.length ? { onCpuP50: r1(us[us.length >> 1]), onCpuMax: r1(us[us.length - 1]) } : {};
  process.stdout.write(`${JSON.stringify({ class: c, n: lines.length, ...t, lines: lines.length <= 8 ? lines : undefined })}\n`);
}
