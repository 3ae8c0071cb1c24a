// CPU ms of one cold start split by stage entry point (fresh process per run): timers wrapped around the
// boundary copy, pod table, fqdn/splits/node stages, resolver, commit and model record (each call timed: the
// wrappers add ~25 % to the total, so read shares, not absolute numbers). `*Calls`: calls per stage; `timerMs`: the
// measured cost of one wrapper's two clock reads times all wrapped calls (each stage's number includes its share:
// ~3,000 calls of a stage that does nothing per call still read as 10–30 ms on a loaded machine). Usage: node --expose-gc scripts/cold-stages.mjs DIST TRACE [RUNS_IN_PROCESS=1]
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { initialEvents } from './initial-events.mjs';
const dist = process.argv[2], tracePath = process.argv[3], n = Number(process.argv[4] ?? 1);
const { parseTrace } = await import(resolve(dist, 'churn/trace.js'));
const { Engine } = await import(resolve(dist, 'engine/engine.js'));
const trace = parseTrace(readFileSync(tracePath, 'utf8'), tracePath, { manifests: false });
const initial = initialEvents(trace);
const cpuMs = () => { const c = process.cpuUsage(); return (c.user + c.system) / 1000; };
for (let k = 0; k < n; k++) {
  globalThis.gc?.();
  const t = {}; const calls = {}; const c0 = cpuMs();
  const engine = new Engine({});
  const time = (obj, name, label) => { const f = obj[name]; obj[name] = function (...a) { const s = cpuMs(); try { return f.apply(this, a); } finally { t[label] = (t[label] ?? 0) + cpuMs() - s; calls[label] = (calls[label] ?? 0) + 1; } }; };
  const st = engine.stages;
  time(engine.copier, 'events', 'boundaryCopy');
  time(st.pods, 'upsertPod', 'pods');
  time(st.fqdn, 'policyUpserted', 'fqdnStage');
  time(st.splits, 'policyUpserted', 'splitsStage');
  time(st.nodes, 'policyUpserted', 'nodeStage');
  time(st.resolver, 'upsertPolicy', 'resolver');
  time(engine, 'applyEvents', 'events');
  time(st.commit, 'run', 'commit');
  time(engine, 'record', 'modelRecord');
  engine.apply(initial);
  t.total = cpuMs() - c0;
  t.eventsOther = t.events - t.pods - t.fqdnStage - t.splitsStage - t.nodeStage - t.resolver;
  t.rest = t.total - t.boundaryCopy - t.events - t.commit - t.modelRecord;
  delete t.events;
  const k0 = cpuMs(); let sink = 0;
  for (let i = 0; i < 10_000; i++) sink += cpuMs();
  const perPair = (2 * (cpuMs() - k0)) / 10_000 + sink * 0;
  for (const l of ['pods', 'fqdnStage', 'splitsStage', 'nodeStage', 'resolver']) t[`${l}Calls`] = calls[l] ?? 0;
  t.timerMs = perPair * Object.values(calls).reduce((a, b) => a + b, 0);
  console.log(JSON.stringify(Object.fromEntries(Object.entries(t).map(([a, b]) => [a, Math.round(b)]))));
}
